//! Starting an exec job's program without copying the worker: `clone` with
//! `CLONE_VM | CLONE_VFORK`, as glibc's `posix_spawn` does. A plain `fork`
//! copies the worker's page tables and then makes the worker take a
//! copy-on-write fault for every page it writes until the child has exec'd;
//! here the child borrows the worker's memory and the worker waits, suspended,
//! until the child has called `execve` (or died trying).
//!
//! So the child, until `execve`, touches nothing of the worker's but what
//! [`Plan`] prepared for it, allocates nothing, and makes only
//! async-signal-safe system calls: signal dispositions back to default,
//! its own process group, death with the worker (`PR_SET_PDEATHSIG`), the
//! memory limit, stdin and stderr, the signal mask, `execve`. Every signal is
//! blocked across the `clone`, so no handler of the worker's ever runs in
//! the child.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI32, Ordering};

/// The stack the child runs on until `execve`: small, since it calls a
/// handful of libc functions and nothing else.
const CHILD_STACK: usize = 64 * 1024;

/// Where a child that could not start stopped, for the error message.
const STAGES: [&str; 5] = [
    "",
    "its process group",
    "dying with the worker (the worker is gone?)",
    "its memory limit",
    "executing it",
];

/// Everything the child needs, prepared by the worker before the `clone`.
pub struct Plan<'a> {
    program: CString,
    argv: [*const libc::c_char; 2],
    /// This job's own variables; the rest of `envp` points into the
    /// handler's base environment, which outlives the plan.
    _extra: Vec<CString>,
    _base: std::marker::PhantomData<&'a [CString]>,
    envp: Vec<*const libc::c_char>,
    stdin: RawFd,
    stderr: RawFd,
    parent: libc::pid_t,
    memory: Option<u64>,
    reset: &'a [nix::sys::signal::Signal],
    mask: libc::sigset_t,
    errno: AtomicI32,
    stage: AtomicI32,
}

impl<'a> Plan<'a> {
    /// A plan to run `program` with the environment `base` plus `extra`
    /// (`KEY=value` entries), stdin and stderr from the given descriptors,
    /// dying with `parent`, its address space capped at `memory` bytes, and
    /// the `reset` signals back to their default action.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        program: &OsStr,
        base: &'a [CString],
        extra: Vec<CString>,
        stdin: RawFd,
        stderr: RawFd,
        parent: libc::pid_t,
        memory: Option<u64>,
        reset: &'a [nix::sys::signal::Signal],
    ) -> io::Result<Plan<'a>> {
        let program = CString::new(program.as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
        let mut envp: Vec<*const libc::c_char> =
            base.iter().chain(&extra).map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        Ok(Plan {
            argv: [program.as_ptr(), std::ptr::null()],
            program,
            _extra: extra,
            _base: std::marker::PhantomData,
            envp,
            stdin,
            stderr,
            parent,
            memory,
            reset,
            // SAFETY: an all-zero sigset_t is a valid (empty) set; it is
            // overwritten with the worker's mask before the clone.
            mask: unsafe { std::mem::zeroed() },
            errno: AtomicI32::new(0),
            stage: AtomicI32::new(0),
        })
    }
}

/// Starts the program of `plan`; returns its pid once it has exec'd. An
/// error means it never ran (and is reaped).
pub fn spawn(plan: &mut Plan<'_>) -> io::Result<i32> {
    // Left uninitialised: a stack needs no zeroing, and zeroing 64 KiB was
    // most of the worker's instructions per exec job.
    let mut stack: Box<[std::mem::MaybeUninit<u8>]> = Box::new_uninit_slice(CHILD_STACK);
    // The stack grows down: hand over its top, 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
    // SAFETY: sigfillset and pthread_sigmask on valid sets.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut plan.mask);
    }
    // SAFETY: the child runs `child` on its own stack with the plan, which
    // outlives it (CLONE_VFORK suspends us until it has exec'd or exited);
    // it makes only async-signal-safe calls (see the module doc).
    let pid = unsafe {
        libc::clone(
            child,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            plan as *mut Plan<'_> as *mut libc::c_void,
        )
    };
    let cloned = io::Error::last_os_error();
    // SAFETY: restoring the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &plan.mask, std::ptr::null_mut()) };
    drop(stack);
    if pid < 0 {
        return Err(cloned);
    }
    let errno = plan.errno.load(Ordering::SeqCst);
    if errno != 0 {
        let mut status = 0;
        // SAFETY: reaping the child that failed to start.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let stage = STAGES
            .get(plan.stage.load(Ordering::SeqCst) as usize)
            .copied()
            .unwrap_or("");
        let err = io::Error::from_raw_os_error(errno);
        return Err(io::Error::new(err.kind(), format!("{stage}: {err}")));
    }
    Ok(pid)
}

/// The child, from the `clone` to the `execve`.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the plan, alive while the worker is suspended; every
    // call below is an async-signal-safe system call on prepared data.
    unsafe {
        let plan = &*(arg as *const Plan<'_>);
        let fail = |stage: i32| -> libc::c_int {
            plan.errno
                .store(*libc::__errno_location(), Ordering::SeqCst);
            plan.stage.store(stage, Ordering::SeqCst);
            libc::_exit(127)
        };
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for &sig in plan.reset {
            libc::sigaction(sig as libc::c_int, &dfl, std::ptr::null_mut());
        }
        // Its own process group, so stopping the job stops what it started.
        if libc::setpgid(0, 0) != 0 {
            return fail(1);
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return fail(2);
        }
        if libc::getppid() != plan.parent {
            *libc::__errno_location() = libc::ESRCH;
            return fail(2);
        }
        if let Some(bytes) = plan.memory {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return fail(3);
            }
        }
        if libc::dup2(plan.stdin, 0) < 0 || libc::dup2(plan.stderr, 2) < 0 {
            return fail(4);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &plan.mask, std::ptr::null_mut());
        libc::execve(
            plan.program.as_ptr(),
            plan.argv.as_ptr(),
            plan.envp.as_ptr(),
        );
        fail(4)
    }
}
