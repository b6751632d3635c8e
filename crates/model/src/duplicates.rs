//! Duplicate object keys. RFC 8259 section 4 says names within an object "SHOULD be unique"
//! and that readers disagree on what a repeated name means; serde_json keeps the last value
//! silently. braid refuses them: `"name": "n1", "name": "n9"` is a mistake to point at, not
//! a value to guess.

use crate::read::{field_path, index_path};
use std::collections::HashMap;

/// A key that appears twice in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// JSON path of the field, as in problems: `[1].name`, `routing.mode`.
    pub path: String,
    /// The key, unescaped.
    pub key: String,
    /// Line and column (1-based, columns in characters) of the second occurrence.
    pub line: usize,
    /// Column of the second occurrence.
    pub column: usize,
    /// Line and column of the first occurrence.
    pub first_line: usize,
    /// Column of the first occurrence.
    pub first_column: usize,
}

/// Every duplicate key in `json`, which must be syntactically valid JSON (comments and
/// trailing commas already blanked by [`crate::jsonc::strip`], which keeps offsets).
/// Nesting is bounded by the JSON parser's own recursion limit, which `json` passed.
pub fn find(json: &str) -> Vec<DuplicateKey> {
    let mut scanner = Scanner {
        text: json,
        bytes: json.as_bytes(),
        pos: 0,
        found: Vec::new(),
    };
    scanner.value("");
    scanner.found
}

struct Scanner<'t> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
    found: Vec<DuplicateKey>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    fn value(&mut self, path: &str) {
        self.blanks();
        match self.peek() {
            Some(b'{') => self.object(path),
            Some(b'[') => self.array(path),
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                // A number, true, false or null.
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n')
                ) {
                    self.pos += 1;
                }
            }
            None => {}
        }
    }

    fn array(&mut self, path: &str) {
        self.pos += 1; // [
        let mut index = 0;
        loop {
            self.blanks();
            match self.peek() {
                None => return,
                Some(b']') => {
                    self.pos += 1;
                    return;
                }
                Some(b',') => self.pos += 1,
                Some(_) => {
                    self.value(&index_path(path, index));
                    index += 1;
                }
            }
        }
    }

    fn object(&mut self, path: &str) {
        self.pos += 1; // {
        let mut seen: HashMap<String, usize> = HashMap::new();
        loop {
            self.blanks();
            match self.peek() {
                None => return,
                Some(b'}') => {
                    self.pos += 1;
                    return;
                }
                Some(b',') => self.pos += 1,
                Some(b'"') => {
                    let start = self.pos;
                    let key = self.string();
                    let child = field_path(path, &key);
                    if let Some(&first) = seen.get(&key) {
                        let (line, column) = position(self.text, start);
                        let (first_line, first_column) = position(self.text, first);
                        self.found.push(DuplicateKey {
                            path: child.clone(),
                            key: key.clone(),
                            line,
                            column,
                            first_line,
                            first_column,
                        });
                    } else {
                        seen.insert(key, start);
                    }
                    self.blanks();
                    if self.peek() == Some(b':') {
                        self.pos += 1;
                    }
                    self.value(&child);
                }
                // Not valid JSON: stop rather than guess.
                Some(_) => return,
            }
        }
    }

    /// Reads a string at `"`, returns it unescaped (or as written if it cannot be).
    fn string(&mut self) -> String {
        let start = self.pos;
        self.pos += 1;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'\\' => self.pos += 1,
                b'"' => break,
                _ => {}
            }
        }
        let end = self.pos.min(self.bytes.len());
        let raw = self.text.get(start..end).unwrap_or("");
        serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.trim_matches('"').to_string())
    }
}

/// 1-based line and column (in characters) of byte offset `at`.
fn position(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_key_is_found_with_its_position_and_path() {
        let text = "[\n  {\n    \"name\": \"n1\",\n    \"name\": \"n9\"\n  }\n]";
        let found = find(text);
        assert_eq!(
            found,
            vec![DuplicateKey {
                path: "[0].name".into(),
                key: "name".into(),
                line: 4,
                column: 5,
                first_line: 3,
                first_column: 5,
            }]
        );
    }

    #[test]
    fn nested_objects_and_escaped_keys_are_checked() {
        let text =
            r#"{"routing": {"mode": "babel", "m\u006fde": "static"}, "a": [{"x": 1}, {"x": 2}]}"#;
        let found = find(text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "routing.mode");
        assert_eq!(found[0].column, 31);
    }

    #[test]
    fn the_same_key_in_sibling_objects_is_no_duplicate() {
        assert!(find(r#"[{"name": "a"}, {"name": "b", "x": {"name": 1}}]"#).is_empty());
        assert!(find(r#"{"a": "{\"a\": 1, \"a\": 2}"}"#).is_empty());
    }

    #[test]
    fn columns_count_characters() {
        let found = find("{\"ü\": 1, \"ü\": 2}");
        assert_eq!((found[0].line, found[0].column), (1, 10));
    }
}
