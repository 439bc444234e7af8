//! The records resque-fork writes and reads beside the payload: the failure
//! record, the in-flight record in `worker:ID`, php's status record, and
//! the text surgery done on them (a field spliced in or out) so that a
//! payload inside is never decoded and encoded again.

use super::Failure;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;

/// A failure record for the `failed` list, fields in Ruby's order.
///
/// `payload` is the popped text embedded verbatim, or `null` when the text is
/// not a JSON object (then `raw` keeps it, so nothing is lost).
#[doc(hidden)]
#[derive(Debug, Serialize)]
pub struct FailureRecord<'a> {
    pub failed_at: String,
    pub payload: &'a RawValue,
    pub exception: &'a str,
    pub error: &'a str,
    pub backtrace: &'a [String],
    pub worker: &'a str,
    pub queue: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
}

/// The JSON text of `null`, for records whose payload is not an object.
fn null_raw() -> &'static RawValue {
    // A literal known to be valid JSON.
    serde_json::from_str::<&RawValue>("null").unwrap_or_else(|_| unreachable!())
}

/// Builds the failure record text for a payload popped from `queue`:
/// `payload` is the popped text embedded verbatim, or `null` when it is not a
/// JSON object; then `raw` keeps the text, or, when the bytes are not UTF-8,
/// `raw_base64` keeps them (standard alphabet, padded), so nothing is lost or
/// altered.
///
/// ```
/// use resque_fork::payload::{failure_record, Failure};
/// let rec = failure_record(br#"{"class":"Mailer","args":[]}"#, "mail",
///     &Failure::new("RuntimeError", "boom"), "web1:4242:mail", 1705314600);
/// assert_eq!(rec, r#"{"failed_at":"2024/01/15 10:30:00 UTC","payload":{"class":"Mailer","args":[]},"exception":"RuntimeError","error":"boom","backtrace":[],"worker":"web1:4242:mail","queue":"mail"}"#);
/// ```
pub fn failure_record(
    raw_payload: &[u8],
    queue: &str,
    failure: &Failure,
    worker: &str,
    now: i64,
) -> String {
    let text = std::str::from_utf8(raw_payload).ok();
    let object = text
        .map(str::trim)
        .filter(|t| t.starts_with('{'))
        .and_then(|t| serde_json::from_str::<&RawValue>(t).ok());
    let record = FailureRecord {
        failed_at: crate::timefmt::failed_at(now),
        payload: match object {
            Some(o) => o,
            None => null_raw(),
        },
        exception: &failure.exception,
        error: &failure.error,
        backtrace: &failure.backtrace,
        worker,
        queue,
        raw: text.filter(|_| object.is_none()),
        raw_base64: text.is_none().then(|| base64(raw_payload)),
    };
    // Serializing borrowed strings and valid raw JSON cannot fail.
    serde_json::to_string(&record).unwrap_or_default()
}

/// Standard base64 (RFC 4648 alphabet, padded): how bytes that are not UTF-8
/// are kept in a JSON record. The reserve script writes the same encoding.
///
/// ```
/// use resque_fork::payload::base64;
/// assert_eq!(base64(b"foob"), "Zm9vYg==");
/// assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
/// ```
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63])
            } else {
                '='
            });
        }
    }
    out
}

/// The in-flight record in `worker:ID`, as read back (by pruning, or by the
/// operations commands). Written by the reserve script, never by serde.
#[doc(hidden)]
#[derive(Debug, Deserialize)]
pub struct WorkerRecord {
    pub queue: String,
    #[serde(default)]
    pub run_at: Option<String>,
    pub payload: Box<RawValue>,
    /// The job's process group, once its process has started (ours).
    #[serde(default)]
    pub pgid: Option<i32>,
}

impl WorkerRecord {
    /// Parses a `worker:ID` value, as the bytes another program may have
    /// written; `None` when it is not a record.
    pub fn parse(bytes: &[u8]) -> Option<WorkerRecord> {
        serde_json::from_slice(bytes).ok()
    }

    /// The job class named in the payload, if any.
    pub fn class(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct ClassOnly {
            class: Option<String>,
        }
        serde_json::from_str::<ClassOnly>(self.payload.get())
            .ok()
            .and_then(|c| c.class)
    }
}

