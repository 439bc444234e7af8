//! End-to-end tests of one worker process against a private redis-server.

mod common;

use common::*;
use serde_json::{json, Value};

#[test]
fn successful_job_gets_args_on_stdin_and_its_environment() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let out = jobs.scratch("out");
    jobs.add(
        "Mailer",
        &format!(
            "{{ cat; echo; echo \"$RESQUE_JOB_ID|$RESQUE_QUEUE|$RESQUE_CLASS|$RESQUE_WORKER\"; }} > {}",
            out.display()
        ),
    );
    redis.push(
        "mail",
        r#"{"class":"Mailer","args":[7,"welcome",{"a":[1,2]}],"id":"job1","extra":true}"#,
    );
    drain(&redis, &jobs, "mail");
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(r#"[7,"welcome",{"a":[1,2]}]"#));
    let env: Vec<&str> = lines.next().unwrap().split('|').collect();
    assert_eq!(env[..3], ["job1", "mail", "Mailer"]);
    assert!(
        env[3].starts_with(&format!("{}:", hostname())),
        "{}",
        env[3]
    );
    assert!(env[3].ends_with(":mail"));
    assert_eq!(redis.int("resque:stat:processed"), 1);
    assert_eq!(redis.int("resque:stat:failed"), 0);
    assert!(redis.failures().is_empty());
}

#[test]
fn non_zero_exit_is_a_failure_with_the_stderr_tail() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    jobs.add(
        "Broken",
        "cat >/dev/null; head -c 10000 /dev/zero | tr '\\0' x >&2; echo >&2; echo 'database is down' >&2; exit 3",
    );
    let payload = r#"{"class":"Broken","args":["x"]}"#;
    redis.push("q", payload);
    drain(&redis, &jobs, "q");
    let failures = redis.failures();
    assert_eq!(failures.len(), 1);
    let f = &failures[0];
    assert_eq!(f["exception"], "ResqueFork::JobFailed");
    let error = f["error"].as_str().unwrap();
    assert!(error.starts_with("exited with code 3: "), "{error}");
    assert!(error.ends_with("database is down"), "{error}");
    assert!(
        error.len() < 2200,
        "stderr tail must be bounded: {}",
        error.len()
    );
    assert_eq!(
        f["payload"],
        serde_json::from_str::<Value>(payload).unwrap()
    );
    assert_eq!(f["queue"], "q");
    assert_eq!(redis.int("resque:stat:processed"), 1);
    assert_eq!(redis.int("resque:stat:failed"), 1);
}

#[test]
fn child_killed_by_a_signal_is_a_dirty_exit_in_rubys_words() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    jobs.add("Suicide", "kill -9 $$");
    redis.push("q", r#"{"class":"Suicide","args":[]}"#);
    drain(&redis, &jobs, "q");
    let f = &redis.failures()[0];
    assert_eq!(f["exception"], "Resque::DirtyExit");
    let error = f["error"].as_str().unwrap();
    let pid = error
        .strip_prefix("Child process received unhandled signal pid ")
        .and_then(|rest| rest.strip_suffix(" SIGKILL (signal 9)"))
        .unwrap_or_else(|| panic!("wording: {error}"));
    assert!(pid.parse::<u32>().is_ok(), "{error}");
    assert_eq!(redis.int("resque:stat:failed"), 1);
}

#[test]
fn unknown_class_fails_clearly() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    redis.push("q", r#"{"class":"Nowhere","args":[]}"#);
    drain(&redis, &jobs, "q");
    let f = &redis.failures()[0];
    assert_eq!(f["exception"], "ResqueFork::UnknownJobClass");
    assert!(f["error"].as_str().unwrap().contains("Nowhere"));
    assert_eq!(redis.int("resque:stat:processed"), 1);
}

#[test]
fn a_program_that_ignores_megabytes_of_args_does_not_hang() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let out = jobs.scratch("ran");
    jobs.add("Ignore", &format!("touch {}", out.display()));
    jobs.add("Count", &format!("wc -c > {}.count", out.display()));
    let big = "x".repeat(4 << 20);
    redis.push("q", &json!({"class":"Ignore","args":[big]}).to_string());
    redis.push("q", &json!({"class":"Count","args":[big]}).to_string());
    drain(&redis, &jobs, "q");
    assert!(out.exists());
    let count = std::fs::read_to_string(format!("{}.count", out.display())).unwrap();
    assert_eq!(count.trim().parse::<usize>().unwrap(), big.len() + 4);
    assert!(redis.failures().is_empty());
}

