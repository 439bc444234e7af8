//! The records a worker writes, byte for byte against docs/redis-contract.md:
//! registration, heartbeat, the in-flight record, php status and pid keys,
//! and what pruning and shutdown leave behind.

mod common;

use common::*;
use redis::Commands;
use serde_json::Value;

fn is_ruby_time(s: &str) -> bool {
    // 2024-01-15 10:30:00 +0000
    let b = s.as_bytes();
    s.len() == 25 && &s[19..] == " +0000" && b[4] == b'-' && b[10] == b' ' && b[13] == b':'
}

fn is_iso_offset(s: &str) -> bool {
    // 2024-01-15T10:30:00+00:00
    s.len() == 25 && &s[10..11] == "T" && s.ends_with("+00:00")
}

fn is_iso_z(s: &str) -> bool {
    s.len() == 20 && &s[10..11] == "T" && s.ends_with('Z')
}

#[test]
fn registration_heartbeat_in_flight_record_and_status_while_a_job_runs() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let gate = jobs.gated("Slow", 0);
    let id = enqueue(&redis, &["mail", "Slow", "7", "welcome", "--track"]);
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let status_key = format!("resque:job:{id}:status");
    let waiting: Value = serde_json::from_str(&redis.get(&status_key).unwrap()).unwrap();
    assert_eq!(waiting["status"], 1);
    let payload = redis.list("resque:queue:mail").remove(0);
    assert_eq!(redis.members("resque:queues"), ["mail"]);

    let mut child = worker(&redis, &jobs, "high,mail", "0.05").spawn().unwrap();
    let pid = child.id();
    let worker_id = format!("{}:{pid}:high,mail", hostname());
    wait_until("the job starts", || {
        jobs.job_pids("Slow").first().copied().is_some()
    });

    // Registration (contract 3).
    assert_eq!(redis.members("resque:workers"), vec![worker_id.clone()]);
    let started = redis
        .get(&format!("resque:worker:{worker_id}:started"))
        .unwrap();
    assert!(is_ruby_time(&started), "{started}");
    let beat: String = redis
        .conn()
        .hget("resque:workers:heartbeat", &worker_id)
        .unwrap();
    assert!(is_iso_offset(&beat), "{beat}");

    // The in-flight record, built around the payload bytes (contract 4), with
    // the job's process group once its process runs.
    let job_pid = jobs.job_pids("Slow").first().copied().unwrap();
    let key = format!("resque:worker:{worker_id}");
    wait_until("the record names the job's process group", || {
        redis
            .get(&key)
            .is_some_and(|r| r.contains(&format!(r#""pgid":{job_pid},"#)))
    });
    let record = redis.get(&key).unwrap();
    let run_at = &record[record.find("\"run_at\":\"").unwrap() + 10..][..20];
    assert!(is_iso_z(run_at), "{run_at}");
    // Ours: the process's token, last (peers ignore fields they do not know).
    let token = &record[record.find("\"token\":\"").unwrap() + 9..][..32];
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    assert_eq!(
        record,
        format!(
            r#"{{"queue":"mail","run_at":"{run_at}","payload":{payload},"worker":"{}:{pid}","pgid":{job_pid},"token":"{token}"}}"#,
            hostname()
        )
    );

    // php status 2 (started kept) and the pid key of the job process.
    let running: Value = serde_json::from_str(&redis.get(&status_key).unwrap()).unwrap();
    assert_eq!(running["status"], 2);
    assert_eq!(running["started"], waiting["started"]);
    assert_eq!(running["result"], Value::Null);
    wait_until("the pid key is set", || {
        redis.get(&format!("resque:job:{id}:pid")) == Some(job_pid.to_string())
    });

    std::fs::write(&gate, "").unwrap();
    wait_until("the job is recorded", || {
        redis.int("resque:stat:processed") == 1
    });
    let done_text = redis.get(&status_key).unwrap();
    let done: Value = serde_json::from_str(&done_text).unwrap();
    assert_eq!(
        done_text,
        format!(
            r#"{{"status":4,"updated":{},"started":{},"result":null}}"#,
            done["updated"], waiting["started"]
        )
    );
    let ttl: i64 = redis.conn().ttl(&status_key).unwrap();
    assert!((86_000..=86_400).contains(&ttl), "{ttl}");
    assert_eq!(redis.get(&format!("resque:job:{id}:pid")), None);
    assert_eq!(redis.get(&format!("resque:worker:{worker_id}")), None);
    assert_eq!(redis.int(&format!("resque:stat:processed:{worker_id}")), 1);

    signal(pid, libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
    assert!(redis.members("resque:workers").is_empty());
    let leftovers: Vec<String> = redis
        .keys()
        .into_iter()
        .filter(|k| k.contains(&pid.to_string()))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(!redis
        .keys()
        .contains(&"resque:workers:heartbeat".to_string()));
}

#[test]
fn tracked_failure_goes_1_2_3_with_ttl_and_cli_status_reads_it() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let gate = jobs.gated("Bad", 1);
    let id = enqueue(&redis, &["q", "Bad", "--track"]);
    let status = |redis: &RedisServer| {
        let out = run({
            let mut c = command(redis);
            c.args(["status", &id]);
            c
        });
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, text) = status(&redis);
    assert_eq!(code, Some(0));
    assert!(text.starts_with("waiting (updated "), "{text}");
    let mut child = worker(&redis, &jobs, "q", "0").spawn().unwrap();
    wait_until("the job starts", || {
        jobs.job_pids("Bad").first().copied().is_some()
    });
    let (code, text) = status(&redis);
    assert_eq!(code, Some(0));
    assert!(text.starts_with("running (updated "), "{text}");
    std::fs::write(&gate, "").unwrap();
    assert!(wait_exit(&mut child).success());
    let rec: Value =
        serde_json::from_str(&redis.get(&format!("resque:job:{id}:status")).unwrap()).unwrap();
    assert_eq!(rec["status"], 3);
    let ttl: i64 = redis.conn().ttl(format!("resque:job:{id}:status")).unwrap();
    assert!(ttl > 86_000);
    let (code, text) = status(&redis);
    assert_eq!(code, Some(0));
    assert!(text.starts_with("failed (updated "), "{text}");
    assert!(text.contains("expires in"), "{text}");
}

#[test]
fn status_of_an_unknown_job_is_a_clear_error() {
    let redis = RedisServer::start();
    let out = run({
        let mut c = command(&redis);
        c.args(["status", "feedfacefeedfacefeedfacefeedface"]);
        c
    });
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1);
    assert!(err.contains("no status for job feedface"), "{err}");
}

#[test]
fn untracked_jobs_never_get_a_status_key() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    jobs.add("Ok", "true");
    jobs.add("Bad", "exit 1");
    let a = enqueue(&redis, &["q", "Ok", "--no-track"]);
    let b = enqueue(&redis, &["q", "Bad", "--no-track"]);
    redis.push(
        "q",
        r#"{"class":"Ok","args":[],"id":"php1","prefix":"shop"}"#,
    );
    drain(&redis, &jobs, "q");
    let keys = redis.keys();
    assert!(!keys.iter().any(|k| k.contains(":status")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains(":pid")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains(&a) || k.contains(&b)));
}

