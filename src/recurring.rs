//! Recurring jobs in a pool: each turn of the pool's scheduler reads Redis's
//! clock and the dynamic schedules, and claims each entry's due ticks with
//! one atomic script (see [`crate::store::recurring`]): every tick is
//! enqueued once across all pools, with no elected master to fail over.

use crate::error::Result;
use crate::schedule::Schedule;
use crate::store::{Claimed, Store, TickJob};
use std::collections::HashMap;

/// Ticks one claim enqueues at most (a long catch-up continues next turn).
const MOST_TICKS: usize = 1000;

/// How a pool runs its recurring entries.
#[derive(Debug)]
pub struct Recurring {
    schedule: Schedule,
    /// Each entry's latest tick known to be enqueued (by any pool).
    latest: HashMap<String, i64>,
    /// How old a tick may be and still be enqueued: by default a couple of
    /// turns (a slow turn must not skip a tick, while a tick missed when no
    /// pool ran is not replayed); SCHEDULE_CATCHUP makes it longer.
    catchup: i64,
}

/// What a turn did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// A Ruby resque-scheduler is running its own schedule.
    RubySchedulerRunning,
    /// Jobs enqueued this turn.
    Enqueued(u64),
}

impl Recurring {
    /// Runs `schedule`; a pool that looks every `interval` enqueues ticks
    /// up to `catchup` old.
    pub fn new(
        schedule: Schedule,
        interval: std::time::Duration,
        catchup: Option<std::time::Duration>,
    ) -> Recurring {
        let grace = 2 * interval.as_secs().max(1) as i64 + 1;
        Recurring {
            schedule,
            latest: HashMap::new(),
            catchup: catchup.map_or(grace, |c| (c.as_secs() as i64).max(grace)),
        }
    }

    /// The schedule run.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Re-reads the schedule file; see [`Schedule::reload_file`].
    pub fn reload_file(&mut self) -> Result<usize> {
        self.schedule.reload_file()
    }

    /// Enqueues every entry's due ticks.
    pub fn turn(&mut self, store: &mut Store) -> Result<Turn> {
        let (now, dynamic) = store.schedule_inputs()?;
        self.schedule.set_dynamic(dynamic);
        let stamp = crate::timefmt::ruby_time(now);
        let mut total = 0;
        for entry in self.schedule.entries() {
            let known = self.latest.get(&entry.name).copied();
            let after = known.map_or(now - self.catchup, |k| k.max(now - self.catchup));
            let ticks = entry.trigger.ticks(after, now, MOST_TICKS);
            // The first turn that sees an entry records it, due or not.
            if ticks.is_empty() && known.is_some() {
                continue;
            }
            let job = TickJob {
                name: &entry.name,
                queue: &entry.queue,
                payload: &entry.payload,
            };
            match store.enqueue_ticks(job, &ticks, now - 1, &stamp)? {
                Claimed::RubySchedulerRunning => return Ok(Turn::RubySchedulerRunning),
                Claimed::Ticks { enqueued, latest } => {
                    if enqueued > 0 {
                        log::info!(
                            "enqueued recurring job {} ({}) on {}{}",
                            entry.name,
                            entry.class,
                            entry.queue,
                            if enqueued > 1 {
                                format!(", {enqueued} ticks")
                            } else {
                                String::new()
                            }
                        );
                    }
                    total += enqueued;
                    self.latest.insert(entry.name.clone(), latest);
                }
            }
        }
        Ok(Turn::Enqueued(total))
    }
}
