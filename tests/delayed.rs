//! Delayed jobs on resque-scheduler's keys: the bytes Ruby writes, and
//! promotion by every pool, atomic beside other pools and node-resque.

mod common;

use common::*;
use redis::Commands;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

/// Writes a delayed item the way Ruby's `delayed_push` does.
fn ruby_delayed_push(redis: &RedisServer, ts: i64, item: &str) {
    ruby_delayed_push_many(redis, [(ts, item.to_string())]);
}

/// Writes many delayed items as Ruby's `delayed_push` does (in MULTI, so no
/// promoter sees an item before its `timestamps:` entry), in one round trip.
fn ruby_delayed_push_many(redis: &RedisServer, items: impl IntoIterator<Item = (i64, String)>) {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (ts, item) in items {
        pipe.rpush(format!("resque:delayed:{ts}"), &item)
            .sadd(format!("resque:timestamps:{item}"), format!("delayed:{ts}"))
            .zadd("resque:delayed_queue_schedule", ts, ts);
    }
    let _: () = pipe.query(&mut redis.conn()).unwrap();
}

/// Keys of delayed jobs left in Redis.
fn delayed_keys(redis: &RedisServer) -> Vec<String> {
    redis
        .keys()
        .into_iter()
        .filter(|k| k.contains("delayed") || k.contains("timestamps:"))
        .collect()
}

#[test]
fn scheduled_items_are_the_bytes_ruby_writes() {
    let redis = RedisServer::start();
    let at = redis.now() + 3600;
    let out = run({
        let mut c = command(&redis);
        c.args(["enqueue", "q", "Foo", "1", r#"{"a": 2}"#, "--at"])
            .arg(at.to_string());
        c
    });
    assert_ok(&out);
    let item = r#"{"class":"Foo","args":[1,{"a":2}],"queue":"q"}"#;
    assert_eq!(redis.list(&format!("resque:delayed:{at}")), [item]);
    assert_eq!(
        redis.members(&format!("resque:timestamps:{item}")),
        [format!("delayed:{at}")]
    );
    let score: f64 = redis
        .conn()
        .zscore("resque:delayed_queue_schedule", at)
        .unwrap();
    assert_eq!(score as i64, at);
    // Not a job yet: nothing on the queue.
    assert_eq!(redis.llen("resque:queue:q"), 0);
}

#[test]
fn a_job_enqueued_in_two_seconds_runs_then_not_before() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let ran_at = jobs.scratch("ran_at");
    jobs.add(
        "Stamp",
        &format!("cat > /dev/null; date +%s >> {}", ran_at.display()),
    );
    let mut worker = worker(&redis, &jobs, "q", "0.1").spawn().unwrap();
    wait_until("the worker registers", || {
        redis.members("resque:workers").len() == 1
    });
    let out = run({
        let mut c = command(&redis);
        c.args(["enqueue", "q", "Stamp", "--in", "2s"]);
        c
    });
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let due: i64 = text
        .rsplit_once('(')
        .and_then(|(_, rest)| rest.trim().trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    wait_until("the delayed job runs", || line_count(&ran_at) == 1);
    let ran: i64 = std::fs::read_to_string(&ran_at)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(ran >= due, "ran at {ran}, due at {due}");
    // Promotion looks every second; the margin is for both cores busy.
    assert!(ran <= due + 5, "ran at {ran}, due at {due}: late");
    wait_until("the job is recorded", || {
        redis.int("resque:stat:processed") == 1
    });
    assert!(redis
        .conn()
        .zcard::<_, i64>("resque:delayed_queue_schedule")
        .is_ok_and(|n| n == 0));
    signal(worker.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut worker).success());
}

#[test]
fn a_job_node_resque_enqueues_in_two_seconds_runs_then_with_its_args_byte_for_byte() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let got = jobs.scratch("got");
    jobs.add(
        "NodeLater",
        &format!("cat > {}; date +%s >> {}.at", got.display(), got.display()),
    );
    let mut w = worker(&redis, &jobs, "q", "0.1").spawn().unwrap();
    let asked = redis.now();
    node_client(
        &redis,
        &[
            "enqueue-in",
            "2000",
            "q",
            "NodeLater",
            r#"[{"b":1,"a":"é/x"},2.5]"#,
        ],
    );
    let at = PathBuf::from(format!("{}.at", got.display()));
    wait_until("the job ran", || line_count(&at) == 1);
    let ran: i64 = std::fs::read_to_string(&at)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(ran > asked, "ran at {ran}, asked at {asked}");
    assert_eq!(
        std::fs::read_to_string(&got).unwrap(),
        r#"[{"b":1,"a":"é/x"},2.5]"#
    );
    signal(w.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut w).success());
}

