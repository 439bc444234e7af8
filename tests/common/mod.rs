//! Test harness: a private redis-server per test, the real binary, and
//! polling with deadlines (never a sleep standing in for a condition).
#![allow(dead_code)]

use redis::Commands;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Generous, because tests must pass with both cores busy.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A redis-server on a unix socket in its own temp dir, stopped on drop.
pub struct RedisServer {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
    tls_port: Option<u16>,
    args: Vec<String>,
}

/// Options for a test Redis.
#[derive(Default)]
pub struct RedisOptions {
    /// Also listen with TLS on a free loopback port (self-signed certificate).
    pub tls: bool,
    /// Append-only file with `appendfsync always`: survives `kill -9`.
    pub durable: bool,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_in(
            tempfile::tempdir().expect("temp dir"),
            RedisOptions::default(),
        )
    }

    pub fn start_tls() -> RedisServer {
        RedisServer::start_in(
            tempfile::tempdir().expect("temp dir"),
            RedisOptions {
                tls: true,
                ..Default::default()
            },
        )
    }

    pub fn start_durable() -> RedisServer {
        RedisServer::start_in(
            tempfile::tempdir().expect("temp dir"),
            RedisOptions {
                durable: true,
                ..Default::default()
            },
        )
    }

    /// The socket a server started in `dir` will listen on.
    pub fn socket_in(dir: &Path) -> PathBuf {
        dir.join("redis.sock")
    }

    /// Starts a server in `dir` (on [`RedisServer::socket_in`]).
    pub fn start_in(dir: tempfile::TempDir, options: RedisOptions) -> RedisServer {
        let socket = RedisServer::socket_in(dir.path());
        let mut args: Vec<String> = ["--port", "0", "--save", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if options.durable {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from));
        } else {
            args.extend(["--appendonly", "no"].map(String::from));
        }
        args.extend(["--unixsocket".to_string(), socket.display().to_string()]);
        args.extend(["--dir".to_string(), dir.path().display().to_string()]);
        let tls_port = options.tls.then(|| {
            make_certificate(dir.path());
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            args.extend(
                [
                    "--bind",
                    "127.0.0.1",
                    "--tls-port",
                    &port.to_string(),
                    "--tls-cert-file",
                    "cert.pem",
                    "--tls-key-file",
                    "key.pem",
                    "--tls-ca-cert-file",
                    "cert.pem",
                    "--tls-auth-clients",
                    "no",
                ]
                .map(String::from),
            );
            port
        });
        let child = spawn_redis(&args, dir.path());
        let server = RedisServer {
            child,
            dir,
            socket,
            tls_port,
            args,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        wait_until("redis-server answers", || {
            self.try_conn()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c).ok())
                .is_some()
        });
    }

    /// `kill -9` the server.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again with the same settings and data directory.
    pub fn restart(&mut self) {
        self.kill_hard();
        let _ = std::fs::remove_file(&self.socket);
        self.child = spawn_redis(&self.args, self.dir.path());
        self.wait_ready();
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The TLS URL, accepting the self-signed certificate.
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("started with start_tls");
        format!("rediss://127.0.0.1:{port}/#insecure")
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn try_conn(&self) -> Option<redis::Connection> {
        redis::Client::open(self.url()).ok()?.get_connection().ok()
    }

    pub fn conn(&self) -> redis::Connection {
        self.try_conn().expect("connect to the test redis")
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.conn().get(key).expect("GET")
    }

    pub fn list(&self, key: &str) -> Vec<String> {
        self.conn().lrange(key, 0, -1).expect("LRANGE")
    }

    pub fn llen(&self, key: &str) -> i64 {
        self.conn().llen(key).expect("LLEN")
    }

    pub fn zcard(&self, key: &str) -> i64 {
        redis::cmd("ZCARD")
            .arg(key)
            .query(&mut self.conn())
            .unwrap_or(0)
    }

    pub fn members(&self, key: &str) -> Vec<String> {
        let mut m: Vec<String> = self.conn().smembers(key).expect("SMEMBERS");
        m.sort();
        m
    }

    /// Redis's clock, in epoch seconds.
    pub fn now(&self) -> i64 {
        let (now, _): (i64, i64) = redis::cmd("TIME").query(&mut self.conn()).unwrap();
        now
    }

    pub fn int(&self, key: &str) -> i64 {
        self.get(key)
            .map(|v| v.parse().expect("integer"))
            .unwrap_or(0)
    }

    pub fn push(&self, queue: &str, payload: &str) {
        let mut c = self.conn();
        let _: () = c.sadd("resque:queues", queue).expect("SADD");
        let _: () = c
            .rpush(format!("resque:queue:{queue}"), payload)
            .expect("RPUSH");
    }

    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.conn().keys("*").expect("KEYS");
        k.sort();
        k
    }

    pub fn failures(&self) -> Vec<serde_json::Value> {
        self.list("resque:failed")
            .iter()
            .map(|f| serde_json::from_str(f).expect("failure record is JSON"))
            .collect()
    }
}

