//! The exec handler: class `Foo` runs the program `JOBS_DIR/Foo`, with the
//! job's `args` array as JSON on stdin. No shell is involved.

use crate::payload::{exceptions, Failure, Job};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Refuses class names that could name a file outside the jobs directory.
///
/// ```
/// use resque_fork::handlers::exec::check_class_name;
/// assert!(check_class_name("Mailer::Welcome").is_ok());
/// for bad in ["", "../x", "a/b", ".hidden", "a..b", "nul\0"] {
///     assert!(check_class_name(bad).is_err(), "{bad:?}");
/// }
/// ```
pub fn check_class_name(class: &str) -> Result<(), String> {
    let why = if class.is_empty() {
        "is empty"
    } else if class.contains('/') {
        "contains '/'"
    } else if class.contains('\0') {
        "contains a NUL byte"
    } else if class.starts_with('.') {
        "starts with '.'"
    } else if class.contains("..") {
        "contains '..'"
    } else {
        return Ok(());
    };
    Err(format!(
        "refusing job class {class:?}: the name {why}, so it could name a file outside JOBS_DIR"
    ))
}

/// The worker's Redis connection variables. A job process does not get them
/// unless `JOB_ENV_KEEP_REDIS` says so: a job that dumps its environment (or
/// runs `set -x`) would write a password into its stderr tail, and so into
/// its failure record.
pub const REDIS_ENV_VARS: &[&str] = &[
    "REDIS_URL",
    "REDIS_BACKEND",
    "REDIS_BACKEND_DB",
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "REDIS_SENTINEL_USERNAME",
    "REDIS_SENTINEL_PASSWORD",
    "REDIS_MIN_REPLICAS",
];

/// Where programs live and what they are told.
#[derive(Debug, Clone)]
pub struct ExecHandler {
    jobs_dir: PathBuf,
    memory_limit: Option<u64>,
    /// The worker's environment as every job gets it (`KEY=value`), built
    /// once: without the Redis variables (unless kept) and the per-job ones.
    base_env: Vec<CString>,
    /// The signals a job gets back at their default action: the worker's
    /// handled ones, and SIGPIPE, which Rust ignores in its own programs.
    reset_signals: Vec<nix::sys::signal::Signal>,
}

/// The variables each job gets of its own.
const JOB_VARS: &[&str] = &[
    "RESQUE_JOB_ID",
    "RESQUE_QUEUE",
    "RESQUE_CLASS",
    "RESQUE_WORKER",
    "RESQUE_RETRY_COUNT",
];

impl ExecHandler {
    /// `jobs_dir` should be absolute, so a job's own `chdir` cannot matter.
    /// `memory_limit` caps each program's address space, in bytes;
    /// `keep_redis_env` passes [`REDIS_ENV_VARS`] on to jobs.
    pub fn new(jobs_dir: PathBuf, memory_limit: Option<u64>, keep_redis_env: bool) -> ExecHandler {
        let base_env = std::env::vars_os()
            .filter(|(k, _)| {
                let k = k.as_bytes();
                !JOB_VARS.iter().any(|v| v.as_bytes() == k)
                    && (keep_redis_env || !REDIS_ENV_VARS.iter().any(|v| v.as_bytes() == k))
            })
            .filter_map(|(k, v)| {
                let mut entry = k.as_bytes().to_vec();
                entry.push(b'=');
                entry.extend_from_slice(v.as_bytes());
                CString::new(entry).ok()
            })
            .collect();
        ExecHandler {
            jobs_dir,
            memory_limit,
            base_env,
            reset_signals: crate::signals::HANDLED
                .iter()
                .copied()
                .chain([nix::sys::signal::Signal::SIGPIPE])
                .collect(),
        }
    }

    /// The directory searched for programs.
    pub fn jobs_dir(&self) -> &Path {
        &self.jobs_dir
    }

    /// Starts the program for `job` (see [`crate::spawn`]); returns its pid.
    /// Its stderr goes to `stderr`; stdout is the worker's. `Err` is a
    /// failure to record without running anything.
    pub fn spawn(&self, job: &Job, worker_id: &str, stderr: OwnedFd) -> Result<i32, Failure> {
        check_class_name(job.class())
            .map_err(|msg| Failure::new(exceptions::INVALID_JOB_CLASS, msg))?;
        let program = self.jobs_dir.join(job.class());
        // Whether the program exists is asked only when it did not start
        // (a stat per job was a measurable part of the worker's system time).
        let cannot = |e: std::io::Error| {
            if !program.is_file() {
                return Failure::new(
                    exceptions::UNKNOWN_JOB_CLASS,
                    format!(
                        "no handler for job class {:?}: it is not registered and there is no program {}",
                        job.class(),
                        program.display()
                    ),
                );
            }
            Failure::new(
                exceptions::JOB_FAILED,
                format!("could not start {}: {e}", program.display()),
            )
        };
        let stdin = args_file(job).map_err(|e| {
            Failure::new(
                exceptions::JOB_FAILED,
                format!("could not prepare the args of job {}: {e}", job.class()),
            )
        })?;
        let retry_count = crate::resp::Digits::int(job.retry_count().into());
        let extra = [
            ("RESQUE_JOB_ID", job.id().unwrap_or("").as_bytes()),
            ("RESQUE_QUEUE", job.queue().as_bytes()),
            ("RESQUE_CLASS", job.class().as_bytes()),
            ("RESQUE_WORKER", worker_id.as_bytes()),
            ("RESQUE_RETRY_COUNT", retry_count.as_bytes()),
        ]
        .iter()
        .map(|(k, v)| {
            let mut entry = Vec::with_capacity(k.len() + v.len() + 2);
            entry.extend_from_slice(k.as_bytes());
            entry.push(b'=');
            entry.extend_from_slice(v);
            CString::new(entry)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| cannot(std::io::Error::other("a NUL byte in its environment")))?;
        let mut plan = crate::spawn::Plan::new(
            program.as_os_str(),
            &self.base_env,
            extra,
            stdin.as_raw_fd(),
            stderr.as_raw_fd(),
            nix::unistd::getpid().as_raw(),
            self.memory_limit,
            &self.reset_signals,
        )
        .map_err(cannot)?;
        crate::spawn::spawn(&mut plan).map_err(cannot)
    }
}

/// In a job process: be killed when the worker dies, so a job never runs on
/// unsupervised after a `kill -9` of its worker (whose next start records it
/// as a dirty exit); if the worker is already gone, do not start at all.
pub(crate) fn die_with_parent(parent: nix::unistd::Pid) -> std::io::Result<()> {
    // SAFETY: prctl with a valid option and signal number.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if nix::unistd::getppid() != parent {
        return Err(std::io::Error::other(
            "the worker exited before the job started",
        ));
    }
    Ok(())
}

/// In a job process: cap the address space (JOB_MEMORY_LIMIT).
pub(crate) fn limit_memory(bytes: Option<u64>) -> std::io::Result<()> {
    let Some(bytes) = bytes else { return Ok(()) };
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit with a valid resource and a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The args JSON in an in-memory file: the program may read all of it, part
/// of it or none of it, and nothing ever blocks on a full pipe.
fn args_file(job: &Job) -> std::io::Result<File> {
    // SAFETY: memfd_create with a valid C string; the fd is owned below.
    let fd = unsafe { libc::memfd_create(c"resque-args".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned by nobody else.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    // At offset 0 without moving the file's offset, which so stays at the
    // start for the program (one system call instead of a write and a seek).
    std::os::unix::fs::FileExt::write_all_at(&file, job.args_json().as_bytes(), 0)?;
    Ok(file)
}
