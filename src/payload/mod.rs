//! The JSON documents of the Resque contract: the job payload, the failure
//! record, the in-flight record in `worker:ID` and php's status record.
//!
//! Payload text popped from a queue is kept byte for byte and embedded as is
//! wherever it is written back; it is never decoded and re-encoded.

mod records;

pub use records::*;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;

/// A job taken from a queue: its raw text plus the fields a worker needs.
#[derive(Debug, Clone)]
pub struct Job {
    raw: String,
    queue: String,
    class: String,
    /// The `args` array exactly as written (`[]` when absent or `null`).
    args_raw: Box<RawValue>,
    /// Each element of `args`, exactly as written: split only when asked
    /// for (typed jobs), not for every job.
    arg_raws: std::sync::OnceLock<Vec<Box<RawValue>>>,
    fields: Map<String, Value>,
}

/// Why a payload could not be run. Each becomes a failure record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MalformedPayload {
    /// The bytes are not UTF-8, so not JSON text; the failure record keeps
    /// them in `raw_base64`.
    NotUtf8 {
        /// Where the first invalid byte sits.
        offset: usize,
    },
    /// The text is not JSON at all.
    NotJson(String),
    /// Valid JSON, but not an object.
    NotObject,
    /// No `class`, or a `class` that is not a string.
    MissingClass,
    /// `args` is present but is not an array.
    ArgsNotArray,
}

impl fmt::Display for MalformedPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MalformedPayload::NotUtf8 { offset } => write!(
                f,
                "payload is not valid UTF-8 (invalid byte at offset {offset}); its exact bytes are in raw_base64"
            ),
            MalformedPayload::NotJson(e) => write!(f, "payload is not valid JSON ({e})"),
            MalformedPayload::NotObject => write!(f, "payload is not a JSON object"),
            MalformedPayload::MissingClass => {
                write!(f, "payload has no string \"class\" field")
            }
            MalformedPayload::ArgsNotArray => write!(f, "payload \"args\" is not an array"),
        }
    }
}

impl Job {
    /// Parses a payload as popped from `queue`. A missing or `null` `args`
    /// counts as `[]`, as in Ruby resque; unknown fields are kept.
    ///
    /// ```
    /// use resque_fork::Job;
    /// let job = Job::parse(r#"{"class":"Mailer","args":[7,"welcome"],"id":"ab12"}"#, "mail").unwrap();
    /// assert_eq!(job.class(), "Mailer");
    /// assert_eq!(job.args().len(), 2);
    /// assert_eq!(job.id(), Some("ab12"));
    /// ```
    pub fn parse(raw: &str, queue: &str) -> Result<Job, MalformedPayload> {
        let value: Value =
            serde_json::from_str(raw).map_err(|e| MalformedPayload::NotJson(e.to_string()))?;
        let Value::Object(fields) = value else {
            return Err(MalformedPayload::NotObject);
        };
        let class = match fields.get("class") {
            Some(Value::String(c)) => c.clone(),
            _ => return Err(MalformedPayload::MissingClass),
        };
        let args_raw = match fields.get("args") {
            None | Some(Value::Null) => empty_array(),
            Some(args @ Value::Array(_)) => raw_args(raw).unwrap_or_else(|| {
                // Only a payload with `args` twice gets here: the last one
                // counts, as in the decoded fields.
                serde_json::value::to_raw_value(args).unwrap_or_else(|_| empty_array())
            }),
            Some(_) => return Err(MalformedPayload::ArgsNotArray),
        };
        Ok(Job {
            raw: raw.to_string(),
            queue: queue.to_string(),
            class,
            args_raw,
            arg_raws: std::sync::OnceLock::new(),
            fields,
        })
    }

    /// The payload exactly as it was popped.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The queue the job was taken from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The job class name.
    pub fn class(&self) -> &str {
        &self.class
    }

    /// The whole `args` array, decoded. php-resque jobs carry their
    /// arguments as one object in `args[0]`. Numbers beyond what `f64`,
    /// `i64` and `u64` hold exactly are rounded here; [`Job::arg_raw`] and
    /// [`Job::args_raw`] give them as written.
    pub fn args(&self) -> &[Value] {
        match self.fields.get("args") {
            Some(Value::Array(args)) => args,
            _ => &[],
        }
    }

