//! The operations commands: see and fix a Resque deployment (any
//! implementation's workers and queues) the way resque-web does, with stable
//! JSON for scripts.
//!
//! Failure records are named by a content id (the first 12 hex digits of the
//! SHA-1 of the record's text) as well as by index: an index names whatever
//! sits at that position now, while an id names the same record however the
//! list shifts. Every change acts on a record by its content, atomically.

use crate::error::{Error, Result};
use crate::payload::best_effort_status_key;
use crate::payload::WorkerRecord;
use crate::prune::{self, PrunePolicy, PruneRun, Pruned, WorkerId};
use crate::store::{Store, WorkerKeys};
use crate::timefmt;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;

/// The numbers of resque-web's Stats page (`Resque.info`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Jobs in all queues named in `queues`.
    pub pending: i64,
    /// `stat:processed`.
    pub processed: i64,
    /// `LLEN failed` (not `stat:failed`), as resque-web counts it.
    pub failed: i64,
    pub queues: i64,
    pub workers: i64,
    /// Workers whose `worker:ID` is present and not empty.
    pub working: i64,
}

/// resque-web's Stats numbers, with its formulas (`Resque.info`).
pub fn info(store: &mut Store) -> Result<Counts> {
    let queues = store.queue_lengths()?;
    let workers = store.worker_ids()?;
    let processed = store.processed()?;
    let failed = store.failed_len()?;
    let in_flight = store.in_flight_many(&workers)?;
    Ok(Counts {
        pending: queues.iter().map(|(_, n)| n).sum(),
        processed,
        failed,
        queues: queues.len() as i64,
        workers: workers.len() as i64,
        working: in_flight
            .iter()
            .filter(|v| v.as_deref().is_some_and(|b| !b.is_empty()))
            .count() as i64,
    })
}

/// One queue and its length.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueueRow {
    pub name: String,
    pub length: i64,
}

/// Every queue in `queues`, sorted, with its length.
pub fn queues(store: &mut Store) -> Result<Vec<QueueRow>> {
    Ok(store
        .queue_lengths()?
        .into_iter()
        .map(|(name, length)| QueueRow { name, length })
        .collect())
}

/// Empties a queue (it stays listed in `queues`); how many jobs it held.
pub fn queue_clear(store: &mut Store, queue: &str) -> Result<i64> {
    store.clear_queue(queue)
}

/// Deletes a queue and unlists it; how many jobs it held.
pub fn queue_remove(store: &mut Store, queue: &str) -> Result<i64> {
    store.remove_queue(queue)
}

/// One queued job, as `queue show` lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueuedJob {
    /// Position in the queue, 0 = next to run.
    pub index: usize,
    pub class: Option<String>,
    pub args: Value,
    pub id: Option<String>,
    /// The payload text, when it is not a JSON object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

/// The first `limit` jobs of a queue.
pub fn queue_show(store: &mut Store, queue: &str, limit: usize) -> Result<Vec<QueuedJob>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let payloads = store.queue_range(queue, 0, limit as isize - 1)?;
    Ok(payloads
        .into_iter()
        .enumerate()
        .map(
            |(index, text)| match serde_json::from_slice::<Value>(&text) {
                Ok(Value::Object(o)) => QueuedJob {
                    index,
                    class: o.get("class").and_then(Value::as_str).map(String::from),
                    args: o.get("args").cloned().unwrap_or(Value::Null),
                    id: o.get("id").and_then(Value::as_str).map(String::from),
                    raw: None,
                },
                _ => QueuedJob {
                    index,
                    class: None,
                    args: Value::Null,
                    id: None,
                    raw: Some(String::from_utf8_lossy(&text).into_owned()),
                },
            },
        )
        .collect())
}

/// What a worker is doing.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkerJob {
    pub queue: String,
    pub class: Option<String>,
    pub run_at: Option<String>,
    /// Seconds since `run_at`, when it parses.
    pub running_for: Option<i64>,
}

