//! The failed list, as the operations commands see and change it. A failure
//! is named by a content id (the first 12 hex digits of the SHA-1 of the
//! record's text, unchanged by a retry) as well as by index: an index names
//! whatever sits at that position now, while an id names the same record
//! however the list shifts. Every change acts on a record by its content,
//! atomically.

use crate::error::{Error, Result};
use crate::payload::{best_effort_status_key, record_id, with_retried_at};
use crate::store::Store;
use crate::timefmt;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// One failure record, summarised.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailureRow {
    /// Position in the `failed` list now (0 = oldest).
    pub index: usize,
    /// The content id: names this record however the list shifts.
    pub id: String,
    pub failed_at: Option<String>,
    /// Seconds since `failed_at`, when it parses.
    pub age: Option<i64>,
    pub queue: Option<String>,
    pub class: Option<String>,
    pub exception: Option<String>,
    pub error: Option<String>,
    pub worker: Option<String>,
    pub retried_at: Option<String>,
    /// The whole record (for `failed show`).
    #[serde(skip)]
    pub record: String,
}

fn failure_row(index: usize, record: String, now: i64) -> FailureRow {
    let v: Value = serde_json::from_str(&record).unwrap_or(Value::Null);
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(String::from);
    let failed_at = text("failed_at");
    FailureRow {
        index,
        id: record_id(&record),
        age: failed_at
            .as_deref()
            .and_then(timefmt::parse_any)
            .map(|t| now - t),
        failed_at,
        queue: text("queue"),
        class: v
            .get("payload")
            .and_then(|p| p.get("class"))
            .and_then(Value::as_str)
            .map(String::from),
        exception: text("exception"),
        error: text("error"),
        worker: text("worker"),
        retried_at: text("retried_at"),
        record,
    }
}

/// Which failure records a command applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureFilter {
    pub queue: Option<String>,
    pub class: Option<String>,
}

impl FailureFilter {
    fn matches(&self, row: &FailureRow) -> bool {
        self.queue
            .as_ref()
            .is_none_or(|q| row.queue.as_ref() == Some(q))
            && self
                .class
                .as_ref()
                .is_none_or(|c| row.class.as_ref() == Some(c))
    }
}

/// Reads the failed list in chunks, oldest first.
pub(super) fn each_failure(store: &mut Store, mut f: impl FnMut(FailureRow) -> bool) -> Result<()> {
    const CHUNK: usize = 500;
    let now = timefmt::now_epoch();
    let mut start = 0usize;
    loop {
        let chunk = store.failed_range(start as isize, (start + CHUNK - 1) as isize)?;
        let n = chunk.len();
        for (i, record) in chunk.into_iter().enumerate() {
            if !f(failure_row(start + i, record, now)) {
                return Ok(());
            }
        }
        if n < CHUNK {
            return Ok(());
        }
        start += CHUNK;
    }
}

/// The most recent `limit` failures matching `filter`, newest first
/// (resque-web's order); `limit` 0 = all.
pub fn failed_list(
    store: &mut Store,
    filter: &FailureFilter,
    limit: usize,
) -> Result<Vec<FailureRow>> {
    let mut rows = Vec::new();
    each_failure(store, |row| {
        if filter.matches(&row) {
            rows.push(row);
        }
        true
    })?;
    rows.reverse();
    if limit > 0 {
        rows.truncate(limit);
    }
    Ok(rows)
}

/// One failure record in full, for `failed show`.
#[derive(Debug, Clone, Serialize)]
pub struct FailureShown {
    /// Its position now.
    pub index: usize,
    /// Its content id.
    pub id: String,
    /// The record as stored (a JSON string of its text if it is not JSON).
    pub record: Box<RawValue>,
}

/// The failure record `r` names, in full.
pub fn failed_show(store: &mut Store, r: &FailureRef) -> Result<FailureShown> {
    let row = failed_find(store, r)?;
    let record = serde_json::from_str(&row.record)
        .or_else(|_| serde_json::value::to_raw_value(&row.record))
        .map_err(|e| Error::Corrupt(format!("failure {}: {e}", row.id)))?;
    Ok(FailureShown {
        index: row.index,
        id: row.id,
        record,
    })
}

/// The failures `failed list` shows, and how many the list holds in all.
#[derive(Debug, Clone)]
pub struct FailureList {
    /// Newest first.
    pub rows: Vec<FailureRow>,
    /// `LLEN failed`.
    pub total: i64,
}

/// The most recent `limit` failures matching `filter` (0 = all), newest
/// first, with the list's length.
pub fn failed_listing(
    store: &mut Store,
    filter: &FailureFilter,
    limit: usize,
) -> Result<FailureList> {
    Ok(FailureList {
        rows: failed_list(store, filter, limit)?,
        total: store.failed_len()?,
    })
}