#[test]
fn a_tracked_delayed_job_keeps_its_id_and_status_until_it_runs() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let log = jobs.logging("");
    let (code, out, err) = cli(
        &redis,
        &["enqueue", "q", "Log", "7", "--in", "1", "--track"],
    );
    assert_eq!(code, Some(0), "{err}");
    let id = out.lines().next().unwrap().to_string();
    assert_eq!(id.len(), 32, "{out}");
    let status = |redis: &RedisServer| -> Value {
        serde_json::from_str(&cli(redis, &["status", &id, "--json"]).1).unwrap()
    };
    assert_eq!(
        status(&redis)["record"]["status"],
        1,
        "waiting while delayed"
    );
    let stamps: Vec<i64> = redis
        .conn()
        .zrange("resque:delayed_queue_schedule", 0, -1)
        .unwrap();
    let item = &redis.list(&format!("resque:delayed:{}", stamps[0]))[0];
    assert_eq!(
        item,
        &format!(r#"{{"class":"Log","args":[7],"id":"{id}","queue":"q"}}"#)
    );
    let mut w = worker(&redis, &jobs, "q", "0.1").spawn().unwrap();
    wait_until("the job ran", || line_count(&log) == 1);
    wait_until("its status is complete", || {
        status(&redis)["record"]["status"] == 4
    });
    signal(w.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut w).success());
}

#[test]
fn items_of_every_writer_are_promoted_as_plain_payloads() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let past = redis.now() - 5;
    // Ruby's and php's layout (queue last), and one that is not a job.
    ruby_delayed_push(
        &redis,
        past,
        r#"{"class":"Ruby","args":[1,{"a":"x/y"}],"queue":"q"}"#,
    );
    ruby_delayed_push(
        &redis,
        past,
        r#"{"class":"Php","args":[{"k":1.50}],"queue":"q"}"#,
    );
    ruby_delayed_push(&redis, past - 1, r#"{"args":[]}"#);
    // node-resque's own enqueueAt (its layout: class, queue, args).
    let at_ms = (past * 1000).to_string();
    node_client(&redis, &["enqueue-at", &at_ms, "q", "Node", "[3]"]);
    let out = run({
        let mut c = worker(&redis, &jobs, "nothing", "0");
        c.env("VERBOSE", "1");
        c
    });
    assert_ok(&out);
    let mut queued = redis.list("resque:queue:q");
    queued.sort();
    assert_eq!(
        queued,
        [
            r#"{"class":"Node","args":[3]}"#,
            r#"{"class":"Php","args":[{"k":1.50}]}"#,
            r#"{"class":"Ruby","args":[1,{"a":"x/y"}]}"#,
        ]
    );
    assert_eq!(redis.members("resque:queues"), ["q"]);
    // Nothing left behind: buckets, timestamps sets, schedule.
    let left = delayed_keys(&redis);
    assert!(left.is_empty(), "{left:?}");
    let failures = redis.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["exception"], "ResqueFork::MalformedDelayedItem");
    assert_eq!(failures[0]["raw"], r#"{"args":[]}"#);
}

