//! JSON with comments: `//` and `/* */` comments and trailing commas are blanked out with
//! spaces, so that line and column numbers reported by the JSON parser stay those of the file.

/// Returns `text` with comments and trailing commas replaced by spaces (newlines kept).
pub fn strip(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    let mut in_string = false;
    // Position of the last comma outside strings that has only blanks or comments after it.
    let mut pending_comma: Option<usize> = None;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                pending_comma = None;
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    out[i] = b' ';
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let start = i;
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                let end = (i + 2).min(bytes.len());
                for byte in &mut out[start..end] {
                    if *byte != b'\n' {
                        *byte = b' ';
                    }
                }
                i = end;
            }
            b',' => {
                pending_comma = Some(i);
                i += 1;
            }
            b']' | b'}' => {
                if let Some(comma) = pending_comma.take() {
                    out[comma] = b' ';
                }
                i += 1;
            }
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            _ => {
                pending_comma = None;
                i += 1;
            }
        }
    }
    // Only ASCII bytes were replaced by ASCII spaces, and multi-byte UTF-8 sequences are
    // never split (comment bodies are replaced byte by byte, including continuation bytes),
    // so the result is valid UTF-8; fall back to lossy conversion rather than panic.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::strip;

    #[test]
    fn line_comments_become_spaces() {
        let text = "{\"a\": 1, // one\n\"b\": \"//not a comment\"}";
        let v: serde_json::Value = serde_json::from_str(&strip(text)).unwrap();
        assert_eq!(v["b"], "//not a comment");
        assert_eq!(strip(text).len(), text.len());
    }

    #[test]
    fn block_comments_keep_newlines() {
        let text = "{/* a\nb */\"a\": 1}";
        let stripped = strip(text);
        assert_eq!(stripped.lines().count(), 2);
        let v: serde_json::Value = serde_json::from_str(&stripped).unwrap();
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn trailing_commas_are_accepted() {
        let v: serde_json::Value =
            serde_json::from_str(&strip("{\"a\": [1, 2,], \"b\": 3, // c\n}")).unwrap();
        assert_eq!(v["a"][1], 2);
    }

    #[test]
    fn escaped_quotes_do_not_end_strings() {
        let v: serde_json::Value = serde_json::from_str(&strip(r#"{"a": "x\"//y"}"#)).unwrap();
        assert_eq!(v["a"], "x\"//y");
    }

    #[test]
    fn non_ascii_in_comments_is_blanked_safely() {
        let text = "{\"a\": 1 // ünïcødé\n}";
        let v: serde_json::Value = serde_json::from_str(&strip(text)).unwrap();
        assert_eq!(v["a"], 1);
    }
}
