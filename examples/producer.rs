//! A program that only enqueues: plain, typed and tracked jobs.
//!
//!     REDIS_URL=redis://127.0.0.1:6379 cargo run --example producer
//!
//! Then run `QUEUE=* cargo run --example worker` to work them off.

use resque_fork::producer::Producer;
use resque_fork::{Job, JobResult, TypedJob};
use serde::{Deserialize, Serialize};

/// The same type the worker decodes (see examples/worker.rs).
#[derive(Serialize, Deserialize)]
struct SendEmail {
    to: String,
    template: String,
    lang: Option<String>,
}

impl TypedJob for SendEmail {
    const CLASS: &'static str = "SendEmail";
    fn perform(self, _job: &Job) -> JobResult {
        unreachable!("performed by the worker, not the producer")
    }
}

fn main() -> Result<(), resque_fork::Error> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let producer = Producer::connect(&url)?
        .before_enqueue(|_queue, class, _args| class != "Forbidden")
        .after_enqueue(|queue, class, _args, id| println!("enqueued {class} on {queue} as {id}"));
    producer.enqueue_job(
        "mail",
        &SendEmail {
            to: "ada@example.com".into(),
            template: "welcome".into(),
            lang: Some("en".into()),
        },
    )?;
    producer.enqueue("math", "Divide", &[84.into(), 2.into()])?;
    let tracked = producer.enqueue_tracked("math", "Divide", &[1.into(), 0.into()])?;
    assert!(
        producer.enqueue("math", "Forbidden", &[])?.is_none(),
        "cancelled by the hook"
    );
    if let Some(id) = tracked {
        println!(
            "status of {id}: {}",
            resque_fork::producer::describe(&producer.status(&id)?)
        );
    }
    println!(
        "queues: {:?}, math holds {}",
        producer.queues()?,
        producer.size("math")?
    );
    Ok(())
}