/// One registered worker, with everything resque-web shows of it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkerRow {
    pub id: String,
    pub host: String,
    pub pid: Option<i32>,
    pub queues: Vec<String>,
    pub started: Option<String>,
    pub heartbeat: Option<String>,
    /// Seconds since the heartbeat (by Redis time), when there is one.
    pub heartbeat_age: Option<i64>,
    /// `idle`, `working` or `paused`.
    pub state: String,
    pub job: Option<WorkerJob>,
    pub processed: i64,
    pub failed: i64,
    /// `alive`; `dead` (this host, process gone or not a worker); `stale`
    /// (heartbeat older than the prune age); or `unknown` (another host, no
    /// heartbeat, as php-resque workers are).
    pub health: String,
}

/// Every registered worker, sorted by id.
pub fn workers(store: &mut Store, hostname: &str, policy: &PrunePolicy) -> Result<Vec<WorkerRow>> {
    let mut ids = store.worker_ids()?;
    ids.sort();
    let now = store.server_time()?;
    let paused_all = store.paused_all()?;
    let keys = store.worker_keys(&ids)?;
    Ok(keys
        .into_iter()
        .map(|k| worker_row(k, hostname, now, paused_all, policy))
        .collect())
}

fn worker_row(
    k: WorkerKeys,
    hostname: &str,
    now: i64,
    paused_all: bool,
    policy: &PrunePolicy,
) -> WorkerRow {
    let parsed = WorkerId::parse(&k.id);
    let host = parsed
        .as_ref()
        .map(|p| p.host.to_string())
        .unwrap_or_else(|| k.id.clone());
    let pid = parsed.as_ref().map(|p| p.pid);
    let queues = parsed
        .as_ref()
        .map(|p| p.queues.split(',').map(String::from).collect())
        .unwrap_or_default();
    let heartbeat_age = k
        .heartbeat
        .as_deref()
        .and_then(timefmt::parse_any)
        .map(|t| now - t);
    let local = host == hostname;
    let health = match (local, pid, heartbeat_age) {
        (true, Some(pid), _) if !prune::local_worker_alive(pid) => "dead",
        (true, Some(_), _) => "alive",
        (_, _, Some(age)) if age > policy.max_heartbeat_age.as_secs() as i64 => "stale",
        (_, _, Some(_)) => "alive",
        _ => "unknown",
    };
    let job =
        k.in_flight
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|text| match WorkerRecord::parse(text.as_bytes()) {
                Some(r) => WorkerJob {
                    class: r.class(),
                    running_for: r
                        .run_at
                        .as_deref()
                        .and_then(timefmt::parse_any)
                        .map(|t| now - t),
                    run_at: r.run_at,
                    queue: r.queue,
                },
                None => WorkerJob {
                    queue: String::new(),
                    class: None,
                    run_at: None,
                    running_for: None,
                },
            });
    let locally_paused = local
        && pid.is_some_and(|p| crate::procfs::cmdline(p).is_some_and(|c| c.ends_with("Paused")));
    let state = if job.is_some() {
        "working"
    } else if paused_all || locally_paused {
        "paused"
    } else {
        "idle"
    };
    WorkerRow {
        id: k.id,
        host,
        pid,
        queues,
        started: k.started,
        heartbeat: k.heartbeat,
        heartbeat_age,
        state: state.to_string(),
        job,
        processed: k.processed,
        failed: k.failed,
        health: health.to_string(),
    }
}

/// The content id of a failure record: the same before and after a retry,
/// which only adds `retried_at`.
pub fn record_id(record: &str) -> String {
    let base = without_retried_at(record);
    sha1_smol::Sha1::from(base.as_ref()).digest().to_string()[..12].to_string()
}

