//! Finding workers that died without unregistering, and accounting for the
//! jobs they held.
//!
//! Ruby's rules, with two fixes (docs/redis-contract.md, contract 8): pruning runs
//! periodically, not only at startup, and on this host a live pid only
//! counts as a worker when its command line is a Resque worker's (pid reuse).

use crate::error::{Error, Result};
pub use crate::identity::WorkerId;
use crate::payload::{
    best_effort_pid_key, best_effort_status_key, failure_record, mark_requeued, Job,
};
use crate::payload::{exceptions, Failure, WorkerRecord};
use crate::store::{HeldJob, PruneLock, Removal, Store};
use crate::timefmt;
use std::time::Duration;

/// How long Ruby's pruning lock is held at most.
pub const PRUNE_LOCK_SECS: u64 = 60;

pub use crate::procfs::pid_alive;

/// True when a command line is a Resque worker's by Ruby's and php's test
/// (`resque-<digit>`, `resque:work`, `resque: Starting`, never `resque-web`),
/// or resque-fork's own.
///
/// ```
/// use resque_fork::prune::is_resque_worker_command;
/// assert!(is_resque_worker_command("resque-3.0.0: Waiting for high"));
/// assert!(is_resque_worker_command("resque-1.2 (high): Waiting with interval 5"));
/// assert!(is_resque_worker_command("resque-0.1.0 (resque-fork): Forked 7 at 1"));
/// assert!(!is_resque_worker_command("resque-web -p 8282"));
/// assert!(!is_resque_worker_command("/usr/sbin/sshd -D"));
/// ```
pub fn is_resque_worker_command(cmd: &str) -> bool {
    if cmd.contains("resque-web") {
        return false;
    }
    let digit_after = cmd
        .match_indices("resque-")
        .any(|(i, _)| cmd[i + 7..].starts_with(|c: char| c.is_ascii_digit()));
    digit_after
        || cmd.contains("resque:work")
        || cmd.contains("resque: Starting")
        || cmd.contains("resque-fork")
}

/// True when `pid` on this host is a live Resque worker. A process whose
/// command line cannot be read is given the benefit of the doubt.
pub fn local_worker_alive(pid: i32) -> bool {
    if !pid_alive(pid) {
        return false;
    }
    match crate::procfs::cmdline(pid) {
        // A zombie or a kernel thread has an empty command line.
        Some(cmd) => !cmd.trim().is_empty() && is_resque_worker_command(&cmd),
        None => true,
    }
}

/// How pruning judges workers and treats their jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrunePolicy {
    /// A heartbeat older than this (by Redis time) marks a worker dead on
    /// any host; Ruby's `prune_interval`, 300 s by default.
    pub max_heartbeat_age: Duration,
    /// Push an orphaned job back to the head of its queue once, instead of
    /// filing a failure.
    pub requeue_orphans: bool,
    /// `HEARTBEAT_INTERVAL`: the pid rule leaves alone a worker whose
    /// heartbeat is younger than twice this.
    pub heartbeat_interval: Duration,
}

impl Default for PrunePolicy {
    fn default() -> Self {
        PrunePolicy {
            max_heartbeat_age: Duration::from_secs(300),
            requeue_orphans: false,
            heartbeat_interval: Duration::from_secs(30),
        }
    }
}

impl PrunePolicy {
    /// The heartbeat age under which a worker counts as alive for the pid
    /// rule, whatever its pid looks like from here.
    pub fn fresh_heartbeat(&self) -> Duration {
        self.heartbeat_interval * 2
    }
}

/// One pruned worker, for the log and the `prune` command.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    pub worker_id: String,
    /// Why it was judged dead.
    pub reason: String,
    /// What became of the job it held.
    #[serde(flatten)]
    pub job: Unregistered,
}

/// The result of one pruning pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneRun {
    /// We held the lock and pruned these workers.
    Done(Vec<Pruned>),
    /// A live process holds the lock (it is pruning now); look again after
    /// `retry_in`, when the lock will have expired at the latest.
    Skipped {
        /// The holder's id, as stored in the lock.
        holder: String,
        /// Until the holder's lock expires.
        retry_in: Duration,
    },
}

/// Prunes dead workers under Ruby's lock.
///
/// A lock held under the id of a worker of this host whose process is gone
/// (or is no longer a Resque worker) is taken over at once, by
/// compare-and-set on the dead holder's value: a pruner killed while it held
/// the lock would otherwise stop every worker's pruning until the lock
/// expires. A holder on another host keeps Ruby's rule: wait for the expiry.
/// Two live pruners never file one job twice either way, since each
/// worker's removal checks the `worker:ID` value it read.
pub fn prune(
    store: &mut Store,
    my_id: &str,
    hostname: &str,
    policy: &PrunePolicy,
) -> Result<PruneRun> {
    if let PruneLock::Held { holder, expires_in } = store.try_prune_lock(my_id, PRUNE_LOCK_SECS)? {
        let name = String::from_utf8_lossy(&holder).into_owned();
        if !(holder_is_dead(&name, hostname)
            && store.take_over_prune_lock(&holder, my_id, PRUNE_LOCK_SECS)?)
        {
            log::debug!(
                "{name} holds the pruning lock for {:.1}s more; skipping",
                expires_in.as_secs_f64()
            );
            return Ok(PruneRun::Skipped {
                holder: name,
                retry_in: expires_in,
            });
        }
        log::warn!("took over the pruning lock from {name}, whose process is gone");
    }
    let result = prune_under_lock(store, my_id, hostname, policy).map(PruneRun::Done);
    if let Err(e) = store.release_prune_lock(my_id) {
        log::warn!("{e}");
    }
    result
}

