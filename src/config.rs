//! Validated settings, built from the command line and environment.

use crate::error::{Error, Result};
use crate::queues::QueueSpec;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where Redis is and which namespace to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// A URL the `redis` crate accepts: `redis://`, `rediss://`, `unix://`.
    /// With [`RedisSettings::sentinel`], only its credentials, database and
    /// TLS apply: the Sentinels name the host.
    pub url: String,
    /// The key prefix as given (the php `:` rule is applied by `Keys`).
    pub prefix: String,
    /// Find the master through Redis Sentinel (`REDIS_SENTINELS`).
    pub sentinel: Option<SentinelSettings>,
    /// `REDIS_MIN_REPLICAS`: the reserve and record steps count only once
    /// this many replicas acknowledged them (`WAIT`); 0 = don't wait.
    pub min_replicas: u32,
}

impl RedisSettings {
    /// Settings for one Redis at `url`, no Sentinel, no replica wait.
    pub fn new(url: impl Into<String>, prefix: impl Into<String>) -> RedisSettings {
        RedisSettings {
            url: url.into(),
            prefix: prefix.into(),
            sentinel: None,
            min_replicas: 0,
        }
    }
}

/// The Sentinels that know the master, and how to talk to them.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelSettings {
    /// Each Sentinel as a URL: `redis://host:port`, or `rediss://` for TLS.
    pub sentinels: Vec<String>,
    /// `REDIS_SENTINEL_MASTER`: the name the Sentinels monitor the master under.
    pub master: String,
    /// `REDIS_SENTINEL_USERNAME`, for Sentinels with ACL users.
    pub username: Option<String>,
    /// `REDIS_SENTINEL_PASSWORD`: the Sentinels' own password (the data
    /// nodes' is in the Redis URL).
    pub password: Option<String>,
}

impl std::fmt::Debug for SentinelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelSettings")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The default Sentinel port, when an address names none.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// Reads `REDIS_SENTINELS` (comma-separated `host:port`, `host` for port
/// 26379, or `redis://`/`rediss://` URLs) with `REDIS_SENTINEL_MASTER`.
///
/// ```
/// use resque_fork::config::sentinel_settings;
/// let s = sentinel_settings(Some("a:26380, b,rediss://c:1"), Some("mymaster"), None, None).unwrap().unwrap();
/// assert_eq!(s.sentinels, ["redis://a:26380", "redis://b:26379", "rediss://c:1"]);
/// assert!(sentinel_settings(None, None, None, None).unwrap().is_none());
/// assert!(sentinel_settings(Some("a"), None, None, None).is_err());
/// assert!(sentinel_settings(None, Some("m"), None, None).is_err());
/// ```
pub fn sentinel_settings(
    sentinels: Option<&str>,
    master: Option<&str>,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<Option<SentinelSettings>> {
    let (sentinels, master) =
        match (sentinels, master) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(Error::Config(
                    "REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER (the master's name) is not"
                        .into(),
                ))
            }
            (None, Some(_)) => return Err(Error::Config(
                "REDIS_SENTINEL_MASTER is set but REDIS_SENTINELS (where the Sentinels are) is not"
                    .into(),
            )),
            (Some(s), Some(m)) => (s, m),
        };
    let mut urls = Vec::new();
    for entry in sentinels
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (scheme, rest) = match entry.split_once("://") {
            Some(("redis" | "tcp", rest)) => ("redis", rest),
            Some(("rediss", rest)) => ("rediss", rest),
            Some((other, _)) => {
                return Err(Error::Config(format!(
                    "REDIS_SENTINELS entry {:?}: scheme {other:?} is not supported (use host:port, redis:// or rediss://)",
                    redact_url(entry)
                )))
            }
            None => ("redis", entry),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return Err(Error::Config(format!(
                "REDIS_SENTINELS entry {:?}: give the Sentinels' password in REDIS_SENTINEL_PASSWORD, not in the address",
                redact_url(entry)
            )));
        }
        // A bracketed IPv6 address without a port ends in ']'.
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !authority.ends_with(']') => match p.parse::<u16>() {
                Ok(port) => (h, port),
                Err(_) => {
                    return Err(Error::Config(format!(
                        "REDIS_SENTINELS entry {entry:?}: {p:?} is not a port"
                    )))
                }
            },
            _ => (authority, DEFAULT_SENTINEL_PORT),
        };
        if host.is_empty() {
            return Err(Error::Config(format!(
                "REDIS_SENTINELS entry {entry:?} names no host"
            )));
        }
        let tail = if scheme == "rediss" && rest.contains("#insecure") {
            "/#insecure"
        } else {
            ""
        };
        urls.push(format!("{scheme}://{host}:{port}{tail}"));
    }
    if urls.is_empty() {
        return Err(Error::Config("REDIS_SENTINELS names no Sentinel".into()));
    }
    if master.trim().is_empty() {
        return Err(Error::Config("REDIS_SENTINEL_MASTER is empty".into()));
    }
    Ok(Some(SentinelSettings {
        sentinels: urls,
        master: master.trim().to_string(),
        username: username.map(String::from),
        password: password.map(String::from),
    }))
}

