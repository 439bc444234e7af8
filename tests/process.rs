//! Process control: the COUNT supervisor, signals, TERM_CHILD, process
//! titles and PIDFILE, with real processes and real signals.

mod common;

use common::*;
use std::process::Child;
use std::time::Instant;

fn pool(redis: &RedisServer, jobs: &JobsDir, count: usize) -> Child {
    let mut cmd = worker(redis, jobs, "q", "0.1");
    cmd.env("COUNT", count.to_string());
    let child = cmd.spawn().unwrap();
    wait_until("every worker registers", || {
        redis.members("resque:workers").len() == count
    });
    child
}

fn registered_pids(redis: &RedisServer) -> Vec<u32> {
    let mut pids: Vec<u32> = redis
        .members("resque:workers")
        .iter()
        .map(|id| id.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    pids.sort();
    pids
}

#[test]
fn count_runs_distinct_registered_workers_with_resque_titles() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let mut sup = pool(&redis, &jobs, 3);
    let pids = registered_pids(&redis);
    assert_eq!(pids.len(), 3);
    assert_eq!(
        pids,
        children(sup.id()),
        "workers are the supervisor's children"
    );
    for id in redis.members("resque:workers") {
        assert!(id.starts_with(&format!("{}:", hostname())), "{id}");
        assert!(id.ends_with(":q"), "{id}");
    }
    // What Ruby's and php's pruning grep for (contract 10, Process titles).
    for pid in &pids {
        wait_until("the worker shows its waiting title", || {
            command_line(*pid) == "resque-0.1.0 (resque-fork): Waiting for q"
        });
    }
    let title = command_line(sup.id());
    assert!(
        title.starts_with("resque-0.1.0 (resque-fork): Supervising 3 workers on q"),
        "{title}"
    );
    assert!(!title.contains("resque-web"));
    signal(sup.id(), libc::SIGQUIT);
    assert_eq!(wait_exit(&mut sup).code(), Some(0));
    assert!(redis.members("resque:workers").is_empty());
    assert!(pids.iter().all(|p| !alive(*p)));
}

#[test]
fn processing_and_forked_titles_while_a_job_runs() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let gate = jobs.gated("Slow", 0);
    redis.push("q", r#"{"class":"Slow","args":[]}"#);
    let mut child = worker(&redis, &jobs, "q", "0.1").spawn().unwrap();
    wait_until("the job runs", || !jobs.job_pids("Slow").is_empty());
    let job = jobs.job_pids("Slow")[0];
    let title = command_line(child.id());
    let rest = title
        .strip_prefix(&format!("resque-0.1.0 (resque-fork): Forked {job} at "))
        .unwrap_or_else(|| panic!("{title}"));
    assert!(rest.parse::<u64>().is_ok(), "{title}");
    std::fs::write(&gate, "").unwrap();
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn a_killed_worker_is_replaced_and_its_job_accounted_for() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let _gate = jobs.gated("Stuck", 0);
    let mut sup = pool(&redis, &jobs, 2);
    redis.push("q", r#"{"class":"Stuck","args":[1]}"#);
    wait_until("the job runs", || !jobs.job_pids("Stuck").is_empty());
    let job = jobs.job_pids("Stuck")[0];
    let victim = registered_pids(&redis)
        .into_iter()
        .find(|p| children(*p).contains(&job))
        .expect("the worker running the job");
    signal(victim, libc::SIGKILL);
    wait_until("a replacement registers and the dead one is pruned", || {
        let pids = registered_pids(&redis);
        pids.len() == 2 && !pids.contains(&victim)
    });
    wait_until("the job process died with its worker", || !alive(job));
    let failures = redis.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["exception"], "Resque::DirtyExit");
    assert_eq!(failures[0]["error"], "Job still being processed");
    assert_eq!(failures[0]["payload"]["args"][0], 1);
    assert!(failures[0]["worker"]
        .as_str()
        .unwrap()
        .contains(&format!(":{victim}:")));
    signal(sup.id(), libc::SIGTERM);
    assert_eq!(wait_exit(&mut sup).code(), Some(0));
}

