//! One worker process: reserve → start the job process → watch it → record,
//! in a single thread, with signals, the job process and time all waited for
//! in one `poll(2)`.
//!
//! Redis may go away at any moment. Nothing here treats that as fatal: the
//! loop backs off and retries, logging once per outage; a finished job's
//! outcome is kept until it is recorded (and the record step is idempotent,
//! so a retry never counts twice); no new job is reserved meanwhile.

use crate::backoff::Backoff;
use crate::child::{self, Ended, JobProcess};
use crate::config::{RedisSettings, WorkerSettings};
use crate::doorbell::{self, Doorbells};
use crate::error::{Error, Result};
use crate::handlers::exec::ExecHandler;
use crate::handlers::Registry;
use crate::job_clock::{Action, JobClock};
use crate::keys::Keys;
use crate::payload::{
    best_effort_status_key, exceptions, failure_record, Failure, Job, MalformedPayload,
    WorkerRecord,
};
use crate::proctitle;
use crate::prune::{self, PruneRun, Unregistered};
use crate::report::printable;
use crate::signals::{self, SignalPipe, HANDLED};
use crate::store::{Outcome, QueueSet, Reserved, Store, RESERVE_CHUNK};
use crate::timefmt;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use std::rc::Rc;
use std::time::{Duration, Instant};

const HOUSEKEEPING_RETRY: Duration = Duration::from_secs(5);
/// How often a starting worker looks at the heartbeat of another process
/// that had its id.
const ID_WATCH_STEP: Duration = Duration::from_millis(250);
/// How long after a held pruning lock expires a worker looks again.
const PRUNE_LOCK_MARGIN: Duration = Duration::from_millis(500);
/// How a worker waits for Redis to answer again: 0.1 s doubling to 2 s.
const REDIS_RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
/// After TERM, how long a worker keeps trying to record a finished job while
/// Redis is away. Past it, the job stays in `worker:ID` and the next pruning
/// records it as `Resque::DirtyExit`: accounted for, never lost.
const RECORD_GRACE_AT_STOP: Duration = Duration::from_secs(10);

/// How a requested stop proceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stop {
    /// QUIT: finish the current job, then exit.
    AfterJob,
    /// TERM/INT: kill the current job, record it, exit.
    Now,
}

/// The queue list a worker reserves from, as last read from Redis.
struct QueueCache {
    /// Every queue, in priority order.
    all: Rc<QueueSet>,
    /// When `all` was read.
    read_at: Instant,
    /// For a list longer than one LMPOP chunk: the queues that held jobs at
    /// the last look, and when that was.
    occupied: Option<(Rc<QueueSet>, Instant)>,
}

/// How one run of a job ended.
struct Ran {
    /// How it ended.
    ended: Ended,
    /// The job process's pid, when one started.
    pid: Option<i32>,
    /// The in-flight record with the job's process group, as it was sent to
    /// Redis once the process started.
    started_record: Option<Vec<u8>>,
}

/// What one turn of the loop did.
enum Turn {
    Worked,
    Idle,
}

/// Logs a Redis outage once when it starts and once when it ends.
#[derive(Debug, Default)]
struct Outage {
    since: Option<Instant>,
}

impl Outage {
    fn failed(&mut self, err: &Error) {
        if self.since.is_none() {
            log::error!("{err}; retrying until Redis answers");
            self.since = Some(Instant::now());
        } else {
            log::debug!("{err}");
        }
    }

    fn ok(&mut self) {
        if let Some(since) = self.since.take() {
            log::warn!(
                "Redis answers again after {:.1}s",
                since.elapsed().as_secs_f64()
            );
        }
    }
}

/// A registered worker and its loop.
pub struct Worker<'r> {
    me: Identity,
    settings: WorkerSettings,
    store: Store,
    registry: &'r Registry,
    exec: ExecHandler,
    signals: SignalPipe,
    stop: Option<Stop>,
    paused: bool,
    next_heartbeat: Instant,
    next_prune: Instant,
    outage: Outage,
    /// Jobs taken so far, for the exit log.
    jobs_done: u64,
    /// The queues to reserve from, as last read.
    queues: Option<QueueCache>,
    /// BLOCKING mode's wait.
    doorbells: Option<Doorbells>,
    /// Set when another live process turned out to share our id.
    id_conflict: Option<Error>,
    /// When we registered (`worker:ID:started`); `None` until then.
    started: Option<String>,
}