#[test]
fn bad_payloads_become_failure_records_and_the_worker_carries_on() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let out = jobs.scratch("ok");
    jobs.add("Ok", &format!("touch {}", out.display()));
    let bad = [
        ("not json", "payload is not valid JSON"),
        (r#"{"class":"Ok","args":[1"#, "payload is not valid JSON"),
        ("[1,2]", "payload is not a JSON object"),
        ("\"str\"", "payload is not a JSON object"),
        (r#"{"args":[]}"#, "payload has no string \"class\" field"),
        (
            r#"{"class":7,"args":[]}"#,
            "payload has no string \"class\" field",
        ),
        (
            r#"{"class":"Ok","args":{"a":1}}"#,
            "payload \"args\" is not an array",
        ),
    ];
    for (payload, _) in &bad {
        redis.push("q", payload);
    }
    redis.push("q", r#"{"class":"Ok","args":[]}"#);
    drain(&redis, &jobs, "q");
    assert!(out.exists(), "the good job after the bad ones ran");
    let failures = redis.failures();
    assert_eq!(failures.len(), bad.len());
    for (f, (payload, why)) in failures.iter().zip(bad) {
        assert_eq!(f["exception"], "ResqueFork::MalformedPayload");
        assert!(f["error"].as_str().unwrap().starts_with(why), "{f}");
        assert!(f["backtrace"].is_array());
        // The payload is an object or null, never a bare string, and the
        // text is never lost.
        match &f["payload"] {
            Value::Null => assert_eq!(f["raw"], payload),
            obj @ Value::Object(_) => {
                assert_eq!(obj, &serde_json::from_str::<Value>(payload).unwrap())
            }
            other => panic!("payload must be an object or null: {other}"),
        }
    }
    assert_eq!(redis.int("resque:stat:processed"), bad.len() as i64 + 1);
    assert_eq!(redis.int("resque:stat:failed"), bad.len() as i64);
}

#[test]
fn exec_jobs_get_the_args_text_byte_for_byte() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let log = jobs.logging("");
    let args = r#"[12345678901234567890123, -5e-8,1.50 ,{"b":1,"a":"\u00e9\/"}]"#;
    redis.push("q", &format!(r#"{{"class":"Log","args":{args}}}"#));
    drain(&redis, &jobs, "q");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), format!("{args}\n"));
    assert!(redis.failures().is_empty());
}

#[test]
fn a_payload_that_is_not_utf8_is_refused_with_its_bytes_kept() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let log = jobs.logging("");
    let payload: &[u8] = b"{\"class\":\"Log\",\"args\":[\"caf\xe9\"]}";
    let _: () = redis::cmd("RPUSH")
        .arg("resque:queue:q")
        .arg(payload)
        .query(&mut redis.conn())
        .unwrap();
    redis.push("q", r#"{"class":"Log","args":["after"]}"#);
    drain(&redis, &jobs, "q");
    // Never run with altered input; the next job runs.
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "[\"after\"]\n");
    let failures = redis.failures();
    assert_eq!(failures.len(), 1);
    let f = &failures[0];
    assert_eq!(f["exception"], "ResqueFork::MalformedPayload");
    assert!(
        f["error"]
            .as_str()
            .unwrap()
            .starts_with("payload is not valid UTF-8 (invalid byte at offset 27)"),
        "{f}"
    );
    assert_eq!(f["payload"], Value::Null);
    assert_eq!(f["raw_base64"], resque_fork::payload::base64(payload));
    assert_eq!(f["queue"], "q");
}