/// Deletes the failed list; how many records it held.
pub fn failed_clear(store: &mut Store) -> Result<i64> {
    store.clear_failed()
}

/// A failure record named by index (whatever is there now) or content id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureRef {
    /// A position in the list (`#N` says so explicitly).
    Index(usize),
    /// The start of a content id: at least 6 hex digits.
    Id(String),
    /// Digits only, 6 or more: an index, or the start of an id. Whichever
    /// names a record wins; when both do, the reference is refused.
    IndexOrId(usize, String),
}

impl FailureRef {
    /// The index it can be, and the id prefix it can be.
    fn parts(&self) -> (Option<usize>, Option<&str>) {
        match self {
            FailureRef::Index(i) => (Some(*i), None),
            FailureRef::Id(id) => (None, Some(id.as_str())),
            FailureRef::IndexOrId(i, id) => (Some(*i), Some(id.as_str())),
        }
    }
}

/// The shortest id prefix accepted: shorter ones would name many records.
const MIN_ID_PREFIX: usize = 6;

impl std::str::FromStr for FailureRef {
    type Err = String;

    /// `#N` or a short number = an index; 6 to 40 hex digits with a letter,
    /// or 12 digits = an id (prefix); 6 to 11 digits = either.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if let Some(n) = s.strip_prefix('#') {
            return n
                .parse()
                .map(FailureRef::Index)
                .map_err(|_| format!("{s:?} is not an index"));
        }
        let hex =
            (MIN_ID_PREFIX..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
        let digits = s.bytes().all(|b| b.is_ascii_digit());
        if hex && (s.len() >= 12 || !digits) {
            return Ok(FailureRef::Id(s.to_ascii_lowercase()));
        }
        match s.parse() {
            Ok(i) if hex => Ok(FailureRef::IndexOrId(i, s.to_string())),
            Ok(i) => Ok(FailureRef::Index(i)),
            Err(_) => Err(format!("{s:?} is neither an index nor a failure id")),
        }
    }
}

/// Finds a failure record now. An id prefix that several records share, and
/// a number that is both an index and an id prefix, are refused with the
/// candidates named.
pub fn failed_find(store: &mut Store, r: &FailureRef) -> Result<FailureRow> {
    let (index, prefix) = r.parts();
    let mut at_index = None;
    let mut by_id: Vec<FailureRow> = Vec::new();
    each_failure(store, |row| {
        if prefix.is_some_and(|p| row.id.starts_with(p)) {
            by_id.push(row.clone());
        }
        if index == Some(row.index) {
            at_index = Some(row);
        }
        // Past the index, only an id search needs more of the list.
        prefix.is_some() || at_index.is_none()
    })?;
    pick(r, at_index, by_id)
}