/// True when a lock holder's id names a worker of this host that is no
/// longer running (the pid rule of pruning). Not ourselves: a lock under
/// our own id (a restarted container reusing our pid) is ours to take.
fn holder_is_dead(holder: &str, hostname: &str) -> bool {
    WorkerId::parse(holder).is_some_and(|id| {
        id.host == hostname && (id.pid == std::process::id() as i32 || !local_worker_alive(id.pid))
    })
}

fn prune_under_lock(
    store: &mut Store,
    my_id: &str,
    hostname: &str,
    policy: &PrunePolicy,
) -> Result<Vec<Pruned>> {
    let now = store.server_time()?;
    let mut pruned = Vec::new();
    let mut ages = std::collections::HashMap::new();

    // Heartbeat rule, any host: Ruby's PruneDeadWorkerDirtyExit.
    for (id, beat) in store.heartbeats()? {
        if id == my_id {
            continue;
        }
        let Some(at) = timefmt::parse_iso8601(&beat) else {
            continue;
        };
        let age = now - at;
        ages.insert(id.clone(), age);
        if age <= policy.max_heartbeat_age.as_secs() as i64 {
            continue;
        }
        let failure = |class: &str| {
            Failure::new(
                exceptions::PRUNE_DEAD_WORKER_DIRTY_EXIT,
                format!("Worker {id} did not gracefully exit while processing {class}"),
            )
        };
        let gone = if WorkerId::parse(&id).is_some_and(|w| w.host == hostname) {
            Processes::StopLeftovers
        } else {
            Processes::Elsewhere
        };
        let job = unregister(store, &id, &failure, policy.requeue_orphans, gone, now)?;
        pruned.push(Pruned {
            reason: format!("its last heartbeat is {age} s old"),
            worker_id: id,
            job,
        });
    }

    // Pid rule, this host: the process is gone, or is no longer a worker.
    // Only for a worker whose heartbeat is missing or older than twice
    // HEARTBEAT_INTERVAL: hosts that share a hostname but not a PID namespace
    // (host-network containers, a prune run from the host) cannot see each
    // other's pids, and a fresh heartbeat says the worker lives somewhere.
    let fresh = policy.fresh_heartbeat().as_secs() as i64;
    let my_pid = std::process::id() as i32;
    for id in store.worker_ids()? {
        let Some(parsed) = WorkerId::parse(&id) else {
            continue;
        };
        if id == my_id
            || parsed.host != hostname
            || parsed.pid == my_pid
            || ages.get(&id).is_some_and(|&age| age <= fresh)
            || pruned.iter().any(|p| p.worker_id == id)
        {
            continue;
        }
        let reason = if !pid_alive(parsed.pid) {
            "its process is gone"
        } else if !local_worker_alive(parsed.pid) {
            "its pid now belongs to another program"
        } else {
            continue;
        };
        let job = file_dead_worker(store, &id, policy, now)?;
        pruned.push(Pruned {
            worker_id: id,
            reason: reason.to_string(),
            job,
        });
    }
    for p in &pruned {
        match &p.job {
            Unregistered::Idle => log::info!("pruned dead worker {} ({})", p.worker_id, p.reason),
            Unregistered::Failed { class, .. } => log::warn!(
                "pruned dead worker {} ({}); its job {class} is recorded as failed",
                p.worker_id,
                p.reason
            ),
            Unregistered::Requeued { class, queue } => log::warn!(
                "pruned dead worker {} ({}); its job {class} is back at the head of {queue}",
                p.worker_id,
                p.reason
            ),
        }
    }
    Ok(pruned)
}

/// The failure filed for the job of a worker known dead on this host
/// (Ruby's wording for a job left behind).
pub fn dirty_exit(_class: &str) -> Failure {
    Failure::new(exceptions::DIRTY_EXIT, "Job still being processed")
}

/// Accounts for a worker of this host known to be dead (its supervisor
/// reaped it, or its pid is gone): stops what its job left running, files
/// the job (or requeues it, by `policy`), removes its keys.
pub fn file_dead_worker(
    store: &mut Store,
    worker_id: &str,
    policy: &PrunePolicy,
    now: i64,
) -> Result<Unregistered> {
    unregister(
        store,
        worker_id,
        &dirty_exit,
        policy.requeue_orphans,
        Processes::StopLeftovers,
        now,
    )
}

