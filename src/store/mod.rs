//! Every Redis command resque-fork sends, in one place, behind one [`Store`]
//! (one connection, reconnecting lazily). The commands are grouped by
//! concern, each an `impl Store` block of its own:
//!
//! - this module: the connection core (connect, `with_conn`, reconnects,
//!   traffic counts) and the scripts;
//! - [`jobs`]: the per-job path: the reserve script (pop + in-flight
//!   record + status 2) and the record script (clear + counters + failure +
//!   status 3/4), read beside `lua/reserve.lua` and `lua/record.lua`, and
//!   the two chained in one step for a worker going straight on;
//! - [`workers`]: a worker's lifecycle: register, heartbeat, remove, and the
//!   pruning lock;
//! - [`admin`]: what the operations commands read and change: queues and the
//!   failed list;
//! - [`enqueue`]: putting jobs on queues;
//! - [`delayed`]: delayed jobs on resque-scheduler's keys;
//! - [`recurring`]: recurring jobs' dynamic schedules and tick claims;
//! - [`metrics`]: what the metrics exporter reads;
//! - `sentinel`: finding the master through Redis Sentinel, and holding
//!   every command while a failover is under way.
//!
//! Every script is atomic like `MULTI`/`EXEC`, and can make a write depend on
//! what it reads, which `MULTI` cannot. Policy (which worker is dead, what
//! becomes of its job) lives in `prune`, not here.

pub mod admin;
pub mod delayed;
pub mod enqueue;
pub mod jobs;
pub mod metrics;
pub mod recurring;
mod sentinel;
pub mod workers;

pub use admin::WorkerKeys;
pub use delayed::Promoted;
pub use jobs::{Outcome, QueueSet, Reserved, RetryWrite, RESERVE_CHUNK};
pub use recurring::{Claimed, TickJob};
pub use workers::{HeldJob, PruneLock, Registration, Removal};

use crate::config::RedisSettings;
use crate::error::{Error, Result};
use crate::keys::Keys;
use redis::{Client, Connection, Script};
use sentinel::{Gate, SentinelLink};
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// What every script that writes records starts with: the checks that run
/// before any write (`lua/checks.lua`) and php's status update.
const COMMON_LUA: &str = concat!(
    include_str!("../lua/checks.lua"),
    "\n",
    include_str!("../lua/status.lua")
);

/// How long to wait for a TCP connect or a reply before calling Redis gone.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one `WAIT` for replicas may block (REDIS_MIN_REPLICAS).
const REPLICA_WAIT_MS: u64 = 1000;

struct Scripts {
    reserve: Script,
    record: Script,
    record_and_reserve: Script,
    unregister: Script,
    take_lock: Script,
    take_over_lock: Script,
    occupied: Script,
    promote: Script,
    take_delayed: Script,
    recurring: Script,
    release_lock: Script,
    retry_failed: Script,
    /// `lua/started.lua` without its comments: sent whole with every job
    /// (EVAL, see `Store::job_started`), so only the code travels.
    started: String,
}

/// Sends a script call (`packed`: its EVALSHA) and, with `wanted` above 0,
/// `WAIT wanted` in the same write, so that waiting for replicas costs no
/// round trip of its own. Returns the script's reply and how many replicas
/// acknowledged (`wanted` when none were asked for). A NOSCRIPT reply (a
/// restarted or flushed Redis) loads the script and sends both again.
fn call_replicated(
    c: &mut Connection,
    script: &Script,
    packed: &[u8],
    wanted: u32,
) -> redis::RedisResult<(redis::Value, u32)> {
    let wait = (wanted > 0).then(|| {
        redis::cmd("WAIT")
            .arg(wanted)
            .arg(REPLICA_WAIT_MS)
            .get_packed_command()
    });
    let mut loaded = false;
    loop {
        match &wait {
            Some(w) => c.send_packed_command(&[packed, w.as_slice()].concat())?,
            None => c.send_packed_command(packed)?,
        }
        // An error reply arrives as a value; make it an error.
        let reply = c.recv_response().and_then(redis::Value::extract_error);
        // WAIT's reply is read whatever the script's was.
        let acked = match &wait {
            Some(_) => match c.recv_response()? {
                redis::Value::Int(n) => u32::try_from(n).unwrap_or(0),
                _ => 0,
            },
            None => wanted,
        };
        match reply {
            Err(e)
                if !loaded
                    && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                script.load(c)?;
                loaded = true;
            }
            other => return other.map(|v| (v, acked)),
        }
    }
}

