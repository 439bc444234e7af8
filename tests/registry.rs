//! The library path: Rust job functions registered in a user's own binary
//! (examples/worker.rs), run in a forked process.

mod common;

use common::*;
use serde_json::json;
use std::process::Command;

fn drain_example(redis: &RedisServer, jobs: &JobsDir, outbox: &std::path::Path) {
    let out = run({
        let mut c = Command::new(example_worker());
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("REDIS_URL", redis.url())
            .env("QUEUE", "q")
            .env("INTERVAL", "0")
            .env("JOBS_DIR", jobs.path())
            .env("OUTBOX", outbox);
        c
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rust_jobs_run_forked_and_their_errors_become_failure_records() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let outbox = jobs.scratch("outbox");
    std::fs::create_dir(&outbox).unwrap();
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
    drain_example(&redis, &jobs, &outbox);

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
