//! COUNT > 1 (or POOL): the foreground process starts the worker processes
//! (COUNT of QUEUE, or resque-pool's groups), restarts the ones that die
//! (with backoff), forwards signals to them, converges on a changed POOL
//! file at HUP, and exits when all have exited after a stop signal.
//!
//! Workers are forked, not exec'd, so a user's own binary keeps its
//! [`Registry`] of Rust jobs. Each worker asks the kernel for SIGHUP when the
//! supervisor dies (`PR_SET_PDEATHSIG`) and treats it as TERM, so a
//! `kill -9` of the supervisor never leaves unsupervised workers behind.

use crate::backoff::Backoff;
use crate::config::{RedisSettings, WorkerSettings};
use crate::error::{Error, Result};
use crate::handlers::Registry;
use crate::pool_config::Group;
use crate::proctitle;
use crate::promoter::Promoter;
use crate::prune::Unregistered;
use crate::queues::QueueSpec;
use crate::signals::{self, SignalPipe, HANDLED};
use crate::store::Store;
use crate::worker::Worker;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A worker that lived at least this long restarts at once when it dies;
/// one that died sooner waits (`RESTART`: 1 s, doubling up to 30 s).
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// 1 s, doubling to 30 s.
const RESTART: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

/// What the supervisor runs: COUNT workers of QUEUE, or resque-pool's
/// groups from POOL's file (re-read on HUP).
#[derive(Debug, Clone)]
pub enum PoolPlan {
    /// COUNT workers, all with the settings' queues.
    Count(usize),
    /// The groups of a resque-pool file, for an environment.
    File {
        path: std::path::PathBuf,
        env: Option<String>,
    },
}

struct Slot {
    /// The group's queue list, as written.
    group: Rc<str>,
    spec: Rc<QueueSpec>,
    pid: Option<Pid>,
    started: Instant,
    /// Restart delays for a worker that keeps dying young.
    backoff: Backoff,
    start_at: Instant,
    /// The worker exited 0 by itself: with INTERVAL=0 it drained the queues.
    finished: bool,
    /// Told to finish its job and exit (its group shrank or went away); not
    /// restarted.
    retiring: bool,
}

impl Slot {
    fn new(group: &Group, now: Instant) -> Slot {
        Slot {
            group: group.queues.as_str().into(),
            spec: Rc::new(group.spec.clone()),
            pid: None,
            started: now,
            backoff: RESTART,
            start_at: now,
            finished: false,
            retiring: false,
        }
    }
}

/// The metrics exporter a pool runs with METRICS_LISTEN: a child process
/// of its own (tiny_http's threads must not live in a process that forks),
/// restarted like a worker when it dies.
struct Exporter {
    listen: String,
    pid: Option<Pid>,
    start_at: Instant,
    backoff: Backoff,
}

/// The groups of `plan`.
fn load_groups(plan: &PoolPlan, settings: &WorkerSettings) -> Result<Vec<Group>> {
    match plan {
        PoolPlan::Count(count) => Ok(vec![Group {
            queues: settings.queues.id_part(),
            spec: settings.queues.clone(),
            count: *count,
        }]),
        PoolPlan::File { path, env } => crate::pool_config::load(path, env.as_deref()),
    }
}

