//! Pools of queue groups: resque-pool's config file, its signals, and
//! reloads that converge without losing or killing a job.

mod common;

use common::*;
use redis::Commands;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;

/// The registered workers, counted by queue list.
fn groups(redis: &RedisServer) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for id in redis.members("resque:workers") {
        let queues = id.splitn(3, ':').nth(2).unwrap_or("").to_string();
        *out.entry(queues).or_default() += 1;
    }
    out
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(q, n)| (q.to_string(), *n)).collect()
}

fn pool_file(jobs: &JobsDir, yaml: &str) -> PathBuf {
    let path = jobs.scratch("resque-pool.yml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn start_pool(redis: &RedisServer, jobs: &JobsDir, file: &Path, log: &Path) -> Child {
    let mut c = command(redis);
    c.env("POOL", file)
        .env("INTERVAL", "0.05")
        .env("JOBS_DIR", jobs.path())
        .env("RAILS_ENV", "production");
    log_to(&mut c, log);
    c.spawn().unwrap()
}

/// A job `Rec` that appends "queue worker-queues args" to the returned log,
/// after sleeping `ms`.
fn recording_job(jobs: &JobsDir, ms: u32) -> PathBuf {
    let ran = jobs.scratch("ran");
    jobs.add(
        "Rec",
        &format!(
            "a=$(cat); sleep {}; echo \"$RESQUE_QUEUE ${{RESQUE_WORKER##*:}} $a\" >> {}",
            f64::from(ms) / 1000.0,
            ran.display()
        ),
    );
    ran
}

#[test]
fn a_pool_runs_each_groups_workers_on_that_groups_queues() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let ran = recording_job(&jobs, 0);
    let file = pool_file(
        &jobs,
        "critical: 2\n\"default,low\": 1\nproduction:\n  reports: 1\nstaging:\n  other: 5\n",
    );
    let log = jobs.scratch("pool.log");
    let mut pool = start_pool(&redis, &jobs, &file, &log);
    let want = counts(&[("critical", 2), ("default,low", 1), ("reports", 1)]);
    wait_until("the groups register", || groups(&redis) == want);
    for (n, q) in ["critical", "default", "low", "reports"].iter().enumerate() {
        redis.push(q, &format!(r#"{{"class":"Rec","args":[{n}]}}"#));
    }
    wait_until("every job ran", || line_count(&ran) == 4);
    for line in std::fs::read_to_string(&ran).unwrap().lines() {
        let mut words = line.split(' ');
        let (queue, worker_queues) = (words.next().unwrap(), words.next().unwrap());
        assert!(
            worker_queues.split(',').any(|q| q == queue),
            "a job of {queue} ran on a worker of {worker_queues}"
        );
    }
    let (_, status, _) = cli(&redis, &["pool", "status"]);
    assert!(
        status.contains("critical 2/2, default,low 1/1, reports 1/1"),
        "{status}"
    );
    wait_until("the supervisor's title shows the groups", || {
        command_line(pool.id())
            .contains("Supervising pool: critical 2/2, default,low 1/1, reports 1/1")
    });
    let (_, workers, _) = cli(&redis, &["workers"]);
    assert!(
        workers.contains(&format!("pool {}:{}:", hostname(), pool.id())),
        "{workers}"
    );
    signal(pool.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut pool).success());
    assert!(redis.members("resque:workers").is_empty());
    assert_eq!(cli(&redis, &["pool", "status", "--json"]).1.trim(), "[]");
}

#[test]
fn a_hup_with_a_changed_file_mid_load_converges_losing_and_killing_no_job() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let ran = recording_job(&jobs, 150);
    let file = pool_file(&jobs, "a: 2\nb: 2\nc: 1\n");
    let log = jobs.scratch("pool.log");
    let pidfile = jobs.scratch("pool.pid");
    let mut c = command(&redis);
    c.env("POOL", &file)
        .env("INTERVAL", "0.05")
        .env("JOBS_DIR", jobs.path())
        .env("PIDFILE", &pidfile)
        .env("VERBOSE", "1");
    log_to(&mut c, &log);
    let mut pool = c.spawn().unwrap();
    wait_until("the first groups register", || {
        groups(&redis) == counts(&[("a", 2), ("b", 2), ("c", 1)])
    });
    let total = 120;
    for n in 0..total {
        let q = ["a", "b", "c", "d"][n % 4];
        redis.push(q, &format!(r#"{{"class":"Rec","args":[{n}]}}"#));
    }
    wait_until("the load is under way", || line_count(&ran) >= 10);
    // a grows, b shrinks, c goes, d comes.
    std::fs::write(&file, "a: 3\nb: 1\nd: 1\n").unwrap();
    let missing = jobs.scratch("no-such.pid");
    let (code, _, err) = cli(
        &redis,
        &["pool", "reload", "--pidfile", missing.to_str().unwrap()],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no pool's PIDFILE"), "{err}");
    let (code, out, err) = cli(
        &redis,
        &["pool", "reload", "--pidfile", pidfile.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("sent HUP"), "{out}");
    wait_until("exactly the new counts", || {
        groups(&redis) == counts(&[("a", 3), ("b", 1), ("d", 1)])
    });
    wait_until("every job of a, b and d ran", || {
        ["a", "b", "d"]
            .iter()
            .all(|q| redis.llen(&format!("resque:queue:{q}")) == 0)
            && redis
                .keys()
                .iter()
                .all(|k| !k.starts_with("resque:worker:") || k.ends_with(":started"))
    });
    let lines = std::fs::read_to_string(&ran).unwrap();
    let mut seen = std::collections::HashMap::new();
    for line in lines.lines() {
        *seen
            .entry(line.rsplit(' ').next().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "no job twice");
    let left_in_c = redis.llen("resque:queue:c") as usize;
    assert_eq!(
        seen.len() + left_in_c,
        total,
        "ran or still queued: none lost"
    );
    assert!(redis.failures().is_empty(), "no job in hand was killed");
    assert_eq!(logged(&log, "retired"), 2, "one b and the c worker retired");
    signal(pool.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut pool).success());
}

#[test]
fn a_bad_file_at_reload_keeps_the_pool_and_at_start_stops_it() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let file = pool_file(&jobs, "a: 1\nb: 1\n");
    let log = jobs.scratch("pool.log");
    let mut pool = start_pool(&redis, &jobs, &file, &log);
    wait_until("the pool runs", || {
        groups(&redis) == counts(&[("a", 1), ("b", 1)])
    });
    let before = redis.members("resque:workers");
    for bad in ["a: -1\n", "a: [1\n", "a: lots\n"] {
        std::fs::write(&file, bad).unwrap();
        let errors = logged(&log, "keeping the pool as it was");
        signal(pool.id(), libc::SIGHUP);
        wait_until("the bad file is reported", || {
            logged(&log, "keeping the pool as it was") == errors + 1
        });
    }
    assert_eq!(redis.members("resque:workers"), before, "the same workers");
    assert!(alive(pool.id()));
    signal(pool.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut pool).success());
    let out = run({
        let mut c = command(&redis);
        c.env("POOL", &file);
        c
    });
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a worker count") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn winch_stops_every_worker_and_keeps_the_manager_until_a_hup() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let file = pool_file(&jobs, "a: 2\n");
    let log = jobs.scratch("pool.log");
    let mut pool = start_pool(&redis, &jobs, &file, &log);
    wait_until("the pool runs", || groups(&redis) == counts(&[("a", 2)]));
    signal(pool.id(), libc::SIGWINCH);
    wait_until("no workers", || redis.members("resque:workers").is_empty());
    assert!(alive(pool.id()), "the manager stays");
    assert!(cli(&redis, &["pool", "status"]).1.contains("no workers"));
    std::fs::write(&file, "a: 1\nb: 1\n").unwrap();
    signal(pool.id(), libc::SIGHUP);
    wait_until("the workers are back, as the file now says", || {
        groups(&redis) == counts(&[("a", 1), ("b", 1)])
    });
    signal(pool.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut pool).success());
}

#[test]
fn the_record_of_a_killed_pool_of_this_host_is_removed_not_shown() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let file = pool_file(&jobs, "a: 1\n");
    let log = jobs.scratch("pool.log");
    let mut pool = start_pool(&redis, &jobs, &file, &log);
    let me = format!("pool {}:{}:", hostname(), pool.id());
    wait_until("the pool publishes its groups", || {
        cli(&redis, &["pool", "status"]).1.contains(&me)
    });
    // Killed, it cannot remove its record (its worker dies with it).
    signal(pool.id(), libc::SIGKILL);
    let _ = pool.wait();
    let (code, status, err) = cli(&redis, &["pool", "status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!status.contains(&me), "{status}");
    assert_eq!(
        redis
            .conn()
            .hlen::<_, i64>("resque:resque-fork:pools")
            .unwrap(),
        0
    );
}
