//! Finding workers that died without unregistering, and accounting for the
//! jobs they held.

use crate::error::Result;
use crate::payload::{exceptions, Failure};
use crate::store::Store;
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// How long Ruby's pruning lock is held at most.
pub const PRUNE_LOCK_SECS: u64 = 60;

/// A worker id split into its parts: `host:pid:queues`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerId<'a> {
    pub host: &'a str,
    pub pid: i32,
    pub queues: &'a str,
}

impl<'a> WorkerId<'a> {
    /// Parses an id as Ruby's `Worker.find` does; `None` if it is not one.
    ///
    /// ```
    /// use resque_fork::prune::WorkerId;
    /// let id = WorkerId::parse("web1:4242:high,mail").unwrap();
    /// assert_eq!((id.host, id.pid, id.queues), ("web1", 4242, "high,mail"));
    /// ```
    pub fn parse(id: &'a str) -> Option<WorkerId<'a>> {
        let mut parts = id.splitn(3, ':');
        let host = parts.next()?;
        let pid = parts.next()?.parse().ok()?;
        let queues = parts.next()?;
        Some(WorkerId { host, pid, queues })
    }
}

/// True when a process with this pid exists (ours to signal or not).
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

/// One pruned worker, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub worker_id: String,
    /// The class of the job it held, when it held one.
    pub job_class: Option<String>,
}

/// Unregisters every worker registered for `hostname` whose process is gone,
/// filing a `Resque::DirtyExit` failure for the job each held. Runs under
/// Ruby's pruning lock; does nothing when another worker holds it.
pub fn prune_dead_local_workers(
    store: &mut Store,
    my_id: &str,
    hostname: &str,
    now: i64,
) -> Result<Vec<Pruned>> {
    if !store.try_prune_lock(my_id, PRUNE_LOCK_SECS)? {
        log::debug!("another worker is pruning; skipping");
        return Ok(Vec::new());
    }
    let result = prune_under_lock(store, my_id, hostname, now);
    if let Err(e) = store.release_prune_lock(my_id) {
        log::warn!("{e}");
    }
    result
}

fn prune_under_lock(
    store: &mut Store,
    my_id: &str,
    hostname: &str,
    now: i64,
) -> Result<Vec<Pruned>> {
    let my_pid = std::process::id() as i32;
    let mut pruned = Vec::new();
    for id in store.worker_ids()? {
        let Some(parsed) = WorkerId::parse(&id) else {
            continue;
        };
        if id == my_id || parsed.host != hostname || parsed.pid == my_pid || pid_alive(parsed.pid) {
            continue;
        }
        let failure = Failure::new(exceptions::DIRTY_EXIT, "Job still being processed");
        let job_class = store.unregister(&id, &failure, now)?;
        match &job_class {
            Some(class) => log::warn!(
                "pruned dead worker {id}; its job {class} is recorded as failed ({})",
                exceptions::DIRTY_EXIT
            ),
            None => log::info!("pruned dead worker {id} (it was idle)"),
        }
        pruned.push(Pruned {
            worker_id: id,
            job_class,
        });
    }
    Ok(pruned)
}
