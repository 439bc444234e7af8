//! The metrics: what workers add up in Redis, the exporter's text (checked by
//! promtool), a real Prometheus server scraping it, and the pool's own
//! exporter process.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Five jobs of Ok completed, two of Bad failed, one retried then
/// completed, three left waiting in another queue.
fn workload(redis: &RedisServer, jobs: &JobsDir) {
    jobs.add("Ok", "cat > /dev/null");
    jobs.add("Bad", "cat > /dev/null; exit 1");
    jobs.add(
        "Again",
        "cat > /dev/null; [ \"$RESQUE_RETRY_COUNT\" = 0 ] && exit 75; exit 0",
    );
    for n in 0..5 {
        cli(redis, &["enqueue", "q", "Ok", &n.to_string()]);
    }
    for n in 0..2 {
        cli(redis, &["enqueue", "q", "Bad", &n.to_string()]);
    }
    cli(redis, &["enqueue", "q", "Again"]);
    for n in 0..3 {
        cli(redis, &["enqueue", "waiting", "Ok", &n.to_string()]);
    }
    let mut w = worker(redis, jobs, "q", "0.05");
    w.env("RETRY_BACKOFF", "0")
        .env("SCHEDULER_INTERVAL", "0.05");
    let mut w = w.spawn().unwrap();
    wait_until("the workload is done", || {
        redis.int("resque:stat:processed") == 9
    });
    signal(w.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut w).success());
}

fn exposition(redis: &RedisServer) -> String {
    let (code, out, err) = cli(redis, &["info", "--prometheus"]);
    assert_eq!(code, Some(0), "{err}");
    out
}

/// The value of the sample `line_start` (name and labels as printed).
fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

#[test]
fn the_exposition_counts_the_workload_and_promtool_accepts_it() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    workload(&redis, &jobs);
    let text = exposition(&redis);
    for (line, want) in [
        ("resque_up ", 1.0),
        ("resque_jobs_in_queue{queue=\"waiting\"} ", 3.0),
        ("resque_jobs_in_queue{queue=\"q\"} ", 0.0),
        ("resque_job_executions_total ", 9.0),
        ("resque_failed_job_executions_total ", 3.0),
        ("resque_jobs_in_failed_queue{queue=\"failed\"} ", 2.0),
        ("resque_workers ", 0.0),
        (
            "resque_job_outcomes_total{queue=\"q\",class=\"Ok\",outcome=\"completed\"} ",
            5.0,
        ),
        (
            "resque_job_outcomes_total{queue=\"q\",class=\"Bad\",outcome=\"failed\"} ",
            2.0,
        ),
        (
            "resque_job_outcomes_total{queue=\"q\",class=\"Again\",outcome=\"retried\"} ",
            1.0,
        ),
        (
            "resque_job_outcomes_total{queue=\"q\",class=\"Again\",outcome=\"completed\"} ",
            1.0,
        ),
        (
            "resque_job_duration_seconds_count{queue=\"q\",class=\"Ok\"} ",
            5.0,
        ),
        (
            "resque_job_duration_seconds_bucket{queue=\"q\",class=\"Ok\",le=\"+Inf\"} ",
            5.0,
        ),
        (
            "resque_job_duration_seconds_count{queue=\"q\",class=\"Again\"} ",
            2.0,
        ),
        // Every job enqueued by the CLI carries its enqueue time.
        ("resque_queue_latency_seconds_count{queue=\"q\"} ", 9.0),
        ("resque_delayed_jobs ", 0.0),
    ] {
        assert_eq!(sample(&text, line), Some(want), "{line}\n{text}");
    }
    let age = sample(
        &text,
        "resque_queue_oldest_job_age_seconds{queue=\"waiting\"} ",
    )
    .unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (make test installs Debian's prometheus)");
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = wait_output(check);
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn exporter(redis_url: &str, port: u16) -> Child {
    let mut c = Command::new(bin());
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", redis_url)
        .args(["metrics", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().unwrap()
}

fn scrape(port: u16) -> Option<(u16, String)> {
    http_get(&format!("127.0.0.1:{port}"), "/metrics", None)
}

#[test]
fn a_redis_outage_is_resque_up_0_not_an_http_error_and_openmetrics_is_served_when_asked() {
    let mut redis = RedisServer::start();
    let port = free_port();
    let mut exp = exporter(&redis.url(), port);
    wait_until("the exporter answers", || scrape(port).is_some());
    let (code, body) = scrape(port).unwrap();
    assert_eq!(code, 200);
    assert_eq!(sample(&body, "resque_up "), Some(1.0));
    let (_, om) = http_get(
        &format!("127.0.0.1:{port}"),
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .unwrap();
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    redis.kill_hard();
    let (code, body) = scrape(port).unwrap();
    assert_eq!(code, 200);
    assert_eq!(sample(&body, "resque_up "), Some(0.0));
    redis.restart();
    wait_until("up again", || {
        scrape(port).is_some_and(|(_, b)| sample(&b, "resque_up ") == Some(1.0))
    });
    let _ = exp.kill();
    let _ = exp.wait();
}

/// A Prometheus server of Debian's, scraping `target` every second.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: resque\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .expect("prometheus must be installed (make test installs Debian's prometheus)");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// The value of an instant PromQL query with one result.
    fn query(&self, promql: &str) -> Option<f64> {
        let (_, body) = http_get(
            &format!("127.0.0.1:{}", self.port),
            &format!("/api/v1/query?query={}", url_encode(promql)),
            None,
        )?;
        let v: Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn exporter_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn prometheus_scrapes_a_pools_own_exporter_and_promql_sees_the_workload() {
    let redis = RedisServer::start();
    let jobs = JobsDir::new();
    workload(&redis, &jobs);
    let port = free_port();
    let log = jobs.scratch("pool.log");
    let mut pool = worker(&redis, &jobs, "elsewhere", "0.2");
    pool.env("METRICS_LISTEN", format!("127.0.0.1:{port}"));
    log_to(&mut pool, &log);
    let mut pool = pool.spawn().unwrap();
    wait_until("the pool's exporter answers", || scrape(port).is_some());
    assert!(
        exporter_log(&log).contains(&format!("listening on http://127.0.0.1:{port}/metrics")),
        "{}",
        exporter_log(&log)
    );
    let prom = Prometheus::start(&format!("127.0.0.1:{port}"));
    for (promql, want) in [
        ("resque_jobs_in_queue{queue=\"waiting\"}", 3.0),
        (
            "resque_job_outcomes_total{class=\"Ok\",outcome=\"completed\"}",
            5.0,
        ),
        ("resque_job_duration_seconds_count{class=\"Ok\"}", 5.0),
        ("sum(resque_job_duration_seconds_count)", 9.0),
        ("resque_workers", 1.0),
        ("resque_up", 1.0),
    ] {
        wait_until(&format!("Prometheus sees {promql} = {want}"), || {
            prom.query(promql) == Some(want)
        });
    }
    // A dead exporter is restarted by its pool.
    let exporter_pid: u32 = children(pool.id())
        .into_iter()
        .find(|p| command_line(*p).contains("Exporting metrics"))
        .expect("the exporter is a child of the pool");
    signal(exporter_pid, libc::SIGKILL);
    wait_until("the exporter is back", || {
        children(pool.id())
            .into_iter()
            .any(|p| p != exporter_pid && command_line(p).contains("Exporting metrics"))
            && scrape(port).is_some()
    });
    signal(pool.id(), libc::SIGQUIT);
    assert!(wait_exit(&mut pool).success());
    assert!(scrape(port).is_none(), "the exporter stops with its pool");
}
