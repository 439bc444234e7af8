//! A worker's start: wait for Redis, make sure the id is ours (a live
//! process with the same id, or what a dead one left), heartbeat, prune,
//! register.
use super::*;

impl Worker<'_> {
    /// Claim the id, heartbeat, prune, register. Waits up to
    /// REDIS_STARTUP_TIMEOUT for an unreachable Redis. Returns false when
    /// stopped by a signal meanwhile.
    pub(super) fn startup(&mut self) -> Result<bool> {
        proctitle::set("Starting");
        let give_up = Instant::now() + self.settings.redis_startup_timeout;
        let mut retry = REDIS_RETRY;
        while let Err(e) = self.store.ping() {
            if !e.is_connection() || Instant::now() >= give_up {
                return Err(e);
            }
            if self.outage.since.is_none() {
                log::error!(
                    "{e}; retrying for up to {}s",
                    self.settings.redis_startup_timeout.as_secs_f64()
                );
                self.outage.since = Some(Instant::now());
            }
            self.pause(
                retry
                    .delay()
                    .min(give_up.saturating_duration_since(Instant::now())),
            );
            if self.stop.is_some() {
                return Ok(false);
            }
        }
        self.outage.ok();
        if !self.claim_id()? {
            return Ok(false);
        }
        self.heartbeat()?;
        self.prune();
        self.registry.hooks().before_first_fork(&self.me.id);
        let started = timefmt::ruby_time(timefmt::now_epoch());
        self.store.register(&self.me.id, &started)?;
        self.started = Some(started);
        log::info!(
            "worker {} started: queues {}, interval {}s, jobs dir {}",
            self.me.id,
            self.settings.queues.id_part(),
            self.settings.interval.as_secs_f64(),
            self.exec.jobs_dir().display()
        );
        Ok(true)
    }

    /// Makes sure no other live process uses our id, then accounts for what
    /// a dead predecessor with our id left behind (a container restarted
    /// with the same hostname runs us as the same pid): its job goes through
    /// the orphan path, as pruning would file it. A live process rewrites
    /// its heartbeat every HEARTBEAT_INTERVAL, so one whose heartbeat is
    /// younger than twice that is watched until it either advances (a live
    /// twin: refuse to start) or ages past it (dead). Returns false when
    /// stopped by a signal meanwhile.
    pub(super) fn claim_id(&mut self) -> Result<bool> {
        let found = self.store.registration(&self.me.id)?;
        if found.is_empty() {
            return Ok(true);
        }
        let fresh_for = (self.settings.heartbeat_interval * 2).as_secs().max(1) as i64;
        if let Some(beat) = &found.heartbeat {
            let mut said = false;
            loop {
                let now = self.store.server_time()?;
                let age = timefmt::parse_iso8601(beat).map(|at| now - at);
                if age.is_none_or(|age| age > fresh_for) {
                    break;
                }
                if !std::mem::replace(&mut said, true) {
                    log::warn!(
                        "worker id {} has a heartbeat {}s old: waiting until it is {fresh_for}s old, to tell a dead predecessor from a live process with the same id",
                        self.me.id,
                        age.unwrap_or_default()
                    );
                }
                self.pause(ID_WATCH_STEP);
                if self.stop.is_some() {
                    return Ok(false);
                }
                let again = self.store.registration(&self.me.id)?;
                match &again.heartbeat {
                    Some(b) if b == beat => {}
                    Some(_) => {
                        return Err(Error::Conflict(format!(
                            "another live process is using worker id {} (its heartbeat advanced while we watched): the same hostname and pid in another PID namespace? Give each worker host its own hostname",
                            self.me.id
                        )))
                    }
                    // Pruned meanwhile: nothing left to wait for.
                    None => break,
                }
            }
        }
        let job = prune::file_dead_worker(
            &mut self.store,
            &self.me.id,
            &self.settings.prune,
            timefmt::now_epoch(),
        )?;
        let what = match &job {
            Unregistered::Idle => "it held no job".to_string(),
            Unregistered::Failed { class, .. } => {
                format!("its job {class} is recorded as failed")
            }
            Unregistered::Requeued { class, queue } => {
                format!("its job {class} is back at the head of {queue}")
            }
        };
        log::warn!(
            "worker id {} was left registered by a dead predecessor with the same id; {what}",
            self.me.id
        );
        self.orphan_hooks(std::iter::once(&job));
        Ok(true)
    }
}
