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

use std::collections::HashMap;
use std::rc::Rc;

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

/// The field names of one (queue, class), built once per worker: the names
/// are JSON text, and building them for every job was allocation on the
/// per-job path.
#[derive(Debug)]
pub struct ClassFields {
    outcomes: [String; 4],
    durations: Vec<String>,
    duration_sum: String,
}

/// The latency field names of one queue.
#[derive(Debug)]
pub struct QueueFields {
    latencies: Vec<String>,
    latency_sum: String,
}

const OUTCOMES: [JobOutcome; 4] = [
    JobOutcome::Completed,
    JobOutcome::Failed,
    JobOutcome::Retried,
    JobOutcome::DirtyExit,
];

/// A worker's field names by (queue, class) and by queue. Bounded: past
/// [`FieldCache::LIMIT`] entries it starts over, so endless class names
/// cannot grow a worker.
#[derive(Debug, Default)]
pub struct FieldCache {
    /// By queue, then class.
    classes: HashMap<String, HashMap<String, Rc<ClassFields>>>,
    class_count: usize,
    queues: HashMap<String, Rc<QueueFields>>,
}

impl FieldCache {
    /// Entries kept at most, of each kind.
    pub const LIMIT: usize = 10_000;

    /// What the record step adds for a job of `class` from `queue` that
    /// ended as `outcome` after running `duration`, having waited `waited`
    /// seconds (when known) before it started.
    ///
    /// ```
    /// use resque_fork::metrics::{FieldCache, JobOutcome};
    /// let mut cache = FieldCache::default();
    /// let f = cache.figures("q", "Mail", JobOutcome::Completed, std::time::Duration::from_millis(3), Some(0.2));
    /// assert_eq!(f.outcome_field(), r#"["o","q","Mail","completed"]"#);
    /// assert_eq!(f.duration_field(), r#"["d","q","Mail",0]"#);
    /// assert_eq!((f.duration_us(), f.latency().map(|l| l.0)), (3000, Some(r#"["l","q",5]"#)));
    /// ```
    pub fn figures(
        &mut self,
        queue: &str,
        class: &str,
        outcome: JobOutcome,
        duration: std::time::Duration,
        waited: Option<f64>,
    ) -> JobFigures {
        // Looked up by borrowed names: a hit, the usual case, allocates nothing.
        let fields = match self.classes.get(queue).and_then(|m| m.get(class)) {
            Some(f) => f.clone(),
            None => {
                if self.class_count >= Self::LIMIT {
                    self.classes.clear();
                    self.class_count = 0;
                }
                let f = Rc::new(ClassFields {
                    outcomes: OUTCOMES.map(|o| Field::Outcome(queue, class, o).name()),
                    durations: (0..=BUCKETS.len())
                        .map(|b| Field::Duration(queue, class, b).name())
                        .collect(),
                    duration_sum: Field::DurationSum(queue, class).name(),
                });
                self.classes
                    .entry(queue.to_string())
                    .or_default()
                    .insert(class.to_string(), f.clone());
                self.class_count += 1;
                f
            }
        };
        let latency = waited.map(|w| {
            let w = w.max(0.0);
            let fields = match self.queues.get(queue) {
                Some(f) => f.clone(),
                None => {
                    if self.queues.len() >= Self::LIMIT {
                        self.queues.clear();
                    }
                    let f = Rc::new(QueueFields {
                        latencies: (0..=BUCKETS.len())
                            .map(|b| Field::Latency(queue, b).name())
                            .collect(),
                        latency_sum: Field::LatencySum(queue).name(),
                    });
                    self.queues.insert(queue.to_string(), f.clone());
                    f
                }
            };
            (fields, bucket(w), (w * 1e6) as u64)
        });
        let secs = duration.as_secs_f64();
        JobFigures {
            fields,
            outcome,
            bucket: bucket(secs),
            duration_us: duration.as_micros().min(u128::from(u64::MAX)) as u64,
            latency,
        }
    }
}

/// What the record step adds for one job (see [`FieldCache::figures`]).
#[derive(Debug, Clone)]
pub struct JobFigures {
    fields: Rc<ClassFields>,
    outcome: JobOutcome,
    bucket: usize,
    duration_us: u64,
    latency: Option<(Rc<QueueFields>, usize, u64)>,
}

impl JobFigures {
    /// The outcome counter's field.
    pub fn outcome_field(&self) -> &str {
        let i = OUTCOMES
            .iter()
            .position(|o| *o == self.outcome)
            .unwrap_or(0);
        &self.fields.outcomes[i]
    }

    /// The duration bucket's field.
    pub fn duration_field(&self) -> &str {
        &self.fields.durations[self.bucket]
    }

    /// The summed duration's field.
    pub fn duration_sum_field(&self) -> &str {
        &self.fields.duration_sum
    }

    /// The run's duration in microseconds.
    pub fn duration_us(&self) -> u64 {
        self.duration_us
    }

    /// The latency bucket's field, the summed latency's field, and the
    /// wait in microseconds, when the job carried its enqueue time.
    pub fn latency(&self) -> Option<(&str, &str, u64)> {
        self.latency
            .as_ref()
            .map(|(f, b, us)| (f.latencies[*b].as_str(), f.latency_sum.as_str(), *us))
    }
}
