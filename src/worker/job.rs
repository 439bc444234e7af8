//! One job's run from the worker's side: start its process, watch it (its
//! pipes, signals and its clock), turn its end into an outcome.
use super::*;

/// How long a job process runs before the worker notes it in Redis (its
/// process group in `worker:ID`, php's `job:ID:pid`). A job that ends
/// sooner is recorded without the note: for the many short jobs that
/// saves a Redis command per job (a quarter of Redis's CPU per job). What it
/// costs: a worker killed in a job's first moments leaves a record without
/// the process group, so the pruner cannot stop what that job started in
/// those moments (the job process itself dies with its worker).
const STARTED_NOTE_AFTER: Duration = Duration::from_millis(10);

/// The note that a job's process started, waiting for its moment.
pub(super) struct StartedNote<'a> {
    /// When the note is to be sent; `None` once it has been.
    due: Option<Instant>,
    in_flight: &'a [u8],
    job_id: Option<&'a str>,
    pid: i32,
    /// The record with the job's process group, made when the note is
    /// due (most jobs end before: nothing to make).
    started: Option<Vec<u8>>,
}

impl Worker<'_> {
    /// Runs a job; the failure, if any, has been through `on_failure`.
    pub(super) fn run_job(&mut self, job: &Job, in_flight: &[u8]) -> Ran {
        let ran = self.start_and_watch(job, in_flight);
        if let Ended::Failed(failure) = &ran.ended {
            self.registry.hooks().on_failure_in_worker(job, failure);
        }
        ran
    }

    pub(super) fn start_and_watch(&mut self, job: &Job, in_flight: &[u8]) -> Ran {
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
        proctitle::set_fmt(format_args!("Forked {pid} at {}", timefmt::now_epoch()));
        let now = Instant::now();
        let mut note = StartedNote {
            due: Some(now + STARTED_NOTE_AFTER),
            in_flight,
            job_id: job.id(),
            pid,
            started: None,
        };
        let mut clock = JobClock::start(now, self.settings.limits.timeout, self.settings.kill);
        let status = self.watch(&mut process, &mut clock, &mut note);
        let started_record = note.started;
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

    /// Waits for the job process, serving signals, its clock, heartbeats
    /// and, once it is due, the note that the job's process started.
    pub(super) fn watch(
        &mut self,
        process: &mut JobProcess,
        clock: &mut JobClock,
        note: &mut StartedNote<'_>,
    ) -> WaitStatus {
        // A process started a moment ago has not ended yet: the first look
        // is the poll below (its end wakes it, by SIGCHLD on the signal
        // pipe), which saves a wait4 per job.
        let mut just_started = true;
        loop {
            if !std::mem::take(&mut just_started) {
                if let Some(status) = process.try_reap() {
                    return status;
                }
            }
            let next = match (clock.next(), note.due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // (On the stack: while a job runs, every heap page the worker
            // writes costs it a fault, the fork having shared them all.)
            let mut fds = [self.signals.fd(); 3];
            let mut n = 1;
            for (slot, fd) in fds[1..].iter_mut().zip(process.fds()) {
                *slot = fd;
                n += 1;
            }
            signals::wait_readable(&fds[..n], self.until_deadline(next));
            process.read_pipes();
            self.handle_signals(Some((process, &mut *clock)));
            let now = Instant::now();
            if note.due.take_if(|due| *due <= now).is_some() {
                // The job process leads its own process group: pgid = pid.
                note.started = crate::payload::with_pgid(note.in_flight, note.pid);
                if let Some(started) = &note.started {
                    if let Err(e) = self.store.job_started(
                        &self.me.id,
                        note.in_flight,
                        started,
                        note.job_id,
                        note.pid,
                    ) {
                        log::warn!("{e}");
                    }
                }
            }
            let due = clock.due(now);
            self.act_on_job(process, &due);
            self.housekeeping();
        }
    }

    /// Does what the job's clock says is due.
    pub(super) fn act_on_job(&self, process: &JobProcess, actions: &[Action]) {
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

    /// Stops the running job, if any: SIGKILL at once, or with TERM_CHILD,
    /// SIGTERM after the pre-shutdown timeout and SIGKILL after the term
    /// timeout (see [`JobClock::stop`]).
    pub(super) fn stop_job(&self, job: &mut Option<(&JobProcess, &mut JobClock)>) {
        if let Some((process, clock)) = job {
            let due = clock.stop(Instant::now());
            self.act_on_job(process, &due);
        }
    }
}
