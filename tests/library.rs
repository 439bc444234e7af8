//! The Rust library: hooks, typed jobs and the producer client, through
//! examples/worker.rs (a user's own worker binary) and the library API.

mod common;

use common::*;
use resque_fork::producer::Producer;
use resque_fork::{Job, JobResult, TypedJob};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::process::Command;

fn example(redis: &RedisServer, jobs: &JobsDir) -> Command {
    let mut c = Command::new(example_worker());
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", redis.url())
        .env("QUEUE", "q")
        .env("INTERVAL", "0")
        .env("JOBS_DIR", jobs.path());
    c
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct SendEmail {
    to: String,
    template: String,
    lang: Option<String>,
}

impl TypedJob for SendEmail {
    const CLASS: &'static str = "SendEmail";
    fn perform(self, _job: &Job) -> JobResult {
        Ok(())
    }
}

#[test]
fn every_hook_fires_once_in_its_process_in_order() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    jobs.add("Shell", "exit 1");
    let hooks = jobs.scratch("hooks");
    for payload in [
        json!({"class": "SendEmail", "args": ["a@b.c", "welcome"]}),
        json!({"class": "Divide", "args": [1, 0]}),
        json!({"class": "Divide", "args": [{"skip": true}]}),
        json!({"class": "Exit", "args": []}),
        json!({"class": "Shell", "args": []}),
    ] {
        redis.push("q", &payload.to_string());
    }
    let mut cmd = example(&redis, &jobs);
    cmd.env("HOOK_LOG", &hooks);
    let mut child = cmd.spawn().unwrap();
    let worker = child.id().to_string();
    assert!(wait_exit(&mut child).success());

    let log = std::fs::read_to_string(&hooks).unwrap();
    let lines: Vec<(&str, &str, &str)> = log
        .lines()
        .map(|l| {
            let mut p = l.split(' ');
            (p.next().unwrap(), p.next().unwrap(), p.next().unwrap())
        })
        .collect();
    // Replace pids by W (the worker) or J (a job process).
    let shape: Vec<String> = lines
        .iter()
        .map(|(hook, pid, class)| {
            let who = if *pid == worker { "W" } else { "J" };
            format!("{hook} {who} {class}")
        })
        .collect();
    assert_eq!(
        shape,
        [
            "before_first_fork W -",
            "before_fork W SendEmail",
            "after_fork J SendEmail",
            "before_perform J SendEmail",
            "after_perform J SendEmail",
            "before_fork W Divide",
            "after_fork J Divide",
            "before_perform J Divide",
            "on_failure J Divide",
            "before_fork W Divide",
            "after_fork J Divide",
            "before_perform J Divide",
            "before_fork W Exit",
            "after_fork J Exit",
            "before_perform J Exit",
            "on_failure W Exit",
            "before_fork W Shell",
            "on_failure W Shell",
            "worker_exit W -",
        ],
        "{log}"
    );
    // Each job ran in its own process.
    let job_pids: Vec<&str> = lines
        .iter()
        .filter(|(h, _, _)| *h == "after_fork")
        .map(|(_, p, _)| *p)
        .collect();
    let mut distinct = job_pids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), job_pids.len());
    // The skipped job counts as processed, not failed.
    assert_eq!(redis.int("resque:stat:processed"), 5);
    assert_eq!(redis.int("resque:stat:failed"), 3);
    assert_eq!(redis.llen("resque:failed"), 3);
}

