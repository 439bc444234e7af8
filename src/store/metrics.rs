//! What the metrics exporter reads (contract 14), in as few round trips as
//! the deployment's size allows.

use super::Store;
use crate::error::Result;

/// The raw figures of one scrape.
#[derive(Debug, Default)]
pub struct MetricsRaw {
    /// Redis's clock, epoch seconds with fractions.
    pub now: f64,
    /// Each queue in `queues`: its length and its head payload.
    pub queues: Vec<(String, i64, Option<Vec<u8>>)>,
    pub processed: i64,
    pub failed: i64,
    /// Each failure queue (`failed_queues`' members, else `failed`) and its length.
    pub failed_queues: Vec<(String, i64)>,
    /// The `resque-fork:metrics` hash.
    pub figures: Vec<(String, i64)>,
}

/// The first round trip's replies: TIME, `queues`, the two counters,
/// `failed_queues`, the metrics hash.
type Heads = (
    (i64, i64),
    Vec<String>,
    Option<String>,
    Option<String>,
    Vec<String>,
    Vec<(String, String)>,
);

impl Store {
    /// Reads the figures of one scrape.
    pub fn metrics_raw(&mut self) -> Result<MetricsRaw> {
        self.with_conn(
            || "reading the metrics".into(),
            |c, k, _| {
                let ((secs, micros), queues, processed, failed, failed_queues, figures): Heads =
                    redis::pipe()
                        .cmd("TIME")
                        .smembers(k.queues())
                        .get(k.stat("processed"))
                        .get(k.stat("failed"))
                        .smembers(k.failed_queues())
                        .hgetall(k.metrics())
                        .query(c)?;
                let mut queues = queues;
                queues.sort();
                let failed_queues = if failed_queues.is_empty() {
                    vec!["failed".to_string()]
                } else {
                    failed_queues
                };
                let mut pipe = redis::pipe();
                for q in &queues {
                    pipe.llen(k.queue(q)).lindex(k.queue(q), 0);
                }
                for f in &failed_queues {
                    pipe.llen(k.failed_queue(f));
                }
                let lengths: Vec<redis::Value> = if queues.is_empty() && failed_queues.is_empty() {
                    Vec::new()
                } else {
                    pipe.query(c)?
                };
                let int = |v: Option<&redis::Value>| match v {
                    Some(redis::Value::Int(n)) => *n,
                    _ => 0,
                };
                let per_queue = queues
                    .iter()
                    .enumerate()
                    .map(|(i, q)| {
                        let head = match lengths.get(2 * i + 1) {
                            Some(redis::Value::BulkString(b)) => Some(b.clone()),
                            _ => None,
                        };
                        (q.clone(), int(lengths.get(2 * i)), head)
                    })
                    .collect();
                let base = 2 * queues.len();
                let failed_queues = failed_queues
                    .into_iter()
                    .enumerate()
                    .map(|(i, f)| (f, int(lengths.get(base + i))))
                    .collect();
                let number = |v: Option<String>| v.and_then(|s| s.trim().parse().ok()).unwrap_or(0);
                Ok(MetricsRaw {
                    now: secs as f64 + micros as f64 / 1e6,
                    queues: per_queue,
                    processed: number(processed),
                    failed: number(failed),
                    failed_queues,
                    figures: figures
                        .into_iter()
                        .filter_map(|(f, v)| Some((f, v.parse().ok()?)))
                        .collect(),
                })
            },
        )
    }
}
