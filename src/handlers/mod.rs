//! What runs a job: Rust functions registered by class name (plain or
//! typed), or, for classes not registered, a program of the same name in
//! `JOBS_DIR`; and the hooks around them.

#[doc(hidden)]
pub mod exec;
pub mod hooks;
pub mod registry;
pub mod typed;

pub use hooks::Flow;
pub use registry::{JobError, JobResult, Registry};
pub use typed::{ArgsLayout, TypedJob};