/// A client for one Redis address.
fn client(url: &str) -> Result<Client> {
    Client::open(url).map_err(|e| {
        Error::Config(format!(
            "invalid Redis address {:?}: {}",
            crate::config::redact_url(url),
            crate::config::redact_url(&e.to_string())
        ))
    })
}

/// Lua source without its comment lines.
fn code_only(lua: &str) -> String {
    lua.lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where the store's connections go.
enum Node {
    /// One address.
    Direct(Box<Client>),
    /// Whichever master the Sentinels name.
    Sentinel(Box<SentinelLink>),
}

/// A connection to one Redis, reconnecting lazily after a failure.
pub struct Store {
    node: Node,
    /// `REDIS_MIN_REPLICAS`.
    min_replicas: u32,
    conn: Option<Connection>,
    keys: Keys,
    scripts: Scripts,
    /// Replies to commands sent without waiting (see `job_started`), read
    /// before the next command.
    pending_replies: usize,
    traffic: Traffic,
    /// The per-job steps' keys for the worker last seen, packed once.
    step_keys: jobs::StepKeys,
    /// The per-job calls' buffers, kept between calls.
    scratch: jobs::Scratch,
}

/// What a store has sent, for the worker's exit log and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Times the store waited for Redis to answer.
    pub round_trips: u64,
    /// Commands sent (a script call is one).
    pub commands: u64,
}

impl Store {
    /// Opens a store for `url` (any URL the `redis` crate accepts) and checks
    /// that Redis answers.
    pub fn connect(url: &str, keys: Keys) -> Result<Store> {
        let mut store = Store::open(url, keys)?;
        store.ping()?;
        Ok(store)
    }

    /// Opens a store for `settings` (one Redis, or a master behind
    /// Sentinels) and checks that Redis answers.
    pub fn connect_with(settings: &RedisSettings) -> Result<Store> {
        let mut store = Store::open_with(settings)?;
        store.ping()?;
        Ok(store)
    }

    /// Opens a store for `url` without contacting Redis; the first command
    /// connects.
    pub fn open(url: &str, keys: Keys) -> Result<Store> {
        Ok(Store::build(Node::Direct(Box::new(client(url)?)), keys, 0))
    }

    /// Opens a store for `settings` without contacting Redis (nor the
    /// Sentinels); the first command connects.
    pub fn open_with(settings: &RedisSettings) -> Result<Store> {
        let node = match &settings.sentinel {
            Some(sentinels) => {
                Node::Sentinel(Box::new(SentinelLink::new(sentinels, &settings.url)?))
            }
            None => Node::Direct(Box::new(client(&settings.url)?)),
        };
        Ok(Store::build(
            node,
            Keys::new(&settings.prefix),
            settings.min_replicas,
        ))
    }

