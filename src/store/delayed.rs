//! Delayed jobs on resque-scheduler's keys (contract 11): scheduling an item
//! exactly as Ruby's `Resque.enqueue_at` does, and promoting due items onto
//! their queues (`lua/promote.lua`).

use super::Store;
use crate::error::Result;
use crate::keys::Keys;

/// The schedule's timestamps, earliest first, each with the reply of what
/// `ask` adds to a pipeline for its bucket: two round trips in all.
fn each_bucket<T: redis::FromRedisValue>(
    c: &mut redis::Connection,
    k: &Keys,
    ask: impl Fn(&mut redis::Pipeline, String),
) -> redis::RedisResult<Vec<(i64, T)>> {
    let stamps: Vec<i64> = redis::cmd("ZRANGE")
        .arg(k.delayed_schedule())
        .arg(0)
        .arg(-1)
        .query(c)?;
    if stamps.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for ts in &stamps {
        ask(&mut pipe, k.delayed(*ts));
    }
    let replies: Vec<T> = pipe.query(c)?;
    Ok(stamps.into_iter().zip(replies).collect())
}

/// What one promotion batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promoted {
    /// A Ruby resque-scheduler holds its master lock: promotion is its.
    RubySchedulerRunning,
    /// Items moved onto their queues, items filed as failures (not jobs),
    /// and whether more items are due already.
    Batch { moved: u64, filed: u64, more: bool },
}

impl Store {
    /// Puts `item` (the compact JSON `{"class":…,"args":…,"queue":…}`) in the
    /// bucket of `ts` (epoch seconds): RPUSH `delayed:<ts>`, SADD
    /// `timestamps:<item>`, ZADD `delayed_queue_schedule`, in one MULTI, as
    /// Ruby's `delayed_push` does; with `status` (key, record), php's status
    /// record in the same transaction.
    pub fn schedule_delayed(
        &mut self,
        ts: i64,
        item: &str,
        status: Option<(&str, &str)>,
    ) -> Result<()> {
        self.with_conn(
            || format!("scheduling a delayed job for {ts}"),
            |c, k, _| {
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .rpush(k.delayed(ts), item)
                    .ignore()
                    .sadd(k.delayed_timestamps(item), format!("delayed:{ts}"))
                    .ignore()
                    .zadd(k.delayed_schedule(), ts, ts)
                    .ignore();
                if let Some((key, record)) = status {
                    pipe.set(key, record).ignore();
                }
                pipe.query::<()>(c)
            },
        )
    }

    /// Moves up to `limit` due items onto their queues, atomically; see
    /// `lua/promote.lua`. `failed_at` and `who` go into the failure record of
    /// an item that is not a job.
    pub fn promote_delayed(
        &mut self,
        limit: usize,
        failed_at: &str,
        who: &str,
    ) -> Result<Promoted> {
        let reply: Vec<i64> = self.with_conn(
            || "promoting due delayed jobs".into(),
            |c, k, s| {
                s.promote
                    .key(k.delayed_schedule())
                    .key(k.queues())
                    .key(k.failed())
                    .key(k.ruby_scheduler_lock())
                    .arg(k.prefix())
                    .arg(limit)
                    .arg(failed_at)
                    .arg(who)
                    .invoke(c)
            },
        )?;
        Ok(match reply.as_slice() {
            [moved, filed, more] => Promoted::Batch {
                moved: (*moved).max(0) as u64,
                filed: (*filed).max(0) as u64,
                more: *more > 0,
            },
            _ => Promoted::RubySchedulerRunning,
        })
    }

    /// Every timestamp of the schedule, earliest first, with how many items
    /// its bucket holds.
    pub fn delayed_buckets(&mut self) -> Result<Vec<(i64, i64)>> {
        self.with_conn(
            || "reading the delayed schedule".into(),
            |c, k, _| {
                each_bucket(c, k, |p, bucket| {
                    p.llen(bucket);
                })
            },
        )
    }

    /// The items due at `ts`, as their writers wrote them.
    pub fn delayed_items(&mut self, ts: i64) -> Result<Vec<Vec<u8>>> {
        self.with_conn(
            || format!("reading delayed:{ts}"),
            |c, k, _| {
                redis::cmd("LRANGE")
                    .arg(k.delayed(ts))
                    .arg(0)
                    .arg(-1)
                    .query(c)
            },
        )
    }

    /// Every delayed item with its timestamp, earliest first, as written.
    pub fn all_delayed(&mut self) -> Result<Vec<(i64, Vec<u8>)>> {
        let buckets: Vec<(i64, Vec<Vec<u8>>)> = self.with_conn(
            || "reading the delayed jobs".into(),
            |c, k, _| {
                each_bucket(c, k, |p, bucket| {
                    p.lrange(bucket, 0, -1);
                })
            },
        )?;
        Ok(buckets
            .into_iter()
            .flat_map(|(ts, items)| items.into_iter().map(move |i| (ts, i)))
            .collect())
    }

    /// Takes `items` (timestamp, exact text), all of `queue`, out of the
    /// schedule; with `run`, pushes each onto `queue` as a payload. Returns
    /// how many were still there. See `lua/take_delayed.lua`.
    pub fn take_delayed(
        &mut self,
        queue: &str,
        items: &[(i64, Vec<u8>)],
        run: bool,
    ) -> Result<u64> {
        let mut taken = 0;
        for chunk in items.chunks(500) {
            let n: u64 = self.with_conn(
                || format!("taking delayed jobs of queue {queue}"),
                |c, k, s| {
                    let mut call = s.take_delayed.prepare_invoke();
                    call.key(k.delayed_schedule())
                        .key(k.queues())
                        .arg(k.prefix())
                        .arg(if run { "run" } else { "remove" })
                        .arg(queue);
                    for (ts, item) in chunk {
                        call.arg(*ts).arg(item.as_slice());
                    }
                    call.invoke(c)
                },
            )?;
            taken += n;
        }
        Ok(taken)
    }

    /// Deletes every delayed item, its `timestamps:` entry and the schedule,
    /// in one step; returns how many items there were.
    pub fn clear_delayed(&mut self) -> Result<i64> {
        self.with_conn(
            || "clearing the delayed jobs".into(),
            |c, k, _| {
                redis::Script::new(
                    "local n = 0 \
                     for _, ts in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do \
                       local bucket = ARGV[1] .. 'delayed:' .. ts \
                       for _, item in ipairs(redis.call('LRANGE', bucket, 0, -1)) do \
                         redis.call('DEL', ARGV[1] .. 'timestamps:' .. item) n = n + 1 \
                       end \
                       redis.call('DEL', bucket) \
                     end \
                     redis.call('DEL', KEYS[1]) return n",
                )
                .key(k.delayed_schedule())
                .arg(k.prefix())
                .invoke(c)
            },
        )
    }
}