pub use crate::identity::hostname;
use crate::identity::Identity;

impl<'r> Worker<'r> {
    /// Routes signals and prepares the connection; does not contact Redis.
    pub fn new(
        settings: WorkerSettings,
        redis: &RedisSettings,
        registry: &'r Registry,
    ) -> Result<Worker<'r>> {
        let me = Identity::of_this_process(&settings.queues.id_part());
        let store = Store::open(&redis.url, Keys::new(&redis.prefix))?;
        let signals =
            SignalPipe::install(HANDLED).map_err(|e| Error::io("installing signal handlers", e))?;
        let now = Instant::now();
        let doorbells = if settings.blocking {
            let bells = Doorbells::new(store.connection_info());
            if bells.is_none() {
                log::warn!("BLOCKING is not available over TLS: polling every INTERVAL instead");
            }
            bells
        } else {
            None
        };
        Ok(Worker {
            doorbells,
            me,
            exec: ExecHandler::new(
                settings.jobs_dir.clone(),
                settings.limits.memory_bytes,
                settings.job_env_keep_redis,
            ),
            settings,
            store,
            registry,
            signals,
            stop: None,
            paused: false,
            next_heartbeat: now,
            next_prune: now,
            outage: Outage::default(),
            jobs_done: 0,
            queues: None,
            id_conflict: None,
            started: None,
        })
    }

    /// This worker's id, `host:pid:queues`.
    pub fn id(&self) -> &str {
        &self.me.id
    }

    /// Registers, works until told to stop (or, with a zero interval, until
    /// the queues are empty), and unregisters.
    pub fn run(mut self) -> Result<()> {
        if !self.startup()? {
            return Ok(());
        }
        // Unregister even if the loop panics (a bug): a registered worker
        // that no longer runs would otherwise wait for pruning.
        let looped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.work_loop()));
        // Our id is in use by another live process: what is registered under
        // it is that process's, not ours to remove or file.
        if let Some(conflict) = self.id_conflict.take() {
            return Err(conflict);
        }
        self.unregister();
        self.registry.hooks().worker_exit(&self.me.id);
        if let Err(panic) = looped {
            std::panic::resume_unwind(panic);
        }
        Ok(())
    }

    /// Claim the id, heartbeat, prune, register. Waits up to
    /// REDIS_STARTUP_TIMEOUT for an unreachable Redis. Returns false when
    /// stopped by a signal meanwhile.
    fn startup(&mut self) -> Result<bool> {
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
    fn claim_id(&mut self) -> Result<bool> {
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

    fn work_loop(&mut self) {
        let mut retry = REDIS_RETRY;
        loop {
            self.handle_signals(None);
            if self.stop.is_some() {
                return;
            }
            self.housekeeping();
            let turn = if self.paused {
                Ok(Turn::Idle)
            } else {
                self.reserve_and_run()
            };
            match turn {
                Ok(Turn::Worked) => {
                    self.outage.ok();
                    retry.reset();
                }
                Ok(Turn::Idle) => {
                    self.outage.ok();
                    retry.reset();
                    if self.settings.interval.is_zero() {
                        log::info!("queues are empty and INTERVAL is 0: exiting");
                        return;
                    }
                    if self.paused {
                        proctitle::set("Paused");
                    } else {
                        proctitle::set(&format!("Waiting for {}", self.settings.queues.id_part()));
                    }
                    self.wait_for_work(self.settings.interval);
                }
                Err(e) => {
                    self.outage.failed(&e);
                    self.idle(retry.delay());
                }
            }
        }
    }

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
    fn queue_set(&mut self, stale: bool) -> Result<(Rc<QueueSet>, bool)> {
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

    fn reserve_and_run(&mut self) -> Result<Turn> {
        let (mut queues, mut fresh) = self.queue_set(false)?;
        loop {
            if queues.is_empty() && fresh {
                return Ok(Turn::Idle);
            }
            let now = timefmt::now_epoch();
            let reserved = if queues.is_empty() {
                Reserved::Empty
            } else {
                self.store
                    .reserve(&self.me, &queues, &timefmt::iso8601_z(now), now, true)?
            };
            match reserved {
                Reserved::Empty if !fresh => {
                    // Before going idle, make sure no queue appeared meanwhile.
                    (queues, fresh) = self.queue_set(true)?;
                }
                Reserved::Empty | Reserved::Paused => return Ok(Turn::Idle),
                Reserved::Job {
                    queue_index,
                    payload,
                    in_flight,
                } => {
                    let queue = queues.names().get(queue_index).cloned().unwrap_or_default();
                    self.process(&queue, payload, &in_flight);
                    return Ok(Turn::Worked);
                }
                Reserved::HeldByAnother { .. } => {
                    let err = Error::Conflict(format!(
                        "another live process is using worker id {}: worker:ID holds a job it reserved (the same hostname and pid in another PID namespace?); stopping without touching it",
                        self.me.id
                    ));
                    log::error!("{err}");
                    self.id_conflict = Some(err);
                    self.stop = Some(Stop::Now);
                    return Ok(Turn::Worked);
                }
                Reserved::Held { in_flight } => {
                    let (queue, payload) = match WorkerRecord::parse(&in_flight) {
                        Some(r) => (r.queue.clone(), r.payload.get().as_bytes().to_vec()),
                        None => (String::new(), in_flight.clone()),
                    };
                    log::warn!(
                        "resuming a job reserved from {queue} whose reply Redis never delivered"
                    );
                    self.process(&queue, payload, &in_flight);
                    return Ok(Turn::Worked);
                }
            }
        }
    }

    /// Runs (or refuses) one reserved job and records its outcome.
    fn process(&mut self, queue: &str, payload: Vec<u8>, in_flight: &[u8]) {
        self.jobs_done += 1;
        let started = Instant::now();
        // Bytes that are not UTF-8 are refused, never run altered: the
        // failure record keeps them exactly (contract 6).
        let parsed = std::str::from_utf8(&payload)
            .map_err(|e| MalformedPayload::NotUtf8 {
                offset: e.valid_up_to(),
            })
            .and_then(|text| Job::parse(text, queue));
        let mut started_record: Option<Vec<u8>> = None;
        let (failure, status_key, pid_key, label) = match parsed {
            Ok(job) => {
                let label = job_label(&job);
                log::info!(target: "resque_fork::job", "{label}: started");
                proctitle::set(&format!(
                    "Processing {queue} since {} [{}]",
                    timefmt::now_epoch(),
                    job.class()
                ));
                let ran = self.run_job(&job, in_flight);
                let keys = self.store.keys();
                let status = job.id().map(|id| keys.job_status(job.status_prefix(), id));
                let pid = job
                    .id()
                    .zip(ran.pid)
                    .map(|(id, pid)| (keys.job_pid(id), pid));
                started_record = ran.started_record;
                (ran.ended.into_failure(), status, pid, label)
            }
            Err(bad) => {
                let status = std::str::from_utf8(&payload)
                    .ok()
                    .and_then(|text| best_effort_status_key(self.store.keys(), text));
                let failure = Failure::new(exceptions::MALFORMED_PAYLOAD, bad.to_string());
                (
                    Some(failure),
                    status,
                    None,
                    format!("malformed job from {queue}"),
                )
            }
        };
        match &failure {
            None => {
                log::info!(target: "resque_fork::job", "{label}: done in {:?}", started.elapsed())
            }
            Some(f) => {
                log::info!(target: "resque_fork::job", "{label}: failed: {}: {}", printable(&f.exception), printable(&f.error))
            }
        }
        let record = failure
            .as_ref()
            .map(|f| failure_record(&payload, queue, f, &self.me.id, timefmt::now_epoch()));
        self.record(&Outcome {
            worker_id: &self.me.id.clone(),
            in_flight,
            in_flight_started: started_record.as_deref(),
            failure_record: record.as_deref(),
            status_key: status_key.as_deref(),
            pid_key: pid_key.as_ref().map(|(k, pid)| (k.as_str(), *pid)),
            now: timefmt::now_epoch(),
        });
    }

    /// Runs a job; the failure, if any, has been through `on_failure`.
    fn run_job(&mut self, job: &Job, in_flight: &[u8]) -> Ran {
        let ran = self.start_and_watch(job, in_flight);
        if let Ended::Failed(failure) = &ran.ended {
            self.registry.hooks().on_failure_in_worker(job, failure);
        }
        ran
    }

    fn start_and_watch(&mut self, job: &Job, in_flight: &[u8]) -> Ran {
        self.registry.hooks().before_fork(job);
        let memory = self.settings.limits.memory_bytes;
        let mut process = match child::start(
            job,
            self.registry,
            &self.exec,
            &self.me.id,
            &self.signals,
            memory,
        ) {
            Ok(p) => p,
            Err(failure) => {
                return Ran {
                    ended: Ended::Failed(failure),
                    pid: None,
                    started_record: None,
                }
            }
        };
        let pid = process.pid();
        log::debug!("{}: running as pid {pid}", job_label(job));
        proctitle::set(&format!("Forked {pid} at {}", timefmt::now_epoch()));
        // The job process leads its own process group: pgid = pid.
        let started_record = crate::payload::with_pgid(in_flight, pid);
        if let Some(started) = &started_record {
            if let Err(e) = self
                .store
                .job_started(&self.me.id, in_flight, started, job.id(), pid)
            {
                log::warn!("{e}");
            }
        }
        let mut clock = JobClock::start(
            Instant::now(),
            self.settings.limits.timeout,
            self.settings.kill,
        );
        let status = self.watch(&mut process, &mut clock);
        let ended = process.outcome(status);
        if clock.timed_out() {
            let limit = self.settings.limits.timeout.unwrap_or_default();
            let failure = Failure::new(
                exceptions::JOB_TIMEOUT,
                format!(
                    "job ran longer than JOB_TIMEOUT ({}s) and was stopped ({})",
                    limit.as_secs_f64(),
                    ended
                        .into_failure()
                        .map(|f| f.error)
                        .unwrap_or_else(|| "it then exited 0".into())
                ),
            );
            return Ran {
                ended: Ended::Failed(failure),
                pid: Some(pid),
                started_record,
            };
        }
        let limit_note = |mut f: Failure| {
            if let Some(bytes) = memory {
                f.error.push_str(&format!(
                    " (JOB_MEMORY_LIMIT of {} MB was in force)",
                    bytes >> 20
                ));
            }
            f
        };
        let ended = match ended {
            Ended::Completed => Ended::Completed,
            Ended::FailedInJob(f) => Ended::FailedInJob(limit_note(f)),
            Ended::Failed(f) => Ended::Failed(limit_note(f)),
        };
        Ran {
            ended,
            pid: Some(pid),
            started_record,
        }
    }

    /// Waits up to `duration` for a job: with BLOCKING, until a doorbell
    /// rings (see [`crate::doorbell`]); otherwise by sleeping. Returns early
    /// when a signal changes what the loop should do.
    fn wait_for_work(&mut self, duration: Duration) {
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
            Some(bells) => bells.arm(&keys),
            None => return self.idle(duration),
        };
        if let Err(e) = armed {
            log::debug!("arming the BLOCKING doorbells failed ({e}); polling this time");
            return self.idle(duration);
        }
        self.wait(duration, true);
    }

    /// Sleeps up to `duration` serving signals only, returning early on one:
    /// for startup, before the id is ours to heartbeat under.
    fn pause(&mut self, duration: Duration) {
        signals::wait_readable(&[self.signals.fd()], duration);
        self.handle_signals(None);
    }

    /// Sleeps up to `duration`, returning early when a signal changes what
    /// the loop should do.
    fn idle(&mut self, duration: Duration) {
        self.wait(duration, false);
    }

    /// The one waiting loop: signals, housekeeping deadlines and, with
    /// `bells`, the armed doorbells, all in one `poll(2)`.
    fn wait(&mut self, duration: Duration, bells: bool) {
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
                    signals::wait_readable(&fds, wait);
                    doorbells.collect()
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

    /// Acts on the signals received; `job` is the running job, if any.
    fn handle_signals(&mut self, mut job: Option<(&JobProcess, &mut JobClock)>) {
        for sig in self.signals.drain() {
            match sig {
                // While a job runs, `JobProcess::try_reap` reaps for us.
                Signal::SIGCHLD if job.is_none() => child::reap_orphans(),
                Signal::SIGQUIT => self.stop_after_job("QUIT"),
                Signal::SIGTERM if self.settings.graceful_term => {
                    self.stop_after_job("TERM (GRACEFUL_TERM)")
                }
                Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP => {
                    log::info!("{} received: stopping now", sig.as_str());
                    self.stop = Some(Stop::Now);
                    self.stop_job(&mut job);
                }
                Signal::SIGUSR1 => {
                    if job.is_some() {
                        log::info!("USR1 received: stopping the current job");
                    }
                    self.stop_job(&mut job);
                }
                Signal::SIGUSR2 => {
                    log::info!("USR2 received: paused, taking no new jobs");
                    self.paused = true;
                }
                Signal::SIGCONT => {
                    if self.paused {
                        log::info!("CONT received: resuming");
                    }
                    self.paused = false;
                }
                _ => {}
            }
        }
    }

    /// Stops the running job, if any: SIGKILL at once, or with TERM_CHILD,
    /// SIGTERM after the pre-shutdown timeout and SIGKILL after the term
    /// timeout (see [`JobClock::stop`]).
    fn stop_job(&self, job: &mut Option<(&JobProcess, &mut JobClock)>) {
        if let Some((process, clock)) = job {
            let due = clock.stop(Instant::now());
            self.act_on_job(process, &due);
        }
    }

    fn stop_after_job(&mut self, why: &str) {
        log::info!("{why} received: finishing the current job, then exiting");
        self.stop = self.stop.max(Some(Stop::AfterJob));
    }

    /// Waits for the job process, serving signals, its clock and heartbeats.
    fn watch(&mut self, process: &mut JobProcess, clock: &mut JobClock) -> WaitStatus {
        loop {
            if let Some(status) = process.try_reap() {
                return status;
            }
            let mut fds = vec![self.signals.fd()];
            fds.extend(process.fds());
            signals::wait_readable(&fds, self.until_deadline(clock.next()));
            process.read_pipes();
            self.handle_signals(Some((process, &mut *clock)));
            let due = clock.due(Instant::now());
            self.act_on_job(process, &due);
            self.housekeeping();
        }
    }

    /// Does what the job's clock says is due.
    fn act_on_job(&self, process: &JobProcess, actions: &[Action]) {
        for action in actions {
            match action {
                Action::TimedOut => log::warn!(
                    "job process {} exceeded JOB_TIMEOUT: sending TERM, then KILL after {}s",
                    process.pid(),
                    self.settings.kill.term_timeout.as_secs_f64()
                ),
                Action::Term => {
                    log::info!("sending TERM to job process {}", process.pid());
                    process.signal(Signal::SIGTERM);
                }
                Action::Kill => {
                    log::info!("sending KILL to job process {}", process.pid());
                    process.signal(Signal::SIGKILL);
                }
            }
        }
    }

    /// Time until the next heartbeat, prune, or step of the job's clock.
    fn until_deadline(&self, job: Option<Instant>) -> Duration {
        let next = self.next_heartbeat.min(self.next_prune);
        let next = job.map_or(next, |j| next.min(j));
        next.saturating_duration_since(Instant::now())
    }

    /// The periodic duties: the heartbeat, and pruning dead workers. Their
    /// Redis errors are retried later, never fatal.
    fn housekeeping(&mut self) {
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
    }

    fn heartbeat(&mut self) -> Result<()> {
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

    fn prune(&mut self) {
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
    fn orphan_hooks<'a>(&self, jobs: impl Iterator<Item = &'a Unregistered>) {
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

    /// Records an outcome, retrying while Redis is away: a finished job is
    /// never forgotten while the worker lives, and never counted twice.
    fn record(&mut self, outcome: &Outcome<'_>) {
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
                    signals::wait_readable(&[self.signals.fd()], retry.delay());
                }
            }
        }
    }

    fn unregister(&mut self) {
        let requeue = self.settings.prune.requeue_orphans;
        for attempt in 1..=3 {
            match prune::unregister(
                &mut self.store,
                &self.me.id,
                &prune::dirty_exit,
                requeue,
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

/// How the log names a job; its parts came from the payload, so control
/// characters in them are escaped.
fn job_label(job: &Job) -> String {
    let label = match job.id() {
        Some(id) => format!("job {} ({id}) from {}", job.class(), job.queue()),
        None => format!("job {} from {}", job.class(), job.queue()),
    };
    printable(&label).into_owned()
}
