//! The per-job path: take a job atomically (`lua/reserve.lua`), note its
//! process if it runs on (`lua/started.lua`, sent without waiting), record
//! its outcome (`lua/record.lua`). A busy worker records a job and reserves
//! the next in one step (`lua/record_then_reserve.lua`): one round trip per
//! job; two when the worker rests between jobs.

use super::{done_and_skipped, Store};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::keys::Keys;
use crate::payload::JobState;
use crate::resp::{bulk, Digits};

/// How many queue keys the reserve script pops over in one LMPOP (the same
/// number is in `lua/reserve.lua`). A longer list is reserved from through
/// its occupied part; see `Worker::queue_set`.
pub const RESERVE_CHUNK: usize = 1000;

/// Queues to reserve from, in priority order, with their key names
/// prepared once: a reserve runs per job, while the list changes rarely.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSet {
    names: Vec<String>,
    keys: Vec<String>,
    /// The keys as RESP bulk strings, ready to splice into the command.
    packed_keys: Vec<u8>,
}

impl QueueSet {
    /// Prepares `names` under `keys`' prefix.
    pub fn new(keys: &Keys, names: Vec<String>) -> QueueSet {
        let keys = names.iter().map(|n| keys.queue(n)).collect();
        QueueSet::of(names, keys)
    }

