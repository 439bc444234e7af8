//! The operations commands end to end, against state written by resque-fork
//! workers AND by a real foreign client (node-resque).

mod common;

use common::*;
use redis::Commands;
use serde_json::Value;
use std::process::Command;

fn json(redis: &RedisServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, out, err) = cli(redis, &all);
    assert_eq!(code, Some(0), "{args:?}: {err}");
    assert_eq!(out.lines().count(), 1, "one JSON document: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

fn ok(redis: &RedisServer, args: &[&str]) -> String {
    let (code, out, err) = cli(redis, args);
    assert_eq!(code, Some(0), "{args:?}: {err}");
    for line in out.lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than 80 columns: {line:?}"
        );
    }
    out
}

/// Mixed state: failures and workers from resque-fork and node-resque.
fn mixed_state(redis: &RedisServer, jobs: &JobsDir) {
    jobs.add("Fails", "echo 'fork job failed' >&2; exit 1");
    jobs.add("Ok", "true");
    enqueue(redis, &["mail", "Fails", "1"]);
    enqueue(redis, &["mail", "Ok"]);
    drain(redis, jobs, "mail");
    node_client(redis, &["enqueue", "nodeq", "NodeFail", "[7]"]);
    node_client(redis, &["fail-one", "nodeq"]);
    node_client(redis, &["enqueue", "waiting", "Later", r#"[{"a":1}]"#]);
    node_client(redis, &["enqueue", "waiting", "Later", "[2]"]);
    node_client(redis, &["register", "nodeq"]);
}

#[test]
fn info_queues_and_workers_match_resque_webs_formulas() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    mixed_state(&redis, &jobs);
    let mut c = redis.conn();
    let queues: Vec<String> = c.smembers("resque:queues").unwrap();
    let pending: i64 = queues
        .iter()
        .map(|q| redis.llen(&format!("resque:queue:{q}")))
        .sum();
    let workers: Vec<String> = c.smembers("resque:workers").unwrap();
    let info = json(&redis, &["info"]);
    assert_eq!(info["pending"], pending);
    assert_eq!(info["pending"], 2);
    assert_eq!(info["processed"], redis.int("resque:stat:processed"));
    assert_eq!(info["failed"], redis.llen("resque:failed"));
    assert_eq!(info["failed"], 2);
    assert_eq!(info["queues"], queues.len());
    assert_eq!(info["workers"], workers.len());
    assert_eq!(info["working"], 0);
    let human = ok(&redis, &["info"]);
    assert!(human.contains("pending    2"), "{human}");

    let q = json(&redis, &["queues"]);
    let names: Vec<&str> = q
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mail", "nodeq", "waiting"]);
    assert_eq!(q[2]["length"], 2);
    assert!(ok(&redis, &["queues"]).contains("waiting  2"));

    let shown = json(&redis, &["queue", "show", "waiting"]);
    assert_eq!(shown[0]["class"], "Later");
    assert_eq!(shown[0]["args"], serde_json::json!([{"a": 1}]));
    assert_eq!(shown[1]["args"], serde_json::json!([2]));
    assert!(ok(&redis, &["queue", "show", "waiting", "--limit", "1"]).contains("Later"));

    // The node-resque worker registered and its process is gone: dead.
    let w = json(&redis, &["workers"]);
    let rows = w.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{w}");
    assert_eq!(rows[0]["queues"], serde_json::json!(["nodeq"]));
    assert_eq!(rows[0]["health"], "dead");
    assert_eq!(rows[0]["state"], "idle");
    assert!(ok(&redis, &["workers"]).contains("dead"));
}

#[test]
fn workers_shows_a_working_worker_and_its_job() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let gate = jobs.scratch("gate");
    let started = jobs.scratch("started");
    jobs.add(
        "Slow",
        &format!(
            "touch {}; while [ ! -e {} ]; do sleep 0.01; done",
            started.display(),
            gate.display()
        ),
    );
    enqueue(&redis, &["q", "Slow"]);
    let mut child = worker(&redis, &jobs, "q", "0.1").spawn().unwrap();
    wait_until("the job runs", || started.exists());
    let w = json(&redis, &["workers"]);
    assert_eq!(w[0]["state"], "working");
    assert_eq!(w[0]["job"]["class"], "Slow");
    assert_eq!(w[0]["job"]["queue"], "q");
    assert_eq!(w[0]["health"], "alive");
    assert_eq!(w[0]["pid"], child.id());
    assert!(w[0]["heartbeat_age"].as_i64().unwrap() < 60);
    assert_eq!(json(&redis, &["info"])["working"], 1);
    assert!(ok(&redis, &["workers"]).contains("Slow since"));
    std::fs::write(&gate, "").unwrap();
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn failed_list_and_show_read_every_implementations_records() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    mixed_state(&redis, &jobs);
    let list = json(&redis, &["failed", "list"]);
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    // Newest first: node-resque's failure came last.
    assert_eq!(rows[0]["class"], "NodeFail");
    assert_eq!(rows[0]["exception"], "Error");
    assert_eq!(rows[0]["index"], 1);
    assert!(
        rows[0]["age"].as_i64().is_some(),
        "node's Date string parses: {}",
        rows[0]
    );
    assert_eq!(rows[1]["class"], "Fails");
    assert_eq!(rows[1]["age"].as_i64().map(|a| a < 60), Some(true));
    let only_node = json(&redis, &["failed", "list", "--queue", "nodeq"]);
    assert_eq!(only_node.as_array().unwrap().len(), 1);
    let by_class = json(&redis, &["failed", "list", "--class", "Fails"]);
    assert_eq!(by_class.as_array().unwrap().len(), 1);
    // show round-trips the record the list names.
    let id = rows[0]["id"].as_str().unwrap();
    let shown = json(&redis, &["failed", "show", id]);
    assert_eq!(shown["id"], id);
    let raw = redis.list("resque:failed").remove(1);
    assert_eq!(
        shown["record"],
        serde_json::from_str::<Value>(&raw).unwrap()
    );
    assert!(ok(&redis, &["failed", "list"]).contains("NodeFail"));
    assert!(ok(&redis, &["failed", "show", "0"]).contains("fork job failed"));
}

