//! A worker binary for the tests, with faults to switch on by environment:
//!
//! - `FAULT_PANIC_AT_START=1`: a `before_first_fork` hook panics with a
//!   payload that panics again when dropped, which escapes the hook guard's
//!   `catch_unwind` (it drops the payload): a panic out of the worker itself,
//!   as a bug in resque-fork would cause.

use resque_fork::{cli, Registry};

/// A panic payload whose drop panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("fault_worker: the panic payload panicked when dropped");
    }
}

fn main() {
    let registry = Registry::new().before_first_fork(|_| {
        if std::env::var_os("FAULT_PANIC_AT_START").is_some() {
            std::panic::panic_any(Bomb);
        }
    });
    std::process::exit(cli::run(registry));
}
