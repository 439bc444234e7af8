//! Putting jobs on queues and reading their php-resque status.

use crate::error::{Error, Result};
use crate::payload::{JobState, StatusRecord};
use crate::store::Store;
use crate::timefmt;
use serde_json::Value;
use std::io::Read;

/// A new random 32-hex-digit job id, as php-resque makes them.
pub fn new_job_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("reading /dev/urandom for a job id", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The payload text resque-fork enqueues: `class`, `args`, `id` and
/// `queue_time`, in php-resque's order.
///
/// ```
/// use resque_fork::producer::payload_text;
/// let p = payload_text("Mailer", &[7.into(), "welcome".into()], "ab12", 1705314600.5);
/// assert_eq!(p, r#"{"class":"Mailer","args":[7,"welcome"],"id":"ab12","queue_time":1705314600.5}"#);
/// ```
pub fn payload_text(class: &str, args: &[Value], id: &str, queue_time: f64) -> String {
    format!(
        "{{\"class\":{},\"args\":{},\"id\":{},\"queue_time\":{}}}",
        Value::from(class),
        Value::Array(args.to_vec()),
        Value::from(id),
        Value::from(queue_time)
    )
}

/// Enqueues a job; with `track`, creates php-resque's status record (state 1
/// "waiting") in the same transaction. Returns the job id.
pub fn enqueue(
    store: &mut Store,
    queue: &str,
    class: &str,
    args: &[Value],
    track: bool,
) -> Result<String> {
    if queue.is_empty() || queue.contains(':') {
        return Err(Error::Config(format!(
            "invalid queue name {queue:?}: it must be non-empty and contain no ':'"
        )));
    }
    if class.is_empty() {
        return Err(Error::Config("the job class must not be empty".into()));
    }
    let id = new_job_id()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let payload = payload_text(class, args, &id, (now * 10_000.0).round() / 10_000.0);
    let status = track.then(|| {
        let record = StatusRecord::waiting(now as i64);
        (
            store.keys().job_status(None, &id),
            serde_json::to_string(&record).unwrap_or_default(),
        )
    });
    store.enqueue(
        queue,
        &payload,
        status.as_ref().map(|(k, v)| (k.as_str(), v.as_str())),
    )?;
    Ok(id)
}

/// A job's status as php-resque tracks it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    pub state: JobState,
    pub record: StatusRecord,
    /// Seconds until the record expires, once the job has finished.
    pub expires_in: Option<i64>,
}

/// Reads the status of job `id` (`NotFound` when there is none).
pub fn status(store: &mut Store, id: &str) -> Result<JobStatus> {
    let key = store.keys().job_status(None, id);
    let text = store.get(&key)?.ok_or_else(|| {
        Error::NotFound(format!(
            "no status for job {id}: the id is unknown, the job was enqueued without --track, \
             or its status expired (kept 24 h after the job ends)"
        ))
    })?;
    let record: StatusRecord = serde_json::from_str(&text).map_err(|e| {
        Error::NotFound(format!(
            "the status of job {id} is not a status record ({e}): {text}"
        ))
    })?;
    let state = JobState::from_code(record.status).ok_or_else(|| {
        Error::NotFound(format!(
            "job {id} has an unknown status code {}",
            record.status
        ))
    })?;
    let expires_in = store.ttl(&key)?;
    Ok(JobStatus {
        state,
        record,
        expires_in,
    })
}

/// One line for a person: `complete (updated …, started …, expires in …)`.
pub fn describe(status: &JobStatus) -> String {
    let mut parts = Vec::new();
    if let Some(t) = status.record.updated {
        parts.push(format!("updated {}", timefmt::iso8601_z(t)));
    }
    if let Some(t) = status.record.started {
        parts.push(format!("started {}", timefmt::iso8601_z(t)));
    }
    if let Some(s) = status.expires_in {
        parts.push(format!("expires in {s} s"));
    }
    if parts.is_empty() {
        status.state.name().to_string()
    } else {
        format!("{} ({})", status.state.name(), parts.join(", "))
    }
}