#[test]
fn quit_lets_running_jobs_finish_then_every_worker_exits() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let gate = jobs.gated("Slow", 0);
    let log = jobs.scratch("pool.log");
    let mut cmd = worker(&redis, &jobs, "q", "0.1");
    cmd.env("COUNT", "2");
    log_to(&mut cmd, &log);
    let mut sup = cmd.spawn().unwrap();
    redis.push("q", r#"{"class":"Slow","args":[]}"#);
    redis.push("q", r#"{"class":"Slow","args":[]}"#);
    wait_until("both jobs run", || jobs.job_pids("Slow").len() == 2);
    redis.push("q", r#"{"class":"Slow","args":["never"]}"#);
    signal(sup.id(), libc::SIGQUIT);
    wait_until("both workers have seen QUIT", || {
        logged(&log, "QUIT received: finishing the current job") == 2
    });
    // The workers are still finishing their jobs.
    assert_eq!(redis.members("resque:workers").len(), 2);
    std::fs::write(&gate, "").unwrap();
    assert_eq!(wait_exit(&mut sup).code(), Some(0));
    assert!(redis.failures().is_empty());
    assert_eq!(redis.int("resque:stat:processed"), 2);
    assert_eq!(redis.llen("resque:queue:q"), 1, "no job started after QUIT");
    assert!(redis.members("resque:workers").is_empty());
}

/// A QUIT that arrives while the process is still reading its settings is
/// held for the handlers, not fatal: the settings come through a FIFO, so
/// the signal lands at a known moment, before any handler exists.
#[test]
fn quit_while_reading_settings_is_a_clean_stop() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let fifo = jobs.scratch("retry.yml");
    let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a valid path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let log = jobs.scratch("worker.log");
    for count in ["1", "2"] {
        let mut cmd = worker(&redis, &jobs, "q", "0.1");
        cmd.env("COUNT", count).env("RETRY_POLICY", &fifo);
        log_to(&mut cmd, &log);
        let mut child = cmd.spawn().unwrap();
        // Opening the FIFO for writing returns once the process has opened
        // it to read its retry policy: it is now waiting inside its settings.
        let mut policy = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        signal(child.id(), libc::SIGQUIT);
        std::io::Write::write_all(&mut policy, b"Mailer: {limit: 3}\n").unwrap();
        drop(policy);
        let status = wait_exit(&mut child);
        assert_eq!(status.code(), Some(0), "COUNT={count}: {status:?}");
        assert!(logged(&log, "QUIT received") >= 1, "COUNT={count}");
    }
    assert!(redis.members("resque:workers").is_empty());
}

#[test]
fn term_kills_running_jobs_records_them_and_exits_promptly() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let _gate = jobs.gated("Forever", 0);
    let mut sup = pool(&redis, &jobs, 2);
    redis.push("q", r#"{"class":"Forever","args":[]}"#);
    redis.push("q", r#"{"class":"Forever","args":[]}"#);
    wait_until("both jobs run", || jobs.job_pids("Forever").len() == 2);
    signal(sup.id(), libc::SIGTERM);
    assert_eq!(wait_exit(&mut sup).code(), Some(0));
    let failures = redis.failures();
    assert_eq!(failures.len(), 2);
    for f in &failures {
        assert_eq!(f["exception"], "Resque::DirtyExit");
        assert!(
            f["error"].as_str().unwrap().ends_with("SIGKILL (signal 9)"),
            "{f}"
        );
    }
    assert_eq!(redis.int("resque:stat:failed"), 2);
    assert!(redis.members("resque:workers").is_empty());
    assert!(jobs.job_pids("Forever").iter().all(|p| !alive(*p)));
}

#[test]
fn graceful_term_makes_term_act_like_quit() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let gate = jobs.gated("Slow", 0);
    redis.push("q", r#"{"class":"Slow","args":[]}"#);
    let log = jobs.scratch("worker.log");
    let mut cmd = worker(&redis, &jobs, "q", "0.1");
    cmd.env("GRACEFUL_TERM", "1");
    log_to(&mut cmd, &log);
    let mut child = cmd.spawn().unwrap();
    wait_until("the job runs", || !jobs.job_pids("Slow").is_empty());
    signal(child.id(), libc::SIGTERM);
    wait_until("the worker has seen TERM", || {
        logged(&log, "TERM (GRACEFUL_TERM) received") == 1
    });
    assert!(alive(jobs.job_pids("Slow")[0]), "the job was not killed");
    std::fs::write(&gate, "").unwrap();
    assert!(wait_exit(&mut child).success());
    assert!(redis.failures().is_empty());
    assert_eq!(redis.int("resque:stat:processed"), 1);
}

#[test]
fn term_child_sends_term_then_kill_after_the_timeout() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let marker = jobs.scratch("got-term");
    let pids = jobs.scratch("Stubborn.pids");
    // Ignores TERM (notes it), so only the SIGKILL after the timeout ends it.
    jobs.add(
        "Stubborn",
        &format!(
            "trap 'touch {m}' TERM; echo $$ >> {p}; while :; do sleep 0.01; done",
            m = marker.display(),
            p = pids.display()
        ),
    );
    // Exits on TERM.
    jobs.add(
        "Polite",
        &format!(
            "echo $$ >> {}; exec sleep 60",
            jobs.scratch("Polite.pids").display()
        ),
    );
    redis.push("q", r#"{"class":"Stubborn","args":[]}"#);
    let mut cmd = worker(&redis, &jobs, "q", "0.1");
    cmd.env("TERM_CHILD", "1").env("RESQUE_TERM_TIMEOUT", "1.5");
    let mut child = cmd.spawn().unwrap();
    wait_until("the job runs", || !jobs.job_pids("Stubborn").is_empty());
    let sent = Instant::now();
    signal(child.id(), libc::SIGUSR1);
    wait_until("the job got TERM", || marker.exists());
    wait_until("the job is killed", || redis.failures().len() == 1);
    assert!(
        sent.elapsed().as_secs_f64() >= 1.5,
        "killed before the timeout"
    );
    let f = &redis.failures()[0];
    assert!(
        f["error"].as_str().unwrap().ends_with("SIGKILL (signal 9)"),
        "{f}"
    );

    // USR1 kept the worker going: the next job is TERMed and stops at once.
    redis.push("q", r#"{"class":"Polite","args":[]}"#);
    wait_until("the next job runs", || !jobs.job_pids("Polite").is_empty());
    signal(child.id(), libc::SIGTERM);
    assert!(wait_exit(&mut child).success());
    let f = &redis.failures()[1];
    assert!(
        f["error"]
            .as_str()
            .unwrap()
            .ends_with("SIGTERM (signal 15)"),
        "{f}"
    );
    assert!(redis.members("resque:workers").is_empty());
}

#[test]
fn usr1_kills_only_the_current_job() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let _gate = jobs.gated("Forever", 0);
    let done = jobs.scratch("next-ran");
    jobs.add("Next", &format!("touch {}", done.display()));
    redis.push("q", r#"{"class":"Forever","args":[]}"#);
    redis.push("q", r#"{"class":"Next","args":[]}"#);
    let mut child = worker(&redis, &jobs, "q", "0.1").spawn().unwrap();
    wait_until("the job runs", || !jobs.job_pids("Forever").is_empty());
    signal(child.id(), libc::SIGUSR1);
    wait_until("the next job ran", || done.exists());
    assert_eq!(redis.failures()[0]["exception"], "Resque::DirtyExit");
    assert!(alive(child.id()));
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn usr2_pauses_and_cont_resumes_every_worker_of_a_pool() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let out = jobs.scratch("ran");
    jobs.add("Touch", &format!("touch {}", out.display()));
    let mut sup = pool(&redis, &jobs, 2);
    let workers = registered_pids(&redis);
    signal(sup.id(), libc::SIGUSR2);
    for pid in &workers {
        wait_until("the worker shows it is paused", || {
            command_line(*pid).ends_with("Paused")
        });
    }
    redis.push("q", r#"{"class":"Touch","args":[]}"#);
    // Paused workers leave the job queued; they are waiting, not working.
    for pid in &workers {
        assert!(command_line(*pid).ends_with("Paused"));
    }
    assert_eq!(redis.llen("resque:queue:q"), 1);
    signal(sup.id(), libc::SIGCONT);
    wait_until("a resumed worker runs the job", || out.exists());
    signal(sup.id(), libc::SIGQUIT);
    assert_eq!(wait_exit(&mut sup).code(), Some(0));
}

#[test]
fn killing_the_supervisor_takes_its_workers_down() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let _gate = jobs.gated("Forever", 0);
    let mut sup = pool(&redis, &jobs, 3);
    redis.push("q", r#"{"class":"Forever","args":[]}"#);
    wait_until("the job runs", || !jobs.job_pids("Forever").is_empty());
    let workers = registered_pids(&redis);
    signal(sup.id(), libc::SIGKILL);
    wait_exit(&mut sup);
    wait_until("no worker outlives the supervisor", || {
        workers.iter().all(|p| !alive(*p))
    });
    wait_until("no job process outlives its worker", || {
        jobs.job_pids("Forever").iter().all(|p| !alive(*p))
    });
    // They stopped as on TERM: unregistered, the job recorded.
    assert!(redis.members("resque:workers").is_empty());
    assert_eq!(redis.failures().len(), 1);
}

#[test]
fn a_live_pidfile_blocks_a_second_start_and_a_stale_one_does_not() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let pidfile = jobs.scratch("pool.pid");
    let mut first = worker(&redis, &jobs, "q", "0.1");
    first.env("COUNT", "2").env("PIDFILE", &pidfile);
    let mut first = first.spawn().unwrap();
    wait_until("the pool registers", || {
        redis.members("resque:workers").len() == 2
    });
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        first.id().to_string()
    );
    let mut second = worker(&redis, &jobs, "q", "0.1");
    second.env("PIDFILE", &pidfile);
    let out = run(second);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already running"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    signal(first.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut first).success());
    assert!(!pidfile.exists(), "removed on a clean exit");

    // A stale pidfile: the pid of a process that is gone.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(&pidfile, format!("{gone_pid}\n")).unwrap();
    let mut third = worker(&redis, &jobs, "q", "0");
    third.env("PIDFILE", &pidfile);
    let out = run(third);
    assert_ok(&out);
}

#[test]
fn bad_count_and_unreachable_redis_fail_with_one_line() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    for count in ["0", "-1", "many"] {
        let mut cmd = worker(&redis, &jobs, "q", "0");
        cmd.env("COUNT", count);
        let out = run(cmd);
        assert_eq!(out.status.code(), Some(2), "COUNT={count}");
    }
    let mut cmd = worker(&redis, &jobs, "q", "0");
    cmd.env("COUNT", "3").env("REDIS_STARTUP_TIMEOUT", "0").env(
        "REDIS_URL",
        format!("unix://{}/none.sock", jobs.dir.path().display()),
    );
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn stopping_a_job_stops_the_processes_it_started() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let grandchild = jobs.scratch("grandchild.pid");
    jobs.add(
        "Spawner",
        &format!("sleep 60 & echo $! > {}; wait", grandchild.display()),
    );
    redis.push("q", r#"{"class":"Spawner","args":[]}"#);
    let mut child = worker(&redis, &jobs, "q", "0.1").spawn().unwrap();
    wait_until("the job started its own process", || {
        std::fs::read_to_string(&grandchild).is_ok_and(|s| s.ends_with('\n'))
    });
    let pid: u32 = std::fs::read_to_string(&grandchild)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    signal(child.id(), libc::SIGTERM);
    assert!(wait_exit(&mut child).success());
    wait_until("the job's own process is gone too", || !alive(pid));
}

#[test]
fn a_pool_with_interval_zero_drains_and_exits() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    jobs.add("Noop", "true");
    for _ in 0..30 {
        redis.push("q", r#"{"class":"Noop","args":[]}"#);
    }
    let mut cmd = worker(&redis, &jobs, "q", "0");
    cmd.env("COUNT", "3");
    let out = run(cmd);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(redis.int("resque:stat:processed"), 30);
    assert!(redis.members("resque:workers").is_empty());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("died unexpectedly"));
}

#[test]
fn a_worker_that_panics_never_takes_the_supervisors_pidfile_with_it() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    let pidfile = jobs.scratch("pool.pid");
    let log = jobs.scratch("pool.log");
    let mut cmd = std::process::Command::new(fault_worker());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", redis.url())
        .env("QUEUE", "q")
        .env("COUNT", "2")
        .env("PIDFILE", &pidfile)
        .env("FAULT_PANIC_AT_START", "1");
    log_to(&mut cmd, &log);
    let mut pool = cmd.spawn().unwrap();
    wait_until("both workers panicked and were reaped", || {
        logged(&log, "died unexpectedly") >= 2
    });
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        pool.id().to_string(),
        "the supervisor's PIDFILE is still there"
    );
    signal(pool.id(), libc::SIGTERM);
    assert!(wait_exit(&mut pool).success());
    assert!(!pidfile.exists());
}

