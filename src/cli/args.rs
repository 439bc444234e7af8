//! The command line's definitions: every flag with its Resque environment
//! variable, the subcommands, and their conversion into validated settings.

use crate::config::{self, RedisSettings, WorkerSettings};
use crate::error::{Error, Result};
use crate::keys::DEFAULT_PREFIX;
use crate::ops;
use crate::queues::QueueSpec;
use crate::store::Store;
use clap::builder::FalseyValueParser;
use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Every option can also be set by the environment variable shown beside it; a
variable set to the empty string counts as unset. RUST_LOG, when set, overrides
VERBOSE/VVERBOSE (e.g. RUST_LOG=resque_fork=debug).

Signals: QUIT finishes the current job then exits; TERM/INT kill the current
job (recorded as Resque::DirtyExit) and exit; USR1 kills the current job only;
USR2 pauses; CONT resumes; HUP re-reads POOL's and SCHEDULE's files (without
either, as TERM); WINCH (with POOL) stops every worker until the next HUP.";

/// A Resque-compatible background-job worker that forks per job.
#[derive(Debug, Parser)]
#[command(name = "resque-fork", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub(super) redis: RedisArgs,
    #[command(flatten)]
    pub(super) log: LogArgs,
    #[command(flatten)]
    pub(super) work: WorkArgs,
    /// Print read commands' output as one JSON document
    #[arg(long, global = true)]
    pub(super) json: bool,
    #[command(subcommand)]
    pub(super) command: Option<Command>,
}

#[derive(Debug, Args)]
pub(super) struct RedisArgs {
    /// Redis to use: redis://[user:pass@]host:port/db, rediss://…, or unix:///path/to/socket
    // (Values hidden from --help: they may hold a password.)
    #[arg(
        long,
        env = "REDIS_URL",
        global = true,
        value_name = "URL",
        hide_env_values = true
    )]
    redis_url: Option<String>,
    /// php-resque's form: host:port, redis://…, tcp://… or unix:///path (REDIS_URL wins)
    #[arg(
        long,
        env = "REDIS_BACKEND",
        global = true,
        value_name = "DSN",
        hide_env_values = true
    )]
    redis_backend: Option<String>,
    /// Database number for REDIS_BACKEND, when its DSN names none
    #[arg(long, env = "REDIS_BACKEND_DB", global = true, value_name = "N")]
    redis_backend_db: Option<String>,
    /// Key namespace; a ':' is appended unless present
    #[arg(long, env = "PREFIX", global = true, default_value = DEFAULT_PREFIX)]
    prefix: String,
    /// Find the master through these Sentinels (host:port,host:port; rediss:// for TLS); REDIS_URL then gives only the data nodes' credentials, db and TLS
    #[arg(long, env = "REDIS_SENTINELS", global = true, value_name = "LIST")]
    redis_sentinels: Option<String>,
    /// The name the Sentinels monitor the master under (with REDIS_SENTINELS)
    #[arg(
        long,
        env = "REDIS_SENTINEL_MASTER",
        global = true,
        value_name = "NAME"
    )]
    redis_sentinel_master: Option<String>,
    /// The Sentinels' ACL user, if they have one
    #[arg(
        long,
        env = "REDIS_SENTINEL_USERNAME",
        global = true,
        value_name = "USER",
        hide_short_help = true
    )]
    redis_sentinel_username: Option<String>,
    /// The Sentinels' own password (the data nodes' goes in REDIS_URL)
    #[arg(
        long,
        env = "REDIS_SENTINEL_PASSWORD",
        global = true,
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    redis_sentinel_password: Option<String>,
    /// Count a reserve or record step only once this many replicas have it (Redis WAIT); 0 = don't wait
    #[arg(
        long,
        env = "REDIS_MIN_REPLICAS",
        global = true,
        default_value = "0",
        value_name = "N"
    )]
    redis_min_replicas: u32,
}

