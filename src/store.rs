//! Every Redis command resque-fork sends, in one place.
//!
//! The per-job path is two round trips: the reserve script (pop + in-flight
//! record + status 2) and the record script (clear + counters + failure +
//! status 3/4). Both are Lua scripts, so each is atomic like `MULTI`/`EXEC`,
//! and the status write can depend on the key existing, which `MULTI` cannot.

use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::keys::Keys;
use crate::payload::{failure_record, mark_requeued, Failure, Job, JobState, WorkerRecord};
use redis::{Client, Connection, Script};
use std::time::Duration;

/// What every script that writes records starts with: the checks that run
/// before any write (`lua/checks.lua`) and php's status update.
const COMMON_LUA: &str = concat!(
    include_str!("lua/checks.lua"),
    "\n",
    include_str!("lua/status.lua")
);

const STARTED_LUA: &str = include_str!("lua/started.lua");

/// How long to wait for a TCP connect or a reply before calling Redis gone.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// php-resque expires finished status records after a day.
pub const STATUS_TTL_SECS: u64 = 86_400;

/// Queues to reserve from, in priority order, with their key names
/// prepared once: a reserve runs per job, while the list changes rarely.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSet {
    names: Vec<String>,
    keys: Vec<String>,
    /// The keys as RESP bulk strings, ready to splice into the command.
    packed_keys: Vec<u8>,
}

/// How many queue keys the reserve script pops over in one LMPOP (the same
/// number is in `lua/reserve.lua`). A longer list is reserved from through
/// its occupied part; see `Worker::queue_set`.
pub const RESERVE_CHUNK: usize = 1000;

impl QueueSet {
    /// Prepares `names` under `keys`' prefix.
    pub fn new(keys: &Keys, names: Vec<String>) -> QueueSet {
        let keys = names.iter().map(|n| keys.queue(n)).collect();
        QueueSet::of(names, keys)
    }

    fn of(names: Vec<String>, keys: Vec<String>) -> QueueSet {
        QueueSet {
            packed_keys: keys
                .iter()
                .flat_map(|key| format!("${}\r\n{key}\r\n", key.len()).into_bytes())
                .collect(),
            keys,
            names,
        }
    }

    /// The queues at `indices` (ascending), keeping their order.
    pub fn subset(&self, indices: &[usize]) -> QueueSet {
        let pick = |v: &[String]| -> Vec<String> {
            indices.iter().filter_map(|&i| v.get(i).cloned()).collect()
        };
        QueueSet::of(pick(&self.names), pick(&self.keys))
    }

    /// How many queues there are.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// The queue names, in priority order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Their keys, in the same order.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// True when there is no queue to take from.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The outcome of one reserve attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Reserved {
    /// Every queue was empty.
    Empty,
    /// `worker:ID` already held this job: an earlier reserve ran but its
    /// reply was lost. The job was never started.
    Held { in_flight: Vec<u8> },
    /// `worker:ID` holds a job under another process's token: a process
    /// with our id (in another PID namespace) is alive. Nothing was changed.
    HeldByAnother { in_flight: Vec<u8> },
    /// `pause-all-workers` is set.
    Paused,
    /// A job, already recorded as in flight in `worker:ID`.
    Job {
        /// Index into the queue list passed to [`Store::reserve`].
        queue_index: usize,
        /// The payload exactly as popped.
        payload: Vec<u8>,
        /// The `worker:ID` value the script wrote; the record step checks it.
        in_flight: Vec<u8>,
    },
}

/// What the record step needs to know about one finished job.
#[derive(Debug)]
pub struct Outcome<'a> {
    pub worker_id: &'a str,
    /// The `worker:ID` value written at reserve.
    pub in_flight: &'a [u8],
    /// The same with the job's process group, as [`Store::job_started`]
    /// may have written it; either form is this job's.
    pub in_flight_started: Option<&'a [u8]>,
    /// `None` when the job completed.
    pub failure_record: Option<&'a str>,
    /// php status key of the job, when it has an `id`.
    pub status_key: Option<&'a str>,
    /// php pid key of the job, when it has an `id`, and the pid written
    /// there: the key is deleted only while it still holds that pid.
    pub pid_key: Option<(&'a str, i32)>,
    pub now: i64,
}

struct Scripts {
    reserve: Script,
    record: Script,
    unregister: Script,
    take_lock: Script,
    take_over_lock: Script,
    occupied: Script,
    release_lock: Script,
    retry_failed: Script,
}

/// A connection to one Redis, reconnecting lazily after a failure.
pub struct Store {
    client: Client,
    conn: Option<Connection>,
    keys: Keys,
    scripts: Scripts,
    /// Replies to commands sent without waiting (see `job_started`), read
    /// before the next command.
    pending_replies: usize,
    traffic: Traffic,
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

