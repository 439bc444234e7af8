//! One recurring entry, read from resque-scheduler's configuration (a schedule
//! file's entry or a `persistent_schedules` value): what runs, on which
//! queue, with which args, and when.

use super::Trigger;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Where an entry was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The schedule file (`SCHEDULE`).
    File,
    /// `persistent_schedules` in Redis (`Resque.set_schedule(…, persist: true)`).
    Redis,
}

/// A recurring job, ready to enqueue.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub origin: Origin,
    pub trigger: Trigger,
    pub class: String,
    pub queue: String,
    /// The args array as JSON text, in the order written.
    pub args: String,
    pub description: Option<String>,
    /// The job as Ruby's `Resque::Job.create` writes it: `{"class":…,"args":…}`.
    pub payload: String,
}

/// Why an entry is not scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unscheduled {
    /// Not meant for this environment, or without `cron`/`every` (Ruby's
    /// scheduler skips both with a log line, and so do we).
    Skipped(String),
    /// The entry cannot be run as written.
    Invalid(String),
}

/// The fields resque-scheduler reads; others are ignored as Ruby ignores them.
#[derive(Deserialize)]
struct Fields<'a> {
    cron: Option<serde_json::Value>,
    every: Option<serde_json::Value>,
    class: Option<String>,
    queue: Option<String>,
    #[serde(borrow)]
    args: Option<&'a RawValue>,
    description: Option<String>,
    rails_env: Option<String>,
    env: Option<String>,
    custom_job_class: Option<String>,
}

impl Entry {
    /// Reads entry `name` from its JSON configuration. `env` is the pool's
    /// environment (RAILS_ENV), matched against an entry's `rails_env`/`env`
    /// list as resque-scheduler matches it.
    ///
    /// ```
    /// use resque_fork::schedule::{Entry, Origin};
    /// let e = Entry::from_config("nightly",
    ///     r#"{"cron":"0 3 * * * UTC","class":"Report","queue":"low","args":{"full":true}}"#,
    ///     Origin::File, None).unwrap();
    /// assert_eq!(e.payload, r#"{"class":"Report","args":[{"full":true}]}"#);
    /// ```
    pub fn from_config(
        name: &str,
        config: &str,
        origin: Origin,
        env: Option<&str>,
    ) -> Result<Entry, Unscheduled> {
        let invalid = |why: String| Unscheduled::Invalid(format!("schedule entry {name:?}: {why}"));
        let f: Fields = serde_json::from_str(config)
            .map_err(|e| invalid(format!("not a map of cron/every, class, queue, args…: {e}")))?;
        if let Some(wanted) = f.rails_env.as_deref().or(f.env.as_deref()) {
            let here = env.unwrap_or("");
            if !wanted.split([' ', ',']).any(|w| !w.is_empty() && w == here) {
                return Err(Unscheduled::Skipped(format!(
                    "schedule entry {name:?} is for env {wanted:?}, this pool's is {here:?}"
                )));
            }
        }
        let trigger = match (non_empty(&f.cron), non_empty(&f.every)) {
            (Some(cron), _) => match cron {
                serde_json::Value::String(line) => Trigger::cron(line),
                _ => Err(format!("cron {cron} is not a string")),
            },
            (None, Some(every)) => every_trigger(every),
            (None, None) => {
                return Err(Unscheduled::Skipped(format!(
                    "schedule entry {name:?} has no cron or every: skipped"
                )))
            }
        }
        .map_err(invalid)?;
        let class = f.class.unwrap_or_else(|| name.to_string());
        if class.is_empty() {
            return Err(invalid("its class is empty".into()));
        }
        if let Some(custom) = f.custom_job_class.filter(|c| c != "Resque::Job") {
            return Err(invalid(format!(
                "custom_job_class {custom:?} runs Ruby code resque-fork cannot run"
            )));
        }
        let queue = f.queue.filter(|q| !q.is_empty()).ok_or_else(|| {
            invalid(
                "no queue: Ruby takes it from the class's @queue, which resque-fork \
                 cannot see; add `queue:`"
                    .into(),
            )
        })?;
        let args = args_array(f.args.map(RawValue::get));
        let payload = format!(
            r#"{{"class":{},"args":{args}}}"#,
            serde_json::Value::from(class.as_str())
        );
        Ok(Entry {
            name: name.to_string(),
            origin,
            trigger,
            class,
            queue,
            args,
            description: f.description,
            payload,
        })
    }
}