#[test]
fn typed_args_round_trip_between_rust_node_and_the_worker() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let outbox = jobs.outbox();
    let producer = Producer::connect(&redis.url()).unwrap();
    producer
        .enqueue_job(
            "q",
            &SendEmail {
                to: "rust@x".into(),
                template: "welcome".into(),
                lang: Some("de".into()),
            },
        )
        .unwrap()
        .unwrap();
    let queued: serde_json::Value = serde_json::from_str(&redis.list("resque:queue:q")[0]).unwrap();
    assert_eq!(queued["args"], json!(["rust@x", "welcome", "de"]));
    // node-resque enqueues the same class, positionally, without the optional tail.
    node_client(
        &redis,
        &["enqueue", "q", "SendEmail", r#"["node@x","reset"]"#],
    );
    // php's layout for ResizeImage, and two payloads that do not fit.
    redis.push(
        "q",
        r#"{"class":"ResizeImage","args":[{"path":"a.png","width":2,"height":3}]}"#,
    );
    redis.push("q", r#"{"class":"SendEmail","args":[5,"welcome"]}"#);
    redis.push(
        "q",
        r#"{"class":"ResizeImage","args":[{"path":"a.png","width":"wide","height":3}]}"#,
    );
    let mut cmd = example(&redis, &jobs);
    cmd.env("OUTBOX", &outbox);
    let out = run(cmd);
    assert!(out.status.success());
    let mail = |to: &str| std::fs::read_to_string(outbox.join(to)).unwrap();
    assert_eq!(mail("rust@x"), "to=rust@x template=welcome lang=de");
    assert_eq!(mail("node@x"), "to=node@x template=reset lang=en");
    let failures = redis.failures();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0]["exception"], "ArgumentError");
    assert_eq!(
        failures[0]["error"],
        "args[0] (field `to`): invalid type: integer `5`, expected a string"
    );
    assert_eq!(
        failures[1]["error"],
        "args[0].width: invalid type: string \"wide\", expected u32"
    );
    assert_eq!(redis.int("resque:stat:processed"), 5);
}

#[test]
fn the_producer_enqueues_dequeues_and_reads_status_from_many_threads() {
    let redis = RedisServer::start();
    let cancelled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = cancelled.clone();
    let producer = std::sync::Arc::new(Producer::connect(&redis.url()).unwrap().before_enqueue(
        move |_, class, _| {
            let ok = class != "Forbidden";
            if !ok {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            ok
        },
    ));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let p = producer.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    p.enqueue("bulk", "Job", &[json!(t), json!(i)])
                        .unwrap()
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(producer.size("bulk").unwrap(), 100);
    assert!(producer
        .enqueue("bulk", "Forbidden", &[])
        .unwrap()
        .is_none());
    assert_eq!(cancelled.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        producer
            .dequeue("bulk", "Job", Some(&[json!(2), json!(7)]))
            .unwrap(),
        1
    );
    assert_eq!(producer.dequeue("bulk", "Job", None).unwrap(), 99);
    assert_eq!(producer.size("bulk").unwrap(), 0);
    let id = producer.enqueue_tracked("q", "Job", &[]).unwrap().unwrap();
    assert_eq!(producer.status(&id).unwrap().state.name(), "waiting");
    assert_eq!(producer.queues().unwrap(), ["bulk", "q"]);
}

#[test]
fn jobs_ending_during_redis_calls_do_not_interrupt_them() {
    // A Rust job ends within microseconds: its SIGCHLD arrives while the
    // worker still reads Redis's reply to the pid-key write. That read must
    // not fail (a socket read with a timeout is not restarted by SA_RESTART).
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    for _ in 0..40 {
        enqueue(&redis, &["q", "Divide", "4", "2"]);
    }
    let mut cmd = example(&redis, &jobs);
    cmd.env("VERBOSE", "1");
    let out = run(cmd);
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains(" WARN ") && !log.contains(" ERROR "), "{log}");
    assert_eq!(redis.int("resque:stat:processed"), 40);
}