    /// Opens a store without contacting Redis; the first command connects.
    pub fn open(url: &str, keys: Keys) -> Result<Store> {
        let client = Client::open(url).map_err(|e| {
            Error::Config(format!(
                "invalid Redis address {:?}: {}",
                crate::config::redact_url(url),
                crate::config::redact_url(&e.to_string())
            ))
        })?;
        let store = Store {
            client,
            conn: None,
            pending_replies: 0,
            traffic: Traffic::default(),
            keys,
            scripts: Scripts {
                reserve: Script::new(&format!(
                    "{COMMON_LUA}\n{}\n{}",
                    include_str!("lua/strict_json.lua"),
                    include_str!("lua/reserve.lua")
                )),
                record: Script::new(&format!("{COMMON_LUA}\n{}", include_str!("lua/record.lua"))),
                unregister: Script::new(&format!(
                    "{COMMON_LUA}\n{}",
                    include_str!("lua/unregister.lua")
                )),
                retry_failed: Script::new(&format!(
                    "{COMMON_LUA}\n{}",
                    include_str!("lua/retry_failed.lua")
                )),
                take_lock: Script::new(include_str!("lua/take_lock.lua")),
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
        };
        Ok(store)
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
        // No signal may interrupt the socket I/O (see `signals::Blocked`).
        let _blocked = crate::signals::Blocked::new();
        if self.conn.is_none() {
            let conn = self
                .client
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
            .and_then(|()| f(conn, &self.keys, &self.scripts));
        result.map_err(|e| {
            let err = Error::redis(action(), e);
            if err.is_connection() {
                self.conn = None;
            }
            err
        })
    }

    /// Drops the connection; the next command reconnects.
    pub fn disconnect(&mut self) {
        self.conn = None;
        self.pending_replies = 0;
    }

    /// Where this store connects.
    pub fn connection_info(&self) -> &redis::ConnectionInfo {
        self.client.get_connection_info()
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

    /// Writes the worker's heartbeat field. With `started` (a registered
    /// worker's start time), also registers it again should a pruner have
    /// removed it meanwhile; true when that happened.
    pub fn heartbeat(
        &mut self,
        worker_id: &str,
        value: &str,
        started: Option<&str>,
    ) -> Result<bool> {
        self.with_conn(
            || format!("writing the heartbeat of {worker_id}"),
            |c, k, _| {
                let mut pipe = redis::pipe();
                pipe.hset(k.heartbeat(), worker_id, value).ignore();
                match started {
                    None => pipe.query::<()>(c).map(|()| false),
                    Some(started) => {
                        pipe.atomic()
                            .sadd(k.workers(), worker_id)
                            .cmd("SET")
                            .arg(k.worker_started(worker_id))
                            .arg(started)
                            .arg("NX")
                            .ignore();
                        pipe.query::<(i64,)>(c).map(|(added,)| added == 1)
                    }
                }
            },
        )
    }

    /// Adds the worker to `workers` and sets its start time, atomically.
    pub fn register(&mut self, worker_id: &str, started: &str) -> Result<()> {
        self.with_conn(
            || format!("registering worker {worker_id}"),
            |c, k, _| {
                redis::pipe()
                    .atomic()
                    .sadd(k.workers(), worker_id)
                    .ignore()
                    .set(k.worker_started(worker_id), started)
                    .ignore()
                    .query::<()>(c)
            },
        )
    }

    /// Every registered worker id. Ids that are not UTF-8 (no peer writes
    /// one) are left out with a log line.
    pub fn worker_ids(&mut self) -> Result<Vec<String>> {
        let raw: Vec<Vec<u8>> = self.with_conn(
            || "reading the workers set".into(),
            |c, k, _| redis::cmd("SMEMBERS").arg(k.workers()).query(c),
        )?;
        Ok(raw
            .into_iter()
            .filter_map(|id| utf8_or_skip(id, "workers"))
            .collect())
    }

    /// Every queue name in the `queues` set, sorted bytewise. Names that are
    /// not UTF-8 are left out with a log line.
    pub fn queue_names(&mut self) -> Result<Vec<String>> {
        let raw: Vec<Vec<u8>> = self.with_conn(
            || "reading the queues set".into(),
            |c, k, _| redis::cmd("SMEMBERS").arg(k.queues()).query(c),
        )?;
        let mut names: Vec<String> = raw
            .into_iter()
            .filter_map(|name| utf8_or_skip(name, "queues"))
            .collect();
        names.sort_unstable();
        Ok(names)
    }

    /// Atomically takes the first job from `queues` (in order) and records it
    /// in `worker:ID`; see `lua/reserve.lua`. The identity's name (`host:pid`)
    /// goes in the record's `worker` field, where node-resque looks for it,
    /// and its token in the `token` field.
    pub fn reserve(
        &mut self,
        me: &Identity,
        queues: &QueueSet,
        run_at: &str,
        now: i64,
        honour_pause: bool,
    ) -> Result<Reserved> {
        // The command is written by hand around the queue keys packed once
        // per list (QueueSet::packed_keys): with a long '*' list, building
        // it key by key per job would cost more than running it.
        let mut cmd = Vec::with_capacity(queues.packed_keys.len() + 256);
        let bulk = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        };
        let nkeys = 2 + queues.keys.len();
        cmd.extend_from_slice(format!("*{}\r\n", 3 + nkeys + 6).as_bytes());
        bulk(&mut cmd, b"EVALSHA");
        bulk(&mut cmd, self.scripts.reserve.get_hash().as_bytes());
        bulk(&mut cmd, nkeys.to_string().as_bytes());
        bulk(&mut cmd, self.keys.worker(&me.id).as_bytes());
        bulk(&mut cmd, self.keys.pause_all().as_bytes());
        cmd.extend_from_slice(&queues.packed_keys);
        for arg in [
            json_string(run_at).as_str(),
            json_string(&me.name).as_str(),
            self.keys.prefix(),
            now.to_string().as_str(),
            if honour_pause { "1" } else { "0" },
            me.token.as_str(),
        ] {
            bulk(&mut cmd, arg.as_bytes());
        }
        let reply: redis::Value = self.with_conn(
            || format!("reserving a job for {}", me.id),
            |c, _, s| {
                c.send_packed_command(&cmd)?;
                // An error reply arrives as a value; make it an error.
                match c.recv_response().and_then(redis::Value::extract_error) {
                    Err(e)
                        if e.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        // A restarted or flushed Redis: load the script, then retry.
                        s.reserve.load(c)?;
                        c.send_packed_command(&cmd)?;
                        c.recv_response().and_then(redis::Value::extract_error)
                    }
                    other => other,
                }
            },
        )?;
        parse_reserve_reply(reply)
    }

    /// The positions in `queues` of the queues that hold a job now (a list
    /// exists in Redis only while it is not empty), in order.
    pub fn occupied(&mut self, queues: &QueueSet) -> Result<Vec<usize>> {
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        self.with_conn(
            || format!("looking for jobs in {} queues", queues.len()),
            |c, _, s| {
                let mut call = s.occupied.prepare_invoke();
                for key in queues.keys() {
                    call.key(key);
                }
                call.invoke(c)
            },
        )
    }

    /// Notes that a job's process started: `worker:ID` gets the job's
    /// process group (`started`, the record as it becomes; see
    /// `lua/started.lua`) and php's `job:ID:pid` key the process's pid. The
    /// command is sent without waiting: its reply is read before the next
    /// command (the record step), so it costs no round trip of its own. Its
    /// script travels whole (EVAL): a NOSCRIPT error, unseen here, would
    /// leave the record without its pgid. The record step accepts the record
    /// in either form, so whether this write landed never matters for it.
    pub fn job_started(
        &mut self,
        worker_id: &str,
        reserved: &[u8],
        started: &[u8],
        job_id: Option<&str>,
        pid: i32,
    ) -> Result<()> {
        let _blocked = crate::signals::Blocked::new();
        let Some(conn) = self.conn.as_mut() else {
            // No connection: the record step will reconnect; both writes are
            // informational, so they are simply not made.
            return Ok(());
        };
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(STARTED_LUA)
            .arg(1 + usize::from(job_id.is_some()))
            .arg(self.keys.worker(worker_id));
        if let Some(id) = job_id {
            cmd.arg(self.keys.job_pid(id));
        }
        let packed = cmd.arg(reserved).arg(started).arg(pid).get_packed_command();
        self.traffic.commands += 1;
        match conn.send_packed_command(&packed) {
            Ok(()) => {
                self.pending_replies += 1;
                Ok(())
            }
            Err(e) => {
                self.disconnect();
                Err(Error::redis(
                    format!("noting the job process of {worker_id}"),
                    e,
                ))
            }
        }
    }

    /// Records a finished job in one atomic step; see `lua/record.lua`.
    /// Returns false when `worker:ID` no longer held the job (already
    /// accounted for by a pruner), in which case nothing was counted.
    pub fn record(&mut self, outcome: &Outcome<'_>) -> Result<bool> {
        let state = if outcome.failure_record.is_some() {
            JobState::Failed
        } else {
            JobState::Complete
        };
        let id = outcome.worker_id;
        let (pid_key, pid) = outcome.pid_key.unwrap_or(("", 0));
        let reply: Vec<redis::Value> = self.with_conn(
            || format!("recording the outcome of the job of {id}"),
            |c, k, s| {
                s.record
                    .key(k.worker(id))
                    .key(k.stat("processed"))
                    .key(k.worker_stat("processed", id))
                    .key(k.stat("failed"))
                    .key(k.worker_stat("failed", id))
                    .key(k.failed())
                    .arg(outcome.in_flight)
                    .arg(state as i64)
                    .arg(outcome.failure_record.unwrap_or(""))
                    .arg(outcome.now)
                    .arg(outcome.status_key.unwrap_or(""))
                    .arg(pid_key)
                    .arg(pid)
                    .arg(outcome.in_flight_started.unwrap_or(outcome.in_flight))
                    .invoke(c)
            },
        )?;
        Ok(done_and_skipped(&reply, "recording a job") == 1)
    }

    /// The in-flight record of a worker, if it is working, as the bytes
    /// another program may have written.
    pub fn in_flight(&mut self, worker_id: &str) -> Result<Option<Vec<u8>>> {
        self.with_conn(
            || format!("reading the job of {worker_id}"),
            |c, k, _| redis::cmd("GET").arg(k.worker(worker_id)).query(c),
        )
    }

    /// Removes a worker and all its keys, atomically. A job it still held
    /// gets a failure record from `make_failure(class)` (and counts as
    /// processed and failed), or, with `requeue`, goes back to the head of
    /// its queue once; see [`mark_requeued`]. A record that cannot be
    /// understood (not JSON, not UTF-8) is filed as it is, never skipped.
    pub fn unregister(
        &mut self,
        worker_id: &str,
        make_failure: &dyn Fn(&str) -> Failure,
        requeue: bool,
        now: i64,
    ) -> Result<Unregistered> {
        // The in-flight record can change between our read and the script only
        // if that worker is in fact alive; retry a few times, then give up.
        for _ in 0..5 {
            let current = self.in_flight(worker_id)?;
            let mut plan = Unregistered::Idle;
            let (mut record, mut status_key, mut requeued, mut queue, mut pid_key) = (
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            );
            if let Some(bytes) = current.as_deref() {
                let (payload, q, class) = match WorkerRecord::parse(bytes) {
                    Some(r) => (
                        r.payload.get().as_bytes().to_vec(),
                        r.queue.clone(),
                        r.class(),
                    ),
                    None => (bytes.to_vec(), String::new(), None),
                };
                let class = class.unwrap_or_else(|| "<Unknown Job>".to_string());
                let text = std::str::from_utf8(&payload).ok();
                status_key = text
                    .and_then(|p| best_effort_status_key(&self.keys, p))
                    .unwrap_or_default();
                pid_key = text
                    .and_then(|p| best_effort_pid_key(&self.keys, p))
                    .unwrap_or_default();
                // Only a runnable job goes back: a wrapped or broken payload
                // requeued would lose its original text.
                let marked = text
                    .filter(|p| requeue && !q.is_empty() && Job::parse(p, &q).is_ok())
                    .and_then(|p| mark_requeued(p, now));
                match marked {
                    Some(marked) => {
                        requeued = marked;
                        plan = Unregistered::Requeued {
                            class,
                            queue: q.clone(),
                        };
                    }
                    None => {
                        let failure = make_failure(&class);
                        record = failure_record(&payload, &q, &failure, worker_id, now);
                        plan = Unregistered::Failed {
                            class,
                            orphan: Some(Orphan {
                                payload: String::from_utf8_lossy(&payload).into_owned(),
                                queue: q.clone(),
                                failure,
                            }),
                        };
                    }
                }
                queue = q;
            }
            let expected = current.unwrap_or_default();
            let reply: Vec<redis::Value> = self.with_conn(
                || format!("unregistering worker {worker_id}"),
                |c, k, s| {
                    s.unregister
                        .key(k.workers())
                        .key(k.worker(worker_id))
                        .key(k.worker_started(worker_id))
                        .key(k.worker_stat("processed", worker_id))
                        .key(k.worker_stat("failed", worker_id))
                        .key(k.heartbeat())
                        .key(k.stat("processed"))
                        .key(k.stat("failed"))
                        .key(k.failed())
                        .key(k.queue(&queue))
                        .key(k.queues())
                        .arg(worker_id)
                        .arg(&expected)
                        .arg(&record)
                        .arg(now)
                        .arg(&status_key)
                        .arg(&requeued)
                        .arg(&queue)
                        .arg(&pid_key)
                        .invoke(c)
                },
            )?;
            if done_and_skipped(&reply, "unregistering a worker") == 1 {
                return Ok(plan);
            }
        }
        Err(Error::NotFound(format!(
            "worker {worker_id} kept changing its job while being unregistered; it looks alive"
        )))
    }

    /// What Redis holds under one worker id: whether it is in `workers`, its
    /// in-flight record (as bytes: other programs write it) and heartbeat.
    pub fn registration(&mut self, worker_id: &str) -> Result<Registration> {
        let (registered, in_flight, heartbeat): (bool, Option<Vec<u8>>, Option<Vec<u8>>) = self
            .with_conn(
                || format!("reading the registration of {worker_id}"),
                |c, k, _| {
                    redis::pipe()
                        .sismember(k.workers(), worker_id)
                        .get(k.worker(worker_id))
                        .hget(k.heartbeat(), worker_id)
                        .query(c)
                },
            )?;
        Ok(Registration {
            registered,
            in_flight,
            heartbeat: heartbeat.map(|h| String::from_utf8_lossy(&h).into_owned()),
        })
    }

    /// Every field of `workers:heartbeat`: worker id and its heartbeat text.
    /// Fields whose id is not UTF-8 (no worker of any peer writes one) are
    /// left out, so one bad field never stops pruning.
    pub fn heartbeats(&mut self) -> Result<Vec<(String, String)>> {
        let raw: Vec<(Vec<u8>, Vec<u8>)> = self.with_conn(
            || "reading workers:heartbeat".into(),
            |c, k, _| redis::cmd("HGETALL").arg(k.heartbeat()).query(c),
        )?;
        Ok(raw
            .into_iter()
            .filter_map(|(id, beat)| Some((utf8_or_skip(id, "workers:heartbeat")?, lossy(beat))))
            .collect())
    }

    /// Takes Ruby's pruning lock for `ttl_secs`, or says who holds it and
    /// for how much longer.
    pub fn try_prune_lock(&mut self, worker_id: &str, ttl_secs: u64) -> Result<PruneLock> {
        let reply: (i64, Vec<u8>, i64) = self.with_conn(
            || "taking the pruning lock".into(),
            |c, k, s| {
                s.take_lock
                    .key(k.prune_lock())
                    .arg(worker_id)
                    .arg(ttl_secs)
                    .invoke(c)
            },
        )?;
        Ok(match reply {
            (1, _, _) => PruneLock::Taken,
            (_, holder, pttl) => PruneLock::Held {
                holder,
                // No expiry at all (set by hand, say): wait as if just taken.
                expires_in: u64::try_from(pttl)
                    .map(Duration::from_millis)
                    .unwrap_or(Duration::from_secs(ttl_secs)),
            },
        })
    }

    /// Takes the pruning lock from `holder` (exact bytes) if it still holds
    /// it; false when the lock changed hands or expired meanwhile.
    pub fn take_over_prune_lock(
        &mut self,
        holder: &[u8],
        worker_id: &str,
        ttl_secs: u64,
    ) -> Result<bool> {
        let done: i64 = self.with_conn(
            || "taking over the pruning lock".into(),
            |c, k, s| {
                s.take_over_lock
                    .key(k.prune_lock())
                    .arg(holder)
                    .arg(worker_id)
                    .arg(ttl_secs)
                    .invoke(c)
            },
        )?;
        Ok(done == 1)
    }

    /// Releases the pruning lock early, if we still hold it, so the next
    /// worker to start need not wait for it to expire.
    pub fn release_prune_lock(&mut self, worker_id: &str) -> Result<()> {
        self.with_conn(
            || "releasing the pruning lock".into(),
            |c, k, s| {
                s.release_lock
                    .key(k.prune_lock())
                    .arg(worker_id)
                    .invoke::<i64>(c)
            },
        )
        .map(|_| ())
    }

    /// Pushes a payload to the tail of a queue and adds the queue to `queues`;
    /// with `status`, also creates php's status record. All in one `MULTI`.
    pub fn enqueue(
        &mut self,
        queue: &str,
        payload: &str,
        status: Option<(&str, &str)>,
    ) -> Result<()> {
        self.with_conn(
            || format!("enqueueing to queue {queue}"),
            |c, k, _| {
                let mut pipe = redis::pipe();
                pipe.atomic();
                if let Some((key, value)) = status {
                    pipe.set(key, value).ignore();
                }
                pipe.sadd(k.queues(), queue)
                    .ignore()
                    .rpush(k.queue(queue), payload)
                    .ignore()
                    .query::<()>(c)
            },
        )
    }

    /// Pushes many payloads to the tail of a queue, in order, a thousand per
    /// round trip (each batch one `MULTI`, with the batch's status records
    /// when `statuses` pairs a key and value with each payload). `committed`
    /// counts the payloads enqueued so far, so that after an error the
    /// caller knows which ones are in Redis.
    pub fn enqueue_many(
        &mut self,
        queue: &str,
        payloads: &[String],
        statuses: Option<&[(String, String)]>,
        committed: &mut usize,
    ) -> Result<()> {
        const BATCH: usize = 1000;
        for (n, batch) in payloads.chunks(BATCH).enumerate() {
            let status = statuses.map(|s| &s[n * BATCH..(n * BATCH + batch.len()).min(s.len())]);
            self.with_conn(
                || format!("enqueueing to queue {queue}"),
                |c, k, _| {
                    let mut pipe = redis::pipe();
                    pipe.atomic();
                    for (key, value) in status.unwrap_or_default() {
                        pipe.set(key, value).ignore();
                    }
                    pipe.sadd(k.queues(), queue)
                        .ignore()
                        .rpush(k.queue(queue), batch)
                        .ignore()
                        .query::<()>(c)
                },
            )?;
            *committed += batch.len();
        }
        Ok(())
    }

    /// Reads a raw string key (status records).
    pub fn get(&mut self, key: &str) -> Result<Option<String>> {
        self.with_conn(
            || format!("reading {key}"),
            |c, _, _| redis::cmd("GET").arg(key).query(c),
        )
    }

    /// Seconds until `key` expires; `None` when it has no expiry or is absent.
    pub fn ttl(&mut self, key: &str) -> Result<Option<i64>> {
        let ttl: i64 = self.with_conn(
            || format!("reading the TTL of {key}"),
            |c, _, _| redis::cmd("TTL").arg(key).query(c),
        )?;
        Ok((ttl >= 0).then_some(ttl))
    }
}

/// One registered worker's keys, as resque-web's Workers page reads them.
#[derive(Debug, Clone, Default)]
pub struct WorkerKeys {
    pub id: String,
    /// `worker:ID`, present while it works.
    pub in_flight: Option<String>,
    pub started: Option<String>,
    pub heartbeat: Option<String>,
    pub processed: i64,
    pub failed: i64,
}

/// The numbers of resque-web's Stats page (`Resque.info`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Jobs in all queues named in `queues`.
    pub pending: i64,
    /// `stat:processed`.
    pub processed: i64,
    /// `LLEN failed` (not `stat:failed`), as resque-web counts it.
    pub failed: i64,
    pub queues: i64,
    pub workers: i64,
    /// Workers whose `worker:ID` is present and not empty.
    pub working: i64,
}

