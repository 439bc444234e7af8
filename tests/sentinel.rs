//! Redis Sentinel: a real master, replica and three Sentinels (Debian's
//! redis-sentinel), each started by the test on free ports, and a COUNT=2
//! pool working through jobs while the master changes under it.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVICE: &str = "mymaster";
/// The data nodes' password (in REDIS_URL) and the Sentinels' own
/// (REDIS_SENTINEL_PASSWORD): different, as in production.
const DATA_PASSWORD: &str = "data-secret";
const SENTINEL_PASSWORD: &str = "sentinel-secret";
const JOBS: usize = 2000;

/// A process the test started, killed when dropped (also on a panic).
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One redis-server on a TCP port.
struct Node {
    port: u16,
    process: Option<Process>,
    tls: bool,
}

/// Settings that make a server or Sentinel speak TLS only, with the test
/// certificate in `dir` (made by `make_certificate`), to clients and to
/// the nodes it replicates from or watches.
fn tls_settings(dir: &Path) -> Vec<String> {
    let file = |name: &str| dir.join(name).display().to_string();
    vec![
        "tls-cert-file".into(),
        file("cert.pem"),
        "tls-key-file".into(),
        file("key.pem"),
        "tls-ca-cert-file".into(),
        file("cert.pem"),
        "tls-auth-clients".into(),
        "no".into(),
        "tls-replication".into(),
        "yes".into(),
    ]
}

impl Node {
    fn start(dir: &Path, name: &str, replica_of: Option<u16>) -> Node {
        Node::start_with(dir, name, replica_of, false)
    }

    fn start_with(dir: &Path, name: &str, replica_of: Option<u16>, tls: bool) -> Node {
        let port = free_port();
        let data = dir.join(name);
        std::fs::create_dir_all(&data).expect("data dir");
        let mut cmd = Command::new("redis-server");
        if tls {
            cmd.args(["--bind", "127.0.0.1", "--port", "0"])
                .args(["--tls-port", &port.to_string()])
                .args(tls_settings(dir).iter().enumerate().map(|(i, a)| {
                    if i % 2 == 0 {
                        format!("--{a}")
                    } else {
                        a.clone()
                    }
                }));
        } else {
            cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
        }
        cmd.args(["--save", "", "--appendonly", "no"])
            .args([
                "--requirepass",
                DATA_PASSWORD,
                "--masterauth",
                DATA_PASSWORD,
            ])
            .arg("--dir")
            .arg(&data)
            .stdout(Stdio::null());
        if let Some(master) = replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &master.to_string()]);
        }
        let node = Node {
            port,
            process: Some(Process(cmd.spawn().expect("redis-server"))),
            tls,
        };
        wait_until("redis-server answers", || node.try_conn().is_some());
        node
    }

    fn url(&self) -> String {
        if self.tls {
            format!(
                "rediss://:{DATA_PASSWORD}@127.0.0.1:{}/#insecure",
                self.port
            )
        } else {
            format!("redis://:{DATA_PASSWORD}@127.0.0.1:{}", self.port)
        }
    }

    fn try_conn(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(self.url()).ok()?;
        let conn = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        Some(conn)
    }

    fn conn(&self) -> redis::Connection {
        self.try_conn().expect("connect to redis-server")
    }

    fn int(&self, key: &str) -> i64 {
        redis::cmd("GET")
            .arg(key)
            .query::<Option<i64>>(&mut self.conn())
            .expect("GET")
            .unwrap_or(0)
    }

    fn llen(&self, key: &str) -> i64 {
        redis::cmd("LLEN")
            .arg(key)
            .query(&mut self.conn())
            .expect("LLEN")
    }

    /// `ROLE`'s first word, and for a replica whether its link is up.
    fn role(&self) -> Option<(String, bool)> {
        let mut conn = self.try_conn()?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut conn).ok()?;
        let text = |v: &redis::Value| match v {
            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            redis::Value::SimpleString(s) => s.clone(),
            _ => String::new(),
        };
        let kind = text(role.first()?);
        let linked = kind == "slave" && role.get(3).map(text).as_deref() == Some("connected");
        Some((kind, linked))
    }

    fn kill_hard(&mut self) {
        self.process.take();
    }
}