    fn of(names: Vec<String>, keys: Vec<String>) -> QueueSet {
        QueueSet {
            packed_keys: packed(&keys),
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
        /// Whether the job had a php status record when it was reserved.
        /// Enqueuers create one before the push, never later: without one,
        /// the record step need not look for it.
        status_tracked: bool,
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
    /// php pid key of the job, when it has an `id` and the started note
    /// wrote it, and the pid written there: the key is deleted only while
    /// it still holds that pid.
    pub pid_key: Option<(&'a str, i32)>,
    pub now: i64,
    /// What a retried job writes (contract 13); `None` for most jobs.
    pub retry: Option<RetryWrite<'a>>,
    /// The job's figures for the metrics (contract 14).
    pub figures: Option<&'a crate::metrics::JobFigures>,
}

/// The record step's part in a retry: the delayed item that runs the job
/// again, and the job's retry counter.
#[derive(Debug, Clone, Copy)]
pub struct RetryWrite<'a> {
    /// The delayed item ([`crate::payload::retry_item`]); `None` when the job
    /// is not retried (it completed, or its retries ran out) and only its
    /// counter is cleared.
    pub item: Option<&'a str>,
    /// Seconds until the retry, by Redis's clock.
    pub delay: u64,
    /// The retry counter key ([`crate::keys::Keys::retry_counter`]).
    pub counter: &'a str,
    /// The count to keep there with the item, for `ttl` seconds.
    pub count: u32,
    /// How long the counter is kept.
    pub ttl: u64,
}

impl Store {
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
        let call = self.reserve_call(me, queues, run_at, now, honour_pause);
        let reply = self.send_call(
            call,
            [],
            |s| &s.reserve,
            || format!("reserving a job for {}", me.id),
        )?;
        parse_reserve_reply(reply)
    }

    /// Sends `call` to `script` (with the WAIT that REDIS_MIN_REPLICAS asks
    /// for), and gives its buffers and those of the calls it was made of,
    /// `parts`, back to the scratch for the next job.
    fn send_call<T: redis::FromRedisValue, const N: usize>(
        &mut self,
        call: Call,
        parts: [Call; N],
        script: fn(&super::Scripts) -> &redis::Script,
        action: impl Fn() -> String,
    ) -> Result<T> {
        let mut cmd = std::mem::take(&mut self.scratch.command);
        call.evalsha_into(script(&self.scripts).get_hash(), &mut cmd);
        let reply = self.with_conn_replicated(action, |c, _, s, wanted| {
            let (reply, acked) = super::call_replicated(c, script(s), &cmd, wanted)?;
            Ok((T::from_redis_value(reply)?, acked))
        });
        self.scratch.give_back(parts.into_iter().chain([call]), cmd);
        reply
    }

    /// The reserve script's keys and arguments.
    fn reserve_call(
        &mut self,
        me: &Identity,
        queues: &QueueSet,
        run_at: &str,
        now: i64,
        honour_pause: bool,
    ) -> Call {
        let mut call = self.scratch.take_call();
        call.packed_keys(&self.step_keys(&me.id).reserve_keys, 2);
        // Packed once per list: with a long '*' list, packing it key by key
        // per job would cost more than running the script.
        call.packed_keys(&queues.packed_keys, queues.keys.len());
        // (run_at is an ISO 8601 time: nothing in it needs escaping.)
        call.arg_parts(&[b"\"", run_at.as_bytes(), b"\""])
            .packed_arg(self.step_keys.name_arg(&me.name))
            .arg(self.keys.prefix())
            .int(now)
            .arg(if honour_pause { "1" } else { "0" })
            .arg(&me.token);
        call
    }

    /// The keys of worker `id`'s per-job steps, packed again only when the
    /// store serves another worker than last time.
    fn step_keys(&mut self, id: &str) -> &StepKeys {
        if self.step_keys.id != id {
            self.step_keys = StepKeys::new(&self.keys, id);
        }
        &self.step_keys
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
        if self.master_changing() {
            // A failover is under way: both writes are informational, so
            // they are simply not made (the hold admits no write at all).
            return Ok(());
        }
        let Some(conn) = self.conn.as_mut() else {
            // No connection: the record step will reconnect; both writes are
            // informational, so they are simply not made.
            return Ok(());
        };
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(&self.scripts.started)
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
        let id = outcome.worker_id;
        let call = self.record_call(outcome);
        let reply: Vec<redis::Value> = self.send_call(
            call,
            [],
            |s| &s.record,
            || format!("recording the outcome of the job of {id}"),
        )?;
        Ok(done_and_skipped(&reply, "recording a job") == 1)
    }

    /// Records a finished job and reserves the next one, in one step
    /// (`lua/record_then_reserve.lua`: the record script, then the reserve
    /// script, atomically): a busy worker's one round trip per job. Returns
    /// what [`Store::record`] and [`Store::reserve`] would. After an error,
    /// whether either part happened is unknown: both are idempotent, so the
    /// caller records again on its own, and the next reserve finds a job
    /// reserved here in `worker:ID` (under our token) and resumes it.
    pub fn record_and_reserve(
        &mut self,
        outcome: &Outcome<'_>,
        me: &Identity,
        queues: &QueueSet,
        run_at: &str,
        now: i64,
    ) -> Result<(bool, Reserved)> {
        let record = self.record_call(outcome);
        let reserve = self.reserve_call(me, queues, run_at, now, true);
        let mut chained = self.scratch.take_call();
        chained.chain(&record, &reserve);
        let id = outcome.worker_id;
        let reply: Vec<redis::Value> = self.send_call(
            chained,
            [record, reserve],
            |s| &s.record_and_reserve,
            || format!("recording the job of {id} and reserving the next"),
        )?;
        let mut parts = reply.into_iter();
        let recorded: Vec<redis::Value> = match parts.next() {
            Some(redis::Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let reserved = parse_reserve_reply(parts.next().unwrap_or(redis::Value::Nil))?;
        Ok((
            done_and_skipped(&recorded, "recording a job") == 1,
            reserved,
        ))
    }

    /// The record script's keys and arguments (see `lua/record.lua`).
    fn record_call(&mut self, outcome: &Outcome<'_>) -> Call {
        let state = if outcome.failure_record.is_some() {
            JobState::Failed
        } else {
            JobState::Complete
        };
        let (pid_key, pid) = outcome.pid_key.unwrap_or(("", 0));
        let mut call = self.scratch.take_call();
        call.packed_keys(&self.step_keys(outcome.worker_id).record_keys, 6);
        let k = &self.keys;
        call.arg(outcome.in_flight)
            .int(state as i64)
            .arg(outcome.failure_record.unwrap_or(""))
            .int(outcome.now)
            .arg(outcome.status_key.unwrap_or(""))
            .arg(pid_key)
            .int(pid.into())
            // ('' when no started note was sent: nothing else to accept.)
            .arg(outcome.in_flight_started.unwrap_or(b""));
        if outcome.figures.is_some() || outcome.retry.is_some() {
            match outcome.figures {
                Some(f) => {
                    let (lat_bucket, lat_sum, lat_us) = f.latency().unwrap_or(("", "", 0));
                    call.arg(k.metrics())
                        .arg(f.outcome_field())
                        .arg(f.duration_field())
                        .arg(f.duration_sum_field())
                        .int(f.duration_us() as i64)
                        .arg(lat_bucket)
                        .arg(lat_sum)
                        .int(lat_us as i64);
                }
                None => {
                    for _ in 0..8 {
                        call.arg("");
                    }
                }
            }
        }
        if let Some(r) = &outcome.retry {
            call.arg(r.item.unwrap_or(""))
                .arg(r.delay.to_string())
                .arg(r.counter)
                .arg(if r.item.is_some() {
                    r.count.to_string()
                } else {
                    String::new()
                })
                .arg(r.ttl.max(1).to_string())
                .arg(k.prefix());
        }
        call
    }
}

/// The keys of one worker's per-job steps, packed as RESP bulk strings:
/// they change only with the worker, while the steps run for every job.
#[derive(Debug, Default)]
pub(super) struct StepKeys {
    id: String,
    /// The record step's six keys (see `lua/record.lua`).
    record_keys: Vec<u8>,
    /// The reserve step's first two keys (see `lua/reserve.lua`).
    reserve_keys: Vec<u8>,
    /// The worker's name (`host:pid`), and the same as a packed JSON string:
    /// the reserve step's second argument.
    name: String,
    name_arg: Vec<u8>,
}

impl StepKeys {
    fn new(keys: &Keys, id: &str) -> StepKeys {
        StepKeys {
            id: id.to_string(),
            record_keys: packed(&[
                keys.worker(id),
                keys.stat("processed"),
                keys.worker_stat("processed", id),
                keys.stat("failed"),
                keys.worker_stat("failed", id),
                keys.failed(),
            ]),
            reserve_keys: packed(&[keys.worker(id), keys.pause_all()]),
            name: String::new(),
            name_arg: Vec::new(),
        }
    }

    /// `name` as a packed JSON string, made again only when it changes.
    fn name_arg(&mut self, name: &str) -> &[u8] {
        if self.name_arg.is_empty() || self.name != name {
            self.name = name.to_string();
            self.name_arg.clear();
            bulk(&mut self.name_arg, json_string(name).as_bytes());
        }
        &self.name_arg
    }
}

/// `keys` as RESP bulk strings, one after the other, ready to splice into a
/// command.
fn packed(keys: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(keys.iter().map(|k| k.len() + 16).sum());
    for key in keys {
        bulk(&mut out, key.as_bytes());
    }
    out
}

/// A script call's keys and arguments, packed as RESP bulk strings as they
/// are added (a queue list's keys come packed already).
#[derive(Debug, Default)]
struct Call {
    keys: Vec<u8>,
    nkeys: usize,
    args: Vec<u8>,
    nargs: usize,
}

/// The buffers of the per-job calls, kept from one call to the next: a busy
/// worker then builds its commands without allocating (each heap page it
/// writes while a forked job runs costs it a copy-on-write fault).
#[derive(Debug, Default)]
pub(super) struct Scratch {
    calls: Vec<Call>,
    command: Vec<u8>,
}

impl Scratch {
    /// An empty call, with the room of an earlier one.
    fn take_call(&mut self) -> Call {
        self.calls.pop().unwrap_or_default()
    }

    /// Keeps `calls` and `command`, emptied, for the next calls.
    fn give_back(&mut self, calls: impl IntoIterator<Item = Call>, mut command: Vec<u8>) {
        for mut call in calls {
            call.keys.clear();
            call.args.clear();
            (call.nkeys, call.nargs) = (0, 0);
            // (At most three are in use at once: a record, a reserve and
            // their chain.)
            if self.calls.len() < 3 {
                self.calls.push(call);
            }
        }
        command.clear();
        self.command = command;
    }
}

impl Call {
    fn packed_keys(&mut self, packed: &[u8], n: usize) -> &mut Call {
        self.keys.extend_from_slice(packed);
        self.nkeys += n;
        self
    }

    fn arg(&mut self, arg: impl AsRef<[u8]>) -> &mut Call {
        bulk(&mut self.args, arg.as_ref());
        self.nargs += 1;
        self
    }

    /// One argument made of `parts`, without joining them first.
    fn arg_parts(&mut self, parts: &[&[u8]]) -> &mut Call {
        let len = parts.iter().map(|p| p.len()).sum();
        crate::resp::header(&mut self.args, b'$', len);
        for p in parts {
            self.args.extend_from_slice(p);
        }
        self.args.extend_from_slice(b"\r\n");
        self.nargs += 1;
        self
    }

    /// An argument packed already (one bulk string).
    fn packed_arg(&mut self, packed: &[u8]) -> &mut Call {
        self.args.extend_from_slice(packed);
        self.nargs += 1;
        self
    }

    /// An integer argument, in decimal.
    fn int(&mut self, n: i64) -> &mut Call {
        self.arg(Digits::int(n).as_bytes())
    }

    /// This (empty) call becomes `first`'s keys and arguments, then
    /// `second`'s, as `lua/record_then_reserve.lua` splits them: its first
    /// two arguments say how many of each are `first`'s.
    fn chain(&mut self, first: &Call, second: &Call) {
        self.int(first.nkeys as i64).int(first.nargs as i64);
        self.keys.extend_from_slice(&first.keys);
        self.keys.extend_from_slice(&second.keys);
        self.nkeys = first.nkeys + second.nkeys;
        self.args.extend_from_slice(&first.args);
        self.args.extend_from_slice(&second.args);
        self.nargs += first.nargs + second.nargs;
    }

    /// The whole `EVALSHA sha numkeys keys… args…` command, into the empty
    /// `out`.
    fn evalsha_into(&self, sha: &str, out: &mut Vec<u8>) {
        out.reserve(self.keys.len() + self.args.len() + 96);
        crate::resp::header(out, b'*', 3 + self.nkeys + self.nargs);
        bulk(out, b"EVALSHA");
        bulk(out, sha.as_bytes());
        bulk(out, Digits::int(self.nkeys as i64).as_bytes());
        out.extend_from_slice(&self.keys);
        out.extend_from_slice(&self.args);
    }
}

impl Store {
    /// The count kept at a retry counter key (contract 13), if any.
    pub fn retry_counter(&mut self, key: &str) -> Result<Option<u32>> {
        let v: Option<String> = self.with_conn(
            || format!("reading the retry counter {key}"),
            |c, _, _| redis::cmd("GET").arg(key).query(c),
        )?;
        Ok(v.and_then(|v| v.parse().ok()))
    }
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
            status_tracked: int(items.get(3)) != Some(0),
        }),
        _ => Err(bad("no status")),
    }
}
