//! Metrics (contract 14): what workers add up in Redis as they record each
//! job (outcome counts, duration and queue-latency histograms, by class and
//! queue), and the Prometheus exporter that reads the whole deployment from
//! Redis ([`exporter`]), with kaorimatz/resque_exporter's metric names.
//!
//! The per-job figures live in one hash, `resque-fork:metrics`, whose fields
//! are small JSON arrays naming what they count (see [`Field`]); the record
//! script adds to them in the step it already runs, so every host's jobs
//! show in any exporter, at no extra round trip.

pub mod exporter;
mod snapshot;

pub use snapshot::{Histogram, Sample, Snapshot};

/// Upper bounds (seconds) of the duration and latency histogram buckets;
/// a last, unbounded bucket follows.
pub const BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

/// The bucket of a duration: the first bound at or above it, or the
/// unbounded last one.
///
/// ```
/// use resque_fork::metrics::{bucket, BUCKETS};
/// assert_eq!(bucket(0.004), 0);
/// assert_eq!(bucket(0.005), 0);
/// assert_eq!(bucket(0.3), 6);
/// assert_eq!(bucket(9999.0), BUCKETS.len());
/// ```
pub fn bucket(seconds: f64) -> usize {
    BUCKETS
        .iter()
        .position(|&b| seconds <= b)
        .unwrap_or(BUCKETS.len())
}

/// How a recorded job ended, as the outcome counter labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Completed,
    Failed,
    /// Failed, and retried (see [`crate::retry`]).
    Retried,
    /// Died by a signal (`Resque::DirtyExit`).
    DirtyExit,
}

impl JobOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Completed => "completed",
            JobOutcome::Failed => "failed",
            JobOutcome::Retried => "retried",
            JobOutcome::DirtyExit => "dirty_exit",
        }
    }
}

/// A field of the metrics hash.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    /// Jobs of (queue, class) that ended so.
    Outcome(&'a str, &'a str, JobOutcome),
    /// Runs of (queue, class) whose duration fell in a bucket.
    Duration(&'a str, &'a str, usize),
    /// Their summed duration, in microseconds.
    DurationSum(&'a str, &'a str),
    /// Jobs of a queue whose wait (enqueue to start) fell in a bucket.
    Latency(&'a str, usize),
    /// Their summed wait, in microseconds.
    LatencySum(&'a str),
}

impl Field<'_> {
    /// The field name: a JSON array.
    ///
    /// ```
    /// use resque_fork::metrics::{Field, JobOutcome};
    /// assert_eq!(Field::Outcome("q", "Mail", JobOutcome::Completed).name(), r#"["o","q","Mail","completed"]"#);
    /// assert_eq!(Field::Latency("q", 3).name(), r#"["l","q",3]"#);
    /// ```
    pub fn name(&self) -> String {
        use serde_json::json;
        match self {
            Field::Outcome(q, c, o) => json!(["o", q, c, o.as_str()]),
            Field::Duration(q, c, b) => json!(["d", q, c, b]),
            Field::DurationSum(q, c) => json!(["ds", q, c]),
            Field::Latency(q, b) => json!(["l", q, b]),
            Field::LatencySum(q) => json!(["ls", q]),
        }
        .to_string()
    }
}

/// What the record step adds for one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFigures {
    pub outcome: String,
    pub duration_bucket: String,
    pub duration_sum: String,
    pub duration_us: u64,
    /// Present when the payload says when it was enqueued.
    pub latency: Option<(String, String, u64)>,
}

impl JobFigures {
    /// The fields for a job of `class` from `queue` that ran `duration` and
    /// waited `waited` (when known) before it started.
    pub fn new(
        queue: &str,
        class: &str,
        outcome: JobOutcome,
        duration: std::time::Duration,
        waited: Option<f64>,
    ) -> JobFigures {
        let secs = duration.as_secs_f64();
        JobFigures {
            outcome: Field::Outcome(queue, class, outcome).name(),
            duration_bucket: Field::Duration(queue, class, bucket(secs)).name(),
            duration_sum: Field::DurationSum(queue, class).name(),
            duration_us: duration.as_micros().min(u128::from(u64::MAX)) as u64,
            latency: waited.map(|w| {
                let w = w.max(0.0);
                (
                    Field::Latency(queue, bucket(w)).name(),
                    Field::LatencySum(queue).name(),
                    (w * 1e6) as u64,
                )
            }),
        }
    }
}
