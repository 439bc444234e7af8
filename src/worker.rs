//! One worker process: reserve → start the job process → watch it → record,
//! in a single thread, with signals, the job process and time all waited for
//! in one `poll(2)`.

use crate::child::{self, JobProcess};
use crate::config::{RedisSettings, WorkerSettings};
use crate::error::Result;
use crate::handlers::exec::ExecHandler;
use crate::handlers::Registry;
use crate::keys::Keys;
use crate::payload::{exceptions, failure_record, Failure, Job};
use crate::proctitle;
use crate::prune;
use crate::signals::{self, SignalPipe, HANDLED};
use crate::store::{Outcome, Reserved, Store};
use crate::timefmt;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use std::time::{Duration, Instant};

const HEARTBEAT_RETRY: Duration = Duration::from_secs(5);
const REDIS_RETRY_MAX: Duration = Duration::from_secs(10);

/// How a requested stop proceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stop {
    /// QUIT: finish the current job, then exit.
    AfterJob,
    /// TERM/INT: kill the current job, record it, exit.
    Now,
}

/// The TERM_CHILD schedule for stopping the current job process.
#[derive(Debug, Clone, Copy)]
struct KillPlan {
    term_at: Instant,
    kill_at: Instant,
    termed: bool,
}

/// What one turn of the loop did.
enum Turn {
    Worked,
    Idle,
}

/// A registered worker and its loop.
pub struct Worker<'r> {
    id: String,
    /// `host:pid`, the id without its queues (node-resque's worker name).
    name: String,
    hostname: String,
    settings: WorkerSettings,
    store: Store,
    registry: &'r Registry,
    exec: ExecHandler,
    signals: SignalPipe,
    stop: Option<Stop>,
    paused: bool,
    next_heartbeat: Instant,
    kill_plan: Option<KillPlan>,
}