/// Runs `check` in a forked copy of the test process that has installed the
/// worker's signal handlers (they are process-wide, and the test threads
/// must keep theirs), and asserts it held: `what` says what it checks.
fn with_signal_pipe(what: &str, check: impl FnOnce(&resque_fork::signals::SignalPipe) -> bool) {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    // SAFETY: the child installs the handlers, runs `check` (which only
    // forks, signals and reads a pipe) and exits; no locks are taken that
    // another test thread could hold.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let ok = resque_fork::signals::SignalPipe::install(resque_fork::signals::HANDLED)
                .is_ok_and(|pipe| check(&pipe));
            // SAFETY: leaving the forked test process at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => {
            assert_eq!(
                waitpid(child, None).unwrap(),
                WaitStatus::Exited(child, 0),
                "{what}"
            );
        }
    }
}

#[test]
fn a_signal_to_a_copy_that_still_has_the_handlers_is_its_own() {
    use nix::sys::signal::Signal;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    // A job process between its fork and its own handler reset: a signal it
    // gets must act on it (default action), never land in the owner's pipe.
    with_signal_pipe(
        "the copy died of its own SIGTERM, which never reached the owner's pipe",
        // SAFETY: the copy only raises a signal and exits.
        |pipe| match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                // SAFETY: raise with a valid signal; _exit ends the copy.
                unsafe {
                    libc::raise(libc::SIGTERM);
                    libc::_exit(0)
                }
            }
            ForkResult::Parent { child } => {
                let died = matches!(
                    waitpid(child, None),
                    Ok(WaitStatus::Signaled(_, Signal::SIGTERM, _))
                );
                // (The owner's own SIGCHLD for the copy's end is its.)
                died && !pipe.drain().any(|s| s == Signal::SIGTERM)
            }
        },
    );
}