    fn build(node: Node, keys: Keys, min_replicas: u32) -> Store {
        Store {
            node,
            min_replicas,
            conn: None,
            pending_replies: 0,
            traffic: Traffic::default(),
            step_keys: jobs::StepKeys::default(),
            scratch: jobs::Scratch::default(),
            keys,
            scripts: Scripts {
                // (On their own, the steps are not chained: see
                // lua/record_then_reserve.lua.)
                reserve: Script::new(&format!(
                    "{COMMON_LUA}\n{}\nlocal worker_key_recorded = false\n{}",
                    include_str!("../lua/strict_json.lua"),
                    include_str!("../lua/reserve.lua")
                )),
                record: Script::new(&format!(
                    "{COMMON_LUA}\nlocal leave_worker_key = false\n{}",
                    include_str!("../lua/record.lua")
                )),
                // The two scripts' bodies as functions (their KEYS and ARGV
                // become parameters), then the chain.
                record_and_reserve: Script::new(&format!(
                    "{COMMON_LUA}\n{}\nlocal function record_step(KEYS, ARGV, leave_worker_key)\n{}\nend\nlocal function reserve_step(KEYS, ARGV, worker_key_recorded)\n{}\nend\n{}",
                    include_str!("../lua/strict_json.lua"),
                    include_str!("../lua/record.lua"),
                    include_str!("../lua/reserve.lua"),
                    include_str!("../lua/record_then_reserve.lua")
                )),
                unregister: Script::new(&format!(
                    "{COMMON_LUA}\n{}",
                    include_str!("../lua/unregister.lua")
                )),
                retry_failed: Script::new(&format!(
                    "{COMMON_LUA}\n{}",
                    include_str!("../lua/retry_failed.lua")
                )),
                take_lock: Script::new(include_str!("../lua/take_lock.lua")),
                started: code_only(include_str!("../lua/started.lua")),
                promote: Script::new(&format!(
                    "{}\n{}\n{}",
                    include_str!("../lua/strict_json.lua"),
                    include_str!("../lua/delayed_item.lua"),
                    include_str!("../lua/promote.lua")
                )),
                take_delayed: Script::new(&format!(
                    "{}\n{}",
                    include_str!("../lua/delayed_item.lua"),
                    include_str!("../lua/take_delayed.lua")
                )),
                recurring: Script::new(include_str!("../lua/recurring.lua")),
                occupied: Script::new(
                    "local out = {} for i = 1, #KEYS do if redis.call('EXISTS', KEYS[i]) == 1 then out[#out + 1] = i - 1 end end return out",
                ),
                take_over_lock: Script::new(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 end return 0",
                ),
                release_lock: Script::new(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                ),
            },
        }
    }