/// A Redis URL or php DSN as it may be shown (errors, logs, help): its
/// password, in the user part or in a `pass`/`password` query parameter,
/// replaced by `***`.
///
/// ```
/// use resque_fork::config::redact_url;
/// assert_eq!(redact_url("redis://u:s3cret@h:6379/0"), "redis://u:***@h:6379/0");
/// assert_eq!(redact_url("redis2://:s3cret@h"), "redis2://:***@h");
/// assert_eq!(redact_url("unix:///r.sock?user=u&pass=s3cret&db=1"), "unix:///r.sock?user=u&pass=***&db=1");
/// assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
/// assert_eq!(redact_url("u:s3cret@h:1"), "u:***@h:1");
/// ```
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k == "pass" || k == "password" => format!("{k}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}{authority}{tail}")
}

/// The default when neither `REDIS_URL` nor `REDIS_BACKEND` is set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Resolves `REDIS_URL`, else php's `REDIS_BACKEND` (+ `REDIS_BACKEND_DB`),
/// into one URL.
///
/// ```
/// use resque_fork::config::redis_url;
/// assert_eq!(redis_url(None, Some("10.0.0.5:6380"), Some("2")).unwrap(), "redis://10.0.0.5:6380/2");
/// assert_eq!(redis_url(None, Some("tcp://h:1/3"), Some("2")).unwrap(), "redis://h:1/3");
/// assert_eq!(redis_url(None, Some("unix:///run/r.sock"), Some("1")).unwrap(), "unix:///run/r.sock?db=1");
/// assert_eq!(redis_url(Some("redis://x/4"), Some("ignored:1"), None).unwrap(), "redis://x/4");
/// ```
pub fn redis_url(
    url: Option<&str>,
    backend: Option<&str>,
    backend_db: Option<&str>,
) -> Result<String> {
    if let Some(url) = url {
        let scheme_ok = ["redis://", "rediss://", "unix://", "redis+unix://"]
            .iter()
            .any(|s| url.starts_with(s));
        if !scheme_ok {
            return Err(Error::Config(format!(
                "REDIS_URL {:?} must start with redis://, rediss:// or unix://",
                redact_url(url)
            )));
        }
        return Ok(url.to_string());
    }
    let Some(backend) = backend else {
        return Ok(DEFAULT_REDIS_URL.to_string());
    };
    let db = match backend_db {
        None => None,
        Some(d) => Some(d.parse::<u32>().map_err(|_| {
            Error::Config(format!("REDIS_BACKEND_DB {d:?} is not a database number"))
        })?),
    };
    let (scheme, rest) = match backend.split_once("://") {
        Some(("tcp" | "redis", rest)) => ("redis://", rest),
        Some(("rediss", rest)) => ("rediss://", rest),
        Some(("unix", rest)) => {
            let has_db = rest.contains("db=");
            return Ok(match db {
                Some(d) if !has_db => {
                    let sep = if rest.contains('?') { '&' } else { '?' };
                    format!("unix://{rest}{sep}db={d}")
                }
                _ => format!("unix://{rest}"),
            });
        }
        Some((other, _)) => {
            return Err(Error::Config(format!(
                "REDIS_BACKEND scheme {other:?} is not supported (use host:port, redis://, tcp:// or unix://)"
            )))
        }
        None => ("redis://", backend),
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, p),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(Error::Config(format!(
            "REDIS_BACKEND {:?} names no host",
            redact_url(backend)
        )));
    }
    let authority = if authority
        .rsplit('@')
        .next()
        .is_some_and(|h| h.contains(':'))
    {
        authority.to_string()
    } else {
        format!("{authority}:6379")
    };
    let path_db = path.split('?').next().unwrap_or("");
    Ok(match db {
        Some(d) if path_db.is_empty() => format!("{scheme}{authority}/{d}"),
        _ if path.is_empty() => format!("{scheme}{authority}"),
        _ => format!("{scheme}{authority}/{path}"),
    })
}

