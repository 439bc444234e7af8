//! Promotion of delayed jobs in a pool: every SCHEDULER_INTERVAL the pool
//! (the supervisor with COUNT > 1, else the worker, even while a job runs)
//! moves due items onto their queues with one atomic script per batch (see
//! [`crate::store::delayed`]). Any number of pools may do so side by side.

use crate::store::{Promoted, Store};
use crate::timefmt;
use std::time::{Duration, Instant};

/// Items one script call moves at most.
const BATCH: usize = 1000;
/// How long one turn may keep promoting a backlog before the pool gets on
/// with its other duties (the rest follows at the next turn).
const TURN: Duration = Duration::from_millis(200);

/// A pool's promotion schedule.
#[derive(Debug)]
pub struct Promoter {
    interval: Duration,
    next: Instant,
    who: String,
    /// A Ruby resque-scheduler was seen running (logged once).
    deferring: bool,
    /// A Redis error was logged; quiet until promotion works again.
    failing: bool,
}

impl Promoter {
    /// Promotes every `interval`, naming itself `who` in failure records.
    pub fn new(interval: Duration, who: String) -> Promoter {
        Promoter {
            interval,
            next: Instant::now(),
            who,
            deferring: false,
            failing: false,
        }
    }

    /// When the next turn is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// Promotes what is due, if it is time. Redis errors are logged once and
    /// retried at the next turn: promotion can wait, the pool's work cannot.
    pub fn tick(&mut self, store: &mut Store) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + self.interval;
        let failed_at = timefmt::failed_at(timefmt::now_epoch());
        loop {
            match store.promote_delayed(BATCH, &failed_at, &self.who) {
                Ok(Promoted::RubySchedulerRunning) => {
                    if !std::mem::replace(&mut self.deferring, true) {
                        log::info!(
                            "a Ruby resque-scheduler holds its master lock: leaving delayed jobs to it"
                        );
                    }
                    return;
                }
                Ok(Promoted::Batch { moved, filed, more }) => {
                    self.failing = false;
                    if std::mem::take(&mut self.deferring) {
                        log::info!(
                            "no Ruby resque-scheduler runs any more: promoting delayed jobs"
                        );
                    }
                    if moved + filed > 0 {
                        log::debug!("promoted {moved} delayed jobs ({filed} were not jobs)");
                    }
                    if filed > 0 {
                        log::warn!("{filed} delayed items were not jobs: filed in the failed list");
                    }
                    if !more || now.elapsed() >= TURN {
                        return;
                    }
                }
                Err(e) => {
                    if !std::mem::replace(&mut self.failing, true) {
                        log::warn!("{e}; promoting delayed jobs again next turn");
                    }
                    return;
                }
            }
        }
    }
}