    /// The key names this store uses.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn with_conn<T>(
        &mut self,
        action: impl Fn() -> String,
        f: impl FnOnce(&mut Connection, &Keys, &Scripts) -> redis::RedisResult<T>,
    ) -> Result<T> {
        self.with_conn_then(action, |c, k, s, _| f(c, k, s).map(|v| (v, 0)), 0)
    }

    /// [`Store::with_conn`] for a step that counts only once replicated:
    /// `f` gets REDIS_MIN_REPLICAS and returns, with its value, how many
    /// replicas acknowledged it (see [`call_replicated`]); too few is
    /// [`Error::Unreplicated`], on a connection that is kept, so that the
    /// repeated step's `WAIT` covers the first one's writes.
    fn with_conn_replicated<T>(
        &mut self,
        action: impl Fn() -> String,
        f: impl FnOnce(&mut Connection, &Keys, &Scripts, u32) -> redis::RedisResult<(T, u32)>,
    ) -> Result<T> {
        let wanted = self.min_replicas;
        self.with_conn_then(action, f, wanted)
    }

    fn with_conn_then<T>(
        &mut self,
        action: impl Fn() -> String,
        f: impl FnOnce(&mut Connection, &Keys, &Scripts, u32) -> redis::RedisResult<(T, u32)>,
        wanted: u32,
    ) -> Result<T> {
        // No signal may interrupt the socket I/O (see `signals::Blocked`).
        let _blocked = crate::signals::Blocked::new();
        if let Node::Sentinel(link) = &mut self.node {
            match link.gate() {
                Gate::Open => {}
                Gate::Held(why) => return Err(Error::Failover(format!("{}: {why}", action()))),
                Gate::Moved => self.disconnect(),
            }
        }
        if self.conn.is_none() {
            let client = match &mut self.node {
                Node::Direct(client) => (**client).clone(),
                Node::Sentinel(link) => link.master().map_err(|e| {
                    Error::redis(
                        format!(
                            "asking the Sentinels for Redis master {} ({})",
                            link.service(),
                            action()
                        ),
                        e,
                    )
                })?,
            };
            let conn = client
                .get_connection_with_timeout(CONNECT_TIMEOUT)
                .and_then(|c| {
                    c.set_read_timeout(Some(IO_TIMEOUT))?;
                    c.set_write_timeout(Some(IO_TIMEOUT))?;
                    Ok(c)
                })
                .map_err(|e| Error::redis(format!("connecting to Redis ({})", action()), e))?;
            self.conn = Some(conn);
        }
        let Some(conn) = self.conn.as_mut() else {
            unreachable!("connection set above")
        };
        self.traffic.round_trips += 1;
        self.traffic.commands += 1;
        let pending = std::mem::take(&mut self.pending_replies);
        // A server error in a deferred reply (a pid key of the wrong type,
        // say) belongs to that command, not to this one: only a broken
        // connection stops here.
        let result = (0..pending)
            .try_for_each(|_| match conn.recv_response() {
                Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => Err(e),
                _ => Ok(()),
            })
            .and_then(|()| f(conn, &self.keys, &self.scripts, wanted));
        if wanted > 0 {
            self.traffic.commands += 1;
        }
        let result = result
            .map_err(|e| Error::redis(action(), e))
            .and_then(|(value, acked)| {
                if acked < wanted {
                    return Err(Error::Unreplicated(format!(
                        "{}: {acked} of the {wanted} replicas REDIS_MIN_REPLICAS asks for acknowledged it within {REPLICA_WAIT_MS} ms",
                        action()
                    )));
                }
                Ok(value)
            });
        if result.as_ref().is_err_and(Error::is_connection) {
            self.conn = None;
        }
        result
    }

    /// True while the Sentinels announce a failover, or after they named a
    /// new master until the store has connected to it (reading what they
    /// announced meanwhile). Always false without Sentinels.
    pub fn master_changing(&mut self) -> bool {
        match &mut self.node {
            Node::Direct(_) => false,
            Node::Sentinel(link) => link.gate() != Gate::Open,
        }
    }

    /// Drops the connection; the next command reconnects.
    pub fn disconnect(&mut self) {
        self.conn = None;
        self.pending_replies = 0;
    }

    /// The node this store talks to, and its generation: a new generation
    /// means a new master (a failover). `None` before a store behind
    /// Sentinels first found its master.
    pub fn node(&self) -> Option<(u64, &redis::ConnectionInfo)> {
        match &self.node {
            Node::Direct(client) => Some((0, client.get_connection_info())),
            Node::Sentinel(link) => link.node(),
        }
    }

    /// Sockets that turn readable when the Sentinels announce something: a
    /// caller waiting out a failover polls them to resume at its end.
    pub fn failover_fds(&self) -> Vec<BorrowedFd<'_>> {
        match &self.node {
            Node::Direct(_) => Vec::new(),
            Node::Sentinel(link) => link.fds(),
        }
    }

    /// What this store has sent so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// Checks that Redis answers.
    pub fn ping(&mut self) -> Result<()> {
        self.with_conn(
            || "PING".into(),
            |c, _, _| redis::cmd("PING").query::<String>(c),
        )
        .map(|_| ())
    }

    /// Redis server time, in epoch seconds: heartbeats use the server's clock
    /// so that hosts with skewed clocks agree on ages.
    pub fn server_time(&mut self) -> Result<i64> {
        self.with_conn(
            || "reading Redis TIME".into(),
            |c, _, _| redis::cmd("TIME").query::<(i64, i64)>(c),
        )
        .map(|(s, _)| s)
    }
}

/// Reads a `{status, skipped counters...}` script reply: logs each counter
/// the script left alone because it was not an integer, returns the status.
pub(super) fn done_and_skipped(reply: &[redis::Value], what: &str) -> i64 {
    let status = match reply.first() {
        Some(redis::Value::Int(i)) => *i,
        _ => 0,
    };
    for key in reply.iter().skip(1) {
        if let redis::Value::BulkString(k) = key {
            log::warn!(
                "{what}: {} is not an integer, so it was left as it is and not counted; set it to a number to count again",
                String::from_utf8_lossy(k)
            );
        }
    }
    status
}

/// Text that another program wrote, shown with U+FFFD where it is not UTF-8.
pub(super) fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A name read from `set`, or `None` (logged) when it is not UTF-8: key
/// names are built as text, so such a name cannot be acted on.
pub(super) fn utf8_or_skip(bytes: Vec<u8>, set: &str) -> Option<String> {
    String::from_utf8(bytes)
        .map_err(|e| {
            log::warn!(
                "skipping {:?} in {set}: it is not UTF-8",
                String::from_utf8_lossy(e.as_bytes())
            )
        })
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn code_only_drops_comment_lines_and_keeps_the_code() {
        let lua = "-- why\nlocal x = 1 -- kept: code first\n  -- indented why\nreturn x";
        assert_eq!(
            super::code_only(lua),
            "local x = 1 -- kept: code first\nreturn x"
        );
    }
}
