//! Recurring jobs: resque-scheduler's schedule file and dynamic schedules,
//! each tick enqueued once across pools that start, stop and die.

mod common;

use common::*;
use redis::Commands;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

const TICKS: &str = "resque:resque-fork:schedule_ticks";

fn schedule_file(jobs: &JobsDir, yaml: &str) -> PathBuf {
    let path = jobs.scratch("schedule.yml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// A pool that takes no jobs (queue `idle`) and runs `schedule`.
fn pool(redis: &RedisServer, jobs: &JobsDir, schedule: &PathBuf, count: &str) -> Child {
    let mut c = worker(redis, jobs, "idle", "0.2");
    c.env("COUNT", count)
        .env("SCHEDULE", schedule)
        .env("SCHEDULER_INTERVAL", "0.2");
    c.spawn().unwrap()
}

fn latest_tick(redis: &RedisServer, name: &str) -> Option<i64> {
    redis.conn().hget(TICKS, name).unwrap()
}

#[test]
fn each_tick_is_enqueued_once_by_pools_side_by_side_as_ruby_writes_it() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let file = schedule_file(
        &jobs,
        "tick:\n  every: 1s\n  class: Tick\n  queue: ticks\n  args: [1, {b: 2, a: x}]\n  description: each second\n",
    );
    // Start the count from a known tick: every later one must be there once.
    let from = redis.now();
    let _: () = redis.conn().hset(TICKS, "tick", from).unwrap();
    let pools = [
        pool(&redis, &jobs, &file, "1"),
        pool(&redis, &jobs, &file, "2"),
    ];
    wait_until("five ticks", || redis.llen("resque:queue:ticks") >= 5);
    for p in pools {
        quit_and_wait(p);
    }
    let latest = latest_tick(&redis, "tick").unwrap();
    let queued = redis.list("resque:queue:ticks");
    assert_eq!(
        queued.len() as i64,
        latest - from,
        "one job per tick, no gap"
    );
    assert!(queued
        .iter()
        .all(|p| p == r#"{"class":"Tick","args":[1,{"b":2,"a":"x"}]}"#));
    assert!(redis
        .members("resque:queues")
        .contains(&"ticks".to_string()));
    // resque-web's Schedule tab reads Ruby's Time#to_s.
    let last: String = redis
        .conn()
        .hget("resque:delayed:last_enqueued_at", "tick")
        .unwrap();
    assert_eq!(last.len(), "2026-11-28 03:38:52 +0000".len(), "{last}");
    assert!(last.ends_with(" +0000"), "{last}");
}

#[test]
fn dynamic_schedules_run_a_bad_one_is_reported_and_a_ruby_scheduler_is_deferred_to() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let lock = "resque:resque:resque_scheduler_master_lock";
    let _: () = redis.conn().set_ex(lock, "rubyhost:99", 180).unwrap();
    let _: () = redis
        .conn()
        .hset_multiple(
            "resque:persistent_schedules",
            &[
                (
                    "dyn",
                    r#"{"class":"Dyn","every":"1s","queue":"dq","args":"x"}"#,
                ),
                ("noqueue", r#"{"class":"Dyn","every":"1s"}"#),
            ],
        )
        .unwrap();
    let logfile = jobs.scratch("worker.log");
    let mut cmd = worker(&redis, &jobs, "idle", "0.2");
    cmd.env("SCHEDULER_INTERVAL", "0.2");
    log_to(&mut cmd, &logfile);
    let child = cmd.spawn().unwrap();
    wait_until("the pool sees the Ruby scheduler", || {
        logged(&logfile, "leaving delayed and recurring jobs to it") == 1
    });
    assert_eq!(redis.llen("resque:queue:dq"), 0, "Ruby runs its schedule");
    let _: () = redis.conn().del(lock).unwrap();
    wait_until("the dynamic entry runs", || {
        redis.llen("resque:queue:dq") >= 2
    });
    assert_eq!(
        redis.list("resque:queue:dq")[0],
        r#"{"class":"Dyn","args":["x"]}"#
    );
    assert_eq!(logged(&logfile, r#"schedule entry "noqueue": no queue"#), 1);
    // Removed from Redis: no longer run.
    let _: () = redis
        .conn()
        .hdel("resque:persistent_schedules", "dyn")
        .unwrap();
    let t = redis.now() + 1;
    wait_until("a turn after the removal", || redis.now() > t + 1);
    let n = redis.llen("resque:queue:dq");
    let t = redis.now();
    wait_until("two more seconds", || redis.now() > t + 2);
    assert_eq!(redis.llen("resque:queue:dq"), n);
    quit_and_wait(child);
}

#[test]
fn sighup_rereads_the_schedule_file_and_a_bad_file_keeps_the_old_one() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let file = schedule_file(&jobs, "a:\n  every: 1s\n  queue: qa\n");
    let logfile = jobs.scratch("pool.log");
    let mut cmd = worker(&redis, &jobs, "idle", "0.2");
    cmd.env("COUNT", "2")
        .env("SCHEDULE", &file)
        .env("SCHEDULER_INTERVAL", "0.2");
    log_to(&mut cmd, &logfile);
    let child = cmd.spawn().unwrap();
    wait_until("entry a runs", || redis.llen("resque:queue:qa") >= 1);
    std::fs::write(&file, "b:\n  every: 1s\n  queue: qb\n").unwrap();
    signal(child.id(), libc::SIGHUP);
    wait_until("entry b runs", || redis.llen("resque:queue:qb") >= 1);
    let a = latest_tick(&redis, "a").unwrap();
    std::fs::write(&file, "b:\n  every: often\n  queue: qb\n").unwrap();
    signal(child.id(), libc::SIGHUP);
    wait_until("the bad file is reported", || {
        logged(&logfile, "keeping the schedule as it was") == 1
    });
    let b = redis.llen("resque:queue:qb");
    wait_until("entry b still runs", || {
        redis.llen("resque:queue:qb") > b + 1
    });
    assert_eq!(latest_tick(&redis, "a"), Some(a), "entry a is gone");
    assert!(
        alive(child.id()),
        "HUP with a schedule does not stop the pool"
    );
    quit_and_wait(child);
}

#[test]
fn the_schedule_command_shows_each_entry_with_its_next_and_last_run() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let file = schedule_file(
        &jobs,
        "nightly:\n  cron: '0 3 * * * UTC'\n  class: Report\n  queue: low\n  args: {full: true}\n  description: the report\n",
    );
    let _: () = redis
        .conn()
        .hset(
            "resque:persistent_schedules",
            "dyn",
            r#"{"class":"Dyn","every":"1h","queue":"dq"}"#,
        )
        .unwrap();
    let _: () = redis
        .conn()
        .hset(
            "resque:delayed:last_enqueued_at",
            "nightly",
            "2026-11-28 03:00:00 +0000",
        )
        .unwrap();
    let out = run({
        let mut c = command(&redis);
        c.env("SCHEDULE", &file).args(["schedule", "--json"]);
        c
    });
    assert_ok(&out);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let now = redis.now();
    assert_eq!(rows[0]["name"], "dyn");
    assert_eq!(rows[0]["origin"], "redis");
    assert_eq!(rows[0]["next_run"], (now / 3600 + 1) * 3600);
    assert_eq!(rows[1]["name"], "nightly");
    assert_eq!(rows[1]["when"], r#"cron "0 3 * * * UTC""#);
    assert_eq!(rows[1]["args"], serde_json::json!([{"full": true}]));
    assert_eq!(rows[1]["next_run"].as_i64().unwrap() % 86_400, 3 * 3600);
    assert_eq!(rows[1]["last_enqueued_at"], "2026-11-28 03:00:00 +0000");
    assert_eq!(rows[1]["description"], "the report");
    let (code, text, _) = cli(&redis, &["schedule"]);
    assert_eq!(code, Some(0));
    assert!(
        text.starts_with("NAME") && text.contains("every 1h"),
        "{text}"
    );
}

#[test]
fn a_schedule_that_cannot_run_stops_the_start() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    for (yaml, says) in [
        ("nightly:\n  cron: '0 3 * * *'\n", "no queue"),
        ("nightly:\n  cron: '0 3 * *'\n  queue: q\n", "invalid cron"),
        ("nightly: [1, 2\n", "schedule.yml"),
    ] {
        let file = schedule_file(&jobs, yaml);
        for count in ["1", "2"] {
            let mut c = worker(&redis, &jobs, "q", "0");
            c.env("SCHEDULE", &file).env("COUNT", count);
            let out = run(c);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{yaml}: {err}");
            assert!(err.contains(says), "{yaml}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{err}");
        }
    }
}

/// Three pools started and killed at random while an `every: 1s` entry runs:
/// one enqueue per tick, and no gap while any pool lives. SOAK_SECONDS sets
/// the length (`make soak`), 20 s by default.
#[test]
fn recurring_soak_three_pools_killed_at_random() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let file = schedule_file(&jobs, "tick:\n  every: 1s\n  queue: ticks\n");
    let from = redis.now();
    let _: () = redis.conn().hset(TICKS, "tick", from).unwrap();
    let mut rng = (from as u64).wrapping_mul(6364136223846793005) | 1;
    let mut next = move |n: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % n
    };
    let mut pools: Vec<Child> = (0..3)
        .map(|i| pool(&redis, &jobs, &file, if i == 0 { "2" } else { "1" }))
        .collect();
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut kills = 0;
    while Instant::now() < end {
        // Wait 0.3-1.5 s, then kill -9 one pool (two always live) and start
        // another in its place.
        // A random moment to strike, not a condition to wait for.
        std::thread::sleep(Duration::from_millis(300 + next(1200)));
        let victim = next(pools.len() as u64) as usize;
        let mut p = pools.swap_remove(victim);
        // The whole pool: a supervisor's workers die with it.
        signal(p.id(), libc::SIGKILL);
        let _ = p.wait();
        kills += 1;
        let count = if next(2) == 0 { "1" } else { "2" };
        pools.push(pool(&redis, &jobs, &file, count));
    }
    for p in pools {
        quit_and_wait(p);
    }
    let latest = latest_tick(&redis, "tick").unwrap();
    let queued = redis.llen("resque:queue:ticks");
    assert!(kills >= seconds / 2, "{kills} kills");
    assert!(latest >= from + seconds as i64 - 2, "ticks up to the end");
    assert_eq!(queued, latest - from, "one enqueue per tick, no gap");
}
