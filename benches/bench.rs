//! `make bench`: throughput, Redis traffic, CPU, memory and pickup latency of
//! resque-fork against its own redis-server. A benchmark, not a test: it
//! asserts nothing and prints one table (and the same figures as JSON in
//! target/bench.json). BENCH_SCALE=0.1 makes a quick, rough run.
//!
//! The same binary is the worker under test: started with BENCH_WORKER=1 it
//! is a worker whose registry has a no-op Rust job (`Noop`) and a job that
//! writes the time it started (`Stamp`); `NoopExec` runs /bin/true through
//! the exec handler.

use redis::Commands;
use resque_fork::{cli, Registry};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn main() {
    if std::env::var_os("BENCH_WORKER").is_some() {
        let registry = Registry::new()
            .register("Noop", |_| Ok(()))
            .register("Stamp", |job| {
                let started = now_ns();
                let path = job.args()[0].as_str().unwrap_or("/dev/null").to_string();
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)?;
                writeln!(f, "{started}")?;
                Ok(())
            });
        std::process::exit(cli::run(registry));
    }
    Bench::new().run();
}

struct Redis {
    child: Child,
    _dir: tempfile::TempDir,
    url: String,
    /// A replica of it, when asked for (stopped with it).
    replica: Option<Box<Redis>>,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_on(0, &[])
    }

    /// A server that also listens on a TCP port, and a replica of it (on
    /// its own unix socket), in sync before this returns.
    fn start_replicated() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut master = Redis::start_on(port, &[]);
        let replica = Redis::start_on(0, &["--replicaof", "127.0.0.1", &port.to_string()]);
        for _ in 0..1000 {
            if replica
                .info("replication")
                .get("master_link_status")
                .map(String::as_str)
                == Some("up")
            {
                master.replica = Some(Box::new(replica));
                return master;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the replica did not sync");
    }

    fn start_on(port: u16, extra: &[&str]) -> Redis {
        let dir = tempfile::tempdir().expect("temp dir");
        let sock = dir.path().join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&sock)
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (make bench installs it)");
        let url = format!("unix://{}", sock.display());
        let r = Redis {
            child,
            _dir: dir,
            url,
            replica: None,
        };
        for _ in 0..500 {
            if r.try_conn().is_some() {
                return r;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server did not start");
    }

    fn try_conn(&self) -> Option<redis::Connection> {
        let mut c = redis::Client::open(self.url.as_str())
            .ok()?
            .get_connection()
            .ok()?;
        redis::cmd("PING").query::<String>(&mut c).ok()?;
        Some(c)
    }

    fn conn(&self) -> redis::Connection {
        self.try_conn().expect("redis connection")
    }

    fn info(&self, section: &str) -> std::collections::HashMap<String, String> {
        let text: String = redis::cmd("INFO")
            .arg(section)
            .query(&mut self.conn())
            .unwrap();
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect()
    }

    fn cpu_seconds(&self) -> f64 {
        let i = self.info("cpu");
        let f = |k: &str| i.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        f("used_cpu_user") + f("used_cpu_sys")
    }

    /// (calls, µs) of one command since the last RESETSTAT, including its
    /// calls from scripts.
    fn command_stat(&self, name: &str) -> (f64, f64) {
        let stats = self.info("commandstats");
        let line = stats
            .get(&format!("cmdstat_{name}"))
            .cloned()
            .unwrap_or_default();
        let field = |k: &str| {
            line.split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        (field("calls"), field("usec"))
    }

    fn commands(&self) -> u64 {
        self.info("stats")
            .get("total_commands_processed")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn processed(&self, c: &mut redis::Connection) -> u64 {
        c.get::<_, Option<u64>>("resque:stat:processed")
            .unwrap()
            .unwrap_or(0)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What /proc says of one process.
#[derive(Default, Clone, Copy)]
struct ProcStats {
    hwm_kb: u64,
    rss_kb: u64,
    self_ticks: u64,
    child_ticks: u64,
}

fn proc_stats(pid: u32) -> ProcStats {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default();
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    ProcStats {
        hwm_kb: kb("VmHWM:"),
        rss_kb: kb("VmRSS:"),
        // utime, stime, cutime, cstime are fields 14-17 (indexes 11-14 here).
        self_ticks: get(11) + get(12),
        child_ticks: get(13) + get(14),
    }
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.split_whitespace().nth(1).map(String::from))
                })
                .flatten()
                .is_some_and(|pp| pp == pid.to_string())
        })
        .collect()
}

