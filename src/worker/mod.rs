//! One worker process: reserve → start the job process → watch it → record,
//! in a single thread, with signals, the job process and time all waited for
//! in one `poll(2)`.
//!
//! Redis may go away at any moment. Nothing here treats that as fatal: the
//! loop backs off and retries, logging once per outage; a finished job's
//! outcome is kept until it is recorded (and the record step is idempotent,
//! so a retry never counts twice); no new job is reserved meanwhile.

mod housekeeping;
mod job;
mod retrying;
mod startup;
mod waiting;

use crate::backoff::Backoff;
use crate::child::{self, Ended, JobProcess};
use crate::config::{RedisSettings, WorkerSettings};
use crate::doorbell::{self, Doorbells};
use crate::error::{Error, Result};
use crate::handlers::exec::ExecHandler;
use crate::handlers::Registry;
use crate::job_clock::{Action, JobClock};
use crate::metrics::{FieldCache, JobOutcome};
use crate::payload::{
    best_effort_status_key, exceptions, failure_record, Failure, Job, MalformedPayload,
    WorkerRecord,
};
use crate::proctitle;
use crate::promoter::Promoter;
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
/// The longest queue list the record step also reserves from (it passes the
/// list whole, and the script copies it once more).
const CHAIN_MAX_QUEUES: usize = 100;

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
            // A failover the Sentinels announced is planned, not an outage.
            if matches!(err, Error::Failover(_)) {
                log::warn!("{err}");
            } else {
                log::error!("{err}; retrying until Redis answers");
            }
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
    /// Promotes due delayed jobs, in a worker that is its own pool.
    promoter: Option<Promoter>,
    /// The metrics' field names by queue and class, built once.
    metric_fields: FieldCache,
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
        let store = Store::open_with(redis)?;
        let signals =
            SignalPipe::install(HANDLED).map_err(|e| Error::io("installing signal handlers", e))?;
        let now = Instant::now();
        let doorbells = if settings.blocking {
            // The URL's credentials and database; the node is the store's.
            let info = redis::IntoConnectionInfo::into_connection_info(redis.url.as_str())
                .map_err(|e| Error::redis("reading REDIS_URL", e))?;
            let bells = Doorbells::new(&info);
            if bells.is_none() {
                log::warn!("BLOCKING is not available for a TLS address with its own certificates: polling every INTERVAL instead");
            }
            bells
        } else {
            None
        };
        let promoter = settings
            .scheduler
            .as_ref()
            .map(|s| Promoter::new(s, me.id.clone()))
            .transpose()?;
        let exec = ExecHandler::new(
            settings.jobs_dir.clone(),
            settings.limits.memory_bytes,
            settings.job_env_keep_redis,
        );
        child::prepare_job_process(&me.id, settings.job_env_keep_redis);
        Ok(Worker {
            doorbells,
            me,
            exec,
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
            promoter,
            metric_fields: FieldCache::default(),
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
                    self.back_off(retry.delay());
                }
            }
        }
    }

    fn reserve_and_run(&mut self) -> Result<Turn> {
        let (mut queues, mut fresh) = self.queue_set(false)?;
        // The next job, when the last one's record step reserved it.
        let mut chained: Option<Reserved> = None;
        loop {
            let from_chain = chained.is_some();
            let reserved = match chained.take() {
                Some(next) => next,
                None if queues.is_empty() && fresh => return Ok(Turn::Idle),
                None if queues.is_empty() => Reserved::Empty,
                None => {
                    let now = timefmt::now_epoch();
                    self.store
                        .reserve(&self.me, &queues, &timefmt::iso8601_z(now), now, true)?
                }
            };
            match reserved {
                // The loop's top decides what comes next (it reserves again,
                // so a new queue or the end of a pause is seen as before).
                Reserved::Empty | Reserved::Paused if from_chain => return Ok(Turn::Worked),
                Reserved::Empty if !fresh => {
                    // Before going idle, make sure no queue appeared meanwhile.
                    (queues, fresh) = self.queue_set(true)?;
                }
                Reserved::Empty | Reserved::Paused => return Ok(Turn::Idle),
                Reserved::Job {
                    queue_index,
                    payload,
                    in_flight,
                    status_tracked,
                } => {
                    let queue = queues.names().get(queue_index).cloned().unwrap_or_default();
                    chained = self.process(&queue, payload, &in_flight, &queues, status_tracked);
                    if chained.is_none() {
                        return Ok(Turn::Worked);
                    }
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
                        "resuming a job reserved from {queue} whose reserve step did not finish (its reply was lost, or no replica confirmed it)"
                    );
                    // (Whether it has a status record is not known here.)
                    chained = self.process(&queue, payload, &in_flight, &queues, true);
                    if chained.is_none() {
                        return Ok(Turn::Worked);
                    }
                }
            }
        }
    }

    /// Runs (or refuses) one reserved job and records its outcome; when
    /// the worker goes straight on to the next job, the record step also
    /// reserves it from `next_from`, and that is returned. `status_tracked`
    /// false: the job has no php status record to finish.
    fn process(
        &mut self,
        queue: &str,
        payload: Vec<u8>,
        in_flight: &[u8],
        next_from: &QueueSet,
        status_tracked: bool,
    ) -> Option<Reserved> {
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
        let mut retry = None;
        let mut figures = None;
        let (failure, status_key, pid_key, label) = match parsed {
            Ok(job) => {
                // (Built only for the log lines that use it.)
                let label = if log::log_enabled!(target: "resque_fork::job", log::Level::Info) {
                    job_label(&job)
                } else {
                    String::new()
                };
                log::info!(target: "resque_fork::job", "{label}: started");
                proctitle::set_fmt(format_args!(
                    "Processing {} since {} [{}]",
                    printable(queue),
                    timefmt::now_epoch(),
                    printable(job.class())
                ));
                let waited = job.enqueued_at().map(|t| timefmt::now_fraction() - t);
                let ran = self.run_job(&job, in_flight);
                let keys = self.store.keys();
                let status = job
                    .id()
                    .filter(|_| status_tracked)
                    .map(|id| keys.job_status(job.status_prefix(), id));
                // php's pid key exists only once the started note wrote it:
                // a job that ended sooner leaves none to look for.
                let pid = job
                    .id()
                    .zip(ran.pid)
                    .filter(|_| ran.started_record.is_some())
                    .map(|(id, pid)| (keys.job_pid(id), pid));
                started_record = ran.started_record;
                let failure = ran.ended.into_failure();
                retry = self.plan_retry(&job, failure.as_ref());
                let outcome = match &failure {
                    None => JobOutcome::Completed,
                    Some(_) if retry.as_ref().is_some_and(|r| r.item.is_some()) => {
                        JobOutcome::Retried
                    }
                    Some(f) if f.exception == exceptions::DIRTY_EXIT => JobOutcome::DirtyExit,
                    Some(_) => JobOutcome::Failed,
                };
                figures = Some(self.metric_fields.figures(
                    queue,
                    job.class(),
                    outcome,
                    started.elapsed(),
                    waited,
                ));
                (failure, status, pid, label)
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
                let note = retry.as_ref().and_then(|r| r.note.as_deref()).unwrap_or("");
                log::info!(target: "resque_fork::job", "{label}: failed: {}: {}{note}", printable(&f.exception), printable(&f.error))
            }
        }
        let record = failure
            .as_ref()
            .map(|f| failure_record(&payload, queue, f, &self.me.id, timefmt::now_epoch()));
        let outcome = Outcome {
            worker_id: &self.me.id.clone(),
            in_flight,
            in_flight_started: started_record.as_deref(),
            failure_record: record.as_deref(),
            status_key: status_key.as_deref(),
            pid_key: pid_key.as_ref().map(|(k, pid)| (k.as_str(), *pid)),
            now: timefmt::now_epoch(),
            retry: retry.as_ref().map(|r| r.write()),
            figures: figures.as_ref(),
        };
        if self.goes_straight_on(next_from) {
            return self.record_then_reserve(&outcome, next_from);
        }
        self.record(&outcome);
        None
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
                // With a schedule file, HUP re-reads it (a lone worker is its
                // pool); a supervised worker's HUP is its supervisor's death.
                Signal::SIGHUP
                    if self
                        .promoter
                        .as_ref()
                        .is_some_and(|p| p.has_schedule_file()) =>
                {
                    if let Some(p) = self.promoter.as_mut() {
                        p.reload();
                    }
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

    fn stop_after_job(&mut self, why: &str) {
        log::info!("{why} received: finishing the current job, then exiting");
        self.stop = self.stop.max(Some(Stop::AfterJob));
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