#[test]
fn class_names_that_escape_jobs_dir_are_refused_never_run() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let canary = jobs.scratch("canary");
    // A program just outside JOBS_DIR, and a hidden one inside it.
    let evil = format!("#!/bin/sh\ntouch {}\n", canary.display());
    for path in [jobs.scratch("evil"), jobs.path().join(".hidden")] {
        std::fs::write(&path, &evil).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let names = [
        "../evil".to_string(),
        format!("{}", jobs.scratch("evil").display()),
        ".hidden".into(),
        "..".into(),
        "".into(),
        "a\u{0}b".into(),
    ];
    for name in &names {
        redis.push("q", &json!({"class": name, "args": []}).to_string());
    }
    drain(&redis, &jobs, "q");
    assert!(!canary.exists(), "an escaping class name was executed");
    let failures = redis.failures();
    assert_eq!(failures.len(), names.len());
    for f in failures {
        assert_eq!(f["exception"], "ResqueFork::InvalidJobClass", "{f}");
    }
}

#[test]
fn higher_queues_drain_first() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let log = jobs.logging("");
    // Filled lowest priority first, and with an empty queue between.
    for queue in ["low", "mid", "high"] {
        for i in 0..4 {
            redis.push(
                queue,
                &json!({"class":"Log","args":[format!("{queue}{i}")]}).to_string(),
            );
        }
    }
    drain(&redis, &jobs, "high,empty,mid,low");
    let order = std::fs::read_to_string(&log).unwrap();
    let order: Vec<&str> = order.lines().collect();
    let expected: Vec<String> = ["high", "mid", "low"]
        .iter()
        .flat_map(|q| (0..4).map(move |i| format!("[\"{q}{i}\"]")))
        .collect();
    assert_eq!(order, expected);
}

#[test]
fn star_over_ten_thousand_queues_keeps_priority() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let log = jobs.logging("");
    let names: Vec<String> = (0..10_000).map(|i| format!("tenant{i:05}")).collect();
    let _: () = redis::cmd("SADD")
        .arg("resque:queues")
        .arg(&names)
        .query(&mut redis.conn())
        .unwrap();
    // The last queue filled first; one job in the middle, one in the first.
    for (queue, tag) in [
        ("tenant09999", "last"),
        ("tenant05000", "mid"),
        ("tenant00000", "first"),
    ] {
        redis.push(queue, &json!({"class":"Log","args":[tag]}).to_string());
    }
    drain(&redis, &jobs, "*");
    let order = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        order.lines().collect::<Vec<_>>(),
        [r#"["first"]"#, r#"["mid"]"#, r#"["last"]"#]
    );
}

#[test]
fn over_a_long_list_a_job_in_an_empty_queue_waits_at_most_an_interval() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let log = jobs.logging("sleep 0.05");
    let names: Vec<String> = (0..3_000).map(|i| format!("t{i:05}")).collect();
    let _: () = redis::cmd("SADD")
        .arg("resque:queues")
        .arg(&names)
        .query(&mut redis.conn())
        .unwrap();
    for i in 0..40 {
        redis.push(
            "t02999",
            &format!(r#"{{"class":"Log","args":["last{i}"]}}"#),
        );
    }
    let mut child = worker(&redis, &jobs, "*", "0.2").spawn().unwrap();
    wait_until("the worker is busy with the last queue", || {
        line_count(&log) >= 2
    });
    // The first queue, empty until now, gets a job while the worker works.
    redis.push("t00000", r#"{"class":"Log","args":["first"]}"#);
    wait_until("the job in the first queue runs", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("first")
    });
    let order = std::fs::read_to_string(&log).unwrap();
    let seen_at = order.lines().position(|l| l.contains("first")).unwrap();
    assert!(
        seen_at < 40,
        "taken while the last queue still had jobs: {seen_at}"
    );
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn star_sees_a_queue_created_after_start() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let out = jobs.scratch("ran");
    jobs.add("Touch", &format!("touch {}", out.display()));
    let mut child = worker(&redis, &jobs, "*", "0.05").spawn().unwrap();
    wait_until("the worker registers", || {
        !redis.members("resque:workers").is_empty()
    });
    let id = &redis.members("resque:workers")[0];
    assert!(id.ends_with(":*"), "{id}");
    redis.push("brand-new", r#"{"class":"Touch","args":[]}"#);
    wait_until("the job on the new queue ran", || out.exists());
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
    assert!(redis.members("resque:workers").is_empty());
}

#[test]
fn interval_zero_drains_then_exits_and_unregisters() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    jobs.add("Noop", "true");
    for _ in 0..20 {
        redis.push("q", r#"{"class":"Noop","args":[]}"#);
    }
    drain(&redis, &jobs, "q");
    assert_eq!(redis.int("resque:stat:processed"), 20);
    assert_eq!(redis.llen("resque:queue:q"), 0);
    // Only the shared stats (Resque's and the metrics), the queue set and
    // nothing of the worker remain.
    assert_eq!(
        redis.keys(),
        [
            "resque:queues",
            "resque:resque-fork:metrics",
            "resque:stat:processed"
        ],
        "worker keys left behind"
    );
}

#[test]
fn no_queue_is_a_clear_usage_error() {
    let redis = RedisServer::start();
    let mut cmd = command(&redis);
    cmd.env("QUEUE", "");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("QUEUE"), "{err}");
}

