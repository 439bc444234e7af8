//! A pool's scheduler turn: every SCHEDULER_INTERVAL the pool (the supervisor
//! with COUNT > 1, else the worker, even while a job runs) moves due delayed
//! items onto their queues with one atomic script per batch (see
//! [`crate::store::delayed`]), then enqueues the due ticks of its recurring
//! jobs ([`crate::recurring`]). Any number of pools may do so side by side.

use crate::config::SchedulerSettings;
use crate::error::Result;
use crate::recurring::{Recurring, Turn};
use crate::schedule::Schedule;
use crate::store::{Promoted, Store};
use crate::timefmt;
use std::time::{Duration, Instant};

/// Items one script call moves at most.
const BATCH: usize = 1000;
/// How long one turn may keep promoting a backlog before the pool gets on
/// with its other duties (the rest follows at the next turn).
const TURN: Duration = Duration::from_millis(200);

/// A pool's scheduler.
#[derive(Debug)]
pub struct Promoter {
    interval: Duration,
    next: Instant,
    who: String,
    recurring: Recurring,
    /// A Ruby resque-scheduler was seen running (logged once).
    deferring: bool,
    /// A Redis error was logged; quiet until a turn works again.
    failing: bool,
}

impl Promoter {
    /// A scheduler with `settings`, naming itself `who` in failure records.
    /// Loads the schedule file, if any: a bad one is a configuration error.
    pub fn new(settings: &SchedulerSettings, who: String) -> Result<Promoter> {
        let schedule = Schedule::load(settings.schedule_file.as_deref(), settings.env.as_deref())?;
        if let Some(file) = schedule.file() {
            log::info!(
                "recurring jobs: {} entries from {}",
                schedule.entries().len(),
                file.display()
            );
        }
        Ok(Promoter {
            interval: settings.interval,
            next: Instant::now(),
            who,
            recurring: Recurring::new(schedule, settings.interval, settings.catchup),
            deferring: false,
            failing: false,
        })
    }

    /// When the next turn is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// Whether SIGHUP has a schedule file to re-read in this pool.
    pub fn has_schedule_file(&self) -> bool {
        self.recurring.schedule().file().is_some()
    }

    /// Re-reads the schedule file (SIGHUP); a bad file is logged and the
    /// entries stay as they were.
    pub fn reload(&mut self) {
        match self.recurring.reload_file() {
            Ok(n) => log::info!("schedule reloaded: {n} entries"),
            Err(e) => log::error!("{e}; keeping the schedule as it was"),
        }
    }

    /// Runs a turn, if it is time. Redis errors are logged once and retried
    /// at the next turn: scheduling can wait, the pool's work cannot.
    pub fn tick(&mut self, store: &mut Store) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + self.interval;
        let result = self.promote(store, now).and_then(|ruby_runs| {
            if ruby_runs {
                return Ok(true);
            }
            Ok(self.recurring.turn(store)? == Turn::RubySchedulerRunning)
        });
        match result {
            Ok(ruby_runs) => {
                self.failing = false;
                if ruby_runs != self.deferring {
                    self.deferring = ruby_runs;
                    log::info!(
                        "{}",
                        if ruby_runs {
                            "a Ruby resque-scheduler holds its master lock: leaving delayed and recurring jobs to it"
                        } else {
                            "no Ruby resque-scheduler runs any more: running delayed and recurring jobs"
                        }
                    );
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    log::warn!("{e}; scheduling again next turn");
                }
            }
        }
    }

    /// Promotes due delayed items for up to [`TURN`]; true while a Ruby
    /// scheduler runs.
    fn promote(&mut self, store: &mut Store, started: Instant) -> Result<bool> {
        let failed_at = timefmt::failed_at(timefmt::now_epoch());
        loop {
            match store.promote_delayed(BATCH, &failed_at, &self.who)? {
                Promoted::RubySchedulerRunning => return Ok(true),
                Promoted::Batch { moved, filed, more } => {
                    if moved + filed > 0 {
                        log::debug!("promoted {moved} delayed jobs ({filed} were not jobs)");
                    }
                    if filed > 0 {
                        log::warn!("{filed} delayed items were not jobs: filed in the failed list");
                    }
                    if !more || started.elapsed() >= TURN {
                        return Ok(false);
                    }
                }
            }
        }
    }
}
