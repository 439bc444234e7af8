//! A failed job's retry, decided by the worker before its record step
//! (contract 13): the policy of its class, the count of retries made, and
//! what the record step writes.
use super::*;
use crate::retry::{self, Verdict};
use crate::store::RetryWrite;

/// How long a retry counter outlives its retry's due time.
const COUNTER_SLACK: u64 = 7 * 86_400;

/// What the record step writes for a job's retries.
pub(super) struct RetryPlan {
    /// The delayed item, when the job is retried.
    pub item: Option<String>,
    pub delay: u64,
    pub counter: String,
    pub count: u32,
    /// What the job's log line adds: the retry, or the limit reached.
    pub note: Option<String>,
}

impl RetryPlan {
    pub(super) fn write(&self) -> RetryWrite<'_> {
        RetryWrite {
            item: self.item.as_deref(),
            delay: self.delay,
            counter: &self.counter,
            count: self.count,
            ttl: self.delay + COUNTER_SLACK,
        }
    }
}

impl Worker<'_> {
    /// What becomes of `job`'s retries after a run that ended in `failure`
    /// (`None`: it completed). `None` when there is nothing to write: the
    /// job is not retried and was never retried before.
    pub(super) fn plan_retry(&mut self, job: &Job, failure: Option<&Failure>) -> Option<RetryPlan> {
        // Most jobs: completed on their first run. Nothing to compute.
        if failure.is_none() && !job.has_retry_count() {
            return None;
        }
        let counter = self.store.keys().retry_counter(&retry::counter_digest(job));
        let clear = |done: u32| {
            (done > 0).then(|| RetryPlan {
                item: None,
                delay: 0,
                counter: counter.clone(),
                count: 0,
                note: None,
            })
        };
        let Some(failure) = failure else {
            return clear(job.retry_count());
        };
        let policy = self
            .settings
            .retry
            .policy_for(job.class(), self.registry.retry_policy(job.class()));
        if !retry::retryable(policy, failure) {
            return clear(job.retry_count());
        }
        // A promoter that rebuilds payloads (Ruby's, node's) dropped the
        // count: the counter kept it.
        let done = if job.has_retry_count() {
            job.retry_count()
        } else {
            match self.store.retry_counter(&counter) {
                Ok(n) => n.unwrap_or(0),
                Err(e) => {
                    log::warn!("{e}; counting this run as the job's first");
                    0
                }
            }
        };
        match retry::verdict(policy, failure, done, retry::jitter()) {
            Verdict::Fail | Verdict::Exhausted => clear(done).map(|plan| RetryPlan {
                note: Some(format!(
                    "; retries exhausted ({done}, RETRY_LIMIT {})",
                    policy.limit
                )),
                ..plan
            }),
            Verdict::Retry { count, delay } => {
                let error = format!("{}: {}", failure.exception, failure.error);
                Some(RetryPlan {
                    item: Some(crate::payload::retry_item(
                        job.raw(),
                        job.queue(),
                        count,
                        &error,
                    )),
                    delay,
                    counter,
                    count,
                    note: Some(format!("; retry {count} of {} in {delay}s", policy.limit)),
                })
            }
        }
    }
}
