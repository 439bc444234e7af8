//! Signals delivered as bytes on a pipe, so the single-threaded worker sees
//! them in the same `poll(2)` that waits for its child and for time.
//!
//! The handler only `write(2)`s the signal number (async-signal-safe); all
//! decisions happen in the loop that reads the pipe.

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static WRITE_FD: AtomicI32 = AtomicI32::new(-1);
/// Set by the handler once its byte is in the pipe: while it is clear the
/// pipe is empty, and [`SignalPipe::drain`] makes no system call (it runs
/// several times per job). The process is single-threaded, so the handler
/// has run to its end whenever the loop looks.
static PENDING: AtomicBool = AtomicBool::new(false);
/// The process that installed the handlers: the pipe is its own.
static OWNER: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signo: libc::c_int) {
    // SAFETY: errno is thread-local; saving and restoring it keeps the
    // interrupted code's view intact. getpid, signal, raise and write(2) are
    // async-signal-safe, and a full pipe (EAGAIN) only drops a duplicate
    // wake-up.
    unsafe {
        let errno = *libc::__errno_location();
        if libc::getpid() != OWNER.load(Ordering::Relaxed) {
            // A copy forked from the owner that has not yet reset its
            // handlers (a job process just forked, or between fork and exec):
            // the signal is the copy's own, with the default action it would
            // have as a plain program. Writing it into the owner's pipe would
            // make the worker act on a signal it never got.
            libc::signal(signo, libc::SIG_DFL);
            libc::raise(signo);
            *libc::__errno_location() = errno;
            return;
        }
        let fd = WRITE_FD.load(Ordering::Relaxed);
        if fd >= 0 {
            let byte = signo as u8;
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
        PENDING.store(true, Ordering::Relaxed);
        *libc::__errno_location() = errno;
    }
}

/// The signals workers and the supervisor react to: stop signals (QUIT,
/// TERM, INT, and HUP, which a worker gets when its supervisor dies), the
/// control signals, and SIGCHLD to notice ended children.
pub const HANDLED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGCONT,
    Signal::SIGCHLD,
    Signal::SIGHUP,
];

/// The self-pipe; one per process.
pub struct SignalPipe {
    read: OwnedFd,
    // Kept open for the handler; closed (and unhooked) on drop.
    _write: OwnedFd,
    signals: Vec<Signal>,
}

impl SignalPipe {
    /// Routes `signals` to the pipe, and unblocks them.
    pub fn install(signals: &[Signal]) -> io::Result<SignalPipe> {
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)?;
        WRITE_FD.store(write.as_raw_fd(), Ordering::Relaxed);
        OWNER.store(nix::unistd::getpid().as_raw(), Ordering::Relaxed);
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
            SigSet::empty(),
        );
        let mut set = SigSet::empty();
        for &sig in signals {
            // SAFETY: the handler is async-signal-safe (see on_signal).
            unsafe { signal::sigaction(sig, &action) }.map_err(io::Error::from)?;
            set.add(sig);
        }
        // Signals blocked until now (see `block`) are delivered to the pipe.
        signal::pthread_sigmask(signal::SigmaskHow::SIG_UNBLOCK, Some(&set), None)
            .map_err(io::Error::from)?;
        Ok(SignalPipe {
            read,
            _write: write,
            signals: signals.to_vec(),
        })
    }

    /// The end to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// The signals received since the last call, in arrival order: up to 64
    /// of them, the rest (a burst) on the next call, the pipe still being
    /// readable then. Nothing is allocated: a job's end brings a SIGCHLD, so
    /// this runs for every job.
    pub fn drain(&self) -> Drained {
        let mut out = Drained {
            bytes: [0; 64],
            len: 0,
            at: 0,
        };
        if !PENDING.swap(false, Ordering::Relaxed) {
            return out;
        }
        // (A read cut short by a signal leaves PENDING set by its handler.)
        if let Ok(n) = nix::unistd::read(&self.read, &mut out.bytes) {
            out.len = n;
            if n == out.bytes.len() {
                // Possibly more behind it: look again next time.
                PENDING.store(true, Ordering::Relaxed);
            }
        }
        out
    }

    /// In a freshly forked child: restore default dispositions, so the job
    /// process reacts to signals as a plain program does.
    pub fn reset_in_child(&self) {
        WRITE_FD.store(-1, Ordering::Relaxed);
        reset_to_default(&self.signals);
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        WRITE_FD.store(-1, Ordering::Relaxed);
        reset_to_default(&self.signals);
    }
}

fn reset_to_default(signals: &[Signal]) {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for &sig in signals {
        // SAFETY: installing SIG_DFL is always sound.
        let _ = unsafe { signal::sigaction(sig, &dfl) };
    }
}

/// Blocks `signals`; returns the previous mask for [`restore`].
pub fn block(signals: &[Signal]) -> SigSet {
    let mut set = SigSet::empty();
    for &s in signals {
        set.add(s);
    }
    let mut old = SigSet::empty();
    let _ = signal::pthread_sigmask(signal::SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old));
    old
}

/// Restores a mask saved by [`block`]; pending signals are delivered now.
pub fn restore(mask: SigSet) {
    let _ = signal::pthread_sigmask(signal::SigmaskHow::SIG_SETMASK, Some(&mask), None);
}

/// What [`SignalPipe::drain`] read: the signals, in arrival order.
pub struct Drained {
    bytes: [u8; 64],
    len: usize,
    at: usize,
}

impl Iterator for Drained {
    type Item = Signal;

    fn next(&mut self) -> Option<Signal> {
        while self.at < self.len {
            let byte = self.bytes[self.at];
            self.at += 1;
            if let Ok(sig) = Signal::try_from(i32::from(byte)) {
                return Some(sig);
            }
        }
        None
    }
}

/// Waits until one of `fds` is readable or `timeout` passes (EINTR counts as
/// a wake-up: callers re-check everything).
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: std::time::Duration) {
    // A few descriptors, the usual case, need no allocation: this runs once
    // or more per job.
    const ON_STACK: usize = 8;
    let unused = libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    };
    let mut on_stack = [unused; ON_STACK];
    let mut on_heap = Vec::new();
    let pollfds: &mut [libc::pollfd] = if fds.len() <= ON_STACK {
        &mut on_stack[..fds.len()]
    } else {
        on_heap.resize(fds.len(), unused);
        &mut on_heap
    };
    for (slot, fd) in pollfds.iter_mut().zip(fds) {
        slot.fd = fd.as_raw_fd();
        slot.events = libc::POLLIN;
    }
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // Round up so a sub-millisecond remainder does not spin.
    let ms = if ms == 0 && !timeout.is_zero() { 1 } else { ms };
    // SAFETY: pollfds is a valid array of pollfd for its length.
    unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, ms) };
}

/// Holds [`HANDLED`] signals blocked while it lives; they are delivered (to
/// the pipe) when it drops.
///
/// Redis calls run under it: a read on a socket with a receive timeout is
/// never restarted after a signal handler (signal(7)), so a SIGCHLD from a
/// job ending mid-call would otherwise fail the call with EINTR and cost a
/// reconnect.
pub struct Blocked(SigSet);

impl Blocked {
    /// Blocks [`HANDLED`] until the value drops.
    pub fn new() -> Blocked {
        Blocked(block(HANDLED))
    }
}

impl Default for Blocked {
    fn default() -> Self {
        Blocked::new()
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        restore(self.0);
    }
}
