//! `PIDFILE`: the pid of the foreground process, for scripts and process
//! managers, claimed safely and removed only by its owner.

use crate::error::{Error, Result};
use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The PIDFILE of this process, removed on drop if it still holds our pid.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    pid: u32,
}

impl Pidfile {
    /// Creates the file with our pid, mode 0644. It is created exclusively
    /// and never through a symlink, so two starts cannot both own it and
    /// nothing can point it at another file. An existing file that names a
    /// live resque-fork process is `AlreadyRunning`; a stale one (dead pid,
    /// or a pid reused by another program) is replaced.
    pub fn claim(path: &Path) -> Result<Pidfile> {
        let pid = std::process::id();
        let shown = path.display();
        for _ in 0..2 {
            match create(path, pid) {
                Ok(()) => {
                    return Ok(Pidfile {
                        path: path.to_path_buf(),
                        pid,
                    })
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(format!("writing PIDFILE {shown}"), e)),
            }
            let holder = read_pid(path).map_err(|e| {
                let what = if e.raw_os_error() == Some(libc::ELOOP) {
                    format!("PIDFILE {shown} is a symbolic link; refusing to follow it")
                } else {
                    format!("reading the existing PIDFILE {shown}")
                };
                Error::io(what, e)
            })?;
            if let Some(holder) =
                holder.filter(|&h| h != pid as i32 && crate::procfs::is_resque_fork(h))
            {
                return Err(Error::AlreadyRunning {
                    pidfile: path.to_path_buf(),
                    pid: holder,
                });
            }
            log::info!("replacing stale PIDFILE {shown}");
            std::fs::remove_file(path)
                .map_err(|e| Error::io(format!("removing the stale PIDFILE {shown}"), e))?;
        }
        Err(Error::Conflict(format!(
            "PIDFILE {shown} keeps reappearing: is another resque-fork starting with it?"
        )))
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        // Only our own: after a stale-file takeover elsewhere, or a restart
        // that wrote a new pid, the file is someone else's.
        if read_pid(&self.path).ok().flatten() == Some(self.pid as i32) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn create(path: &Path, pid: u32) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(path)?;
    // The mode above is cut by the umask; the file must be readable by all.
    file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    file.write_all(format!("{pid}\n").as_bytes())
}

/// The pid in the file; `None` when it holds none. A symlink is refused.
/// Sends `sig` to the resque-fork whose pid `path` holds (`pool reload`);
/// returns the pid. A missing file, or one naming no live resque-fork, is
/// `NotFound`.
pub fn signal_holder(path: &Path, sig: nix::sys::signal::Signal) -> Result<i32> {
    let shown = path.display();
    let pid = read_pid(path)
        .map_err(|e| Error::NotFound(format!("no pool's PIDFILE at {shown} ({e})")))?
        .filter(|&p| crate::procfs::is_resque_fork(p))
        .ok_or_else(|| Error::NotFound(format!("PIDFILE {shown} names no running resque-fork")))?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
        .map_err(|e| Error::io(format!("signalling pid {pid} from {shown}"), e.into()))?;
    Ok(pid)
}

fn read_pid(path: &Path) -> std::io::Result<Option<i32>> {
    let mut text = String::new();
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .read_to_string(&mut text)?;
    Ok(text.trim().parse().ok())
}