/// Which record a reference names, given the record at its index (if it is
/// one) and those whose ids start with it (if it can be an id).
fn pick(
    r: &FailureRef,
    at_index: Option<FailureRow>,
    mut by_id: Vec<FailureRow>,
) -> Result<FailureRow> {
    let (index, prefix) = r.parts();
    let named = |rows: &[FailureRow]| -> String {
        rows.iter()
            .map(|f| {
                format!(
                    "{} (index {}, {})",
                    f.id,
                    f.index,
                    f.class.as_deref().unwrap_or("?")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (at_index, by_id.len()) {
        (Some(row), 0) => Ok(row),
        (None, 1) => Ok(by_id.remove(0)),
        (Some(row), _) => Err(Error::Conflict(format!(
            "{} is both the index of failure {} and the start of failure id(s) {}: write #{} for the index, or more of the id",
            prefix.unwrap_or_default(),
            row.id,
            named(&by_id),
            row.index
        ))),
        (None, 0) => Err(Error::NotFound(match (index, prefix) {
            (Some(i), None) => format!("no failure record at index {i}"),
            _ => format!(
                "no failure record with id {} (removed or retried since it was listed?)",
                prefix.unwrap_or_default()
            ),
        })),
        (None, n) => Err(Error::Conflict(format!(
            "{} failure records have ids starting with {}: {}; give more of the id",
            n,
            prefix.unwrap_or_default(),
            named(&by_id)
        ))),
    }
}

/// Retries one failure: `retried_at` is set on the record (as resque-web
/// does) and the payload goes back to the tail of its queue, `id` and all,
/// so php status tracking follows it. A record retried before is refused
/// unless `again`: its job would run a second time. Returns the row retried.
pub fn failed_retry(store: &mut Store, r: &FailureRef, again: bool) -> Result<FailureRow> {
    let row = failed_find(store, r)?;
    if let (Some(at), false) = (&row.retried_at, again) {
        return Err(Error::Conflict(format!(
            "failure {} was retried already ({at}); retrying it again runs its job again: add --again to do so",
            row.id
        )));
    }
    retry_row(store, &row)?;
    Ok(row)
}

fn retry_row(store: &mut Store, row: &FailureRow) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Parts<'a> {
        #[serde(borrow)]
        payload: Option<&'a RawValue>,
        queue: Option<String>,
    }
    let parts: Parts = serde_json::from_str(&row.record)
        .map_err(|e| Error::Corrupt(format!("failure {} is not a record: {e}", row.id)))?;
    let payload = parts
        .payload
        .map(|p| p.get())
        .filter(|p| p.trim_start().starts_with('{'))
        .ok_or_else(|| {
            Error::Corrupt(format!(
                "failure {} has no job payload to retry (it was not a runnable job)",
                row.id
            ))
        })?;
    let queue = parts
        .queue
        .filter(|q| !q.is_empty())
        .ok_or_else(|| Error::Corrupt(format!("failure {} names no queue", row.id)))?;
    let now = timefmt::now_epoch();
    let retried = with_retried_at(&row.record, &timefmt::failed_at(now))
        .map_err(|e| Error::Corrupt(format!("failure {} is not a JSON object: {e}", row.id)))?;
    let status = best_effort_status_key(store.keys(), payload);
    if !store.retry_failed(
        &row.record,
        &retried,
        &queue,
        payload,
        status.as_deref(),
        now,
    )? {
        return Err(Error::Conflict(format!(
            "failure {} changed or went away before it could be retried",
            row.id
        )));
    }
    Ok(())
}

/// Retries every failure matching `filter` that was not retried yet.
/// Returns how many were retried.
pub fn failed_retry_all(store: &mut Store, filter: &FailureFilter) -> Result<usize> {
    let rows = failed_list(store, filter, 0)?;
    let mut done = 0;
    for row in rows.iter().filter(|r| r.retried_at.is_none()) {
        match retry_row(store, row) {
            Ok(()) => done += 1,
            // One record that cannot be retried does not stop the others.
            Err(Error::Corrupt(why) | Error::Conflict(why)) => log::warn!("{why}"),
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Removes one failure record. Returns the row removed.
pub fn failed_remove(store: &mut Store, r: &FailureRef) -> Result<FailureRow> {
    let row = failed_find(store, r)?;
    if !store.remove_failed(&row.record)? {
        return Err(Error::Conflict(format!(
            "failure {} went away before it could be removed",
            row.id
        )));
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(index: usize, id: &str) -> FailureRow {
        FailureRow {
            index,
            id: id.into(),
            failed_at: None,
            age: None,
            queue: None,
            class: Some("A".into()),
            exception: None,
            error: None,
            worker: None,
            retried_at: None,
            record: String::new(),
        }
    }

    #[test]
    fn a_number_that_is_both_an_index_and_an_id_prefix_is_refused() {
        let both = FailureRef::IndexOrId(3, "000003".into());
        let err = pick(
            &both,
            Some(row(3, "aaaaaaaaaaaa")),
            vec![row(9, "000003bbbbbb")],
        );
        assert!(
            matches!(&err, Err(Error::Conflict(m)) if m.contains("write #3")),
            "{err:?}"
        );
        // Whichever alone names a record wins.
        let index_only = pick(&both, Some(row(3, "aaaaaaaaaaaa")), vec![]).unwrap();
        assert_eq!(index_only.id, "aaaaaaaaaaaa");
        let id_only = pick(&both, None, vec![row(9, "000003bbbbbb")]).unwrap();
        assert_eq!(id_only.index, 9);
        assert!(matches!(pick(&both, None, vec![]), Err(Error::NotFound(_))));
    }

    #[test]
    fn refs() {
        assert_eq!("12".parse(), Ok(FailureRef::Index(12)));
        assert_eq!("#123456".parse(), Ok(FailureRef::Index(123456)));
        assert_eq!(
            "0a1b2c3d4e5f".parse(),
            Ok(FailureRef::Id("0a1b2c3d4e5f".into()))
        );
        assert_eq!(
            "123456789012".parse(),
            Ok(FailureRef::Id("123456789012".into()))
        );
        assert_eq!(
            "123456".parse(),
            Ok(FailureRef::IndexOrId(123456, "123456".into()))
        );
        assert_eq!("abcdef".parse(), Ok(FailureRef::Id("abcdef".into())));
        assert!("zz".parse::<FailureRef>().is_err());
        assert!("#x".parse::<FailureRef>().is_err());
        assert_eq!(record_id("x").len(), 12);
    }
}
