#![warn(missing_docs)]
//! # resque-fork
//!
//! A Resque-compatible background-job worker that forks a process per job.
//! It reads and writes Redis exactly as Ruby resque, php-resque and
//! resque-web do, so jobs enqueued by any of them run here, and our workers,
//! stats and failures show correctly in theirs.
//!
//! ## A tour
//!
//! ```text
//! resque-fork (supervisor)      COUNT > 1: starts, restarts and signals workers
//! ├── worker                    registered as host:pid:queues, single-threaded
//! │   └── job process           one per job: a forked Rust function, or the
//! │                             program JOBS_DIR/<class>
//! └── worker …
//! ```
//!
//! [`cli`] parses flags and Resque's environment variables into
//! [`config`] settings, claims the [`pidfile`], and starts either one worker
//! or, with COUNT above 1 or a resque-pool file ([`pool_config`], groups of
//! workers by queue list, re-read on HUP), the [`supervisor`], which forks
//! the workers (a
//! user's [`Registry`] survives the fork), restarts one that dies, and files
//! the job of one a signal killed. Each level dies with the one above it
//! (`PR_SET_PDEATHSIG`), so nothing runs unsupervised; [`proctitle`] writes
//! the `ps` titles Resque's liveness checks read.
//!
//! A worker ([`worker`]) has an [`identity`]: its id `host:pid:queues` and a
//! random token that tells it apart from any other process that ever had the
//! same id. At startup it makes sure no live process shares the id, files
//! what a dead predecessor with that id left behind, then loops, doing all
//! Redis bookkeeping itself, so the record of a job never depends on a job
//! process that may have crashed:
//!
//! 1. **reserve** ([`store::jobs`]): one Lua script pops the first job in
//!    queue-priority order ([`queues`] resolves `*` and globs) *and* writes
//!    the in-flight record `worker:ID` (and php's status 2). No instant
//!    exists at which a popped job is recorded nowhere.
//! 2. **start** ([`child`]): a registered Rust function runs in a forked copy
//!    of the worker and reports on a pipe; any other class runs the program
//!    of that name in `JOBS_DIR` ([`handlers::exec`]) with the args on stdin,
//!    byte for byte.
//! 3. **watch**: one `poll(2)` over the signal self-pipe ([`signals`]), the
//!    job's pipes and the next deadline of its [`job_clock`] (JOB_TIMEOUT,
//!    TERM_CHILD). No threads: `fork` from a multi-threaded process would
//!    copy locks held by other threads.
//! 4. **record** ([`store::jobs`]): one Lua script clears `worker:ID`, counts
//!    the job, files the failure record and finishes the php status,
//!    atomically, and checks before its first write all that could fail.
//!    A worker that goes straight on (no signal, stop or housekeeping due)
//!    runs the next reserve in the same script: one round trip per job.
//!
//! Between jobs the worker waits in the same `poll(2)`: for INTERVAL, or
//! with BLOCKING on [`doorbell`] connections that ring when a queue gets a
//! job without taking it, so the reserve stays the only consumer.
//!
//! Every pool (the supervisor, or a lone worker) also promotes delayed jobs
//! ([`promoter`]): due items on resque-scheduler's keys move onto their
//! queues in one atomic script per batch ([`store::delayed`]), so any number
//! of pools do it side by side, each item exactly once. With a [`schedule`]
//! (resque-scheduler's file, and its dynamic schedules in Redis), the same
//! turn enqueues recurring jobs ([`recurring`]): each entry's due ticks are
//! claimed by one atomic script, so each tick runs once across all pools.
//!
//! At startup, and every PRUNE_INTERVAL after, a worker finds dead workers
//! (stale heartbeat on any host; on its own, a gone or reused pid, looked up
//! in [`procfs`], once the heartbeat is old too) and accounts for their jobs
//! ([`prune`], which decides; [`store::workers`] carries it out). Redis may
//! vanish at any step: every step is retried on a [`backoff`], and reserve
//! and record are safe to retry (a lost reply never loses or double-counts a
//! job). Every Redis key is named in [`keys`], every command sent in
//! [`store`] (its scripts in `src/lua/`), and every record format lives in
//! [`payload`] and [`timefmt`]; `docs/redis-contract.md` describes them. The
//! operations commands are [`ops`] (what to read and change) and [`report`]
//! (what a person reads); [`producer`] enqueues.
//!
//! ## Your own jobs in Rust
//!
//! A binary of your own gets every flag of `resque-fork` from [`cli::run`];
//! the [`Registry`] maps class names to functions, or to [`TypedJob`]s whose
//! fields are decoded from `args` with serde, and carries the
//! [hooks](handlers::hooks):
//!
//! ```no_run
//! use resque_fork::{cli, Job, JobError, JobResult, Registry, TypedJob};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct SendEmail { to: String, template: String }
//!
//! impl TypedJob for SendEmail {
//!     const CLASS: &'static str = "SendEmail";
//!     fn perform(self, _job: &Job) -> JobResult {
//!         println!("mailing {} to {}", self.template, self.to);
//!         Ok(())
//!     }
//! }
//!
//! fn main() {
//!     let registry = Registry::new()
//!         .job::<SendEmail>()
//!         .register("Fail", |_| Err(JobError::new("MyApp::Oops", "always fails")))
//!         .on_failure(|job, failure| eprintln!("{}: {}", job.class(), failure.error));
//!     std::process::exit(cli::run(registry));
//! }
//! ```
//!
//! A program that only enqueues uses the [`Producer`] (thread-safe):
//!
//! ```no_run
//! # use resque_fork::{Job, JobResult, TypedJob};
//! # #[derive(serde::Serialize, serde::Deserialize)]
//! # struct SendEmail { to: String, template: String }
//! # impl TypedJob for SendEmail {
//! #     const CLASS: &'static str = "SendEmail";
//! #     fn perform(self, _job: &Job) -> JobResult { Ok(()) }
//! # }
//! let producer = resque_fork::Producer::connect("redis://127.0.0.1:6379")?;
//! producer.enqueue_job("mail", &SendEmail { to: "ada@example.com".into(), template: "welcome".into() })?;
//! let id = producer.enqueue_tracked("reports", "Nightly", &[])?;
//! # Ok::<(), resque_fork::Error>(())
//! ```
//!
//! Errors are one [`Error`] type to match on. Exception names written into
//! failure records are in [`payload::exceptions`].