/// Operations commands: what resque-web reads and does, for every Resque
/// implementation's keys.
impl Store {
    /// The Stats numbers, with resque-web's formulas.
    pub fn counts(&mut self) -> Result<Counts> {
        let queues = self.queue_lengths()?;
        let workers = self.worker_ids()?;
        let (processed, failed): (Option<i64>, i64) = self.with_conn(
            || "reading the stats".into(),
            |c, k, _| {
                redis::pipe()
                    .get(k.stat("processed"))
                    .llen(k.failed())
                    .query(c)
            },
        )?;
        let in_flight: Vec<Option<Vec<u8>>> = if workers.is_empty() {
            Vec::new()
        } else {
            self.with_conn(
                || "reading what the workers are doing".into(),
                |c, k, _| {
                    let mut mget = redis::cmd("MGET");
                    for w in &workers {
                        mget.arg(k.worker(w));
                    }
                    mget.query(c)
                },
            )?
        };
        Ok(Counts {
            pending: queues.iter().map(|(_, n)| n).sum(),
            processed: processed.unwrap_or(0),
            failed,
            queues: queues.len() as i64,
            workers: workers.len() as i64,
            working: in_flight
                .iter()
                .filter(|v| v.as_deref().is_some_and(|b| !b.is_empty()))
                .count() as i64,
        })
    }