#[test]
fn bad_flags_and_values_fail_with_one_line() {
    let redis = RedisServer::start();
    for (env, value) in [
        ("INTERVAL", "soon"),
        ("INTERVAL", "-1"),
        ("REDIS_BACKEND_DB", "x"),
        // Past what a clock can add: refused, never a panic.
        ("INTERVAL", "1e300"),
        ("JOB_TIMEOUT", "1e19"),
        ("PRUNE_INTERVAL", "99999999999"),
        // A live worker beating on time would look dead.
        ("PRUNE_AGE", "50"),
    ] {
        let mut cmd = command(&redis);
        cmd.env("QUEUE", "q").env(env, value);
        if env == "REDIS_BACKEND_DB" {
            cmd.env_remove("REDIS_URL")
                .env("REDIS_BACKEND", "127.0.0.1:1");
        }
        let out = run(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env}={value}: {err}");
        assert!(
            err.starts_with("error: invalid value") || err.starts_with("resque-fork: "),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_redis_password_is_never_printed() {
    let redis = RedisServer::start();
    for url in [
        "redis2://u:s3cretpw@127.0.0.1:1",
        "redis://u:s3cretpw@127.0.0.1:1",
        "unix:///nonexistent/redis.sock?user=u&pass=s3cretpw",
    ] {
        for args in [&["info"][..], &[][..], &["--help"][..]] {
            let mut cmd = command(&redis);
            cmd.env("REDIS_URL", url)
                .env("QUEUE", "q")
                .env("REDIS_STARTUP_TIMEOUT", "0")
                .env("VVERBOSE", "1")
                .args(args);
            let out = run(cmd);
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!text.contains("s3cretpw"), "{url} {args:?}: {text}");
            if args.is_empty() && url.starts_with("redis2") {
                assert!(text.contains("u:***@127.0.0.1:1"), "{text}");
            }
        }
    }
}

#[test]
fn jobs_do_not_inherit_the_redis_connection_unless_asked() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let out = jobs.scratch("env");
    jobs.add(
        "Env",
        &format!("echo \"url=${{REDIS_URL:-none}}\" >> {}", out.display()),
    );
    redis.push("q", r#"{"class":"Env","args":[]}"#);
    drain(&redis, &jobs, "q");
    redis.push("q", r#"{"class":"Env","args":[]}"#);
    let mut keep = worker(&redis, &jobs, "q", "0");
    keep.env("JOB_ENV_KEEP_REDIS", "1");
    assert!(run(keep).status.success());
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("url=none\nurl={}\n", redis.url())
    );
}

#[test]
fn unreachable_redis_is_one_clear_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = run({
        let mut c = std::process::Command::new(bin());
        c.env_clear()
            .env("QUEUE", "q")
            .env("REDIS_STARTUP_TIMEOUT", "0")
            .env(
                "REDIS_URL",
                format!("unix://{}/none.sock", dir.path().display()),
            );
        c
    });
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("resque-fork: "), "{err}");
}

