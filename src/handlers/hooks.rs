//! Hooks: Resque's and php-resque's set, where they make sense in Rust.
//!
//! | hook | runs in | when |
//! |---|---|---|
//! | `before_first_fork(worker_id)` | worker | once, after pruning, before registering |
//! | `before_fork(job)` | worker | every job, after it is reserved, before its process starts |
//! | `after_fork(job)` | job process | Rust jobs, first thing after the fork |
//! | `before_perform(job)` | job process | Rust jobs; [`Flow::Skip`] skips the job, which then counts as processed, not failed (Ruby's `DontPerform`); `Err` fails it |
//! | `after_perform(job)` | job process | Rust jobs that succeeded |
//! | `on_failure(job, failure)` | job process | a Rust job's `Err`, panic, or `before_perform` error |
//! | `on_failure(job, failure)` | worker | failures the worker records itself: dirty exits, timeouts, exec jobs that fail, unknown classes; and, in the worker that prunes, jobs orphaned by dead workers |
//! | `worker_exit(worker_id)` | worker | after unregistering |
//!
//! Exec jobs (programs in `JOBS_DIR`) get `before_fork` and the worker-side
//! `on_failure`; a program does its own setup and teardown. A hook that
//! panics in the worker is logged and ignored; in the job process it fails
//! the job.

use crate::handlers::registry::JobError;
use crate::payload::{Failure, Job};

/// What a `before_perform` hook decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Run the job.
    Continue,
    /// Do not run it; it counts as processed, not failed.
    Skip,
}

type WorkerHook = Box<dyn Fn(&str) + Send + Sync>;
type JobHook = Box<dyn Fn(&Job) + Send + Sync>;
type GateHook = Box<dyn Fn(&Job) -> Result<Flow, JobError> + Send + Sync>;
type FailureHook = Box<dyn Fn(&Job, &Failure) + Send + Sync>;

/// The hooks of a [`Registry`](crate::Registry), each list run in the order added.
#[derive(Default)]
pub struct Hooks {
    pub(crate) before_first_fork: Vec<WorkerHook>,
    pub(crate) before_fork: Vec<JobHook>,
    pub(crate) after_fork: Vec<JobHook>,
    pub(crate) before_perform: Vec<GateHook>,
    pub(crate) after_perform: Vec<JobHook>,
    pub(crate) on_failure: Vec<FailureHook>,
    pub(crate) worker_exit: Vec<WorkerHook>,
}

/// Runs a hook in the worker process: a panic is logged, not fatal.
fn guarded(what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        log::error!("the {what} hook panicked; carrying on");
    }
}

impl Hooks {
    pub(crate) fn before_first_fork(&self, worker_id: &str) {
        for h in &self.before_first_fork {
            guarded("before_first_fork", || h(worker_id));
        }
    }

    pub(crate) fn before_fork(&self, job: &Job) {
        for h in &self.before_fork {
            guarded("before_fork", || h(job));
        }
    }

    pub(crate) fn worker_exit(&self, worker_id: &str) {
        for h in &self.worker_exit {
            guarded("worker_exit", || h(worker_id));
        }
    }

    /// In the worker, for failures it records itself.
    pub(crate) fn on_failure_in_worker(&self, job: &Job, failure: &Failure) {
        for h in &self.on_failure {
            guarded("on_failure", || h(job, failure));
        }
    }

    /// In the job process: `after_fork`, `before_perform`, the job,
    /// `after_perform` or `on_failure`. Panics propagate to the caller,
    /// which turns them into failures.
    pub(crate) fn around(
        &self,
        job: &Job,
        perform: impl FnOnce() -> Result<(), JobError>,
    ) -> Result<Flow, JobError> {
        for h in &self.after_fork {
            h(job);
        }
        for h in &self.before_perform {
            if h(job)? == Flow::Skip {
                return Ok(Flow::Skip);
            }
        }
        perform()?;
        for h in &self.after_perform {
            h(job);
        }
        Ok(Flow::Continue)
    }

    pub(crate) fn on_failure_in_job(&self, job: &Job, failure: &Failure) {
        for h in &self.on_failure {
            h(job, failure);
        }
    }
}
