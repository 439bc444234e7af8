//! Typed jobs: a Rust type whose fields are the job's arguments, decoded with
//! serde from Resque's `args` array and encoded back the same way.
//!
//! Two layouts exist in the wild: Ruby and node put arguments in `args`
//! positionally (`["a@b.c", "welcome"]`), php-resque puts one object in
//! `args[0]` (`[{"to":"a@b.c","template":"welcome"}]`).

use crate::error::{Error, Result};
use crate::handlers::registry::{JobError, JobResult};
use crate::payload::Job;
use serde::de::{DeserializeOwned, Visitor};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// How a typed job's arguments sit in the payload's `args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArgsLayout {
    /// Ruby's and node's: one array element per field, in declaration order.
    #[default]
    Positional,
    /// php-resque's: the whole value as one object in `args[0]`.
    Object,
}

/// A job type: its fields are its arguments.
///
/// ```
/// use resque_fork::{Job, JobResult, TypedJob};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct SendEmail {
///     to: String,
///     template: String,
/// }
///
/// impl TypedJob for SendEmail {
///     const CLASS: &'static str = "SendEmail";
///     fn perform(self, _job: &Job) -> JobResult {
///         println!("mailing {} to {}", self.template, self.to);
///         Ok(())
///     }
/// }
///
/// let args = resque_fork::handlers::typed::encode_args(
///     &SendEmail { to: "a@b.c".into(), template: "welcome".into() },
///     SendEmail::LAYOUT,
/// ).unwrap();
/// assert_eq!(serde_json::Value::Array(args).to_string(), r#"["a@b.c","welcome"]"#);
/// ```
pub trait TypedJob: Serialize + DeserializeOwned {
    /// The Resque class name the job is enqueued under.
    const CLASS: &'static str;
    /// How the arguments are laid out in `args`.
    const LAYOUT: ArgsLayout = ArgsLayout::Positional;
    /// Runs the job, in the job process.
    fn perform(self, job: &Job) -> JobResult;
}

