//! The job process: started per job, watched by the worker, read back as an
//! outcome. A Rust job runs in a forked copy of the worker and reports on a
//! pipe; an exec job is the program itself, its stderr tail kept for the record.

use crate::handlers::exec::ExecHandler;
use crate::handlers::Registry;
use crate::payload::{exceptions, Failure, Job, RetryRequest};
use crate::signals::{self, SignalPipe, HANDLED};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// How much of a report or of stderr the worker keeps.
const REPORT_LIMIT: usize = 1 << 20;
const STDERR_TAIL: usize = 2048;
/// The exit code with which an exec job asks for a retry (sysexits.h).
pub const EX_TEMPFAIL: i32 = 75;

/// How a job's run ended, as the worker records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It completed.
    Completed,
    /// It failed and reported so itself, in the job process, where its
    /// `on_failure` hooks have run already.
    FailedInJob(Failure),
    /// It failed as seen from outside (killed, a non-zero exit, never
    /// started, timed out): the worker runs `on_failure`.
    Failed(Failure),
}

impl Ended {
    /// The failure, if it failed.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Ended::Completed => None,
            Ended::FailedInJob(f) | Ended::Failed(f) => Some(f),
        }
    }

    /// The failure, if it failed.
    pub fn into_failure(self) -> Option<Failure> {
        match self {
            Ended::Completed => None,
            Ended::FailedInJob(f) | Ended::Failed(f) => Some(f),
        }
    }
}

/// Which kind of job process this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rust,
    Exec,
}

/// A running job process and the pipes the worker reads from it.
#[derive(Debug)]
pub struct JobProcess {
    pid: Pid,
    kind: Kind,
    report: Option<OwnedFd>,
    report_buf: Vec<u8>,
    stderr: Option<OwnedFd>,
    stderr_tail: Vec<u8>,
}

/// Starts the process for `job`. `Err` is a failure recorded without running
/// anything (unknown or refused class, a program that cannot start).
pub fn start(
    job: &Job,
    registry: &Registry,
    exec: &ExecHandler,
    worker_id: &str,
    signals: &SignalPipe,
    memory_limit: Option<u64>,
) -> Result<JobProcess, Failure> {
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| {
            Failure::new(
                exceptions::DIRTY_EXIT,
                format!("could not create a pipe for the job process: {e}"),
            )
        })
    };
    let (read, write) = pipe()?;
    set_nonblocking(&read);
    if registry.contains(job.class()) {
        let worker = nix::unistd::getpid();
        // Signals stay blocked across the fork until the child has reset its
        // handlers: one arriving in between is then the child's, with the
        // default action, and never lands in the worker's pipe.
        let blocked = signals::block(HANDLED);
        // SAFETY: the worker is single-threaded, so the child gets a
        // consistent copy of every lock and allocator.
        let forked = unsafe { fork() };
        if !matches!(forked, Ok(ForkResult::Child)) {
            signals::restore(blocked);
        }
        match forked {
            Ok(ForkResult::Child) => {
                signals.reset_in_child();
                signals::restore(blocked);
                let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
                if crate::handlers::exec::die_with_parent(worker)
                    .and_then(|()| crate::handlers::exec::limit_memory(memory_limit))
                    .is_err()
                {
                    // SAFETY: leaving the copy of the worker without running its destructors.
                    unsafe { libc::_exit(1) }
                }
                run_rust_child(job, registry, write)
            }
            Ok(ForkResult::Parent { child }) => {
                Ok(JobProcess::new(child, Kind::Rust, Some(read), None))
            }
            Err(e) => Err(Failure::new(
                exceptions::DIRTY_EXIT,
                format!("could not fork a job process: {e}"),
            )),
        }
    } else {
        let pid = exec.spawn(job, worker_id, write)?;
        Ok(JobProcess::new(
            Pid::from_raw(pid),
            Kind::Exec,
            None,
            Some(read),
        ))
    }
}

/// Makes the worker what its Rust jobs' processes start as: their
/// environment (`RESQUE_WORKER`, named like an exec job's so a pruner can
/// tell this job's own processes from others (see `prune`), and no Redis
/// credentials unless `keep_redis_env`) and the panic hook that keeps a
/// panic's location for the failure record. Done once, in the worker, after
/// its settings are read and its exec jobs' environment is built: a forked
/// job process that did it itself wrote to pages it shares with the worker,
/// a copy-on-write fault each, for every job (a quarter of a no-op Rust
/// job's cost on a 2-core VM).
pub fn prepare_job_process(worker_id: &str, keep_redis_env: bool) {
    // (The worker is single-threaded: changing its environment is safe.)
    std::env::set_var("RESQUE_WORKER", worker_id);
    if !keep_redis_env {
        for var in crate::handlers::exec::REDIS_ENV_VARS {
            std::env::remove_var(var);
        }
    }
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(crate::handlers::registry::capture_panic_locations);
}