/// Runs the workers of `plan` until a stop signal and all of them have
/// exited. Signals blocked by the caller are handled from here on.
pub fn run(
    plan: &PoolPlan,
    settings: &WorkerSettings,
    redis: &RedisSettings,
    registry: &Registry,
) -> Result<()> {
    let groups = load_groups(plan, settings)?;
    let pool_file = matches!(plan, PoolPlan::File { .. });
    let mut handled = HANDLED.to_vec();
    handled.push(Signal::SIGWINCH);
    let signals =
        SignalPipe::install(&handled).map_err(|e| Error::io("installing signal handlers", e))?;
    let me = nix::unistd::getpid();
    let mut slots: Vec<Slot> = Vec::new();
    converge(&mut slots, &groups);
    let mut groups = groups;
    let mut stopping: Option<Signal> = None;
    if !wait_for_redis(&signals, settings, redis)? {
        return Ok(());
    }
    // Connects when first used: to account for a killed worker, to publish
    // the pool's groups, and to schedule delayed and recurring jobs (the
    // pool's duty; its workers leave it to us).
    let mut store = Store::open_with(redis)?;
    let who = format!("{}:{me}", crate::identity::hostname());
    let mut promoter = settings
        .scheduler
        .as_ref()
        .map(|s| Promoter::new(s, format!("{who}:supervisor")))
        .transpose()?;
    let mut exporter = settings.metrics_listen.clone().map(|listen| Exporter {
        listen,
        pid: None,
        start_at: Instant::now(),
        backoff: RESTART,
    });
    let settings = &WorkerSettings {
        scheduler: None,
        metrics_listen: None,
        ..settings.clone()
    };
    log::info!(
        "supervisor {me} starting {} workers: {}",
        groups.iter().map(|g| g.count).sum::<usize>(),
        describe(&groups, &slots)
    );
    let mut published: Option<String> = None;
    loop {
        if stopping.is_none() {
            for slot in slots
                .iter_mut()
                .filter(|s| s.pid.is_none() && !s.finished && !s.retiring)
            {
                if Instant::now() >= slot.start_at {
                    // A worker must not share the supervisor's connection.
                    store.disconnect();
                    let worker_settings = WorkerSettings {
                        queues: (*slot.spec).clone(),
                        ..settings.clone()
                    };
                    let pid = start_worker(me, &signals, &worker_settings, redis, registry)?;
                    log::info!("started worker pid {pid} ({})", slot.group);
                    slot.pid = Some(pid);
                    slot.started = Instant::now();
                }
            }
        }
        if let (Some(e), None) = (exporter.as_mut(), stopping) {
            if e.pid.is_none() && Instant::now() >= e.start_at {
                store.disconnect();
                let pid = start_exporter(me, &signals, &e.listen, redis, &settings.prune)?;
                log::info!("started the metrics exporter, pid {pid}");
                e.pid = Some(pid);
                e.start_at = Instant::now();
            }
        }
        let pids: Vec<i32> = slots
            .iter()
            .filter_map(|s| s.pid)
            .map(|p| p.as_raw())
            .collect();
        // Done when stopped, or when every worker drained (INTERVAL=0); a
        // pool emptied by WINCH waits for the HUP that refills it.
        let all_finished = !slots.is_empty() && slots.iter().all(|s| s.finished);
        let exporting = exporter.as_ref().and_then(|e| e.pid);
        if (stopping.is_some() || all_finished) && pids.is_empty() {
            if let Some(pid) = exporting {
                // The workers are gone: the exporter goes last.
                let _ = kill(pid, Signal::SIGTERM);
                let _ = waitpid(pid, None);
            }
            log::info!("all workers have exited");
            let _ = store.forget_pool(&who);
            return Ok(());
        }
        let shown = describe(&groups, &slots);
        let what = match plan {
            PoolPlan::Count(count) => {
                format!("{count} workers on {}", settings.queues.id_part())
            }
            PoolPlan::File { .. } => format!("pool: {shown}"),
        };
        let stop_note = if stopping.is_some() {
            " (stopping)"
        } else {
            ""
        };
        proctitle::set(&format!("Supervising {what} {pids:?}{stop_note}"));
        if published.as_deref() != Some(&shown) {
            match store.publish_pool(&who, &pool_state(&groups, &slots)) {
                Ok(()) => published = Some(shown),
                Err(e) => log::debug!("{e}; publishing the pool's groups later"),
            }
        }
        let wait = slots
            .iter()
            .filter(|s| s.pid.is_none() && !s.finished && !s.retiring && stopping.is_none())
            .map(|s| s.start_at.saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(Duration::from_secs(60));
        let wait = match exporter.as_ref().filter(|e| e.pid.is_none()) {
            Some(e) if stopping.is_none() => {
                wait.min(e.start_at.saturating_duration_since(Instant::now()))
            }
            _ => wait,
        };
        let wait = match &promoter {
            Some(p) if stopping.is_none() => {
                wait.min(p.next().saturating_duration_since(Instant::now()))
            }
            _ => wait,
        };
        signals::wait_readable(&[signals.fd()], wait);
        for sig in signals.drain() {
            match sig {
                Signal::SIGCHLD => {}
                // resque-pool's HUP: re-read the file and converge.
                Signal::SIGHUP if pool_file && stopping.is_none() => {
                    match load_groups(plan, settings) {
                        Ok(next) => {
                            let counts: Vec<String> = next
                                .iter()
                                .map(|g| format!("{}: {}", g.queues, g.count))
                                .collect();
                            log::info!("HUP: pool reloaded: {}", counts.join(", "));
                            groups = next;
                            converge(&mut slots, &groups);
                        }
                        Err(e) => log::error!("{e}; keeping the pool as it was"),
                    }
                    if let Some(p) = promoter.as_mut().filter(|p| p.has_schedule_file()) {
                        p.reload();
                    }
                }
                Signal::SIGHUP if promoter.as_ref().is_some_and(|p| p.has_schedule_file()) => {
                    if let Some(p) = promoter.as_mut() {
                        p.reload();
                    }
                }
                // resque-pool's WINCH: every worker finishes and exits; the
                // manager stays, and a HUP starts them again.
                Signal::SIGWINCH if pool_file && stopping.is_none() => {
                    log::info!("WINCH: stopping every worker gracefully; HUP starts them again");
                    groups.clear();
                    converge(&mut slots, &groups);
                }
                Signal::SIGWINCH => {}
                Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT | Signal::SIGHUP => {
                    log::info!("{} received: stopping the workers", sig.as_str());
                    // HUP means our own terminal or parent went away: the
                    // workers treat it as TERM.
                    stopping = Some(sig);
                    forward(&slots, sig);
                }
                other => forward(&slots, other),
            }
        }
        let killed = reap(&mut slots, exporter.as_mut(), stopping.is_some());
        for (pid, spec) in &killed {
            account_for(&mut store, *pid, spec, settings);
        }
        if let (Some(p), None) = (promoter.as_mut(), stopping) {
            p.tick(&mut store);
        }
    }
}

/// Makes `slots` match `groups`: new groups and grown ones get slots;
/// removed groups and surplus workers are told to finish and exit (QUIT);
/// workers whose group did not change are left alone.
fn converge(slots: &mut Vec<Slot>, groups: &[Group]) {
    let now = Instant::now();
    for slot in slots.iter_mut().filter(|s| !s.retiring) {
        if !groups.iter().any(|g| *g.queues == *slot.group) {
            retire(slot);
        }
    }
    for group in groups {
        let active = |s: &Slot| *s.group == *group.queues && !s.retiring && !s.finished;
        let have = slots.iter().filter(|s| active(s)).count();
        if have < group.count {
            slots.extend((have..group.count).map(|_| Slot::new(group, now)));
        }
        // Surplus: workers not started yet first, then the newest.
        let mut mine: Vec<usize> = (0..slots.len()).filter(|&i| active(&slots[i])).collect();
        mine.sort_by_key(|&i| (slots[i].pid.is_some(), std::cmp::Reverse(slots[i].started)));
        let surplus = mine.len().saturating_sub(group.count);
        for &i in &mine[..surplus] {
            retire(&mut slots[i]);
        }
    }
    slots.retain(|s| !(s.retiring && s.pid.is_none()));
}

/// Tells a slot's worker to finish its job and exit; it is not restarted.
fn retire(slot: &mut Slot) {
    slot.retiring = true;
    if let Some(pid) = slot.pid {
        log::info!("stopping worker pid {pid} ({}) after its job", slot.group);
        let _ = kill(pid, Signal::SIGQUIT);
    }
}

/// `critical 2/2, default,low 7/8`: each group, running and intended.
fn describe(groups: &[Group], slots: &[Slot]) -> String {
    if groups.is_empty() {
        return "no workers (WINCH)".into();
    }
    groups
        .iter()
        .map(|g| {
            let running = slots
                .iter()
                .filter(|s| *s.group == *g.queues && s.pid.is_some() && !s.retiring)
                .count();
            format!("{} {running}/{}", g.queues, g.count)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pool's groups as `pool status` and `workers` show them.
fn pool_state(groups: &[Group], slots: &[Slot]) -> String {
    let groups: Vec<serde_json::Value> = groups
        .iter()
        .map(|g| {
            let pids: Vec<i32> = slots
                .iter()
                .filter(|s| *s.group == *g.queues && !s.retiring)
                .filter_map(|s| s.pid.map(Pid::as_raw))
                .collect();
            serde_json::json!({"queues": g.queues, "intended": g.count, "running": pids.len(), "pids": pids})
        })
        .collect();
    serde_json::json!({"groups": groups, "updated": crate::timefmt::now_epoch()}).to_string()
}

/// Files the job of a worker that a signal killed, at once: its supervisor
/// reaped it, so it is dead beyond doubt (pruning's pid rule must wait for
/// its heartbeat to age, lest it judge a worker of another PID namespace).
/// A worker that exited by itself has unregistered, or never registered.
/// Failures are logged: pruning accounts for the worker later anyway.
fn account_for(store: &mut Store, pid: Pid, spec: &QueueSpec, settings: &WorkerSettings) {
    let id = crate::identity::worker_id(pid.as_raw(), &spec.id_part());
    let now = crate::timefmt::now_epoch();
    match crate::prune::file_dead_worker(store, &id, &settings.prune, now) {
        Ok(Unregistered::Idle) => log::info!("removed killed worker {id}"),
        Ok(Unregistered::Failed { class, .. }) => {
            log::warn!("removed killed worker {id}; its job {class} is recorded as failed")
        }
        Ok(Unregistered::Requeued { class, queue }) => {
            log::warn!("removed killed worker {id}; its job {class} is back at the head of {queue}")
        }
        Err(e) => log::warn!("{e}; pruning will account for worker {id}"),
    }
}

/// Starting a pool against a Redis that is not there would only have its
/// workers die and be restarted: wait for it (REDIS_STARTUP_TIMEOUT), then
/// give up with the error. Returns false when a stop signal came meanwhile.
fn wait_for_redis(
    signals: &SignalPipe,
    settings: &WorkerSettings,
    redis: &RedisSettings,
) -> Result<bool> {
    let give_up = Instant::now() + settings.redis_startup_timeout;
    let mut retry = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut logged = false;
    loop {
        match Store::connect_with(redis) {
            Ok(_) => {
                if logged {
                    log::warn!("Redis answers; starting the workers");
                }
                return Ok(true);
            }
            Err(e) if !e.is_connection() || Instant::now() >= give_up => return Err(e),
            Err(e) => {
                if !logged {
                    log::error!(
                        "{e}; retrying for up to {}s",
                        settings.redis_startup_timeout.as_secs_f64()
                    );
                    logged = true;
                }
            }
        }
        signals::wait_readable(
            &[signals.fd()],
            retry
                .delay()
                .min(give_up.saturating_duration_since(Instant::now())),
        );
        let stop = signals.drain().any(|s| {
            matches!(
                s,
                Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT | Signal::SIGHUP
            )
        });
        if stop {
            return Ok(false);
        }
    }
}

fn forward(slots: &[Slot], sig: Signal) {
    for pid in slots.iter().filter_map(|s| s.pid) {
        let _ = kill(pid, sig);
    }
}

/// Collects exited workers and schedules their restart (a retiring one is
/// dropped instead). Returns the workers a signal killed, whose keys and
/// job are left to account for.
fn reap(
    slots: &mut Vec<Slot>,
    mut exporter: Option<&mut Exporter>,
    stopping: bool,
) -> Vec<(Pid, Rc<QueueSpec>)> {
    let mut killed = Vec::new();
    loop {
        let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(status) => status,
        };
        let Some(pid) = status.pid() else {
            break;
        };
        if let Some(e) = exporter.as_deref_mut().filter(|e| e.pid == Some(pid)) {
            e.pid = None;
            if !stopping {
                let delay = if e.start_at.elapsed() >= STABLE_AFTER {
                    e.backoff.reset();
                    Duration::ZERO
                } else {
                    e.backoff.delay()
                };
                log::warn!(
                    "the metrics exporter (pid {pid}) ended ({status:?}); restarting it in {:.1}s",
                    delay.as_secs_f64()
                );
                e.start_at = Instant::now() + delay;
            }
            continue;
        }
        let Some(slot) = slots.iter_mut().find(|s| s.pid == Some(pid)) else {
            continue;
        };
        slot.pid = None;
        if let WaitStatus::Signaled(..) = status {
            killed.push((pid, slot.spec.clone()));
        }
        let how = match status {
            WaitStatus::Exited(_, code) => format!("exit code {code}"),
            WaitStatus::Signaled(_, sig, _) => format!("signal {}", sig.as_str()),
            other => format!("{other:?}"),
        };
        if slot.retiring {
            log::info!("worker pid {pid} ({}) exited ({how}): retired", slot.group);
            continue;
        }
        if let (WaitStatus::Exited(_, 0), false) = (status, stopping) {
            // Only a drain (INTERVAL=0) or a stop signal sent to the worker
            // itself ends a worker with 0: it is done, not dead.
            log::info!("worker pid {pid} finished");
            slot.finished = true;
            continue;
        }
        if stopping {
            log::info!("worker pid {pid} exited ({how})");
            continue;
        }
        let lived = slot.started.elapsed();
        let delay = if lived >= STABLE_AFTER {
            slot.backoff.reset();
            Duration::ZERO
        } else {
            slot.backoff.delay()
        };
        log::warn!(
            "worker pid {pid} died unexpectedly ({how}) after {:.1}s; restarting in {:.1}s",
            lived.as_secs_f64(),
            delay.as_secs_f64()
        );
        slot.start_at = Instant::now() + delay;
    }
    slots.retain(|s| !(s.retiring && s.pid.is_none()));
    killed
}

/// Forks the metrics exporter. The child never returns: it serves until a
/// signal ends it (TERM from the supervisor, or the kernel's when the
/// supervisor dies).
fn start_exporter(
    supervisor: Pid,
    signals: &SignalPipe,
    listen: &str,
    redis: &RedisSettings,
    policy: &crate::prune::PrunePolicy,
) -> Result<Pid> {
    let blocked = signals::block(HANDLED);
    // SAFETY: the supervisor is single-threaded.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => {
            signals::restore(blocked);
            Ok(child)
        }
        Ok(ForkResult::Child) => {
            // Default dispositions, nothing blocked: TERM ends it.
            signals.reset_in_child();
            signals::restore(nix::sys::signal::SigSet::empty());
            // SAFETY: prctl with a valid option and signal number.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
            if nix::unistd::getppid() != supervisor {
                // SAFETY: leaving the supervisor's copy at once.
                unsafe { libc::_exit(1) }
            }
            proctitle::set(&format!("Exporting metrics on {listen}"));
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::metrics::exporter::serve(listen, redis, policy)
            })) {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => {
                    log::error!("{e}");
                    1
                }
                Err(_) => 101,
            };
            // SAFETY: _exit skips the supervisor's destructors.
            unsafe { libc::_exit(code) }
        }
        Err(e) => {
            signals::restore(blocked);
            Err(Error::io("forking the metrics exporter", e.into()))
        }
    }
}

