//! BLOCKING mode's wait: a blocking wait on every queue that takes nothing.
//!
//! The atomic reserve script cannot block, and a blocking pop (BLPOP, as
//! php-resque's BLOCKING does) hands the job to the client before it is
//! recorded anywhere: a worker killed in between loses it. So the wait and
//! the take are separate. Each queue gets a "doorbell": its own small
//! connection blocked in `BLMOVE queue queue RIGHT RIGHT 0`, which returns as
//! soon as the queue holds a job and leaves it exactly as it was (the tail
//! element is moved onto the tail). The worker polls the doorbells' sockets
//! with its signal pipe; when one rings it runs the reserve script, which
//! takes the highest-priority job atomically. Priority and the no-loss
//! guarantee stay with the script; a killed worker leaves every queue intact.
//!
//! The cost is one idle connection per queue per worker, and one extra write
//! per ring. Doorbells speak RESP themselves over TCP or a unix socket; over
//! TLS the worker polls instead.
//!
//! A doorbell that answers with an error (an ACL user without `@blocking`, a
//! Redis without BLMOVE, `maxclients` reached), closes, or cannot connect is
//! broken, not ringing: the worker polls every INTERVAL meanwhile and the
//! doorbells are tried again after a doubling pause, with one log line when
//! they break and one when they work again. Counting an error as a ring
//! would make an idle worker spin on the reserve script.

use crate::backoff::Backoff;
use redis::{ConnectionAddr, ConnectionInfo};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a broken doorbell rests before it is tried again: doubling from
/// the first to the last.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_LAST: Duration = Duration::from_secs(60);
/// TCP keepalive: a doorbell blocks for as long as its queue stays empty, so
/// a peer that vanished without closing is found by probes (after about a
/// minute), not by a read.
const KEEPALIVE_IDLE_SECS: i32 = 30;
const KEEPALIVE_INTERVAL_SECS: i32 = 10;
const KEEPALIVE_PROBES: i32 = 3;

/// More queues than this and BLOCKING falls back to polling: a connection
/// per queue per worker stops being cheap.
pub const MAX_QUEUES: usize = 64;

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

struct Bell {
    stream: Stream,
    armed: bool,
    buf: Vec<u8>,
}

enum Target {
    Tcp(String, u16),
    Unix(PathBuf),
}

/// The doorbells of one worker, by queue key.
pub struct Doorbells {
    target: Target,
    username: Option<String>,
    password: Option<String>,
    db: i64,
    bells: HashMap<String, Bell>,
    /// Set while the doorbells are broken: when to try them again.
    resting: Option<Rest>,
}

/// A pause after a doorbell broke.
struct Rest {
    until: Instant,
    /// The pauses, should the next try fail too.
    backoff: Backoff,
}

fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The length of the first complete RESP2 reply in `buf`, if there is one.
fn reply_len(buf: &[u8]) -> Option<usize> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")? + 2;
    match buf.first()? {
        b'$' => {
            let n: i64 = std::str::from_utf8(&buf[1..line_end - 2])
                .ok()?
                .parse()
                .ok()?;
            if n < 0 {
                Some(line_end)
            } else {
                let total = line_end + n as usize + 2;
                (buf.len() >= total).then_some(total)
            }
        }
        // Simple strings, errors, integers, and RESP2's null array.
        _ => Some(line_end),
    }
}

impl Doorbells {
    /// Doorbells for the Redis of `info`; `None` over TLS.
    pub fn new(info: &ConnectionInfo) -> Option<Doorbells> {
        let target = match info.addr() {
            ConnectionAddr::Tcp(host, port) => Target::Tcp(host.clone(), *port),
            ConnectionAddr::Unix(path) => Target::Unix(path.clone()),
            _ => return None,
        };
        let settings = info.redis_settings();
        Some(Doorbells {
            target,
            username: settings.username().map(String::from),
            password: settings.password().map(String::from),
            db: settings.db(),
            bells: HashMap::new(),
            resting: None,
        })
    }

    /// Marks the doorbells broken for a while: every connection is dropped,
    /// and `arm` refuses until the pause is over.
    fn broke(&mut self, why: &str) {
        let mut backoff = self
            .resting
            .as_ref()
            .map_or(Backoff::new(RETRY_FIRST, RETRY_LAST), |r| r.backoff);
        let pause = backoff.delay();
        if self.resting.is_none() {
            log::warn!(
                "BLOCKING doorbell failed ({why}): polling every INTERVAL instead, trying the doorbells again in {}s",
                pause.as_secs()
            );
        } else {
            log::debug!(
                "BLOCKING doorbell failed again ({why}); next try in {}s",
                pause.as_secs()
            );
        }
        self.bells.clear();
        self.resting = Some(Rest {
            until: Instant::now() + pause,
            backoff,
        });
    }

    /// A ring proves the doorbells work: forget any earlier failure.
    fn worked(&mut self) {
        if self.resting.take().is_some() {
            log::warn!("BLOCKING doorbells work again");
        }
    }

