//! Retries with backoff through the delayed set: who is retried, how often,
//! after how long, and what each attempt writes.

mod common;

use common::*;
use redis::Commands;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Child;

/// A job `Flaky` that logs each run's RESQUE_RETRY_COUNT, then exits with
/// the code its run number picks from `codes` (the last one repeating).
fn flaky(jobs: &JobsDir, codes: &[i32]) -> PathBuf {
    let runs = jobs.scratch("runs");
    let cases: String = codes
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{}) exit {c};; ", i + 1))
        .collect();
    jobs.add(
        "Flaky",
        &format!(
            "cat > /dev/null; echo \"$RESQUE_RETRY_COUNT\" >> {r}; n=$(wc -l < {r}); \
             echo 'temporarily busy' >&2; case $n in {cases}*) exit {last};; esac",
            r = runs.display(),
            last = codes.last().unwrap()
        ),
    );
    runs
}

fn pool(redis: &RedisServer, jobs: &JobsDir, env: &[(&str, &str)]) -> Child {
    let mut c = worker(redis, jobs, "q", "0.05");
    c.env("SCHEDULER_INTERVAL", "0.05");
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

fn runs(path: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn enqueue_tracked(redis: &RedisServer, class: &str) -> String {
    let (code, out, err) = cli(redis, &["enqueue", "q", class, "7"]);
    assert_eq!(code, Some(0), "{err}");
    out.trim().to_string()
}

#[test]
fn a_job_that_exits_75_twice_then_0_runs_three_times_and_completes() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let log = flaky(&jobs, &[75, 75, 0]);
    let id = enqueue_tracked(&redis, "Flaky");
    let p = pool(&redis, &jobs, &[("RETRY_BACKOFF", "0")]);
    wait_until("three runs", || runs(&log).len() == 3);
    wait_until("the last run is recorded", || {
        redis.int("resque:stat:processed") == 3
    });
    quit_and_wait(p);
    assert_eq!(runs(&log), ["0", "1", "2"], "RESQUE_RETRY_COUNT per run");
    assert!(redis.failures().is_empty(), "no failure record");
    assert_eq!(
        redis.int("resque:stat:failed"),
        2,
        "each failed attempt counts"
    );
    let status: Value = serde_json::from_str(&cli(&redis, &["status", &id, "--json"]).1).unwrap();
    assert_eq!(status["record"]["status"], 4);
    let left: Vec<String> = redis
        .keys()
        .into_iter()
        .filter(|k| k.contains("delayed") || k.contains("retry"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(cli(&redis, &["retries", "--json"]).1.trim(), "[]");
}

#[test]
fn a_job_that_always_exits_75_ends_in_one_failure_record_after_the_limit() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let log = flaky(&jobs, &[75]);
    enqueue_tracked(&redis, "Flaky");
    let p = pool(
        &redis,
        &jobs,
        &[("RETRY_BACKOFF", "0"), ("RETRY_LIMIT", "2")],
    );
    wait_until("a failure record", || !redis.failures().is_empty());
    quit_and_wait(p);
    assert_eq!(runs(&log), ["0", "1", "2"]);
    let failures = redis.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["payload"]["retry_count"], 2);
    assert_eq!(failures[0]["payload"]["args"], serde_json::json!([7]));
    assert_eq!(failures[0]["exception"], "ResqueFork::JobFailed");
    assert!(failures[0]["error"]
        .as_str()
        .unwrap()
        .contains("exited with code 75"));
    assert_eq!(redis.int("resque:stat:processed"), 3);
    assert_eq!(redis.int("resque:stat:failed"), 3);
    // failed retry works on it as on any record.
    let (code, _, err) = cli(&redis, &["failed", "retry", "0"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(redis.llen("resque:queue:q"), 1);
}

#[test]
fn a_tracked_jobs_status_goes_waiting_running_waiting_running_complete() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    // Each run lasts long enough to be seen running.
    let runs_log = jobs.scratch("runs");
    jobs.add(
        "Slow",
        &format!(
            "cat > /dev/null; echo run >> {r}; sleep 0.3; [ $(wc -l < {r}) -ge 2 ] || exit 75",
            r = runs_log.display()
        ),
    );
    let id = enqueue_tracked(&redis, "Slow");
    let key = format!("resque:job:{id}:status");
    let state = || -> Option<i64> {
        let text: Option<String> = redis.conn().get(&key).unwrap();
        serde_json::from_str::<Value>(&text?).ok()?["status"].as_i64()
    };
    let mut seen = vec![state().unwrap()];
    let p = pool(&redis, &jobs, &[("RETRY_BACKOFF", "1")]);
    wait_until("the job completes", || {
        let s = state().unwrap();
        if seen.last() != Some(&s) {
            seen.push(s);
        }
        s == 4
    });
    quit_and_wait(p);
    assert_eq!(seen, [1, 2, 1, 2, 4]);
}

#[test]
fn ordinary_failures_are_retried_only_with_retry_failures_and_deaths_never() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let log = flaky(&jobs, &[1, 0]);
    jobs.add("Dies", "cat > /dev/null; kill -9 $$");
    enqueue_tracked(&redis, "Flaky");
    let p = pool(&redis, &jobs, &[("RETRY_BACKOFF", "0")]);
    wait_until("a failure record", || redis.failures().len() == 1);
    quit_and_wait(p);
    assert_eq!(runs(&log), ["0"], "exit 1 is not retried by default");
    let _: () = redis.conn().del("resque:failed").unwrap();
    std::fs::remove_file(&log).unwrap();
    enqueue_tracked(&redis, "Flaky");
    enqueue_tracked(&redis, "Dies");
    let p = pool(
        &redis,
        &jobs,
        &[("RETRY_BACKOFF", "0"), ("RETRY_FAILURES", "1")],
    );
    wait_until("Flaky ran twice", || runs(&log).len() == 2);
    wait_until("Dies failed", || redis.failures().len() == 1);
    quit_and_wait(p);
    assert_eq!(redis.failures()[0]["exception"], "Resque::DirtyExit");
    assert_eq!(redis.failures()[0]["payload"].get("retry_count"), None);
}

#[test]
fn backoff_follows_the_policy_and_retries_lists_the_waiting_jobs() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    flaky(&jobs, &[75]);
    jobs.add(
        "Mailer",
        "cat > /dev/null; echo 'smtp timeout' >&2; exit 75",
    );
    let policy = jobs.scratch("retry.yml");
    std::fs::write(&policy, "Mailer: {limit: 3, backoff: [600]}\n").unwrap();
    let id = enqueue_tracked(&redis, "Flaky");
    enqueue_tracked(&redis, "Mailer");
    let before = redis.now();
    let policy_path = policy.display().to_string();
    let p = pool(
        &redis,
        &jobs,
        &[("RETRY_BACKOFF", "0,120"), ("RETRY_POLICY", &policy_path)],
    );
    // Flaky: retry 1 after 0 s (runs again at once), retry 2 after 120 s.
    wait_until("both wait in the delayed set", || {
        let rows: Value = serde_json::from_str(&cli(&redis, &["retries", "--json"]).1).unwrap();
        rows.as_array().unwrap().len() == 2 && rows[0]["retry_count"] == 2
    });
    let after = redis.now();
    quit_and_wait(p);
    let rows: Value = serde_json::from_str(&cli(&redis, &["retries", "--json"]).1).unwrap();
    // The next due first: Flaky's second retry (120 s), then Mailer's (600 s).
    let mailer = &rows[1];
    assert_eq!(mailer["class"], "Mailer");
    assert_eq!(mailer["retry_count"], 1);
    let due = mailer["due"].as_i64().unwrap();
    assert!((before + 600..=after + 600).contains(&due), "{due}");
    assert!(mailer["error"].as_str().unwrap().contains("smtp timeout"));
    let flaky_row = &rows[0];
    assert_eq!(flaky_row["id"], id.as_str());
    let due = flaky_row["due"].as_i64().unwrap();
    assert!((before + 120..=after + 120).contains(&due), "{due}");
    let (_, text, _) = cli(&redis, &["retries"]);
    assert!(text.starts_with("DUE") && text.contains("Mailer"), "{text}");
}

