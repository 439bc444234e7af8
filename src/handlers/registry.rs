//! Rust job functions by class name, run in the forked job process.

use crate::handlers::hooks::{Flow, Hooks};
use crate::handlers::typed::{self, TypedJob};
use crate::payload::{exceptions, Failure, Job, RetryRequest};
use crate::retry::RetryPolicy;
use std::collections::HashMap;
use std::fmt;

/// What a job function returns.
pub type JobResult = Result<(), JobError>;

type JobFn = dyn Fn(&Job) -> JobResult + Send + Sync;

/// A job failure, as it will appear in resque-web: exception name, message
/// and backtrace lines.
///
/// Any `std::error::Error` converts into it with `?`, taking the error's type
/// name as the exception and the place of the `?` as the backtrace:
///
/// ```
/// use resque_fork::JobError;
/// fn parse(n: &str) -> Result<i64, JobError> {
///     Ok(n.parse::<i64>()?)
/// }
/// let err = parse("x").unwrap_err();
/// assert_eq!(err.exception(), "core::num::error::ParseIntError");
/// assert_eq!(err.message(), "invalid digit found in string");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    exception: String,
    message: String,
    backtrace: Vec<String>,
    /// `Some` when the job asks to be retried: with its own delay, or the
    /// policy's.
    retry: Option<Option<std::time::Duration>>,
}

impl JobError {
    /// A failure with an exception name of your choosing.
    pub fn new(exception: impl Into<String>, message: impl Into<String>) -> JobError {
        JobError {
            exception: exception.into(),
            message: message.into(),
            backtrace: Vec::new(),
            retry: None,
        }
    }

    /// A temporary failure: the job asks to be run again later, after the
    /// delay its retry policy gives (RETRY_BACKOFF), within RETRY_LIMIT.
    /// See the README's "Retries".
    ///
    /// ```
    /// use resque_fork::JobError;
    /// let busy = JobError::retry("MyApp::RateLimited", "the API said 429");
    /// assert!(busy.wants_retry());
    /// ```
    pub fn retry(exception: impl Into<String>, message: impl Into<String>) -> JobError {
        JobError {
            retry: Some(None),
            ..JobError::new(exception, message)
        }
    }

    /// [`JobError::retry`] after `delay` instead of the policy's delay (the
    /// limit still applies), e.g. a server's `Retry-After`.
    pub fn retry_in(
        exception: impl Into<String>,
        message: impl Into<String>,
        delay: std::time::Duration,
    ) -> JobError {
        JobError {
            retry: Some(Some(delay)),
            ..JobError::new(exception, message)
        }
    }

    /// Whether this failure asks for a retry.
    pub fn wants_retry(&self) -> bool {
        self.retry.is_some()
    }

    /// Adds backtrace lines.
    pub fn with_backtrace(mut self, lines: Vec<String>) -> JobError {
        self.backtrace = lines;
        self
    }

    /// The exception name.
    pub fn exception(&self) -> &str {
        &self.exception
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The backtrace lines.
    pub fn backtrace(&self) -> &[String] {
        &self.backtrace
    }

    /// Into the record written to the `failed` list.
    pub fn into_failure(self) -> Failure {
        Failure {
            exception: self.exception,
            error: self.message,
            backtrace: self.backtrace,
            retry: match self.retry {
                Some(delay) => RetryRequest::Asked {
                    delay: delay.map(|d| d.as_secs()),
                },
                None => RetryRequest::Ordinary,
            },
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.exception, self.message)
    }
}

impl<E: std::error::Error> From<E> for JobError {
    #[track_caller]
    fn from(err: E) -> JobError {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        let at = std::panic::Location::caller();
        JobError {
            exception: std::any::type_name::<E>().to_string(),
            message,
            backtrace: vec![format!("{}:{}", at.file(), at.line())],
            retry: None,
        }
    }
}

/// Class names mapped to Rust functions, and the hooks around them.
///
/// ```
/// use resque_fork::{Flow, JobError, Registry};
/// let registry = Registry::new()
///     .register("Echo", |job| {
///         println!("{:?}", job.args());
///         Ok(())
///     })
///     .register("Fail", |_| Err(JobError::new("MyApp::Boom", "always fails")))
///     .before_perform(|job| Ok(if job.args().is_empty() { Flow::Skip } else { Flow::Continue }))
///     .on_failure(|job, failure| eprintln!("{} failed: {}", job.class(), failure.error));
/// assert!(registry.contains("Echo"));
/// ```
#[derive(Default)]
pub struct Registry {
    jobs: HashMap<String, Box<JobFn>>,
    hooks: Hooks,
    retry_policies: HashMap<String, RetryPolicy>,
}

impl Registry {
    /// An empty registry: every class goes to the exec handler.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers `f` for `class`, replacing any earlier function.
    pub fn register<F>(mut self, class: &str, f: F) -> Registry
    where
        F: Fn(&Job) -> JobResult + Send + Sync + 'static,
    {
        self.jobs.insert(class.to_string(), Box::new(f));
        self
    }

    /// Registers a typed job under its [`TypedJob::CLASS`]; its arguments
    /// are decoded before it runs, and arguments that do not fit the type
    /// fail the job with an `ArgumentError` naming the field.
    pub fn job<T: TypedJob + 'static>(self) -> Registry {
        self.register(T::CLASS, typed::run::<T>)
    }

    /// True when `class` has a Rust function.
    pub fn contains(&self, class: &str) -> bool {
        self.jobs.contains_key(class)
    }