/// A master, its replica and three Sentinels watching it.
struct Cluster {
    _dir: tempfile::TempDir,
    nodes: Vec<Node>,
    sentinels: Vec<(u16, Process)>,
    tls: bool,
}

impl Cluster {
    fn start() -> Cluster {
        Cluster::start_with(false)
    }

    /// Everything over TLS: clients, replication, the Sentinels.
    fn start_tls() -> Cluster {
        Cluster::start_with(true)
    }

    fn start_with(tls: bool) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        if tls {
            make_certificate(dir.path());
        }
        let master = Node::start_with(dir.path(), "a", None, tls);
        let replica = Node::start_with(dir.path(), "b", Some(master.port), tls);
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel{i}.conf"));
            let listen = if tls {
                let settings = tls_settings(dir.path());
                let lines: Vec<String> = settings
                    .chunks(2)
                    .map(|kv| format!("{} {}", kv[0], kv[1]))
                    .collect();
                format!("port 0\ntls-port {port}\n{}\n", lines.join("\n"))
            } else {
                format!("port {port}\n")
            };
            std::fs::write(
                &conf,
                format!(
                    "{listen}bind 127.0.0.1\ndir {}\nrequirepass {SENTINEL_PASSWORD}\nsentinel sentinel-pass {SENTINEL_PASSWORD}\nsentinel monitor {SERVICE} 127.0.0.1 {} 2\nsentinel auth-pass {SERVICE} {DATA_PASSWORD}\nsentinel down-after-milliseconds {SERVICE} 1000\nsentinel failover-timeout {SERVICE} 10000\n",
                    dir.path().display(),
                    master.port
                ),
            )
            .expect("sentinel config");
            let child = Command::new("redis-sentinel")
                .arg(&conf)
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-sentinel must be installed (make test installs it)");
            sentinels.push((port, Process(child)));
        }
        let cluster = Cluster {
            _dir: dir,
            nodes: vec![master, replica],
            sentinels,
            tls,
        };
        wait_until("the replica is in sync", || {
            cluster.nodes[1].role().is_some_and(|(_, linked)| linked)
        });
        // Every Sentinel knows the replica and the two other Sentinels: a
        // failover needs them (and an election, the others).
        for (port, _) in &cluster.sentinels {
            wait_until("the Sentinels know each other and the replica", || {
                let state = cluster.sentinel_master(*port);
                state.get("num-slaves").map(String::as_str) == Some("1")
                    && state.get("num-other-sentinels").map(String::as_str) == Some("2")
            });
        }
        cluster
    }

    fn sentinels_env(&self) -> String {
        self.sentinels
            .iter()
            .map(|(p, _)| match self.tls {
                true => format!("rediss://127.0.0.1:{p}/#insecure"),
                false => format!("127.0.0.1:{p}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// REDIS_URL: the data nodes' password, and TLS when they speak it.
    fn data_url(&self) -> String {
        match self.tls {
            true => format!("rediss://:{DATA_PASSWORD}@ignored/#insecure"),
            false => format!("redis://:{DATA_PASSWORD}@ignored"),
        }
    }

    /// `SENTINEL MASTER`, as a map.
    fn sentinel_master(&self, port: u16) -> HashMap<String, String> {
        redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(SERVICE)
            .query(&mut self.sentinel_conn(port))
            .unwrap_or_default()
    }

    fn sentinel_conn(&self, port: u16) -> redis::Connection {
        let url = match self.tls {
            true => format!("rediss://:{SENTINEL_PASSWORD}@127.0.0.1:{port}/#insecure"),
            false => format!("redis://:{SENTINEL_PASSWORD}@127.0.0.1:{port}"),
        };
        redis::Client::open(url)
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("connect to a Sentinel")
    }

    /// The node the Sentinels name as master now.
    fn master(&self) -> &Node {
        let port: u16 = self
            .sentinel_master(self.sentinels[0].0)
            .get("port")
            .and_then(|p| p.parse().ok())
            .expect("a master port");
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a node of ours")
    }

    /// Asks a Sentinel for a failover and waits until every Sentinel names
    /// the new master, and (unless the old one is dead) until the old master
    /// was turned into its replica and is in sync: a failover before that
    /// would promote a node without the latest writes. `switched` runs in
    /// between.
    fn failover(&self, switched: impl FnOnce()) {
        let before = self.master().port;
        let replica = self
            .nodes
            .iter()
            .find(|n| n.port != before && n.process.is_some())
            .expect("a replica");
        self.await_caught_up(replica);
        let (port, _) = &self.sentinels[0];
        let reply: String = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(SERVICE)
            .query(&mut self.sentinel_conn(*port))
            .expect("SENTINEL FAILOVER");
        assert_eq!(reply, "OK");
        self.await_new_master(before);
        switched();
        self.await_old_master_synced(before);
    }

    fn await_new_master(&self, before: u16) {
        for (port, _) in &self.sentinels {
            wait_long("every Sentinel names the new master", || {
                self.sentinel_master(*port).get("port").map(String::as_str)
                    != Some(before.to_string().as_str())
            });
        }
    }

    fn await_old_master_synced(&self, before: u16) {
        if let Some(old) = self
            .nodes
            .iter()
            .find(|n| n.port == before && n.process.is_some())
        {
            wait_long("the old master is a replica in sync", || {
                old.role().is_some_and(|(_, linked)| linked)
            });
            self.await_caught_up(old);
        }
    }

    /// Waits until `replica` has applied everything the master had written
    /// when this was called. A linked replica may still be applying the
    /// writes made during its resynchronisation, and Sentinel promotes it
    /// without looking: what it lacks then is lost as in a crash. A planned
    /// failover starts from a replica that has caught up.
    fn await_caught_up(&self, replica: &Node) {
        let offset = |node: &Node, field: &str| -> Option<i64> {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut node.try_conn()?)
                .ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("{field}:")))
                .and_then(|v| v.trim().parse().ok())
        };
        let target = offset(self.master(), "master_repl_offset").expect("the master's offset");
        wait_long("the replica has caught up", || {
            offset(replica, "slave_repl_offset").is_some_and(|o| o >= target)
        });
    }
}