#[test]
fn php_payload_prefix_names_the_status_key() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    jobs.add("Ok", "true");
    let key = "resque:job:shop_abc:status";
    let _: () = redis
        .conn()
        .set(
            key,
            r#"{"status":1,"updated":1705314600,"started":1705314600,"result":null}"#,
        )
        .unwrap();
    redis.push(
        "q",
        r#"{"class":"Ok","args":[{"a":1}],"id":"abc","prefix":"shop"}"#,
    );
    drain(&redis, &jobs, "q");
    let text = redis.get(key).unwrap();
    assert!(
        text.starts_with(r#"{"status":4,"updated":"#)
            && text.ends_with(r#","started":1705314600,"result":null}"#),
        "{text}"
    );
}

#[test]
fn enqueue_writes_the_payload_and_parses_args_as_json_or_strings() {
    let redis = RedisServer::start();
    let id = enqueue(
        &redis,
        &[
            "mail",
            "Mailer",
            "7",
            "welcome",
            r#"{"a":[1]}"#,
            "null",
            "[1",
            "--no-track",
        ],
    );
    let payload = redis.list("resque:queue:mail").remove(0);
    let v: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(v["class"], "Mailer");
    assert_eq!(
        v["args"],
        serde_json::json!([7, "welcome", {"a":[1]}, null, "[1"])
    );
    assert_eq!(v["id"], id.as_str());
    assert!(v["queue_time"].is_f64());
    assert!(
        payload.starts_with(r#"{"class":"Mailer","args":[7,"#),
        "{payload}"
    );
    assert_eq!(redis.members("resque:queues"), ["mail"]);
    assert!(!redis.keys().iter().any(|k| k.ends_with(":status")));
    // Without --no-track the job is tracked.
    let tracked = enqueue(&redis, &["mail", "Mailer"]);
    let status: Value =
        serde_json::from_str(&redis.get(&format!("resque:job:{tracked}:status")).unwrap()).unwrap();
    assert_eq!(status["status"], 1);
}

#[test]
fn enqueue_rejects_bad_input_with_one_line() {
    let redis = RedisServer::start();
    for args in [
        vec!["enqueue", "bad:queue", "A"],
        vec!["enqueue", "q"],
        vec!["enqueue", "q", "A", "--nope"],
    ] {
        let out = run({
            let mut c = command(&redis);
            c.args(&args);
            c
        });
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    assert!(redis.keys().is_empty());
}

#[test]
fn startup_prunes_dead_workers_of_this_host_and_files_their_jobs() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    // A pid that is certainly dead: a child we spawned and reaped.
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let host = hostname();
    let dead_id = format!("{host}:{dead_pid}:mail");
    let other_host = "elsewhere:1:mail".to_string();
    let payload = r#"{"class":"Mailer","args":[1],"id":"tracked1"}"#;
    let mut c = redis.conn();
    let _: () = c.sadd("resque:workers", &dead_id).unwrap();
    let _: () = c.sadd("resque:workers", &other_host).unwrap();
    let _: () = c
        .set(
            format!("resque:worker:{dead_id}"),
            format!(r#"{{"queue":"mail","run_at":"2024-01-15T10:30:00Z","payload":{payload}}}"#),
        )
        .unwrap();
    let _: () = c
        .set(format!("resque:worker:{dead_id}:started"), "x")
        .unwrap();
    let _: () = c
        .set(format!("resque:stat:processed:{dead_id}"), 3)
        .unwrap();
    // A heartbeat past twice HEARTBEAT_INTERVAL but short of PRUNE_AGE: it
    // is the pid rule that finds this worker dead.
    let (now, _): (i64, i64) = redis::cmd("TIME").query(&mut c).unwrap();
    let _: () = c
        .hset(
            "resque:workers:heartbeat",
            &dead_id,
            resque_fork::timefmt::iso8601_offset(now - 100),
        )
        .unwrap();
    let _: () = c
        .set(
            "resque:job:tracked1:status",
            r#"{"status":2,"updated":1,"started":1,"result":null}"#,
        )
        .unwrap();

    drain(&redis, &jobs, "mail");

    assert_eq!(redis.members("resque:workers"), [other_host]);
    let keys = redis.keys();
    assert!(!keys.iter().any(|k| k.contains(&dead_id)), "{keys:?}");
    let failures = redis.failures();
    assert_eq!(failures.len(), 1);
    let f = &failures[0];
    assert_eq!(f["exception"], "Resque::DirtyExit");
    assert_eq!(f["error"], "Job still being processed");
    assert_eq!(f["worker"], dead_id.as_str());
    assert_eq!(f["queue"], "mail");
    assert_eq!(
        f["payload"],
        serde_json::from_str::<Value>(payload).unwrap()
    );
    assert_eq!(redis.int("resque:stat:failed"), 1);
    let status: Value =
        serde_json::from_str(&redis.get("resque:job:tracked1:status").unwrap()).unwrap();
    assert_eq!(status["status"], 3);
}

#[test]
fn term_during_a_job_kills_it_records_a_dirty_exit_and_unregisters() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let _gate = jobs.gated("Forever", 0);
    redis.push("q", r#"{"class":"Forever","args":[]}"#);
    let mut child = worker(&redis, &jobs, "q", "5").spawn().unwrap();
    wait_until("the job starts", || {
        jobs.job_pids("Forever").first().copied().is_some()
    });
    signal(child.id(), libc::SIGTERM);
    assert!(wait_exit(&mut child).success());
    let f = &redis.failures()[0];
    assert_eq!(f["exception"], "Resque::DirtyExit");
    assert!(f["error"].as_str().unwrap().ends_with("SIGKILL (signal 9)"));
    assert_eq!(redis.int("resque:stat:processed"), 1);
    assert!(redis.members("resque:workers").is_empty());
    let job_pid = jobs.job_pids("Forever").first().copied().unwrap();
    assert!(!alive(job_pid));
}

#[test]
fn quit_during_a_job_lets_it_finish() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let gate = jobs.gated("Slow", 0);
    redis.push("q", r#"{"class":"Slow","args":[]}"#);
    redis.push("q", r#"{"class":"Slow","args":[]}"#);
    let mut child = worker(&redis, &jobs, "q", "5").spawn().unwrap();
    wait_until("the job starts", || {
        jobs.job_pids("Slow").first().copied().is_some()
    });
    signal(child.id(), libc::SIGQUIT);
    std::fs::write(&gate, "").unwrap();
    assert!(wait_exit(&mut child).success());
    assert!(redis.failures().is_empty());
    assert_eq!(redis.int("resque:stat:processed"), 1);
    assert_eq!(redis.llen("resque:queue:q"), 1, "no new job after QUIT");
    assert!(redis.members("resque:workers").is_empty());
}

#[test]
fn custom_prefix_follows_the_php_rule() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    jobs.add("Ok", "true");
    let _: () = redis
        .conn()
        .rpush("myapp:queue:q", r#"{"class":"Ok","args":[]}"#)
        .unwrap();
    let mut cmd = worker(&redis, &jobs, "q", "0");
    cmd.env("PREFIX", "myapp");
    let out = run(cmd);
    assert!(out.status.success());
    assert_eq!(redis.int("myapp:stat:processed"), 1);
    assert!(!redis.keys().iter().any(|k| k.starts_with("resque:")));
}

#[test]
fn heartbeat_is_refreshed_while_a_long_job_runs() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let gate = jobs.gated("Long", 0);
    redis.push("q", r#"{"class":"Long","args":[]}"#);
    let mut cmd = worker(&redis, &jobs, "q", "5");
    cmd.env("HEARTBEAT_INTERVAL", "0.2");
    let mut child = cmd.spawn().unwrap();
    let id = format!("{}:{}:q", hostname(), child.id());
    wait_until("the job starts", || {
        jobs.job_pids("Long").first().copied().is_some()
    });
    let beat = |redis: &RedisServer| -> Option<String> {
        redis.conn().hget("resque:workers:heartbeat", &id).unwrap()
    };
    let first = beat(&redis).expect("a heartbeat before the job");
    wait_until("a newer heartbeat arrives while the job runs", || {
        beat(&redis).is_some_and(|b| b > first)
    });
    assert!(
        redis.get(&format!("resque:worker:{id}")).is_some(),
        "still working"
    );
    std::fs::write(&gate, "").unwrap();
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn pause_all_workers_key_stops_new_jobs_until_cleared() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let out = jobs.scratch("ran");
    jobs.add("Touch", &format!("touch {}", out.display()));
    let _: () = redis
        .conn()
        .set("resque:pause-all-workers", " TRUE\n")
        .unwrap();
    redis.push("q", r#"{"class":"Touch","args":[]}"#);
    // With INTERVAL=0 a paused worker finds nothing to do and exits, as in Ruby.
    drain(&redis, &jobs, "q");
    assert!(!out.exists());
    assert_eq!(redis.llen("resque:queue:q"), 1);
    let _: () = redis.conn().del("resque:pause-all-workers").unwrap();
    drain(&redis, &jobs, "q");
    assert!(out.exists());
}

#[test]
fn variables_set_to_the_empty_string_count_as_unset() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    jobs.add("Ok", "true");
    redis.push("q", r#"{"class":"Ok","args":[]}"#);
    let mut cmd = worker(&redis, &jobs, "q", "0");
    cmd.env("PREFIX", "")
        .env("QUEUES", "")
        .env("REDIS_BACKEND", "")
        .env("PIDFILE", "")
        .env("VERBOSE", "");
    let out = run(cmd);
    assert_ok(&out);
    assert!(out.stderr.is_empty(), "not verbose");
    assert_eq!(redis.int("resque:stat:processed"), 1);
    let mut cmd = worker(&redis, &jobs, "q", "");
    cmd.env("QUEUE", "q");
    let mut child = cmd.spawn().unwrap();
    wait_until("the worker registers with the default interval", || {
        !redis.members("resque:workers").is_empty()
    });
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn pidfile_holds_the_worker_pid_while_it_runs() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let pidfile = jobs.scratch("worker.pid");
    let mut cmd = worker(&redis, &jobs, "q", "5");
    cmd.env("PIDFILE", &pidfile);
    let mut child = cmd.spawn().unwrap();
    wait_until("the pidfile appears", || pidfile.exists());
    let text = std::fs::read_to_string(&pidfile).unwrap();
    assert_eq!(text.trim(), child.id().to_string());
    signal(child.id(), libc::SIGTERM);
    assert!(wait_exit(&mut child).success());
    assert!(!pidfile.exists());
}

#[test]
fn bulk_enqueue_writes_exactly_the_payloads_given_in_order() {
    let redis = RedisServer::start();
    let mut lines: String = (0..2500)
        .map(|i| format!("[{i},\"x\",{{\"n\":1.50}}]\n"))
        .collect();
    lines.push_str("\n\"single\"\n");
    let out = {
        use std::io::Write;
        let mut cmd = command(&redis);
        cmd.args(["enqueue", "bulk", "Job", "--stdin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(lines.as_bytes())
            .unwrap();
        wait_output(child)
    };
    assert_ok(&out);
    let ids: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(ids.len(), 2501);
    let queued = redis.list("resque:queue:bulk");
    assert_eq!(queued.len(), 2501);
    for (i, (payload, id)) in queued.iter().zip(&ids).enumerate().take(2500) {
        let prefix =
            format!(r#"{{"class":"Job","args":[{i},"x",{{"n":1.50}}],"id":"{id}","queue_time":"#);
        assert!(payload.starts_with(&prefix), "{payload}");
    }
    let last: Value = serde_json::from_str(&queued[2500]).unwrap();
    assert_eq!(last["args"], serde_json::json!(["single"]));
    assert_eq!(redis.members("resque:queues"), ["bulk"]);

    // One bad line: nothing is enqueued.
    let mut cmd = command(&redis);
    cmd.args(["enqueue", "other", "Job", "--stdin"])
        .stdin(std::process::Stdio::piped());
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"[1]\nnot json\n")
            .unwrap();
    }
    let out = wait_output(child);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(redis.llen("resque:queue:other"), 0);
}

#[test]
fn a_counter_that_is_not_an_integer_is_left_alone_and_the_job_still_recorded() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    jobs.add("Bad", "exit 1");
    let _: () = redis.conn().set("resque:stat:failed", "abc").unwrap();
    let id = enqueue(&redis, &["q", "Bad"]);
    let out = drain(&redis, &jobs, "q");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("resque:stat:failed is not an integer"),
        "{log}"
    );
    assert_eq!(redis.failures().len(), 1);
    assert_eq!(redis.int("resque:stat:processed"), 1);
    assert_eq!(redis.get("resque:stat:failed").as_deref(), Some("abc"));
    let status: Value =
        serde_json::from_str(&redis.get(&format!("resque:job:{id}:status")).unwrap()).unwrap();
    assert_eq!(status["status"], 3, "the record step ran to its end");
}

#[test]
fn a_failed_list_of_the_wrong_type_keeps_the_job_until_it_can_be_filed() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    jobs.add("Bad", "exit 1");
    let _: () = redis.conn().hset("resque:failed", "x", "y").unwrap();
    let log = jobs.scratch("worker.log");
    let mut cmd = worker(&redis, &jobs, "q", "0.1");
    log_to(&mut cmd, &log);
    let mut child = cmd.spawn().unwrap();
    redis.push("q", r#"{"class":"Bad","args":[]}"#);
    wait_until("the worker says why it cannot record", || {
        logged(&log, "WRONGTYPE") >= 1
    });
    let id = format!("{}:{}:q", hostname(), child.id());
    assert!(
        redis.get(&format!("resque:worker:{id}")).is_some(),
        "the job is still held, not half recorded"
    );
    assert_eq!(redis.int("resque:stat:processed"), 0);
    let _: () = redis.conn().del("resque:failed").unwrap();
    wait_until("the job is recorded once the list can take it", || {
        redis.int("resque:stat:processed") == 1
    });
    assert_eq!(redis.failures().len(), 1);
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn the_pid_key_is_removed_only_while_it_names_our_job_process() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let gate = jobs.gated("Slow", 0);
    let id = enqueue(&redis, &["q", "Slow"]);
    let mut child = worker(&redis, &jobs, "q", "0.1").spawn().unwrap();
    let pid_key = format!("resque:job:{id}:pid");
    wait_until("the pid key names the job process", || {
        jobs.job_pids("Slow")
            .first()
            .is_some_and(|p| redis.get(&pid_key) == Some(p.to_string()))
    });
    // Another run of the same job id, elsewhere, wrote its own pid since.
    let _: () = redis.conn().set(&pid_key, "999999").unwrap();
    std::fs::write(&gate, "").unwrap();
    wait_until("the job is recorded", || {
        redis.int("resque:stat:processed") == 1
    });
    assert_eq!(redis.get(&pid_key).as_deref(), Some("999999"));
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
}
