//! Human output of the operations commands: aligned tables that fit an
//! 80-column terminal, times shown as ages.

use crate::ops::{Counts, FailureRow, QueueRow, QueuedJob, WorkerRow};
use crate::prune::Pruned;
use crate::prune::Unregistered;
use crate::timefmt;

/// Text that came from jobs or other programs, safe to print: control
/// characters (escape sequences, carriage returns, C1 codes) are shown as
/// escapes, so no record can rewrite the operator's terminal.
///
/// ```
/// use resque_fork::report::printable;
/// assert_eq!(printable("ok"), "ok");
/// assert_eq!(printable("\u{1b}[2Jgone\r\n"), "\\u{1b}[2Jgone\\r\\n");
/// ```
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// The width tables are fitted to.
pub const WIDTH: usize = 80;

/// A table whose widest columns are cut (with `…`) until it fits `width`.
///
/// ```
/// use resque_fork::report::table;
/// let out = table(&["A", "B"], &[vec!["x".into(), "y".repeat(100)]], 20);
/// assert!(out.lines().all(|l| l.chars().count() <= 20));
/// ```
pub fn table(headers: &[&str], rows: &[Vec<String>], width: usize) -> String {
    let cols = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(printable(cell).chars().count());
        }
    }
    let total = |w: &[usize]| w.iter().sum::<usize>() + 2 * (w.len().saturating_sub(1));
    while total(&widths) > width {
        let Some((i, &w)) = widths.iter().enumerate().max_by_key(|(_, w)| **w) else {
            break;
        };
        if w <= 4 {
            break;
        }
        widths[i] = w - 1;
    }
    let fit = |cell: &str, w: usize| -> String {
        let cell = printable(cell);
        let n = cell.chars().count();
        if n <= w {
            format!("{cell:<w$}")
        } else {
            let cut: String = cell.chars().take(w.saturating_sub(1)).collect();
            format!("{cut}…")
        }
    };
    let line = |cells: Vec<&str>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| fit(c, widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

fn ago(seconds: Option<i64>) -> String {
    seconds
        .map(|s| format!("{} ago", timefmt::age(s)))
        .unwrap_or_else(|| "-".into())
}

/// `info`.
pub fn info(c: &Counts) -> String {
    format!(
        "pending    {}\nprocessed  {}\nfailed     {}\nqueues     {}\nworkers    {}\nworking    {}\ndelayed    {}\n",
        c.pending, c.processed, c.failed, c.queues, c.workers, c.working, c.delayed
    )
}

/// `delayed`.
pub fn delayed(d: &crate::ops::DelayedSummary) -> String {
    if d.count == 0 {
        return "no delayed jobs\n".into();
    }
    let body: Vec<Vec<String>> = d
        .timestamps
        .iter()
        .map(|(ts, n)| vec![ts.to_string(), timefmt::iso8601_z(*ts), n.to_string()])
        .collect();
    let mut out = table(&["TIMESTAMP", "DUE", "JOBS"], &body, WIDTH);
    out.push_str(&format!(
        "{} delayed jobs at {} timestamps\n",
        d.count,
        d.timestamps.len()
    ));
    out
}

/// `delayed show TS`.
pub fn delayed_items(ts: i64, items: &[String]) -> String {
    if items.is_empty() {
        return format!("nothing is due at {ts}\n");
    }
    items
        .iter()
        .map(|i| format!("{}\n", printable(i)))
        .collect()
}

/// `delayed remove` / `delayed run-now`.
pub fn delayed_taken(n: u64, run: bool) -> String {
    match (n, run) {
        (0, _) => "no delayed job matched\n".into(),
        (1, true) => "enqueued 1 delayed job now\n".into(),
        (1, false) => "removed 1 delayed job\n".into(),
        (n, true) => format!("enqueued {n} delayed jobs now\n"),
        (n, false) => format!("removed {n} delayed jobs\n"),
    }
}

/// `pool status`, and the foot of `workers`: each pool's groups with
/// running and intended workers.
pub fn pools(rows: &[crate::ops::PoolRow]) -> String {
    rows.iter()
        .map(|p| {
            let groups: Vec<String> = p
                .groups
                .as_array()
                .map(|gs| {
                    gs.iter()
                        .map(|g| {
                            format!(
                                "{} {}/{}",
                                printable(g["queues"].as_str().unwrap_or("?")),
                                g["running"],
                                g["intended"]
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let groups = if groups.is_empty() {
                "no workers".to_string()
            } else {
                groups.join(", ")
            };
            format!("pool {}: {groups}\n", printable(&p.pool))
        })
        .collect()
}

/// `retries`.
pub fn retries(rows: &[crate::ops::RetryRow]) -> String {
    if rows.is_empty() {
        return "no jobs wait for a retry\n".into();
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                timefmt::iso8601_z(r.due),
                r.queue.clone(),
                r.class.clone(),
                format!("{}", r.retry_count + 1),
                r.id.clone().unwrap_or_else(|| "-".into()),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &["DUE", "QUEUE", "CLASS", "ATTEMPT", "ID", "LAST ERROR"],
        &body,
        WIDTH,
    )
}

/// `schedule`.
pub fn schedule(rows: &[crate::ops::ScheduleRow]) -> String {
    if rows.is_empty() {
        return "no recurring jobs (SCHEDULE names none, and persistent_schedules is empty)\n"
            .into();
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.when.clone(),
                r.class.clone(),
                r.queue.clone(),
                r.next_run.map_or("-".into(), timefmt::iso8601_z),
                r.last_enqueued_at.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &["NAME", "WHEN", "CLASS", "QUEUE", "NEXT", "LAST"],
        &body,
        WIDTH,
    )
}

/// `delayed clear`.
pub fn delayed_cleared(n: i64) -> String {
    format!("cleared the delayed jobs: {n} deleted\n")
}

/// `queues`.
pub fn queues(rows: &[QueueRow]) -> String {
    if rows.is_empty() {
        return "no queues\n".into();
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| vec![r.name.clone(), r.length.to_string()])
        .collect();
    table(&["QUEUE", "JOBS"], &body, WIDTH)
}

/// `queue show`.
pub fn queue_jobs(queue: &str, jobs: &[QueuedJob]) -> String {
    if jobs.is_empty() {
        return format!("queue {} is empty\n", printable(queue));
    }
    let body: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.index.to_string(),
                j.class.clone().unwrap_or_else(|| "(malformed)".into()),
                j.id.clone().unwrap_or_else(|| "-".into()),
                j.raw.clone().unwrap_or_else(|| j.args.to_string()),
            ]
        })
        .collect();
    table(&["#", "CLASS", "ID", "ARGS"], &body, WIDTH)
}

/// `workers`.
pub fn workers(rows: &[WorkerRow]) -> String {
    if rows.is_empty() {
        return "no workers\n".into();
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|w| {
            let state = match &w.job {
                Some(job) => format!(
                    "{} since {}",
                    job.class.as_deref().unwrap_or("?"),
                    ago(job.running_for)
                ),
                None => w.state.clone(),
            };
            vec![
                w.host.clone(),
                w.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
                w.queues.join(","),
                state,
                ago(w.heartbeat_age),
                w.processed.to_string(),
                w.failed.to_string(),
                w.health.clone(),
            ]
        })
        .collect();
    table(
        &[
            "HOST", "PID", "QUEUES", "DOING", "BEAT", "DONE", "FAIL", "HEALTH",
        ],
        &body,
        WIDTH,
    )
}

/// `failed list`.
pub fn failures(rows: &[FailureRow], total: i64) -> String {
    if rows.is_empty() {
        return format!("no failures shown ({total} in the failed list)\n");
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|f| {
            let mut what = format!(
                "{}: {}",
                f.exception.as_deref().unwrap_or("?"),
                f.error.as_deref().unwrap_or("")
            );
            if f.retried_at.is_some() {
                what = format!("(retried) {what}");
            }
            vec![
                f.id.clone(),
                f.index.to_string(),
                ago(f.age),
                f.queue.clone().unwrap_or_default(),
                f.class.clone().unwrap_or_else(|| "-".into()),
                what,
            ]
        })
        .collect();
    let mut out = table(
        &["ID", "#", "FAILED", "QUEUE", "CLASS", "ERROR"],
        &body,
        WIDTH,
    );
    out.push_str(&format!("{} of {total} shown, newest first\n", rows.len()));
    out
}

/// `prune`.
pub fn pruned(rows: &[Pruned]) -> String {
    if rows.is_empty() {
        return "no dead workers\n".into();
    }
    rows.iter()
        .map(|p| {
            let job = match &p.job {
                Unregistered::Idle => "it held no job".to_string(),
                Unregistered::Failed { class, .. } => {
                    format!("its job {class} is recorded as failed")
                }
                Unregistered::Requeued { class, queue } => {
                    format!("its job {class} is back on {queue}")
                }
            };
            printable(&format!("pruned {} ({}); {job}", p.worker_id, p.reason)).into_owned() + "\n"
        })
        .collect()
}

/// Where a job without a status record is.
pub fn job_location(place: &crate::ops::JobLocation) -> String {
    use crate::ops::JobLocation;
    let what = match place {
        JobLocation::Running { worker, queue } => {
            format!("running: taken from {queue} by worker {worker}")
        }
        JobLocation::Queued { queue, position: 0 } => format!("queued in {queue}, next to run"),
        JobLocation::Queued { queue, position } => {
            format!("queued in {queue} at position {position} ({position} jobs ahead of it)")
        }
        JobLocation::Failed { failure_id, index } => format!(
            "failed: in the failed list as {failure_id} (index {index}); see `resque-fork failed show {failure_id}`"
        ),
    };
    format!("{} (it has no status record)\n", printable(&what))
}

/// What `status` knows of a job.
pub fn job_status(found: &crate::ops::JobWhereabouts) -> String {
    match found {
        crate::ops::JobWhereabouts::Tracked(status) => {
            format!("{}\n", crate::producer::describe(status))
        }
        crate::ops::JobWhereabouts::Located(place) => job_location(place),
    }
}

/// Job ids, one a line.
pub fn ids(ids: &[String]) -> String {
    ids.iter().map(|id| format!("{id}\n")).collect()
}

/// `queue clear`.
pub fn queue_cleared(queue: &str, jobs: i64) -> String {
    format!("cleared queue {}: {jobs} jobs deleted\n", printable(queue))
}

/// `queue remove`.
pub fn queue_removed(queue: &str, jobs: i64) -> String {
    format!("removed queue {}: {jobs} jobs deleted\n", printable(queue))
}

/// `failed show`: the record, pretty, control characters escaped.
pub fn failure_shown(shown: &crate::ops::FailureShown) -> String {
    let text = shown.record.get();
    let pretty = serde_json::from_str::<serde_json::Value>(text)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| text.to_string());
    let lines: Vec<_> = pretty.lines().map(printable).collect();
    format!(
        "failure {} (index {})\n{}\n",
        shown.id,
        shown.index,
        lines.join("\n")
    )
}

/// `failed retry --all`.
pub fn retried_all(n: usize) -> String {
    format!("retried {n} failed jobs\n")
}

/// `failed retry ID`.
pub fn retried(row: &FailureRow) -> String {
    format!(
        "retried failure {}: {} is back on queue {}\n",
        row.id,
        printable(row.class.as_deref().unwrap_or("?")),
        printable(row.queue.as_deref().unwrap_or("?"))
    )
}

/// `failed remove ID`.
pub fn removed(row: &FailureRow) -> String {
    format!("removed failure {}\n", row.id)
}

/// `failed clear`.
pub fn failed_cleared(n: i64) -> String {
    format!("cleared the failed list: {n} records deleted\n")
}

/// `enqueue --in/--at`.
pub fn scheduled(queue: &str, class: &str, at: i64) -> String {
    format!(
        "scheduled {} on {} for {} ({at})\n",
        printable(class),
        printable(queue),
        timefmt::iso8601_z(at)
    )
}