#[test]
fn retry_runs_the_job_again_keeping_its_id_and_status() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let marker = jobs.scratch("second-run");
    // Fails the first time, succeeds the second.
    jobs.add(
        "Flaky",
        &format!(
            "if [ -e {m} ]; then exit 0; fi; touch {m}; echo 'first run fails' >&2; exit 1",
            m = marker.display()
        ),
    );
    let id = enqueue(&redis, &["q", "Flaky", "--track"]);
    drain(&redis, &jobs, "q");
    let row = json(&redis, &["failed", "list"])[0].clone();
    let (code, out, _) = cli(&redis, &["failed", "retry", row["id"].as_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert!(out.contains("back on queue q"), "{out}");
    let queued: Value = serde_json::from_str(&redis.list("resque:queue:q")[0]).unwrap();
    assert_eq!(queued["id"], id.as_str(), "the payload keeps its id");
    let status: Value =
        serde_json::from_str(&redis.get(&format!("resque:job:{id}:status")).unwrap()).unwrap();
    assert_eq!(status["status"], 1, "waiting again");
    let record: Value = serde_json::from_str(&redis.list("resque:failed")[0]).unwrap();
    assert!(record["retried_at"].as_str().unwrap().ends_with(" UTC"));
    drain(&redis, &jobs, "q");
    let status: Value =
        serde_json::from_str(&redis.get(&format!("resque:job:{id}:status")).unwrap()).unwrap();
    assert_eq!(status["status"], 4, "the retried job completed");
    assert_eq!(
        redis.llen("resque:failed"),
        1,
        "the retried record stays, marked"
    );
    assert!(ok(&redis, &["failed", "list"]).contains("(retried)"));
}

#[test]
fn retry_all_and_remove_and_clear() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    mixed_state(&redis, &jobs);
    let (code, out, _) = cli(&redis, &["failed", "retry", "--all", "--queue", "mail"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.trim(), "retried 1 failed jobs");
    assert_eq!(redis.llen("resque:queue:mail"), 1);
    let (_, out, _) = cli(&redis, &["failed", "retry", "--all"]);
    assert_eq!(
        out.trim(),
        "retried 1 failed jobs",
        "only the one not yet retried"
    );
    assert_eq!(redis.llen("resque:queue:nodeq"), 1);
    let id = json(&redis, &["failed", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(cli(&redis, &["failed", "remove", &id]).0, Some(0));
    assert_eq!(redis.llen("resque:failed"), 1);
    assert_eq!(
        cli(&redis, &["failed", "clear"]).0,
        Some(2),
        "refuses without a terminal or --yes"
    );
    assert_eq!(cli(&redis, &["failed", "clear", "--yes"]).0, Some(0));
    assert_eq!(redis.llen("resque:failed"), 0);
}

#[test]
fn acting_by_id_hits_the_intended_record_after_the_list_changes() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    jobs.add("Fails", "exit 1");
    for n in 0..4 {
        enqueue(&redis, &["q", "Fails", &n.to_string()]);
    }
    drain(&redis, &jobs, "q");
    let list = json(&redis, &["failed", "list"]);
    // Newest first: index 3, 2, 1, 0. Aim at the record holding args [2].
    let target = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["index"] == 2)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The list changes underneath: the oldest record goes, indexes shift.
    let oldest = redis.list("resque:failed").remove(0);
    let _: () = redis.conn().lrem("resque:failed", 1, &oldest).unwrap();
    let (code, _, err) = cli(&redis, &["failed", "retry", &target]);
    assert_eq!(code, Some(0), "{err}");
    let queued: Value = serde_json::from_str(&redis.list("resque:queue:q")[0]).unwrap();
    assert_eq!(queued["args"], serde_json::json!([2]), "the intended job");
    let (code, _, _) = cli(&redis, &["failed", "remove", &target]);
    assert_eq!(code, Some(0));
    let left: Vec<Value> = redis.failures();
    assert_eq!(left.len(), 2);
    assert!(left
        .iter()
        .all(|f| f["payload"]["args"] != serde_json::json!([2])));
    // A stale id is an error, not an action on another record.
    let (code, _, err) = cli(&redis, &["failed", "retry", &target]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no failure record with id"), "{err}");
}

#[test]
fn queue_clear_and_remove() {
    let redis = RedisServer::start();
    enqueue(&redis, &["a", "X"]);
    enqueue(&redis, &["a", "X"]);
    enqueue(&redis, &["b", "X"]);
    assert_eq!(cli(&redis, &["queue", "clear", "a"]).0, Some(2));
    let (code, out, _) = cli(&redis, &["queue", "clear", "a", "--yes"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.trim(), "cleared queue a: 2 jobs deleted");
    assert_eq!(redis.members("resque:queues"), ["a", "b"]);
    let (code, out, _) = cli(&redis, &["queue", "remove", "b", "--yes"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.trim(), "removed queue b: 1 jobs deleted");
    assert_eq!(redis.members("resque:queues"), ["a"]);
}

#[test]
fn prune_reports_what_it_did() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    mixed_state(&redis, &jobs);
    let pruned = json(&redis, &["prune"]);
    let rows = pruned.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{pruned}");
    assert!(rows[0]["worker_id"].as_str().unwrap().ends_with(":nodeq"));
    assert_eq!(rows[0]["job"], "idle");
    assert_eq!(rows[0]["reason"], "its process is gone");
    assert!(redis.members("resque:workers").is_empty());
    assert_eq!(ok(&redis, &["prune"]).trim(), "no dead workers");
}

#[test]
fn errors_have_the_documented_exit_codes() {
    let redis = RedisServer::start();
    let (code, _, err) = cli(&redis, &["failed", "show", "7"]);
    assert_eq!(code, Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(cli(&redis, &["failed", "show", "not-a-ref"]).0, Some(2));
    assert_eq!(cli(&redis, &["queue", "frobnicate"]).0, Some(2));
    let dir = tempfile::tempdir().unwrap();
    let out = run({
        let mut c = Command::new(bin());
        c.env_clear()
            .env(
                "REDIS_URL",
                format!("unix://{}/none.sock", dir.path().display()),
            )
            .arg("info");
        c
    });
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// `resque-fork status ID`, which must succeed.
fn status(redis: &RedisServer, id: &str) -> String {
    let (code, out, err) = cli(redis, &["status", id]);
    assert_eq!(code, Some(0), "status {id}: {err}");
    out
}

#[test]
fn status_knows_every_job_the_cli_enqueued() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    // Tracked by default: the status record follows the job to the end.
    let tracked = enqueue(&redis, &["q", "Echo", r#"{"cli":1}"#]);
    jobs.add("Echo", "cat > /dev/null");
    drain(&redis, &jobs, "q");
    assert!(status(&redis, &tracked).starts_with("complete ("));

    // Untracked: status says where the job is instead.
    let first = enqueue(&redis, &["q", "Slow", "--no-track"]);
    let second = enqueue(&redis, &["q", "Fails", "--no-track"]);
    assert!(redis.get(&format!("resque:job:{first}:status")).is_none());
    assert_eq!(
        status(&redis, &first),
        "queued in q, next to run (it has no status record)\n"
    );
    assert_eq!(
        status(&redis, &second),
        "queued in q at position 1 (1 jobs ahead of it) (it has no status record)\n"
    );
    let located = json(&redis, &["status", &second]);
    assert_eq!(located["where"], "queued");
    assert_eq!(located["position"], 1);

    let gate = jobs.gated("Slow", 0);
    jobs.add("Fails", "exit 3");
    let mut w = worker(&redis, &jobs, "q", "0.05").spawn().unwrap();
    wait_until("the slow job runs", || jobs.job_pids("Slow").len() == 1);
    let running = status(&redis, &first);
    assert!(
        running.starts_with("running: taken from q by worker "),
        "{running}"
    );
    std::fs::write(&gate, "").unwrap();
    wait_until("both jobs ran", || redis.int("resque:stat:processed") == 3);
    signal(w.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut w).success());
    let failed = status(&redis, &second);
    assert!(
        failed.starts_with("failed: in the failed list as "),
        "{failed}"
    );
    assert_eq!(json(&redis, &["status", &second])["where"], "failed");

    // Nowhere at all.
    let (code, _, err) = cli(&redis, &["status", &first]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no status for job")
            && err.contains("not running, queued or in the failed list"),
        "{err}"
    );
}

#[test]
fn bulk_enqueue_tracks_only_when_asked() {
    let redis = RedisServer::start();
    let bulk = |extra: &[&str]| -> Vec<String> {
        let mut c = command(&redis);
        c.args(["enqueue", "q", "Echo", "--stdin"]).args(extra);
        c.stdin(std::process::Stdio::piped());
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"[1]\n[2]\n")
            .unwrap();
        let out = wait_output(child);
        assert_ok(&out);
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    };
    for id in bulk(&[]) {
        assert!(redis.get(&format!("resque:job:{id}:status")).is_none());
    }
    for id in bulk(&["--track"]) {
        assert!(status(&redis, &id).starts_with("waiting ("));
    }
}

#[test]
fn a_bulk_enqueue_that_fails_midway_says_how_many_went_in() {
    let redis = RedisServer::start();
    // Room for a few batches of these jobs, not for all of them.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("4mb")
        .query(&mut redis.conn())
        .unwrap();
    let line = format!("[\"{}\"]\n", "x".repeat(1000));
    let mut c = command(&redis);
    c.args(["enqueue", "q", "Big", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(line.repeat(10_000).as_bytes()).unwrap();
    }
    let out = wait_output(child);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let printed = String::from_utf8(out.stdout).unwrap().lines().count();
    let queued = redis.llen("resque:queue:q") as usize;
    assert!(queued > 0 && queued < 10_000, "{queued}");
    assert_eq!(printed, queued, "the ids printed are those enqueued");
    assert!(
        err.contains(&format!("{queued} of 10000 jobs were enqueued before this")),
        "{err}"
    );
}

/// A failure record as a worker writes it, for `class` with `args`.
fn failure_text(class: &str, error: &str, n: u64) -> String {
    serde_json::json!({
        "failed_at": "2024/01/15 10:30:00 UTC",
        "payload": {"class": class, "args": [n]},
        "exception": "RuntimeError",
        "error": error,
        "backtrace": [],
        "worker": "web1:1:q",
        "queue": "q",
    })
    .to_string()
}

#[test]
fn failure_ids_refuse_ambiguity_and_a_second_retry_needs_again() {
    use resque_fork::payload::record_id;
    let redis = RedisServer::start();
    // Two records whose ids share their first 6 hex digits.
    let mut seen = std::collections::HashMap::new();
    let (a, b) = (0u64..)
        .find_map(|n| {
            let text = failure_text("A", "boom", n);
            let prefix = record_id(&text)[..6].to_string();
            seen.insert(prefix.clone(), text.clone())
                .map(|earlier| (earlier, text))
        })
        .unwrap();
    for t in [&a, &b] {
        let _: () = redis.conn().rpush("resque:failed", t).unwrap();
    }
    let (ida, idb) = (record_id(&a), record_id(&b));
    let (code, _, err) = cli(&redis, &["failed", "show", &ida[..6]]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&ida) && err.contains(&idb),
        "lists the candidates: {err}"
    );
    // More of the id names one.
    assert!(ok(&redis, &["failed", "show", &ida]).contains(&format!("failure {ida}")));

    // A retried record is not retried again by mistake.
    ok(&redis, &["failed", "retry", &ida]);
    let (code, _, err) = cli(&redis, &["failed", "retry", &ida]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--again"), "{err}");
    assert_eq!(redis.llen("resque:queue:q"), 1);
    ok(&redis, &["failed", "retry", &ida, "--again"]);
    assert_eq!(redis.llen("resque:queue:q"), 2);
    // Marking it retried never changed its id.
    assert!(ok(&redis, &["failed", "show", &ida]).contains("retried_at"));
    // An index says so with '#'.
    assert!(ok(&redis, &["failed", "show", "#1"]).contains(&format!("failure {idb}")));
}

#[test]
fn text_from_jobs_cannot_rewrite_the_terminal() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let nasty = "\u{1b}[2J\u{1b}]0;pwned\u{7}\r";
    let text = failure_text(nasty, nasty, 1);
    let _: () = redis.conn().rpush("resque:failed", &text).unwrap();
    let id = resque_fork::payload::record_id(&text);
    for args in [
        &["failed", "list"][..],
        &["failed", "show", &id][..],
        &["workers"][..],
    ] {
        let (code, out, err) = cli(&redis, args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{7}'),
            "{args:?}: {out:?}"
        );
    }
    // Nor the worker's log, which names the job's class.
    redis.push(
        "q",
        &serde_json::json!({"class": nasty, "args": []}).to_string(),
    );
    let mut cmd = worker(&redis, &jobs, "q", "0");
    cmd.env("VERBOSE", "1");
    let out = run(cmd);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("\\u{1b}[2J"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log:?}");
}

#[test]
fn completions_and_the_man_page_come_from_the_same_definitions_as_help() {
    let redis = RedisServer::start();
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = cli(&redis, &["completions", shell]);
        assert_eq!(code, Some(0), "{shell}: {err}");
        for word in ["enqueue", "failed", "--queue"] {
            assert!(out.contains(word), "{shell} completions lack {word}");
        }
    }
    let (code, man, err) = cli(&redis, &["man"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(man.contains(".TH resque-fork 1"), "{man}");
    assert!(
        man.contains(r"\-\-job\-env\-keep\-redis"),
        "the man page names every option"
    );
}
