//! The exec handler: class `Foo` runs the program `JOBS_DIR/Foo`, with the
//! job's `args` array as JSON on stdin. No shell is involved.

use crate::payload::{exceptions, Failure, Job};
use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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
pub const REDIS_ENV_VARS: &[&str] = &["REDIS_URL", "REDIS_BACKEND", "REDIS_BACKEND_DB"];

/// Where programs live and what they are told.
#[derive(Debug, Clone)]
pub struct ExecHandler {
    jobs_dir: PathBuf,
    memory_limit: Option<u64>,
    keep_redis_env: bool,
}

impl ExecHandler {
    /// `jobs_dir` should be absolute, so a job's own `chdir` cannot matter.
    /// `memory_limit` caps each program's address space, in bytes;
    /// `keep_redis_env` passes [`REDIS_ENV_VARS`] on to jobs.
    pub fn new(jobs_dir: PathBuf, memory_limit: Option<u64>, keep_redis_env: bool) -> ExecHandler {
        ExecHandler {
            jobs_dir,
            memory_limit,
            keep_redis_env,
        }
    }

    /// Whether jobs get [`REDIS_ENV_VARS`].
    pub fn keeps_redis_env(&self) -> bool {
        self.keep_redis_env
    }

    /// The directory searched for programs.
    pub fn jobs_dir(&self) -> &Path {
        &self.jobs_dir
    }

    /// Starts the program for `job`. Its stderr goes to `stderr`; stdout is
    /// the worker's. `Err` is a failure to record without running anything.
    pub fn spawn(&self, job: &Job, worker_id: &str, stderr: OwnedFd) -> Result<Child, Failure> {
        check_class_name(job.class())
            .map_err(|msg| Failure::new(exceptions::INVALID_JOB_CLASS, msg))?;
        let program = self.jobs_dir.join(job.class());
        if !program.is_file() {
            return Err(Failure::new(
                exceptions::UNKNOWN_JOB_CLASS,
                format!(
                    "no handler for job class {:?}: it is not registered and there is no program {}",
                    job.class(),
                    program.display()
                ),
            ));
        }
        let stdin = args_file(job).map_err(|e| {
            Failure::new(
                exceptions::JOB_FAILED,
                format!("could not prepare the args of job {}: {e}", job.class()),
            )
        })?;
        let mut command = Command::new(&program);
        let worker = nix::unistd::getpid();
        let memory = self.memory_limit;
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe calls (prctl, getppid, setrlimit).
        unsafe {
            command.pre_exec(move || {
                die_with_parent(worker)?;
                limit_memory(memory)
            });
        }
        if !self.keep_redis_env {
            for var in REDIS_ENV_VARS {
                command.env_remove(var);
            }
        }
        command
            // Its own process group, so stopping the job stops what it started.
            .process_group(0)
            .stdin(Stdio::from(stdin))
            .stderr(Stdio::from(stderr))
            .env("RESQUE_JOB_ID", job.id().unwrap_or(""))
            .env("RESQUE_QUEUE", job.queue())
            .env("RESQUE_CLASS", job.class())
            .env("RESQUE_WORKER", worker_id)
            .env("RESQUE_RETRY_COUNT", job.retry_count().to_string())
            .spawn()
            .map_err(|e| {
                Failure::new(
                    exceptions::JOB_FAILED,
                    format!("could not start {}: {e}", program.display()),
                )
            })
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
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(job.args_json().as_bytes())?;
    std::io::Seek::rewind(&mut file)?;
    Ok(file)
}
