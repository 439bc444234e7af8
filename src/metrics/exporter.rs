//! The Prometheus exporter: `/metrics` over HTTP (`resque-fork metrics`, or a
//! pool's supervised child with METRICS_LISTEN), and the same text once for
//! `info --prometheus`. Encoded by the Prometheus project's own client crate
//! (prometheus-client): the 0.0.4 text format, or OpenMetrics when the
//! scraper asks for it.

use super::{Histogram, Snapshot};
use crate::config::RedisSettings;
use crate::error::{Error, Result};
use crate::prune::PrunePolicy;
use crate::store::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;

type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
struct Scrape(Snapshot);

fn gauges<V: prometheus_client::encoding::EncodeGaugeValue + Copy + fmt::Debug + Send + Sync>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, V)>,
) -> fmt::Result
where
    ConstGauge<V>: EncodeMetric,
{
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue + Copy + fmt::Debug + Send + Sync>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: V,
) -> fmt::Result
where
    ConstGauge<V>: EncodeMetric,
{
    ConstGauge::new(value).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) -> fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn histograms<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, &'a Histogram)>,
) -> fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in rows {
        family
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(
                h.sum_us as f64 / 1e6,
                h.count(),
                &h.per_bucket(),
                None,
            )?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let s = &self.0;
        gauge(
            &mut enc,
            "resque_up",
            "Whether Redis answered the scrape.",
            i64::from(s.up),
        )?;
        gauge(
            &mut enc,
            "resque_scrape_duration_seconds",
            "How long the scrape took.",
            s.scrape_seconds,
        )?;
        if !s.up {
            return Ok(());
        }
        let q = |name: &str| vec![("queue", name.to_string())];
        gauges(
            &mut enc,
            "resque_jobs_in_queue",
            "Jobs waiting in each queue.",
            s.queues.iter().map(|(name, len, _)| (q(name), *len)),
        )?;
        gauges(
            &mut enc,
            "resque_queue_oldest_job_age_seconds",
            "Age of the job at the head of each queue (jobs that carry their enqueue time).",
            s.queues
                .iter()
                .filter_map(|(name, _, age)| Some((q(name), (*age)?))),
        )?;
        counters(
            &mut enc,
            "resque_job_executions",
            "Jobs processed (stat:processed).",
            [(Labels::new(), s.processed.max(0) as u64)],
        )?;
        counters(
            &mut enc,
            "resque_failed_job_executions",
            "Jobs failed (stat:failed).",
            [(Labels::new(), s.failed.max(0) as u64)],
        )?;
        gauges(
            &mut enc,
            "resque_jobs_in_failed_queue",
            "Failure records in each failure queue.",
            s.failed_queues.iter().map(|(name, len)| (q(name), *len)),
        )?;
        gauge(&mut enc, "resque_workers", "Registered workers.", s.workers)?;
        gauge(
            &mut enc,
            "resque_working_workers",
            "Workers running a job.",
            s.working,
        )?;
        gauges(
            &mut enc,
            "resque_workers_by_health",
            "Registered workers by health, as resque-fork workers judges it.",
            s.health
                .iter()
                .map(|(h, n)| (vec![("health", h.to_string())], *n)),
        )?;
        gauge(
            &mut enc,
            "resque_delayed_jobs",
            "Delayed jobs waiting on resque-scheduler's keys.",
            s.delayed,
        )?;
        gauge(
            &mut enc,
            "resque_delayed_jobs_overdue_seconds",
            "How long the earliest delayed job has been due (0 when none is).",
            s.delayed_overdue,
        )?;
        counters(
            &mut enc,
            "resque_job_outcomes",
            "Jobs recorded by resque-fork workers, by queue, class and outcome.",
            s.outcomes.iter().map(|o| {
                (
                    vec![
                        ("queue", o.queue.clone()),
                        ("class", o.class.clone()),
                        ("outcome", o.outcome.clone()),
                    ],
                    o.value,
                )
            }),
        )?;
        histograms(
            &mut enc,
            "resque_job_duration_seconds",
            "How long jobs ran, by queue and class (resque-fork workers).",
            s.durations.iter().map(|((queue, class), h)| {
                (vec![("queue", queue.clone()), ("class", class.clone())], h)
            }),
        )?;
        histograms(
            &mut enc,
            "resque_queue_latency_seconds",
            "How long jobs waited from enqueue to start, by queue (jobs that carry their enqueue time).",
            s.latencies.iter().map(|(queue, h)| (q(queue), h)),
        )?;
        Ok(())
    }
}

/// The exposition text of `snapshot`: OpenMetrics, or the Prometheus text
/// format 0.0.4.
pub fn render(snapshot: Snapshot, openmetrics: bool) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(snapshot)));
    let mut out = String::new();
    let encoded = if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, &registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
    };
    if encoded.is_err() {
        log::error!("encoding the metrics failed");
    }
    out
}

/// The content type of [`render`]'s output.
pub fn content_type(openmetrics: bool) -> &'static str {
    if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE
    }
}

/// Serves `/metrics` on `listen` until the process is stopped. Each scrape
/// reads Redis afresh; a Redis outage shows as `resque_up 0`, not as an
/// HTTP error.
pub fn serve(listen: &str, redis: &RedisSettings, policy: &PrunePolicy) -> Result<()> {
    let server = tiny_http::Server::http(listen)
        .map_err(|e| Error::Config(format!("cannot listen on {listen}: {e}")))?;
    let bound = server
        .server_addr()
        .to_ip()
        .map_or_else(|| listen.to_string(), |a| a.to_string());
    log::warn!("metrics exporter listening on http://{bound}/metrics");
    let mut store = Store::open_with(redis)?;
    let hostname = crate::identity::hostname();
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or("");
        let response = match path {
            "/metrics" => {
                let openmetrics = request.headers().iter().any(|h| {
                    h.field.equiv("Accept")
                        && h.value.as_str().contains("application/openmetrics-text")
                });
                let body = render(Snapshot::gather(&mut store, &hostname, policy), openmetrics);
                let header =
                    tiny_http::Header::from_bytes("Content-Type", content_type(openmetrics))
                        .map_err(|()| Error::Config("bad content type".into()))?;
                tiny_http::Response::from_string(body).with_header(header)
            }
            "/" => tiny_http::Response::from_string("resque-fork metrics: see /metrics\n"),
            _ => tiny_http::Response::from_string("not found\n").with_status_code(404),
        };
        if let Err(e) = request.respond(response) {
            log::debug!("answering a scrape: {e}");
        }
    }
    Ok(())
}