fn spawn_redis(args: &[String], dir: &Path) -> Child {
    Command::new("redis-server")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (make test installs it)")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for localhost in `dir`: `cert.pem`, `key.pem`.
pub fn make_certificate(dir: &Path) {
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed to make a test certificate");
    assert!(status.success());
}

/// Polls `cond` until it holds; panics with `what` at the deadline.
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_until_within(DEADLINE, what, cond)
}

/// [`wait_until`] with a deadline of its own, for conditions that take
/// longer than any test should otherwise wait (a Sentinel demoting a node).
pub fn wait_until_within(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(2);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A directory of job programs (shell scripts).
pub struct JobsDir {
    pub dir: tempfile::TempDir,
}

impl JobsDir {
    pub fn new() -> JobsDir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("jobs")).expect("jobs dir");
        JobsDir { dir }
    }

    /// The JOBS_DIR to pass.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("jobs")
    }

    /// A scratch path beside the jobs dir, for markers.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An empty directory `outbox` beside the jobs, where the example
    /// worker's jobs write what they saw (its `OUTBOX`).
    pub fn outbox(&self) -> PathBuf {
        let dir = self.scratch("outbox");
        std::fs::create_dir(&dir).expect("the outbox");
        dir
    }

    /// A job that appends its pid to `<class>.pids`, then waits for the
    /// returned gate file to exist and exits with `exit`: the test looks at
    /// Redis while it runs, and lets it finish by creating the gate.
    pub fn gated(&self, class: &str, exit: i32) -> PathBuf {
        let gate = self.scratch(&format!("{class}.gate"));
        let pids = self.scratch(&format!("{class}.pids"));
        self.add(
            class,
            &format!(
                "echo $$ >> {p}; while [ ! -e {g} ]; do sleep 0.01; done; exit {exit}",
                p = pids.display(),
                g = gate.display()
            ),
        );
        gate
    }

    /// The pids of the runs of a [`JobsDir::gated`] job so far.
    pub fn job_pids(&self, class: &str) -> Vec<u32> {
        std::fs::read_to_string(self.scratch(&format!("{class}.pids")))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// A job `Log` that appends its args JSON as one line to the returned
    /// file, then runs `then` (a shell command, or empty): the file shows
    /// which jobs ran, in order.
    pub fn logging(&self, then: &str) -> PathBuf {
        let log = self.scratch("order");
        let tail = if then.is_empty() {
            String::new()
        } else {
            format!("; {then}")
        };
        self.add(
            "Log",
            &format!("cat >> {l}; echo >> {l}{tail}", l = log.display()),
        );
        log
    }

    /// Writes an executable job program.
    pub fn add(&self, class: &str, script: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path().join(class);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("write job");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_resque-fork")
}

/// The binary with a clean environment: only PATH, plus the Redis URL.
pub fn command(redis: &RedisServer) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", redis.url());
    cmd
}

