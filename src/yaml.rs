//! YAML configuration files (resque-scheduler's schedule file) read as
//! compact JSON text, the form the rest of the crate already handles. The
//! text keeps each mapping's key order, so a schedule entry's `args` become
//! a job's args byte for byte as Ruby's `to_json` would write them
//! (`serde_json::Value` would sort the keys).

use crate::error::{Error, Result};
use std::fmt::Write;
use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

/// Reads the YAML document in `path` as compact JSON text. An empty file is
/// `null`; a file with several documents is an error.
pub fn read_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    to_json(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// Converts one YAML document into compact JSON text, keys in their order.
///
/// ```
/// let json = resque_fork::yaml::to_json("b: [1, {z: x, a: 2.5}]\na: ~").unwrap();
/// assert_eq!(json, r#"{"b":[1,{"z":"x","a":2.5}],"a":null}"#);
/// ```
pub fn to_json(text: &str) -> std::result::Result<String, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    let mut out = String::new();
    match docs.as_slice() {
        [] => out.push_str("null"),
        [doc] => write_json(doc, &mut out)?,
        _ => {
            return Err(format!(
                "{} YAML documents where one was expected",
                docs.len()
            ))
        }
    }
    Ok(out)
}

fn write_json(node: &Yaml, out: &mut String) -> std::result::Result<(), String> {
    let string = |s: &str, out: &mut String| {
        out.push_str(&serde_json::Value::from(s).to_string());
    };
    match node {
        Yaml::Null => out.push_str("null"),
        Yaml::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Yaml::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Yaml::Real(text) => {
            let number = node
                .as_f64()
                .and_then(serde_json::Number::from_f64)
                .ok_or_else(|| format!("{text} has no JSON form"))?;
            let _ = write!(out, "{number}");
        }
        Yaml::String(s) => string(s, out),
        Yaml::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out)?;
            }
            out.push(']');
        }
        Yaml::Hash(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match k {
                    Yaml::String(s) | Yaml::Real(s) => string(s, out),
                    Yaml::Integer(n) => string(&n.to_string(), out),
                    Yaml::Boolean(b) => string(&b.to_string(), out),
                    Yaml::Null => string("", out),
                    _ => return Err("a mapping key is not a scalar".into()),
                }
                out.push(':');
                write_json(v, out)?;
            }
            out.push('}');
        }
        Yaml::Alias(_) => return Err("YAML aliases are not supported".into()),
        Yaml::BadValue => return Err("a value could not be read".into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::to_json;

    #[test]
    fn scalars_sequences_and_mappings_become_json_in_order() {
        let v = to_json("n: 1\nf: 1.5\nt: true\ns: '12'\nl: [a, 2]\nm: {x: null}\nu: \"é\\\"\"\n")
            .unwrap();
        assert_eq!(
            v,
            r#"{"n":1,"f":1.5,"t":true,"s":"12","l":["a",2],"m":{"x":null},"u":"é\""}"#
        );
    }

    #[test]
    fn bad_yaml_and_several_documents_are_errors() {
        assert!(to_json("a: [1, 2").is_err());
        assert!(to_json("a: 1\n---\nb: 2\n").is_err());
        assert_eq!(to_json("").unwrap(), "null");
    }
}
