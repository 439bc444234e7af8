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
//! per ring. Doorbells speak RESP themselves ([`crate::resp`]), over TCP, a
//! unix socket or TLS.
//!
//! A doorbell that answers with an error (an ACL user without `@blocking`, a
//! Redis without BLMOVE, `maxclients` reached), closes, or cannot connect is
//! broken, not ringing: the worker polls every INTERVAL meanwhile and the
//! doorbells are tried again after a doubling pause, with one log line when
//! they break and one when they work again. Counting an error as a ring
//! would make an idle worker spin on the reserve script.

use crate::backoff::Backoff;
use crate::resp::{self, Reply, Stream, Target};
use redis::ConnectionInfo;
use std::collections::HashMap;
use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

/// How long a broken doorbell rests before it is tried again: doubling from
/// the first to the last.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_LAST: Duration = Duration::from_secs(60);

/// More queues than this and BLOCKING falls back to polling: a connection
/// per queue per worker stops being cheap.
pub const MAX_QUEUES: usize = 64;

struct Bell {
    stream: Stream,
    armed: bool,
    buf: Vec<u8>,
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
    /// The generation of the node `target` is (see `Store::node`); `None`
    /// until the store has found it.
    generation: Option<u64>,
}

/// A pause after a doorbell broke.
struct Rest {
    until: Instant,
    /// The pauses, should the next try fail too.
    backoff: Backoff,
}

impl Doorbells {
    /// Doorbells with the credentials and database of `info`; `None` for a
    /// TLS address with certificates of its own. They ring only once
    /// [`Doorbells::follow`] named the node.
    pub fn new(info: &ConnectionInfo) -> Option<Doorbells> {
        let target = target_of(info)?;
        let settings = info.redis_settings();
        Some(Doorbells {
            target,
            username: settings.username().map(String::from),
            password: settings.password().map(String::from),
            db: settings.db(),
            bells: HashMap::new(),
            resting: None,
            generation: None,
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
        let mut setup = Vec::new();
        setup.extend(resp::auth(
            self.username.as_deref(),
            self.password.as_deref(),
        ));
        if self.db != 0 {
            setup.push(resp::command(&[b"SELECT", self.db.to_string().as_bytes()]));
        }
        Stream::connect(&self.target, Duration::from_secs(5), &setup)
    }

    /// The generation of the node the doorbells ring on, once known.
    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// Points the doorbells at the node the store talks to: on a new
    /// generation (a new master after a failover) every bell is dropped and
    /// re-armed there on the next wait.
    pub fn follow(&mut self, generation: u64, node: &ConnectionInfo) {
        if self.generation == Some(generation) {
            return;
        }
        if let Some(target) = target_of(node) {
            self.target = target;
            self.bells.clear();
            self.resting = None;
            self.generation = Some(generation);
        }
    }

    /// Arms a doorbell on each queue key (connecting as needed) and drops
    /// the ones for keys no longer listed. Refuses while the doorbells rest
    /// after a failure (the caller polls instead).
    pub fn arm(&mut self, keys: &[String]) -> io::Result<()> {
        if self.generation.is_none() {
            return Err(io::Error::other("the Redis master is not known yet"));
        }
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
                let cmd = resp::command(&[b"BLMOVE", k, k, b"RIGHT", b"RIGHT", b"0"]);
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
            match bell.stream.read_available(&mut bell.buf) {
                Ok(true) => {}
                Ok(false) => broken = Some(format!("Redis closed the doorbell of {key}")),
                Err(e) => broken = Some(format!("the doorbell of {key}: {e}")),
            }
            while let Some((reply, len)) = resp::parse(&bell.buf) {
                bell.buf.drain(..len);
                bell.armed = false;
                if let Reply::Error(text) = reply {
                    let text = String::from_utf8_lossy(&text).trim().to_string();
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

/// Where the doorbells of the node of `info` connect.
fn target_of(info: &ConnectionInfo) -> Option<Target> {
    Target::of(info.addr())
}
