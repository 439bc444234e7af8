//! Which queues to take from, and waiting when they are empty: sleeping
//! for INTERVAL, or with BLOCKING on the doorbells, always serving signals.
use super::*;

impl Worker<'_> {
    /// The queues to reserve from, and whether they are as fresh as a look
    /// at Redis just now can make them.
    ///
    /// A static list is prepared once; a dynamic one (`*`, globs, skips) is
    /// re-read from `queues` at most once per INTERVAL (so a new queue is
    /// seen within one INTERVAL), or at once when `stale` is set. A list
    /// longer than one LMPOP chunk (say `*` over ten thousand tenants) is
    /// reserved from through its occupied part, looked up as often: popping
    /// over every key would cost each job milliseconds of Redis time. So a
    /// queue of such a list that was empty at the last look may wait up to
    /// one INTERVAL while the worker takes jobs from the others, and priority
    /// holds among the queues that had jobs.
    pub(super) fn queue_set(&mut self, stale: bool) -> Result<(Rc<QueueSet>, bool)> {
        let refresh = self.settings.interval.max(Duration::from_millis(100));
        let dynamic = self.settings.queues.is_dynamic();
        let reread = match &self.queues {
            None => true,
            Some(cache) => dynamic && (stale || cache.read_at.elapsed() >= refresh),
        };
        if reread {
            let names = if dynamic {
                let known = self.store.queue_names()?;
                self.settings.queues.resolve(&known)
            } else {
                self.settings.queues.names().to_vec()
            };
            self.queues = Some(QueueCache {
                all: Rc::new(QueueSet::new(self.store.keys(), names)),
                read_at: Instant::now(),
                occupied: None,
            });
        }
        let Some(cache) = self.queues.as_mut() else {
            unreachable!("set above")
        };
        if cache.all.len() <= RESERVE_CHUNK {
            // Nothing to re-read for a static list: it is as fresh as it gets.
            return Ok((cache.all.clone(), reread || !dynamic));
        }
        let rescan = match &cache.occupied {
            None => true,
            Some((_, at)) => stale || at.elapsed() >= refresh,
        };
        if rescan {
            let all = cache.all.clone();
            let held = self.store.occupied(&all)?;
            let set = Rc::new(all.subset(&held));
            if let Some(cache) = self.queues.as_mut() {
                cache.occupied = Some((set, Instant::now()));
            }
        }
        match self.queues.as_ref().and_then(|c| c.occupied.as_ref()) {
            Some((set, _)) => Ok((set.clone(), rescan)),
            None => unreachable!("set above"),
        }
    }

    /// Waits up to `duration` for a job: with BLOCKING, until a doorbell
    /// rings (see [`crate::doorbell`]); otherwise by sleeping. Returns early
    /// when a signal changes what the loop should do.
    pub(super) fn wait_for_work(&mut self, duration: Duration) {
        let keys: Vec<String> = match &self.queues {
            Some(cache) if !self.paused && self.doorbells.is_some() => cache.all.keys().to_vec(),
            _ => Vec::new(),
        };
        if keys.is_empty() || keys.len() > doorbell::MAX_QUEUES {
            if keys.len() > doorbell::MAX_QUEUES {
                log::debug!(
                    "{} queues is more than BLOCKING watches ({}): polling",
                    keys.len(),
                    doorbell::MAX_QUEUES
                );
            }
            return self.idle(duration);
        }
        let armed = match self.doorbells.as_mut() {
            Some(bells) => {
                if let Some((generation, node)) = self.store.node() {
                    bells.follow(generation, node);
                }
                bells.arm(&keys)
            }
            None => return self.idle(duration),
        };
        if let Err(e) = armed {
            log::debug!("arming the BLOCKING doorbells failed ({e}); polling this time");
            return self.idle(duration);
        }
        self.wait(duration, true);
    }

    /// After a failed Redis step: waits up to `duration`, returning early on
    /// a signal or on news from the Sentinels (the end of a failover: the
    /// step is tried again at once, not after the back-off).
    pub(super) fn back_off(&mut self, duration: Duration) {
        let mut fds = vec![self.signals.fd()];
        fds.extend(self.store.failover_fds());
        signals::wait_readable(&fds, duration);
    }

    /// Sleeps up to `duration` serving signals only, returning early on one:
    /// for startup, before the id is ours to heartbeat under.
    pub(super) fn pause(&mut self, duration: Duration) {
        signals::wait_readable(&[self.signals.fd()], duration);
        self.handle_signals(None);
    }

    /// Sleeps up to `duration`, returning early when a signal changes what
    /// the loop should do.
    pub(super) fn idle(&mut self, duration: Duration) {
        self.wait(duration, false);
    }

    /// The one waiting loop: signals, housekeeping deadlines and, with
    /// `bells`, the armed doorbells, all in one `poll(2)`.
    pub(super) fn wait(&mut self, duration: Duration, bells: bool) {
        let deadline = Instant::now() + duration;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let wait = (deadline - now).min(self.until_deadline(None));
            let rang = match self.doorbells.as_mut().filter(|_| bells) {
                Some(doorbells) => {
                    let mut fds = vec![self.signals.fd()];
                    fds.extend(doorbells.fds());
                    fds.extend(self.store.failover_fds());
                    signals::wait_readable(&fds, wait);
                    // The doorbells ring on one node: a failover announced,
                    // or a new master the store already found (a
                    // housekeeping step reconnected), ends the wait so that
                    // they are armed again where the jobs now are.
                    let moved = self.store.node().map(|(generation, _)| generation)
                        != doorbells.generation();
                    doorbells.collect() || moved || self.store.master_changing()
                }
                None => {
                    signals::wait_readable(&[self.signals.fd()], wait);
                    false
                }
            };
            if rang {
                return;
            }
            let before = (self.stop, self.paused);
            self.handle_signals(None);
            if (self.stop, self.paused) != before {
                return;
            }
            self.housekeeping();
        }
    }

    /// Time until the next heartbeat, prune, or step of the job's clock.
    pub(super) fn until_deadline(&self, job: Option<Instant>) -> Duration {
        let next = self.next_heartbeat.min(self.next_prune);
        let next = job.map_or(next, |j| next.min(j));
        let next = self.promoter.as_ref().map_or(next, |p| next.min(p.next()));
        next.saturating_duration_since(Instant::now())
    }
}
