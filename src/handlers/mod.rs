//! What runs a job: Rust functions registered by class name, or, for classes
//! not registered, a program of the same name in `JOBS_DIR`.

pub mod exec;
pub mod registry;

pub use registry::{JobError, JobResult, Registry};
