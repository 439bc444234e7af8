//! Recurring jobs (contract 12): resque-scheduler's dynamic schedules and
//! last-enqueue times, and our per-entry tick claims (`lua/recurring.lua`).

use super::Store;
use crate::error::Result;
use std::collections::HashMap;

/// What one claim of an entry's ticks did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// A Ruby resque-scheduler holds its master lock: it runs its schedule.
    RubySchedulerRunning,
    /// Ticks enqueued by this call, and the entry's latest tick.
    Ticks { enqueued: u64, latest: i64 },
}

/// A recurring job's enqueue, as [`Store::enqueue_ticks`] sends it.
#[derive(Debug, Clone, Copy)]
pub struct TickJob<'a> {
    pub name: &'a str,
    pub queue: &'a str,
    pub payload: &'a str,
}

impl Store {
    /// Redis's clock (epoch seconds) and `persistent_schedules` as (name,
    /// JSON configuration) pairs, in one round trip: what a scheduler turn
    /// starts from. Entries whose name or text is not UTF-8 are logged and
    /// left out.
    pub fn schedule_inputs(&mut self) -> Result<(i64, Vec<(String, String)>)> {
        type Pairs = Vec<(Vec<u8>, Vec<u8>)>;
        let ((now, _), raw): ((i64, i64), Pairs) = self.with_conn(
            || "reading the clock and persistent_schedules".into(),
            |c, k, _| {
                redis::pipe()
                    .cmd("TIME")
                    .hgetall(k.persistent_schedules())
                    .query(c)
            },
        )?;
        let configs = raw
            .into_iter()
            .filter_map(|(name, config)| {
                let name = super::utf8_or_skip(name, "persistent_schedules")?;
                let config = super::utf8_or_skip(config, "persistent_schedules")?;
                Some((name, config))
            })
            .collect();
        Ok((now, configs))
    }

    /// Enqueues `job` once for each of `ticks` (earliest first) later than
    /// the entry's latest enqueued tick, atomically with recording the new
    /// latest; see `lua/recurring.lua`. An entry seen for the first time
    /// starts at `first_from` (only later ticks are enqueued), and is
    /// recorded even when `ticks` is empty. `stamp` goes to
    /// `delayed:last_enqueued_at`.
    pub fn enqueue_ticks(
        &mut self,
        job: TickJob,
        ticks: &[i64],
        first_from: i64,
        stamp: &str,
    ) -> Result<Claimed> {
        let (enqueued, latest): (i64, i64) = self.with_conn(
            || format!("enqueuing recurring job {:?}", job.name),
            |c, k, s| {
                let mut call = s.recurring.prepare_invoke();
                call.key(k.schedule_ticks())
                    .key(k.queue(job.queue))
                    .key(k.queues())
                    .key(k.last_enqueued_at())
                    .key(k.ruby_scheduler_lock())
                    .arg(job.name)
                    .arg(job.payload)
                    .arg(job.queue)
                    .arg(stamp)
                    .arg(first_from);
                for t in ticks {
                    call.arg(*t);
                }
                call.invoke(c)
            },
        )?;
        Ok(if enqueued < 0 {
            Claimed::RubySchedulerRunning
        } else {
            Claimed::Ticks {
                enqueued: enqueued as u64,
                latest,
            }
        })
    }

    /// Each entry's last enqueue as resque-scheduler records it (name → Ruby
    /// time text), and each entry's latest tick (name → epoch seconds).
    pub fn recurring_history(&mut self) -> Result<(HashMap<String, String>, HashMap<String, i64>)> {
        self.with_conn(
            || "reading the recurring jobs' last runs".into(),
            |c, k, _| {
                redis::pipe()
                    .hgetall(k.last_enqueued_at())
                    .hgetall(k.schedule_ticks())
                    .query(c)
            },
        )
    }
}