    /// The `args` array exactly as written in the payload: numbers, key
    /// order, escapes and spacing untouched.
    ///
    /// ```
    /// use resque_fork::Job;
    /// let job = Job::parse(r#"{"class":"A","args":[12345678901234567890123, 1.50]}"#, "q").unwrap();
    /// assert_eq!(job.args_raw().get(), "[12345678901234567890123, 1.50]");
    /// assert_eq!(job.arg_raw(1).map(|a| a.get()), Some("1.50"));
    /// ```
    pub fn args_raw(&self) -> &RawValue {
        &self.args_raw
    }

    /// One element of `args`, exactly as written.
    pub fn arg_raw(&self, index: usize) -> Option<&RawValue> {
        self.arg_raws().get(index).map(|a| &**a)
    }

    /// Every element of `args`, exactly as written.
    pub fn arg_raws(&self) -> &[Box<RawValue>] {
        self.arg_raws
            .get_or_init(|| serde_json::from_str(self.args_raw.get()).unwrap_or_default())
    }

    /// The `args` array as JSON text, byte for byte as in the payload, as
    /// handed to exec-handler programs.
    pub fn args_json(&self) -> &str {
        self.args_raw.get()
    }

    /// The payload's `id` (php-resque, node-resque and our own enqueue set it).
    pub fn id(&self) -> Option<&str> {
        match self.fields.get("id") {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        }
    }

    /// When the job was enqueued (epoch seconds), from `enqueued_at` or
    /// php-resque's `queue_time` (which our producer writes too).
    pub fn enqueued_at(&self) -> Option<f64> {
        enqueued_at(&self.fields)
    }

    /// How many times this job was retried before this run: the payload's
    /// `retry_count` (0 when absent). See [`crate::retry`].
    pub fn retry_count(&self) -> u32 {
        self.fields
            .get("retry_count")
            .and_then(Value::as_u64)
            .map_or(0, |n| n.min(u64::from(u32::MAX)) as u32)
    }

    /// Whether the payload carries a `retry_count` (a retry made here, not
    /// rebuilt by another scheduler).
    pub fn has_retry_count(&self) -> bool {
        self.fields.contains_key("retry_count")
    }

    /// php-resque's payload `prefix`, which names the status key.
    pub fn status_prefix(&self) -> Option<&str> {
        match self.fields.get("prefix") {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        }
    }

    /// Any payload field, including ones resque-fork does not interpret.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }
}

/// `enqueued_at`, else php-resque's `queue_time`, of a payload's fields.
pub fn enqueued_at(fields: &Map<String, Value>) -> Option<f64> {
    ["enqueued_at", "queue_time"]
        .iter()
        .find_map(|k| fields.get(*k).and_then(Value::as_f64))
        .filter(|t| t.is_finite() && *t > 0.0)
}

/// What went wrong with a job, as written into the failure record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The exception class name shown by resque-web, e.g. `Resque::DirtyExit`.
    pub exception: String,
    /// The message.
    pub error: String,
    /// Stack frames or other detail lines; may be empty.
    #[serde(default)]
    pub backtrace: Vec<String>,
    /// Whether the job may be retried (not written to the failure record).
    #[serde(default)]
    pub retry: RetryRequest,
}

/// Whether a failed run may be retried (see [`crate::retry`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryRequest {
    /// Never: a death by signal, a timeout, a job that can never run.
    #[default]
    Never,
    /// An ordinary failure (a non-zero exit, an `Err`, a panic): retried
    /// where RETRY_FAILURES (or the class's policy) says so.
    Ordinary,
    /// The job asked for a retry (exit 75, `JobError::retry`).
    Asked {
        /// Its own delay in seconds, when it gave one.
        delay: Option<u64>,
    },
}

impl Failure {
    /// A failure with no backtrace, never retried.
    pub fn new(exception: impl Into<String>, error: impl Into<String>) -> Failure {
        Failure {
            exception: exception.into(),
            error: error.into(),
            backtrace: Vec::new(),
            retry: RetryRequest::Never,
        }
    }

