//! Finding the master through Redis Sentinel, and holding writes while it
//! changes (contract section 15).
//!
//! Discovery is the `redis` crate's own (`Sentinel::master_for`: ask each
//! Sentinel in turn, then check with `ROLE` that the node it names is a
//! master). What the crate does not do, and a worker needs, is around it:
//!
//! - **The watch.** A Sentinel announces a failover on its pub/sub channels:
//!   `+try-failover` when it starts, `+switch-master` when the new master
//!   is in place, `-failover-abort-*` when it gives up. Only the Sentinel
//!   that runs the failover says `+try-failover`, so the watch subscribes to
//!   every Sentinel, each on a raw non-blocking connection ([`crate::resp`])
//!   that the store polls (no thread: workers fork). From `+try-failover`
//!   until the switch, [`SentinelLink::gate`] holds every command: the old
//!   master goes on accepting writes until the Sentinels demote it, seconds
//!   after the replica was promoted, and what a worker wrote there in
//!   between (a job popped, a record) would vanish when it resynchronises.
//! - **The switch.** On `+switch-master` (or on `READONLY` from a demoted
//!   node, or a lost connection) the store drops its connection and asks the
//!   Sentinels again; the master's address gets a new generation so that the
//!   doorbells follow it.
//! - A watch that (re)connects first asks its Sentinel for the master's
//!   state (`SENTINEL MASTER`): a failover it missed while it was away is
//!   caught there.

use crate::backoff::Backoff;
use crate::config::SentinelSettings;
use crate::error::{Error, Result};
use crate::resp::{self, Reply, Stream, Target};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{
    Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, TlsMode,
};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

/// How long a watch may take to connect and subscribe.
const WATCH_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How a watch whose Sentinel is away retries: 1 s doubling to 30 s.
const WATCH_RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
/// The longest writes stay held without the failover's end announced: past
/// it the store asks the Sentinels where the master is and carries on.
const HOLD_LIMIT: Duration = Duration::from_secs(60);
/// What the watch listens to (exact names, and the aborts by pattern).
const WATCHED: [&[u8]; 3] = [b"+try-failover", b"+switch-master", b"-failover-abort-*"];

/// Whether the store may send a command now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Gate {
    /// Go ahead on the current connection.
    Open,
    /// A failover is under way: send nothing.
    Held(String),
    /// The master changed: reconnect (through the Sentinels) first.
    Moved,
}

/// The Sentinels of one master, and what they have announced.
pub(super) struct SentinelLink {
    sentinel: Sentinel,
    service: String,
    node: SentinelNodeConnectionInfo,
    /// The master as last found (`host:port`).
    master: Option<String>,
    /// Bumped whenever the master found differs from the one before.
    generation: u64,
    /// The node connection info of the master last found.
    master_info: Option<ConnectionInfo>,
    watches: Vec<Watch>,
    /// Since when writes are held.
    hold: Option<Instant>,
    /// The master changed since the store last connected.
    moved: bool,
    /// The last `+switch-master` target logged (each Sentinel repeats it).
    announced: Option<String>,
    /// The poll set of [`SentinelLink::readable`], kept between commands.
    pollfds: Vec<libc::pollfd>,
    /// The new master a `+switch-master` named, until discovery finds it
    /// there, and since when: a Sentinel that has not heard of the switch
    /// yet still names the old master, which answers `ROLE` as a master
    /// until it is demoted.
    expected: Option<(String, Instant)>,
}

/// One Sentinel's announcements.
struct Watch {
    /// Where it is (`None`: an address form the watch cannot reach).
    target: Option<Target>,
    auth: Option<Vec<u8>>,
    stream: Option<Stream>,
    buf: Vec<u8>,
    /// Replies to skip before messages: `SENTINEL MASTER` is answered
    /// first, then one confirmation per pattern.
    expecting_state: bool,
    retry_at: Instant,
    backoff: Backoff,
    /// Logged once while the Sentinel stays away.
    away: bool,
    /// This Sentinel announced `+try-failover` and no end yet.
    holding: bool,
}

