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
//! With COUNT=1 the foreground process is the worker. Each level dies with
//! the one above it (`PR_SET_PDEATHSIG`), so nothing runs unsupervised.
//! [`supervisor`] forks the workers (a user's [`Registry`] survives the
//! fork), [`proctitle`] writes the `ps` titles Resque's liveness checks read.
//!
//! The worker loop ([`worker`]) does all Redis bookkeeping itself, so the
//! record of a job never depends on a job process that may have crashed:
//!
//! 1. **reserve** ([`store::Store::reserve`]): one Lua script pops the first
//!    job in queue-priority order *and* writes the in-flight record
//!    `worker:ID` (and php's status 2). No instant exists at which a popped
//!    job is recorded nowhere.
//! 2. **start** ([`child`]): a registered Rust function runs in a forked copy
//!    of the worker and reports on a pipe; any other class runs the program
//!    of that name in `JOBS_DIR` ([`handlers::exec`]) with the args JSON on stdin.
//! 3. **watch**: one `poll(2)` over the signal self-pipe ([`signals`]), the
//!    job's pipes and the heartbeat timer. No threads: `fork` from a
//!    multi-threaded process would copy locks held by other threads.
//! 4. **record** ([`store::Store::record`]): one Lua script clears
//!    `worker:ID`, counts the job, files the failure record and finishes the
//!    php status, atomically.
//!
//! At startup the worker heartbeats, prunes dead workers of its host and
//! files their jobs as failures ([`prune`]), then registers. Every Redis key
//! is named in [`keys`], every command sent in [`store`], and every record
//! format lives in [`payload`] and [`timefmt`].
//!
//! ## Your own jobs in Rust
//!
//! ```no_run
//! use resque_fork::{cli, JobError, Registry};
//!
//! fn main() {
//!     let registry = Registry::new()
//!         .register("Greet", |job| {
//!             println!("hello, {}", job.args()[0]);
//!             Ok(())
//!         })
//!         .register("Fail", |_| Err(JobError::new("MyApp::Oops", "always fails")));
//!     std::process::exit(cli::run(registry));
//! }
//! ```

pub mod child;
pub mod cli;
pub mod config;
pub mod error;
pub mod handlers;
pub mod keys;
pub mod ops;
pub mod payload;
pub mod proctitle;
pub mod producer;
pub mod prune;
pub mod queues;
pub mod report;
pub mod signals;
pub mod store;
pub mod supervisor;
pub mod timefmt;
pub mod worker;

pub use error::{Error, Result};
pub use handlers::{JobError, JobResult, Registry};
pub use keys::Keys;
pub use payload::{Failure, Job};