/// This host's name as Resque writes it in worker ids (the uname nodename),
/// with any `:` replaced, since ids are split on `:`.
pub fn hostname() -> String {
    let name = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.replace(':', "-");
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

impl<'r> Worker<'r> {
    /// Connects to Redis and routes signals; does not register yet.
    pub fn new(
        settings: WorkerSettings,
        redis: &RedisSettings,
        registry: &'r Registry,
    ) -> Result<Worker<'r>> {
        let hostname = hostname();
        let name = format!("{hostname}:{}", std::process::id());
        let id = format!("{name}:{}", settings.queues.id_part());
        let store = Store::connect(&redis.url, Keys::new(&redis.prefix))?;
        let signals = SignalPipe::install(HANDLED)
            .map_err(|e| crate::Error::io("installing signal handlers", e))?;
        Ok(Worker {
            id,
            name,
            hostname,
            exec: ExecHandler::new(settings.jobs_dir.clone()),
            settings,
            store,
            registry,
            signals,
            stop: None,
            paused: false,
            next_heartbeat: Instant::now(),
            kill_plan: None,
        })
    }

    /// This worker's id, `host:pid:queues`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Registers, works until told to stop (or, with a zero interval, until
    /// the queues are empty), and unregisters.
    pub fn run(mut self) -> Result<()> {
        self.startup()?;
        // Unregister even if the loop panics (a bug): a registered worker
        // that no longer runs would otherwise wait for pruning.
        let looped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.work_loop()));
        self.unregister();
        if let Err(panic) = looped {
            std::panic::resume_unwind(panic);
        }
        Ok(())
    }

    fn startup(&mut self) -> Result<()> {
        proctitle::set("Starting");
        self.heartbeat()?;
        match prune::prune_dead_local_workers(
            &mut self.store,
            &self.id,
            &self.hostname,
            timefmt::now_epoch(),
        ) {
            Ok(_) => {}
            Err(e) => log::warn!("pruning dead workers failed: {e}"),
        }
        let started = timefmt::ruby_time(timefmt::now_epoch());
        self.store.register(&self.id, &started)?;
        log::info!(
            "worker {} started: queues {}, interval {}s, jobs dir {}",
            self.id,
            self.settings.queues.id_part(),
            self.settings.interval.as_secs_f64(),
            self.exec.jobs_dir().display()
        );
        Ok(())
    }

    fn work_loop(&mut self) {
        let mut retry = Duration::from_millis(100);
        let mut outage = false;
        loop {
            self.handle_signals(None);
            if self.stop.is_some() {
                return;
            }
            self.heartbeat_if_due();
            let turn = if self.paused {
                Ok(Turn::Idle)
            } else {
                self.reserve_and_run()
            };
            match turn {
                Ok(turn) => {
                    if outage {
                        log::warn!("Redis is reachable again");
                        outage = false;
                    }
                    retry = Duration::from_millis(100);
                    if let Turn::Idle = turn {
                        if self.settings.interval.is_zero() {
                            log::info!("queues are empty and INTERVAL is 0: exiting");
                            return;
                        }
                        if self.paused {
                            proctitle::set("Paused");
                        } else {
                            proctitle::set(&format!(
                                "Waiting for {}",
                                self.settings.queues.id_part()
                            ));
                        }
                        self.idle(self.settings.interval);
                    }
                }
                Err(e) => {
                    if !outage {
                        log::error!("{e}; retrying with backoff");
                        outage = true;
                    }
                    self.idle(retry);
                    retry = (retry * 2).min(REDIS_RETRY_MAX);
                }
            }
        }
    }

    fn queue_list(&mut self) -> Result<Vec<String>> {
        let spec = &self.settings.queues;
        if spec.is_dynamic() {
            let known = self.store.queue_names()?;
            Ok(self.settings.queues.resolve(&known))
        } else {
            Ok(spec.names().to_vec())
        }
    }

    fn reserve_and_run(&mut self) -> Result<Turn> {
        let queues = self.queue_list()?;
        if queues.is_empty() {
            return Ok(Turn::Idle);
        }
        let now = timefmt::now_epoch();
        let reserved = self.store.reserve(
            &self.id,
            &self.name,
            &queues,
            &timefmt::iso8601_z(now),
            now,
            true,
        )?;
        match reserved {
            Reserved::Empty | Reserved::Paused => Ok(Turn::Idle),
            Reserved::Job {
                queue_index,
                payload,
                in_flight,
            } => {
                let queue = queues.get(queue_index).cloned().unwrap_or_default();
                self.process(&queue, payload, &in_flight);
                Ok(Turn::Worked)
            }
        }
    }

    /// Runs (or refuses) one reserved job and records its outcome.
    fn process(&mut self, queue: &str, payload: Vec<u8>, in_flight: &[u8]) {
        let text = String::from_utf8(payload)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        let started = Instant::now();
        let (failure, status_key, pid_key, label) = match Job::parse(&text, queue) {
            Ok(job) => {
                let label = job_label(&job);
                log::info!("{label}: started");
                proctitle::set(&format!(
                    "Processing {queue} since {} [{}]",
                    timefmt::now_epoch(),
                    job.class()
                ));
                let failure = self.run_job(&job);
                let keys = self.store.keys();
                let status = job.id().map(|id| keys.job_status(job.status_prefix(), id));
                let pid = job.id().map(|id| keys.job_pid(id));
                (failure, status, pid, label)
            }
            Err(bad) => {
                let status = best_effort_status_key(self.store.keys(), &text);
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
            None => log::info!("{label}: done in {:?}", started.elapsed()),
            Some(f) => log::info!("{label}: failed: {}: {}", f.exception, f.error),
        }
        let record = failure
            .as_ref()
            .map(|f| failure_record(&text, queue, f, &self.id, timefmt::now_epoch()));
        self.record(&Outcome {
            worker_id: &self.id.clone(),
            in_flight,
            failure_record: record.as_deref(),
            status_key: status_key.as_deref(),
            pid_key: pid_key.as_deref(),
            now: timefmt::now_epoch(),
        });
    }

    fn run_job(&mut self, job: &Job) -> Option<Failure> {
        let mut process =
            match child::start(job, self.registry, &self.exec, &self.id, &self.signals) {
                Ok(p) => p,
                Err(failure) => return Some(failure),
            };
        log::debug!("{}: running as pid {}", job_label(job), process.pid());
        proctitle::set(&format!(
            "Forked {} at {}",
            process.pid(),
            timefmt::now_epoch()
        ));
        if let Some(id) = job.id() {
            if let Err(e) = self.store.set_job_pid(id, process.pid()) {
                log::warn!("{e}");
            }
        }
        let status = self.watch(&mut process);
        self.kill_plan = None;
        process.outcome(status)
    }

    /// Waits for the job process, serving signals and heartbeats meanwhile.
    fn watch(&mut self, process: &mut JobProcess) -> WaitStatus {
        loop {
            if let Some(status) = process.try_reap() {
                return status;
            }
            let mut fds = vec![self.signals.fd()];
            fds.extend(process.fds());
            signals::wait_readable(&fds, self.until_deadline());
            process.read_pipes();
            self.handle_signals(Some(process));
            self.advance_kill_plan(process);
            self.heartbeat_if_due();
        }
    }

    /// Sleeps up to `duration`, returning early when a signal changes what
    /// the loop should do.
    fn idle(&mut self, duration: Duration) {
        let deadline = Instant::now() + duration;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let wait = (deadline - now).min(self.until_heartbeat());
            signals::wait_readable(&[self.signals.fd()], wait);
            let before = (self.stop, self.paused);
            self.handle_signals(None);
            if (self.stop, self.paused) != before {
                return;
            }
            self.heartbeat_if_due();
        }
    }

    fn handle_signals(&mut self, process: Option<&JobProcess>) {
        for sig in self.signals.drain() {
            match sig {
                Signal::SIGQUIT => self.stop_after_job("QUIT"),
                Signal::SIGTERM if self.settings.graceful_term => {
                    self.stop_after_job("TERM (GRACEFUL_TERM)")
                }
                Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP => {
                    log::info!("{} received: stopping now", sig.as_str());
                    self.stop = Some(Stop::Now);
                    self.kill_job(process);
                }
                Signal::SIGUSR1 => {
                    if process.is_some() {
                        log::info!("USR1 received: stopping the current job");
                    }
                    self.kill_job(process);
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

    /// Stops the job process: SIGKILL at once, or with TERM_CHILD, SIGTERM
    /// after the pre-shutdown timeout and SIGKILL after the term timeout.
    fn kill_job(&mut self, process: Option<&JobProcess>) {
        let Some(process) = process else { return };
        let kill = self.settings.kill;
        if !kill.term_child {
            process.signal(Signal::SIGKILL);
            return;
        }
        if self.kill_plan.is_none() {
            let term_at = Instant::now() + kill.pre_shutdown_timeout;
            self.kill_plan = Some(KillPlan {
                term_at,
                kill_at: term_at + kill.term_timeout,
                termed: false,
            });
        }
        self.advance_kill_plan(process);
    }

    fn advance_kill_plan(&mut self, process: &JobProcess) {
        let Some(plan) = self.kill_plan.as_mut() else {
            return;
        };
        let now = Instant::now();
        if !plan.termed && now >= plan.term_at {
            log::info!("sending TERM to job process {}", process.pid());
            process.signal(Signal::SIGTERM);
            plan.termed = true;
        }
        if now >= plan.kill_at {
            log::info!(
                "job process {} outlived the term timeout: KILL",
                process.pid()
            );
            process.signal(Signal::SIGKILL);
            // Nothing is left to schedule but a re-send, should it linger.
            plan.kill_at = now + Duration::from_secs(1);
        }
    }

    /// Time until the next heartbeat or kill-plan step.
    fn until_deadline(&self) -> Duration {
        let mut next = self.next_heartbeat;
        if let Some(plan) = &self.kill_plan {
            next = next.min(if plan.termed {
                plan.kill_at
            } else {
                plan.term_at
            });
        }
        next.saturating_duration_since(Instant::now())
    }

    fn until_heartbeat(&self) -> Duration {
        self.next_heartbeat
            .saturating_duration_since(Instant::now())
    }

    fn heartbeat_if_due(&mut self) {
        if Instant::now() < self.next_heartbeat {
            return;
        }
        if let Err(e) = self.heartbeat() {
            log::warn!("{e}");
            self.next_heartbeat = Instant::now() + HEARTBEAT_RETRY;
        }
    }

    fn heartbeat(&mut self) -> Result<()> {
        let now = self.store.server_time()?;
        self.store
            .heartbeat(&self.id, &timefmt::iso8601_offset(now))?;
        self.next_heartbeat = Instant::now() + self.settings.heartbeat_interval;
        Ok(())
    }

    /// Records an outcome, retrying while Redis is away: a finished job is
    /// never forgotten while the worker lives.
    fn record(&mut self, outcome: &Outcome<'_>) {
        let mut delay = Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            match self.store.record(outcome) {
                Ok(true) => return,
                Ok(false) => {
                    log::warn!(
                        "the job of {} was already accounted for by another process (pruned?); not counting it again",
                        self.id
                    );
                    return;
                }
                Err(e) => {
                    attempts += 1;
                    self.handle_signals(None);
                    if self.stop == Some(Stop::Now) && attempts >= 3 {
                        log::error!(
                            "{e}; giving up at shutdown. Unrecorded outcome: {}",
                            outcome.failure_record.unwrap_or("complete")
                        );
                        return;
                    }
                    log::error!("{e}; retrying in {delay:?}");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(REDIS_RETRY_MAX);
                }
            }
        }
    }

    fn unregister(&mut self) {
        let failure = Failure::new(exceptions::DIRTY_EXIT, "Job still being processed");
        for attempt in 1..=3 {
            match self
                .store
                .unregister(&self.id, &failure, timefmt::now_epoch())
            {
                Ok(_) => {
                    log::info!("worker {} unregistered", self.id);
                    return;
                }
                Err(e) if attempt == 3 => log::error!("{e}; the next start on this host prunes it"),
                Err(_) => std::thread::sleep(Duration::from_millis(200 * attempt)),
            }
        }
    }
}

fn job_label(job: &Job) -> String {
    match job.id() {
        Some(id) => format!("job {} ({id}) from {}", job.class(), job.queue()),
        None => format!("job {} from {}", job.class(), job.queue()),
    }
}

/// The php status key of a payload that is an object with an `id`, even when
/// it is otherwise unrunnable.
fn best_effort_status_key(keys: &Keys, text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let id = value.get("id")?.as_str().filter(|s| !s.is_empty())?;
    let prefix = value.get("prefix").and_then(|p| p.as_str());
    Some(keys.job_status(prefix, id))
}