#[test]
fn a_retry_promoted_by_rubys_scheduler_keeps_counting() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let log = flaky(&jobs, &[75]);
    enqueue_tracked(&redis, "Flaky");
    // One run, then the retry waits a minute in the delayed set.
    let mut c = worker(&redis, &jobs, "q", "0");
    c.env("RETRY_BACKOFF", "60").env("RETRY_LIMIT", "1");
    assert_ok(&run(c));
    assert_eq!(runs(&log), ["0"]);
    // Ruby's mover rebuilds the item as {class, args}: the count is gone
    // from the payload.
    let stamps: Vec<i64> = redis
        .conn()
        .zrange("resque:delayed_queue_schedule", 0, -1)
        .unwrap();
    let bucket = format!("resque:delayed:{}", stamps[0]);
    let item: Value = serde_json::from_str(&redis.list(&bucket)[0]).unwrap();
    assert_eq!(item["retry_count"], 1);
    let _: () = redis.conn().del(&bucket).unwrap();
    let _: () = redis.conn().del("resque:delayed_queue_schedule").unwrap();
    redis.push("q", r#"{"class":"Flaky","args":[7]}"#);
    let mut c = worker(&redis, &jobs, "q", "0");
    c.env("RETRY_BACKOFF", "60").env("RETRY_LIMIT", "1");
    assert_ok(&run(c));
    assert_eq!(runs(&log), ["0", "0"]);
    let failures = redis.failures();
    assert_eq!(
        failures.len(),
        1,
        "the limit holds: no third run is scheduled"
    );
    assert_eq!(
        redis
            .conn()
            .zcard::<_, i64>("resque:delayed_queue_schedule")
            .unwrap(),
        0
    );
}