/// The record without a trailing `"retried_at":"…"` field (where resque-web
/// and resque-fork both put it).
fn without_retried_at(record: &str) -> std::borrow::Cow<'_, str> {
    const FIELD: &str = ",\"retried_at\":\"";
    if let Some(i) = record.rfind(FIELD) {
        let rest = &record[i + FIELD.len()..];
        if let Some(end) = rest.find('"') {
            if rest[end + 1..].trim() == "}" {
                return format!("{}}}", &record[..i]).into();
            }
        }
    }
    record.into()
}

/// One failure record, summarised.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailureRow {
    /// Position in the `failed` list now (0 = oldest).
    pub index: usize,
    /// The content id: names this record however the list shifts.
    pub id: String,
    pub failed_at: Option<String>,
    /// Seconds since `failed_at`, when it parses.
    pub age: Option<i64>,
    pub queue: Option<String>,
    pub class: Option<String>,
    pub exception: Option<String>,
    pub error: Option<String>,
    pub worker: Option<String>,
    pub retried_at: Option<String>,
    /// The whole record (for `failed show`).
    #[serde(skip)]
    pub record: String,
}

fn failure_row(index: usize, record: String, now: i64) -> FailureRow {
    let v: Value = serde_json::from_str(&record).unwrap_or(Value::Null);
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(String::from);
    let failed_at = text("failed_at");
    FailureRow {
        index,
        id: record_id(&record),
        age: failed_at
            .as_deref()
            .and_then(timefmt::parse_any)
            .map(|t| now - t),
        failed_at,
        queue: text("queue"),
        class: v
            .get("payload")
            .and_then(|p| p.get("class"))
            .and_then(Value::as_str)
            .map(String::from),
        exception: text("exception"),
        error: text("error"),
        worker: text("worker"),
        retried_at: text("retried_at"),
        record,
    }
}

/// Which failure records a command applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureFilter {
    pub queue: Option<String>,
    pub class: Option<String>,
}

impl FailureFilter {
    fn matches(&self, row: &FailureRow) -> bool {
        self.queue
            .as_ref()
            .is_none_or(|q| row.queue.as_ref() == Some(q))
            && self
                .class
                .as_ref()
                .is_none_or(|c| row.class.as_ref() == Some(c))
    }
}

/// Reads the failed list in chunks, oldest first.
fn each_failure(store: &mut Store, mut f: impl FnMut(FailureRow) -> bool) -> Result<()> {
    const CHUNK: usize = 500;
    let now = timefmt::now_epoch();
    let mut start = 0usize;
    loop {
        let chunk = store.failed_range(start as isize, (start + CHUNK - 1) as isize)?;
        let n = chunk.len();
        for (i, record) in chunk.into_iter().enumerate() {
            if !f(failure_row(start + i, record, now)) {
                return Ok(());
            }
        }
        if n < CHUNK {
            return Ok(());
        }
        start += CHUNK;
    }
}

/// The most recent `limit` failures matching `filter`, newest first
/// (resque-web's order); `limit` 0 = all.
pub fn failed_list(
    store: &mut Store,
    filter: &FailureFilter,
    limit: usize,
) -> Result<Vec<FailureRow>> {
    let mut rows = Vec::new();
    each_failure(store, |row| {
        if filter.matches(&row) {
            rows.push(row);
        }
        true
    })?;
    rows.reverse();
    if limit > 0 {
        rows.truncate(limit);
    }
    Ok(rows)
}

/// One failure record in full, for `failed show`.
#[derive(Debug, Clone, Serialize)]
pub struct FailureShown {
    /// Its position now.
    pub index: usize,
    /// Its content id.
    pub id: String,
    /// The record as stored (a JSON string of its text if it is not JSON).
    pub record: Box<RawValue>,
}

/// The failure record `r` names, in full.
pub fn failed_show(store: &mut Store, r: &FailureRef) -> Result<FailureShown> {
    let row = failed_find(store, r)?;
    let record = serde_json::from_str(&row.record)
        .or_else(|_| serde_json::value::to_raw_value(&row.record))
        .map_err(|e| Error::Corrupt(format!("failure {}: {e}", row.id)))?;
    Ok(FailureShown {
        index: row.index,
        id: row.id,
        record,
    })
}

