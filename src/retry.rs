//! Retries with backoff, through the delayed set (contract 13): which failed
//! runs are retried, after how long, and how many times.
//!
//! A job asks for a retry by exiting 75 (an exec job) or returning
//! `JobError::retry` (a Rust job); with RETRY_FAILURES (or its class's
//! policy) every ordinary failure does. A retried job goes back as a delayed
//! item: the same payload with `retry_count` (retries made so far) and the
//! last `error`, so every promoter (ours, Ruby's, node's) runs it again at its
//! time. Ruby's and node's promoters rebuild the payload without those
//! fields, so the count is also kept under a key named by the job's class and
//! args ([`counter_digest`]), which survives them.

use crate::error::{Error, Result};
use crate::payload::{Failure, Job, RetryRequest};
use std::collections::HashMap;
use std::path::Path;

/// How long to wait before each retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backoff {
    /// Sidekiq's curve: `count⁴ + 15 + rand(10 × (count + 1))` seconds for
    /// the retry after `count` earlier ones (about three weeks over 25).
    Exponential,
    /// Explicit delays in seconds, one per retry; the last one repeats
    /// (resque-retry's `ExponentialBackoff` list).
    Delays(Vec<u64>),
}

impl Backoff {
    /// `exponential`, or a comma-separated list of seconds (`0,60,600`;
    /// durations such as `5m` too).
    ///
    /// ```
    /// use resque_fork::retry::Backoff;
    /// assert_eq!(Backoff::parse("0,60,10m").unwrap(), Backoff::Delays(vec![0, 60, 600]));
    /// assert_eq!(Backoff::parse("exponential").unwrap(), Backoff::Exponential);
    /// assert!(Backoff::parse("soon").is_err());
    /// ```
    pub fn parse(text: &str) -> std::result::Result<Backoff, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("exponential") {
            return Ok(Backoff::Exponential);
        }
        let delays = t
            .split(',')
            .map(|d| crate::timefmt::parse_duration(d.trim()))
            .collect::<Option<Vec<u64>>>()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                format!("{text:?} is not a backoff (exponential, or delays such as 0,60,600)")
            })?;
        Ok(Backoff::Delays(delays))
    }

    /// The delay before the retry that follows `earlier` retries; `jitter`
    /// is any random number (the exponential curve spreads retries with it).
    ///
    /// ```
    /// use resque_fork::retry::Backoff;
    /// let list = Backoff::Delays(vec![0, 60]);
    /// assert_eq!((list.delay(0, 7), list.delay(1, 7), list.delay(5, 7)), (0, 60, 60));
    /// assert_eq!(Backoff::Exponential.delay(2, 3), 16 + 15 + 3 * 3);
    /// ```
    pub fn delay(&self, earlier: u32, jitter: u64) -> u64 {
        match self {
            Backoff::Exponential => {
                let n = u64::from(earlier);
                n.saturating_pow(4)
                    .saturating_add(15)
                    .saturating_add((jitter % 10) * (n + 1))
            }
            Backoff::Delays(d) => d.get(earlier as usize).or(d.last()).copied().unwrap_or(0),
        }
    }
}

/// A class's (or the default) retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first run (RETRY_LIMIT, default 25).
    pub limit: u32,
    /// Delays between runs (RETRY_BACKOFF).
    pub backoff: Backoff,
    /// Retry ordinary failures too, not only runs that ask for a retry
    /// (RETRY_FAILURES).
    pub retry_failures: bool,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            limit: 25,
            backoff: Backoff::Exponential,
            retry_failures: false,
        }
    }
}

/// The pool's retry settings: the default policy and per-class overrides
/// (RETRY_POLICY's file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetrySettings {
    /// RETRY_LIMIT, RETRY_BACKOFF, RETRY_FAILURES.
    pub default: RetryPolicy,
    /// RETRY_POLICY's classes.
    pub classes: HashMap<String, RetryPolicy>,
}

impl RetrySettings {
    /// Reads per-class overrides from a YAML file of
    /// `Class: {limit: 10, backoff: [30, 300], retry_failures: true}`
    /// (`backoff` also `exponential` or `"30,300"`); what a class leaves out
    /// comes from the default policy.
    pub fn with_file(mut self, path: &Path) -> Result<RetrySettings> {
        let bad = |why: String| Error::Config(format!("{}: {why}", path.display()));
        let json = crate::yaml::read_file(path)?;
        let classes: HashMap<String, serde_json::Map<String, serde_json::Value>> = match json
            .as_str()
        {
            "null" => HashMap::new(),
            _ => serde_json::from_str(&json)
                .map_err(|_| bad("not a map of class → {limit, backoff, retry_failures}".into()))?,
        };
        for (class, fields) in classes {
            let mut policy = self.default.clone();
            for (key, value) in fields {
                let what = || format!("{class}: {key} {value} is not valid");
                match key.as_str() {
                    "limit" => {
                        policy.limit = value
                            .as_u64()
                            .and_then(|n| u32::try_from(n).ok())
                            .ok_or_else(|| bad(what()))?
                    }
                    "retry_failures" => {
                        policy.retry_failures = value.as_bool().ok_or_else(|| bad(what()))?
                    }
                    "backoff" => {
                        policy.backoff = match &value {
                            serde_json::Value::String(s) => Backoff::parse(s),
                            serde_json::Value::Array(a) => a
                                .iter()
                                .map(|d| match d {
                                    serde_json::Value::Number(n) => n.as_u64(),
                                    serde_json::Value::String(s) => {
                                        crate::timefmt::parse_duration(s)
                                    }
                                    _ => None,
                                })
                                .collect::<Option<Vec<u64>>>()
                                .filter(|d| !d.is_empty())
                                .map(Backoff::Delays)
                                .ok_or_else(what),
                            _ => Err(what()),
                        }
                        .map_err(bad)?
                    }
                    _ => {
                        return Err(bad(format!(
                            "{class}: unknown key {key:?} (limit, backoff, retry_failures)"
                        )))
                    }
                }
            }
            self.classes.insert(class, policy);
        }
        Ok(self)
    }

