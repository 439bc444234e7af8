//! A worker's identity: the id `host:pid:queues` that Ruby resque, php-resque
//! and resque-web read, and a random token that tells this process apart
//! from any other that ever had the same id.
//!
//! Ids repeat: a container restarted with the same hostname runs us as PID 1
//! again, and two containers sharing a hostname (host networking) can run two
//! live processes with one id. The token travels in every in-flight record
//! this process writes (the `token` field of `worker:ID`, see
//! docs/redis-contract.md, "In-flight record"), so a job held under our id
//! by another process is never mistaken for ours.

use std::io::Read;

/// A worker id split into its parts: `host:pid:queues`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerId<'a> {
    /// The host name part.
    pub host: &'a str,
    /// The process id part.
    pub pid: i32,
    /// The queue list part, as the worker was started with it.
    pub queues: &'a str,
}

impl<'a> WorkerId<'a> {
    /// Parses an id as Ruby's `Worker.find` does; `None` if it is not one.
    ///
    /// ```
    /// use resque_fork::identity::WorkerId;
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

/// This host's name as Resque writes it in worker ids (the uname nodename),
/// with any `:` replaced, since ids are split on `:`.
pub fn hostname() -> String {
    let name = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.replace(':', "-");
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// One running worker's identity.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `host:pid:queues`.
    pub id: String,
    /// `host:pid`, the id without its queues (node-resque's worker name).
    pub name: String,
    /// The host part.
    pub hostname: String,
    /// 32 hex digits, random per process.
    pub token: String,
}

impl Identity {
    /// The identity of this process, working `queues` (the id's last part).
    pub fn of_this_process(queues: &str) -> Identity {
        let hostname = hostname();
        let name = format!("{hostname}:{}", std::process::id());
        Identity {
            id: format!("{name}:{queues}"),
            name,
            hostname,
            token: random_token(),
        }
    }
}

/// The id a worker process of this host with `pid` working `queues` has.
pub fn worker_id(pid: i32, queues: &str) -> String {
    format!("{}:{pid}:{queues}", hostname())
}

/// 128 random bits as hex, from the kernel's generator. Should it be
/// unreadable, the time and pid still make a token no other process has.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = (nanos ^ (u128::from(std::process::id()) << 96)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_and_are_hex() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn ids_of_this_process() {
        let me = Identity::of_this_process("high,mail");
        let parsed = WorkerId::parse(&me.id).unwrap();
        assert_eq!(parsed.pid, std::process::id() as i32);
        assert_eq!(parsed.queues, "high,mail");
        assert_eq!(me.name, format!("{}:{}", parsed.host, parsed.pid));
    }
}