#[test]
fn two_pools_promote_each_item_once() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    // Four workers log at once: each line in one append, so none interleave.
    let log = jobs.scratch("ran");
    jobs.add(
        "Log",
        &format!("printf '%s\\n' \"$(cat)\" >> {}", log.display()),
    );
    let now = redis.now();
    // 1,000 items over 50 timestamps, the latest due in about 2 s.
    ruby_delayed_push_many(
        &redis,
        (0..1000).map(|n| {
            let ts = now - 48 + (n % 50);
            (ts, format!(r#"{{"class":"Log","args":[{n}],"queue":"q"}}"#))
        }),
    );
    let pool = |count: &str| {
        let mut c = worker(&redis, &jobs, "q", "0.1");
        c.env("COUNT", count).env("SCHEDULER_INTERVAL", "0.05");
        c.spawn().unwrap()
    };
    let mut pools = [pool("2"), pool("2")];
    wait_until("every job ran", || line_count(&log) >= 1000);
    for p in &mut pools {
        signal(p.id(), libc::SIGQUIT);
        assert!(wait_exit(p).success());
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        *seen.entry(line.to_string()).or_default() += 1;
    }
    assert_eq!(seen.len(), 1000, "every item ran");
    assert!(seen.values().all(|&n| n == 1), "none twice");
    assert_eq!(redis.int("resque:stat:processed"), 1000);
}

#[test]
fn two_pools_and_node_resques_own_scheduler_promote_each_item_once() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    // The pools only promote (their workers take no jobs from q): each
    // item must land on q once, whoever moved it. Running 5,000 programs
    // would test the worker, not promotion, and take long on a busy machine.
    let pool = || {
        let mut c = worker(&redis, &jobs, "elsewhere", "0.1");
        c.env("COUNT", "2").env("SCHEDULER_INTERVAL", "0.05");
        c.spawn().unwrap()
    };
    let mut pools = [pool(), pool()];
    wait_until("four workers", || {
        redis.members("resque:workers").len() == 4
    });
    let started = jobs.scratch("node.err");
    let node = std::process::Command::new("node")
        .current_dir(interop_dir())
        .arg("client.js")
        .arg(redis.socket())
        .arg("scheduler")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&started).unwrap())
        .spawn()
        .unwrap();
    wait_until("node-resque's Scheduler runs", || {
        logged(&started, "scheduler started") == 1
    });
    // 5,000 items over 100 timestamps, most due already, the last in ~2 s.
    let now = redis.now();
    ruby_delayed_push_many(
        &redis,
        (0..5000).map(|n| {
            let ts = now - 97 + (n % 100);
            (ts, format!(r#"{{"class":"Log","args":[{n}],"queue":"q"}}"#))
        }),
    );
    wait_until("every item is on q", || {
        redis.llen("resque:queue:q") >= 5000
    });
    signal(node.id(), libc::SIGTERM);
    let out = wait_output(node);
    assert_ok(&out);
    let by_node: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // node-resque drops an emptied timestamp from the schedule in a later
    // step, which its stop may cut off; our pools drop it at their next turn.
    wait_until("the schedule is empty", || delayed_keys(&redis).is_empty());
    for p in &mut pools {
        signal(p.id(), libc::SIGQUIT);
        assert!(wait_exit(p).success());
    }
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for payload in redis.list("resque:queue:q") {
        let job: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(job["class"], "Log");
        *seen.entry(job["args"][0].as_u64().unwrap()).or_default() += 1;
    }
    assert_eq!(seen.len(), 5000, "every item promoted");
    assert!(seen.values().all(|&n| n == 1), "none twice");
    eprintln!("node-resque's Scheduler moved {by_node} of 5000 items, our pools the rest");
    assert!(
        by_node > 0 && by_node < 5000,
        "both promoted: node moved {by_node}"
    );
}

#[test]
fn a_running_ruby_scheduler_is_left_to_promote_and_is_taken_over_when_gone() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let log = jobs.logging("");
    let lock = "resque:resque:resque_scheduler_master_lock";
    let _: () = redis::cmd("SET")
        .arg(lock)
        .arg("rubyhost:99")
        .arg("EX")
        .arg(180)
        .query(&mut redis.conn())
        .unwrap();
    ruby_delayed_push(
        &redis,
        redis.now() - 1,
        r#"{"class":"Log","args":["late"],"queue":"q"}"#,
    );
    let logfile = jobs.scratch("worker.log");
    let mut cmd = worker(&redis, &jobs, "q", "0.1");
    cmd.env("SCHEDULER_INTERVAL", "0.05");
    log_to(&mut cmd, &logfile);
    let mut child = cmd.spawn().unwrap();
    wait_until("the worker sees the Ruby scheduler", || {
        logged(&logfile, "leaving delayed and recurring jobs to it") == 1
    });
    assert_eq!(line_count(&log), 0, "not promoted beside a live Ruby mover");
    let _: () = redis.conn().del(lock).unwrap();
    wait_until("the job runs once the Ruby scheduler is gone", || {
        line_count(&log) == 1
    });
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn scheduler_0_leaves_delayed_jobs_alone() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let item = r#"{"class":"Log","args":[],"queue":"q"}"#;
    let due = redis.now() - 1;
    ruby_delayed_push(&redis, due, item);
    for off in [&["SCHEDULER", "0"][..], &["SCHEDULER", "false"][..]] {
        let mut c = worker(&redis, &jobs, "q", "0");
        c.env(off[0], off[1]);
        assert_ok(&run(c));
    }
    let mut c = worker(&redis, &jobs, "q", "0");
    c.arg("--no-scheduler");
    assert_ok(&run(c));
    assert_eq!(redis.llen("resque:queue:q"), 0);
    assert_eq!(
        redis
            .conn()
            .zcard::<_, i64>("resque:delayed_queue_schedule")
            .unwrap(),
        1
    );
    assert_eq!(redis.list(&format!("resque:delayed:{due}")), [item]);
}