/// Everything a worker needs besides Redis.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Queues in priority order (patterns allowed).
    pub queues: QueueSpec,
    /// Sleep between polls of empty queues; zero = drain the queues and exit.
    pub interval: Duration,
    /// Where exec-handler programs live (absolute).
    pub jobs_dir: PathBuf,
    /// Where to write our pid, if anywhere.
    pub pidfile: Option<PathBuf>,
    /// How often to refresh `workers:heartbeat`.
    pub heartbeat_interval: Duration,
    /// How the current job is stopped on TERM/INT/USR1.
    pub kill: KillSettings,
    /// TERM acts like QUIT (finish the job, then exit).
    pub graceful_term: bool,
    /// How dead workers are judged and their jobs treated.
    pub prune: crate::prune::PrunePolicy,
    /// How often a worker looks for dead workers (under Ruby's lock).
    pub prune_interval: Duration,
    /// How long a starting worker waits for an unreachable Redis before
    /// giving up; zero = fail at once.
    pub redis_startup_timeout: Duration,
    /// Limits on each job process.
    pub limits: JobLimits,
    /// Wait for jobs with blocking doorbells instead of polling every INTERVAL.
    pub blocking: bool,
    /// Pass the Redis connection variables on to jobs (`JOB_ENV_KEEP_REDIS`).
    pub job_env_keep_redis: bool,
    /// This pool's scheduler (delayed and recurring jobs); `None` = it has
    /// none (`SCHEDULER=0`).
    pub scheduler: Option<SchedulerSettings>,
    /// Which failed jobs are retried, how often and after how long.
    pub retry: crate::retry::RetrySettings,
    /// `METRICS_LISTEN`: the pool also runs the metrics exporter, there.
    pub metrics_listen: Option<String>,
}

/// How a pool promotes delayed jobs and enqueues recurring ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerSettings {
    /// `SCHEDULER_INTERVAL`: time between turns.
    pub interval: Duration,
    /// `SCHEDULE`: resque-scheduler's schedule file, re-read on SIGHUP.
    pub schedule_file: Option<PathBuf>,
    /// `SCHEDULE_CATCHUP`: how old a tick missed while no pool ran may be
    /// and still be enqueued; `None` = only the last few seconds'.
    pub catchup: Option<Duration>,
    /// `RAILS_ENV`: picks the entries whose `rails_env`/`env` names it.
    pub env: Option<String>,
}