    /// Every queue in `queues`, sorted, with its length.
    pub fn queue_lengths(&mut self) -> Result<Vec<(String, i64)>> {
        let names = self.queue_names()?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let lengths: Vec<i64> = self.with_conn(
            || "reading queue lengths".into(),
            |c, k, _| {
                let mut pipe = redis::pipe();
                for n in &names {
                    pipe.llen(k.queue(n));
                }
                pipe.query(c)
            },
        )?;
        Ok(names.into_iter().zip(lengths).collect())
    }

    /// Payloads `start..=stop` of a queue (negative counts from the end),
    /// as the bytes their writers pushed.
    pub fn queue_range(&mut self, queue: &str, start: isize, stop: isize) -> Result<Vec<Vec<u8>>> {
        self.with_conn(
            || format!("reading queue {queue}"),
            |c, k, _| {
                redis::cmd("LRANGE")
                    .arg(k.queue(queue))
                    .arg(start)
                    .arg(stop)
                    .query(c)
            },
        )
    }

    /// Removes every copy of `payload` from a queue; returns how many.
    pub fn remove_from_queue(&mut self, queue: &str, payload: &[u8]) -> Result<usize> {
        self.with_conn(
            || format!("removing a job from queue {queue}"),
            |c, k, _| {
                redis::cmd("LREM")
                    .arg(k.queue(queue))
                    .arg(0)
                    .arg(payload)
                    .query(c)
            },
        )
    }

