//! The process title `ps` shows, in the argv memory area.
//!
//! Ruby and php resque decide whether a registered worker is alive with
//! `ps … | grep resque-[0-9]` (Ruby) or `grep resque` (php), so every worker's
//! command line must read like `resque-0.1.0 (resque-fork): Waiting for q`.
//! `prctl(PR_SET_NAME)` only changes the 15-byte `comm`; `ps -o command` reads
//! the argv area, so the title is written there, extended over the
//! environment strings (which are first copied to the heap), as PostgreSQL
//! and nginx do.

use std::sync::atomic::{AtomicUsize, Ordering};

static AREA_START: AtomicUsize = AtomicUsize::new(0);
static AREA_LEN: AtomicUsize = AtomicUsize::new(0);
/// Where the current title ends in the area.
static TITLE_END: AtomicUsize = AtomicUsize::new(0);

/// The prefix every title starts with.
pub const PREFIX: &str = concat!("resque-", env!("CARGO_PKG_VERSION"), " (resque-fork): ");

/// Reads `arg_start arg_end env_start env_end` from `/proc/self/stat`.
fn argv_area() -> Option<(usize, usize, usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 48 of the whole line is index 45 here (field 3 is index 0).
    let get = |i: usize| fields.get(i)?.parse::<usize>().ok();
    Some((get(45)?, get(46)?, get(47)?, get(48)?))
}

/// Prepares the argv area for titles. Call once, after the command line has
/// been parsed (`std::env::args` reads the same memory) and while the process
/// is single-threaded (it rewrites the environment). Without it, or where
/// `/proc` is missing, [`set`] does nothing.
pub fn init() {
    let Some((arg_start, arg_end, env_start, env_end)) = argv_area() else {
        return;
    };
    if arg_start == 0 || arg_end <= arg_start {
        return;
    }
    let mut end = arg_end;
    if env_start == arg_end && env_end > env_start {
        // Move every environment string to the heap so the area after argv
        // is free: setenv replaces each entry's pointer with a new string.
        for (key, value) in std::env::vars_os() {
            std::env::set_var(&key, &value);
        }
        end = env_end;
    }
    AREA_START.store(arg_start, Ordering::Relaxed);
    AREA_LEN.store(end - arg_start, Ordering::Relaxed);
    TITLE_END.store(end - arg_start, Ordering::Relaxed);
}

/// Sets the title to [`PREFIX`] + `state`.
///
/// ```
/// resque_fork::proctitle::set("Waiting for high,mail"); // a no-op before init()
/// ```
pub fn set(state: &str) {
    let start = AREA_START.load(Ordering::Relaxed);
    let len = AREA_LEN.load(Ordering::Relaxed);
    if start == 0 || len < 2 {
        return;
    }
    let (prefix, state) = (PREFIX.as_bytes(), state.as_bytes());
    // Room for a terminating NUL.
    let room = len - 1;
    let p = prefix.len().min(room);
    let n = (p + state.len()).min(room);
    // SAFETY: [start, start+len) is this process's own argv (and moved-out
    // environment) area as the kernel reports it; nothing else reads it after
    // init() (args were parsed, environment strings were copied).
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, len);
        area[..p].copy_from_slice(&prefix[..p]);
        area[p..n].copy_from_slice(&state[..n - p]);
        // Only what the last title used needs clearing (all of the area
        // the first time, where argv and the environment were).
        let used = TITLE_END.swap(n, Ordering::Relaxed).clamp(n, len);
        area[n..used].fill(0);
    }
}