/// The in-flight record with the job's process group added (`"pgid":N`),
/// spliced in front of the token that ends every record the reserve script
/// writes, so the record still ends with it. `None` for a record without
/// a token (not ours).
///
/// ```
/// use resque_fork::payload::with_pgid;
/// let rec = br#"{"queue":"q","payload":{},"worker":"h:1","token":"ab"}"#;
/// assert_eq!(
///     with_pgid(rec, 4243).unwrap(),
///     br#"{"queue":"q","payload":{},"worker":"h:1","pgid":4243,"token":"ab"}"#.to_vec()
/// );
/// ```
pub fn with_pgid(record: &[u8], pgid: i32) -> Option<Vec<u8>> {
    const TOKEN: &[u8] = b",\"token\":\"";
    let at = record.windows(TOKEN.len()).rposition(|w| w == TOKEN)?;
    let mut out = Vec::with_capacity(record.len() + 20);
    out.extend_from_slice(&record[..at]);
    out.extend_from_slice(format!(",\"pgid\":{pgid}").as_bytes());
    out.extend_from_slice(&record[at..]);
    Some(out)
}

/// The php status key of a payload that is an object with an `id`, even when
/// it is otherwise unrunnable.
pub fn best_effort_status_key(keys: &crate::keys::Keys, payload: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let id = value.get("id")?.as_str().filter(|s| !s.is_empty())?;
    let prefix = value.get("prefix").and_then(|p| p.as_str());
    Some(keys.job_status(prefix, id))
}

/// The php pid key of a payload that is an object with an `id`.
pub fn best_effort_pid_key(keys: &crate::keys::Keys, payload: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let id = value.get("id")?.as_str().filter(|s| !s.is_empty())?;
    Some(keys.job_pid(id))
}

/// The field that marks a payload requeued once after its worker died.
pub const REQUEUED_MARK: &str = "requeued_orphan";

/// The payload with [`REQUEUED_MARK`] (set to `now`) added in front of its
/// fields, by splicing text: nothing else in the payload is re-encoded.
/// `None` when the payload is not an object or is already marked.
///
/// ```
/// use resque_fork::payload::mark_requeued;
/// let once = mark_requeued(r#"{"class":"A","args":[1.50]}"#, 7).unwrap();
/// assert_eq!(once, r#"{"requeued_orphan":7,"class":"A","args":[1.50]}"#);
/// assert_eq!(mark_requeued(&once, 8), None);
/// assert_eq!(mark_requeued("{}", 7).as_deref(), Some(r#"{"requeued_orphan":7}"#));
/// assert_eq!(mark_requeued("[1]", 7), None);
/// ```
pub fn mark_requeued(payload: &str, now: i64) -> Option<String> {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(payload) else {
        return None;
    };
    if fields.contains_key(REQUEUED_MARK) {
        return None;
    }
    let body = payload.trim().strip_prefix('{')?;
    Some(if fields.is_empty() {
        format!("{{\"{REQUEUED_MARK}\":{now}}}")
    } else {
        format!("{{\"{REQUEUED_MARK}\":{now},{}", body.trim_start())
    })
}

/// php-resque's job states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Enqueued, not yet taken (1).
    Waiting = 1,
    /// Taken by a worker (2).
    Running = 2,
    /// Ended in a failure (3).
    Failed = 3,
    /// Ended well (4).
    Complete = 4,
}

impl Serialize for JobState {
    /// As its name: `waiting`, `running`, `failed`, `complete`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl JobState {
    /// From the numeric `status` field.
    pub fn from_code(code: i64) -> Option<JobState> {
        match code {
            1 => Some(JobState::Waiting),
            2 => Some(JobState::Running),
            3 => Some(JobState::Failed),
            4 => Some(JobState::Complete),
            _ => None,
        }
    }

    /// The lowercase name: `waiting`, `running`, `failed`, `complete`.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Running => "running",
            JobState::Failed => "failed",
            JobState::Complete => "complete",
        }
    }
}

/// php-resque's status record `{"status":N,"updated":T,"started":T,"result":null}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// The [`JobState`] code.
    pub status: i64,
    /// When the state last changed, epoch seconds.
    pub updated: Option<i64>,
    /// When the job was enqueued (php keeps it through every update).
    #[serde(default)]
    pub started: Option<i64>,
    /// What the job returned (php); always `null` from resque-fork.
    #[serde(default)]
    pub result: Value,
}