/// Reaps every child that has exited, while no job runs: orphans a worker
/// running as PID 1 has inherited.
pub fn reap_orphans() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Makes the read end of a new pipe non-blocking. (Its only other status
/// flag is its access mode, which F_SETFL leaves alone: no F_GETFL needed.)
fn set_nonblocking(fd: &OwnedFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let _ = fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
}

/// In the forked child: run the function, report, and leave without running
/// the worker's destructors (its Redis connection belongs to the parent).
/// Whatever happens, the child ends in `_exit`: nothing may unwind back into
/// the worker's code, which would run its cleanup over its Redis socket.
fn run_rust_child(job: &Job, registry: &Registry, report: OwnedFd) -> ! {
    let body = std::panic::AssertUnwindSafe(|| {
        // (Its environment and panic hook were made ready by the worker:
        // see `prepare_job_process`.)
        let failure = registry.perform_in_job_process(job);
        // A completed job's report needs no allocation (every write to the
        // heap here is a copy-on-write fault).
        let text = failure.as_ref().map(|f| {
            let mut text = serde_json::to_vec(f).unwrap_or_default();
            text.truncate(REPORT_LIMIT);
            text
        });
        let mut rest: &[u8] = text.as_deref().unwrap_or(b"null");
        while !rest.is_empty() {
            match nix::unistd::write(&report, rest) {
                Ok(n) => rest = &rest[n..],
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    });
    let code = if std::panic::catch_unwind(body).is_ok() {
        0
    } else {
        101
    };
    // SAFETY: _exit skips atexit handlers and destructors, which belong to
    // the worker process this one was copied from.
    unsafe { libc::_exit(code) }
}

impl JobProcess {
    fn new(pid: Pid, kind: Kind, report: Option<OwnedFd>, stderr: Option<OwnedFd>) -> JobProcess {
        JobProcess {
            pid,
            kind,
            report,
            report_buf: Vec::new(),
            stderr,
            stderr_tail: Vec::new(),
        }
    }

    /// The job process's pid.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// The pipes still open, to poll for readability.
    pub fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.report
            .iter()
            .chain(self.stderr.iter())
            .map(|f| f.as_fd())
    }

    /// Reads whatever the pipes hold now, without blocking.
    pub fn read_pipes(&mut self) {
        if let Some(fd) = &self.report {
            if drain(fd, &mut self.report_buf, REPORT_LIMIT, false) {
                self.report = None;
            }
        }
        if let Some(fd) = &self.stderr {
            if drain(fd, &mut self.stderr_tail, STDERR_TAIL, true) {
                self.stderr = None;
            }
        }
    }

    /// Sends a signal to the job: its whole process group, so processes the
    /// job started stop with it (never to the worker, which is outside it).
    pub fn signal(&self, sig: Signal) {
        if nix::sys::signal::killpg(self.pid, sig).is_err() {
            // Not yet in its own group (just forked): the process itself.
            let _ = kill(self.pid, sig);
        }
    }

    /// Reaps the process if it has ended, and any other child that has:
    /// a worker running as PID 1 (a container) inherits every orphan, and
    /// must reap them or they stay zombies.
    pub fn try_reap(&mut self) -> Option<WaitStatus> {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return None,
                Ok(status @ (WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, ..)))
                    if pid == self.pid =>
                {
                    return Some(status)
                }
                // Some other child (an orphan), reaped; look again.
                Ok(_) => continue,
                // ECHILD: already reaped; should not happen, but never wait forever.
                Err(_) => return Some(WaitStatus::Exited(self.pid, 255)),
            }
        }
    }

    /// How the job ended, from the way its process ended.
    pub fn outcome(self, status: WaitStatus) -> Ended {
        let rust = self.kind == Kind::Rust;
        match self.failure(status) {
            None => Ended::Completed,
            // A Rust job reports its own failures; a dirty exit it cannot.
            Some(f) if rust && f.exception != exceptions::DIRTY_EXIT => Ended::FailedInJob(f),
            Some(f) => Ended::Failed(f),
        }
    }

    fn failure(mut self, status: WaitStatus) -> Option<Failure> {
        self.read_pipes();
        match status {
            WaitStatus::Signaled(pid, sig, core) => Some(Failure::new(
                exceptions::DIRTY_EXIT,
                format!(
                    "Child process received unhandled signal pid {pid} {} (signal {}){}",
                    sig.as_str(),
                    sig as i32,
                    if core { " (core dumped)" } else { "" }
                ),
            )),
            WaitStatus::Exited(pid, code) => match self.kind {
                Kind::Rust => match serde_json::from_slice::<Option<Failure>>(&self.report_buf) {
                    Ok(failure) if !self.report_buf.is_empty() => failure,
                    _ => Some(Failure::new(
                        exceptions::DIRTY_EXIT,
                        format!("Job process pid {pid} exited with code {code} without reporting a result"),
                    )),
                },
                Kind::Exec if code == 0 => None,
                Kind::Exec => {
                    let tail = String::from_utf8_lossy(&self.stderr_tail);
                    let tail = tail.trim();
                    let failure = Failure::new(
                        exceptions::JOB_FAILED,
                        if tail.is_empty() {
                            format!("exited with code {code}")
                        } else {
                            format!("exited with code {code}: {tail}")
                        },
                    );
                    // sysexits.h's EX_TEMPFAIL: "the user is invited to retry".
                    Some(failure.retry(if code == EX_TEMPFAIL {
                        RetryRequest::Asked { delay: None }
                    } else {
                        RetryRequest::Ordinary
                    }))
                }
            },
            other => Some(Failure::new(
                exceptions::DIRTY_EXIT,
                format!("Job process ended unexpectedly: {other:?}"),
            )),
        }
    }
}