    /// The same failure, with its retry request.
    pub fn retry(mut self, retry: RetryRequest) -> Failure {
        self.retry = retry;
        self
    }
}

/// Exception names resque-fork writes into failure records.
pub mod exceptions {
    /// A job process that died abnormally (Ruby's wording and class).
    pub const DIRTY_EXIT: &str = "Resque::DirtyExit";
    /// A job left behind by a worker judged dead by its heartbeat.
    pub const PRUNE_DEAD_WORKER_DIRTY_EXIT: &str = "Resque::PruneDeadWorkerDirtyExit";
    /// A payload that is not a runnable job.
    pub const MALFORMED_PAYLOAD: &str = "ResqueFork::MalformedPayload";
    /// A class with no handler: not registered, and no program in `JOBS_DIR`.
    pub const UNKNOWN_JOB_CLASS: &str = "ResqueFork::UnknownJobClass";
    /// A class name refused because it could name a file outside `JOBS_DIR`.
    pub const INVALID_JOB_CLASS: &str = "ResqueFork::InvalidJobClass";
    /// An exec-handler program that exited non-zero.
    pub const JOB_FAILED: &str = "ResqueFork::JobFailed";
    /// A Rust job function that panicked.
    pub const PANIC: &str = "ResqueFork::Panic";
    /// A job stopped for running longer than `JOB_TIMEOUT`.
    pub const JOB_TIMEOUT: &str = "ResqueFork::JobTimeout";
}

/// The exact text of the payload's `args` field, when it has exactly one.
fn raw_args(raw: &str) -> Option<Box<RawValue>> {
    #[derive(Deserialize)]
    struct ArgsOnly<'a> {
        #[serde(borrow)]
        args: &'a RawValue,
    }
    serde_json::from_str::<ArgsOnly>(raw)
        .ok()
        .map(|a| a.args.to_owned())
}

/// `[]` as raw JSON.
fn empty_array() -> Box<RawValue> {
    // A literal known to be valid JSON.
    RawValue::from_string("[]".to_string()).unwrap_or_else(|_| unreachable!())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_kinds() {
        assert!(matches!(
            Job::parse("{nope", "q"),
            Err(MalformedPayload::NotJson(_))
        ));
        assert_eq!(
            Job::parse("[1,2]", "q").unwrap_err(),
            MalformedPayload::NotObject
        );
        assert_eq!(
            Job::parse(r#"{"args":[]}"#, "q").unwrap_err(),
            MalformedPayload::MissingClass
        );
        assert_eq!(
            Job::parse(r#"{"class":5,"args":[]}"#, "q").unwrap_err(),
            MalformedPayload::MissingClass
        );
        assert_eq!(
            Job::parse(r#"{"class":"A","args":{"a":1}}"#, "q").unwrap_err(),
            MalformedPayload::ArgsNotArray
        );
        let job = Job::parse(r#"{"class":"A"}"#, "q").unwrap();
        assert!(job.args().is_empty());
        assert_eq!(job.args_json(), "[]");
    }

    #[test]
    fn args_are_kept_as_written() {
        let job = Job::parse(
            r#"{"class":"A","args":[12345678901234567890123, -5e-8, 1.50, {"b":1,"a":2}],"id":"x"}"#,
            "q",
        )
        .unwrap();
        assert_eq!(
            job.args_json(),
            r#"[12345678901234567890123, -5e-8, 1.50, {"b":1,"a":2}]"#
        );
        let raws: Vec<&str> = job.arg_raws().iter().map(|a| a.get()).collect();
        assert_eq!(
            raws,
            [
                "12345678901234567890123",
                "-5e-8",
                "1.50",
                r#"{"b":1,"a":2}"#
            ]
        );
        assert_eq!(
            Job::parse(r#"{"class":"A","args":null}"#, "q")
                .unwrap()
                .args_json(),
            "[]"
        );
        assert_eq!(
            Job::parse(r#"{"class":"A","args":[ ]}"#, "q")
                .unwrap()
                .args_json(),
            "[ ]"
        );
    }
}
