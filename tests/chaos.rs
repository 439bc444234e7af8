//! The chaos test: a COUNT=4 pool under a restart loop, with the supervisor,
//! workers, job processes and Redis itself killed at random, then every job
//! accounted for: completed (its marker exists), failed (a record in
//! `failed`), or still queued. Seeded, so a run can be replayed.
//!
//! `make test` runs a short round; `make chaos` a long one
//! (CHAOS_SECONDS, default 300; CHAOS_SEED to replay; CHAOS_JOBS). A
//! second round retries: some jobs ask for a retry (exit 75) once, some
//! always; every job is then completed, retrying, or in one failure record.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// xorshift64*: small, seedable, good enough to pick actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len() as u64) as usize])
    }
}

const QUEUES: [&str; 4] = ["critical", "high", "low", "mail"];

fn start_pool(redis: &RedisServer, jobs: &JobsDir, log: &Path, retries: bool) -> Child {
    let mut cmd = worker(redis, jobs, "*", "0.05");
    if retries {
        cmd.env("RETRY_LIMIT", "2")
            .env("RETRY_BACKOFF", "0")
            .env("SCHEDULER_INTERVAL", "0.1");
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    cmd.env("COUNT", "4")
        .env("HEARTBEAT_INTERVAL", "1")
        .env("PRUNE_INTERVAL", "1")
        .env("RESQUE_TERM_TIMEOUT", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::from(file));
    cmd.spawn().unwrap()
}

#[derive(Default, Debug)]
struct Tally(BTreeMap<&'static str, u32>);

impl Tally {
    fn add(&mut self, what: &'static str) {
        *self.0.entry(what).or_default() += 1;
    }
}

/// A failure record must have every field resque-web reads, well typed.
fn well_formed(f: &Value) -> bool {
    let str_field = |k: &str| f.get(k).is_some_and(Value::is_string);
    let failed_at = f["failed_at"].as_str().unwrap_or("");
    str_field("exception")
        && str_field("error")
        && str_field("worker")
        && str_field("queue")
        && f["backtrace"].is_array()
        && (f["payload"].is_object() || f["payload"].is_null())
        && failed_at.len() == 23
        && failed_at.ends_with(" UTC")
        && failed_at.as_bytes()[4] == b'/'
}

fn chaos(seconds: u64, total: usize, seed: u64, retries: bool) {
    println!("chaos: seed={seed} seconds={seconds} jobs={total} retries={retries} (replay with CHAOS_SEED={seed})");
    let mut rng = Rng(seed.max(1));
    let mut redis = RedisServer::start_durable();
    let jobs = JobsDir::new();
    let done = jobs.scratch("done");
    std::fs::create_dir(&done).unwrap();
    let log = jobs.scratch("pool.log");
    // Work [n, ms]: sleeps ms milliseconds, then leaves the marker done/n.
    jobs.add(
        "Work",
        &format!(
            "read -r a; a=${{a#[}}; n=${{a%%,*}}; ms=${{a#*,}}; ms=${{ms%]}}; \
             sleep $(printf '0.%03d' \"$ms\"); touch {}/$n",
            done.display()
        ),
    );
    // With retries, Fail asks for a retry every time (so it ends in a
    // record after RETRY_LIMIT), and Flaky once before it completes.
    jobs.add(
        "Fail",
        &format!(
            "cat >/dev/null; echo 'failing on purpose' >&2; exit {}",
            if retries { 75 } else { 1 }
        ),
    );
    jobs.add(
        "Flaky",
        &format!(
            "read -r a; a=${{a#[}}; n=${{a%%,*}}; \
             [ \"$RESQUE_RETRY_COUNT\" = 0 ] && exit 75; touch {}/$n",
            done.display()
        ),
    );
    for n in 0..total {
        let queue = QUEUES[rng.below(4) as usize];
        let class = match rng.below(10) {
            0 => "Fail",
            1 | 2 if retries => "Flaky",
            _ => "Work",
        };
        let payload = json!({"class": class, "args": [n, rng.below(200)], "id": format!("job{n}")});
        redis.push(queue, &payload.to_string());
    }

    let mut pool = start_pool(&redis, &jobs, &log, retries);
    let mut kills = Tally::default();
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        if pool.try_wait().unwrap().is_some() {
            kills.add("pool restarts");
            pool = start_pool(&redis, &jobs, &log, retries);
        }
        std::thread::sleep(Duration::from_millis(50 + rng.below(250)));
        let workers = children(pool.id());
        let job_procs: Vec<u32> = workers.iter().flat_map(|w| children(*w)).collect();
        match rng.below(20) {
            0 => {
                signal(pool.id(), libc::SIGKILL);
                kills.add("supervisor SIGKILL");
            }
            1 => {
                signal(pool.id(), libc::SIGTERM);
                kills.add("supervisor TERM");
            }
            2 => {
                signal(pool.id(), libc::SIGQUIT);
                kills.add("supervisor QUIT");
            }
            3..=5 => {
                if let Some(w) = rng.pick(&workers) {
                    signal(w, libc::SIGKILL);
                    kills.add("worker SIGKILL");
                }
            }
            6 => {
                if let Some(w) = rng.pick(&workers) {
                    signal(w, libc::SIGTERM);
                    kills.add("worker TERM");
                }
            }
            7 => {
                if let Some(w) = rng.pick(&workers) {
                    signal(w, libc::SIGQUIT);
                    kills.add("worker QUIT");
                }
            }
            8 | 9 => {
                if let Some(w) = rng.pick(&workers) {
                    signal(w, libc::SIGUSR1);
                    kills.add("worker USR1");
                }
            }
            10..=12 => {
                if let Some(j) = rng.pick(&job_procs) {
                    signal(j, libc::SIGKILL);
                    kills.add("job SIGKILL");
                }
            }
            13 => {
                redis.kill_hard();
                std::thread::sleep(Duration::from_millis(rng.below(500)));
                redis.restart();
                kills.add("redis kill -9 + restart");
            }
            _ => {}
        }
    }

    // Let the pool finish the work, then stop it and start once more, so
    // the last start prunes whatever the last kills left behind.
    if pool.try_wait().unwrap().is_some() {
        pool = start_pool(&redis, &jobs, &log, retries);
    }
    let drained = Instant::now() + Duration::from_secs(120);
    loop {
        let queued: i64 = QUEUES
            .iter()
            .map(|q| redis.llen(&format!("resque:queue:{q}")))
            .sum();
        let in_flight = redis.keys().iter().filter(|k| is_in_flight_key(k)).count();
        let delayed = redis.zcard("resque:delayed_queue_schedule");
        if queued == 0 && in_flight == 0 && delayed == 0 {
            break;
        }
        assert!(
            Instant::now() < drained,
            "the pool did not drain: {queued} queued, {in_flight} in flight, {delayed} retries due"
        );
        if pool.try_wait().unwrap().is_some() {
            pool = start_pool(&redis, &jobs, &log, retries);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(pool.id(), libc::SIGQUIT);
    wait_exit(&mut pool);
    // Clean starts until nothing dead is left registered: a worker killed in
    // the last moments is pruned once its heartbeat is older than twice
    // HEARTBEAT_INTERVAL (it could be alive in another PID namespace).
    let settled = Instant::now() + Duration::from_secs(30);
    loop {
        let mut last = worker(&redis, &jobs, "*", "0");
        last.env("HEARTBEAT_INTERVAL", "1");
        let last = run(last);
        assert_ok(&last);
        if redis.members("resque:workers").is_empty() || Instant::now() > settled {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // Account for every job.
    let completed: HashSet<u64> = std::fs::read_dir(&done)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let failures = redis.failures();
    let malformed: Vec<&Value> = failures.iter().filter(|f| !well_formed(f)).collect();
    let mut records: BTreeMap<u64, usize> = BTreeMap::new();
    for n in failures
        .iter()
        .filter_map(|f| f["payload"]["args"][0].as_u64())
    {
        *records.entry(n).or_default() += 1;
    }
    let failed: HashSet<u64> = records.keys().copied().collect();
    let twice: Vec<u64> = records
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .collect();
    let queued: HashSet<u64> = QUEUES
        .iter()
        .flat_map(|q| redis.list(&format!("resque:queue:{q}")))
        .filter_map(|p| serde_json::from_str::<Value>(&p).ok()?["args"][0].as_u64())
        .collect();
    let lost: Vec<u64> = (0..total as u64)
        .filter(|n| !completed.contains(n) && !failed.contains(n) && !queued.contains(n))
        .collect();
    let registered = redis.members("resque:workers");
    println!("chaos: actions {:?}", kills.0);
    println!(
        "chaos: jobs {total}, completed {}, failed {} ({} records), still queued {}, lost {}, \
         processed counter {}, failed counter {}",
        completed.len(),
        failed.len(),
        failures.len(),
        queued.len(),
        lost.len(),
        redis.int("resque:stat:processed"),
        redis.int("resque:stat:failed"),
    );
    if !lost.is_empty() {
        println!(
            "chaos: pool log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    assert!(lost.is_empty(), "lost jobs {lost:?} (seed {seed})");
    assert!(
        twice.is_empty(),
        "jobs with two failure records {twice:?} (seed {seed})"
    );
    assert!(
        registered.is_empty(),
        "dead workers still registered: {registered:?} (seed {seed})"
    );
    assert!(
        malformed.is_empty(),
        "malformed failure records: {malformed:?} (seed {seed})"
    );
}

fn is_in_flight_key(key: &str) -> bool {
    // resque:worker:ID, but not resque:worker:ID:started
    key.starts_with("resque:worker:") && !key.ends_with(":started")
}

fn seed() -> u64 {
    std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

#[test]
fn chaos_short() {
    chaos(8, 300, seed(), false);
}

#[test]
fn chaos_short_with_retries() {
    chaos(8, 300, seed(), true);
}

#[test]
#[ignore = "long: run with make chaos"]
fn chaos_long() {
    let env = |k: &str, default: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    chaos(
        env("CHAOS_SECONDS", 300),
        env("CHAOS_JOBS", 10000) as usize,
        seed(),
        std::env::var_os("CHAOS_RETRIES").is_some(),
    );
}