#[test]
fn a_burst_of_signals_is_read_whole_over_successive_drains() {
    use nix::sys::signal::Signal;
    // 100 signals land in the pipe at once; one drain takes up to 64 and
    // leaves the rest for the next: none may be lost or reordered.
    let nth = |i: usize| {
        if i.is_multiple_of(2) {
            Signal::SIGUSR1
        } else {
            Signal::SIGUSR2
        }
    };
    with_signal_pipe("all 100 signals, in order, in two drains", |pipe| {
        for i in 0..100 {
            // SAFETY: raise with a valid signal; its handler writes a byte.
            unsafe { libc::raise(nth(i) as libc::c_int) };
        }
        let mut seen = Vec::new();
        let mut drains = 0;
        loop {
            let got: Vec<Signal> = pipe.drain().collect();
            if got.is_empty() {
                break;
            }
            drains += 1;
            seen.extend(got);
        }
        let ordered = seen.iter().enumerate().all(|(i, s)| *s == nth(i));
        seen.len() == 100 && ordered && drains == 2
    });
}

#[test]
fn pidfile_is_0644_never_followed_through_a_symlink_and_only_its_owners_to_remove() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    // A symlink where the PIDFILE goes: refused, its target untouched.
    let target = jobs.scratch("precious");
    std::fs::write(&target, "keep me\n").unwrap();
    let link = jobs.scratch("link.pid");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let mut cmd = worker(&redis, &jobs, "q", "0.1");
    cmd.env("PIDFILE", &link);
    let out = run(cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is a symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");

    // Mode 0644 whatever the umask; removed at exit only while it is ours.
    let pidfile = jobs.scratch("worker.pid");
    let mut cmd = worker(&redis, &jobs, "q", "0.1");
    cmd.env("PIDFILE", &pidfile);
    // SAFETY: umask in the child before exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    wait_until("the PIDFILE appears", || line_count(&pidfile) == 1);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&pidfile).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    // Another process took the file over (a restart that found it stale).
    std::fs::write(&pidfile, "999999\n").unwrap();
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), "999999\n");
}

