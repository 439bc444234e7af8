//! What this host's `/proc` says about other processes: whether a pid is
//! alive, its command line, its process group and environment.

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// True when a process with this pid exists (ours to signal or not).
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

/// A process's command line with its NUL separators as spaces (what `ps`
/// shows, process titles included); `None` when it cannot be read. A zombie
/// or a kernel thread has an empty one.
pub fn cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        String::from_utf8_lossy(&raw)
            .replace('\0', " ")
            .trim_end()
            .to_string(),
    )
}

/// The pids of the live processes in process group `pgid`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| stat_fields(pid).is_some_and(|f| f.get(2) == Some(&pgid.to_string())))
        .collect()
}

/// True when `pid`'s environment holds exactly `entry` (`NAME=value`).
pub fn environ_has(pid: i32, entry: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|&b| b == 0).any(|e| e == entry.as_bytes()))
        .unwrap_or(false)
}

/// The fields of `/proc/PID/stat` after the command name: state, ppid,
/// pgrp, session, …
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(String::from).collect())
}

/// True when `pid` is alive and its command line is resque-fork's (its
/// binary name or its process title): not a pid reused by another program.
pub fn is_resque_fork(pid: i32) -> bool {
    pid_alive(pid) && cmdline(pid).is_some_and(|cmd| cmd.contains("resque-fork"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process() {
        let me = std::process::id() as i32;
        assert!(pid_alive(me));
        assert!(!pid_alive(0));
        assert!(cmdline(me).is_some_and(|c| !c.is_empty()));
        let pgid = nix::unistd::getpgrp().as_raw();
        assert!(group_members(pgid).contains(&me));
        let path = std::env::var("PATH").unwrap_or_default();
        assert!(environ_has(me, &format!("PATH={path}")) || path.is_empty());
    }
}
