//! The operations commands: see and fix a Resque deployment (any
//! implementation's workers and queues) the way resque-web does, with stable
//! JSON for scripts.
//!
//! The failed list is [`failed`]'s.

pub mod failed;

pub use failed::*;

use crate::error::{Error, Result};
use crate::payload::WorkerRecord;
use crate::prune::{self, PrunePolicy, PruneRun, Pruned, WorkerId};
use crate::store::{Store, WorkerKeys};
use crate::timefmt;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

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
    /// Delayed jobs waiting on resque-scheduler's keys (items, not timestamps).
    pub delayed: i64,
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
    let delayed = store.delayed_buckets()?.iter().map(|(_, n)| n).sum();
    Ok(Counts {
        delayed,
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

/// The delayed jobs: how many, when the next is due, and every timestamp
/// with its number of items.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DelayedSummary {
    /// Items in all.
    pub count: i64,
    /// The earliest timestamp, epoch seconds.
    pub next_due: Option<i64>,
    /// `[timestamp, items]`, earliest first.
    pub timestamps: Vec<(i64, i64)>,
}

/// `delayed`.
pub fn delayed(store: &mut Store) -> Result<DelayedSummary> {
    let timestamps = store.delayed_buckets()?;
    Ok(DelayedSummary {
        count: timestamps.iter().map(|(_, n)| n).sum(),
        next_due: timestamps.first().map(|(ts, _)| *ts),
        timestamps,
    })
}

/// `delayed show TS`: the items due then, as their writers wrote them.
pub fn delayed_show(store: &mut Store, ts: i64) -> Result<Vec<String>> {
    Ok(store
        .delayed_items(ts)?
        .into_iter()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect())
}

/// Which delayed jobs `delayed remove` and `delayed run-now` take: those
/// of one queue and class, with given args (as Ruby's
/// `remove_delayed_in_queue` and `enqueue_delayed_with_queue` find them,
/// whichever client wrote them) or any.
#[derive(Debug, Clone)]
pub struct DelayedSelection<'a> {
    pub queue: &'a str,
    pub class: &'a str,
    /// `None`: any args.
    pub args: Option<serde_json::Value>,
}

impl DelayedSelection<'_> {
    fn matches(&self, item: &[u8]) -> bool {
        let Ok(serde_json::Value::Object(job)) = serde_json::from_slice(item) else {
            return false;
        };
        job.get("queue").and_then(|q| q.as_str()) == Some(self.queue)
            && job.get("class").and_then(|c| c.as_str()) == Some(self.class)
            && self
                .args
                .as_ref()
                .is_none_or(|a| job.get("args") == Some(a))
    }
}

/// `delayed remove` (`run = false`) or `delayed run-now` (`run = true`):
/// how many delayed jobs were taken.
pub fn delayed_take(store: &mut Store, selection: &DelayedSelection, run: bool) -> Result<u64> {
    let found: Vec<(i64, Vec<u8>)> = store
        .all_delayed()?
        .into_iter()
        .filter(|(_, item)| selection.matches(item))
        .collect();
    store.take_delayed(selection.queue, &found, run)
}

/// A recurring entry as `schedule` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleRow {
    pub name: String,
    /// `file` (SCHEDULE) or `redis` (persistent_schedules).
    pub origin: crate::schedule::Origin,
    /// `cron "…"` or `every …`.
    pub when: String,
    pub class: String,
    pub queue: String,
    pub args: Box<serde_json::value::RawValue>,
    pub description: Option<String>,
    /// The next tick, epoch seconds (Redis's clock).
    pub next_run: Option<i64>,
    /// The last enqueue, as resque-scheduler records it.
    pub last_enqueued_at: Option<String>,
    /// The latest tick enqueued, epoch seconds.
    pub latest_tick: Option<i64>,
}

/// `schedule`: the recurring entries of `file` (for environment `env`) and
/// of `persistent_schedules`, with their next and last runs.
pub fn schedule(
    store: &mut Store,
    file: Option<&std::path::Path>,
    env: Option<&str>,
) -> Result<Vec<ScheduleRow>> {
    let mut schedule = crate::schedule::Schedule::load(file, env)?;
    let (now, dynamic) = store.schedule_inputs()?;
    schedule.set_dynamic(dynamic);
    let (mut last, mut ticks) = store.recurring_history()?;
    Ok(schedule
        .entries()
        .into_iter()
        .map(|e| ScheduleRow {
            name: e.name.clone(),
            origin: e.origin,
            when: e.trigger.describe(),
            class: e.class.clone(),
            queue: e.queue.clone(),
            args: serde_json::value::RawValue::from_string(e.args.clone())
                .unwrap_or_else(|_| Default::default()),
            description: e.description.clone(),
            next_run: e.trigger.next_after(now),
            last_enqueued_at: last.remove(&e.name),
            latest_tick: ticks.remove(&e.name),
        })
        .collect())
}

/// A job waiting in the delayed set for its retry, as `retries` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RetryRow {
    /// When it runs again, epoch seconds.
    pub due: i64,
    pub queue: String,
    pub class: String,
    pub id: Option<String>,
    /// Retries made, the coming one included (the attempt is this + 1).
    pub retry_count: u64,
    /// The last run's error.
    pub error: Option<String>,
    pub args: serde_json::Value,
}

/// `retries`: the delayed jobs that are retries (those with a
/// `retry_count`), the next due first.
pub fn retries(store: &mut Store) -> Result<Vec<RetryRow>> {
    Ok(store
        .all_delayed()?
        .into_iter()
        .filter_map(|(due, item)| {
            let serde_json::Value::Object(job) = serde_json::from_slice(&item).ok()? else {
                return None;
            };
            let text = |k: &str| job.get(k).and_then(|v| v.as_str()).map(str::to_string);
            Some(RetryRow {
                due,
                retry_count: job.get("retry_count")?.as_u64()?,
                queue: text("queue").unwrap_or_default(),
                class: text("class").unwrap_or_default(),
                id: text("id"),
                error: text("error"),
                args: job.get("args").cloned().unwrap_or_default(),
            })
        })
        .collect())
}

/// A running pool's groups, as its supervisor published them.
#[derive(Debug, Clone, Serialize)]
pub struct PoolRow {
    /// `host:pid` of the supervisor.
    pub pool: String,
    /// `[{queues, intended, running, pids}]`.
    pub groups: serde_json::Value,
    /// When the supervisor last changed it, epoch seconds.
    pub updated: Option<i64>,
}

/// Every pool's groups (`pool status`, and the foot of `workers`). The
/// record of a pool of this host (`hostname`) whose supervisor is gone
/// (killed, so it could not remove it) is removed, not shown.
pub fn pools(store: &mut Store, hostname: &str) -> Result<Vec<PoolRow>> {
    let mut rows = Vec::new();
    for (pool, state) in store.pools()? {
        let gone = pool
            .rsplit_once(':')
            .filter(|(host, _)| *host == hostname)
            .and_then(|(_, pid)| pid.parse::<i32>().ok())
            .is_some_and(|pid| !crate::procfs::is_resque_fork(pid));
        if gone {
            store.forget_pool(&pool)?;
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&state).unwrap_or_default();
        rows.push(PoolRow {
            pool,
            groups: v["groups"].clone(),
            updated: v["updated"].as_i64(),
        });
    }
    rows.sort_by(|a, b| a.pool.cmp(&b.pool));
    Ok(rows)
}

/// `delayed clear`: how many items were deleted.
pub fn delayed_clear(store: &mut Store) -> Result<i64> {
    store.clear_delayed()
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