    /// Empties a queue (it stays listed in `queues`); returns how many jobs it held.
    pub fn clear_queue(&mut self, queue: &str) -> Result<i64> {
        let (len, _): (i64, i64) = self.with_conn(
            || format!("clearing queue {queue}"),
            |c, k, _| {
                redis::pipe()
                    .atomic()
                    .llen(k.queue(queue))
                    .del(k.queue(queue))
                    .query(c)
            },
        )?;
        Ok(len)
    }

    /// Deletes a queue and removes it from `queues`; returns how many jobs it held.
    pub fn remove_queue(&mut self, queue: &str) -> Result<i64> {
        let (len, _, _): (i64, i64, i64) = self.with_conn(
            || format!("removing queue {queue}"),
            |c, k, _| {
                redis::pipe()
                    .atomic()
                    .llen(k.queue(queue))
                    .del(k.queue(queue))
                    .srem(k.queues(), queue)
                    .query(c)
            },
        )?;
        Ok(len)
    }

    /// The keys of each worker in `ids`, in one round trip.
    pub fn worker_keys(&mut self, ids: &[String]) -> Result<Vec<WorkerKeys>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<Vec<redis::Value>> = self.with_conn(
            || "reading the workers".into(),
            |c, k, _| {
                let mut pipe = redis::pipe();
                for id in ids {
                    pipe.get(k.worker(id))
                        .get(k.worker_started(id))
                        .hget(k.heartbeat(), id)
                        .get(k.worker_stat("processed", id))
                        .get(k.worker_stat("failed", id));
                }
                let flat: Vec<redis::Value> = pipe.query(c)?;
                Ok(flat.chunks(5).map(<[redis::Value]>::to_vec).collect())
            },
        )?;
        // Read leniently: these keys are written by every peer, and one odd
        // value must not hide the others.
        let text = |v: &redis::Value| -> Option<String> {
            redis::from_redis_value::<Option<Vec<u8>>>(v.clone())
                .ok()
                .flatten()
                .map(lossy)
        };
        let count =
            |v: &redis::Value| -> i64 { text(v).and_then(|t| t.trim().parse().ok()).unwrap_or(0) };
        Ok(ids
            .iter()
            .zip(rows)
            .map(|(id, row)| WorkerKeys {
                id: id.clone(),
                in_flight: row.first().and_then(text),
                started: row.get(1).and_then(text),
                heartbeat: row.get(2).and_then(text),
                processed: row.get(3).map(count).unwrap_or(0),
                failed: row.get(4).map(count).unwrap_or(0),
            })
            .collect())
    }

    /// True when `pause-all-workers` is set to `true`.
    pub fn paused_all(&mut self) -> Result<bool> {
        let v: Option<String> = self.with_conn(
            || "reading pause-all-workers".into(),
            |c, k, _| redis::cmd("GET").arg(k.pause_all()).query(c),
        )?;
        Ok(v.is_some_and(|v| v.trim().eq_ignore_ascii_case("true")))
    }

    /// `LLEN failed`.
    pub fn failed_len(&mut self) -> Result<i64> {
        self.with_conn(
            || "reading the failed list".into(),
            |c, k, _| redis::cmd("LLEN").arg(k.failed()).query(c),
        )
    }

    /// Failure records `start..=stop` (negative counts from the end). Every
    /// writer builds them as JSON text; a record that is not UTF-8 is shown
    /// with U+FFFD, and acting on it by content then finds nothing.
    pub fn failed_range(&mut self, start: isize, stop: isize) -> Result<Vec<String>> {
        let raw: Vec<Vec<u8>> = self.with_conn(
            || "reading the failed list".into(),
            |c, k, _| {
                redis::cmd("LRANGE")
                    .arg(k.failed())
                    .arg(start)
                    .arg(stop)
                    .query(c)
            },
        )?;
        Ok(raw.into_iter().map(lossy).collect())
    }

    /// Retries one failure record, found by its exact text; see
    /// `lua/retry_failed.lua`. False when the record is no longer there.
    pub fn retry_failed(
        &mut self,
        record: &str,
        retried: &str,
        queue: &str,
        payload: &str,
        status_key: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let done: i64 = self.with_conn(
            || format!("retrying a failed job on queue {queue}"),
            |c, k, s| {
                s.retry_failed
                    .key(k.failed())
                    .key(k.queue(queue))
                    .key(k.queues())
                    .arg(record)
                    .arg(retried)
                    .arg(payload)
                    .arg(queue)
                    .arg(status_key.unwrap_or(""))
                    .arg(now)
                    .invoke(c)
            },
        )?;
        Ok(done == 1)
    }

    /// Removes one failure record, found by its exact text. False when it is
    /// no longer there.
    pub fn remove_failed(&mut self, record: &str) -> Result<bool> {
        let n: i64 = self.with_conn(
            || "removing a failure record".into(),
            |c, k, _| {
                redis::cmd("LREM")
                    .arg(k.failed())
                    .arg(1)
                    .arg(record)
                    .query(c)
            },
        )?;
        Ok(n == 1)
    }

    /// Deletes the failed list; returns how many records it held.
    pub fn clear_failed(&mut self) -> Result<i64> {
        let (len, _): (i64, i64) = self.with_conn(
            || "clearing the failed list".into(),
            |c, k, _| {
                redis::pipe()
                    .atomic()
                    .llen(k.failed())
                    .del(k.failed())
                    .query(c)
            },
        )?;
        Ok(len)
    }
}