    fn connect(&self) -> io::Result<Stream> {
        let timeout = Duration::from_secs(5);
        let mut stream = match &self.target {
            Target::Tcp(host, port) => {
                let s = connect_tcp(host, *port, timeout)?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(timeout))?;
                keepalive(&s)?;
                Stream::Tcp(s)
            }
            Target::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(timeout))?;
                Stream::Unix(s)
            }
        };
        let mut setup = Vec::new();
        if let Some(pw) = &self.password {
            match &self.username {
                Some(user) => setup.push(command(&[b"AUTH", user.as_bytes(), pw.as_bytes()])),
                None => setup.push(command(&[b"AUTH", pw.as_bytes()])),
            }
        }
        if self.db != 0 {
            setup.push(command(&[b"SELECT", self.db.to_string().as_bytes()]));
        }
        for cmd in setup {
            stream.io().write_all(&cmd)?;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 256];
            while reply_len(&buf).is_none() {
                let n = stream.io().read(&mut chunk)?;
                if n == 0 {
                    return Err(io::Error::other("Redis closed the doorbell connection"));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            if buf.first() == Some(&b'-') {
                return Err(io::Error::other(
                    String::from_utf8_lossy(&buf).trim().to_string(),
                ));
            }
        }
        stream.set_nonblocking(true)?;
        Ok(stream)
    }

    /// Arms a doorbell on each queue key (connecting as needed) and drops
    /// the ones for keys no longer listed. Refuses while the doorbells rest
    /// after a failure (the caller polls instead).
    pub fn arm(&mut self, keys: &[String]) -> io::Result<()> {
        if let Some(rest) = &self.resting {
            if Instant::now() < rest.until {
                return Err(io::Error::other(
                    "the doorbells are resting after a failure",
                ));
            }
        }
        self.bells.retain(|k, _| keys.contains(k));
        for key in keys {
            if !self.bells.contains_key(key) {
                let stream = match self.connect() {
                    Ok(stream) => stream,
                    Err(e) => {
                        self.broke(&e.to_string());
                        return Err(e);
                    }
                };
                self.bells.insert(
                    key.clone(),
                    Bell {
                        stream,
                        armed: false,
                        buf: Vec::new(),
                    },
                );
            }
            let Some(bell) = self.bells.get_mut(key) else {
                continue;
            };
            if !bell.armed {
                let k = key.as_bytes();
                let cmd = command(&[b"BLMOVE", k, k, b"RIGHT", b"RIGHT", b"0"]);
                if let Err(e) = bell.stream.io().write_all(&cmd) {
                    self.broke(&e.to_string());
                    return Err(e);
                }
                bell.armed = true;
            }
        }
        Ok(())
    }

    /// The sockets to poll for a ring.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.bells.values().map(|b| b.stream.fd()).collect()
    }

    /// Reads the replies that arrived; true when a bell rang (or broke, which
    /// also calls for a look at the queues). A ringing bell is disarmed. An
    /// error reply or a lost connection breaks the doorbells for a while.
    pub fn collect(&mut self) -> bool {
        let mut rang = false;
        let mut broken: Option<String> = None;
        for (key, bell) in self.bells.iter_mut() {
            let mut chunk = [0u8; 4096];
            loop {
                match bell.stream.io().read(&mut chunk) {
                    Ok(0) => {
                        broken = Some(format!("Redis closed the doorbell of {key}"));
                        break;
                    }
                    Ok(n) => bell.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        broken = Some(format!("the doorbell of {key}: {e}"));
                        break;
                    }
                }
            }
            while let Some(len) = reply_len(&bell.buf) {
                let reply: Vec<u8> = bell.buf.drain(..len).collect();
                bell.armed = false;
                if reply.first() == Some(&b'-') {
                    let text = String::from_utf8_lossy(&reply[1..]).trim().to_string();
                    broken = Some(format!("{key}: {text}"));
                } else {
                    rang = true;
                }
            }
        }
        if let Some(why) = broken {
            self.broke(&why);
            // The queues may hold a job the broken bell would have rung for.
            return true;
        }
        if rang {
            self.worked();
        }
        rang
    }
}

/// Connects to the first address of `host` that answers within `timeout`.
fn connect_tcp(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let mut last = io::Error::other(format!("{host} has no address"));
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Turns on TCP keepalive with probes soon enough to notice a dead peer.
fn keepalive(stream: &TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    for (level, option, value) in [
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, KEEPALIVE_IDLE_SECS),
        (
            libc::IPPROTO_TCP,
            libc::TCP_KEEPINTVL,
            KEEPALIVE_INTERVAL_SECS,
        ),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, KEEPALIVE_PROBES),
    ] {
        // SAFETY: setsockopt on an open socket with an int-sized option.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                option,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(reply_len(b"$-1\r\n"), Some(5));
        assert_eq!(reply_len(b"$3\r\nabc\r\n"), Some(9));
        assert_eq!(reply_len(b"$3\r\nab"), None);
        assert_eq!(reply_len(b"-ERR x\r\n"), Some(8));
        assert_eq!(reply_len(b"+OK\r"), None);
        assert_eq!(
            command(&[b"GET", b"k"]),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec()
        );
    }
}