impl StatusRecord {
    /// The record php-resque writes when a tracked job is enqueued.
    pub fn waiting(now: i64) -> StatusRecord {
        StatusRecord {
            status: JobState::Waiting as i64,
            updated: Some(now),
            started: Some(now),
            result: Value::Null,
        }
    }
}

/// The content id of a failure record: the same before and after a retry,
/// which only adds `retried_at`.
pub fn record_id(record: &str) -> String {
    let base = without_retried_at(record);
    sha1_smol::Sha1::from(base.as_ref()).digest().to_string()[..12].to_string()
}

/// The record without a trailing `"retried_at":"…"` field (where resque-web
/// and resque-fork both put it).
fn without_retried_at(record: &str) -> std::borrow::Cow<'_, str> {
    const FIELD: &str = ",\"retried_at\":\"";
    if let Some(i) = record.rfind(FIELD) {
        let rest = &record[i + FIELD.len()..];
        if let Some(end) = rest.find('"') {
            if rest[end + 1..].trim() == "}" {
                return format!("{}}}", &record[..i]).into();
            }
        }
    }
    record.into()
}

/// The record with `retried_at` set: spliced into the text when new, so the
/// payload is never re-encoded.
pub fn with_retried_at(record: &str, at: &str) -> Result<String, serde_json::Error> {
    let record = without_retried_at(record);
    let record = record.as_ref();
    let fields: BTreeMap<String, Box<RawValue>> = serde_json::from_str(record)?;
    let stamp = Value::from(at).to_string();
    if !fields.contains_key("retried_at") {
        let body = record.trim().strip_suffix('}').unwrap_or("{").trim_end();
        let sep = if fields.is_empty() { "" } else { "," };
        return Ok(format!("{body}{sep}\"retried_at\":{stamp}}}"));
    }
    let mut fields = fields;
    fields.insert("retried_at".into(), RawValue::from_string(stamp)?);
    serde_json::to_string(&fields)
}

/// A delayed item exactly as Ruby's resque-scheduler writes it: compact JSON
/// with `class`, `args` (its text as given) and `queue`, in that order.
///
/// ```
/// use resque_fork::payload::delayed_item;
/// assert_eq!(
///     delayed_item("q", "Foo", r#"[1,{"a":2}]"#),
///     r#"{"class":"Foo","args":[1,{"a":2}],"queue":"q"}"#
/// );
/// ```
pub fn delayed_item(queue: &str, class: &str, args_json: &str) -> String {
    format!(
        "{{\"class\":{},\"args\":{args_json},\"queue\":{}}}",
        Value::from(class),
        Value::from(queue)
    )
}

/// The delayed item that retries a failed job (contract 13): its payload
/// as it was, plus `retry_count` (retries made, this one included), the
/// last `error`, and the `queue` promoters move it to (last, so a promoter
/// cuts it out again). A `retry_count`/`error` tail that an earlier retry
/// appended is replaced, not repeated.
///
/// ```
/// use resque_fork::payload::retry_item;
/// let first = retry_item(r#"{"class":"A","args":[1.50],"id":"x"}"#, "q", 1, "E: boom");
/// assert_eq!(first, r#"{"class":"A","args":[1.50],"id":"x","retry_count":1,"error":"E: boom","queue":"q"}"#);
/// let promoted = r#"{"class":"A","args":[1.50],"id":"x","retry_count":1,"error":"E: boom"}"#;
/// assert_eq!(retry_item(promoted, "q", 2, "E: again"),
///            r#"{"class":"A","args":[1.50],"id":"x","retry_count":2,"error":"E: again","queue":"q"}"#);
/// ```
pub fn retry_item(payload: &str, queue: &str, retry_count: u32, error: &str) -> String {
    let body = payload.trim_end();
    let body = body.strip_suffix('}').unwrap_or(body);
    let body = match body.rfind(",\"retry_count\":") {
        Some(at) if is_retry_tail(&body[at + 1..]) => &body[..at],
        _ => body,
    };
    let sep = if body.trim_end().ends_with('{') {
        ""
    } else {
        ","
    };
    let mut error = error.to_string();
    if error.len() > 1000 {
        let mut cut = 1000;
        while !error.is_char_boundary(cut) {
            cut -= 1;
        }
        error.truncate(cut);
    }
    format!(
        "{body}{sep}\"retry_count\":{retry_count},\"error\":{},\"queue\":{}}}",
        Value::from(error),
        Value::from(queue)
    )
}