/// The failures `failed list` shows, and how many the list holds in all.
#[derive(Debug, Clone)]
pub struct FailureList {
    /// Newest first.
    pub rows: Vec<FailureRow>,
    /// `LLEN failed`.
    pub total: i64,
}

/// The most recent `limit` failures matching `filter` (0 = all), newest
/// first, with the list's length.
pub fn failed_listing(
    store: &mut Store,
    filter: &FailureFilter,
    limit: usize,
) -> Result<FailureList> {
    Ok(FailureList {
        rows: failed_list(store, filter, limit)?,
        total: store.failed_len()?,
    })
}

/// Deletes the failed list; how many records it held.
pub fn failed_clear(store: &mut Store) -> Result<i64> {
    store.clear_failed()
}

/// A failure record named by index (whatever is there now) or content id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureRef {
    /// A position in the list (`#N` says so explicitly).
    Index(usize),
    /// The start of a content id: at least 6 hex digits.
    Id(String),
    /// Digits only, 6 or more: an index, or the start of an id. Whichever
    /// names a record wins; when both do, the reference is refused.
    IndexOrId(usize, String),
}

impl FailureRef {
    /// The index it can be, and the id prefix it can be.
    fn parts(&self) -> (Option<usize>, Option<&str>) {
        match self {
            FailureRef::Index(i) => (Some(*i), None),
            FailureRef::Id(id) => (None, Some(id.as_str())),
            FailureRef::IndexOrId(i, id) => (Some(*i), Some(id.as_str())),
        }
    }
}

/// The shortest id prefix accepted: shorter ones would name many records.
const MIN_ID_PREFIX: usize = 6;

impl std::str::FromStr for FailureRef {
    type Err = String;

    /// `#N` or a short number = an index; 6 to 40 hex digits with a letter,
    /// or 12 digits = an id (prefix); 6 to 11 digits = either.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if let Some(n) = s.strip_prefix('#') {
            return n
                .parse()
                .map(FailureRef::Index)
                .map_err(|_| format!("{s:?} is not an index"));
        }
        let hex =
            (MIN_ID_PREFIX..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
        let digits = s.bytes().all(|b| b.is_ascii_digit());
        if hex && (s.len() >= 12 || !digits) {
            return Ok(FailureRef::Id(s.to_ascii_lowercase()));
        }
        match s.parse() {
            Ok(i) if hex => Ok(FailureRef::IndexOrId(i, s.to_string())),
            Ok(i) => Ok(FailureRef::Index(i)),
            Err(_) => Err(format!("{s:?} is neither an index nor a failure id")),
        }
    }
}

/// Finds a failure record now. An id prefix that several records share, and
/// a number that is both an index and an id prefix, are refused with the
/// candidates named.
pub fn failed_find(store: &mut Store, r: &FailureRef) -> Result<FailureRow> {
    let (index, prefix) = r.parts();
    let mut at_index = None;
    let mut by_id: Vec<FailureRow> = Vec::new();
    each_failure(store, |row| {
        if prefix.is_some_and(|p| row.id.starts_with(p)) {
            by_id.push(row.clone());
        }
        if index == Some(row.index) {
            at_index = Some(row);
        }
        // Past the index, only an id search needs more of the list.
        prefix.is_some() || at_index.is_none()
    })?;
    pick(r, at_index, by_id)
}