#[test]
fn a_promotion_that_fails_is_logged_once_and_tried_again() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let log = jobs.logging("");
    // The schedule is not a sorted set: every promotion fails.
    let _: () = redis
        .conn()
        .set("resque:delayed_queue_schedule", "not a zset")
        .unwrap();
    let logfile = jobs.scratch("worker.log");
    let mut cmd = worker(&redis, &jobs, "q", "0.05");
    cmd.env("SCHEDULER_INTERVAL", "0.05");
    log_to(&mut cmd, &logfile);
    let mut child = cmd.spawn().unwrap();
    redis.push("q", r#"{"class":"Log","args":["now"]}"#);
    wait_until("the worker works on regardless", || line_count(&log) == 1);
    wait_until("promotion failed and said so", || {
        logged(&logfile, "scheduling again next turn") == 1
    });
    // Mended: the next turn promotes.
    let _: () = redis.conn().del("resque:delayed_queue_schedule").unwrap();
    ruby_delayed_push(
        &redis,
        redis.now() - 1,
        r#"{"class":"Log","args":["later"],"queue":"q"}"#,
    );
    wait_until("the delayed job runs", || line_count(&log) == 2);
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
    assert_eq!(
        logged(&logfile, "scheduling again next turn"),
        1,
        "one line for the whole failure"
    );
}