/// What Redis holds under one worker id; see [`Store::registration`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// The id is in `workers`.
    pub registered: bool,
    /// `worker:ID`, exact bytes.
    pub in_flight: Option<Vec<u8>>,
    /// Its field of `workers:heartbeat`.
    pub heartbeat: Option<String>,
}

impl Registration {
    /// True when nothing at all is left under the id.
    pub fn is_empty(&self) -> bool {
        !self.registered && self.in_flight.is_none() && self.heartbeat.is_none()
    }
}

/// The outcome of asking for Ruby's pruning lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneLock {
    /// It is ours now.
    Taken,
    /// Someone else holds it.
    Held {
        /// The holder's value, by Ruby's rule its worker id (exact bytes).
        holder: Vec<u8>,
        /// Until the lock expires.
        expires_in: Duration,
    },
}

/// What [`Store::unregister`] did with the worker's job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Unregistered {
    /// The worker held no job.
    Idle,
    /// Its job got a failure record.
    Failed {
        class: String,
        /// The job and its failure, for `on_failure` hooks.
        #[serde(skip)]
        orphan: Option<Orphan>,
    },
    /// Its job went back to the head of `queue`.
    Requeued { class: String, queue: String },
}

/// A job left behind by a dead worker, as it was failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub payload: String,
    pub queue: String,
    pub failure: Failure,
}

