//! The command line: flags with Resque's environment variables as fallbacks,
//! and the subcommands. [`run`] is the whole program; a user's own binary
//! calls it with its own [`Registry`].

mod args;

pub use args::Cli;

use crate::error::{Error, Result};
use crate::handlers::Registry;
use crate::worker::Worker;
use crate::{ops, proctitle, producer, report, signals, supervisor};
use args::{
    forget_empty_env_vars, Command, DelayedCommand, FailedCommand, PoolCommand, QueueCommand,
};
use clap::{CommandFactory, Parser};
use std::io::Write;

/// Runs the program with the jobs in `registry` (classes not in it go to the
/// exec handler) and returns the process exit code: 0 success, 1 failure to
/// act (Redis unreachable, unknown job id), 2 bad usage or configuration.
pub fn run(registry: Registry) -> i32 {
    // The worker's signals are held from the first moment, not from the end
    // of reading its settings: a QUIT sent as soon as the pid exists (by a
    // deployment script, or a supervisor stopping what it just started)
    // would otherwise end the process by its default action, or vanish
    // where a shell started it in the background with QUIT ignored. The
    // handlers, installed later, receive it. One-shot commands get the
    // default behaviour back (Ctrl-C ends them).
    let mask = signals::block(signals::HANDLED);
    forget_empty_env_vars();
    let cli = Cli::parse();
    cli.log.init();
    if cli.command.is_some() {
        signals::restore(mask);
    }
    match dispatch(cli, &registry) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("resque-fork: {e}");
            match e {
                Error::Config(_) => 2,
                _ => 1,
            }
        }
    }
}

