//! The periodic duties (heartbeat, pruning), and the Redis steps retried
//! until Redis answers: recording an outcome, unregistering.
use super::*;

impl Worker<'_> {
    /// The periodic duties: the heartbeat, and pruning dead workers. Their
    /// Redis errors are retried later, never fatal.
    pub(super) fn housekeeping(&mut self) {
        let now = Instant::now();
        if now >= self.next_heartbeat {
            match self.heartbeat() {
                Ok(()) => self.outage.ok(),
                Err(e) => {
                    self.outage.failed(&e);
                    self.next_heartbeat = now + HOUSEKEEPING_RETRY;
                }
            }
        }
        if now >= self.next_prune {
            self.prune();
        }
        if let Some(promoter) = self.promoter.as_mut() {
            promoter.tick(&mut self.store);
        }
    }

    pub(super) fn heartbeat(&mut self) -> Result<()> {
        let now = self.store.server_time()?;
        let beat = timefmt::iso8601_offset(now);
        let again = self
            .store
            .heartbeat(&self.me.id, &beat, self.started.as_deref())?;
        if again {
            log::warn!(
                "worker {} found itself unregistered (a pruner judged it dead); registered again",
                self.me.id
            );
        }
        self.next_heartbeat = Instant::now() + self.settings.heartbeat_interval;
        Ok(())
    }

    pub(super) fn prune(&mut self) {
        match prune::prune(
            &mut self.store,
            &self.me.id,
            &self.me.hostname,
            &self.settings.prune,
        ) {
            Ok(PruneRun::Done(pruned)) => {
                self.orphan_hooks(pruned.iter().map(|p| &p.job));
                self.next_prune = Instant::now() + self.settings.prune_interval;
            }
            Ok(PruneRun::Skipped { retry_in, .. }) => {
                // Look again once the live holder's lock has expired, not
                // only a whole PRUNE_INTERVAL later: a short-lived pool would
                // otherwise never prune.
                let again = (retry_in + PRUNE_LOCK_MARGIN).min(self.settings.prune_interval);
                self.next_prune = Instant::now() + again;
            }
            Err(e) => {
                self.outage.failed(&e);
                self.next_prune = Instant::now() + HOUSEKEEPING_RETRY;
            }
        }
    }

    /// `on_failure` for jobs failed because their worker died.
    pub(super) fn orphan_hooks<'a>(&self, jobs: impl Iterator<Item = &'a Unregistered>) {
        for job in jobs {
            if let Unregistered::Failed {
                orphan: Some(o), ..
            } = job
            {
                if let Ok(parsed) = Job::parse(&o.payload, &o.queue) {
                    self.registry
                        .hooks()
                        .on_failure_in_worker(&parsed, &o.failure);
                }
            }
        }
    }

    /// Whether the record step may also reserve the next job: the worker
    /// is to go straight on (no stop or pause asked for, no signal waiting,
    /// no heartbeat, pruning or scheduler turn due), and `queues` is a list
    /// that needs no fresh look (a static one, or a '*' list read within
    /// INTERVAL) and is short enough to pass whole.
    pub(super) fn goes_straight_on(&mut self, queues: &QueueSet) -> bool {
        self.handle_signals(None);
        let fresh = match &self.queues {
            Some(cache) => {
                !self.settings.queues.is_dynamic()
                    || cache.read_at.elapsed()
                        < self.settings.interval.max(Duration::from_millis(100))
            }
            None => false,
        };
        self.stop.is_none()
            && !self.paused
            && self.id_conflict.is_none()
            && fresh
            && queues.len() <= CHAIN_MAX_QUEUES
            && !self.until_deadline(None).is_zero()
    }

    /// The record step that also reserves the next job (one round trip);
    /// the next job, or `None` when the step failed, in which case the
    /// outcome is recorded on its own as ever (the step is idempotent: if
    /// the failed one did land, this finds the job recorded, and the next
    /// reserve resumes the job it reserved).
    pub(super) fn record_then_reserve(
        &mut self,
        outcome: &Outcome<'_>,
        queues: &QueueSet,
    ) -> Option<Reserved> {
        let now = timefmt::now_epoch();
        match self.store.record_and_reserve(
            outcome,
            &self.me,
            queues,
            &timefmt::iso8601_z(now),
            now,
        ) {
            Ok((recorded, next)) => {
                self.outage.ok();
                if !recorded {
                    log::warn!(
                        "the job of {} was already recorded (an earlier attempt whose reply was lost, or a pruner); not counting it again",
                        self.me.id
                    );
                }
                Some(next)
            }
            Err(e) => {
                log::debug!("{e}; recording the job on its own");
                self.record(outcome);
                None
            }
        }
    }

    /// Records an outcome, retrying while Redis is away: a finished job is
    /// never forgotten while the worker lives, and never counted twice.
    pub(super) fn record(&mut self, outcome: &Outcome<'_>) {
        let mut retry = REDIS_RETRY;
        let mut give_up: Option<Instant> = None;
        loop {
            match self.store.record(outcome) {
                Ok(recorded) => {
                    self.outage.ok();
                    if !recorded {
                        log::warn!(
                            "the job of {} was already recorded (an earlier attempt whose reply was lost, or a pruner); not counting it again",
                            self.me.id
                        );
                    }
                    return;
                }
                Err(e) => {
                    self.outage.failed(&e);
                    self.handle_signals(None);
                    if self.stop == Some(Stop::Now) {
                        let at = *give_up.get_or_insert(Instant::now() + RECORD_GRACE_AT_STOP);
                        if Instant::now() >= at {
                            log::error!(
                                "stopping without recording the outcome of the job of {}; it stays in worker:ID and the next pruning records it as {}",
                                self.me.id,
                                exceptions::DIRTY_EXIT
                            );
                            return;
                        }
                    }
                    self.back_off(retry.delay());
                }
            }
        }
    }

    pub(super) fn unregister(&mut self) {
        let requeue = self.settings.prune.requeue_orphans;
        for attempt in 1..=3 {
            match prune::unregister(
                &mut self.store,
                &self.me.id,
                &prune::dirty_exit,
                requeue,
                prune::Processes::Elsewhere,
                timefmt::now_epoch(),
            ) {
                Ok(job) => {
                    let t = self.store.traffic();
                    log::info!(
                        "worker {} unregistered after {} jobs (Redis: {} round trips, {} commands)",
                        self.me.id,
                        self.jobs_done,
                        t.round_trips,
                        t.commands
                    );
                    self.orphan_hooks(std::iter::once(&job));
                    return;
                }
                Err(e) if attempt == 3 => {
                    log::error!("{e}; the next pruning on this host removes it")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200 * attempt)),
            }
        }
    }
}
