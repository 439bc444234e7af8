//! Putting jobs on queues and reading their php-resque status: the
//! [`Producer`] client, for programs that only enqueue.

use crate::error::{Error, Result};
use crate::handlers::typed::{encode_args, TypedJob};
use crate::payload::{JobState, StatusRecord};
use crate::store::Store;
use crate::timefmt;
use serde_json::Value;
use std::io::Read;
use std::sync::Mutex;

/// A new random 32-hex-digit job id, as php-resque makes them.
pub fn new_job_id() -> Result<String> {
    Ok(new_job_ids(1)?.remove(0))
}

/// `n` new job ids, from one read of the system's random source.
pub fn new_job_ids(n: usize) -> Result<Vec<String>> {
    let mut bytes = vec![0u8; 16 * n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("reading /dev/urandom for job ids", e))?;
    Ok(bytes
        .chunks(16)
        .map(|id| id.iter().map(|b| format!("{b:02x}")).collect())
        .collect())
}

fn check_names(queue: &str, class: &str) -> Result<()> {
    if queue.is_empty() || queue.contains(':') {
        return Err(Error::Config(format!(
            "invalid queue name {queue:?}: it must be non-empty and contain no ':'"
        )));
    }
    if class.is_empty() {
        return Err(Error::Config("the job class must not be empty".into()));
    }
    Ok(())
}

fn now_fraction() -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    (now * 10_000.0).round() / 10_000.0
}

/// Enqueues many jobs of one class, pipelined (one round trip per thousand);
/// each of `args_json` is the text of one job's args array, written as is.
/// With `track`, each gets php's status record. Returns the ids of the jobs
/// enqueued, in order, and whether all were: after an error the ids are
/// those of the batches committed before it.
pub fn enqueue_many(
    store: &mut Store,
    queue: &str,
    class: &str,
    args_json: &[String],
    track: bool,
) -> (Vec<String>, Result<()>) {
    if let Err(e) = check_names(queue, class) {
        return (Vec::new(), Err(e));
    }
    let mut ids = match new_job_ids(args_json.len()) {
        Ok(ids) => ids,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let now = now_fraction();
    let payloads: Vec<String> = args_json
        .iter()
        .zip(&ids)
        .map(|(a, id)| payload_text_raw(class, a, id, now))
        .collect();
    let statuses: Option<Vec<(String, String)>> = track.then(|| {
        let record = serde_json::to_string(&StatusRecord::waiting(now as i64)).unwrap_or_default();
        ids.iter()
            .map(|id| (store.keys().job_status(None, id), record.clone()))
            .collect()
    });
    let mut committed = 0;
    let result = store
        .enqueue_many(queue, &payloads, statuses.as_deref(), &mut committed)
        .map_err(|e| match e {
            Error::Redis { action, source } => Error::Redis {
                action: format!(
                    "{action} ({committed} of {} jobs were enqueued before this, their ids printed above; enqueue only the remaining lines again)",
                    payloads.len()
                ),
                source,
            },
            other => other,
        });
    ids.truncate(committed);
    (ids, result)
}

/// Reads `enqueue --stdin` lines: a JSON array is the args, kept byte for
/// byte; any other JSON value is the only arg; blank lines are skipped.
/// Nothing is enqueued unless every line parses.
pub fn read_arg_lines(input: impl std::io::BufRead) -> Result<Vec<String>> {
    let mut all = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(|e| Error::io("reading standard input", e))?;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if let Err(e) = serde_json::from_str::<&serde_json::value::RawValue>(text) {
            return Err(Error::Config(format!(
                "standard input line {}: not JSON ({e}); nothing was enqueued",
                n + 1
            )));
        }
        all.push(if text.starts_with('[') {
            text.to_string()
        } else {
            format!("[{text}]")
        });
    }
    Ok(all)
}

/// Parses an `enqueue` argument: JSON when it parses, else a string.
pub fn parse_arg(arg: &str) -> serde_json::Value {
    serde_json::from_str(arg).unwrap_or_else(|_| serde_json::Value::String(arg.to_string()))
}