#[derive(Debug, Args)]
pub(super) struct LogArgs {
    /// Log each job and lifecycle step (INFO level)
    #[arg(short, long, env = "VERBOSE", global = true, action = ArgAction::SetTrue,
          value_parser = FalseyValueParser::new())]
    verbose: bool,
    /// Same as --verbose (php-resque's name)
    #[arg(long, env = "LOGGING", global = true, action = ArgAction::SetTrue,
          value_parser = FalseyValueParser::new(), hide_short_help = true)]
    logging: bool,
    /// Log everything, including each Redis step (DEBUG level)
    #[arg(long, env = "VVERBOSE", global = true, action = ArgAction::SetTrue,
          value_parser = FalseyValueParser::new())]
    vverbose: bool,
}

#[derive(Debug, Args)]
pub(super) struct WorkArgs {
    /// Queues in priority order, comma-separated; '*' = all, globs and '!skip' allowed
    #[arg(short, long, env = "QUEUE", value_name = "LIST")]
    queue: Option<String>,
    /// Ruby resque's name for --queue; wins over QUEUE
    #[arg(long, env = "QUEUES", value_name = "LIST", hide_short_help = true)]
    queues: Option<String>,
    /// Seconds to sleep when the queues are empty (fractions allowed); 0 = drain the queues, then exit
    #[arg(short, long, env = "INTERVAL", default_value = "5", value_name = "SECONDS",
          value_parser = config::parse_interval)]
    interval: std::time::Duration,
    /// Directory of job programs: class Foo runs JOBS_DIR/Foo
    #[arg(long, env = "JOBS_DIR", default_value = "jobs", value_name = "DIR")]
    jobs_dir: PathBuf,
    /// Seconds between heartbeats (Ruby resque's heartbeat_interval); at most 60
    #[arg(long, env = "HEARTBEAT_INTERVAL", default_value = "30", value_name = "SECONDS",
          value_parser = parse_heartbeat)]
    heartbeat_interval: std::time::Duration,
    /// Write the pid of the foreground process to this file while it runs
    #[arg(long, env = "PIDFILE", value_name = "FILE")]
    pidfile: Option<PathBuf>,
    /// resque-pool's config file: groups of workers by queue list ("critical": 2, "default,low": 8); HUP re-reads it
    #[arg(long, env = "POOL", value_name = "FILE")]
    pool: Option<PathBuf>,
    /// Also serve Prometheus metrics on this address, from a supervised child process of the pool (e.g. 127.0.0.1:9447)
    #[arg(long, env = "METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Worker processes to run; more than 1 makes the foreground process their supervisor
    #[arg(short, long, env = "COUNT", default_value = "1", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(super) count: u16,
    /// On TERM/INT/USR1, send the job SIGTERM first and SIGKILL only after RESQUE_TERM_TIMEOUT
    #[arg(long, env = "TERM_CHILD", action = ArgAction::SetTrue,
          value_parser = FalseyValueParser::new())]
    term_child: bool,
    /// Seconds between the job's SIGTERM and SIGKILL with TERM_CHILD
    #[arg(long, env = "RESQUE_TERM_TIMEOUT", default_value = "4", value_name = "SECONDS",
          value_parser = config::parse_interval)]
    term_timeout: std::time::Duration,
    /// Seconds a job may run on by itself before the SIGTERM, with TERM_CHILD
    #[arg(long, env = "RESQUE_PRE_SHUTDOWN_TIMEOUT", default_value = "0", value_name = "SECONDS",
          value_parser = config::parse_interval)]
    pre_shutdown_timeout: std::time::Duration,
    /// TERM acts like QUIT: running jobs finish, then the workers exit
    #[arg(long, env = "GRACEFUL_TERM", action = ArgAction::SetTrue,
          value_parser = FalseyValueParser::new())]
    graceful_term: bool,
    /// Stop a job that runs longer than this many seconds (TERM, then KILL); off by default
    #[arg(long, env = "JOB_TIMEOUT", value_name = "SECONDS", value_parser = parse_positive)]
    job_timeout: Option<std::time::Duration>,
    /// Cap each job's address space: megabytes, or a number with K, M or G
    #[arg(long, env = "JOB_MEMORY_LIMIT", value_name = "SIZE", value_parser = config::parse_memory)]
    job_memory_limit: Option<u64>,
    /// Push the job of a dead worker back to the head of its queue (once) instead of failing it
    #[arg(long, env = "REQUEUE_ORPHANS", action = ArgAction::SetTrue,
          value_parser = FalseyValueParser::new())]
    requeue_orphans: bool,
    /// A worker whose heartbeat is older than this many seconds is dead, on any host
    #[arg(long, env = "PRUNE_AGE", default_value = "300", value_name = "SECONDS",
          value_parser = parse_positive)]
    prune_age: std::time::Duration,
    /// Seconds between looks for dead workers
    #[arg(long, env = "PRUNE_INTERVAL", default_value = "60", value_name = "SECONDS",
          value_parser = parse_positive)]
    prune_interval: std::time::Duration,
    /// Wake the moment a job arrives instead of polling every INTERVAL (atomic reserve kept; INTERVAL then only paces re-reading '*')
    #[arg(long, env = "BLOCKING", action = ArgAction::SetTrue,
          value_parser = FalseyValueParser::new())]
    blocking: bool,
    /// Let jobs inherit REDIS_URL, REDIS_BACKEND, REDIS_BACKEND_DB and the REDIS_SENTINEL* variables (by default they are removed from a job's environment, so a job cannot leak a password)
    #[arg(long, env = "JOB_ENV_KEEP_REDIS", action = ArgAction::SetTrue,
          value_parser = FalseyValueParser::new())]
    job_env_keep_redis: bool,
    /// Do not move due delayed jobs onto their queues in this pool (SCHEDULER=0); by default every pool does, atomically, beside any other
    #[arg(long = "no-scheduler", env = "SCHEDULER", action = ArgAction::SetFalse,
          value_parser = FalseyValueParser::new())]
    scheduler: bool,
    /// Seconds between this pool's looks for due delayed jobs
    #[arg(long, env = "SCHEDULER_INTERVAL", default_value = "1", value_name = "SECONDS",
          value_parser = parse_positive)]
    scheduler_interval: std::time::Duration,
    /// Retry every ordinary failure (non-zero exit, Err, panic), not only jobs that ask (exit 75, JobError::retry)
    #[arg(long, env = "RETRY_FAILURES", action = ArgAction::SetTrue,
          value_parser = FalseyValueParser::new())]
    retry_failures: bool,
    /// Retries after a job's first run
    #[arg(long, env = "RETRY_LIMIT", default_value = "25", value_name = "N")]
    retry_limit: u32,
    /// Delays between retries: exponential (Sidekiq's curve), or seconds such as 0,60,600,3600 (the last repeats)
    #[arg(long, env = "RETRY_BACKOFF", default_value = "exponential", value_name = "DELAYS",
          value_parser = crate::retry::Backoff::parse)]
    retry_backoff: crate::retry::Backoff,
    /// Per-class retry policies (YAML): `Mailer: {limit: 10, backoff: [30, 300]}`
    #[arg(long, env = "RETRY_POLICY", value_name = "FILE")]
    retry_policy: Option<PathBuf>,
    /// Recurring jobs: resque-scheduler's schedule file (YAML), re-read on SIGHUP
    #[arg(long, env = "SCHEDULE", value_name = "FILE")]
    schedule: Option<PathBuf>,
    /// Replay the ticks of recurring jobs missed while no pool ran, up to this old (90s, 10m, 1h); by default they are skipped
    #[arg(long, env = "SCHEDULE_CATCHUP", value_name = "DURATION", value_parser = parse_delay)]
    schedule_catchup: Option<std::time::Duration>,
    /// The environment whose recurring entries run (an entry's rails_env/env list)
    #[arg(
        long = "environment",
        env = "RAILS_ENV",
        value_name = "NAME",
        hide_short_help = true
    )]
    environment: Option<String>,
    /// Seconds to wait for an unreachable Redis at startup before exiting 1; 0 = exit at once
    #[arg(long, env = "REDIS_STARTUP_TIMEOUT", default_value = "30", value_name = "SECONDS",
          value_parser = config::parse_interval)]
    redis_startup_timeout: std::time::Duration,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// Put a job on a queue; prints its id
    Enqueue {
        /// The queue name
        queue: String,
        /// The job class
        class: String,
        /// Arguments: each parsed as JSON, or taken as a string when it is not JSON
        args: Vec<String>,
        /// Skip the status record (php-resque's status key) that `status` reads
        #[arg(long, conflicts_with = "stdin")]
        no_track: bool,
        /// Give the job a status record: the default for one job; with --stdin,
        /// every job gets one (bulk enqueues skip it unless asked: it is one
        /// more key per job)
        #[arg(long, conflicts_with = "no_track")]
        track: bool,
        /// Enqueue one job per line of standard input, each line a JSON array of
        /// args (or one JSON value, taken as the only arg); pipelined, not
        /// tracked unless --track
        #[arg(long, conflicts_with = "args")]
        stdin: bool,
        /// Run the job this long from now instead (90, 90s, 5m, 2h, 1d): a
        /// delayed job on resque-scheduler's keys, moved onto QUEUE when due
        #[arg(long = "in", value_name = "DURATION", value_parser = parse_delay,
              conflicts_with_all = ["at", "stdin"])]
        delay: Option<std::time::Duration>,
        /// Run the job at this time instead: Unix seconds or RFC 3339
        #[arg(long, value_name = "TIME", value_parser = parse_at, conflicts_with = "stdin")]
        at: Option<i64>,
    },
    /// Show the status of a job, or where it is when it has no status record
    Status {
        /// The id printed by `enqueue`
        job_id: String,
    },
    /// Pending, processed and failed counts, queues, workers, working (resque-web's Stats)
    Info {
        /// Print the metrics exporter's text instead, once (for node_exporter's textfile collector)
        #[arg(long)]
        prometheus: bool,
    },
    /// Serve Prometheus metrics of the whole deployment on /metrics
    Metrics {
        /// Address to listen on (127.0.0.1 by default: wider is your explicit choice)
        #[arg(
            long,
            env = "METRICS_LISTEN",
            default_value = "127.0.0.1:9447",
            value_name = "ADDR"
        )]
        listen: String,
    },
    /// Every queue with its length
    Queues,
    /// Look at or empty one queue
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Every registered worker: host, pid, queues, what it does, heartbeat, counts, health
    Workers,
    /// The failed list: list, show, retry, remove, clear
    #[command(subcommand)]
    Failed(FailedCommand),
    /// Look for dead workers now and account for their jobs, as a worker does
    Prune,
    /// Delayed jobs (resque-scheduler's keys): list (the default), show, remove, run-now, clear
    Delayed {
        #[command(subcommand)]
        command: Option<DelayedCommand>,
    },
    /// The recurring jobs (SCHEDULE's file and persistent_schedules) with their next and last runs
    Schedule,
    /// The jobs waiting for a retry: when, which attempt, the last error
    Retries,
    /// Pools (POOL's groups): status, reload
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Print a shell completion script: resque-fork completions bash > /etc/bash_completion.d/resque-fork
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): resque-fork man > /usr/local/share/man/man1/resque-fork.1
    Man,
}