/// [`wait_until`] with room for a demotion (Sentinel reconfigures an old
/// master about ten seconds after the switch).
fn wait_long(what: &str, cond: impl FnMut() -> bool) {
    wait_until_within(Duration::from_secs(90), what, cond)
}

/// A job program that appends its args (one JSON line) to `log`.
fn recording_jobs(dir: &Path, log: &Path, pause: &str) -> PathBuf {
    let jobs = dir.join("jobs");
    std::fs::create_dir_all(&jobs).expect("jobs dir");
    let program = jobs.join("Record");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\nread -r args\nsleep {pause}\necho \"$args\" >> {}\n",
            log.display()
        ),
    )
    .expect("job program");
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    jobs
}

/// A COUNT=2 pool through the Sentinels, logging to `log`.
fn pool(cluster: &Cluster, jobs: &Path, log: &Path, extra: &[(&str, &str)]) -> Process {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_SENTINELS", cluster.sentinels_env())
        .env("REDIS_SENTINEL_MASTER", SERVICE)
        .env("REDIS_SENTINEL_PASSWORD", SENTINEL_PASSWORD)
        .env("REDIS_URL", cluster.data_url())
        .env("COUNT", "2")
        .env("QUEUE", "q")
        .env("INTERVAL", "0.1")
        .env("JOBS_DIR", jobs)
        .envs(extra.iter().copied())
        .stdout(Stdio::null());
    log_to(&mut cmd, log);
    Process(cmd.spawn().expect("spawn the pool"))
}

/// Enqueues `n` jobs through the Sentinels (the producer finds the master).
fn enqueue_jobs(cluster: &Cluster, n: usize) {
    enqueue_jobs_from(cluster, 0, n)
}

