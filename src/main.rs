//! The `resque-fork` binary: every job class runs through the exec handler.

fn main() {
    std::process::exit(resque_fork::cli::run(resque_fork::Registry::new()));
}
