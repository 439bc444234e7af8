//! Delayed jobs on resque-scheduler's keys (contract 11): scheduling an item
//! exactly as Ruby's `Resque.enqueue_at` does, and promoting due items onto
//! their queues (`lua/promote.lua`).

use super::Store;
use crate::error::Result;

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
    /// Ruby's `delayed_push` does.
    pub fn schedule_delayed(&mut self, ts: i64, item: &str) -> Result<()> {
        self.with_conn(
            || format!("scheduling a delayed job for {ts}"),
            |c, k, _| {
                redis::pipe()
                    .atomic()
                    .rpush(k.delayed(ts), item)
                    .ignore()
                    .sadd(k.delayed_timestamps(item), format!("delayed:{ts}"))
                    .ignore()
                    .zadd(k.delayed_schedule(), ts, ts)
                    .ignore()
                    .query::<()>(c)
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

    /// How many delayed items there are in all (resque-web's Delayed count).
    pub fn delayed_count(&mut self) -> Result<i64> {
        self.with_conn(
            || "counting delayed jobs".into(),
            |c, k, _| {
                let stamps: Vec<i64> = redis::cmd("ZRANGE")
                    .arg(k.delayed_schedule())
                    .arg(0)
                    .arg(-1)
                    .query(c)?;
                let mut pipe = redis::pipe();
                for ts in &stamps {
                    pipe.llen(k.delayed(*ts));
                }
                let lengths: Vec<i64> = pipe.query(c)?;
                Ok(lengths.iter().sum())
            },
        )
    }
}