#[test]
fn rust_jobs_run_forked_and_their_errors_become_failure_records() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let outbox = jobs.outbox();
    let exec_marker = jobs.scratch("exec-ran");
    jobs.add("Shell", &format!("touch {}", exec_marker.display()));
    for payload in [
        json!({"class":"SendEmail","args":["one@x", "welcome"]}),
        json!({"class":"Divide","args":[1, 0]}),
        json!({"class":"ParseNumber","args":["x1"]}),
        json!({"class":"Panic","args":[]}),
        json!({"class":"Exit","args":[]}),
        json!({"class":"Abort","args":[]}),
        json!({"class":"Shell","args":[]}),
        json!({"class":"SendEmail","args":["two@x", "bye", "fr"]}),
    ] {
        redis.push("q", &payload.to_string());
    }
    let mut cmd = example(&redis, &jobs);
    cmd.env("OUTBOX", &outbox);
    let out = run(cmd);
    assert_ok(&out);

    let mail = |to: &str| std::fs::read_to_string(outbox.join(to)).unwrap();
    assert_eq!(mail("one@x"), "to=one@x template=welcome lang=en");
    assert_eq!(mail("two@x"), "to=two@x template=bye lang=fr");
    assert!(exec_marker.exists(), "unregistered classes go to JOBS_DIR");
    let failures = redis.failures();
    let by_class = |class: &str| {
        failures
            .iter()
            .find(|f| f["payload"]["class"] == class)
            .unwrap_or_else(|| panic!("no failure for {class}"))
    };
    let f = by_class("Divide");
    assert_eq!(f["exception"], "ZeroDivisionError");
    assert_eq!(f["error"], "cannot divide 1 by zero");

    let f = by_class("ParseNumber");
    assert_eq!(f["exception"], "core::num::error::ParseIntError");
    assert_eq!(f["error"], "invalid digit found in string");
    assert!(f["backtrace"][0]
        .as_str()
        .unwrap()
        .contains("examples/worker.rs"));

    let f = by_class("Panic");
    assert_eq!(f["exception"], "ResqueFork::Panic");
    assert_eq!(f["error"], "this job panics on purpose");
    assert!(f["backtrace"][0]
        .as_str()
        .unwrap()
        .contains("examples/worker.rs"));

    let f = by_class("Exit");
    assert_eq!(f["exception"], "Resque::DirtyExit");
    assert!(f["error"]
        .as_str()
        .unwrap()
        .contains("exited with code 3 without reporting"));

    let f = by_class("Abort");
    assert_eq!(f["exception"], "Resque::DirtyExit");
    assert!(
        f["error"]
            .as_str()
            .unwrap()
            .ends_with("SIGABRT (signal 6) (core dumped)")
            || f["error"].as_str().unwrap().ends_with("SIGABRT (signal 6)")
    );

    assert_eq!(failures.len(), 5);
    assert_eq!(redis.int("resque:stat:processed"), 8);
    assert_eq!(redis.int("resque:stat:failed"), 5);
}

#[test]
fn rust_jobs_ask_for_retries_and_registered_policies_apply() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    redis.push("q", r#"{"class":"RateLimited","args":[],"id":"r1"}"#);
    redis.push("q", r#"{"class":"Flappy","args":[],"id":"f1"}"#);
    let mut cmd = example(&redis, &jobs);
    cmd.env("INTERVAL", "0.05")
        .env("SCHEDULER_INTERVAL", "0.05")
        .env("RETRY_BACKOFF", "0");
    let mut child = cmd.spawn().unwrap();
    wait_until("RateLimited completes and Flappy gives up", || {
        redis.int("resque:stat:processed") == 5
    });
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
    // RateLimited: three runs, two failed attempts, no record; Flappy: two
    // runs (its policy's one retry), one record with retry_count 1.
    assert_eq!(redis.int("resque:stat:failed"), 4);
    let failures = redis.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["payload"]["class"], "Flappy");
    assert_eq!(failures[0]["payload"]["retry_count"], 1);
    assert_eq!(failures[0]["payload"]["id"], "f1");
    assert_eq!(failures[0]["exception"], "MyApp::Flap");
}

/// A Rust job's process, and what it starts, see the worker's id in
/// RESQUE_WORKER (the pruner's mark) and no Redis address unless
/// JOB_ENV_KEEP_REDIS; the worker sets both up once, not each job process.
#[test]
fn what_a_rust_job_starts_sees_the_worker_id_and_no_redis_address() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let outbox = jobs.outbox();
    for keep in [false, true] {
        redis.push("q", r#"{"class":"Env","args":[]}"#);
        let mut cmd = example(&redis, &jobs);
        cmd.env("OUTBOX", &outbox);
        if keep {
            cmd.env("JOB_ENV_KEEP_REDIS", "1");
        }
        let out = run(cmd);
        assert!(out.status.success(), "{out:?}");
        let seen = std::fs::read_to_string(outbox.join("env"))
            .unwrap_or_else(|e| panic!("{e}: {:?} {out:?}", redis.failures()));
        let (worker, url) = seen.trim().split_once(' ').unwrap();
        assert!(
            worker.starts_with(&format!("{}:", hostname())) && worker.ends_with(":q"),
            "{seen}"
        );
        assert_eq!(
            url,
            if keep {
                redis.url()
            } else {
                "none".to_string()
            }
        );
    }
    assert_eq!(redis.int("resque:stat:processed"), 2);
    assert!(redis.failures().is_empty());
}
