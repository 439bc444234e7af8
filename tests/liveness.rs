//! Never losing a job: pruning by heartbeat and by pid (including pid
//! reuse), periodic pruning, requeueing orphans once, Redis outages at
//! startup and mid-job, and JOB_TIMEOUT / JOB_MEMORY_LIMIT.

mod common;

use common::*;
use redis::Commands;
use resque_fork::timefmt::iso8601_offset;
use serde_json::Value;

/// Registers a fake worker holding `payload` (if any), with a heartbeat
/// `beat_age` seconds old (if any).
fn fake_worker(redis: &RedisServer, id: &str, payload: Option<&str>, beat_age: Option<i64>) {
    let mut c = redis.conn();
    let _: () = c.sadd("resque:workers", id).unwrap();
    let _: () = c
        .set(
            format!("resque:worker:{id}:started"),
            "2024-01-15 10:30:00 +0000",
        )
        .unwrap();
    if let Some(p) = payload {
        let _: () = c
            .set(
                format!("resque:worker:{id}"),
                format!(r#"{{"queue":"q","run_at":"2024-01-15T10:30:00Z","payload":{p}}}"#),
            )
            .unwrap();
    }
    if let Some(age) = beat_age {
        let _: () = c
            .hset(
                "resque:workers:heartbeat",
                id,
                iso8601_offset(redis.now() - age),
            )
            .unwrap();
    }
}

/// True when every heartbeat is more than `secs` old, by Redis time.
fn heartbeats_older_than(redis: &RedisServer, secs: i64) -> bool {
    let beats: Vec<String> = redis.conn().hvals("resque:workers:heartbeat").unwrap();
    let now = redis.now();
    beats
        .iter()
        .all(|b| resque_fork::timefmt::parse_iso8601(b).is_some_and(|at| now - at > secs))
}

fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn heartbeat_rule_prunes_stale_workers_on_any_host_and_only_those() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    fake_worker(
        &redis,
        "elsewhere:1:q",
        Some(r#"{"class":"Mailer","args":[1]}"#),
        Some(400),
    );
    fake_worker(
        &redis,
        "elsewhere:2:q",
        Some(r#"{"class":"Mailer","args":[2]}"#),
        Some(10),
    );
    fake_worker(
        &redis,
        "elsewhere:3:q",
        Some(r#"{"class":"Mailer","args":[3]}"#),
        None,
    );
    drain(&redis, &jobs, "q");
    assert_eq!(
        redis.members("resque:workers"),
        ["elsewhere:2:q", "elsewhere:3:q"]
    );
    let failures = redis.failures();
    assert_eq!(failures.len(), 1);
    let f = &failures[0];
    assert_eq!(f["exception"], "Resque::PruneDeadWorkerDirtyExit");
    assert_eq!(
        f["error"],
        "Worker elsewhere:1:q did not gracefully exit while processing Mailer"
    );
    assert_eq!(f["worker"], "elsewhere:1:q");
    assert_eq!(f["payload"]["args"][0], 1);
    let beats: Vec<String> = redis.conn().hkeys("resque:workers:heartbeat").unwrap();
    assert_eq!(beats, ["elsewhere:2:q"]);
    assert!(redis.get("resque:worker:elsewhere:1:q").is_none());
    assert!(redis.get("resque:worker:elsewhere:1:q:started").is_none());
}

#[test]
fn a_reused_pid_does_not_keep_a_dead_worker_alive() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    // A live process that is not a Resque worker holds the pid.
    let mut impostor = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let id = format!("{}:{}:q", hostname(), impostor.id());
    // Heartbeat older than twice HEARTBEAT_INTERVAL: the pid rule applies.
    fake_worker(
        &redis,
        &id,
        Some(r#"{"class":"Mailer","args":[]}"#),
        Some(100),
    );
    drain(&redis, &jobs, "q");
    impostor.kill().unwrap();
    impostor.wait().unwrap();
    assert!(redis.members("resque:workers").is_empty());
    let f = &redis.failures()[0];
    assert_eq!(f["exception"], "Resque::DirtyExit");
    assert_eq!(f["worker"], id.as_str());
}

#[test]
fn a_live_worker_of_this_host_is_never_pruned() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let mut first = worker(&redis, &jobs, "q", "0.1").spawn().unwrap();
    wait_until("the first worker registers", || {
        redis.members("resque:workers").len() == 1
    });
    drain(&redis, &jobs, "q");
    assert_eq!(redis.members("resque:workers").len(), 1);
    signal(first.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut first).success());
}

#[test]
fn pruning_runs_periodically_not_only_at_startup() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let mut cmd = worker(&redis, &jobs, "q", "0.1");
    cmd.env("PRUNE_INTERVAL", "0.2");
    let mut child = cmd.spawn().unwrap();
    wait_until("the worker registers", || {
        redis.members("resque:workers").len() == 1
    });
    let dead = format!("{}:{}:q", hostname(), dead_pid());
    fake_worker(&redis, &dead, Some(r#"{"class":"Late","args":[]}"#), None);
    wait_until("the running worker prunes the dead one", || {
        redis.failures().len() == 1
    });
    assert!(!redis.members("resque:workers").contains(&dead));
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn requeue_orphans_puts_a_job_back_once_then_fails_it() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let runs = jobs.scratch("runs");
    // The job kills its own worker: the worst a job can do.
    jobs.add(
        "KillsWorker",
        &format!(
            "echo run >> {}; kill -9 $PPID; exec sleep 5",
            runs.display()
        ),
    );
    let id = enqueue(&redis, &["q", "KillsWorker", "--track"]);
    let runs_so_far = || {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let start = || {
        // A worker killed moments ago is left alone until its heartbeat is
        // older than twice HEARTBEAT_INTERVAL (it may live on elsewhere).
        wait_until("every heartbeat is stale", || {
            heartbeats_older_than(&redis, 2)
        });
        let mut cmd = worker(&redis, &jobs, "q", "0");
        cmd.env("REQUEUE_ORPHANS", "1")
            .env("HEARTBEAT_INTERVAL", "1");
        run(cmd)
    };
    // Run 1: the worker dies holding the job.
    assert_eq!(start().status.code(), None, "killed by the job");
    assert_eq!(runs_so_far(), 1);
    assert_eq!(redis.llen("resque:queue:q"), 0);
    // Run 2: the job goes back to the head of its queue, marked, and kills again.
    assert_eq!(start().status.code(), None);
    assert_eq!(runs_so_far(), 2);
    // Run 3: orphaned a second time, it gets a failure record.
    assert!(start().status.success());
    assert_eq!(runs_so_far(), 2);
    let failures = redis.failures();
    assert_eq!(failures.len(), 1);
    let f = &failures[0];
    assert_eq!(f["exception"], "Resque::DirtyExit");
    assert_eq!(f["payload"]["class"], "KillsWorker");
    assert!(f["payload"]["requeued_orphan"].is_i64(), "{f}");
    assert_eq!(f["payload"]["id"], id.as_str());
    let status: Value =
        serde_json::from_str(&redis.get(&format!("resque:job:{id}:status")).unwrap()).unwrap();
    assert_eq!(status["status"], 3);
    assert!(redis.members("resque:workers").is_empty());
}

#[test]
fn redis_down_at_startup_is_logged_once_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = JobsDir::new();
    let done = jobs.scratch("done");
    jobs.add("Touch", &format!("touch {}", done.display()));
    let log = jobs.scratch("worker.log");
    let socket = RedisServer::socket_in(dir.path());
    let mut cmd = std::process::Command::new(bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", format!("unix://{}", socket.display()))
        .env("QUEUE", "q")
        .env("INTERVAL", "0.1")
        .env("JOBS_DIR", jobs.path());
    log_to(&mut cmd, &log);
    let mut child = cmd.spawn().unwrap();
    wait_until("the worker says Redis is unreachable", || {
        logged(&log, "retrying for up to 30s") == 1
    });
    let redis = RedisServer::start_in(dir, RedisOptions::default());
    wait_until("the worker registers", || {
        redis.members("resque:workers").len() == 1
    });
    redis.push("q", r#"{"class":"Touch","args":[]}"#);
    wait_until("the job runs", || done.exists());
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
    assert_eq!(logged(&log, "retrying for up to"), 1, "one line per outage");
}

#[test]
fn an_outcome_finished_while_redis_is_down_is_recorded_once_when_it_returns() {
    let mut redis = RedisServer::start_durable();
    let jobs = JobsDir::new();
    let gate = jobs.scratch("gate");
    let started = jobs.scratch("started");
    jobs.add(
        "Slow",
        &format!(
            "touch {s}; while [ ! -e {g} ]; do sleep 0.01; done; exit 4",
            s = started.display(),
            g = gate.display()
        ),
    );
    let id = enqueue(&redis, &["q", "Slow", "--track"]);
    let log = jobs.scratch("worker.log");
    let mut cmd = worker(&redis, &jobs, "q", "0.1");
    log_to(&mut cmd, &log);
    let mut child = cmd.spawn().unwrap();
    wait_until("the job runs", || started.exists());
    redis.kill_hard();
    // The job ends while Redis is away; the worker keeps its outcome.
    std::fs::write(&gate, "").unwrap();
    wait_until("the worker notices the outage", || {
        logged(&log, "retrying until Redis answers") >= 1
    });
    redis.restart();
    wait_until("the outcome is recorded", || redis.failures().len() == 1);
    wait_until("the worker is idle again", || {
        command_line(child.id()).ends_with("Waiting for q")
    });
    assert_eq!(redis.int("resque:stat:processed"), 1);
    assert_eq!(redis.int("resque:stat:failed"), 1);
    assert_eq!(redis.failures().len(), 1, "recorded exactly once");
    assert_eq!(redis.failures()[0]["error"], "exited with code 4");
    let status: Value =
        serde_json::from_str(&redis.get(&format!("resque:job:{id}:status")).unwrap()).unwrap();
    assert_eq!(status["status"], 3);
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
    assert!(redis.members("resque:workers").is_empty());
    assert_eq!(
        logged(&log, "retrying until Redis answers"),
        1,
        "one line per outage"
    );
}

#[test]
fn job_timeout_stops_and_records_a_job_that_runs_too_long() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    jobs.add("Hang", "exec sleep 60");
    jobs.add("Quick", "true");
    redis.push("q", r#"{"class":"Hang","args":[]}"#);
    redis.push("q", r#"{"class":"Quick","args":[]}"#);
    let mut cmd = worker(&redis, &jobs, "q", "0");
    cmd.env("JOB_TIMEOUT", "0.5")
        .env("RESQUE_TERM_TIMEOUT", "1");
    let out = run(cmd);
    assert!(out.status.success());
    let failures = redis.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["exception"], "ResqueFork::JobTimeout");
    let error = failures[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("job ran longer than JOB_TIMEOUT (0.5s)"),
        "{error}"
    );
    assert!(error.contains("SIGTERM"), "{error}");
    assert_eq!(redis.int("resque:stat:processed"), 2);
}

#[test]
fn job_memory_limit_caps_a_job_and_says_so() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    // Reads 256 MB into a shell variable.
    jobs.add(
        "Hog",
        "x=$(head -c 268435456 /dev/zero | tr '\\0' x); echo ${#x}",
    );
    jobs.add(
        "Small",
        "x=$(head -c 1000 /dev/zero | tr '\\0' x); test ${#x} = 1000",
    );
    redis.push("q", r#"{"class":"Hog","args":[]}"#);
    redis.push("q", r#"{"class":"Small","args":[]}"#);
    let mut cmd = worker(&redis, &jobs, "q", "0");
    cmd.env("JOB_MEMORY_LIMIT", "64M");
    let out = run(cmd);
    assert!(out.status.success());
    let failures = redis.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["payload"]["class"], "Hog");
    let error = failures[0]["error"].as_str().unwrap();
    assert!(
        error.ends_with("(JOB_MEMORY_LIMIT of 64 MB was in force)"),
        "{error}"
    );
}

/// Sets Ruby's pruning lock as a pruner `holder` would, for `ttl` seconds.
fn hold_prune_lock(redis: &RedisServer, holder: &str, ttl: u64) {
    let _: () = redis::cmd("SET")
        .arg("resque:pruning_dead_workers_in_progress")
        .arg(holder)
        .arg("EX")
        .arg(ttl)
        .query(&mut redis.conn())
        .unwrap();
}

/// A live process of this host whose command line is a Resque worker's.
fn live_resque_lookalike() -> std::process::Child {
    let child = std::process::Command::new("bash")
        .args(["-c", "exec -a 'resque-9.9.9: Waiting for q' sleep 60"])
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_until("the lookalike shows its worker title", || {
        command_line(pid).starts_with("resque-9.9.9")
    });
    child
}

#[test]
fn a_pruning_lock_left_by_a_dead_pruner_of_this_host_is_taken_over() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let dead = format!("{}:{}:q", hostname(), dead_pid());
    fake_worker(&redis, &dead, Some(r#"{"class":"Mailer","args":[]}"#), None);
    let idle = format!("{}:{}:q", hostname(), dead_pid());
    fake_worker(&redis, &idle, None, None);
    // The pruner died holding the lock, which would last another minute.
    hold_prune_lock(&redis, &format!("{}:{}:*", hostname(), dead_pid()), 60);
    drain(&redis, &jobs, "q");
    assert!(redis.members("resque:workers").is_empty());
    assert_eq!(redis.failures().len(), 1);
    assert_eq!(redis.failures()[0]["worker"], dead.as_str());
    assert!(redis
        .get("resque:pruning_dead_workers_in_progress")
        .is_none());
}

#[test]
fn a_pruning_lock_of_a_live_or_remote_holder_is_respected() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let dead = format!("{}:{}:q", hostname(), dead_pid());
    fake_worker(&redis, &dead, Some(r#"{"class":"Mailer","args":[]}"#), None);
    let mut holder = live_resque_lookalike();
    let local = format!("{}:{}:q", hostname(), holder.id());
    // Another host's pruner: nothing here can tell whether it is alive.
    for who in [local.as_str(), "elsewhere:1:q"] {
        hold_prune_lock(&redis, who, 60);
        drain(&redis, &jobs, "q");
        assert_eq!(redis.members("resque:workers"), vec![dead.clone()], "{who}");
        assert!(redis.failures().is_empty(), "{who}");
        assert_eq!(
            redis.get("resque:pruning_dead_workers_in_progress"),
            Some(who.to_string())
        );
    }
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn a_worker_that_found_the_lock_held_prunes_once_it_expires() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let dead = format!("{}:{}:q", hostname(), dead_pid());
    fake_worker(&redis, &dead, Some(r#"{"class":"Mailer","args":[]}"#), None);
    let mut holder = live_resque_lookalike();
    hold_prune_lock(&redis, &format!("{}:{}:q", hostname(), holder.id()), 4);
    let log = jobs.scratch("worker.log");
    let mut cmd = worker(&redis, &jobs, "q", "0.1");
    log_to(&mut cmd, &log);
    // Far beyond the test's deadline: only the lock's expiry can explain a
    // prune within it.
    cmd.env("VVERBOSE", "1").env("PRUNE_INTERVAL", "600");
    let mut child = cmd.spawn().unwrap();
    wait_until("the worker skips its startup prune", || {
        logged(&log, "holds the pruning lock") == 1
    });
    assert!(redis.failures().is_empty());
    wait_until("the worker prunes once the lock expired", || {
        redis.failures().len() == 1
    });
    assert!(!redis.members("resque:workers").contains(&dead));
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
    holder.kill().unwrap();
    holder.wait().unwrap();
}

/// The worker as PID 1 of a new PID namespace, as in a container, so two
/// runs get the same id. `None` (the test is skipped) where that cannot be
/// done: it needs root and util-linux's unshare.
fn in_pid_namespace(
    redis: &RedisServer,
    jobs: &JobsDir,
    interval: &str,
) -> Option<std::process::Command> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let works = root
        && std::process::Command::new("unshare")
            .args(["-pf", "--mount-proc", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if !works {
        eprintln!("skipped: needs root and unshare to run a worker as PID 1");
        return None;
    }
    let plain = worker(redis, jobs, "q", interval);
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-pf", "--mount-proc", bin()]).env_clear();
    for (k, v) in plain.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.env("HEARTBEAT_INTERVAL", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    Some(cmd)
}

/// The host pid of the worker that is PID 1 under `unshare`.
fn namespace_init(unshare: &std::process::Child) -> u32 {
    let mut init = 0;
    wait_until("unshare starts the worker", || {
        init = children(unshare.id()).first().copied().unwrap_or(0);
        init != 0
    });
    init
}

#[test]
fn a_restarted_worker_with_the_same_id_files_its_predecessors_job_and_never_reruns_it() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let Some(mut first) = in_pid_namespace(&redis, &jobs, "0.1") else {
        return;
    };
    let gate = jobs.gated("Slow", 0);
    redis.push("q", r#"{"class":"Slow","args":["once"]}"#);
    let mut first = first.spawn().unwrap();
    let init = namespace_init(&first);
    wait_until("the job starts", || jobs.job_pids("Slow").len() == 1);
    let id = format!("{}:1:q", hostname());
    assert!(redis.get(&format!("resque:worker:{id}")).is_some());
    signal(init, libc::SIGKILL);
    wait_exit(&mut first);
    // Were the job run again, it would finish at once.
    std::fs::write(&gate, "").unwrap();

    let second = in_pid_namespace(&redis, &jobs, "0").unwrap();
    let out = run(second);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(jobs.job_pids("Slow").len(), 1, "the job ran again: {log}");
    let failures = redis.failures();
    assert_eq!(failures.len(), 1, "{log}");
    assert_eq!(failures[0]["exception"], "Resque::DirtyExit");
    assert_eq!(failures[0]["worker"], id.as_str());
    assert_eq!(failures[0]["payload"]["args"][0], "once");
    assert!(redis.members("resque:workers").is_empty());
    assert_eq!(redis.int("resque:stat:processed"), 1);
}

#[test]
fn a_second_live_process_with_the_same_id_refuses_to_start() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let Some(mut first) = in_pid_namespace(&redis, &jobs, "0.1") else {
        return;
    };
    let mut first = first.spawn().unwrap();
    let init = namespace_init(&first);
    let id = format!("{}:1:q", hostname());
    wait_until("the first worker registers", || {
        redis.members("resque:workers") == vec![id.clone()]
    });
    let twin = in_pid_namespace(&redis, &jobs, "0.1").unwrap();
    let out = run(twin);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("another live process is using worker id {id}")),
        "{log}"
    );
    // The first one is untouched and still works.
    assert_eq!(redis.members("resque:workers"), vec![id.clone()]);
    let ran = jobs.scratch("ran");
    jobs.add("Touch", &format!("touch {}", ran.display()));
    redis.push("q", r#"{"class":"Touch","args":[]}"#);
    wait_until("the first worker runs a job", || ran.exists());
    signal(init, libc::SIGQUIT);
    assert!(wait_exit(&mut first).success());
    assert!(redis.members("resque:workers").is_empty());
}

#[test]
fn bytes_that_are_not_utf8_stop_neither_pruning_nor_the_ops_commands() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let mut c = redis.conn();
    // A dead worker whose in-flight record another program wrote with a
    // byte that is not UTF-8, and a dead one beside it.
    let bad = format!("{}:{}:q", hostname(), dead_pid());
    fake_worker(&redis, &bad, None, None);
    let record: &[u8] =
        b"{\"queue\":\"q\",\"run_at\":\"2024-01-15T10:30:00Z\",\"payload\":{\"class\":\"M\",\"args\":[\"\xff\"]}}";
    let _: () = redis::cmd("SET")
        .arg(format!("resque:worker:{bad}"))
        .arg(record)
        .query(&mut c)
        .unwrap();
    let good = format!("{}:{}:q", hostname(), dead_pid());
    fake_worker(&redis, &good, Some(r#"{"class":"Mailer","args":[]}"#), None);
    // Odd bytes in the sets and hash the commands read.
    let _: () = redis::cmd("SADD")
        .arg("resque:queues")
        .arg(&b"bad\xffqueue"[..])
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg("resque:workers:heartbeat")
        .arg(&b"odd\xff:1:q"[..])
        .arg(&b"\xfe"[..])
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("resque:worker:{good}:started"))
        .arg(&b"\xfe"[..])
        .query(&mut c)
        .unwrap();
    for cmd in ["info", "queues", "workers"] {
        let out = run({
            let mut c = command(&redis);
            c.arg(cmd);
            c
        });
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drain(&redis, &jobs, "q");
    assert!(redis.members("resque:workers").is_empty());
    let failures = redis.failures();
    assert_eq!(failures.len(), 2, "{failures:?}");
    let of_bad = failures
        .iter()
        .find(|f| f["worker"] == bad.as_str())
        .unwrap();
    assert_eq!(of_bad["exception"], "Resque::DirtyExit");
    assert_eq!(of_bad["payload"], Value::Null);
    assert_eq!(of_bad["raw_base64"], resque_fork::payload::base64(record));
}

/// How many connections the server has accepted so far, asked on `probe`
/// (one connection kept for it, so that asking adds none).
fn connections_received(probe: &mut redis::Connection) -> i64 {
    let info: String = redis::cmd("INFO").arg("stats").query(probe).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

#[test]
fn a_demoted_or_masterless_server_is_a_lost_connection() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let done = jobs.scratch("done");
    jobs.add("Touch", &format!("touch {}", done.display()));
    let log = jobs.scratch("worker.log");
    let mut cmd = worker(&redis, &jobs, "q", "0.1");
    log_to(&mut cmd, &log);
    let mut child = cmd.spawn().unwrap();
    wait_until("the worker registers", || {
        redis.members("resque:workers").len() == 1
    });
    let config = |args: &[&str]| {
        let _: () = redis::cmd(args[0])
            .arg(&args[1..])
            .query(&mut redis.conn())
            .unwrap();
    };
    // A failover demoted it: a replica (READONLY to writes) of a master
    // that is not there; then one that refuses even reads (MASTERDOWN).
    let mut probe = redis.conn();
    config(&["REPLICAOF", "127.0.0.1", "1"]);
    for phase in ["READONLY", "MASTERDOWN"] {
        if phase == "MASTERDOWN" {
            config(&["CONFIG", "SET", "replica-serve-stale-data", "no"]);
        }
        let before = connections_received(&mut probe);
        wait_until(
            &format!("the worker reconnects again and again ({phase})"),
            || connections_received(&mut probe) >= before + 3,
        );
    }
    assert!(child.try_wait().unwrap().is_none(), "the worker lives on");
    config(&["CONFIG", "SET", "replica-serve-stale-data", "yes"]);
    config(&["REPLICAOF", "NO", "ONE"]);
    redis.push("q", r#"{"class":"Touch","args":[]}"#);
    wait_until("the job runs once the server is a master again", || {
        done.exists()
    });
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        logged(&log, "retrying until Redis answers"),
        1,
        "one line per outage: {text}"
    );
    assert_eq!(logged(&log, "Redis answers again"), 1, "{text}");
}

#[test]
fn pruning_files_each_job_once_even_past_a_bad_counter_and_clears_its_pid_key() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let _: () = redis.conn().set("resque:stat:failed", "abc").unwrap();
    let _: () = redis.conn().set("resque:job:j1:pid", "12345").unwrap();
    let dead = format!("{}:{}:q", hostname(), dead_pid());
    fake_worker(
        &redis,
        &dead,
        Some(r#"{"class":"Mailer","args":[],"id":"j1"}"#),
        None,
    );
    drain(&redis, &jobs, "q");
    drain(&redis, &jobs, "q");
    assert!(redis.members("resque:workers").is_empty());
    assert_eq!(redis.failures().len(), 1, "filed once, not on every pass");
    assert_eq!(redis.int("resque:stat:processed"), 1);
    assert_eq!(redis.get("resque:stat:failed").as_deref(), Some("abc"));
    assert!(redis.get("resque:job:j1:pid").is_none());
}

#[test]
fn a_fresh_heartbeat_keeps_a_worker_whose_pid_is_not_seen_here() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    // Same hostname, pid not visible: a host-network container, say, whose
    // worker beat a few seconds ago.
    let elsewhere = format!("{}:{}:q", hostname(), dead_pid());
    fake_worker(
        &redis,
        &elsewhere,
        Some(r#"{"class":"Mailer","args":[]}"#),
        Some(5),
    );
    drain(&redis, &jobs, "q");
    assert_eq!(redis.members("resque:workers"), vec![elsewhere.clone()]);
    assert!(redis.failures().is_empty(), "its running job was not filed");
}

#[test]
fn a_live_worker_found_unregistered_registers_again() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let log = jobs.scratch("worker.log");
    let mut cmd = worker(&redis, &jobs, "q", "0.1");
    cmd.env("HEARTBEAT_INTERVAL", "1");
    log_to(&mut cmd, &log);
    let mut child = cmd.spawn().unwrap();
    let id = format!("{}:{}:q", hostname(), child.id());
    wait_until("the worker registers", || {
        redis.members("resque:workers") == vec![id.clone()]
    });
    // Another pruner judged it dead and removed it.
    let _: () = redis.conn().srem("resque:workers", &id).unwrap();
    let _: () = redis
        .conn()
        .del(format!("resque:worker:{id}:started"))
        .unwrap();
    wait_until("the worker is registered again", || {
        redis.members("resque:workers") == vec![id.clone()]
            && redis.get(&format!("resque:worker:{id}:started")).is_some()
    });
    assert_eq!(logged(&log, "registered again"), 1);
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
    assert!(redis.members("resque:workers").is_empty());
}

#[test]
fn a_pruner_stops_what_a_dead_workers_job_left_running() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let grandchild = jobs.scratch("grandchild.pid");
    let gate = jobs.scratch("never");
    // The job starts a process of its own, then waits.
    jobs.add(
        "Spawner",
        &format!(
            "sleep 300 & echo $! > {g}; while [ ! -e {n} ]; do sleep 0.01; done",
            g = grandchild.display(),
            n = gate.display()
        ),
    );
    redis.push("q", r#"{"class":"Spawner","args":[]}"#);
    let mut first = worker(&redis, &jobs, "q", "0.1");
    first.env("HEARTBEAT_INTERVAL", "1");
    let mut first = first.spawn().unwrap();
    let dead = format!("{}:{}:q", hostname(), first.id());
    wait_until("the job's own process runs", || {
        line_count(&grandchild) == 1
            && redis
                .get(&format!("resque:worker:{dead}"))
                .is_some_and(|r| r.contains("\"pgid\":"))
    });
    let orphan: u32 = std::fs::read_to_string(&grandchild)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The worker dies; its job process dies with it, the job's own child
    // lives on.
    signal(first.id(), libc::SIGKILL);
    wait_exit(&mut first);
    assert!(alive(orphan));
    let mut pruner = worker(&redis, &jobs, "q", "0.1");
    pruner
        .env("HEARTBEAT_INTERVAL", "1")
        .env("PRUNE_INTERVAL", "0.2");
    let mut pruner = pruner.spawn().unwrap();
    wait_until("the dead worker's job is filed", || {
        redis.failures().len() == 1
    });
    wait_until("what its job left running is stopped", || !alive(orphan));
    signal(pruner.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut pruner).success());
}

#[test]
fn a_worker_that_is_pid_1_reaps_the_orphans_it_inherits() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let Some(mut cmd) = in_pid_namespace(&redis, &jobs, "0.1") else {
        return;
    };
    // The job leaves a short-lived child behind: it becomes the worker's.
    jobs.add("Leaver", "sh -c 'sleep 0.3' & exit 0");
    let mut child = cmd.spawn().unwrap();
    let init = namespace_init(&child);
    wait_until("the worker registers", || {
        redis.members("resque:workers").len() == 1
    });
    redis.push("q", r#"{"class":"Leaver","args":[]}"#);
    let mut orphan = 0;
    wait_until("the orphan is the worker's child", || {
        orphan = children(init)
            .into_iter()
            .find(|&p| command_line(p).contains("sleep 0.3"))
            .unwrap_or(0);
        orphan != 0
    });
    wait_until("the orphan, once ended, is reaped (no zombie)", || {
        !std::path::Path::new(&format!("/proc/{orphan}")).exists()
    });
    signal(init, libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
}