/// The php status key of a payload that is an object with an `id`, even when
/// it is otherwise unrunnable.
pub fn best_effort_status_key(keys: &Keys, payload: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let id = value.get("id")?.as_str().filter(|s| !s.is_empty())?;
    let prefix = value.get("prefix").and_then(|p| p.as_str());
    Some(keys.job_status(prefix, id))
}

/// The php pid key of a payload that is an object with an `id`.
fn best_effort_pid_key(keys: &Keys, payload: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let id = value.get("id")?.as_str().filter(|s| !s.is_empty())?;
    Some(keys.job_pid(id))
}

/// Reads a `{status, skipped counters...}` script reply: logs each counter
/// the script left alone because it was not an integer, returns the status.
fn done_and_skipped(reply: &[redis::Value], what: &str) -> i64 {
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
fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A name read from `set`, or `None` (logged) when it is not UTF-8: key
/// names are built as text, so such a name cannot be acted on.
fn utf8_or_skip(bytes: Vec<u8>, set: &str) -> Option<String> {
    String::from_utf8(bytes)
        .map_err(|e| {
            log::warn!(
                "skipping {:?} in {set}: it is not UTF-8",
                String::from_utf8_lossy(e.as_bytes())
            )
        })
        .ok()
}

/// Quotes a string as JSON, for splicing into records built by the scripts.
fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn parse_reserve_reply(reply: redis::Value) -> Result<Reserved> {
    use redis::Value;
    let bad = |what: &str| {
        Error::redis(
            "reserving a job",
            redis::RedisError::from((
                redis::ErrorKind::Parse,
                "unexpected reply from the reserve script",
                what.to_string(),
            )),
        )
    };
    let Value::Array(items) = reply else {
        return Err(bad("not an array"));
    };
    let int = |v: Option<&Value>| match v {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    };
    let bytes = |v: Option<&Value>| match v {
        Some(Value::BulkString(b)) => Some(b.clone()),
        _ => None,
    };
    match int(items.first()) {
        Some(0) => Ok(Reserved::Empty),
        Some(-1) => Ok(Reserved::Paused),
        Some(-2) => Ok(Reserved::Held {
            in_flight: bytes(items.get(1)).ok_or_else(|| bad("no record"))?,
        }),
        Some(-3) => Ok(Reserved::HeldByAnother {
            in_flight: bytes(items.get(1)).ok_or_else(|| bad("no record"))?,
        }),
        Some(i) if i > 0 => Ok(Reserved::Job {
            queue_index: (i - 1) as usize,
            payload: bytes(items.get(1)).ok_or_else(|| bad("no payload"))?,
            in_flight: bytes(items.get(2)).ok_or_else(|| bad("no record"))?,
        }),
        _ => Err(bad("no status")),
    }
}