/// A `cron`/`every` value that is present and not empty (Ruby's test).
fn non_empty(v: &Option<serde_json::Value>) -> Option<&serde_json::Value> {
    v.as_ref().filter(|v| match v {
        serde_json::Value::Null => false,
        serde_json::Value::String(s) => !s.is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
        _ => true,
    })
}

/// `every: "30s"`, or rufus' `every: ["30s", {first_at: …}]`. `first_in`
/// counts from when a scheduler loaded the schedule, which differs from
/// pool to pool; it is ignored (ticks are aligned to the epoch instead).
fn every_trigger(every: &serde_json::Value) -> Result<Trigger, String> {
    let (text, options) = match every {
        serde_json::Value::String(s) => (s.as_str(), None),
        serde_json::Value::Array(a) => match a.as_slice() {
            [serde_json::Value::String(s)] => (s.as_str(), None),
            [serde_json::Value::String(s), serde_json::Value::Object(o)] => (s.as_str(), Some(o)),
            _ => return Err(format!("every {every} is not \"30s\" or [\"30s\", {{…}}]")),
        },
        other => return Err(format!("every {other} is not a duration")),
    };
    let first_at = match options.and_then(|o| o.get("first_at")) {
        None => None,
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => Some(
            crate::timefmt::parse_any(s).ok_or_else(|| format!("first_at {s:?} is not a time"))?,
        ),
        Some(other) => return Err(format!("first_at {other} is not a time")),
    };
    Trigger::every(text, first_at)
}

/// Ruby's `args.is_a?(Hash) ? [args] : Array(args)`, on the JSON text.
fn args_array(raw: Option<&str>) -> String {
    match raw.map(str::trim) {
        None | Some("null") => "[]".to_string(),
        Some(a) if a.starts_with('[') => a.to_string(),
        Some(other) => format!("[{other}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(config: &str) -> Result<Entry, Unscheduled> {
        Entry::from_config("Clean", config, Origin::File, Some("production"))
    }

    #[test]
    fn args_follow_rubys_rules() {
        let q = r#""every":"1m","queue":"q""#;
        assert_eq!(
            entry(&format!("{{{q}}}")).unwrap().payload,
            r#"{"class":"Clean","args":[]}"#
        );
        assert_eq!(
            entry(&format!(r#"{{{q},"args":"/tmp"}}"#)).unwrap().payload,
            r#"{"class":"Clean","args":["/tmp"]}"#
        );
        assert_eq!(
            entry(&format!(r#"{{{q},"args":[1,{{"b":1,"a":2}}]}}"#))
                .unwrap()
                .args,
            r#"[1,{"b":1,"a":2}]"#
        );
    }

    #[test]
    fn cron_wins_over_every_and_env_filters() {
        let e = entry(r#"{"cron":"0 * * * *","every":"1m","queue":"q","class":"X"}"#).unwrap();
        assert!(e.trigger.describe().starts_with("cron"));
        assert!(matches!(
            entry(r#"{"every":"1m","queue":"q","rails_env":"staging, test"}"#),
            Err(Unscheduled::Skipped(_))
        ));
        assert!(entry(r#"{"every":"1m","queue":"q","rails_env":"staging,production"}"#).is_ok());
        assert!(matches!(
            entry(r#"{"queue":"q"}"#),
            Err(Unscheduled::Skipped(_))
        ));
    }

    #[test]
    fn what_cannot_run_is_invalid() {
        for bad in [
            r#"{"every":"1m"}"#,
            r#"{"every":"often","queue":"q"}"#,
            r#"{"cron":"99 * * * *","queue":"q"}"#,
            r#"{"every":"1m","queue":"q","custom_job_class":"Status"}"#,
            r#"["not","a","map"]"#,
        ] {
            assert!(matches!(entry(bad), Err(Unscheduled::Invalid(_))), "{bad}");
        }
        assert!(
            entry(r#"{"every":["1m",{"first_at":"2024-01-15T10:30:00Z"}],"queue":"q"}"#).is_ok()
        );
    }
}