/// A worker command for `queue` over `jobs`.
pub fn worker(redis: &RedisServer, jobs: &JobsDir, queue: &str, interval: &str) -> Command {
    let mut cmd = command(redis);
    cmd.env("QUEUE", queue)
        .env("INTERVAL", interval)
        .env("JOBS_DIR", jobs.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs a command to completion within the deadline.
pub fn run(mut cmd: Command) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    wait_output(child)
}

/// Waits for a spawned child within the deadline and collects its output,
/// reading its pipes meanwhile so a chatty child never blocks on them.
pub fn wait_output(mut child: Child) -> Output {
    use std::io::Read;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = wait_exit(&mut child);
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Waits for a child to exit within the deadline.
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("process {} did not exit in time", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a worker with INTERVAL=0 until it drains `queue` and exits.
pub fn drain(redis: &RedisServer, jobs: &JobsDir, queue: &str) -> Output {
    let out = run(worker(redis, jobs, queue, "0"));
    assert!(
        out.status.success(),
        "worker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Sends a signal to a process.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we spawned.
    unsafe { libc::kill(pid as i32, sig) };
}

/// The host part of worker ids on this machine.
pub fn hostname() -> String {
    resque_fork::worker::hostname()
}

/// Enqueues through the CLI; returns the job id.
pub fn enqueue(redis: &RedisServer, args: &[&str]) -> String {
    let out = run({
        let mut c = command(redis);
        c.arg("enqueue").args(args);
        c
    });
    assert!(
        out.status.success(),
        "enqueue failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// The pids whose parent is `pid`, from /proc.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] is the state; a zombie has exited already.
        if fields.get(1) == Some(&pid.to_string().as_str()) && fields.first() != Some(&"Z") {
            out.push(child);
        }
    }
    out.sort();
    out
}

/// What `ps -o command` shows for a pid.
pub fn command_line(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .replace('\0', " ")
        .trim()
        .to_string()
}

/// True while the pid exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 2..].split_whitespace().next().map(|st| st != "Z"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// Sends the command's stderr, at VERBOSE level, to `path`, so a test can
/// wait for a log line with [`logged`].
pub fn log_to(cmd: &mut Command, path: &Path) {
    let file = std::fs::File::create(path).expect("log file");
    cmd.env("VERBOSE", "1").stderr(Stdio::from(file));
}

/// How many lines of the log at `path` contain `needle`.
pub fn logged(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// examples/worker.rs, built by `cargo test` (a user's own worker binary).
pub fn example_worker() -> PathBuf {
    example("worker")
}

/// tests/bin/fault_worker.rs, built by `cargo test`: a worker with faults
/// switched on by environment.
pub fn fault_worker() -> PathBuf {
    example("fault_worker")
}

/// An example binary that `cargo test` built.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples").join(name))
        .expect("target dir");
    assert!(
        path.exists(),
        "{} is missing: run `cargo test` (which builds the examples) or `cargo build --examples`",
        path.display()
    );
    path
}

/// How many complete lines (ended by a newline) the file at `path` has now
/// (0 when it does not exist): a line still being written does not count.
pub fn line_count(path: &Path) -> usize {
    std::fs::read(path)
        .unwrap_or_default()
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// Asserts that a finished command succeeded, showing its stderr if not.
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `resque-fork ARGS` against `redis`; returns (exit code, stdout, stderr).
pub fn cli(redis: &RedisServer, args: &[&str]) -> (Option<i32>, String, String) {
    let out = run({
        let mut c = command(redis);
        c.args(args);
        c
    });
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The directory of the node-resque client, installed by `make test`.
pub fn interop_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    assert!(
        dir.join("node_modules/node-resque").exists(),
        "node-resque is not installed: run `make test` (or scripts/ensure-test-tools.sh)"
    );
    dir
}

/// Runs the node-resque client (tests/interop/client.js) with `args`
/// against `redis`; returns what it printed.
pub fn node_client(redis: &RedisServer, args: &[&str]) -> String {
    let out = run({
        let mut c = Command::new("node");
        c.current_dir(interop_dir())
            .arg("client.js")
            .arg(redis.socket())
            .args(args);
        c
    });
    assert_ok(&out);
    String::from_utf8(out.stdout).expect("node prints UTF-8")
}

/// A TCP port free at the time of asking, on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A plain HTTP/1.0 GET: (status code, body), or None when nothing answers.
pub fn http_get(addr: &str, path: &str, accept: Option<&str>) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Percent-encodes a URL query value.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// QUIT, then the process must exit 0 within the deadline.
pub fn quit_and_wait(mut child: Child) {
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
}