/// Enqueues jobs `first` to `first + n - 1`.
fn enqueue_jobs_from(cluster: &Cluster, first: usize, n: usize) {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("REDIS_SENTINELS", cluster.sentinels_env())
        .env("REDIS_SENTINEL_MASTER", SERVICE)
        .env("REDIS_SENTINEL_PASSWORD", SENTINEL_PASSWORD)
        .env("REDIS_URL", cluster.data_url())
        .args(["enqueue", "--stdin", "q", "Record"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn enqueue");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        for i in first..first + n {
            writeln!(stdin, "[{i}]").expect("write args");
        }
    }
    let out = wait_output(child);
    assert_ok(&out);
}

/// After a failover: both workers' doorbells wait on the new master, and
/// job `done` (the next) is picked up at once, where an idle worker without
/// a doorbell there would wait for its INTERVAL (60 s in these tests).
fn assert_doorbells_follow(cluster: &Cluster, ran: &Path, done: usize) {
    let master = cluster.master();
    wait_until("both doorbells wait on the new master", || {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut master.conn())
            .unwrap_or_default();
        clients.matches("cmd=blmove").count() == 2
    });
    let t0 = Instant::now();
    enqueue_jobs_from(cluster, done, 1);
    wait_until("the new job ran", || line_count(ran) > done);
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "picked up by a doorbell, not the next INTERVAL: {:?}",
        t0.elapsed()
    );
}

/// How often each job ran, by its number.
fn runs(log: &Path) -> HashMap<usize, usize> {
    let mut counts = HashMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let n: Vec<usize> = serde_json::from_str(line).expect("a job's args");
        *counts.entry(n[0]).or_default() += 1;
    }
    counts
}