#[test]
fn a_pool_killed_again_and_again_while_promoting_loses_and_doubles_nothing() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let now = redis.now();
    // 2,000 items over 3 timestamps, due from now to 2 s on.
    ruby_delayed_push_many(
        &redis,
        (0..2000).map(|n| {
            let ts = now + n % 3;
            (ts, format!(r#"{{"class":"Log","args":[{n}],"queue":"q"}}"#))
        }),
    );
    // A promoting pool that runs no job (its queue is elsewhere), killed at
    // random moments: seeded, so a failure can be replayed.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let promoter = || {
        let mut c = worker(&redis, &jobs, "elsewhere", "0.05");
        c.env("SCHEDULER_INTERVAL", "0.01");
        c.spawn().unwrap()
    };
    let schedule_left = || {
        redis
            .conn()
            .zcard::<_, i64>("resque:delayed_queue_schedule")
            .unwrap()
    };
    let mut kills = 0;
    while schedule_left() > 0 {
        let mut p = promoter();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Chaos timing, not a wait for a condition.
        std::thread::sleep(std::time::Duration::from_millis(5 + seed % 60));
        signal(p.id(), libc::SIGKILL);
        wait_exit(&mut p);
        kills += 1;
        assert!(kills < 2000, "promotion made no progress");
    }
    let queued = redis.list("resque:queue:q");
    let distinct: std::collections::HashSet<&String> = queued.iter().collect();
    assert_eq!(
        queued.len(),
        2000,
        "nothing lost or doubled ({kills} kills)"
    );
    assert_eq!(distinct.len(), 2000);
    let left = delayed_keys(&redis);
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn info_and_the_delayed_commands_show_what_waits() {
    let redis = RedisServer::start();
    let at = redis.now() + 3600;
    for n in 0..3 {
        let mut c = command(&redis);
        c.args(["enqueue", "q", "Later", &n.to_string(), "--at"])
            .arg((at + n / 2).to_string());
        assert_ok(&run(c));
    }
    let json = |args: &[&str]| -> Value {
        let out = run({
            let mut c = command(&redis);
            c.args(args).arg("--json");
            c
        });
        assert_ok(&out);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(json(&["info"])["delayed"], 3, "items, not timestamps");
    let listed = json(&["delayed", "list"]);
    assert_eq!(listed["count"], 3);
    assert_eq!(listed["next_due"], at);
    assert_eq!(
        listed["timestamps"],
        serde_json::json!([[at, 2], [at + 1, 1]])
    );
    assert_eq!(
        json(&["delayed", "show", &at.to_string()]),
        serde_json::json!([
            r#"{"class":"Later","args":[0],"queue":"q"}"#,
            r#"{"class":"Later","args":[1],"queue":"q"}"#
        ])
    );
    let out = run({
        let mut c = command(&redis);
        c.args(["delayed", "clear", "--yes"]);
        c
    });
    assert_ok(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "cleared the delayed jobs: 3 deleted\n"
    );
    let left = delayed_keys(&redis);
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn delayed_remove_and_run_now_find_jobs_by_content_whoever_wrote_them() {
    let redis = RedisServer::start();
    let at = redis.now() + 3600;
    let ruby = r#"{"class":"Foo","args":[1,{"a":2}],"queue":"q"}"#;
    let node = r#"{"class":"Foo","queue":"q","args":[1,{"a":2}]}"#;
    let other_args = r#"{"class":"Foo","args":[3],"queue":"q"}"#;
    let other_queue = r#"{"class":"Foo","args":[1,{"a":2}],"queue":"r"}"#;
    let other_class = r#"{"class":"Bar","args":[1,{"a":2}],"queue":"q"}"#;
    ruby_delayed_push(&redis, at, ruby);
    let _: () = redis
        .conn()
        .rpush(format!("resque:delayed:{}", at + 1), node)
        .unwrap();
    let _: () = redis
        .conn()
        .zadd("resque:delayed_queue_schedule", at + 1, at + 1)
        .unwrap();
    for item in [other_args, other_queue, other_class] {
        ruby_delayed_push(&redis, at + 2, item);
    }
    // As Ruby's remove_delayed_in_queue(Foo, "q", 1, {"a" => 2}): args
    // compared as JSON values, in either writer's layout.
    let (code, out, err) = cli(
        &redis,
        &["delayed", "remove", "q", "Foo", "1", r#"{"a": 2}"#],
    );
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "removed 2 delayed jobs\n"),
        "{err}"
    );
    assert!(redis
        .keys()
        .iter()
        .all(|k| !k.ends_with(&format!(":{at}")) && !k.ends_with(&format!(":{}", at + 1))));
    assert!(redis
        .members(&format!("resque:timestamps:{ruby}"))
        .is_empty());
    let (_, out, _) = cli(
        &redis,
        &["delayed", "run-now", "q", "Foo", "--any-args", "--json"],
    );
    assert_eq!(out.trim(), r#"{"enqueued":1}"#);
    assert_eq!(
        redis.list("resque:queue:q"),
        [r#"{"class":"Foo","args":[3]}"#]
    );
    assert!(redis.members("resque:queues").contains(&"q".to_string()));
    let (_, out, _) = cli(&redis, &["delayed", "remove", "q", "Nothing"]);
    assert_eq!(out, "no delayed job matched\n");
    assert_eq!(
        redis.list(&format!("resque:delayed:{}", at + 2)),
        [other_queue, other_class]
    );
    let listed: Value = serde_json::from_str(&cli(&redis, &["delayed", "--json"]).1).unwrap();
    assert_eq!(listed["count"], 2, "`delayed` alone lists");
}

#[test]
fn the_library_schedules_the_same_bytes() {
    let redis = RedisServer::start();
    let producer = resque_fork::Producer::connect(&redis.url()).unwrap();
    let at = redis.now() + 600;
    let item = producer
        .enqueue_at("q", "Foo", &[1.into(), serde_json::json!({"a": 2})], at)
        .unwrap();
    assert_eq!(item, r#"{"class":"Foo","args":[1,{"a":2}],"queue":"q"}"#);
    assert_eq!(redis.list(&format!("resque:delayed:{at}")), [item]);
    let due = producer
        .enqueue_in("q", "Bar", &[], std::time::Duration::from_secs(90))
        .unwrap();
    let now = redis.now();
    assert!((now + 89..=now + 90).contains(&due), "{due} vs {now}");
    assert_eq!(
        redis.list(&format!("resque:delayed:{due}")),
        [r#"{"class":"Bar","args":[],"queue":"q"}"#]
    );
}
