//! Reading typed values out of a parsed JSON document while collecting problems with their
//! JSON paths. Every reader returns `None` after recording why, so one pass finds everything.

use crate::problem::Collector;
use serde_json::{Map, Value};

/// `parent.key`, or `key` at the top.
pub fn field_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// Parses JSON-with-comments text; a syntax error becomes a problem with line and column,
/// and so does every key repeated within one object (the value is still returned, so the
/// rest of the document is checked too).
pub fn parse_document(c: &mut Collector, text: &str) -> Option<Value> {
    let json = crate::jsonc::strip(text);
    match serde_json::from_str::<Value>(&json) {
        Ok(value) => {
            for d in crate::duplicates::find(&json) {
                c.error(
                    &d.path,
                    format!(
                        "duplicate field `{}` at line {}, column {} (first at line {}, column {}); the file would mean whichever value a reader keeps",
                        d.key, d.line, d.column, d.first_line, d.first_column
                    ),
                    format!("keep one `{}` in this object and delete the other", d.key),
                );
            }
            Some(value)
        }
        Err(e) => {
            let path = format!("line {}, column {}", e.line(), e.column());
            let what = e.to_string();
            // serde_json appends " at line X column Y"; the path already says where.
            let what = what.split(" at line ").next().unwrap_or(&what).to_string();
            c.error(
                &path,
                format!("malformed JSON: {what}"),
                "correct the syntax there (JSON with // comments and trailing commas is accepted)",
            );
            None
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The known name closest to `name`, if it is close enough to be a likely typo.
pub fn nearest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (distance(&name.to_lowercase(), k), *k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 3) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// An object whose fields are checked against `known`; unknown fields are errors.
pub fn object<'v>(
    c: &mut Collector,
    path: &str,
    value: &'v Value,
    known: &[&str],
) -> Option<&'v Map<String, Value>> {
    let Some(map) = value.as_object() else {
        let at = if path.is_empty() {
            "the document"
        } else {
            path
        };
        c.error(
            path,
            format!("expected an object, found {}", type_name(value)),
            format!("write {at} as {{ ... }} with fields {}", known.join(", ")),
        );
        return None;
    };
    for key in map.keys() {
        if known.contains(&key.as_str()) {
            continue;
        }
        let fix = match nearest(key, known) {
            Some(k) => format!("did you mean `{k}`? (known fields: {})", known.join(", ")),
            None => format!("remove it; known fields are: {}", known.join(", ")),
        };
        c.error(
            &field_path(path, key),
            format!("unknown field `{key}`"),
            fix,
        );
    }
    Some(map)
}

/// The field's value, or `None` (recording an error) when a required field is missing.
/// An explicit `null` counts as missing.
pub fn field<'v>(
    c: &mut Collector,
    map: &'v Map<String, Value>,
    path: &str,
    key: &str,
    required: Option<&str>,
) -> Option<&'v Value> {
    match map.get(key) {
        Some(Value::Null) | None => {
            if let Some(fix) = required {
                c.error(
                    &field_path(path, key),
                    format!("missing required field `{key}`"),
                    fix,
                );
            }
            None
        }
        Some(v) => Some(v),
    }
}

/// An optional field: `default` when `key` is absent (or `null`), else what `read` makes of
/// its value, given the field's path (`path.key`). `read` records its own problems.
pub fn optional<T>(
    c: &mut Collector,
    map: &Map<String, Value>,
    path: &str,
    key: &str,
    default: T,
    read: impl FnOnce(&mut Collector, &str, &Value) -> Option<T>,
) -> Option<T> {
    match field(c, map, path, key, None) {
        None => Some(default),
        Some(v) => read(c, &field_path(path, key), v),
    }
}

/// An optional whole-number field in `range`: `default` when `key` is absent (or `null`),
/// else the number (see [`integer`] for the problems recorded).
pub fn optional_integer<T>(
    c: &mut Collector,
    map: &Map<String, Value>,
    path: &str,
    key: &str,
    default: T,
    range: std::ops::RangeInclusive<T>,
    fix: &str,
) -> Option<T>
where
    T: Copy + Into<u64> + TryFrom<u64>,
{
    let (min, max) = ((*range.start()).into(), (*range.end()).into());
    optional(c, map, path, key, default, |c, p, v| {
        // In `range`, so it fits `T`.
        integer(c, p, v, min, max, fix).and_then(|n| T::try_from(n).ok())
    })
}

/// `value` as a string; otherwise an error at `path` with `fix`, and `None`.
pub fn string(c: &mut Collector, path: &str, value: &Value, fix: &str) -> Option<String> {
    match value.as_str() {
        Some(s) => Some(s.to_string()),
        None => {
            c.error(
                path,
                format!("expected a string, found {}", type_name(value)),
                fix,
            );
            None
        }
    }
}

/// `value` as a boolean; otherwise an error at `path`, and `None`.
pub fn boolean(c: &mut Collector, path: &str, value: &Value) -> Option<bool> {
    match value.as_bool() {
        Some(b) => Some(b),
        None => {
            c.error(
                path,
                format!("expected true or false, found {}", type_name(value)),
                "write true or false without quotes",
            );
            None
        }
    }
}

/// An unsigned integer in `min..=max`.
pub fn integer(
    c: &mut Collector,
    path: &str,
    value: &Value,
    min: u64,
    max: u64,
    fix: &str,
) -> Option<u64> {
    match value.as_u64() {
        Some(n) if (min..=max).contains(&n) => Some(n),
        Some(n) => {
            c.error(path, format!("{n} is outside {min}..={max}"), fix);
            None
        }
        None => {
            let found = match value {
                Value::Number(n) => format!("{n}"),
                other => type_name(other).to_string(),
            };
            c.error(
                path,
                format!("expected a whole number in {min}..={max}, found {found}"),
                fix,
            );
            None
        }
    }
}

/// One of a fixed set of strings.
pub fn choice<'k>(
    c: &mut Collector,
    path: &str,
    value: &Value,
    allowed: &[&'k str],
) -> Option<&'k str> {
    let fix = format!("use one of: {}", allowed.join(", "));
    let text = string(c, path, value, &fix)?;
    if let Some(found) = allowed.iter().find(|a| **a == text) {
        return Some(found);
    }
    let fix = match nearest(&text, allowed) {
        Some(k) => format!("did you mean `{k}`? ({fix})"),
        None => fix,
    };
    c.error(path, format!("unknown value `{text}`"), fix);
    None
}

/// `value` as an array; otherwise an error at `path` with `fix`, and `None`.
pub fn array<'v>(
    c: &mut Collector,
    path: &str,
    value: &'v Value,
    fix: &str,
) -> Option<&'v Vec<Value>> {
    match value.as_array() {
        Some(a) => Some(a),
        None => {
            c.error(
                path,
                format!("expected an array, found {}", type_name(value)),
                fix,
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_finds_typos_only() {
        let known = ["send_port", "address_family", "address"];
        assert_eq!(nearest("sendport", &known), Some("send_port"));
        assert_eq!(nearest("adress", &known), Some("address"));
        assert_eq!(nearest("colour", &known), None);
    }
}