#[derive(Debug, Subcommand)]
pub(super) enum DelayedCommand {
    /// How many, when the next is due, and every timestamp with its jobs
    List,
    /// The items due at one timestamp, as their writers wrote them
    Show {
        /// Epoch seconds, as `delayed list` shows them
        timestamp: i64,
    },
    /// Delete the delayed jobs of QUEUE and CLASS with these args (by content, as Ruby's remove_delayed_in_queue)
    Remove(DelayedSelectionArgs),
    /// Enqueue the matching delayed jobs now instead of at their time
    RunNow(DelayedSelectionArgs),
    /// Delete every delayed job
    Clear {
        /// Do not ask
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum PoolCommand {
    /// Every running pool's groups, with intended and running workers
    Status,
    /// Make the pool in PIDFILE re-read its POOL (and SCHEDULE) file: sends it HUP
    Reload {
        /// The pool's PIDFILE
        #[arg(long, env = "PIDFILE", value_name = "FILE")]
        pidfile: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(super) struct DelayedSelectionArgs {
    /// The queue the jobs are for
    queue: String,
    /// The job class
    class: String,
    /// The args, each parsed as JSON or taken as a string (none: args [])
    #[arg(conflicts_with = "any_args")]
    args: Vec<String>,
    /// Match the jobs of QUEUE and CLASS whatever their args
    #[arg(long)]
    any_args: bool,
}

impl DelayedSelectionArgs {
    pub(super) fn selection(&self) -> ops::DelayedSelection<'_> {
        ops::DelayedSelection {
            queue: &self.queue,
            class: &self.class,
            args: (!self.any_args).then(|| {
                serde_json::Value::Array(
                    self.args
                        .iter()
                        .map(|a| crate::producer::parse_arg(a))
                        .collect(),
                )
            }),
        }
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum QueueCommand {
    /// The jobs at the head of a queue
    Show {
        name: String,
        /// How many jobs
        #[arg(long, default_value = "20")]
        limit: usize,
    },
    /// Delete every job in a queue (the queue stays listed)
    Clear {
        name: String,
        /// Do not ask
        #[arg(long)]
        yes: bool,
    },
    /// Delete a queue and its jobs, and unlist it
    Remove {
        name: String,
        /// Do not ask
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub(super) struct FailureFilterArgs {
    /// Only failures from this queue
    #[arg(long)]
    queue: Option<String>,
    /// Only failures of this job class
    #[arg(long)]
    class: Option<String>,
}

impl FailureFilterArgs {
    pub(super) fn filter(&self) -> ops::FailureFilter {
        ops::FailureFilter {
            queue: self.queue.clone(),
            class: self.class.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum FailedCommand {
    /// The most recent failures, newest first
    List {
        /// How many (0 = all)
        #[arg(long, default_value = "20")]
        limit: usize,
        #[command(flatten)]
        filter: FailureFilterArgs,
    },
    /// One failure record in full
    Show {
        /// An ID from `failed list` (stays valid as the list changes; 6 or more of its first digits will do), or an index (whatever is there now; #N says so when the digits could also start an id)
        failure: ops::FailureRef,
    },
    /// Put a failed job back on its queue (keeping its id), marking the record retried
    Retry {
        /// An ID from `failed list`, or an index
        #[arg(required_unless_present = "all")]
        failure: Option<ops::FailureRef>,
        /// Every failure not retried yet (narrowed by --queue and --class)
        #[arg(long, conflicts_with = "failure")]
        all: bool,
        #[command(flatten)]
        filter: FailureFilterArgs,
        /// Retry a record that was retried before (its job runs again)
        #[arg(long, conflicts_with = "all")]
        again: bool,
    },
    /// Delete one failure record
    Remove {
        /// An ID from `failed list`, or an index
        failure: ops::FailureRef,
    },
    /// Delete every failure record
    Clear {
        /// Do not ask
        #[arg(long)]
        yes: bool,
    },
}

impl LogArgs {
    pub(super) fn init(&self) {
        let default = if self.vverbose {
            "debug"
        } else if self.verbose || self.logging {
            "info"
        } else {
            "warn"
        };
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
            .format(|buf, record| {
                // Read at each line: workers are forked from the supervisor.
                writeln!(
                    buf,
                    "{} {:<5} resque-fork[{}]: {}",
                    crate::timefmt::iso8601_z(crate::timefmt::now_epoch()),
                    record.level(),
                    std::process::id(),
                    record.args()
                )
            })
            .init();
    }
}

impl RedisArgs {
    pub(super) fn settings(&self) -> Result<RedisSettings> {
        Ok(RedisSettings {
            url: config::redis_url(
                non_empty(&self.redis_url),
                non_empty(&self.redis_backend),
                non_empty(&self.redis_backend_db),
            )?,
            prefix: self.prefix.clone(),
            sentinel: config::sentinel_settings(
                non_empty(&self.redis_sentinels),
                non_empty(&self.redis_sentinel_master),
                non_empty(&self.redis_sentinel_username),
                non_empty(&self.redis_sentinel_password),
            )?,
            min_replicas: self.redis_min_replicas,
        })
    }

    pub(super) fn store(&self) -> Result<Store> {
        Store::connect_with(&self.settings()?)
    }
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

impl WorkArgs {
    /// The schedule file and environment `schedule` reads.
    pub(super) fn schedule_source(&self) -> Result<(Option<PathBuf>, Option<String>)> {
        Ok((
            self.schedule.as_deref().map(config::absolute).transpose()?,
            self.environment.clone().filter(|e| !e.is_empty()),
        ))
    }

    fn retry_settings(&self) -> Result<crate::retry::RetrySettings> {
        let settings = crate::retry::RetrySettings {
            default: crate::retry::RetryPolicy {
                limit: self.retry_limit,
                backoff: self.retry_backoff.clone(),
                retry_failures: self.retry_failures,
            },
            classes: Default::default(),
        };
        match &self.retry_policy {
            Some(path) => settings.with_file(path),
            None => Ok(settings),
        }
    }

    fn scheduler_settings(&self) -> Result<Option<config::SchedulerSettings>> {
        if !self.scheduler {
            if self.schedule.is_some() {
                log::warn!("SCHEDULE is set but SCHEDULER=0: this pool runs no recurring jobs");
            }
            return Ok(None);
        }
        Ok(Some(config::SchedulerSettings {
            interval: self.scheduler_interval,
            schedule_file: self.schedule.as_deref().map(config::absolute).transpose()?,
            catchup: self.schedule_catchup,
            env: self.environment.clone().filter(|e| !e.is_empty()),
        }))
    }

    /// The pool to supervise: POOL's groups, or COUNT workers (None: one
    /// worker, no supervisor).
    pub(super) fn pool_plan(&self) -> Result<Option<crate::supervisor::PoolPlan>> {
        use crate::supervisor::PoolPlan;
        Ok(match &self.pool {
            Some(path) => {
                if self.count > 1 {
                    log::warn!("POOL is set: COUNT is ignored (the file gives each group's count)");
                }
                Some(PoolPlan::File {
                    path: config::absolute(path)?,
                    env: crate::pool_config::environment(),
                })
            }
            // The exporter is a child of the pool's supervisor: one worker
            // with METRICS_LISTEN is a pool of one.
            None if self.count > 1 || non_empty(&self.metrics_listen).is_some() => {
                Some(PoolPlan::Count(usize::from(self.count)))
            }
            None => None,
        })
    }

    pub(super) fn settings(&self) -> Result<WorkerSettings> {
        // With POOL each group has its own queues; QUEUE may then be unset.
        let from_pool = self.pool.is_some().then_some("*");
        let list = non_empty(&self.queues)
            .or(non_empty(&self.queue))
            .or(from_pool)
            .ok_or_else(|| {
                Error::Config(
                    "no queues given: set QUEUE (e.g. QUEUE=high,low or QUEUE=*) or pass --queue"
                        .into(),
                )
            })?;
        Ok(WorkerSettings {
            queues: QueueSpec::parse(list).map_err(Error::Config)?,
            interval: self.interval,
            jobs_dir: config::absolute(&self.jobs_dir)?,
            pidfile: self.pidfile.clone(),
            heartbeat_interval: self.heartbeat_interval,
            kill: config::KillSettings {
                term_child: self.term_child,
                term_timeout: self.term_timeout,
                pre_shutdown_timeout: self.pre_shutdown_timeout,
            },
            graceful_term: self.graceful_term,
            prune: self.prune_policy()?,
            prune_interval: self.prune_interval,
            redis_startup_timeout: self.redis_startup_timeout,
            blocking: self.blocking,
            job_env_keep_redis: self.job_env_keep_redis,
            scheduler: self.scheduler_settings()?,
            retry: self.retry_settings()?,
            metrics_listen: non_empty(&self.metrics_listen).map(str::to_string),
            limits: config::JobLimits {
                timeout: self.job_timeout,
                memory_bytes: self.job_memory_limit,
            },
        })
    }
}

impl WorkArgs {
    /// How dead workers are judged. PRUNE_AGE must leave a live worker at
    /// least two heartbeats, or workers beating on time would be pruned.
    pub(super) fn prune_policy(&self) -> Result<crate::prune::PrunePolicy> {
        if self.prune_age < self.heartbeat_interval * 2 {
            return Err(Error::Config(format!(
                "PRUNE_AGE ({}s) must be at least twice HEARTBEAT_INTERVAL ({}s)",
                self.prune_age.as_secs_f64(),
                self.heartbeat_interval.as_secs_f64()
            )));
        }
        Ok(crate::prune::PrunePolicy {
            max_heartbeat_age: self.prune_age,
            requeue_orphans: self.requeue_orphans,
            heartbeat_interval: self.heartbeat_interval,
        })
    }
}

/// A heartbeat interval: more than 0 and at most 60 s, because Ruby workers
/// prune a worker whose heartbeat is 300 s old and Ruby itself beats every 60.
fn parse_heartbeat(text: &str) -> std::result::Result<std::time::Duration, String> {
    let d = config::parse_interval(text)?;
    if d.is_zero() || d > std::time::Duration::from_secs(60) {
        return Err(format!(
            "{text:?} must be more than 0 and at most 60 seconds"
        ));
    }
    Ok(d)
}

/// `enqueue --in`: seconds, or a number with `s`, `m`, `h` or `d`.
fn parse_delay(text: &str) -> std::result::Result<std::time::Duration, String> {
    crate::timefmt::parse_duration(text)
        .filter(|&s| s <= 1_000_000_000)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is not a delay (90, 90s, 5m, 2h, 1d or 1h30m)"))
}

/// `enqueue --at`: Unix seconds, or an RFC 3339 time.
fn parse_at(text: &str) -> std::result::Result<i64, String> {
    let t = text.trim();
    t.parse::<i64>()
        .ok()
        .or_else(|| crate::timefmt::parse_any(t))
        .ok_or_else(|| format!("{text:?} is not a time (Unix seconds or RFC 3339)"))
}

/// A duration that must be more than zero.
fn parse_positive(text: &str) -> std::result::Result<std::time::Duration, String> {
    let d = config::parse_interval(text)?;
    if d.is_zero() {
        return Err(format!("{text:?} must be more than 0 seconds"));
    }
    Ok(d)
}

/// Resque's convention: a variable set to the empty string counts as unset.
/// clap would take it as an empty value, so such variables are dropped
/// before parsing (the process is still single-threaded here).
pub(super) fn forget_empty_env_vars() {
    let cmd = Cli::command();
    let names: Vec<std::ffi::OsString> = cmd
        .get_arguments()
        .chain(cmd.get_subcommands().flat_map(|s| s.get_arguments()))
        .filter_map(|a| a.get_env().map(|e| e.to_os_string()))
        .collect();
    for name in names {
        if std::env::var_os(&name).is_some_and(|v| v.is_empty()) {
            std::env::remove_var(&name);
        }
    }
}