    /// Runs in the worker once, after pruning and before registering.
    pub fn before_first_fork(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Registry {
        self.hooks.before_first_fork.push(Box::new(f));
        self
    }

    /// Runs in the worker for every job, after it is reserved and before its
    /// process starts (Rust and exec jobs alike).
    pub fn before_fork(mut self, f: impl Fn(&Job) + Send + Sync + 'static) -> Registry {
        self.hooks.before_fork.push(Box::new(f));
        self
    }

    /// Runs in the job process of a Rust job, first thing after the fork.
    pub fn after_fork(mut self, f: impl Fn(&Job) + Send + Sync + 'static) -> Registry {
        self.hooks.after_fork.push(Box::new(f));
        self
    }

    /// Runs in the job process of a Rust job before it: [`Flow::Skip`] skips
    /// the job (counted as processed, not failed); `Err` fails it.
    pub fn before_perform(
        mut self,
        f: impl Fn(&Job) -> Result<Flow, JobError> + Send + Sync + 'static,
    ) -> Registry {
        self.hooks.before_perform.push(Box::new(f));
        self
    }

    /// Runs in the job process after a Rust job succeeded.
    pub fn after_perform(mut self, f: impl Fn(&Job) + Send + Sync + 'static) -> Registry {
        self.hooks.after_perform.push(Box::new(f));
        self
    }

    /// Runs for every failure of a job: in the job process for a Rust job's
    /// `Err` or panic, in the worker for failures it records itself (dirty
    /// exits, timeouts, failed exec jobs, unknown classes, orphaned jobs).
    /// See [`hooks`](crate::handlers::hooks).
    pub fn on_failure(mut self, f: impl Fn(&Job, &Failure) + Send + Sync + 'static) -> Registry {
        self.hooks.on_failure.push(Box::new(f));
        self
    }

    /// Gives `class` its own retry policy, over RETRY_LIMIT, RETRY_BACKOFF,
    /// RETRY_FAILURES and RETRY_POLICY's file. See the README's "Retries".
    ///
    /// ```
    /// use resque_fork::retry::{Backoff, RetryPolicy};
    /// use resque_fork::Registry;
    /// let registry = Registry::new()
    ///     .register("Sync", |_| Ok(()))
    ///     .retry("Sync", RetryPolicy { limit: 5, backoff: Backoff::Delays(vec![10, 60]), retry_failures: true });
    /// ```
    pub fn retry(mut self, class: impl Into<String>, policy: RetryPolicy) -> Registry {
        self.retry_policies.insert(class.into(), policy);
        self
    }

    pub(crate) fn retry_policy(&self, class: &str) -> Option<&RetryPolicy> {
        self.retry_policies.get(class)
    }

    /// Runs in the worker after it has unregistered.
    pub fn worker_exit(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Registry {
        self.hooks.worker_exit.push(Box::new(f));
        self
    }

    pub(crate) fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// In the job process: runs the job's function inside the job hooks.
    /// `None` = success (or skipped). Panics, in the job or a hook, become
    /// [`exceptions::PANIC`] failures; `on_failure` runs here for them.
    pub(crate) fn perform_in_job_process(&self, job: &Job) -> Option<Failure> {
        let Some(f) = self.jobs.get(job.class()) else {
            return Some(Failure::new(
                exceptions::UNKNOWN_JOB_CLASS,
                format!("no function registered for {}", job.class()),
            ));
        };
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.hooks.around(job, || f(job))
        }));
        let failure = match caught {
            Ok(Ok(Flow::Continue)) => None,
            Ok(Ok(Flow::Skip)) => {
                log::info!("job {} skipped by a before_perform hook", job.class());
                None
            }
            Ok(Err(e)) => Some(e.into_failure()),
            Err(panic) => Some(panic_error(panic).into_failure()),
        };
        if let Some(failure) = &failure {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.hooks.on_failure_in_job(job, failure)
            }));
        }
        failure
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut classes: Vec<_> = self.jobs.keys().collect();
        classes.sort();
        f.debug_struct("Registry")
            .field("classes", &classes)
            .finish()
    }
}

thread_local! {
    static PANIC_AT: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Installs a panic hook that remembers where the panic happened (and the
/// backtrace), for the failure record; the default hook still prints.
pub(crate) fn capture_panic_locations() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let mut lines = Vec::new();
        if let Some(at) = info.location() {
            lines.push(format!("{}:{}:{}", at.file(), at.line(), at.column()));
        }
        let bt = std::backtrace::Backtrace::force_capture().to_string();
        lines.extend(
            bt.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .take(64)
                .map(String::from),
        );
        PANIC_AT.with(|p| *p.borrow_mut() = lines);
        default(info);
    }));
}

fn panic_error(panic: Box<dyn std::any::Any + Send>) -> JobError {
    let message = if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    };
    let backtrace = PANIC_AT.with(|p| std::mem::take(&mut *p.borrow_mut()));
    JobError::new(exceptions::PANIC, message).with_backtrace(backtrace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_in_message() {
        let io = std::io::Error::other("disk full");
        let err: JobError = io.into();
        assert_eq!(err.exception(), "std::io::error::Error");
        assert_eq!(err.message(), "disk full");
        assert!(err.backtrace()[0].contains("registry.rs"));
    }

    #[test]
    fn panics_become_failures() {
        let reg = Registry::new().register("P", |_| panic!("kaboom"));
        let job = Job::parse(r#"{"class":"P","args":[]}"#, "q").unwrap();
        let failure = reg.perform_in_job_process(&job).unwrap();
        assert_eq!(failure.exception, exceptions::PANIC);
        assert_eq!(failure.error, "kaboom");
        let other = Job::parse(r#"{"class":"Q","args":[]}"#, "q").unwrap();
        assert_eq!(
            reg.perform_in_job_process(&other).unwrap().exception,
            exceptions::UNKNOWN_JOB_CLASS
        );
    }
}
