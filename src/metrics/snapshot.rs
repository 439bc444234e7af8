//! One scrape's worth of figures, read from Redis.

use super::BUCKETS;
use crate::prune::PrunePolicy;
use crate::store::Store;
use std::collections::BTreeMap;
use std::time::Instant;

/// A histogram read back from the metrics hash: per-bucket counts (the last
/// unbounded) and the summed value in microseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub buckets: [u64; BUCKETS.len() + 1],
    pub sum_us: u64,
}

impl Histogram {
    /// `(upper bound, count in that bucket)` pairs, `+Inf` last: what the
    /// encoder takes (it writes them cumulated, as Prometheus reads them).
    pub fn per_bucket(&self) -> Vec<(f64, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, n)| (BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), *n))
            .collect()
    }

    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// An outcome count of one (queue, class).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub queue: String,
    pub class: String,
    pub outcome: String,
    pub value: u64,
}

/// Everything one scrape reports.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Redis answered.
    pub up: bool,
    pub scrape_seconds: f64,
    /// Each queue: length, and the age of its oldest job when that job says
    /// when it was enqueued.
    pub queues: Vec<(String, i64, Option<f64>)>,
    pub processed: i64,
    pub failed: i64,
    pub failed_queues: Vec<(String, i64)>,
    pub workers: i64,
    pub working: i64,
    /// Workers by health, as `resque-fork workers` judges them.
    pub health: BTreeMap<&'static str, i64>,
    pub delayed: i64,
    /// How long the earliest due delayed job has been due (0 when none is).
    pub delayed_overdue: f64,
    pub outcomes: Vec<Sample>,
    pub durations: BTreeMap<(String, String), Histogram>,
    pub latencies: BTreeMap<String, Histogram>,
}

impl Snapshot {
    /// Reads the deployment; a Redis that does not answer gives `up: false`
    /// and nothing else, never an error.
    pub fn gather(store: &mut Store, hostname: &str, policy: &PrunePolicy) -> Snapshot {
        let started = Instant::now();
        let mut snap = match Snapshot::read(store, hostname, policy) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("{e}: resque_up is 0");
                Snapshot::default()
            }
        };
        snap.scrape_seconds = started.elapsed().as_secs_f64();
        snap
    }

    fn read(store: &mut Store, hostname: &str, policy: &PrunePolicy) -> crate::Result<Snapshot> {
        let raw = store.metrics_raw()?;
        let workers = crate::ops::workers(store, hostname, policy)?;
        let buckets = store.delayed_buckets()?;
        let mut health: BTreeMap<&'static str, i64> = ["alive", "dead", "stale", "unknown"]
            .iter()
            .map(|h| (*h, 0))
            .collect();
        for w in &workers {
            if let Some(n) = health
                .iter_mut()
                .find(|(h, _)| **h == w.health)
                .map(|(_, n)| n)
            {
                *n += 1;
            }
        }
        let now = raw.now;
        let queues = raw
            .queues
            .into_iter()
            .map(|(q, len, head)| {
                let age = head
                    .and_then(|h| serde_json::from_slice::<serde_json::Map<_, _>>(&h).ok())
                    .and_then(|fields| crate::payload::enqueued_at(&fields))
                    .map(|t| (now - t).max(0.0));
                (q, len, age)
            })
            .collect();
        let mut snap = Snapshot {
            up: true,
            queues,
            processed: raw.processed,
            failed: raw.failed,
            failed_queues: raw.failed_queues,
            workers: workers.len() as i64,
            working: workers.iter().filter(|w| w.job.is_some()).count() as i64,
            health,
            delayed: buckets.iter().map(|(_, n)| n).sum(),
            delayed_overdue: buckets
                .first()
                .map_or(0.0, |(ts, _)| (now - *ts as f64).max(0.0)),
            ..Snapshot::default()
        };
        for (field, value) in raw.figures {
            snap.add(&field, value.max(0) as u64);
        }
        Ok(snap)
    }

    /// Files one field of the metrics hash (contract 14); fields of another
    /// shape are ignored.
    fn add(&mut self, field: &str, value: u64) {
        use serde_json::Value;
        let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(field) else {
            return;
        };
        let text = |i: usize| parts.get(i).and_then(Value::as_str).map(str::to_string);
        let index = |i: usize| {
            parts
                .get(i)
                .and_then(Value::as_u64)
                .map(|b| (b as usize).min(BUCKETS.len()))
        };
        match (text(0).as_deref(), text(1), text(2)) {
            (Some("o"), Some(queue), Some(class)) => {
                if let Some(outcome) = text(3) {
                    self.outcomes.push(Sample {
                        queue,
                        class,
                        outcome,
                        value,
                    });
                }
            }
            (Some("d"), Some(queue), Some(class)) => {
                if let Some(b) = index(3) {
                    self.durations.entry((queue, class)).or_default().buckets[b] += value;
                }
            }
            (Some("ds"), Some(queue), Some(class)) => {
                self.durations.entry((queue, class)).or_default().sum_us += value;
            }
            (Some("l"), Some(queue), _) => {
                if let Some(b) = index(2) {
                    self.latencies.entry(queue).or_default().buckets[b] += value;
                }
            }
            (Some("ls"), Some(queue), _) => {
                self.latencies.entry(queue).or_default().sum_us += value;
            }
            _ => {}
        }
    }
}