/// Schedules a job to be enqueued at `at` (epoch seconds), as Ruby's
/// `Resque.enqueue_at_with_queue` does; any pool (or a Ruby or node
/// scheduler) moves it onto its queue once due. Returns the item written.
pub fn enqueue_at(
    store: &mut Store,
    queue: &str,
    class: &str,
    args: &[Value],
    at: i64,
) -> Result<String> {
    schedule(store, queue, class, args, at, None)
}

/// [`enqueue_at`] for a job with an id and php's status record (1, waiting,
/// until it runs), so `status` follows it. The item carries the id before
/// its queue (`{"class","args","id","queue"}`): Ruby's content-based
/// lookups, which match `{"class","args","queue"}` exactly, do not find it;
/// `delayed remove` does. Returns the job id.
pub fn enqueue_at_tracked(
    store: &mut Store,
    queue: &str,
    class: &str,
    args: &[Value],
    at: i64,
) -> Result<String> {
    let id = new_job_id()?;
    schedule(store, queue, class, args, at, Some(&id))?;
    Ok(id)
}

/// Writes the delayed item (with `id` and a status record when given).
fn schedule(
    store: &mut Store,
    queue: &str,
    class: &str,
    args: &[Value],
    at: i64,
    id: Option<&str>,
) -> Result<String> {
    check_names(queue, class)?;
    let args = Value::Array(args.to_vec()).to_string();
    let Some(id) = id else {
        let item = crate::payload::delayed_item(queue, class, &args);
        store.schedule_delayed(at, &item, None)?;
        return Ok(item);
    };
    let item = format!(
        "{{\"class\":{},\"args\":{args},\"id\":{},\"queue\":{}}}",
        Value::from(class),
        Value::from(id),
        Value::from(queue)
    );
    let record = serde_json::to_string(&StatusRecord::waiting(timefmt::now_epoch()))
        .map_err(|e| Error::Config(format!("encoding a status record: {e}")))?;
    let key = store.keys().job_status(None, id);
    store.schedule_delayed(at, &item, Some((&key, &record)))?;
    Ok(item)
}

/// Schedules a job `delay` from now, by Redis's clock (which promotion
/// reads too, so hosts with skewed clocks agree). Returns the due time.
pub fn enqueue_in(
    store: &mut Store,
    queue: &str,
    class: &str,
    args: &[Value],
    delay: std::time::Duration,
) -> Result<i64> {
    let at = store.server_time()? + delay.as_secs().min(i64::MAX as u64 / 2) as i64;
    enqueue_at(store, queue, class, args, at)?;
    Ok(at)
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
    payload_text_raw(
        class,
        &Value::Array(args.to_vec()).to_string(),
        id,
        queue_time,
    )
}