/// `make failover` sets SENTINEL_FAILOVERS for a longer run.
fn failovers() -> usize {
    std::env::var("SENTINEL_FAILOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

#[test]
fn a_pool_works_through_two_planned_failovers_running_every_job_once() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let ran = dir.path().join("ran");
    // Jobs of 40 ms on two workers: at most 50 a second, so that each
    // failover (and the old master's demotion, about 12 s) finds work left.
    let rounds = failovers();
    let total = JOBS.max(800 * rounds);
    let jobs = recording_jobs(dir.path(), &ran, "0.04");
    let log = dir.path().join("pool.log");
    enqueue_jobs(&cluster, total);
    let metrics = format!("127.0.0.1:{}", free_port());
    // BLOCKING: the doorbells must follow the master; the exporter is one
    // more process on the Sentinels.
    let mut pool = pool(
        &cluster,
        &jobs,
        &log,
        &[
            ("BLOCKING", "1"),
            ("INTERVAL", "60"),
            ("METRICS_LISTEN", &metrics),
        ],
    );

    for round in 1..=rounds {
        let at = 200 + (round - 1) * 500;
        wait_long("the pool is working", || line_count(&ran) >= at);
        let before = line_count(&ran);
        cluster.failover(|| {
            let after = line_count(&ran);
            assert!(
                after < total,
                "failover {round} came too late: every job had run"
            );
            eprintln!("failover {round}: from {before} to {after} jobs run");
        });
    }
    wait_long("every job ran", || line_count(&ran) >= total);
    let master = cluster.master();
    wait_long("every job is recorded", || {
        master.int("resque:stat:processed") >= total as i64
    });

    let counts = runs(&ran);
    let twice: Vec<_> = counts.iter().filter(|(_, &c)| c > 1).collect();
    let warnings = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains(" INFO "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        twice.is_empty(),
        "jobs run more than once: {twice:?}\n{}",
        warnings()
    );
    assert_eq!(counts.len(), total, "every job ran");
    assert_eq!(master.int("resque:stat:processed"), total as i64);
    assert_eq!(master.int("resque:stat:failed"), 0);
    assert_eq!(master.llen("resque:failed"), 0);
    assert_eq!(master.llen("resque:queue:q"), 0);
    assert!(
        pool.0.try_wait().expect("try_wait").is_none(),
        "the pool exited"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged(&log, "(+try-failover): holding writes") >= rounds,
        "{text}"
    );
    assert!(logged(&log, "(+switch-master)") >= rounds, "{text}");
    assert_eq!(logged(&log, "already recorded"), 0, "{text}");
    assert_eq!(logged(&log, "resuming a job"), 0, "{text}");

    // The doorbells moved with the master: each idle worker has one blocked
    // there, and a new job is picked up at once, not at the next INTERVAL.
    assert_doorbells_follow(&cluster, &ran, total);
    // The exporter follows too.
    wait_until("the exporter reads the new master", || {
        http_get(&metrics, "/metrics", None).is_some_and(|(_, body)| {
            body.contains("resque_up 1")
                && body.contains(&format!("resque_job_executions_total {}", total + 1))
        })
    });
}

#[test]
fn a_pool_carries_on_after_its_master_is_killed() {
    let mut cluster = Cluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let ran = dir.path().join("ran");
    let jobs = recording_jobs(dir.path(), &ran, "0.005");
    let log = dir.path().join("pool.log");
    enqueue_jobs(&cluster, JOBS);
    let mut pool = pool(&cluster, &jobs, &log, &[]);

    wait_long("the pool is working", || line_count(&ran) >= 300);
    let old = cluster.master().port;
    let before = line_count(&ran);
    let Some(index) = cluster.nodes.iter().position(|n| n.port == old) else {
        panic!("the master is one of ours")
    };
    cluster.nodes[index].kill_hard();
    cluster.await_new_master(old);
    wait_long("every job ran", || {
        runs(&ran).len() >= JOBS && cluster.master().llen("resque:queue:q") == 0
    });
    let master = cluster.master();
    wait_long("the workers are idle", || {
        redis::cmd("KEYS")
            .arg("resque:worker:*")
            .query::<Vec<String>>(&mut master.conn())
            .map(|keys| keys.iter().all(|k| k.ends_with(":started")))
            .unwrap_or(false)
    });

    // What replication could not keep is reported, not hidden: a job whose
    // reservation or record the dead master had not passed on runs again,
    // or goes uncounted.
    let counts = runs(&ran);
    let twice = counts.values().filter(|&&c| c > 1).count();
    let processed = master.int("resque:stat:processed");
    eprintln!(
        "kill -9 of the master after {before} jobs: {} jobs ran, {twice} of them twice; stat:processed {processed} of {JOBS}; {} failure records",
        counts.len(),
        master.llen("resque:failed")
    );
    assert_eq!(counts.len(), JOBS, "every job ran at least once");
    assert!(
        twice <= 10,
        "more jobs ran twice than two workers could have in hand: {twice}"
    );
    assert!(
        pool.0.try_wait().expect("try_wait").is_none(),
        "the pool exited"
    );
    assert!(logged(&log, "(+switch-master)") >= 1);
    assert!(
        processed > before as i64,
        "the pool recorded jobs on the new master"
    );
    // The ops commands find the new master the same way.
    let mut info = Command::new(bin());
    info.env_clear()
        .env("REDIS_SENTINELS", cluster.sentinels_env())
        .env("REDIS_SENTINEL_MASTER", SERVICE)
        .env("REDIS_SENTINEL_PASSWORD", SENTINEL_PASSWORD)
        .env("REDIS_URL", cluster.data_url())
        .args(["info", "--json"]);
    let out = run(info);
    assert_ok(&out);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info --json");
    assert_eq!(info["processed"], processed, "{info}");
    assert_eq!(info["workers"], 2, "{info}");
}

#[test]
fn with_min_replicas_a_job_runs_and_its_record_counts_only_once_a_replica_has_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let master = Node::start(dir.path(), "a", None);
    let ran = dir.path().join("ran");
    let jobs = recording_jobs(dir.path(), &ran, "0");
    let log = dir.path().join("worker.log");
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("REDIS_URL", master.url())
        .env("REDIS_MIN_REPLICAS", "1")
        .env("QUEUE", "q")
        .env("INTERVAL", "0.1")
        .env("JOBS_DIR", &jobs)
        .stdout(Stdio::null());
    log_to(&mut cmd, &log);
    let _worker = Process(cmd.spawn().expect("spawn the worker"));
    let _: () = redis::cmd("RPUSH")
        .arg("resque:queue:q")
        .arg(r#"{"class":"Record","args":[7]}"#)
        .query(&mut master.conn())
        .expect("RPUSH");

    // No replica: the reservation is made but never confirmed, so the job
    // does not start (and stays in worker:ID, not lost).
    wait_until("the worker says the replica is missing", || {
        logged(&log, "0 of the 1 replicas REDIS_MIN_REPLICAS asks for") > 0
    });
    assert_eq!(line_count(&ran), 0, "the job ran unconfirmed");
    assert_eq!(master.llen("resque:queue:q"), 0);

    let mut replica = Node::start(dir.path(), "b", Some(master.port));
    wait_until("the job ran once a replica had it", || {
        master.int("resque:stat:processed") == 1
    });
    assert_eq!(runs(&ran).get(&7), Some(&1));
    assert_eq!(master.int("resque:stat:failed"), 0);

    // The record step too: job 8 starts while a replica confirms it, the
    // replica dies before it ends, so its record (which also reserves job 9)
    // is not confirmed: the worker holds job 9 back until a replica is there.
    let started = dir.path().join("started");
    std::fs::write(
        jobs.join("Slow"),
        format!(
            "#!/bin/sh\nread -r args\ntouch {}\nsleep 1\necho \"$args\" >> {}\n",
            started.display(),
            ran.display()
        ),
    )
    .expect("job program");
    std::fs::set_permissions(
        jobs.join("Slow"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    for payload in [
        r#"{"class":"Slow","args":[8]}"#,
        r#"{"class":"Record","args":[9]}"#,
    ] {
        let _: () = redis::cmd("RPUSH")
            .arg("resque:queue:q")
            .arg(payload)
            .query(&mut master.conn())
            .expect("RPUSH");
    }
    wait_until("job 8 runs", || started.exists());
    replica.kill_hard();
    wait_until("the worker says the record is unconfirmed", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("recording the outcome") && l.contains("0 of the 1 replicas"))
    });
    assert_eq!(runs(&ran).get(&8), Some(&1));
    assert_eq!(runs(&ran).get(&9), None, "job 9 ran unconfirmed");
    let _replica = Node::start(dir.path(), "c", Some(master.port));
    wait_until("job 9 ran once a replica was back", || {
        master.int("resque:stat:processed") == 3
    });
    assert_eq!(runs(&ran).get(&9), Some(&1));
    assert_eq!(runs(&ran).get(&8), Some(&1));
}

#[test]
fn over_tls_the_watch_and_the_doorbells_follow_a_failover() {
    let cluster = Cluster::start_tls();
    let dir = tempfile::tempdir().expect("temp dir");
    let ran = dir.path().join("ran");
    let jobs = recording_jobs(dir.path(), &ran, "0");
    let log = dir.path().join("pool.log");
    enqueue_jobs(&cluster, 20);
    // INTERVAL 60: a job is picked up at once only by a doorbell.
    let _pool = pool(
        &cluster,
        &jobs,
        &log,
        &[("BLOCKING", "1"), ("INTERVAL", "60")],
    );
    wait_until("the first jobs ran", || line_count(&ran) >= 20);

    let before = cluster.master().port;
    let reply: String = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(SERVICE)
        .query(&mut cluster.sentinel_conn(cluster.sentinels[0].0))
        .expect("SENTINEL FAILOVER");
    assert_eq!(reply, "OK");
    cluster.await_new_master(before);
    assert_doorbells_follow(&cluster, &ran, 20);
    let master = cluster.master();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    // Each process logs it: the supervisor and both workers.
    assert_eq!(logged(&log, "(+try-failover): holding writes"), 3, "{text}");
    assert!(logged(&log, "(+switch-master)") >= 2, "{text}");
    assert_eq!(master.int("resque:stat:processed"), 21);
}