    /// The policy for `class`: the Rust registry's, else the file's, else
    /// the default.
    pub fn policy_for<'a>(
        &'a self,
        class: &str,
        registered: Option<&'a RetryPolicy>,
    ) -> &'a RetryPolicy {
        registered
            .or_else(|| self.classes.get(class))
            .unwrap_or(&self.default)
    }
}

/// What becomes of a failed run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not retried: a failure record.
    Fail,
    /// Retries exhausted: a failure record (the payload shows the count).
    Exhausted,
    /// Retried.
    Retry {
        /// The next run's `retry_count`.
        count: u32,
        /// Seconds until it.
        delay: u64,
    },
}

/// Whether `policy` retries a run that ended in `failure` at all.
pub fn retryable(policy: &RetryPolicy, failure: &Failure) -> bool {
    match failure.retry {
        RetryRequest::Never => false,
        RetryRequest::Ordinary => policy.retry_failures,
        RetryRequest::Asked { .. } => true,
    }
}

/// Decides on a failed run of a job that was retried `done` times before.
pub fn verdict(policy: &RetryPolicy, failure: &Failure, done: u32, jitter: u64) -> Verdict {
    if !retryable(policy, failure) {
        return Verdict::Fail;
    }
    let own_delay = match failure.retry {
        RetryRequest::Asked { delay } => delay,
        _ => None,
    };
    if done >= policy.limit {
        return Verdict::Exhausted;
    }
    Verdict::Retry {
        count: done + 1,
        delay: own_delay.unwrap_or_else(|| policy.backoff.delay(done, jitter)),
    }
}

/// Names a job's retry counter: a digest of its class and args as values
/// (so the bytes a Ruby or node promoter writes when it rebuilds the payload
/// name the same counter).
///
/// ```
/// use resque_fork::{retry::counter_digest, Job};
/// let ours = Job::parse(r#"{"class":"A","args":[1.50,{"b":1,"a":2}],"retry_count":1}"#, "q").unwrap();
/// let ruby = Job::parse(r#"{"class":"A","args":[1.5,{"a":2,"b":1}]}"#, "q").unwrap();
/// assert_eq!(counter_digest(&ours), counter_digest(&ruby));
/// ```
pub fn counter_digest(job: &Job) -> String {
    let args = serde_json::Value::Array(job.args().to_vec()).to_string();
    let mut h = sha1_smol::Sha1::new();
    h.update(job.class().as_bytes());
    h.update(b"\n");
    h.update(args.as_bytes());
    h.digest().to_string()
}

/// A random number for the backoff's spread (not for secrets).
pub fn jitter() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(nanos ^ std::process::id().rotate_left(16))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn failure(retry: RetryRequest) -> Failure {
        Failure::new("E", "boom").retry(retry)
    }

    #[test]
    fn who_is_retried_and_until_when() {
        let mut p = RetryPolicy {
            limit: 2,
            backoff: Backoff::Delays(vec![5, 50]),
            retry_failures: false,
        };
        let asked = failure(RetryRequest::Asked { delay: None });
        assert_eq!(
            verdict(&p, &asked, 0, 0),
            Verdict::Retry { count: 1, delay: 5 }
        );
        assert_eq!(
            verdict(&p, &asked, 1, 0),
            Verdict::Retry {
                count: 2,
                delay: 50
            }
        );
        assert_eq!(verdict(&p, &asked, 2, 0), Verdict::Exhausted);
        let own = failure(RetryRequest::Asked { delay: Some(9) });
        assert_eq!(
            verdict(&p, &own, 0, 0),
            Verdict::Retry { count: 1, delay: 9 }
        );
        let ordinary = failure(RetryRequest::Ordinary);
        assert_eq!(verdict(&p, &ordinary, 0, 0), Verdict::Fail);
        p.retry_failures = true;
        assert_eq!(
            verdict(&p, &ordinary, 0, 0),
            Verdict::Retry { count: 1, delay: 5 }
        );
        assert_eq!(
            verdict(&p, &failure(RetryRequest::Never), 0, 0),
            Verdict::Fail
        );
    }

    #[test]
    fn sidekiqs_curve_takes_about_three_weeks_over_25_retries() {
        let total: u64 = (0..25).map(|n| Backoff::Exponential.delay(n, 0)).sum();
        assert!((19 * 86_400..23 * 86_400).contains(&total), "{total}");
    }

    #[test]
    fn a_policy_file_overrides_per_class() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"Mailer: {limit: 10, backoff: [30, 5m]}\nReport: {retry_failures: true, backoff: exponential}\n")
            .unwrap();
        let s = RetrySettings::default().with_file(f.path()).unwrap();
        let m = s.policy_for("Mailer", None);
        assert_eq!((m.limit, &m.backoff), (10, &Backoff::Delays(vec![30, 300])));
        assert!(s.policy_for("Report", None).retry_failures);
        assert_eq!(s.policy_for("Other", None), &RetryPolicy::default());
        std::fs::write(f.path(), "Mailer: {limits: 3}\n").unwrap();
        let err = RetrySettings::default()
            .with_file(f.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key \"limits\""), "{err}");
        std::fs::write(f.path(), "Mailer: {limit: -1}\n").unwrap();
        assert!(RetrySettings::default().with_file(f.path()).is_err());
    }
}
