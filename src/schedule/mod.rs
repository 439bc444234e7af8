//! Recurring jobs as resque-scheduler defines them: the entries of a schedule
//! file (`SCHEDULE=schedule.yml`, resque-scheduler's format) and of the
//! dynamic `persistent_schedules` kept in Redis, each with its trigger.
//! [`crate::recurring`] enqueues their ticks.

mod entry;
mod trigger;

pub use entry::{Entry, Origin, Unscheduled};
pub use trigger::Trigger;

use crate::error::{Error, Result};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The entries a pool schedules: its file's, and Redis's dynamic ones (which
/// win over a file entry of the same name, as in resque-scheduler).
#[derive(Debug, Default)]
pub struct Schedule {
    file: Option<PathBuf>,
    env: Option<String>,
    from_file: BTreeMap<String, Entry>,
    /// Each dynamic entry's configuration text, and what it made.
    from_redis: HashMap<String, (String, Option<Entry>)>,
}

impl Schedule {
    /// Loads `file` (if any) for environment `env` (RAILS_ENV). A file that
    /// cannot be read, is not YAML, or has an entry that cannot run is an
    /// error naming the entry.
    pub fn load(file: Option<&Path>, env: Option<&str>) -> Result<Schedule> {
        let mut schedule = Schedule {
            file: file.map(Path::to_path_buf),
            env: env.map(str::to_string),
            ..Schedule::default()
        };
        schedule.reload_file()?;
        Ok(schedule)
    }

    /// Reads the schedule file again (on SIGHUP). On error the entries stay
    /// as they were. Returns how many file entries are scheduled.
    pub fn reload_file(&mut self) -> Result<usize> {
        let Some(path) = &self.file else {
            return Ok(0);
        };
        let json = crate::yaml::read_file(path)?;
        let bad = |why: String| Error::Config(format!("{}: {why}", path.display()));
        let configs: BTreeMap<String, Box<RawValue>> = match json.as_str() {
            "null" => BTreeMap::new(),
            _ => serde_json::from_str(&json)
                .map_err(|_| bad("not a map of schedule entries by name".into()))?,
        };
        let mut entries = BTreeMap::new();
        for (name, config) in &configs {
            match Entry::from_config(name, config.get(), Origin::File, self.env.as_deref()) {
                Ok(e) => {
                    entries.insert(name.clone(), e);
                }
                Err(Unscheduled::Skipped(why)) => log::info!("{why}"),
                Err(Unscheduled::Invalid(why)) => return Err(bad(why)),
            }
        }
        self.from_file = entries;
        Ok(self.from_file.len())
    }

    /// The schedule file, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Takes the current `persistent_schedules` (name, JSON configuration).
    /// Unchanged entries are not parsed again; an entry that cannot run is
    /// logged once, when it appears or changes, and left out.
    pub fn set_dynamic(&mut self, configs: Vec<(String, String)>) {
        let mut next = HashMap::with_capacity(configs.len());
        for (name, text) in configs {
            let parsed = match self.from_redis.remove(&name) {
                Some((old, parsed)) if old == text => parsed,
                _ => match Entry::from_config(&name, &text, Origin::Redis, self.env.as_deref()) {
                    Ok(e) => Some(e),
                    Err(Unscheduled::Skipped(why)) => {
                        log::info!("{why} (persistent_schedules)");
                        None
                    }
                    Err(Unscheduled::Invalid(why)) => {
                        log::warn!("{why} (persistent_schedules): not scheduled");
                        None
                    }
                },
            };
            next.insert(name, (text, parsed));
        }
        self.from_redis = next;
    }

    /// Every scheduled entry, by name.
    pub fn entries(&self) -> Vec<&Entry> {
        let mut out: BTreeMap<&str, &Entry> = self
            .from_file
            .iter()
            .map(|(n, e)| (n.as_str(), e))
            .collect();
        for (name, (_, entry)) in &self.from_redis {
            match entry {
                Some(e) => {
                    out.insert(name, e);
                }
                // A dynamic entry of that name that cannot run still hides
                // the file's, as Ruby's merge would.
                None => {
                    out.remove(name.as_str());
                }
            }
        }
        out.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn a_file_loads_and_dynamic_entries_win() {
        let f = file("Tidy:\n  every: 30s\n  queue: low\nreport:\n  cron: '0 3 * * * UTC'\n  class: Report\n  queue: q\n  args: [1, {a: 2}]\n");
        let mut s = Schedule::load(Some(f.path()), None).unwrap();
        let names: Vec<_> = s.entries().iter().map(|e| e.name.clone()).collect();
        assert_eq!(names, ["Tidy", "report"]);
        s.set_dynamic(vec![(
            "Tidy".into(),
            r#"{"class":"Tidy2","every":"1m","queue":"low"}"#.into(),
        )]);
        let tidy = s.entries()[0].clone();
        assert_eq!((tidy.class.as_str(), tidy.origin), ("Tidy2", Origin::Redis));
        s.set_dynamic(vec![]);
        assert_eq!(s.entries()[0].class, "Tidy");
    }

    #[test]
    fn a_bad_file_is_an_error_and_a_failed_reload_keeps_the_entries() {
        let f = file("a:\n  every: 1m\n  queue: q\n");
        let mut s = Schedule::load(Some(f.path()), None).unwrap();
        std::fs::write(f.path(), "a:\n  every: 1m\n").unwrap();
        let err = s.reload_file().unwrap_err().to_string();
        assert!(err.contains("\"a\"") && err.contains("queue"), "{err}");
        assert_eq!(s.entries().len(), 1);
        std::fs::write(f.path(), "- just\n- a list\n").unwrap();
        assert!(s.reload_file().is_err());
        assert!(Schedule::load(Some(Path::new("/nonexistent.yml")), None).is_err());
    }
}