// The public surface: the CLI entry point, jobs and their registry, the
// producer client, errors, and the key names.
pub mod cli;
pub mod error;
pub mod handlers;
pub mod identity;
pub mod keys;
pub mod payload;
pub mod producer;

// The machinery: public only so the integration tests can reach it; not part
// of the API and free to change.
#[doc(hidden)]
pub mod backoff;
#[doc(hidden)]
pub mod child;
#[doc(hidden)]
pub mod config;
#[doc(hidden)]
pub mod doorbell;
#[doc(hidden)]
pub mod job_clock;
#[doc(hidden)]
pub mod metrics;
#[doc(hidden)]
pub mod ops;
#[doc(hidden)]
pub mod pidfile;
#[doc(hidden)]
pub mod pool_config;
#[doc(hidden)]
pub mod procfs;
#[doc(hidden)]
pub mod proctitle;
#[doc(hidden)]
pub mod promoter;
#[doc(hidden)]
pub mod prune;
#[doc(hidden)]
pub mod queues;
#[doc(hidden)]
pub mod recurring;
#[doc(hidden)]
pub mod report;
#[doc(hidden)]
pub mod resp;
pub mod retry;
#[doc(hidden)]
pub mod schedule;
#[doc(hidden)]
pub mod signals;
#[doc(hidden)]
pub mod spawn;
#[doc(hidden)]
pub mod store;
#[doc(hidden)]
pub mod supervisor;
#[doc(hidden)]
pub mod timefmt;
#[doc(hidden)]
pub mod worker;
#[doc(hidden)]
pub mod yaml;

pub use error::{Error, Result};
pub use handlers::{ArgsLayout, Flow, JobError, JobResult, Registry, TypedJob};
pub use keys::Keys;
pub use payload::{Failure, Job};
pub use producer::Producer;