/// Whether `fields` is exactly the `"retry_count":N,"error":"…"` a retry
/// appends.
fn is_retry_tail(fields: &str) -> bool {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Tail {
        retry_count: u64,
        error: String,
    }
    serde_json::from_str::<Tail>(&format!("{{{fields}}}")).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_record_golden() {
        // Written out by hand from the example record of contract 6.
        let rec = failure_record(
            br#"{"class":"Mailer","args":[7,"welcome"]}"#,
            "mail",
            &Failure {
                exception: "RuntimeError".into(),
                error: "boom".into(),
                backtrace: vec!["/app/jobs/mailer.rb:5:in `perform'".into()],
                retry: Default::default(),
            },
            "web1:4242:high,mail",
            1_705_314_600,
        );
        assert_eq!(
            rec,
            r#"{"failed_at":"2024/01/15 10:30:00 UTC","payload":{"class":"Mailer","args":[7,"welcome"]},"exception":"RuntimeError","error":"boom","backtrace":["/app/jobs/mailer.rb:5:in `perform'"],"worker":"web1:4242:high,mail","queue":"mail"}"#
        );
    }

    #[test]
    fn failure_record_keeps_payload_bytes() {
        let raw = r#"{"class":"A","args":[1.50, "\u00e9/x"],"zzz":{}}"#;
        let rec = failure_record(raw.as_bytes(), "q", &Failure::new("E", "m"), "w", 0);
        assert!(rec.contains(raw), "{rec}");
    }

    #[test]
    fn failure_record_of_non_object_keeps_raw() {
        let rec = failure_record(b"not json", "q", &Failure::new("E", "m"), "w", 0);
        let v: Value = serde_json::from_str(&rec).unwrap();
        assert_eq!(v["payload"], Value::Null);
        assert_eq!(v["raw"], "not json");
        assert!(v["backtrace"].is_array());
    }

    #[test]
    fn failure_record_of_bytes_that_are_not_utf8_keeps_them_in_base64() {
        let raw = b"{\"class\":\"A\",\"args\":[\"\xff\"]}";
        let rec = failure_record(raw, "q", &Failure::new("E", "m"), "w", 0);
        let v: Value = serde_json::from_str(&rec).unwrap();
        assert_eq!(v["payload"], Value::Null);
        assert_eq!(v.get("raw"), None);
        assert_eq!(v["raw_base64"], base64(raw));
        assert_eq!(v["raw_base64"], "eyJjbGFzcyI6IkEiLCJhcmdzIjpbIv8iXX0=");
    }

    #[test]
    fn base64_vectors() {
        // RFC 4648, section 10.
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }

    #[test]
    fn worker_record_reads_class() {
        let rec = WorkerRecord::parse(
            br#"{"queue":"mail","run_at":"2024-01-15T10:30:00Z","payload":{"class":"Mailer","args":[]},"worker":"w"}"#,
        )
        .unwrap();
        assert_eq!(rec.queue, "mail");
        assert_eq!(rec.class().as_deref(), Some("Mailer"));
    }

    #[test]
    fn retried_at_is_spliced_without_touching_the_payload() {
        let rec = r#"{"failed_at":"x","payload":{"class":"A","args":[1.50]},"queue":"q"}"#;
        let out = with_retried_at(rec, "2024/01/15 10:30:00 UTC").unwrap();
        assert_eq!(
            out,
            r#"{"failed_at":"x","payload":{"class":"A","args":[1.50]},"queue":"q","retried_at":"2024/01/15 10:30:00 UTC"}"#
        );
        let again = with_retried_at(&out, "2024/01/16 10:30:00 UTC").unwrap();
        assert_eq!(again, out.replace("2024/01/15", "2024/01/16"));
        assert_eq!(record_id(rec), record_id(&out));
        assert_eq!(record_id(rec), record_id(&again));
    }
}