impl SentinelLink {
    /// The Sentinels of `settings`, with the data nodes' credentials,
    /// database and TLS taken from `data_url`.
    pub(super) fn new(settings: &SentinelSettings, data_url: &str) -> Result<SentinelLink> {
        let bad = |what: &str, e: redis::RedisError| {
            Error::Config(format!(
                "invalid {what}: {}",
                crate::config::redact_url(&e.to_string())
            ))
        };
        let data = data_url
            .into_connection_info()
            .map_err(|e| bad("Redis address", e))?;
        let mut node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(data.redis_settings().clone());
        if let ConnectionAddr::TcpTls { insecure, .. } = data.addr() {
            node = node.set_tls_mode(if *insecure {
                TlsMode::Insecure
            } else {
                TlsMode::Secure
            });
        }
        let mut credentials = RedisConnectionInfo::default();
        if let Some(user) = &settings.username {
            credentials = credentials.set_username(user);
        }
        if let Some(pw) = &settings.password {
            credentials = credentials.set_password(pw);
        }
        let mut infos = Vec::new();
        let mut watches = Vec::new();
        for url in &settings.sentinels {
            let info = url
                .as_str()
                .into_connection_info()
                .map_err(|e| bad("Sentinel address", e))?
                .set_redis_settings(credentials.clone());
            let target = Target::of(info.addr());
            watches.push(Watch {
                target,
                auth: resp::auth(settings.username.as_deref(), settings.password.as_deref()),
                stream: None,
                buf: Vec::new(),
                expecting_state: false,
                retry_at: Instant::now(),
                backoff: WATCH_RETRY,
                away: false,
                holding: false,
            });
            infos.push(info);
        }
        let sentinel = Sentinel::build(infos).map_err(|e| bad("REDIS_SENTINELS", e))?;
        Ok(SentinelLink {
            sentinel,
            service: settings.master.clone(),
            node,
            master: None,
            generation: 0,
            master_info: None,
            watches,
            hold: None,
            moved: false,
            announced: None,
            pollfds: Vec::new(),
            expected: None,
        })
    }