#[test]
fn rediss_urls_work_for_enqueue_and_workers() {
    let redis = RedisServer::start_tls();
    let jobs = JobsDir::new();
    let out = jobs.scratch("ran");
    jobs.add("Touch", &format!("touch {}", out.display()));
    let mut enqueue = command(&redis);
    enqueue
        .env("REDIS_URL", redis.tls_url())
        .args(["enqueue", "q", "Touch"]);
    assert!(run(enqueue).status.success());
    let mut cmd = worker(&redis, &jobs, "q", "0");
    cmd.env("REDIS_URL", redis.tls_url());
    let result = run(cmd);
    assert_ok(&result);
    assert!(out.exists());
    assert_eq!(redis.int("resque:stat:processed"), 1);

    // BLOCKING's doorbells speak TLS too: with INTERVAL 60, only a doorbell
    // picks a new job up within seconds.
    let mut cmd = worker(&redis, &jobs, "q", "60");
    cmd.env("REDIS_URL", redis.tls_url()).env("BLOCKING", "1");
    let mut child = cmd.spawn().unwrap();
    wait_until("the doorbell waits", || {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut redis.conn())
            .unwrap_or_default();
        clients.contains("cmd=blmove")
    });
    let t0 = std::time::Instant::now();
    let mut enqueue = command(&redis);
    enqueue
        .env("REDIS_URL", redis.tls_url())
        .args(["enqueue", "q", "Touch"]);
    assert!(run(enqueue).status.success());
    wait_until("the job ran", || redis.int("resque:stat:processed") == 2);
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    signal(child.id(), libc::SIGTERM);
    wait_exit(&mut child);
}