/// Stops what is left of the job of a dead worker of this host: a job
/// process dies with its worker, but processes it started live on in its
/// process group. The group is the one the in-flight record names (`pgid`,
/// contract 4), and only processes whose environment says they were started
/// for this worker (`RESQUE_WORKER`) are killed: a process group id can be
/// reused once every member has gone.
fn stop_job_processes(worker_id: &str, record: &WorkerRecord) {
    let Some(pgid) = record.pgid.filter(|&pgid| pgid > 1) else {
        return;
    };
    let mark = format!("RESQUE_WORKER={worker_id}");
    let mut stopped = 0;
    for pid in crate::procfs::group_members(pgid) {
        if pid != std::process::id() as i32 && crate::procfs::environ_has(pid, &mark) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            stopped += 1;
        }
    }
    if stopped > 0 {
        log::warn!(
            "stopped {stopped} process(es) left running by the job of dead worker {worker_id} (process group {pgid})"
        );
    }
}

/// What [`unregister`] did with the worker's job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Unregistered {
    /// The worker held no job.
    Idle,
    /// Its job got a failure record.
    Failed {
        class: String,
        /// The job and its failure, for `on_failure` hooks.
        #[serde(skip)]
        orphan: Option<Orphan>,
    },
    /// Its job went back to the head of `queue`.
    Requeued { class: String, queue: String },
}

/// A job left behind by a dead worker, as it was failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub payload: String,
    pub queue: String,
    pub failure: Failure,
}

/// What is left of a removed worker's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processes {
    /// None: the worker is this process, exiting, or it ran elsewhere.
    Elsewhere,
    /// A dead worker of this host: stop what its job left running before
    /// filing the job (see `stop_job_processes`).
    StopLeftovers,
}

/// Removes a worker and all its keys, atomically. A job it still held gets a
/// failure record from `make_failure(class)` (and counts as processed and
/// failed), or, with `requeue`, goes back to the head of its queue once (see
/// [`mark_requeued`]). A record that cannot be understood (not JSON, not
/// UTF-8) is filed as it is, never skipped. Used by pruning, by a worker's
/// own exit, and by a supervisor for a worker it reaped.
pub fn unregister(
    store: &mut Store,
    worker_id: &str,
    make_failure: &dyn Fn(&str) -> Failure,
    requeue: bool,
    processes: Processes,
    now: i64,
) -> Result<Unregistered> {
    // The in-flight record can change between our read and the removal only
    // if that worker is in fact alive; retry a few times, then give up.
    for _ in 0..5 {
        let current = store.in_flight(worker_id)?;
        let Some(bytes) = current.as_deref() else {
            let removal = Removal {
                worker_id,
                in_flight: b"",
                job: HeldJob::None,
                status_key: None,
                pid_key: None,
                now,
            };
            if store.remove_worker(&removal)? {
                return Ok(Unregistered::Idle);
            }
            continue;
        };
        let parsed = WorkerRecord::parse(bytes);
        if let (Some(record), Processes::StopLeftovers) = (&parsed, processes) {
            stop_job_processes(worker_id, record);
        }
        let (payload, queue, class) = match parsed {
            Some(r) => (
                r.payload.get().as_bytes().to_vec(),
                r.queue.clone(),
                r.class(),
            ),
            None => (bytes.to_vec(), String::new(), None),
        };
        let class = class.unwrap_or_else(|| "<Unknown Job>".to_string());
        let text = std::str::from_utf8(&payload).ok();
        let status_key = text.and_then(|p| best_effort_status_key(store.keys(), p));
        let pid_key = text.and_then(|p| best_effort_pid_key(store.keys(), p));
        // Only a runnable job goes back: a wrapped or broken payload requeued
        // would lose its original text.
        let requeued = text
            .filter(|p| requeue && !queue.is_empty() && Job::parse(p, &queue).is_ok())
            .and_then(|p| mark_requeued(p, now));
        let failure = requeued.is_none().then(|| make_failure(&class));
        let record = failure
            .as_ref()
            .map(|f| failure_record(&payload, &queue, f, worker_id, now));
        let job = match (&requeued, &record) {
            (Some(p), _) => HeldJob::Requeue {
                payload: p,
                queue: &queue,
            },
            (None, Some(r)) => HeldJob::File {
                record: r,
                queue: &queue,
            },
            (None, None) => HeldJob::None,
        };
        let removal = Removal {
            worker_id,
            in_flight: bytes,
            job,
            status_key: status_key.as_deref(),
            pid_key: pid_key.as_deref(),
            now,
        };
        if !store.remove_worker(&removal)? {
            continue;
        }
        return Ok(match failure {
            None => Unregistered::Requeued { class, queue },
            Some(failure) => Unregistered::Failed {
                class,
                orphan: Some(Orphan {
                    payload: String::from_utf8_lossy(&payload).into_owned(),
                    queue,
                    failure,
                }),
            },
        });
    }
    Err(Error::Conflict(format!(
        "worker {worker_id} kept changing its job while being unregistered; it looks alive"
    )))
}