/// Forks one worker. The child never returns.
fn start_worker(
    supervisor: Pid,
    signals: &SignalPipe,
    settings: &WorkerSettings,
    redis: &RedisSettings,
    registry: &Registry,
) -> Result<Pid> {
    // Signals stay blocked across the fork until the worker has its own
    // handlers, so none is lost or taken by the supervisor's.
    let blocked = signals::block(HANDLED);
    // SAFETY: the supervisor is single-threaded.
    let forked = unsafe { fork() };
    match forked {
        Ok(ForkResult::Parent { child }) => {
            signals::restore(blocked);
            Ok(child)
        }
        Ok(ForkResult::Child) => {
            signals.reset_in_child();
            // Die with the supervisor; if it is already gone, exit now.
            // SAFETY: prctl with a valid option and signal number.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGHUP) };
            if nix::unistd::getppid() != supervisor {
                // SAFETY: as below, leaving the supervisor's copy at once.
                unsafe { libc::_exit(1) }
            }
            // Worker::new installs the worker's handlers, which unblocks them.
            // Nothing may unwind out of here into the supervisor's code (its
            // PIDFILE guard, say): the worker ends in _exit whatever happens.
            let run =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    match Worker::new(settings.clone(), redis, registry).and_then(Worker::run) {
                        Ok(()) => 0,
                        Err(e) => {
                            log::error!("{e}");
                            1
                        }
                    }
                }));
            let code = run.unwrap_or_else(|_| {
                log::error!("the worker panicked (a bug); the supervisor restarts it");
                101
            });
            use std::io::Write;
            let _ = std::io::stdout().flush();
            // SAFETY: _exit skips atexit handlers and destructors, which
            // belong to the supervisor this process was copied from.
            unsafe { libc::_exit(code) }
        }
        Err(e) => {
            signals::restore(blocked);
            Err(Error::io("forking a worker", e.into()))
        }
    }
}