#[test]
fn a_busy_worker_sends_one_redis_command_per_short_job_and_notes_a_longer_one() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    jobs.add("Quick", "true");
    let n = 100;
    for i in 0..n {
        redis.push("q", &format!(r#"{{"class":"Quick","args":[{i}]}}"#));
    }
    let log = jobs.scratch("worker.log");
    let mut cmd = worker(&redis, &jobs, "q", "0");
    log_to(&mut cmd, &log);
    assert!(wait_output(cmd.spawn().unwrap()).status.success());
    // "(Redis: R round trips, C commands)": one per job (its record step
    // also reserves the next), and a few for starting and stopping; the
    // note that a job's process started is not sent for a job that ends
    // within 10 ms.
    let text = std::fs::read_to_string(&log).unwrap();
    let counts: Vec<u64> = text
        .split("(Redis: ")
        .nth(1)
        .expect("the exit line")
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    assert!(counts[1] < n + n / 2, "{} commands for {n} jobs", counts[1]);
    assert!(
        counts[0] < n + n / 2,
        "{} round trips for {n} jobs",
        counts[0]
    );
    assert_eq!(redis.int("resque:stat:processed"), n as i64);

    // A job that runs on is noted: its process group in worker:ID, its pid
    // in php's key.
    let gate = jobs.gated("Slow", 0);
    redis.push("q", r#"{"class":"Slow","args":[],"id":"slow1"}"#);
    let mut child = worker(&redis, &jobs, "q", "0.1").spawn().unwrap();
    wait_until("the job runs", || !jobs.job_pids("Slow").is_empty());
    let job = jobs.job_pids("Slow")[0];
    let key = format!("resque:worker:{}:{}:q", hostname(), child.id());
    wait_until("the note is written", || {
        redis
            .get(&key)
            .is_some_and(|record| record.contains(&format!("\"pgid\":{job}")))
            && redis.get("resque:job:slow1:pid") == Some(job.to_string())
    });
    std::fs::write(&gate, "").unwrap();
    signal(child.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut child).success());
}
