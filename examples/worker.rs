//! A worker binary with its own Rust jobs, hooks, and every flag of
//! `resque-fork`:
//!
//!     QUEUE=* cargo run --example worker
//!
//! Jobs registered here run as Rust functions in a forked process; any other
//! class still runs the program `JOBS_DIR/<class>`. With `HOOK_LOG=file`,
//! every hook appends `hook pid class` to that file (the tests read it).

use resque_fork::retry::{Backoff, RetryPolicy};
use resque_fork::{cli, ArgsLayout, Flow, Job, JobError, JobResult, Registry, TypedJob};
use serde::{Deserialize, Serialize};
use std::io::Write;

/// A typed job with positional args, as Ruby and node enqueue them:
/// `["ada@example.com", "welcome"]`. With `OUTBOX=dir` it writes the mail to
/// `dir/<to>`.
#[derive(Debug, Serialize, Deserialize)]
struct SendEmail {
    to: String,
    template: String,
    #[serde(default)]
    lang: Option<String>,
}

impl TypedJob for SendEmail {
    const CLASS: &'static str = "SendEmail";

    fn perform(self, _job: &Job) -> JobResult {
        let body = format!(
            "to={} template={} lang={}",
            self.to,
            self.template,
            self.lang.as_deref().unwrap_or("en")
        );
        match std::env::var_os("OUTBOX") {
            Some(dir) => std::fs::write(std::path::Path::new(&dir).join(&self.to), body)?,
            None => println!("{body}"),
        }
        Ok(())
    }
}

/// A typed job in php-resque's layout: one object in `args[0]`.
#[derive(Debug, Serialize, Deserialize)]
struct ResizeImage {
    path: String,
    width: u32,
    height: u32,
}

impl TypedJob for ResizeImage {
    const CLASS: &'static str = "ResizeImage";
    const LAYOUT: ArgsLayout = ArgsLayout::Object;

    fn perform(self, _job: &Job) -> JobResult {
        if self.width == 0 || self.height == 0 {
            return Err(JobError::new(
                "ArgumentError",
                format!(
                    "cannot resize {} to {}x{}",
                    self.path, self.width, self.height
                ),
            ));
        }
        println!("resized {} to {}x{}", self.path, self.width, self.height);
        Ok(())
    }
}

/// `Divide [a, b]`: fails cleanly on a zero divisor.
fn divide(job: &Job) -> JobResult {
    let num = |i: usize| job.args().get(i).and_then(|v| v.as_i64());
    let (Some(a), Some(b)) = (num(0), num(1)) else {
        return Err(JobError::new("ArgumentError", "Divide takes two integers"));
    };
    if b == 0 {
        return Err(JobError::new(
            "ZeroDivisionError",
            format!("cannot divide {a} by zero"),
        ));
    }
    println!("{a} / {b} = {}", a / b);
    Ok(())
}

/// Appends `hook pid class` to $HOOK_LOG, when set.
fn trace(hook: &str, class: &str) {
    if let Some(path) = std::env::var_os("HOOK_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{hook} {} {class}", std::process::id());
        }
    }
}

fn main() {
    let registry = Registry::new()
        .job::<SendEmail>()
        .job::<ResizeImage>()
        .register("Divide", divide)
        .register("ParseNumber", |job| {
            let text = job.args().first().and_then(|v| v.as_str()).unwrap_or("");
            let n: i64 = text.parse()?;
            println!("parsed {n}");
            Ok(())
        })
        .register("Panic", |_| panic!("this job panics on purpose"))
        // Asks for a retry twice (the second time after its own delay),
        // then succeeds: a rate-limited API, say.
        .register("RateLimited", |job| match job.retry_count() {
            0 => Err(JobError::retry("MyApp::RateLimited", "429 from the API")),
            1 => Err(JobError::retry_in(
                "MyApp::RateLimited",
                "429, Retry-After: 1",
                std::time::Duration::from_secs(1),
            )),
            _ => Ok(()),
        })
        // Every failure of this class is retried, once, by its own policy.
        .register("Flappy", |_| {
            Err(JobError::new("MyApp::Flap", "down again"))
        })
        .retry(
            "Flappy",
            RetryPolicy {
                limit: 1,
                backoff: Backoff::Delays(vec![0]),
                retry_failures: true,
            },
        )
        // Writes what a program it starts sees of the environment: the
        // worker's id, and Redis's address only with JOB_ENV_KEEP_REDIS.
        .register("Env", |_| {
            let seen = std::process::Command::new("sh")
                .args(["-c", "echo \"${RESQUE_WORKER:-none} ${REDIS_URL:-none}\""])
                .output()?;
            let dir = std::env::var_os("OUTBOX")
                .ok_or_else(|| std::io::Error::other("OUTBOX is not set"))?;
            std::fs::write(std::path::Path::new(&dir).join("env"), seen.stdout)?;
            Ok(())
        })
        .register("Exit", |_| std::process::exit(3))
        .register("Abort", |_| std::process::abort())
        .before_first_fork(|_| trace("before_first_fork", "-"))
        .before_fork(|job| trace("before_fork", job.class()))
        .after_fork(|job| trace("after_fork", job.class()))
        .before_perform(|job| {
            trace("before_perform", job.class());
            // A job enqueued with {"skip": true} as its only argument is not run.
            let skip = job.args().first().and_then(|a| a.get("skip")).is_some();
            Ok(if skip { Flow::Skip } else { Flow::Continue })
        })
        .after_perform(|job| trace("after_perform", job.class()))
        .on_failure(|job, _failure| trace("on_failure", job.class()))
        .worker_exit(|_| trace("worker_exit", "-"));
    std::process::exit(cli::run(registry));
}
