//! A worker binary with its own Rust jobs, and every flag of `resque-fork`.
//!
//!     QUEUE=* cargo run --example worker
//!
//! Classes registered here run as Rust functions in a forked process; any
//! other class still runs the program `JOBS_DIR/<class>`.

use resque_fork::{cli, Job, JobError, JobResult, Registry};
use std::io::Write;

/// `Append [path, text]`: appends a line to a file.
fn append(job: &Job) -> JobResult {
    let (Some(path), Some(text)) = (job.args().first(), job.args().get(1)) else {
        return Err(JobError::new("ArgumentError", "Append takes [path, text]"));
    };
    let path = path
        .as_str()
        .ok_or_else(|| JobError::new("ArgumentError", "path must be a string"))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{}", text.as_str().unwrap_or(&text.to_string()))?;
    Ok(())
}

/// `Divide [a, b]`: fails cleanly on a zero divisor or non-numbers.
fn divide(job: &Job) -> JobResult {
    let num = |i: usize| job.args().get(i).and_then(|v| v.as_i64());
    let (Some(a), Some(b)) = (num(0), num(1)) else {
        return Err(JobError::new("ArgumentError", "Divide takes two integers"));
    };
    if b == 0 {
        return Err(JobError::new(
            "ZeroDivisionError",
            format!("cannot divide {a} by zero"),
        ));
    }
    println!("{a} / {b} = {}", a / b);
    Ok(())
}

fn main() {
    let registry = Registry::new()
        .register("Append", append)
        .register("Divide", divide)
        .register("ParseNumber", |job| {
            let text = job.args().first().and_then(|v| v.as_str()).unwrap_or("");
            let n: i64 = text.parse()?;
            println!("parsed {n}");
            Ok(())
        })
        .register("Panic", |_| panic!("this job panics on purpose"))
        .register("Exit", |_| std::process::exit(3))
        .register("Abort", |_| std::process::abort());
    std::process::exit(cli::run(registry));
}
