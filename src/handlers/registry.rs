//! Rust job functions by class name, run in the forked job process.

use crate::payload::{exceptions, Failure, Job};
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
}

impl JobError {
    /// A failure with an exception name of your choosing.
    pub fn new(exception: impl Into<String>, message: impl Into<String>) -> JobError {
        JobError {
            exception: exception.into(),
            message: message.into(),
            backtrace: Vec::new(),
        }
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
        }
    }
}

/// Class names mapped to Rust functions.
///
/// ```
/// use resque_fork::{JobError, Registry};
/// let registry = Registry::new()
///     .register("Echo", |job| {
///         println!("{:?}", job.args());
///         Ok(())
///     })
///     .register("Fail", |_| Err(JobError::new("MyApp::Boom", "always fails")));
/// assert!(registry.contains("Echo"));
/// ```
#[derive(Default)]
pub struct Registry {
    jobs: HashMap<String, Box<JobFn>>,
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

    /// True when `class` has a Rust function.
    pub fn contains(&self, class: &str) -> bool {
        self.jobs.contains_key(class)
    }

    /// Runs the function for the job's class; `None` when none is registered.
    /// A panic is caught and returned as an [`exceptions::PANIC`] failure.
    pub fn perform(&self, job: &Job) -> Option<JobResult> {
        let f = self.jobs.get(job.class())?;
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(job)));
        Some(caught.unwrap_or_else(|panic| Err(panic_error(panic))))
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
        let err = reg.perform(&job).unwrap().unwrap_err();
        assert_eq!(err.exception(), exceptions::PANIC);
        assert_eq!(err.message(), "kaboom");
        let other = Job::parse(r#"{"class":"Q","args":[]}"#, "q").unwrap();
        assert!(reg.perform(&other).is_none());
    }
}