    /// The master the Sentinels name now, checked to be one (`ROLE`).
    pub(super) fn master(&mut self) -> redis::RedisResult<Client> {
        let client = self.sentinel.master_for(&self.service, Some(&self.node))?;
        let info = client.get_connection_info().clone();
        let addr = address(info.addr());
        if let Some((expected, since)) = &self.expected {
            if *expected != addr && since.elapsed() < HOLD_LIMIT {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "a Sentinel still names the old master",
                    format!("{addr}, while {expected} was announced; asking again"),
                )));
            }
            self.expected = None;
        }
        if self.master.as_deref() != Some(addr.as_str()) {
            match &self.master {
                None => log::info!("Redis master {} is at {addr} (Sentinel)", self.service),
                Some(old) => log::warn!(
                    "Redis master {} is now {addr} (was {old}): connected",
                    self.service
                ),
            }
            self.master = Some(addr);
            self.generation += 1;
        }
        self.master_info = Some(info);
        self.moved = false;
        Ok(client)
    }

    /// The name the Sentinels know the master by.
    pub(super) fn service(&self) -> &str {
        &self.service
    }

    /// The master last found and its generation.
    pub(super) fn node(&self) -> Option<(u64, &ConnectionInfo)> {
        self.master_info.as_ref().map(|i| (self.generation, i))
    }

    /// Reads what the Sentinels announced and says whether a command may go.
    pub(super) fn gate(&mut self) -> Gate {
        // Watching starts once a master was found: before that there is
        // nothing to hold, and a Sentinel that cannot be reached is already
        // in discovery's error.
        if self.master.is_some() {
            self.tend();
        }
        if self.readable() {
            self.read_announcements();
        }
        if let Some(since) = self.hold {
            if since.elapsed() < HOLD_LIMIT {
                return Gate::Held(format!(
                    "a failover of Redis master {} is under way (announced {:.1}s ago); holding writes until the Sentinels name the new master",
                    self.service,
                    since.elapsed().as_secs_f64()
                ));
            }
            log::warn!(
                "no end of the failover of {} announced in {}s: asking the Sentinels where the master is",
                self.service,
                HOLD_LIMIT.as_secs()
            );
            self.release(true);
        }
        if self.moved {
            Gate::Moved
        } else {
            Gate::Open
        }
    }

    /// The watches' sockets, for a caller waiting out a hold to poll.
    pub(super) fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.watches
            .iter()
            .filter_map(|w| w.stream.as_ref().map(Stream::fd))
            .collect()
    }

    /// Ends a hold; `moved` asks the Sentinels again before the next command.
    fn release(&mut self, moved: bool) {
        self.hold = None;
        self.moved |= moved;
        for w in &mut self.watches {
            w.holding = false;
        }
    }

    /// Connects the watches that are due.
    fn tend(&mut self) {
        let now = Instant::now();
        // This runs before every command: nothing to do is the usual case.
        if self
            .watches
            .iter()
            .all(|w| w.stream.is_some() || now < w.retry_at || w.target.is_none())
        {
            return;
        }
        let service = self.service.clone();
        for i in 0..self.watches.len() {
            let w = &mut self.watches[i];
            if w.stream.is_some() || now < w.retry_at {
                continue;
            }
            let Some(target) = w.target.clone() else {
                continue;
            };
            match w.connect(&target, &service) {
                Ok(()) => {
                    if w.away {
                        log::warn!("Sentinel {target} answers again: watching it for failovers");
                    }
                    w.away = false;
                    w.backoff.reset();
                }
                Err(e) => {
                    if !w.away {
                        log::warn!(
                            "Sentinel {target}: {e}; not watching it for failovers until it answers"
                        );
                    }
                    w.away = true;
                    w.retry_at = now + w.backoff.delay();
                }
            }
        }
    }

    /// True when a watch has something to read (a poll that does not wait).
    /// This runs before every command: the poll set reuses one buffer.
    fn readable(&mut self) -> bool {
        let fds = &mut self.pollfds;
        fds.clear();
        fds.extend(
            self.watches
                .iter()
                .filter_map(|w| w.stream.as_ref())
                .map(|s| libc::pollfd {
                    fd: s.fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                }),
        );
        if fds.is_empty() {
            return false;
        }
        // SAFETY: poll over a slice of pollfd that lives across the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        n > 0
    }

    fn read_announcements(&mut self) {
        let mut events = Vec::new();
        for (i, w) in self.watches.iter_mut().enumerate() {
            let Some(stream) = w.stream.as_mut() else {
                continue;
            };
            let lost = match stream.read_available(&mut w.buf) {
                Ok(true) => None,
                Ok(false) => Some("closed the connection".to_string()),
                Err(e) => Some(e.to_string()),
            };
            while let Some((reply, len)) = resp::parse(&w.buf) {
                w.buf.drain(..len);
                events.push((i, reply));
            }
            if let Some(why) = lost {
                events.push((i, Reply::Error(why.into_bytes())));
            }
        }
        for (i, reply) in events {
            self.on_reply(i, reply);
        }
    }

    fn on_reply(&mut self, i: usize, reply: Reply) {
        let label = self.watches[i]
            .target
            .as_ref()
            .map_or_else(String::new, ToString::to_string);
        let items = match reply {
            Reply::Array(Some(items)) => items,
            Reply::Error(text) => {
                // The connection broke, or the Sentinel refused: a failover
                // announced there may never be ended there.
                let w = &mut self.watches[i];
                w.stream = None;
                w.buf.clear();
                w.retry_at = Instant::now() + w.backoff.delay();
                let held = std::mem::take(&mut w.holding);
                log::warn!(
                    "Sentinel {label}: {}; not watching it for failovers until it answers",
                    String::from_utf8_lossy(&text)
                );
                w.away = true;
                if held && !self.watches.iter().any(|w| w.holding) {
                    self.release(true);
                }
                return;
            }
            _ => return,
        };
        if std::mem::take(&mut self.watches[i].expecting_state) {
            self.on_state(&label, &items);
            return;
        }
        let texts: Vec<String> = items.iter().filter_map(Reply::text).collect();
        // ["pmessage", pattern, channel, payload]
        let [kind, _, channel, payload] = texts.as_slice() else {
            return;
        };
        if kind != "pmessage" {
            return;
        }
        let words: Vec<&str> = payload.split(' ').collect();
        match channel.as_str() {
            "+switch-master" => {
                // <name> <old ip> <old port> <new ip> <new port>
                if words.first() != Some(&self.service.as_str()) || words.len() < 5 {
                    return;
                }
                let old = format!("{}:{}", words[1], words[2]);
                let new = format!("{}:{}", words[3], words[4]);
                if self.announced.as_deref() != Some(new.as_str()) {
                    log::warn!(
                        "Sentinel {label}: Redis master {} switched from {old} to {new} (+switch-master): reconnecting",
                        self.service
                    );
                    self.announced = Some(new.clone());
                }
                let moved = self.master.as_deref() != Some(new.as_str());
                if moved {
                    self.expected = Some((new, Instant::now()));
                }
                self.release(moved);
            }
            "+try-failover" => {
                // master <name> <ip> <port>
                if words.get(1) != Some(&self.service.as_str()) {
                    return;
                }
                self.watches[i].holding = true;
                if self.hold.is_none() {
                    log::warn!(
                        "Sentinel {label}: failover of Redis master {} started (+try-failover): holding writes until it ends",
                        self.service
                    );
                    self.hold = Some(Instant::now());
                }
            }
            abort if abort.starts_with("-failover-abort") => {
                if words.get(1) != Some(&self.service.as_str()) {
                    return;
                }
                self.watches[i].holding = false;
                if self.hold.is_some() && !self.watches.iter().any(|w| w.holding) {
                    log::warn!(
                        "Sentinel {label}: failover of Redis master {} abandoned ({abort}): writes resume",
                        self.service
                    );
                    self.release(true);
                }
            }
            _ => {}
        }
    }

    /// The reply to `SENTINEL MASTER`, read when a watch (re)connects: a
    /// failover in progress holds writes, a master other than ours means
    /// a switch was missed.
    fn on_state(&mut self, label: &str, items: &[Reply]) {
        let texts: Vec<String> = items.iter().filter_map(Reply::text).collect();
        let field = |name: &str| {
            texts
                .chunks(2)
                .find(|kv| kv[0] == name)
                .and_then(|kv| kv.get(1).cloned())
        };
        if field("flags").is_some_and(|f| f.contains("failover_in_progress")) && self.hold.is_none()
        {
            log::warn!(
                "Sentinel {label}: a failover of Redis master {} is in progress: holding writes until it ends",
                self.service
            );
            self.hold = Some(Instant::now());
        }
        if let (Some(ip), Some(port), Some(ours)) = (field("ip"), field("port"), &self.master) {
            if &format!("{ip}:{port}") != ours {
                self.moved = true;
            }
        }
    }
}

