//! A worker's lifecycle in Redis: registration, heartbeat, removal, and
//! Ruby's pruning lock. Which workers to remove, and what becomes of the job
//! one held, is decided by `prune`.

use super::{done_and_skipped, lossy, utf8_or_skip, Store};
use crate::error::Result;
use std::time::Duration;

/// What becomes of the job a removed worker held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldJob<'a> {
    /// It held none.
    None,
    /// Push this failure record to `failed` and count it.
    File {
        /// The record's text.
        record: &'a str,
        /// The queue the job came from.
        queue: &'a str,
    },
    /// Put this payload back at the head of `queue`.
    Requeue {
        /// The payload's text, as it goes back.
        payload: &'a str,
        /// Its queue.
        queue: &'a str,
    },
}

/// A worker to remove: see [`Store::remove_worker`].
#[derive(Debug, Clone, Copy)]
pub struct Removal<'a> {
    /// Its id.
    pub worker_id: &'a str,
    /// The `worker:ID` value the decision was made on, exact bytes (empty
    /// when there was none): nothing changes unless it is still there.
    pub in_flight: &'a [u8],
    /// What becomes of its job.
    pub job: HeldJob<'a>,
    /// php's status key of the job, set to failed (or waiting, requeued).
    pub status_key: Option<&'a str>,
    /// php's pid key of the job, deleted.
    pub pid_key: Option<&'a str>,
    /// Epoch seconds.
    pub now: i64,
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

impl Store {
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

    /// The in-flight record of a worker, if it is working, as the bytes
    /// another program may have written.
    pub fn in_flight(&mut self, worker_id: &str) -> Result<Option<Vec<u8>>> {
        self.with_conn(
            || format!("reading the job of {worker_id}"),
            |c, k, _| redis::cmd("GET").arg(k.worker(worker_id)).query(c),
        )
    }

    /// Removes a worker and every key it owns, atomically, and does with the
    /// job it held what `removal` says (see `lua/unregister.lua`). Returns
    /// false, changing nothing, when `worker:ID` no longer holds what the
    /// decision was made on (the caller reads it again and decides again).
    pub fn remove_worker(&mut self, removal: &Removal<'_>) -> Result<bool> {
        let id = removal.worker_id;
        let (record, payload, queue) = match removal.job {
            HeldJob::None => ("", "", ""),
            HeldJob::File { record, queue } => (record, "", queue),
            HeldJob::Requeue { payload, queue } => ("", payload, queue),
        };
        let reply: Vec<redis::Value> = self.with_conn(
            || format!("unregistering worker {id}"),
            |c, k, s| {
                s.unregister
                    .key(k.workers())
                    .key(k.worker(id))
                    .key(k.worker_started(id))
                    .key(k.worker_stat("processed", id))
                    .key(k.worker_stat("failed", id))
                    .key(k.heartbeat())
                    .key(k.stat("processed"))
                    .key(k.stat("failed"))
                    .key(k.failed())
                    .key(k.queue(queue))
                    .key(k.queues())
                    .arg(id)
                    .arg(removal.in_flight)
                    .arg(record)
                    .arg(removal.now)
                    .arg(removal.status_key.unwrap_or(""))
                    .arg(payload)
                    .arg(queue)
                    .arg(removal.pid_key.unwrap_or(""))
                    .invoke(c)
            },
        )?;
        Ok(done_and_skipped(&reply, "unregistering a worker") == 1)
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
}

impl Store {
    /// Records pool `who`'s groups (a JSON document) for `pool status`.
    pub fn publish_pool(&mut self, who: &str, state: &str) -> Result<()> {
        self.with_conn(
            || format!("publishing the groups of pool {who}"),
            |c, k, _| {
                redis::cmd("HSET")
                    .arg(k.pools())
                    .arg(who)
                    .arg(state)
                    .query(c)
            },
        )
    }

    /// Removes pool `who`'s record (at its exit).
    pub fn forget_pool(&mut self, who: &str) -> Result<()> {
        self.with_conn(
            || format!("removing the record of pool {who}"),
            |c, k, _| redis::cmd("HDEL").arg(k.pools()).arg(who).query(c),
        )
    }

    /// Every pool's record: (`host:pid`, JSON document).
    pub fn pools(&mut self) -> Result<Vec<(String, String)>> {
        self.with_conn(
            || "reading the pools".into(),
            |c, k, _| redis::cmd("HGETALL").arg(k.pools()).query(c),
        )
    }
}
