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
    set_fmt(format_args!("{state}"));
}

/// [`set`] with the state formatted straight into the title, so that a
/// worker's per-job titles allocate nothing.
///
/// ```
/// let pid = 4242;
/// resque_fork::proctitle::set_fmt(format_args!("Forked {pid}")); // a no-op before init()
/// ```
pub fn set_fmt(state: std::fmt::Arguments<'_>) {
    let start = AREA_START.load(Ordering::Relaxed);
    let len = AREA_LEN.load(Ordering::Relaxed);
    if start == 0 || len < 2 {
        return;
    }
    // SAFETY: [start, start+len) is this process's own argv (and moved-out
    // environment) area as the kernel reports it; nothing else reads it after
    // init() (args were parsed, environment strings were copied).
    let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, len) };
    // Room for a terminating NUL.
    let mut title = Title {
        area: &mut area[..len - 1],
        at: 0,
    };
    let _ = std::fmt::Write::write_str(&mut title, PREFIX);
    let _ = std::fmt::Write::write_fmt(&mut title, state);
    let n = title.at;
    // Only what the last title used needs clearing (all of the area the
    // first time, where argv and the environment were).
    let used = TITLE_END.swap(n, Ordering::Relaxed).clamp(n, len);
    area[n..used].fill(0);
}

/// Writes into the title area, cutting off what does not fit.
struct Title<'a> {
    area: &'a mut [u8],
    at: usize,
}

impl std::fmt::Write for Title<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.area.len() - self.at);
        self.area[self.at..self.at + n].copy_from_slice(&s.as_bytes()[..n]);
        self.at += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Title;
    use std::fmt::Write;

    #[test]
    fn a_title_longer_than_the_area_is_cut_off_at_its_end() {
        let mut area = [0u8; 12];
        let mut title = Title {
            area: &mut area,
            at: 0,
        };
        write!(title, "resque-0.1: {}", 4242).unwrap();
        assert_eq!(title.at, 12);
        assert_eq!(&area, b"resque-0.1: ");
        let mut title = Title {
            area: &mut area,
            at: 0,
        };
        title.write_str("ab").unwrap();
        assert_eq!(title.at, 2);
    }
}