/// Schedules `Noop` items numbered `i` for their `ts`, as Ruby's
/// `delayed_push` writes them, in one round trip.
fn push_delayed(c: &mut redis::Connection, items: impl Iterator<Item = (i64, usize)>) {
    let mut pipe = redis::pipe();
    for (ts, i) in items {
        let item = format!(r#"{{"class":"Noop","args":[{i}],"queue":"q"}}"#);
        pipe.rpush(format!("resque:delayed:{ts}"), &item)
            .ignore()
            .sadd(format!("resque:timestamps:{item}"), format!("delayed:{ts}"))
            .ignore()
            .zadd("resque:delayed_queue_schedule", ts, ts)
            .ignore();
    }
    let _: () = pipe.query(c).unwrap();
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// One throughput run's figures.
#[derive(Default, Clone)]
struct Run {
    jobs_per_s: f64,
    round_trips_per_job: f64,
    commands_per_job: f64,
    server_commands_per_job: f64,
    redis_cpu_us_per_job: f64,
    parent_cpu_us_per_job: f64,
    child_cpu_us_per_job: f64,
    worker_hwm_kb: u64,
    /// Redis CPU spent in the metrics' HINCRBYs, per job (µs), and how many.
    metrics_us_per_job: f64,
    metrics_calls_per_job: f64,
}

struct Bench {
    scale: f64,
    dir: tempfile::TempDir,
    results: serde_json::Map<String, Value>,
    table: Vec<(String, String)>,
}

impl Bench {
    fn new() -> Bench {
        let scale = std::env::var("BENCH_SCALE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0);
        let dir = tempfile::tempdir().expect("temp dir");
        let jobs = dir.path().join("jobs");
        std::fs::create_dir(&jobs).unwrap();
        std::os::unix::fs::symlink("/bin/true", jobs.join("NoopExec")).unwrap();
        // A statically linked no-op: what a spawn costs without the loader.
        let source = dir.path().join("noop.c");
        std::fs::write(&source, "int main(void) { return 0; }\n").unwrap();
        let built = std::process::Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(dir.path().join("noop-static"))
            .arg(&source)
            .status()
            .is_ok_and(|s| s.success());
        if built {
            std::os::unix::fs::symlink(dir.path().join("noop-static"), jobs.join("NoopStatic"))
                .unwrap();
        }
        Bench {
            scale,
            dir,
            results: serde_json::Map::new(),
            table: Vec::new(),
        }
    }

    /// `op` run `n` times in all, by one thread per core at once; per second.
    fn per_core_rate(n: usize, op: impl Fn() + Sync) -> f64 {
        let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..cores {
                s.spawn(|| (0..n / cores).for_each(|_| op()));
            }
        });
        (n / cores * cores) as f64 / t0.elapsed().as_secs_f64()
    }

    /// The machine's own floor for starting programs: `program` spawned
    /// (std's posix_spawn) and waited for. Spawns per second.
    fn spawn_floor(program: &Path, n: usize) -> f64 {
        Self::per_core_rate(n, || {
            let _ = std::process::Command::new(program).status();
        })
    }

    /// The floor of the Rust-job path: fork, `_exit` in the child, wait,
    /// from this process (a few MB, as a worker). Forks per second.
    fn fork_floor(n: usize) -> f64 {
        Self::per_core_rate(n, || {
            // SAFETY: the child only calls _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                unsafe { libc::_exit(0) }
            }
            let mut status = 0;
            unsafe { libc::waitpid(pid, &mut status, 0) };
        })
    }

    fn n(&self, base: usize) -> usize {
        ((base as f64 * self.scale) as usize).max(100)
    }

    /// A figure as a share of the machine's own floor for it.
    fn share_row(&mut self, name: &str, ours: f64, floor: f64, unit: &str) {
        self.row(
            name,
            format!("{:.0}% of {floor:.0} {unit}", 100.0 * ours / floor),
            json!([ours, floor]),
        );
    }

    fn row(&mut self, name: &str, value: String, json: Value) {
        println!("{name:<58} {value}");
        self.table.push((name.to_string(), value));
        self.results.insert(name.to_string(), json);
    }

    fn pool(
        &self,
        redis: &Redis,
        count: usize,
        queue: &str,
        extra: &[(&str, &str)],
    ) -> (Child, PathBuf) {
        let log = self.dir.path().join(format!("pool-{}.log", now_ns()));
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BENCH_WORKER", "1")
            .env("REDIS_URL", &redis.url)
            .env("QUEUE", queue)
            .env("INTERVAL", "1")
            .env("COUNT", count.to_string())
            .env("JOBS_DIR", self.dir.path().join("jobs"))
            // The exit line with each worker's Redis traffic, not per-job lines.
            .env("RUST_LOG", "warn,resque_fork::worker=info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        for (k, v) in extra {
            cmd.env(k, v);
        }
        (cmd.spawn().unwrap(), log)
    }

    fn enqueue(&self, redis: &Redis, queue: &str, class: &str, n: usize) {
        let mut c = redis.conn();
        let _: () = c.sadd("resque:queues", queue).unwrap();
        for start in (0..n).step_by(1000) {
            let batch: Vec<String> = (start..(start + 1000).min(n))
                // As our producer writes them: with queue_time, so each job
                // also adds its queue latency to the metrics.
                .map(|i| {
                    json!({"class": class, "args": [], "id": format!("{i:032x}"), "queue_time": 1.7e9})
                        .to_string()
                })
                .collect();
            let _: () = c.rpush(format!("resque:queue:{queue}"), batch).unwrap();
        }
    }

    fn stop(pool: &mut Child) {
        unsafe { libc::kill(pool.id() as i32, libc::SIGQUIT) };
        let _ = pool.wait();
    }

    /// Delayed jobs: how fast one pool moves `n` due items onto their queue
    /// (items/s), and the lag from due time to queue at the default poll
    /// (p50, p99 in ms, over `samples` items due over the next seconds).
    fn promotion(&self, n: usize, samples: usize) -> (f64, f64, f64) {
        let redis = Redis::start();
        let mut c = redis.conn();
        let (now, _): (i64, i64) = redis::cmd("TIME").query(&mut c).unwrap();
        // Throughput: `n` items over 100 past timestamps.
        for start in (0..n).step_by(1000) {
            let items = (start..(start + 1000).min(n)).map(|i| (now - 100 + (i % 100) as i64, i));
            push_delayed(&mut c, items);
        }
        let t0 = Instant::now();
        // A pool that runs no job: its queue is elsewhere.
        let (mut pool, _) = self.pool(&redis, 1, "elsewhere", &[]);
        while c.llen::<_, usize>("resque:queue:q").unwrap() < n {
            std::thread::sleep(Duration::from_millis(2));
        }
        let rate = n as f64 / t0.elapsed().as_secs_f64();
        // Lag: items due over the next seconds, a few per second, watched
        // as they land (by Redis's clock, as promotion reads it).
        let _: () = redis::cmd("DEL")
            .arg("resque:queue:q")
            .query(&mut c)
            .unwrap();
        let (start, _): (i64, i64) = redis::cmd("TIME").query(&mut c).unwrap();
        let per_second = 5;
        push_delayed(
            &mut c,
            (0..samples).map(|i| (start + 2 + (i / per_second) as i64, i)),
        );
        let mut lags = Vec::new();
        let mut seen = 0;
        while seen < samples {
            let len: usize = c.llen("resque:queue:q").unwrap();
            if len > seen {
                let (s, us): (i64, i64) = redis::cmd("TIME").query(&mut c).unwrap();
                let landed = s as f64 + us as f64 / 1e6;
                for item in c
                    .lrange::<_, Vec<String>>("resque:queue:q", seen as isize, len as isize - 1)
                    .unwrap()
                {
                    let i: usize = serde_json::from_str::<Value>(&item).unwrap()["args"][0]
                        .as_u64()
                        .unwrap() as usize;
                    let due = (start + 2 + (i / per_second) as i64) as f64;
                    lags.push((landed - due) * 1000.0);
                }
                seen = len;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Self::stop(&mut pool);
        (rate, percentile(lags.clone(), 0.5), percentile(lags, 0.99))
    }

    /// Runs `n` jobs of `class` through a COUNT=`count` pool.
    fn throughput(&self, count: usize, class: &str, n: usize, queues: usize) -> Run {
        self.throughput_on(Redis::start(), count, class, n, queues, &[])
    }

    /// [`Bench::throughput`] on a given server, with settings.
    fn throughput_on(
        &self,
        redis: Redis,
        count: usize,
        class: &str,
        n: usize,
        queues: usize,
        extra: &[(&str, &str)],
    ) -> Run {
        let target = if queues > 1 {
            format!("q{:05}", queues - 1)
        } else {
            "q".into()
        };
        if queues > 1 {
            let names: Vec<String> = (0..queues - 1).map(|i| format!("q{i:05}")).collect();
            let _: () = redis.conn().sadd("resque:queues", names).unwrap();
        }
        self.enqueue(&redis, &target, class, n);
        let queue = if queues > 1 { "*" } else { "q" };
        let mut c = redis.conn();
        let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut c).unwrap();
        let cpu0 = redis.cpu_seconds();
        let t0 = Instant::now();
        let (mut pool, log) = self.pool(&redis, count, queue, extra);
        let mut polls = 0u64;
        while redis.processed(&mut c) < n as u64 {
            polls += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let cpu1 = redis.cpu_seconds();
        let hincrby = redis.command_stat("hincrby");
        let server_commands = redis.commands().saturating_sub(polls + 4);
        let workers = children(pool.id());
        let stats: Vec<ProcStats> = workers.iter().map(|w| proc_stats(*w)).collect();
        let ticks = |f: fn(&ProcStats) -> u64| stats.iter().map(f).sum::<u64>() as f64 / 100.0;
        Self::stop(&mut pool);
        let (mut rt, mut cmds) = (0.0, 0.0);
        for line in std::fs::read_to_string(&log).unwrap_or_default().lines() {
            if let Some(rest) = line.split("(Redis: ").nth(1) {
                let nums: Vec<f64> = rest
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|s| s.parse().ok())
                    .collect();
                rt += nums.first().copied().unwrap_or(0.0);
                cmds += nums.get(1).copied().unwrap_or(0.0);
            }
        }
        let per = |x: f64| x / n as f64;
        Run {
            jobs_per_s: n as f64 / elapsed,
            round_trips_per_job: per(rt),
            commands_per_job: per(cmds),
            server_commands_per_job: per(server_commands as f64),
            redis_cpu_us_per_job: per((cpu1 - cpu0) * 1e6),
            parent_cpu_us_per_job: per(ticks(|s| s.self_ticks) * 1e6),
            child_cpu_us_per_job: per(ticks(|s| s.child_ticks) * 1e6),
            worker_hwm_kb: stats.iter().map(|s| s.hwm_kb).max().unwrap_or(0),
            metrics_us_per_job: per(hincrby.1),
            metrics_calls_per_job: per(hincrby.0),
        }
    }

    /// COUNT=2 runs of `n` jobs of `class` and `floor`, in turn, three
    /// rounds: the median jobs/s and the median floor.
    fn beside_floor(&self, class: &str, n: usize, floor: impl Fn() -> f64) -> (f64, f64) {
        let (mut ours, mut floors) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            ours.push(self.throughput(2, class, n, 1).jobs_per_s);
            floors.push(floor());
        }
        (percentile(ours, 0.5), percentile(floors, 0.5))
    }

    /// Median of three runs (by throughput).
    fn median_run(&self, count: usize, class: &str, n: usize, queues: usize) -> Run {
        let mut runs: Vec<Run> = (0..3)
            .map(|_| self.throughput(count, class, n, queues))
            .collect();
        runs.sort_by(|a, b| a.jobs_per_s.total_cmp(&b.jobs_per_s));
        runs[1].clone()
    }

    /// Enqueue → job start, one job at a time, with the worker idle.
    fn pickup(&self, samples: usize, extra: &[(&str, &str)]) -> (f64, f64, f64) {
        let redis = Redis::start();
        let stamps = self.dir.path().join(format!("stamps-{}", now_ns()));
        let (mut pool, _) = self.pool(&redis, 1, "q", extra);
        let mut c = redis.conn();
        while c.scard::<_, u64>("resque:workers").unwrap() == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut lat = Vec::new();
        for i in 0..samples {
            // A random phase against the worker's polling.
            std::thread::sleep(Duration::from_millis(5 + (i as u64 * 37) % 50));
            let payload =
                json!({"class": "Stamp", "args": [stamps.display().to_string()]}).to_string();
            let t0 = now_ns();
            let _: () = c.rpush("resque:queue:q", payload).unwrap();
            let seen = loop {
                let text = std::fs::read_to_string(&stamps).unwrap_or_default();
                if text.lines().count() > i {
                    break text
                        .lines()
                        .nth(i)
                        .and_then(|l| l.parse::<u128>().ok())
                        .unwrap_or(t0);
                }
                std::thread::sleep(Duration::from_micros(200));
            };
            lat.push((seen.saturating_sub(t0)) as f64 / 1e6);
        }
        // Idle traffic: commands per second from an idle worker.
        let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut c).unwrap();
        let idle = Duration::from_secs(5);
        std::thread::sleep(idle);
        let per_s = redis.commands().saturating_sub(2) as f64 / idle.as_secs_f64();
        Self::stop(&mut pool);
        (percentile(lat.clone(), 0.5), percentile(lat, 0.99), per_s)
    }

    fn memory_over(&self, n: usize) -> (u64, u64) {
        let redis = Redis::start();
        self.enqueue(&redis, "q", "Noop", n);
        let (mut pool, _) = self.pool(&redis, 1, "q", &[]);
        let mut c = redis.conn();
        let mut early = 0;
        loop {
            let done = redis.processed(&mut c);
            // COUNT=1: the foreground process is the worker itself.
            let worker = Some(pool.id());
            if early == 0 && done >= (n / 10) as u64 {
                early = worker.map(|w| proc_stats(w).rss_kb).unwrap_or(0);
            }
            if done >= n as u64 {
                let late = worker.map(|w| proc_stats(w).rss_kb).unwrap_or(0);
                Self::stop(&mut pool);
                return (early, late);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn enqueue_rates(&self) -> (f64, f64) {
        let redis = Redis::start();
        let bin = env!("CARGO_BIN_EXE_resque-fork");
        let calls = self.n(300);
        let t0 = Instant::now();
        for i in 0..calls {
            let ok = Command::new(bin)
                .env("REDIS_URL", &redis.url)
                .args(["enqueue", "one", "Job", &i.to_string()])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success();
            assert!(ok);
        }
        let single = calls as f64 / t0.elapsed().as_secs_f64();
        let n = self.n(200_000);
        let input: String = (0..n).map(|i| format!("[{i},\"x\"]\n")).collect();
        let t0 = Instant::now();
        let mut child = Command::new(bin)
            .env("REDIS_URL", &redis.url)
            .args(["enqueue", "bulk", "Job", "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        let bulk = n as f64 / t0.elapsed().as_secs_f64();
        (single, bulk)
    }

    fn run(mut self) {
        let load = || {
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let load_before = load();
        println!(
            "resque-fork bench: {} cores, load average before: {load_before}, scale {}",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            self.scale
        );
        println!("{:<58} value", "figure");

        let mut single_queue_c2 = 0.0;
        for (class, label, base) in [
            ("Noop", "library no-op", 30_000),
            ("NoopExec", "exec no-op", 8_000),
        ] {
            for count in [1, 2, 4] {
                let r = self.median_run(count, class, self.n(base), 1);
                if class == "Noop" && count == 2 {
                    single_queue_c2 = r.jobs_per_s;
                }
                self.row(
                    &format!("{label}, COUNT={count}: jobs/s"),
                    format!("{:.0}", r.jobs_per_s),
                    json!(r.jobs_per_s),
                );
                if count == 2 {
                    self.row(
                        &format!("{label}, COUNT=2: round trips / commands per job (client)"),
                        format!("{:.2} / {:.2}", r.round_trips_per_job, r.commands_per_job),
                        json!([r.round_trips_per_job, r.commands_per_job]),
                    );
                    self.row(
                        &format!("{label}, COUNT=2: Redis commands per job incl. in scripts"),
                        format!("{:.1}", r.server_commands_per_job),
                        json!(r.server_commands_per_job),
                    );
                    self.row(
                        &format!("{label}, COUNT=2: Redis CPU per job (us)"),
                        format!("{:.1}", r.redis_cpu_us_per_job),
                        json!(r.redis_cpu_us_per_job),
                    );
                    self.row(
                        &format!(
                            "{label}, COUNT=2: metrics per job: HINCRBYs / their Redis CPU (us)"
                        ),
                        format!(
                            "{:.1} / {:.1}",
                            r.metrics_calls_per_job, r.metrics_us_per_job
                        ),
                        json!([r.metrics_calls_per_job, r.metrics_us_per_job]),
                    );
                    self.row(
                        &format!("{label}, COUNT=2: CPU per job, worker / job process (us)"),
                        format!(
                            "{:.0} / {:.0}",
                            r.parent_cpu_us_per_job, r.child_cpu_us_per_job
                        ),
                        json!([r.parent_cpu_us_per_job, r.child_cpu_us_per_job]),
                    );
                    self.row(
                        &format!("{label}, COUNT=2: worker peak RSS (MB)"),
                        format!("{:.1}", r.worker_hwm_kb as f64 / 1024.0),
                        json!(r.worker_hwm_kb as f64 / 1024.0),
                    );
                }
            }
        }
        // The floors: what this machine itself allows, beside what we reach.
        // This machine's speed drifts by tens of percent within minutes, so
        // each figure and its floor are measured in turn, three rounds, and
        // the medians compared (a floor measured once, minutes away from
        // the figure, made the share swing from 46% to 64% between runs).
        let floor_n = self.n(6_000);
        let (ours, forks) = self.beside_floor("Noop", self.n(30_000), || Self::fork_floor(floor_n));
        self.share_row(
            "library no-op, COUNT=2: share of the fork + exit + wait floor",
            ours,
            forks,
            "forks/s",
        );
        let (ours, true_floor) = self.beside_floor("NoopExec", self.n(8_000), || {
            Self::spawn_floor(Path::new("/bin/true"), floor_n)
        });
        self.share_row(
            "exec /bin/true, COUNT=2: share of the spawn + wait floor",
            ours,
            true_floor,
            "spawns/s",
        );
        let static_noop = self.dir.path().join("noop-static");
        if static_noop.exists() {
            let (ours, floor) = self.beside_floor("NoopStatic", self.n(8_000), || {
                Self::spawn_floor(&static_noop, floor_n)
            });
            self.row(
                "exec static no-op, COUNT=2: jobs/s; share of the spawn floor",
                format!(
                    "{ours:.0}; {:.0}% of {floor:.0} spawns/s",
                    100.0 * ours / floor
                ),
                json!([ours, floor]),
            );
        }
        // REDIS_MIN_REPLICAS: the same server with a replica, without and
        // with waiting for it (WAIT after the reserve and record steps).
        let replicated = |wait: &str| {
            let mut runs: Vec<Run> = (0..3)
                .map(|_| {
                    self.throughput_on(
                        Redis::start_replicated(),
                        2,
                        "Noop",
                        self.n(20_000),
                        1,
                        &[("REDIS_MIN_REPLICAS", wait)],
                    )
                })
                .collect();
            runs.sort_by(|a, b| a.jobs_per_s.total_cmp(&b.jobs_per_s));
            runs[1].clone()
        };
        let (free, waited) = (replicated("0"), replicated("1"));
        self.row(
            "library no-op, COUNT=2, one replica: jobs/s, REDIS_MIN_REPLICAS 0 / 1",
            format!(
                "{:.0} / {:.0} ({:.0}%)",
                free.jobs_per_s,
                waited.jobs_per_s,
                100.0 * waited.jobs_per_s / free.jobs_per_s
            ),
            json!([free.jobs_per_s, waited.jobs_per_s]),
        );
        self.row(
            "  the same: round trips per job; Redis CPU per job (us), 0 / 1",
            format!(
                "{:.2} / {:.2}; {:.1} / {:.1}",
                free.round_trips_per_job,
                waited.round_trips_per_job,
                free.redis_cpu_us_per_job,
                waited.redis_cpu_us_per_job
            ),
            json!([
                free.round_trips_per_job,
                waited.round_trips_per_job,
                free.redis_cpu_us_per_job,
                waited.redis_cpu_us_per_job
            ]),
        );
        let many = self.median_run(2, "Noop", self.n(30_000), 200);
        self.row(
            "QUEUE=* over 200 queues (jobs in the last), COUNT=2: jobs/s",
            format!(
                "{:.0} ({:.0}% of one queue)",
                many.jobs_per_s,
                100.0 * many.jobs_per_s / single_queue_c2
            ),
            json!(many.jobs_per_s),
        );
        let tenants = self.median_run(2, "Noop", self.n(30_000), 10_000);
        self.row(
            "QUEUE=* over 10000 queues (jobs in the last), COUNT=2: jobs/s",
            format!(
                "{:.0} ({:.0}% of one queue)",
                tenants.jobs_per_s,
                100.0 * tenants.jobs_per_s / single_queue_c2
            ),
            json!(tenants.jobs_per_s),
        );
        let (early, late) = self.memory_over(self.n(100_000));
        self.row(
            &format!(
                "worker RSS after 10% / 100% of {} jobs (MB)",
                self.n(100_000)
            ),
            format!("{:.1} / {:.1}", early as f64 / 1024.0, late as f64 / 1024.0),
            json!([early, late]),
        );
        let (rate, lag50, lag99) = self.promotion(self.n(100_000), 40);
        self.row(
            "delayed jobs promoted by one pool: items/s",
            format!("{rate:.0}"),
            json!(rate),
        );
        self.row(
            "delayed job lag, due to queued (poll 1 s): p50 / p99 (ms)",
            format!("{lag50:.0} / {lag99:.0}"),
            json!([lag50, lag99]),
        );
        let (p50, p99, idle) = self.pickup(self.n(60).min(60), &[("INTERVAL", "0.1")]);
        self.row(
            "pickup, polling INTERVAL=0.1: p50 / p99 (ms); idle commands/s",
            format!("{p50:.2} / {p99:.2}; {idle:.1}"),
            json!([p50, p99, idle]),
        );
        let (p50, p99, idle) = self.pickup(
            self.n(200).min(200),
            &[("BLOCKING", "1"), ("INTERVAL", "5")],
        );
        self.row(
            "pickup, BLOCKING=1: p50 / p99 (ms); idle commands/s",
            format!("{p50:.2} / {p99:.2}; {idle:.1}"),
            json!([p50, p99, idle]),
        );
        let (single, bulk) = self.enqueue_rates();
        self.row(
            "CLI enqueue, one job per call: jobs/s",
            format!("{single:.0}"),
            json!(single),
        );
        self.row(
            "CLI enqueue --stdin (bulk, pipelined): jobs/s",
            format!("{bulk:.0}"),
            json!(bulk),
        );
        let load_after = load();
        println!("load average after: {load_after}");
        self.results
            .insert("load_before".into(), json!(load_before));
        self.results.insert("load_after".into(), json!(load_after));
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench.json");
        if let Err(e) = std::fs::write(&out, Value::Object(self.results).to_string()) {
            eprintln!("could not write {}: {e}", out.display());
        } else {
            println!("figures written to {}", out.display());
        }
        println!("({} figures)", self.table.len());
    }
}