/// The field names of a struct type, asked of its `Deserialize` impl by a
/// deserializer that only listens; `None` for anything but a struct.
fn struct_fields<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    use serde::de::value::Error as DeError;
    use serde::de::Error as _;
    struct Probe<'a>(&'a mut Option<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = DeError;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> std::result::Result<V::Value, DeError> {
            Err(DeError::custom("probe"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> std::result::Result<V::Value, DeError> {
            *self.0 = Some(fields);
            Err(DeError::custom("probe"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields = None;
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

fn argument_error(message: String) -> JobError {
    JobError::new("ArgumentError", message)
}

/// Decodes a job's `args` into `T`. The error names the argument, the field
/// and what was expected, e.g. ``args[1] (field `template`): invalid type:
/// integer `5`, expected a string``.
///
/// ```
/// use resque_fork::handlers::typed::{decode_args, ArgsLayout};
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct Resize { width: u32, height: u32 }
/// let ok: Resize = decode_args(&[640.into(), 480.into()], ArgsLayout::Positional).unwrap();
/// assert_eq!(ok, Resize { width: 640, height: 480 });
/// let bad = decode_args::<Resize>(&[640.into(), "tall".into()], ArgsLayout::Positional);
/// assert_eq!(
///     bad.unwrap_err().message(),
///     "args[1] (field `height`): invalid type: string \"tall\", expected u32"
/// );
/// ```
pub fn decode_args<T: DeserializeOwned>(
    args: &[Value],
    layout: ArgsLayout,
) -> std::result::Result<T, JobError> {
    let raws: Vec<Box<RawValue>> = args
        .iter()
        .map(serde_json::value::to_raw_value)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| argument_error(e.to_string()))?;
    decode_raw_args(&raws, layout)
}

/// Decodes a job's `args`, each element as written in the payload, into
/// `T`: numbers reach `T` as written (a `u128` or a `Box<RawValue>` field
/// gets `12345678901234567890123` whole, where [`decode_args`] would see a
/// rounded `f64`). Errors as [`decode_args`].
///
/// ```
/// use resque_fork::handlers::typed::{decode_raw_args, ArgsLayout};
/// use serde_json::value::RawValue;
/// #[derive(serde::Deserialize)]
/// struct Transfer { cents: u128, note: Box<RawValue> }
/// let job = resque_fork::Job::parse(
///     r#"{"class":"Transfer","args":[12345678901234567890123, 1.50]}"#, "q").unwrap();
/// let t: Transfer = decode_raw_args(job.arg_raws(), ArgsLayout::Positional).unwrap();
/// assert_eq!(t.cents, 12345678901234567890123);
/// assert_eq!(t.note.get(), "1.50");
/// ```
pub fn decode_raw_args<T: DeserializeOwned>(
    args: &[Box<RawValue>],
    layout: ArgsLayout,
) -> std::result::Result<T, JobError> {
    let fields = struct_fields::<T>();
    // The JSON text serde decodes, and how to name a failing path in it.
    type Place = Box<dyn Fn(&str) -> String>;
    let (text, place): (String, Place) = match (layout, fields) {
        (ArgsLayout::Object, _) => {
            let first = args.first().map(|a| a.get()).unwrap_or("null");
            (
                first.to_string(),
                Box::new(|path: &str| format!("args[0].{path}")),
            )
        }
        (ArgsLayout::Positional, Some(fields)) => {
            if args.len() > fields.len() {
                return Err(argument_error(format!(
                    "{} arguments given, {} expected ({})",
                    args.len(),
                    fields.len(),
                    fields.join(", ")
                )));
            }
            let members: Vec<String> = fields
                .iter()
                .zip(args)
                .map(|(f, v)| format!("{}:{}", Value::from(*f), v.get()))
                .collect();
            let index = move |path: &str| {
                let name = path.split(['.', '[']).next().unwrap_or(path);
                match fields.iter().position(|f| *f == name) {
                    Some(i) => format!("args[{i}] (field `{path}`)"),
                    None => format!("field `{path}`"),
                }
            };
            (format!("{{{}}}", members.join(",")), Box::new(index))
        }
        (ArgsLayout::Positional, None) => {
            let items: Vec<&str> = args.iter().map(|a| a.get()).collect();
            (
                format!("[{}]", items.join(",")),
                Box::new(|path: &str| format!("args{path}")),
            )
        }
    };
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // The position is in text we assembled, not in the payload.
        let located = format!(" at line {} column {}", inner.line(), inner.column());
        let inner = inner.to_string();
        let inner = inner.strip_suffix(&located).unwrap_or(&inner).to_string();
        if path == "." || path.is_empty() {
            argument_error(inner)
        } else {
            argument_error(format!("{}: {inner}", place(&path)))
        }
    })
}

/// Encodes `value` as Resque `args`, in `layout`.
pub fn encode_args<T: Serialize + DeserializeOwned>(
    value: &T,
    layout: ArgsLayout,
) -> Result<Vec<Value>> {
    let encoded = serde_json::to_value(value)
        .map_err(|e| Error::Config(format!("job arguments do not encode as JSON: {e}")))?;
    Ok(match (layout, encoded) {
        (ArgsLayout::Object, v) => vec![v],
        (ArgsLayout::Positional, Value::Object(mut map)) => match struct_fields::<T>() {
            Some(fields) => fields
                .iter()
                .map(|f| map.remove(*f).unwrap_or(Value::Null))
                .collect(),
            None => map.into_iter().map(|(_, v)| v).collect(),
        },
        (ArgsLayout::Positional, Value::Array(items)) => items,
        (ArgsLayout::Positional, other) => vec![other],
    })
}

/// Decodes and runs a typed job.
pub(crate) fn run<T: TypedJob>(job: &Job) -> JobResult {
    decode_raw_args::<T>(job.arg_raws(), T::LAYOUT)?.perform(job)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Mail {
        to: String,
        template: String,
        #[serde(default)]
        cc: Option<String>,
    }

    #[test]
    fn positional_round_trip_and_optional_tail() {
        let m = Mail {
            to: "a".into(),
            template: "t".into(),
            cc: None,
        };
        let args = encode_args(&m, ArgsLayout::Positional).unwrap();
        assert_eq!(Value::Array(args.clone()), json!(["a", "t", null]));
        assert_eq!(
            decode_args::<Mail>(&args, ArgsLayout::Positional).unwrap(),
            m
        );
        assert_eq!(
            decode_args::<Mail>(&[json!("a"), json!("t")], ArgsLayout::Positional).unwrap(),
            m
        );
    }

    #[test]
    fn php_object_layout() {
        let args = vec![json!({"to": "a", "template": "t"})];
        let m: Mail = decode_args(&args, ArgsLayout::Object).unwrap();
        assert_eq!(m.to, "a");
        let e = decode_args::<Mail>(&[json!({"to": 1})], ArgsLayout::Object).unwrap_err();
        assert_eq!(
            e.message(),
            "args[0].to: invalid type: integer `1`, expected a string"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = decode_args::<Mail>(&[json!("a")], ArgsLayout::Positional).unwrap_err();
        assert_eq!(e.exception(), "ArgumentError");
        assert_eq!(e.message(), "missing field `template`");
        let e = decode_args::<Mail>(
            &[json!(1), json!(2), json!(3), json!(4)],
            ArgsLayout::Positional,
        )
        .unwrap_err();
        assert_eq!(
            e.message(),
            "4 arguments given, 3 expected (to, template, cc)"
        );
    }

    #[test]
    fn tuples_are_positional_too() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Pair(u8, String);
        let args = encode_args(&Pair(1, "x".into()), ArgsLayout::Positional).unwrap();
        assert_eq!(Value::Array(args.clone()), json!([1, "x"]));
        assert_eq!(
            decode_args::<Pair>(&args, ArgsLayout::Positional).unwrap(),
            Pair(1, "x".into())
        );
        let e =
            decode_args::<Pair>(&[json!("no"), json!("x")], ArgsLayout::Positional).unwrap_err();
        assert!(
            e.message().starts_with("args[0]: invalid type"),
            "{}",
            e.message()
        );
    }
}
