//! What the operations commands read and change: queues, workers as
//! resque-web shows them, and the failed list.

use super::{lossy, utf8_or_skip, Store};
use crate::error::Result;

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

impl Store {
    /// `worker:ID` of each worker in `ids`, in one round trip (`MGET`), as the
    /// bytes their writers wrote.
    pub fn in_flight_many(&mut self, ids: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.with_conn(
            || "reading what the workers are doing".into(),
            |c, k, _| {
                let mut mget = redis::cmd("MGET");
                for w in ids {
                    mget.arg(k.worker(w));
                }
                mget.query(c)
            },
        )
    }

    /// `stat:processed`; 0 when absent.
    pub fn processed(&mut self) -> Result<i64> {
        let n: Option<i64> = self.with_conn(
            || "reading stat:processed".into(),
            |c, k, _| redis::cmd("GET").arg(k.stat("processed")).query(c),
        )?;
        Ok(n.unwrap_or(0))
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