#[test]
fn the_cached_star_list_sees_new_queues_while_busy_and_forgets_dropped_ones() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let log = jobs.logging("sleep 0.05");
    for i in 0..40 {
        redis.push("b", &format!(r#"{{"class":"Log","args":["b{i}"]}}"#));
    }
    let mut child = worker(&redis, &jobs, "*", "0.2").spawn().unwrap();
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    };
    wait_until("the worker is busy with b", || lines().len() >= 2);
    // A new queue, first in '*' order, appears while the worker is busy.
    redis.push("a", r#"{"class":"Log","args":["a0"]}"#);
    wait_until("the job on the new queue runs", || {
        lines().contains(&r#"["a0"]"#.to_string())
    });
    let seen_at = lines().iter().position(|l| l == r#"["a0"]"#).unwrap();
    assert!(seen_at < 40, "seen while b still had jobs: {seen_at}");
    // A dropped queue is simply no longer polled.
    let _: () = redis::cmd("SREM")
        .arg("resque:queues")
        .arg("a")
        .query(&mut redis.conn())
        .unwrap();
    redis.push("c", r#"{"class":"Log","args":["c0"]}"#);
    wait_until("jobs keep running after a queue is dropped", || {
        lines().contains(&r#"["c0"]"#.to_string())
    });
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
}

/// A blocking worker for `queues`, started and registered.
fn blocking_worker(redis: &RedisServer, jobs: &JobsDir, queues: &str) -> std::process::Child {
    let mut cmd = worker(redis, jobs, queues, "60");
    cmd.env("BLOCKING", "1");
    let child = cmd.spawn().unwrap();
    wait_until("the worker registers", || {
        redis.members("resque:workers").len() == 1
    });
    // Registered means it is about to block: from here on, the doorbells
    // are what wakes it (INTERVAL is 60 s, past the test deadline).
    child
}

#[test]
fn blocking_wakes_at_once_and_keeps_priority() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let log = jobs.logging("");
    let mut child = blocking_worker(&redis, &jobs, "high,low");
    // Both queues get jobs in one step while the worker is blocked.
    let mut pipe = redis::pipe();
    pipe.atomic()
        .rpush("resque:queue:low", r#"{"class":"Log","args":["low"]}"#)
        .rpush("resque:queue:high", r#"{"class":"Log","args":["high"]}"#);
    let _: () = pipe.query(&mut redis.conn()).unwrap();
    wait_until("both jobs ran, long before INTERVAL", || {
        line_count(&log) == 2
    });
    let order = std::fs::read_to_string(&log).unwrap();
    assert_eq!(order, "[\"high\"]\n[\"low\"]\n");
    // Woken again for a later job.
    redis.push("low", r#"{"class":"Log","args":["again"]}"#);
    wait_until("a later job runs", || line_count(&log) == 3);
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn a_blocked_worker_killed_takes_nothing_with_it() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let log = jobs.logging("");
    let mut child = blocking_worker(&redis, &jobs, "q");
    let dead = format!("{}:{}:q", hostname(), child.id());
    signal(child.id(), libc::SIGKILL);
    wait_exit(&mut child);
    let payloads: Vec<String> = (0..3)
        .map(|i| format!(r#"{{"class":"Log","args":[{i}]}}"#))
        .collect();
    for p in &payloads {
        redis.push("q", p);
    }
    assert_eq!(
        redis.list("resque:queue:q"),
        payloads,
        "untouched, in order"
    );
    drain(&redis, &jobs, "q");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "[0]\n[1]\n[2]\n");
    assert!(
        redis.get(&format!("resque:worker:{dead}")).is_none(),
        "the dead one held no job"
    );
}

#[test]
fn a_doorbell_that_answers_with_an_error_means_polling_not_spinning() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let done = jobs.scratch("done");
    jobs.add("Touch", &format!("touch {}", done.display()));
    // A user that may not block: every doorbell answers -NOPERM.
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "nb",
            "on",
            ">pw",
            "~*",
            "&*",
            "+@all",
            "-@blocking",
        ])
        .query(&mut redis.conn())
        .unwrap();
    let log = jobs.scratch("worker.log");
    let mut cmd = worker(&redis, &jobs, "q", "1");
    cmd.env("BLOCKING", "1").env(
        "REDIS_URL",
        format!("unix://{}?user=nb&pass=pw", redis.socket().display()),
    );
    log_to(&mut cmd, &log);
    let mut child = cmd.spawn().unwrap();
    wait_until("the worker says the doorbell failed", || {
        logged(&log, "BLOCKING doorbell failed") == 1
    });
    let reserves = || -> i64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut redis.conn())
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0)
    };
    // Polling at INTERVAL=1 (plus a retried doorbell now and then) takes
    // seconds for five reserves; a worker counting errors as rings sends
    // thousands a second.
    let (before, start) = (reserves(), std::time::Instant::now());
    wait_until("the idle worker polls", || reserves() >= before + 5);
    let took = start.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(1500),
        "5 reserves in {took:?}: the idle worker spins"
    );
    redis.push("q", r#"{"class":"Touch","args":[]}"#);
    wait_until("a job still runs, by polling", || done.exists());
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
    assert_eq!(logged(&log, "BLOCKING doorbell failed"), 1, "logged once");
}

#[test]
fn an_exec_job_starts_with_no_signal_blocked_or_ignored_and_in_its_own_group() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let out = jobs.scratch("status");
    // The shell's own view of its signals and group, as the kernel keeps it.
    jobs.add(
        "Look",
        &format!(
            "grep -E '^(SigBlk|SigIgn)' /proc/$$/status > {o}; \
             echo \"pgid $(ps -o pgid= $$ | tr -d ' ') pid $$\" >> {o}",
            o = out.display()
        ),
    );
    redis.push("q", r#"{"class":"Look","args":[]}"#);
    let done = drain(&redis, &jobs, "q");
    assert!(done.status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("SigBlk:\t0000000000000000"), "{text}");
    // Rust ignores SIGPIPE in its programs; a job must not inherit that.
    // (What the test's own environment ignores, it inherits like any child.)
    let ignored = text
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:\t"))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap();
    assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "{text}");
    let words: Vec<&str> = text.lines().last().unwrap().split(' ').collect();
    assert_eq!(
        words[1], words[3],
        "the job leads its own process group: {text}"
    );
}

#[test]
fn an_exec_job_that_cannot_start_says_which_step_failed() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    // Executable, but no #! line and not a binary: execve refuses it.
    jobs.add("Plain", "");
    std::fs::write(jobs.path().join("Plain"), "echo no shebang\n").unwrap();
    redis.push("q", r#"{"class":"Plain","args":[]}"#);
    assert!(drain(&redis, &jobs, "q").status.success());
    let failures = redis.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["exception"], "ResqueFork::JobFailed");
    let error = failures[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("could not start ")
            && error.contains(": executing it: Exec format error"),
        "{error}"
    );
    assert!(
        redis.members("resque:workers").is_empty(),
        "the worker went on and unregistered"
    );
}