/// Which record a reference names, given the record at its index (if it is
/// one) and those whose ids start with it (if it can be an id).
fn pick(
    r: &FailureRef,
    at_index: Option<FailureRow>,
    mut by_id: Vec<FailureRow>,
) -> Result<FailureRow> {
    let (index, prefix) = r.parts();
    let named = |rows: &[FailureRow]| -> String {
        rows.iter()
            .map(|f| {
                format!(
                    "{} (index {}, {})",
                    f.id,
                    f.index,
                    f.class.as_deref().unwrap_or("?")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (at_index, by_id.len()) {
        (Some(row), 0) => Ok(row),
        (None, 1) => Ok(by_id.remove(0)),
        (Some(row), _) => Err(Error::Conflict(format!(
            "{} is both the index of failure {} and the start of failure id(s) {}: write #{} for the index, or more of the id",
            prefix.unwrap_or_default(),
            row.id,
            named(&by_id),
            row.index
        ))),
        (None, 0) => Err(Error::NotFound(match (index, prefix) {
            (Some(i), None) => format!("no failure record at index {i}"),
            _ => format!(
                "no failure record with id {} (removed or retried since it was listed?)",
                prefix.unwrap_or_default()
            ),
        })),
        (None, n) => Err(Error::Conflict(format!(
            "{} failure records have ids starting with {}: {}; give more of the id",
            n,
            prefix.unwrap_or_default(),
            named(&by_id)
        ))),
    }
}

/// The record with `retried_at` set: spliced into the text when new, so the
/// payload is never re-encoded.
fn with_retried_at(record: &str, at: &str) -> Result<String> {
    let record = without_retried_at(record);
    let record = record.as_ref();
    let fields: BTreeMap<String, Box<RawValue>> = serde_json::from_str(record)
        .map_err(|e| Error::Corrupt(format!("the failure record is not a JSON object: {e}")))?;
    let stamp = Value::from(at).to_string();
    if !fields.contains_key("retried_at") {
        let body = record.trim().strip_suffix('}').unwrap_or("{").trim_end();
        let sep = if fields.is_empty() { "" } else { "," };
        return Ok(format!("{body}{sep}\"retried_at\":{stamp}}}"));
    }
    let mut fields = fields;
    fields.insert(
        "retried_at".into(),
        RawValue::from_string(stamp).map_err(|e| Error::Corrupt(e.to_string()))?,
    );
    serde_json::to_string(&fields).map_err(|e| Error::Corrupt(e.to_string()))
}

/// Retries one failure: `retried_at` is set on the record (as resque-web
/// does) and the payload goes back to the tail of its queue, `id` and all,
/// so php status tracking follows it. A record retried before is refused
/// unless `again`: its job would run a second time. Returns the row retried.
pub fn failed_retry(store: &mut Store, r: &FailureRef, again: bool) -> Result<FailureRow> {
    let row = failed_find(store, r)?;
    if let (Some(at), false) = (&row.retried_at, again) {
        return Err(Error::Conflict(format!(
            "failure {} was retried already ({at}); retrying it again runs its job again: add --again to do so",
            row.id
        )));
    }
    retry_row(store, &row)?;
    Ok(row)
}

fn retry_row(store: &mut Store, row: &FailureRow) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Parts<'a> {
        #[serde(borrow)]
        payload: Option<&'a RawValue>,
        queue: Option<String>,
    }
    let parts: Parts = serde_json::from_str(&row.record)
        .map_err(|e| Error::Corrupt(format!("failure {} is not a record: {e}", row.id)))?;
    let payload = parts
        .payload
        .map(|p| p.get())
        .filter(|p| p.trim_start().starts_with('{'))
        .ok_or_else(|| {
            Error::Corrupt(format!(
                "failure {} has no job payload to retry (it was not a runnable job)",
                row.id
            ))
        })?;
    let queue = parts
        .queue
        .filter(|q| !q.is_empty())
        .ok_or_else(|| Error::Corrupt(format!("failure {} names no queue", row.id)))?;
    let now = timefmt::now_epoch();
    let retried = with_retried_at(&row.record, &timefmt::failed_at(now))?;
    let status = best_effort_status_key(store.keys(), payload);
    if !store.retry_failed(
        &row.record,
        &retried,
        &queue,
        payload,
        status.as_deref(),
        now,
    )? {
        return Err(Error::Conflict(format!(
            "failure {} changed or went away before it could be retried",
            row.id
        )));
    }
    Ok(())
}

/// Retries every failure matching `filter` that was not retried yet.
/// Returns how many were retried.
pub fn failed_retry_all(store: &mut Store, filter: &FailureFilter) -> Result<usize> {
    let rows = failed_list(store, filter, 0)?;
    let mut done = 0;
    for row in rows.iter().filter(|r| r.retried_at.is_none()) {
        match retry_row(store, row) {
            Ok(()) => done += 1,
            // One record that cannot be retried does not stop the others.
            Err(Error::Corrupt(why) | Error::Conflict(why)) => log::warn!("{why}"),
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Removes one failure record. Returns the row removed.
pub fn failed_remove(store: &mut Store, r: &FailureRef) -> Result<FailureRow> {
    let row = failed_find(store, r)?;
    if !store.remove_failed(&row.record)? {
        return Err(Error::Conflict(format!(
            "failure {} went away before it could be removed",
            row.id
        )));
    }
    Ok(row)
}

/// What `status` knows of a job: its php status record, or where it is.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum JobWhereabouts {
    /// Its status record.
    Tracked(crate::producer::JobStatus),
    /// No status record, but it was found.
    Located(JobLocation),
}

/// The status of job `id`; for a job without a status record (untracked, or
/// expired), where it is. `NotFound` when it is nowhere.
pub fn job_status(store: &mut Store, id: &str) -> Result<JobWhereabouts> {
    match crate::producer::status(store, id) {
        Ok(status) => Ok(JobWhereabouts::Tracked(status)),
        Err(Error::NotFound(why)) => match locate_job(store, id)? {
            Some(place) => Ok(JobWhereabouts::Located(place)),
            None => Err(Error::NotFound(format!(
                "{why}; and it is not running, queued or in the failed list"
            ))),
        },
        Err(e) => Err(e),
    }
}

/// Where a job is, found by its payload `id` (for jobs without a status
/// record, or whose record expired).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "where", rename_all = "snake_case")]
pub enum JobLocation {
    /// A worker is running it.
    Running { worker: String, queue: String },
    /// Waiting in `queue`, `position` jobs ahead of it.
    Queued { queue: String, position: usize },
    /// In the failed list.
    Failed { failure_id: String, index: usize },
}

/// True when `text` is a payload whose `id` is `id`.
fn has_id(text: &[u8], id: &str) -> bool {
    // Most payloads do not even contain the id's text: skip parsing them.
    if !text.windows(id.len()).any(|w| w == id.as_bytes()) {
        return false;
    }
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<String>,
    }
    serde_json::from_slice::<IdOnly>(text).is_ok_and(|p| p.id.as_deref() == Some(id))
}

/// Looks for the job with payload `id`: running, then queued (every queue
/// in `queues`), then in the failed list. `None` when it is nowhere.
pub fn locate_job(store: &mut Store, id: &str) -> Result<Option<JobLocation>> {
    if id.is_empty() {
        return Ok(None);
    }
    let workers = store.worker_ids()?;
    for w in store.worker_keys(&workers)? {
        let Some(record) = w
            .in_flight
            .as_deref()
            .and_then(|t| WorkerRecord::parse(t.as_bytes()))
        else {
            continue;
        };
        if has_id(record.payload.get().as_bytes(), id) {
            return Ok(Some(JobLocation::Running {
                worker: w.id,
                queue: record.queue,
            }));
        }
    }
    const CHUNK: usize = 1000;
    for queue in store.queue_names()? {
        let mut start = 0;
        loop {
            let items = store.queue_range(&queue, start as isize, (start + CHUNK - 1) as isize)?;
            if let Some(i) = items.iter().position(|p| has_id(p, id)) {
                return Ok(Some(JobLocation::Queued {
                    queue,
                    position: start + i,
                }));
            }
            if items.len() < CHUNK {
                break;
            }
            start += CHUNK;
        }
    }
    let mut found = None;
    each_failure(store, |row| {
        #[derive(serde::Deserialize)]
        struct PayloadOnly<'a> {
            #[serde(borrow)]
            payload: Option<&'a RawValue>,
        }
        let hit = serde_json::from_str::<PayloadOnly>(&row.record)
            .ok()
            .and_then(|r| r.payload)
            .is_some_and(|p| has_id(p.get().as_bytes(), id));
        if hit {
            found = Some(JobLocation::Failed {
                failure_id: row.id.clone(),
                index: row.index,
            });
        }
        !hit
    })?;
    Ok(found)
}

/// Runs pruning now, as a worker would. The lock is taken under `who`.
pub fn prune_now(
    store: &mut Store,
    who: &str,
    hostname: &str,
    policy: &PrunePolicy,
) -> Result<Vec<Pruned>> {
    match prune::prune(store, who, hostname, policy)? {
        PruneRun::Done(pruned) => Ok(pruned),
        PruneRun::Skipped { holder, retry_in } => Err(Error::Conflict(format!(
            "{holder} holds the pruning lock (it is pruning now); try again in {}s",
            retry_in.as_secs().max(1)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retried_at_is_spliced_without_touching_the_payload() {
        let rec = r#"{"failed_at":"x","payload":{"class":"A","args":[1.50]},"queue":"q"}"#;
        let out = with_retried_at(rec, "2024/01/15 10:30:00 UTC").unwrap();
        assert_eq!(
            out,
            r#"{"failed_at":"x","payload":{"class":"A","args":[1.50]},"queue":"q","retried_at":"2024/01/15 10:30:00 UTC"}"#
        );
        let again = with_retried_at(&out, "2024/01/16 10:30:00 UTC").unwrap();
        assert_eq!(again, out.replace("2024/01/15", "2024/01/16"));
        assert_eq!(record_id(rec), record_id(&out));
        assert_eq!(record_id(rec), record_id(&again));
    }

    fn row(index: usize, id: &str) -> FailureRow {
        FailureRow {
            index,
            id: id.into(),
            failed_at: None,
            age: None,
            queue: None,
            class: Some("A".into()),
            exception: None,
            error: None,
            worker: None,
            retried_at: None,
            record: String::new(),
        }
    }

    #[test]
    fn a_number_that_is_both_an_index_and_an_id_prefix_is_refused() {
        let both = FailureRef::IndexOrId(3, "000003".into());
        let err = pick(
            &both,
            Some(row(3, "aaaaaaaaaaaa")),
            vec![row(9, "000003bbbbbb")],
        );
        assert!(
            matches!(&err, Err(Error::Conflict(m)) if m.contains("write #3")),
            "{err:?}"
        );
        // Whichever alone names a record wins.
        let index_only = pick(&both, Some(row(3, "aaaaaaaaaaaa")), vec![]).unwrap();
        assert_eq!(index_only.id, "aaaaaaaaaaaa");
        let id_only = pick(&both, None, vec![row(9, "000003bbbbbb")]).unwrap();
        assert_eq!(id_only.index, 9);
        assert!(matches!(pick(&both, None, vec![]), Err(Error::NotFound(_))));
    }

    #[test]
    fn refs() {
        assert_eq!("12".parse(), Ok(FailureRef::Index(12)));
        assert_eq!("#123456".parse(), Ok(FailureRef::Index(123456)));
        assert_eq!(
            "0a1b2c3d4e5f".parse(),
            Ok(FailureRef::Id("0a1b2c3d4e5f".into()))
        );
        assert_eq!(
            "123456789012".parse(),
            Ok(FailureRef::Id("123456789012".into()))
        );
        assert_eq!(
            "123456".parse(),
            Ok(FailureRef::IndexOrId(123456, "123456".into()))
        );
        assert_eq!("abcdef".parse(), Ok(FailureRef::Id("abcdef".into())));
        assert!("zz".parse::<FailureRef>().is_err());
        assert!("#x".parse::<FailureRef>().is_err());
        assert_eq!(record_id("x").len(), 12);
    }
}
