//! Interop with a real foreign client: node-resque (pinned in
//! tests/interop/package-lock.json, installed by `make test`) enqueues jobs
//! that resque-fork runs, and reads resque-fork's workers, working job,
//! failures and stats.

mod common;

use common::*;
use serde_json::{json, Value};

fn inspect(redis: &RedisServer) -> Value {
    serde_json::from_str(&node_client(redis, &["inspect"])).unwrap()
}

#[test]
fn node_resque_jobs_run_here_and_node_resque_reads_our_state() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let seen = jobs.scratch("seen");
    let gate = jobs.scratch("gate");
    let running = jobs.scratch("running");
    jobs.add("Record", &format!("cat > {}", seen.display()));
    jobs.add("Fails", "echo 'node job failed' >&2; exit 2");
    jobs.add(
        "Slow",
        &format!(
            "touch {}; while [ ! -e {} ]; do sleep 0.01; done",
            running.display(),
            gate.display()
        ),
    );
    let args = json!([1, "two", {"three": 3}, [4.5], null]);
    node_client(&redis, &["enqueue", "nodeq", "Record", &args.to_string()]);
    node_client(&redis, &["enqueue", "nodeq", "Fails", r#"["x"]"#]);
    node_client(&redis, &["enqueue", "nodeq", "Slow", "[]"]);

    let mut child = worker(&redis, &jobs, "nodeq", "0.05").spawn().unwrap();
    let name = format!("{}:{}", hostname(), child.id());
    wait_until("the Slow job runs", || running.exists());

    // The args node-resque enqueued arrive intact.
    let got: Value = serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
    assert_eq!(got, args);

    // node-resque sees our worker and what it is working on.
    let state = inspect(&redis);
    assert_eq!(state["workers"][&name], "nodeq", "{state}");
    let working = &state["working"][&name];
    assert_eq!(working["worker"], name.as_str(), "{state}");
    assert_eq!(working["queue"], "nodeq");
    assert_eq!(working["payload"]["class"], "Slow");
    assert_eq!(working["payload"]["args"], json!([]));
    assert!(working["run_at"].as_str().is_some());

    std::fs::write(&gate, "").unwrap();
    wait_until("all three jobs are recorded", || {
        redis.int("resque:stat:processed") == 3
    });

    // ...and our failures and stats.
    let state = inspect(&redis);
    assert_eq!(state["failedCount"], 1, "{state}");
    let failure = &state["failed"][0];
    assert_eq!(failure["exception"], "ResqueFork::JobFailed");
    assert_eq!(failure["error"], "exited with code 2: node job failed");
    assert_eq!(failure["queue"], "nodeq");
    assert_eq!(failure["payload"]["class"], "Fails");
    assert_eq!(failure["payload"]["args"], json!(["x"]));
    assert_eq!(
        failure["worker"],
        format!("{name}:nodeq").as_str(),
        "{failure}"
    );
    assert_eq!(state["stats"]["processed"], "3", "{state}");
    assert_eq!(state["stats"]["failed"], "1");
    assert_eq!(state["queues"], json!(["nodeq"]));

    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
    let state = inspect(&redis);
    assert_eq!(state["workers"], json!({}), "{state}");
}