/// Reads all available bytes; keeps the first `limit` (or, with `tail`, the
/// last `limit`). Returns true at end of file or on an error.
fn drain(fd: &OwnedFd, buf: &mut Vec<u8>, limit: usize, tail: bool) -> bool {
    use std::os::fd::AsRawFd;
    // Room grows to 8 KiB only once a read has filled what there was: most
    // jobs write a few bytes or nothing, and 8 KiB per pipe and job, freed
    // again, sent the worker's allocator through its bins every job (and
    // each page it writes costs a fault after a fork).
    let mut want = 256;
    loop {
        // Read straight into the buffer's spare room: a zeroed 8 KiB chunk
        // per read was a good part of the worker's work per job.
        if buf.len() == buf.capacity() {
            buf.reserve(want);
        }
        let spare = buf.spare_capacity_mut();
        let room = spare.len();
        // SAFETY: read writes at most spare.len() bytes into the spare
        // capacity, and set_len below covers exactly the bytes it wrote.
        let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
        if n == 0 {
            return true;
        }
        if n < 0 {
            match nix::errno::Errno::last() {
                nix::errno::Errno::EINTR => continue,
                nix::errno::Errno::EAGAIN => return false,
                _ => return true,
            }
        }
        // SAFETY: the first n bytes of the spare room were just written.
        unsafe { buf.set_len(buf.len() + n as usize) };
        if n as usize == room {
            want = 8192;
        }
        if tail {
            if buf.len() > limit {
                buf.drain(..buf.len() - limit);
            }
        } else {
            buf.truncate(limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::drain;

    /// A pipe holding `data`, its write end closed.
    fn pipe_with(data: &[u8]) -> std::os::fd::OwnedFd {
        let (read, write) = nix::unistd::pipe().unwrap();
        assert_eq!(nix::unistd::write(&write, data).unwrap(), data.len());
        read
    }

    #[test]
    fn drain_keeps_the_first_or_last_bytes_whatever_the_reads_take() {
        // Around the first small read, around the 8 KiB ones, and past the
        // limit (a pipe holds 64 KiB, so all of it is written up front).
        for size in [0, 1, 255, 256, 257, 1000, 1001, 8448, 9000, 60_000] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let keep = size.min(1000);
            let mut head = Vec::new();
            assert!(drain(&pipe_with(&data), &mut head, 1000, false), "{size}");
            assert_eq!(head, data[..keep], "first bytes of {size}");
            let mut tail = Vec::new();
            assert!(drain(&pipe_with(&data), &mut tail, 1000, true), "{size}");
            assert_eq!(tail, data[size - keep..], "last bytes of {size}");
        }
    }
}