impl Watch {
    fn connect(&mut self, target: &Target, service: &str) -> std::io::Result<()> {
        let setup: Vec<Vec<u8>> = self.auth.iter().cloned().collect();
        let mut stream = Stream::connect(target, WATCH_CONNECT_TIMEOUT, &setup)?;
        let mut out = resp::command(&[b"SENTINEL", b"MASTER", service.as_bytes()]);
        let mut subscribe: Vec<&[u8]> = vec![b"PSUBSCRIBE"];
        subscribe.extend(WATCHED);
        out.extend(resp::command(&subscribe));
        // A few dozen bytes into an empty socket buffer: written at once.
        stream.io().write_all(&out)?;
        self.stream = Some(stream);
        self.buf.clear();
        self.expecting_state = true;
        Ok(())
    }
}

/// `host:port` of a node address, as the Sentinels announce it.
fn address(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            format!("{host}:{port}")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> SentinelLink {
        let settings = crate::config::sentinel_settings(
            Some("127.0.0.1:1,127.0.0.1:2"),
            Some("mymaster"),
            None,
            Some("pw"),
        )
        .expect("valid")
        .expect("some");
        SentinelLink::new(&settings, "redis://:data@ignored/2").expect("a link")
    }

    fn message(channel: &str, payload: &str) -> Reply {
        let bulk = |s: &str| Reply::Bulk(Some(s.as_bytes().to_vec()));
        Reply::Array(Some(vec![
            bulk("pmessage"),
            bulk(channel),
            bulk(channel),
            bulk(payload),
        ]))
    }

    #[test]
    fn a_failover_of_our_master_holds_until_the_switch_then_asks_again() {
        let mut link = link();
        link.master = Some("10.0.0.5:6379".into());
        link.on_reply(1, message("+try-failover", "master other 10.0.0.9 6379"));
        assert_eq!(link.gate(), Gate::Open, "another master's failover");
        link.on_reply(1, message("+try-failover", "master mymaster 10.0.0.5 6379"));
        assert!(matches!(link.gate(), Gate::Held(_)));
        link.on_reply(
            0,
            message("+switch-master", "mymaster 10.0.0.5 6379 10.0.0.6 6379"),
        );
        assert_eq!(link.gate(), Gate::Moved);
        assert_eq!(
            link.expected.as_ref().map(|(a, _)| a.as_str()),
            Some("10.0.0.6:6379")
        );
    }

    #[test]
    fn an_abandoned_failover_ends_the_hold_once_every_starter_gave_up() {
        let mut link = link();
        link.master = Some("10.0.0.5:6379".into());
        link.on_reply(0, message("+try-failover", "master mymaster 10.0.0.5 6379"));
        link.on_reply(1, message("+try-failover", "master mymaster 10.0.0.5 6379"));
        link.on_reply(
            0,
            message(
                "-failover-abort-not-elected",
                "master mymaster 10.0.0.5 6379",
            ),
        );
        assert!(matches!(link.gate(), Gate::Held(_)), "one Sentinel goes on");
        link.on_reply(
            1,
            message(
                "-failover-abort-no-good-slave",
                "master mymaster 10.0.0.5 6379",
            ),
        );
        assert_eq!(link.gate(), Gate::Moved);
        assert!(link.expected.is_none());
    }

    #[test]
    fn a_reconnected_watch_catches_a_failover_or_a_switch_it_missed() {
        let mut link = link();
        link.master = Some("10.0.0.5:6379".into());
        let state = |flags: &str, ip: &str| {
            let bulk = |s: &str| Reply::Bulk(Some(s.as_bytes().to_vec()));
            Reply::Array(Some(
                ["name", "mymaster", "ip", ip, "port", "6379", "flags", flags]
                    .iter()
                    .map(|s| bulk(s))
                    .collect(),
            ))
        };
        link.watches[0].expecting_state = true;
        link.on_reply(0, state("master,failover_in_progress", "10.0.0.5"));
        assert!(matches!(link.gate(), Gate::Held(_)));
        link.release(false);
        link.watches[1].expecting_state = true;
        link.on_reply(1, state("master", "10.0.0.6"));
        assert_eq!(link.gate(), Gate::Moved);
    }

    #[test]
    fn a_lost_watch_that_started_the_hold_ends_it() {
        let mut link = link();
        link.master = Some("10.0.0.5:6379".into());
        link.on_reply(0, message("+try-failover", "master mymaster 10.0.0.5 6379"));
        link.on_reply(0, Reply::Error(b"closed the connection".to_vec()));
        assert_eq!(link.gate(), Gate::Moved);
    }
}
