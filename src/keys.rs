//! Every Redis key name resque-fork reads or writes, built from one prefix.
//!
//! The names are the public contract shared with Ruby resque, php-resque and
//! resque-web; nothing outside this module spells a key.

/// Key names under one namespace prefix (`resque:` by default).
///
/// ```
/// use resque_fork::keys::Keys;
/// let keys = Keys::new("myapp");
/// assert_eq!(keys.queue("mail"), "myapp:queue:mail");
/// assert_eq!(Keys::default().failed(), "resque:failed");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new(DEFAULT_PREFIX)
    }
}

/// The namespace every Resque implementation uses unless told otherwise.
pub const DEFAULT_PREFIX: &str = "resque:";

impl Keys {
    /// Applies php-resque's rule: a `:` is appended unless the prefix already
    /// ends with one; an empty prefix means no namespace at all.
    pub fn new(prefix: &str) -> Keys {
        let prefix = if prefix.is_empty() || prefix.ends_with(':') {
            prefix.to_string()
        } else {
            format!("{prefix}:")
        };
        Keys { prefix }
    }

    /// The prefix with its trailing `:`, e.g. `resque:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, rest: &str) -> String {
        self.key_of(&[rest])
    }

    /// The prefix and `parts`, joined in one allocation (some keys are
    /// made for every job).
    fn key_of(&self, parts: &[&str]) -> String {
        let len = self.prefix.len() + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut key = String::with_capacity(len);
        key.push_str(&self.prefix);
        for p in parts {
            key.push_str(p);
        }
        key
    }

    /// Set of every queue name ever enqueued to.
    pub fn queues(&self) -> String {
        self.key("queues")
    }

    /// The list holding one queue's job payloads.
    pub fn queue(&self, name: &str) -> String {
        self.key_of(&["queue:", name])
    }

    /// Set of registered worker ids.
    pub fn workers(&self) -> String {
        self.key("workers")
    }

    /// The job a worker is processing (absent when idle).
    pub fn worker(&self, id: &str) -> String {
        self.key_of(&["worker:", id])
    }

    /// When a worker registered.
    pub fn worker_started(&self, id: &str) -> String {
        self.key_of(&["worker:", id, ":started"])
    }

    /// Hash of worker id to last heartbeat time.
    pub fn heartbeat(&self) -> String {
        self.key("workers:heartbeat")
    }

    /// Ruby's lock that lets one worker at a time prune dead ones.
    pub fn prune_lock(&self) -> String {
        self.key("pruning_dead_workers_in_progress")
    }

    /// A global counter: `processed` or `failed`.
    pub fn stat(&self, name: &str) -> String {
        self.key_of(&["stat:", name])
    }

    /// A per-worker counter: `processed` or `failed`.
    pub fn worker_stat(&self, name: &str, id: &str) -> String {
        self.key_of(&["stat:", name, ":", id])
    }

    /// The failure list resque-web shows.
    pub fn failed(&self) -> String {
        self.key("failed")
    }

    /// php-resque's status key: `job:[PFX_]ID:status`, where `PFX` is the
    /// payload's own `prefix` field (not the Redis prefix).
    pub fn job_status(&self, payload_prefix: Option<&str>, id: &str) -> String {
        match payload_prefix {
            Some(p) if !p.is_empty() => self.key_of(&["job:", p, "_", id, ":status"]),
            _ => self.key_of(&["job:", id, ":status"]),
        }
    }

    /// php-resque's key holding the pid of the process running a job.
    pub fn job_pid(&self, id: &str) -> String {
        self.key_of(&["job:", id, ":pid"])
    }

    /// resque-scheduler's sorted set of the timestamps (integer seconds,
    /// member = score) that have delayed jobs.
    pub fn delayed_schedule(&self) -> String {
        self.key("delayed_queue_schedule")
    }

    /// The list of delayed items due at `ts`.
    pub fn delayed(&self, ts: i64) -> String {
        self.key(&format!("delayed:{ts}"))
    }

    /// The set of `delayed:<ts>` names (without prefix) that hold `item`.
    pub fn delayed_timestamps(&self, item: &str) -> String {
        self.key_of(&["timestamps:", item])
    }

    /// Ruby resque-scheduler's master lock, present while a Ruby scheduler
    /// runs: its name is built with the namespace already in it, so the
    /// prefix appears twice.
    pub fn ruby_scheduler_lock(&self) -> String {
        self.key(&format!("{}resque_scheduler_master_lock", self.prefix))
    }

    /// resque-scheduler's dynamic schedules: name → JSON configuration.
    pub fn persistent_schedules(&self) -> String {
        self.key("persistent_schedules")
    }

    /// resque-scheduler's record of each recurring entry's last enqueue
    /// (name → Ruby `Time#to_s`), shown by resque-web's Schedule tab.
    pub fn last_enqueued_at(&self) -> String {
        self.key("delayed:last_enqueued_at")
    }

    /// Ours: each recurring entry's latest tick enqueued (name → epoch
    /// seconds), the claim that makes every tick run once across pools.
    pub fn schedule_ticks(&self) -> String {
        self.key("resque-fork:schedule_ticks")
    }

    /// Ours: a retried job's retry count, by [`crate::retry::counter_digest`]
    /// of its class and args, kept where a promoter that rebuilds payloads
    /// (Ruby's, node's) cannot drop it.
    pub fn retry_counter(&self, digest: &str) -> String {
        self.key_of(&["resque-fork:retry:", digest])
    }

    /// Ours: each running pool's groups (`host:pid` → JSON), for `workers`
    /// and `pool status`.
    pub fn pools(&self) -> String {
        self.key("resque-fork:pools")
    }

    /// Ours: per-job figures by queue and class (contract 14), a hash.
    pub fn metrics(&self) -> String {
        self.key("resque-fork:metrics")
    }

    /// Ruby resque's set of failure queues (the redis_multi_queue failure
    /// backend), read by exporters; absent means the one `failed` list.
    pub fn failed_queues(&self) -> String {
        self.key("failed_queues")
    }

    /// A failure queue named in `failed_queues`.
    pub fn failed_queue(&self, name: &str) -> String {
        self.key(name)
    }

    /// Set to `true` by an operator to pause every worker.
    pub fn pause_all(&self) -> String {
        self.key("pause-all-workers")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn php_prefix_rule() {
        assert_eq!(Keys::new("resque").prefix(), "resque:");
        assert_eq!(Keys::new("resque:").prefix(), "resque:");
        assert_eq!(Keys::new("resque:GitHub").prefix(), "resque:GitHub:");
        assert_eq!(Keys::new("").prefix(), "");
    }

    #[test]
    fn key_catalogue() {
        let k = Keys::default();
        let id = "web1:4242:high,mail";
        assert_eq!(k.queues(), "resque:queues");
        assert_eq!(k.queue("mail"), "resque:queue:mail");
        assert_eq!(k.workers(), "resque:workers");
        assert_eq!(k.worker(id), "resque:worker:web1:4242:high,mail");
        assert_eq!(
            k.worker_started(id),
            "resque:worker:web1:4242:high,mail:started"
        );
        assert_eq!(k.heartbeat(), "resque:workers:heartbeat");
        assert_eq!(k.prune_lock(), "resque:pruning_dead_workers_in_progress");
        assert_eq!(k.stat("processed"), "resque:stat:processed");
        assert_eq!(
            k.worker_stat("failed", id),
            "resque:stat:failed:web1:4242:high,mail"
        );
        assert_eq!(k.failed(), "resque:failed");
        assert_eq!(k.job_status(None, "9f1c"), "resque:job:9f1c:status");
        assert_eq!(k.job_status(Some(""), "9f1c"), "resque:job:9f1c:status");
        assert_eq!(
            k.job_status(Some("shop"), "9f1c"),
            "resque:job:shop_9f1c:status"
        );
        assert_eq!(k.job_pid("9f1c"), "resque:job:9f1c:pid");
        assert_eq!(k.pause_all(), "resque:pause-all-workers");
        assert_eq!(k.delayed_schedule(), "resque:delayed_queue_schedule");
        assert_eq!(k.delayed(1705314600), "resque:delayed:1705314600");
        assert_eq!(
            k.delayed_timestamps(r#"{"class":"A","args":[],"queue":"q"}"#),
            r#"resque:timestamps:{"class":"A","args":[],"queue":"q"}"#
        );
        assert_eq!(
            k.ruby_scheduler_lock(),
            "resque:resque:resque_scheduler_master_lock"
        );
        assert_eq!(k.persistent_schedules(), "resque:persistent_schedules");
        assert_eq!(k.last_enqueued_at(), "resque:delayed:last_enqueued_at");
        assert_eq!(k.schedule_ticks(), "resque:resque-fork:schedule_ticks");
        assert_eq!(k.retry_counter("ab12"), "resque:resque-fork:retry:ab12");
        assert_eq!(k.pools(), "resque:resque-fork:pools");
        assert_eq!(k.metrics(), "resque:resque-fork:metrics");
        assert_eq!(k.failed_queues(), "resque:failed_queues");
    }
}
