//! `POOL=resque-pool.yml`: resque-pool's configuration file, the groups of
//! workers a supervisor runs: a map of `"queue list": count`, optionally
//! with environment sections (`production: {…}`) chosen as resque-pool
//! chooses them (RACK_ENV, then RAILS_ENV, then RESQUE_ENV).

use crate::error::{Error, Result};
use crate::queues::QueueSpec;
use serde_json::Value;
use std::path::Path;

/// One group: workers of one queue list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The queue list as written (`"default,low"`), which names the group.
    pub queues: String,
    /// The parsed list.
    pub spec: QueueSpec,
    /// Workers to run.
    pub count: usize,
}

/// The environment resque-pool would pick: RACK_ENV, RAILS_ENV, RESQUE_ENV.
pub fn environment() -> Option<String> {
    ["RACK_ENV", "RAILS_ENV", "RESQUE_ENV"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.is_empty()))
}

/// Reads the groups of `path` for environment `env`: the top-level entries,
/// with the environment's section merged over them; other sections are
/// ignored. A file that is not YAML, a count that is not a whole number of
/// at most 1,024, a queue list that does not parse, or a value that is
/// neither a count nor a section is an error naming it. Groups with a count
/// of 0 are left out.
///
/// ```
/// let groups = resque_fork::pool_config::parse(
///     "critical: 2\n\"default,low\": 8\nproduction:\n  critical: 4\n",
///     Some("production"),
/// ).unwrap();
/// let counts: Vec<_> = groups.iter().map(|g| (g.queues.as_str(), g.count)).collect();
/// assert_eq!(counts, [("critical", 4), ("default,low", 8)]);
/// ```
pub fn parse(text: &str, env: Option<&str>) -> std::result::Result<Vec<Group>, String> {
    let json = crate::yaml::to_json(text)?;
    let top: serde_json::Map<String, Value> = match serde_json::from_str(&json) {
        Ok(Value::Object(map)) => map,
        Ok(Value::Null) => serde_json::Map::new(),
        _ => return Err("not a map of \"queue list\": count".into()),
    };
    let mut merged: Vec<(String, Value)> = Vec::new();
    let mut put = |k: &str, v: &Value| match merged.iter_mut().find(|(name, _)| name == k) {
        Some(slot) => slot.1 = v.clone(),
        None => merged.push((k.to_string(), v.clone())),
    };
    for (k, v) in &top {
        if !v.is_object() {
            put(k, v);
        }
    }
    if let Some(Value::Object(section)) = env.and_then(|e| top.get(e)) {
        for (k, v) in section {
            put(k, v);
        }
    }
    let mut groups = Vec::new();
    for (queues, value) in merged {
        let count = value
            .as_u64()
            .filter(|&n| n <= 1024)
            .ok_or_else(|| format!("{queues:?}: {value} is not a worker count (0 to 1024)"))?;
        let spec = QueueSpec::parse(&queues).map_err(|e| format!("{queues:?}: {e}"))?;
        if count > 0 {
            groups.push(Group {
                queues,
                spec,
                count: count as usize,
            });
        }
    }
    Ok(groups)
}

/// [`parse`] on a file.
pub fn load(path: &Path, env: Option<&str>) -> Result<Vec<Group>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read POOL {}: {e}", path.display())))?;
    parse(&text, env).map_err(|e| Error::Config(format!("POOL {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn sections_of_other_environments_are_ignored() {
        let text = "a: 1\nstaging:\n  b: 3\nproduction:\n  c: 2\n  a: 0\n";
        let names = |env| -> Vec<(String, usize)> {
            parse(text, env)
                .unwrap()
                .into_iter()
                .map(|g| (g.queues, g.count))
                .collect()
        };
        assert_eq!(names(None), [("a".to_string(), 1)]);
        assert_eq!(names(Some("production")), [("c".to_string(), 2)]);
        assert_eq!(
            names(Some("staging")),
            [("a".to_string(), 1), ("b".to_string(), 3)]
        );
    }

    #[test]
    fn bad_files_are_errors_naming_the_entry() {
        for (text, says) in [
            ("a: -1\n", "\"a\""),
            ("a: two\n", "not a worker count"),
            ("a: [1]\n", "not a worker count"),
            ("\"!x\": 1\n", "\"!x\""),
            ("- a\n", "not a map"),
            ("a: [1\n", ""),
        ] {
            let err = parse(text, None).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }
}
