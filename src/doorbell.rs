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

use redis::{ConnectionAddr, ConnectionInfo};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

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
        })
    }

    fn connect(&self) -> io::Result<Stream> {
        let timeout = Some(Duration::from_secs(5));
        let mut stream = match &self.target {
            Target::Tcp(host, port) => {
                let s = TcpStream::connect((host.as_str(), *port))?;
                s.set_nodelay(true)?;
                s.set_read_timeout(timeout)?;
                Stream::Tcp(s)
            }
            Target::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(timeout)?;
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
    /// the ones for keys no longer listed.
    pub fn arm(&mut self, keys: &[String]) -> io::Result<()> {
        self.bells.retain(|k, _| keys.contains(k));
        for key in keys {
            if !self.bells.contains_key(key) {
                let stream = self.connect()?;
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
                    self.bells.remove(key);
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
    /// also calls for a look at the queues). A ringing bell is disarmed.
    pub fn collect(&mut self) -> bool {
        let mut rang = false;
        let mut broken = Vec::new();
        for (key, bell) in self.bells.iter_mut() {
            let mut chunk = [0u8; 4096];
            loop {
                match bell.stream.io().read(&mut chunk) {
                    Ok(0) => {
                        broken.push(key.clone());
                        break;
                    }
                    Ok(n) => bell.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        broken.push(key.clone());
                        break;
                    }
                }
            }
            while let Some(len) = reply_len(&bell.buf) {
                bell.buf.drain(..len);
                bell.armed = false;
                rang = true;
            }
        }
        for key in broken {
            self.bells.remove(&key);
            rang = true;
        }
        rang
    }
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