/// One path per command: the parsed command to `ops` (or `producer`), its
/// result to `report` (or JSON with `--json`).
fn dispatch(cli: Cli, registry: &Registry) -> Result<()> {
    let Some(command) = &cli.command else {
        return work(&cli, registry);
    };
    let json = cli.json;
    // Commands that need no Redis.
    match command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "resque-fork", &mut script);
            return print_text(&String::from_utf8_lossy(&script));
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| Error::io("rendering the man page", e))?;
            return print_text(&String::from_utf8_lossy(&page));
        }
        // Whether or not Redis answers: then resque_up is 0.
        Command::Info { prometheus: true } => {
            let policy = cli.work.prune_policy()?;
            let redis = cli.redis.settings()?;
            let mut store = crate::store::Store::open_with(&redis)?;
            let snapshot =
                crate::metrics::Snapshot::gather(&mut store, &crate::identity::hostname(), &policy);
            return print_text(&crate::metrics::exporter::render(snapshot, false));
        }
        // Connects per scrape: serving starts whether or not Redis answers.
        Command::Metrics { listen } => {
            let policy = cli.work.prune_policy()?;
            return crate::metrics::exporter::serve(listen, &cli.redis.settings()?, &policy);
        }
        // Needs no Redis: a signal to the pool in PIDFILE.
        Command::Pool(PoolCommand::Reload { pidfile }) => {
            let pid = crate::pidfile::signal_holder(pidfile, nix::sys::signal::Signal::SIGHUP)?;
            return print_text(&format!("sent HUP to pool {pid}: it re-reads its files\n"));
        }
        _ => {}
    }
    let mut store = cli.redis.store()?;
    match command {
        Command::Enqueue {
            queue,
            class,
            stdin: true,
            track,
            ..
        } => {
            let args = producer::read_arg_lines(std::io::stdin().lock())?;
            let (ids, enqueued) = producer::enqueue_many(&mut store, queue, class, &args, *track);
            print_text(&report::ids(&ids))?;
            enqueued?;
        }
        Command::Enqueue {
            queue,
            class,
            args,
            delay,
            at,
            track,
            ..
        } if delay.is_some() || at.is_some() => {
            let args: Vec<_> = args.iter().map(|a| producer::parse_arg(a)).collect();
            let due = match (delay, at) {
                (Some(delay), _) => store.server_time()? + delay.as_secs().min(1 << 40) as i64,
                (_, Some(at)) => *at,
                (None, None) => unreachable!("guarded above"),
            };
            // Untracked by default: the item is then byte for byte Ruby's.
            if *track {
                let id = producer::enqueue_at_tracked(&mut store, queue, class, &args, due)?;
                print_text(&format!("{id}\n"))?;
            } else {
                producer::enqueue_at(&mut store, queue, class, &args, due)?;
            }
            print_text(&report::scheduled(queue, class, due))?;
        }
        Command::Enqueue {
            queue,
            class,
            args,
            no_track,
            ..
        } => {
            let args: Vec<_> = args.iter().map(|a| producer::parse_arg(a)).collect();
            let id = producer::enqueue(&mut store, queue, class, &args, !*no_track)?;
            print_text(&report::ids(&[id]))?;
        }
        Command::Status { job_id } => {
            let found = ops::job_status(&mut store, job_id)?;
            show(json, &found, report::job_status);
        }
        // (--prometheus is answered above, before connecting.)
        Command::Info { .. } => show(json, &ops::info(&mut store)?, report::info),
        Command::Queues => show(json, &ops::queues(&mut store)?, |r| report::queues(r)),
        Command::Queue(QueueCommand::Show { name, limit }) => {
            let jobs = ops::queue_show(&mut store, name, *limit)?;
            show(json, &jobs, |j| report::queue_jobs(name, j));
        }
        Command::Queue(QueueCommand::Clear { name, yes }) => {
            if confirm(*yes, &format!("Delete every job in queue {name}?"))? {
                let n = ops::queue_clear(&mut store, name)?;
                print_text(&report::queue_cleared(name, n))?;
            }
        }
        Command::Queue(QueueCommand::Remove { name, yes }) => {
            if confirm(*yes, &format!("Remove queue {name} and its jobs?"))? {
                let n = ops::queue_remove(&mut store, name)?;
                print_text(&report::queue_removed(name, n))?;
            }
        }
        Command::Workers => {
            let policy = cli.work.prune_policy()?;
            let rows = ops::workers(&mut store, &crate::identity::hostname(), &policy)?;
            let pools = ops::pools(&mut store, &crate::identity::hostname())?;
            show(json, &rows, |r| report::workers(r) + &report::pools(&pools));
        }
        Command::Pool(PoolCommand::Status) => {
            show(
                json,
                &ops::pools(&mut store, &crate::identity::hostname())?,
                |p| report::pools(p),
            );
        }
        Command::Failed(FailedCommand::List { limit, filter }) => {
            let list = ops::failed_listing(&mut store, &filter.filter(), *limit)?;
            show(json, &list.rows, |_| {
                report::failures(&list.rows, list.total)
            });
        }
        Command::Failed(FailedCommand::Show { failure }) => {
            let shown = ops::failed_show(&mut store, failure)?;
            show(json, &shown, report::failure_shown);
        }
        Command::Failed(FailedCommand::Retry {
            failure,
            all,
            filter,
            again,
        }) => {
            if *all {
                let n = ops::failed_retry_all(&mut store, &filter.filter())?;
                print_text(&report::retried_all(n))?;
            } else if let Some(failure) = failure {
                let row = ops::failed_retry(&mut store, failure, *again)?;
                print_text(&report::retried(&row))?;
            }
        }
        Command::Failed(FailedCommand::Remove { failure }) => {
            let row = ops::failed_remove(&mut store, failure)?;
            print_text(&report::removed(&row))?;
        }
        Command::Failed(FailedCommand::Clear { yes }) => {
            if confirm(*yes, "Delete every failure record?")? {
                let n = ops::failed_clear(&mut store)?;
                print_text(&report::failed_cleared(n))?;
            }
        }
        Command::Delayed {
            command: None | Some(DelayedCommand::List),
        } => {
            show(json, &ops::delayed(&mut store)?, report::delayed);
        }
        Command::Delayed {
            command: Some(DelayedCommand::Show { timestamp }),
        } => {
            let items = ops::delayed_show(&mut store, *timestamp)?;
            show(json, &items, |i| report::delayed_items(*timestamp, i));
        }
        Command::Delayed {
            command: Some(DelayedCommand::Remove(which)),
        } => {
            let n = ops::delayed_take(&mut store, &which.selection(), false)?;
            show(json, &serde_json::json!({ "removed": n }), |_| {
                report::delayed_taken(n, false)
            });
        }
        Command::Delayed {
            command: Some(DelayedCommand::RunNow(which)),
        } => {
            let n = ops::delayed_take(&mut store, &which.selection(), true)?;
            show(json, &serde_json::json!({ "enqueued": n }), |_| {
                report::delayed_taken(n, true)
            });
        }
        Command::Retries => {
            show(json, &ops::retries(&mut store)?, |r| report::retries(r));
        }
        Command::Schedule => {
            let (file, env) = cli.work.schedule_source()?;
            let rows = ops::schedule(&mut store, file.as_deref(), env.as_deref())?;
            show(json, &rows, |r| report::schedule(r));
        }
        Command::Delayed {
            command: Some(DelayedCommand::Clear { yes }),
        } => {
            if confirm(*yes, "Delete every delayed job?")? {
                let n = ops::delayed_clear(&mut store)?;
                print_text(&report::delayed_cleared(n))?;
            }
        }
        Command::Prune => {
            let policy = cli.work.prune_policy()?;
            let hostname = crate::identity::hostname();
            let who = format!("{hostname}:{}:prune", std::process::id());
            let pruned = ops::prune_now(&mut store, &who, &hostname, &policy)?;
            show(json, &pruned, |p| report::pruned(p));
        }
        Command::Completions { .. }
        | Command::Man
        | Command::Metrics { .. }
        | Command::Pool(PoolCommand::Reload { .. }) => {}
    }
    Ok(())
}

/// Writes text as it is (it ends with its own newline). A reader that
/// stopped reading (`| head`) is no error.
fn print_text(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("writing to standard output", e))
        }
        _ => Ok(()),
    }
}

/// Prints `value` as JSON with `--json`, else the human rendering.
fn show<T: serde::Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) {
    if json {
        println!("{}", serde_json::to_string(value).unwrap_or_default());
    } else {
        print!("{}", human(value));
    }
}

/// Asks on the terminal unless `yes`; refuses when nobody can answer.
fn confirm(yes: bool, question: &str) -> Result<bool> {
    use std::io::{BufRead, IsTerminal};
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Config(format!(
            "{question}: refusing without --yes (standard input is not a terminal)"
        )));
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::io("reading the answer", e))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn work(cli: &Cli, registry: &Registry) -> Result<()> {
    let settings = cli.work.settings()?;
    let redis = cli.redis.settings()?;
    let plan = cli.work.pool_plan()?;
    // (Signals are held since `run` began, until the handlers exist: a
    // script may signal the pid as soon as it appears in PIDFILE.)
    let _pidfile = match &settings.pidfile {
        Some(path) => Some(crate::pidfile::Pidfile::claim(path)?),
        None => None,
    };
    proctitle::init();
    match plan {
        None => Worker::new(settings, &redis, registry)?.run(),
        Some(plan) => supervisor::run(&plan, &settings, &redis, registry),
    }
}
