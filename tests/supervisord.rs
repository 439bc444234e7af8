//! The shipped supervisord program (scripts/supervisor/resque-fork.conf) under
//! a real supervisord: `supervisorctl stop` and `restart` in the middle of a
//! job lose nothing and leave nothing registered.

mod common;

use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct Supervisord {
    child: Child,
    conf: std::path::PathBuf,
}

impl Supervisord {
    fn ctl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("supervisorctl");
        cmd.arg("-c").arg(&self.conf).args(args);
        cmd
    }
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        let _ = self.ctl(&["shutdown"]).output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped program section, pointed at this test's binary and Redis.
fn program_section(dir: &Path, redis: &RedisServer, jobs: &JobsDir) -> String {
    program_section_with(dir, redis, jobs, "COUNT=\"2\",QUEUE=\"q\"")
}

/// The same, with `workers` (COUNT and QUEUE, or POOL) in its environment.
fn program_section_with(dir: &Path, redis: &RedisServer, jobs: &JobsDir, workers: &str) -> String {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/supervisor/resque-fork.conf"),
    )
    .unwrap();
    shipped
        .lines()
        .map(|line| {
            let key = line.split('=').next().unwrap_or("");
            match key {
                "command" => format!("command={}", bin()),
                "directory" => format!("directory={}", dir.display()),
                "environment" => format!(
                    "environment={workers},INTERVAL=\"0.1\",JOBS_DIR=\"{}\",REDIS_URL=\"{}\",VERBOSE=\"1\"",
                    jobs.path().display(),
                    redis.url()
                ),
                "stdout_logfile" => format!("stdout_logfile={}", dir.join("program.log").display()),
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn start_supervisord(dir: &Path, program: &str) -> Supervisord {
    let conf = dir.join("supervisord.conf");
    let sock = dir.join("supervisor.sock");
    std::fs::write(
        &conf,
        format!(
            "[unix_http_server]\nfile={sock}\n\n\
             [supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\nchildlogdir={d}\n\n\
             [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
             [supervisorctl]\nserverurl=unix://{sock}\n\n{program}\n",
            sock = sock.display(),
            d = dir.display(),
        ),
    )
    .unwrap();
    let child = Command::new("supervisord")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("supervisord must be installed (make test installs it)");
    Supervisord { child, conf }
}

#[test]
fn supervisorctl_stop_and_restart_mid_job_lose_nothing() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("program.log");
    let gate = jobs.scratch("gate");
    let pids = jobs.scratch("pids");
    jobs.add(
        "Slow",
        &format!(
            "echo $$ >> {p}; while [ ! -e {g} ]; do sleep 0.01; done",
            p = pids.display(),
            g = gate.display()
        ),
    );
    let started = || {
        std::fs::read_to_string(&pids)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let sup = start_supervisord(dir.path(), &program_section(dir.path(), &redis, &jobs));
    wait_until("supervisord starts the pool", || {
        redis.members("resque:workers").len() == 2
    });

    // stop, mid-job: the job finishes, then everything unregisters.
    redis.push("q", r#"{"class":"Slow","args":[1]}"#);
    wait_until("the job runs", || started() == 1);
    let mut stop = sup
        .ctl(&["stop", "resque-fork"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("both workers got QUIT", || {
        logged(&log, "QUIT received: finishing the current job") == 2
    });
    wait_until(
        "the idle worker has gone; the busy one is still finishing",
        || redis.members("resque:workers").len() == 1,
    );
    assert!(!gate.exists());
    std::fs::write(&gate, "").unwrap();
    let out = wait_output(stop);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped"));
    assert!(redis.members("resque:workers").is_empty());
    assert_eq!(redis.int("resque:stat:processed"), 1);
    assert!(redis.failures().is_empty());

    // start, then restart mid-job: the same, and a new pool comes up.
    assert!(sup
        .ctl(&["start", "resque-fork"])
        .output()
        .unwrap()
        .status
        .success());
    wait_until("the pool is back", || {
        redis.members("resque:workers").len() == 2
    });
    let before = redis.members("resque:workers");
    std::fs::remove_file(&gate).unwrap();
    redis.push("q", r#"{"class":"Slow","args":[2]}"#);
    wait_until("the second job runs", || started() == 2);
    stop = sup
        .ctl(&["restart", "resque-fork"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("both workers got QUIT again", || {
        logged(&log, "QUIT received: finishing the current job") == 4
    });
    std::fs::write(&gate, "").unwrap();
    assert!(wait_output(stop).status.success());
    wait_until("a new pool registers", || {
        let now = redis.members("resque:workers");
        now.len() == 2 && now.iter().all(|id| !before.contains(id))
    });
    assert_eq!(redis.int("resque:stat:processed"), 2);
    assert!(redis.failures().is_empty());
    assert_eq!(redis.llen("resque:queue:q"), 0);
}

#[test]
fn a_pool_file_under_supervisord_reloads_on_supervisorctl_signal_hup() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resque-pool.yml");
    std::fs::write(&file, "a: 1\n").unwrap();
    let workers = format!("POOL=\"{}\"", file.display());
    let program = program_section_with(dir.path(), &redis, &jobs, &workers);
    let sup = start_supervisord(dir.path(), &program);
    let registered = |q: &str| {
        redis
            .members("resque:workers")
            .iter()
            .filter(|id| id.ends_with(&format!(":{q}")))
            .count()
    };
    wait_until("supervisord starts the pool", || registered("a") == 1);
    std::fs::write(&file, "a: 2\nb: 1\n").unwrap();
    let out = sup.ctl(&["signal", "HUP", "resque-fork"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_until("the pool converges", || {
        registered("a") == 2 && registered("b") == 1
    });
    assert!(sup
        .ctl(&["stop", "resque-fork"])
        .output()
        .unwrap()
        .status
        .success());
    assert!(redis.members("resque:workers").is_empty());
}