/// [`payload_text`] around args already encoded as a JSON array's text.
pub fn payload_text_raw(class: &str, args_json: &str, id: &str, queue_time: f64) -> String {
    format!(
        "{{\"class\":{},\"args\":{args_json},\"id\":{},\"queue_time\":{}}}",
        Value::from(class),
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
    check_names(queue, class)?;
    let id = new_job_id()?;
    let now = now_fraction();
    let payload = payload_text(class, args, &id, now);
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
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JobStatus {
    /// The state.
    pub state: JobState,
    /// The record as stored.
    pub record: StatusRecord,
    /// Seconds until the record expires, once the job has finished.
    pub expires_in: Option<i64>,
}

/// Reads the status of job `id` (`NotFound` when there is none).
pub fn status(store: &mut Store, id: &str) -> Result<JobStatus> {
    let key = store.keys().job_status(None, id);
    let text = store.get(&key)?.ok_or_else(|| {
        Error::NotFound(format!(
            "no status for job {id}: the id is unknown, the job was enqueued without tracking, \
             or its status expired (kept 24 h after the job ends)"
        ))
    })?;
    let record: StatusRecord = serde_json::from_str(&text).map_err(|e| {
        Error::Corrupt(format!(
            "the status of job {id} is not a status record ({e}): {text}"
        ))
    })?;
    let state = JobState::from_code(record.status).ok_or_else(|| {
        Error::Corrupt(format!(
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

type BeforeEnqueue = Box<dyn Fn(&str, &str, &[Value]) -> bool + Send + Sync>;
type AfterEnqueue = Box<dyn Fn(&str, &str, &[Value], &str) + Send + Sync>;

/// A client for programs that put jobs on queues and read their status.
///
/// It is `Send + Sync`: share one between threads (calls take turns on one
/// connection), or call it from an async runtime's blocking pool. The
/// single-thread rule is the worker's, not the producer's.
///
/// ```no_run
/// use resque_fork::producer::Producer;
/// let producer = Producer::connect("redis://127.0.0.1:6379")?
///     .before_enqueue(|queue, class, _args| class != "Forbidden");
/// let id = producer.enqueue("mail", "Mailer", &[7.into(), "welcome".into()])?;
/// println!("enqueued {id:?}; mail holds {} jobs", producer.size("mail")?);
/// # Ok::<(), resque_fork::Error>(())
/// ```
pub struct Producer {
    store: Mutex<Store>,
    before_enqueue: Vec<BeforeEnqueue>,
    after_enqueue: Vec<AfterEnqueue>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

impl Producer {
    /// Connects to `url` (`redis://`, `rediss://`, `unix://`), under the
    /// default `resque:` namespace.
    pub fn connect(url: &str) -> Result<Producer> {
        Producer::connect_with_prefix(url, crate::keys::DEFAULT_PREFIX)
    }

    /// Connects under another namespace (php-resque's `PREFIX` rule).
    pub fn connect_with_prefix(url: &str, prefix: &str) -> Result<Producer> {
        Producer::connect_with(&crate::config::RedisSettings::new(url, prefix))
    }

    /// Connects as `settings` say: a master found through Sentinels
    /// (followed through failovers), replicas to wait for. While the
    /// Sentinels announce a failover, calls fail with an error for which
    /// [`Error::is_connection`](crate::Error::is_connection) is true: try
    /// again, as after any lost connection.
    ///
    /// ```no_run
    /// use resque_fork::config::{sentinel_settings, RedisSettings};
    /// let mut settings = RedisSettings::new("redis://:data-secret@ignored", "resque");
    /// settings.sentinel = sentinel_settings(Some("s1:26379,s2:26379,s3:26379"), Some("mymaster"), None, None)?;
    /// let producer = resque_fork::Producer::connect_with(&settings)?;
    /// # Ok::<(), resque_fork::Error>(())
    /// ```
    pub fn connect_with(settings: &crate::config::RedisSettings) -> Result<Producer> {
        Ok(Producer {
            store: Mutex::new(Store::connect_with(settings)?),
            before_enqueue: Vec::new(),
            after_enqueue: Vec::new(),
        })
    }

    /// Runs before each enqueue with (queue, class, args); returning false
    /// cancels it (Ruby's `before_enqueue`, php's `beforeEnqueue`).
    pub fn before_enqueue(
        mut self,
        f: impl Fn(&str, &str, &[Value]) -> bool + Send + Sync + 'static,
    ) -> Producer {
        self.before_enqueue.push(Box::new(f));
        self
    }

    /// Runs after each enqueue with (queue, class, args, job id).
    pub fn after_enqueue(
        mut self,
        f: impl Fn(&str, &str, &[Value], &str) + Send + Sync + 'static,
    ) -> Producer {
        self.after_enqueue.push(Box::new(f));
        self
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store half-changed:
        // every operation is one Redis command or transaction.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(
        &self,
        queue: &str,
        class: &str,
        args: &[Value],
        track: bool,
    ) -> Result<Option<String>> {
        if !self.before_enqueue.iter().all(|h| h(queue, class, args)) {
            return Ok(None);
        }
        let id = enqueue(&mut self.store(), queue, class, args, track)?;
        for h in &self.after_enqueue {
            h(queue, class, args, &id);
        }
        Ok(Some(id))
    }

    /// Enqueues a job; returns its id, or `None` when a `before_enqueue`
    /// hook cancelled it.
    pub fn enqueue(&self, queue: &str, class: &str, args: &[Value]) -> Result<Option<String>> {
        self.push(queue, class, args, false)
    }

    /// Enqueues a job and tracks its status (php-resque's status key).
    pub fn enqueue_tracked(
        &self,
        queue: &str,
        class: &str,
        args: &[Value],
    ) -> Result<Option<String>> {
        self.push(queue, class, args, true)
    }

    /// Schedules a job for `at` (epoch seconds) on resque-scheduler's keys,
    /// exactly as Ruby's `Resque.enqueue_at_with_queue` writes it; a pool
    /// moves it onto `queue` when due. Returns the item written.
    ///
    /// ```no_run
    /// # let producer = resque_fork::Producer::connect("redis://127.0.0.1:6379")?;
    /// producer.enqueue_at("reports", "Nightly", &[], 1_800_000_000)?;
    /// producer.enqueue_in("mail", "Reminder", &[7.into()], std::time::Duration::from_secs(3600))?;
    /// # Ok::<(), resque_fork::Error>(())
    /// ```
    pub fn enqueue_at(&self, queue: &str, class: &str, args: &[Value], at: i64) -> Result<String> {
        enqueue_at(&mut self.store(), queue, class, args, at)
    }

    /// Schedules a job with an id and php's status record (see
    /// [`enqueue_at_tracked`]); returns the id.
    pub fn enqueue_at_tracked(
        &self,
        queue: &str,
        class: &str,
        args: &[Value],
        at: i64,
    ) -> Result<String> {
        enqueue_at_tracked(&mut self.store(), queue, class, args, at)
    }

    /// Schedules a job `delay` from now, by Redis's clock; returns when it
    /// is due (epoch seconds).
    pub fn enqueue_in(
        &self,
        queue: &str,
        class: &str,
        args: &[Value],
        delay: std::time::Duration,
    ) -> Result<i64> {
        enqueue_in(&mut self.store(), queue, class, args, delay)
    }

    /// Enqueues a typed job, its arguments laid out as its worker decodes them.
    pub fn enqueue_job<T: TypedJob>(&self, queue: &str, job: &T) -> Result<Option<String>> {
        self.push(queue, T::CLASS, &encode_args(job, T::LAYOUT)?, false)
    }

    /// Removes queued jobs of `class` (and with exactly `args`, when given),
    /// as Ruby's `Resque.dequeue`; returns how many were removed.
    pub fn dequeue(&self, queue: &str, class: &str, args: Option<&[Value]>) -> Result<usize> {
        let mut store = self.store();
        let payloads = store.queue_range(queue, 0, -1)?;
        let mut removed = 0;
        for text in payloads {
            let Ok(Value::Object(job)) = serde_json::from_slice::<Value>(&text) else {
                continue;
            };
            let same_class = job.get("class").and_then(Value::as_str) == Some(class);
            let same_args = args.is_none_or(|a| job.get("args") == Some(&Value::Array(a.to_vec())));
            if same_class && same_args {
                removed += store.remove_from_queue(queue, &text)?;
            }
        }
        Ok(removed)
    }

    /// How many jobs wait in `queue`.
    pub fn size(&self, queue: &str) -> Result<i64> {
        let lengths = self.store().queue_lengths()?;
        Ok(lengths
            .into_iter()
            .find(|(q, _)| q == queue)
            .map(|(_, n)| n)
            .unwrap_or(0))
    }

    /// Every queue name, sorted.
    pub fn queues(&self) -> Result<Vec<String>> {
        self.store().queue_names()
    }

    /// The status of a job enqueued with [`Producer::enqueue_tracked`].
    pub fn status(&self, id: &str) -> Result<JobStatus> {
        status(&mut self.store(), id)
    }
}