/// Limits on each job process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobLimits {
    /// `JOB_TIMEOUT`: a job running longer gets SIGTERM, then SIGKILL after
    /// the term timeout, and is recorded as `ResqueFork::JobTimeout`.
    pub timeout: Option<Duration>,
    /// `JOB_MEMORY_LIMIT`: the job's address-space limit (RLIMIT_AS), in bytes.
    pub memory_bytes: Option<u64>,
}

/// Parses a memory size: a number of megabytes, or a number with a
/// `K`, `M` or `G` suffix.
///
/// ```
/// use resque_fork::config::parse_memory;
/// assert_eq!(parse_memory("512").unwrap(), 512 << 20);
/// assert_eq!(parse_memory("2G").unwrap(), 2 << 30);
/// assert_eq!(parse_memory("64k").unwrap(), 64 << 10);
/// assert!(parse_memory("lots").is_err());
/// assert!(parse_memory("0").is_err());
/// ```
pub fn parse_memory(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 10),
        Some((i, 'm' | 'M')) => (&t[..i], 20),
        Some((i, 'g' | 'G')) => (&t[..i], 30),
        _ => (t, 20),
    };
    match digits.trim().parse::<u64>() {
        Ok(n) if n > 0 => n
            .checked_shl(shift)
            .filter(|v| v >> shift == n)
            .ok_or_else(|| format!("{text:?} is too large")),
        _ => Err(format!(
            "{text:?} is not a memory size (megabytes, or a number with K, M or G)"
        )),
    }
}

/// How a job process is stopped when the worker must kill it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillSettings {
    /// `TERM_CHILD`: SIGTERM first, SIGKILL only after `term_timeout`.
    /// Otherwise SIGKILL at once, as Ruby resque does by default.
    pub term_child: bool,
    /// `RESQUE_TERM_TIMEOUT` (default 4 s).
    pub term_timeout: Duration,
    /// `RESQUE_PRE_SHUTDOWN_TIMEOUT` (default 0): time the job gets to finish
    /// by itself before the SIGTERM.
    pub pre_shutdown_timeout: Duration,
}

impl Default for KillSettings {
    fn default() -> Self {
        KillSettings {
            term_child: false,
            term_timeout: Duration::from_secs(4),
            pre_shutdown_timeout: Duration::ZERO,
        }
    }
}

/// Parses `INTERVAL`: seconds, fractions allowed, not negative.
///
/// ```
/// use resque_fork::config::parse_interval;
/// assert_eq!(parse_interval("0.5").unwrap().as_millis(), 500);
/// assert!(parse_interval("-1").is_err());
/// assert!(parse_interval("soon").is_err());
/// assert!(parse_interval("1e300").is_err());
/// ```
pub fn parse_interval(text: &str) -> std::result::Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "{text:?} must be zero or a positive number of seconds"
        ));
    }
    // Far past any real wait, and safe to add to a clock reading.
    if secs > MAX_SECONDS {
        return Err(format!(
            "{text:?} is too long (at most {MAX_SECONDS} seconds)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The longest duration any setting takes: about 31 years.
const MAX_SECONDS: f64 = 1e9;

/// Makes a path absolute against the current directory.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path)
        .map_err(|e| Error::io(format!("resolving the path {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_forms() {
        assert_eq!(redis_url(None, None, None).unwrap(), DEFAULT_REDIS_URL);
        assert_eq!(
            redis_url(None, Some("localhost"), None).unwrap(),
            "redis://localhost:6379"
        );
        assert_eq!(
            redis_url(None, Some("redis://:pw@h:7/1?timeout=2"), Some("5")).unwrap(),
            "redis://:pw@h:7/1?timeout=2"
        );
        assert_eq!(
            redis_url(None, Some("redis://user:pw@h"), Some("5")).unwrap(),
            "redis://user:pw@h:6379/5"
        );
        assert!(redis_url(None, Some("h:1"), Some("x")).is_err());
        assert!(redis_url(None, Some("ftp://h"), None).is_err());
        assert!(redis_url(Some("localhost:6379"), None, None).is_err());
    }
}
