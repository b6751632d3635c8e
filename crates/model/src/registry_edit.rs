//! Editing a registry file's text in place (`braid registry add-node`, `remove-node`): the
//! rest of the file, comments and layout included, is kept byte for byte; the result is
//! validated as a whole before anyone writes it. Pure: text in, text out.

use crate::problem::Problems;
use crate::registry::Registry;
use serde_json::Value;

/// Why an edit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The registry file is not a JSON array.
    #[error("the registry is not a JSON array of nodes")]
    NotAnArray,
    /// The entry to add is not a JSON object; what it is.
    #[error("the new entry is not a JSON object: {0}")]
    EntryNotAnObject(String),
    /// No node matches the selector (named in the message).
    #[error("no node has {0}")]
    NotFound(String),
    /// More than one node matches the selector.
    #[error("{count} nodes have {what}; name the node by its public key")]
    Ambiguous {
        /// The selector, e.g. name `alpha`.
        what: String,
        /// How many nodes match it.
        count: usize,
    },
    /// The edited registry does not validate (or the registry did not before the edit).
    #[error("{0}")]
    Invalid(Problems),
}

/// Which node to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The base64 public key.
    Key(String),
    /// The node's `name`.
    Name(String),
}

/// One element of the top-level array: its bytes, and the comma after it if any.
#[derive(Debug, Clone, Copy)]
struct Element {
    start: usize,
    end: usize,
    comma: Option<usize>,
}

/// The top-level array: `[` at `open`, `]` at `close`, its elements.
#[derive(Debug)]
struct Layout {
    close: usize,
    elements: Vec<Element>,
}

/// `text` with comments blanked (byte for byte; newlines kept), commas kept.
fn code(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let (mut i, mut in_string) = (0, false);
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
        match (b, bytes.get(i + 1)) {
            (b'"', _) => {
                in_string = true;
                i += 1;
            }
            (b'/', Some(b'/')) => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    out[i] = b' ';
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
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
            _ => i += 1,
        }
    }
    out
}

fn skip_blank(code: &[u8], mut i: usize) -> usize {
    while i < code.len() && code[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The end (exclusive) of the JSON value starting at `i`.
fn value_end(code: &[u8], mut i: usize) -> Option<usize> {
    let (mut depth, mut in_string) = (0usize, false);
    let start = i;
    while i < code.len() {
        let b = code[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => {
                    in_string = false;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth == 0 => return (i > start).then_some(i),
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                b',' if depth == 0 => return (i > start).then_some(i),
                c if depth == 0 && c.is_ascii_whitespace() => return Some(i),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

fn layout(code: &[u8]) -> Option<Layout> {
    let open = skip_blank(code, 0);
    if code.get(open) != Some(&b'[') {
        return None;
    }
    let mut elements = Vec::new();
    let mut i = open + 1;
    loop {
        i = skip_blank(code, i);
        match code.get(i)? {
            b']' => return Some(Layout { close: i, elements }),
            _ => {
                let end = value_end(code, i)?;
                let after = skip_blank(code, end);
                let comma = (code.get(after) == Some(&b',')).then_some(after);
                elements.push(Element {
                    start: i,
                    end,
                    comma,
                });
                i = comma.map_or(after, |c| c + 1);
            }
        }
    }
}

/// The start of the line holding `at`.
fn line_start(text: &[u8], at: usize) -> usize {
    text[..at]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1)
}

/// True when only blanks are on `at`'s line before it.
fn blank_before(code: &[u8], at: usize) -> bool {
    code[line_start(code, at)..at]
        .iter()
        .all(|b| *b == b' ' || *b == b'\t')
}

/// The position after the newline ending `at`'s line, when only blanks (or comments) follow
/// `at` on it.
fn blank_after(code: &[u8], at: usize) -> Option<usize> {
    let mut i = at;
    while i < code.len() && code[i] != b'\n' {
        if !code[i].is_ascii_whitespace() {
            return None;
        }
        i += 1;
    }
    Some((i + 1).min(code.len()))
}

fn validate(file: &str, text: &str) -> Result<Registry, EditError> {
    Registry::parse(file, text)
        .map(|(registry, _)| registry)
        .map_err(EditError::Invalid)
}

/// `text` (the registry file `file`) with `entry` appended as its last node. Refused when
/// the result does not validate: a public key, send port or index already used, a bad
/// field, or a registry that was invalid already.
pub fn add_node(file: &str, text: &str, entry: &Value) -> Result<String, EditError> {
    if !entry.is_object() {
        return Err(EditError::EntryNotAnObject(entry.to_string()));
    }
    let code = code(text);
    let layout = layout(&code).ok_or(EditError::NotAnArray)?;
    let indent = layout
        .elements
        .first()
        .map_or(2, |e| e.start - line_start(&code, e.start));
    let pad = " ".repeat(indent);
    let pretty = serde_json::to_string_pretty(entry)
        .map_err(|e| EditError::EntryNotAnObject(e.to_string()))?
        .replace('\n', &format!("\n{pad}"));
    let mut out = text.to_string();
    // Before the closing bracket: on its own line when it has one.
    if blank_before(&code, layout.close) {
        let at = line_start(&code, layout.close);
        out.insert_str(at, &format!("{pad}{pretty}\n"));
    } else {
        out.insert_str(layout.close, &format!("\n{pad}{pretty}\n"));
    }
    if let Some(last) = layout.elements.last()
        && last.comma.is_none()
    {
        out.insert(last.end, ',');
    }
    validate(file, &out)?;
    Ok(out)
}

/// `text` without the node `which` selects; returns the new text and the removed node's
/// label. Comments on the removed node's lines go with it; others stay.
pub fn remove_node(
    file: &str,
    text: &str,
    which: &Selector,
) -> Result<(String, String), EditError> {
    let registry = validate(file, text)?;
    let matches: Vec<usize> = registry
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| match which {
            Selector::Key(key) => n.public_key.to_base64() == *key,
            Selector::Name(name) => n.name.as_deref() == Some(name.as_str()),
        })
        .map(|(i, _)| i)
        .collect();
    let what = match which {
        Selector::Key(key) => format!("public key {key}"),
        Selector::Name(name) => format!("name `{name}`"),
    };
    let i = match matches.as_slice() {
        [] => return Err(EditError::NotFound(what)),
        [i] => *i,
        many => {
            return Err(EditError::Ambiguous {
                what,
                count: many.len(),
            });
        }
    };
    let code = code(text);
    let layout = layout(&code).ok_or(EditError::NotAnArray)?;
    let element = layout.elements[i];
    // What goes: the element and its comma, or for the last one the comma before it.
    let (mut from, mut to) = (element.start, element.comma.map_or(element.end, |c| c + 1));
    let mut cuts = Vec::new();
    if element.comma.is_none()
        && let Some(previous) = i.checked_sub(1).map(|p| layout.elements[p])
        && let Some(comma) = previous.comma
    {
        cuts.push((comma, comma + 1));
    }
    if blank_before(&code, from)
        && let Some(line_end) = blank_after(&code, to)
    {
        from = line_start(&code, from);
        to = line_end;
    }
    cuts.push((from, to));
    let mut out = text.to_string();
    for (from, to) in cuts.into_iter().rev() {
        out.replace_range(from..to, "");
    }
    validate(file, &out)?;
    Ok((out, registry.nodes[i].label()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "sZp4uL3rvCumiTHMdvGWUqnqO2dOYv9UqkPQxjgqqRc=";
    const B: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
    const C: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    fn registry() -> String {
        format!(
            r#"// the mesh's nodes
[
  // alpha: Berlin
  {{"public_key": "{A}", "name": "a", "index": 1,
    "endpoints": [{{"send_port": 40001, "address_family": "ip4", "address": "192.0.2.1"}}]}},
  {{"public_key": "{B}", "name": "b", "endpoints": [{{"send_port": 40002, "address_family": "ip4"}}]}} // bravo
]
"#
        )
    }

    fn entry(key: &str, port: u16) -> Value {
        json!({"public_key": key, "name": "c", "endpoints": [{"send_port": port, "address_family": "ip4", "address": "192.0.2.3"}]})
    }

    #[test]
    fn a_node_is_appended_keeping_comments() {
        let out = add_node("r.json", &registry(), &entry(C, 40003)).unwrap();
        assert!(
            out.starts_with("// the mesh's nodes\n[\n  // alpha: Berlin\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "\"address_family\": \"ip4\"}]}, // bravo\n  {\n    \"public_key\": \"xTIB"
            ),
            "{out}"
        );
        let (parsed, _) = Registry::parse("r.json", &out).unwrap();
        assert_eq!(parsed.nodes.len(), 3);
        assert_eq!(parsed.nodes[2].name.as_deref(), Some("c"));
        // Into an empty registry, and after a trailing comma.
        let out = add_node("r.json", "[]", &entry(C, 40003)).unwrap();
        assert_eq!(Registry::parse("r.json", &out).unwrap().0.nodes.len(), 1);
        let trailing = registry().replace("} // bravo", "}, // bravo");
        let out = add_node("r.json", &trailing, &entry(C, 40003)).unwrap();
        assert!(!out.contains(",,"), "{out}");
        assert_eq!(Registry::parse("r.json", &out).unwrap().0.nodes.len(), 3);
    }

    #[test]
    fn duplicates_are_refused() {
        let e = add_node("r.json", &registry(), &entry(A, 40003))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("r.json: [2].public_key: public key sZp4uL3r is also used by node [0]"),
            "{e}"
        );
        let e = add_node("r.json", &registry(), &entry(C, 40002))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[2].endpoints[0].send_port: send port 40002 is also used by node [1]"),
            "{e}"
        );
        let mut indexed = entry(C, 40003);
        indexed["index"] = json!(1);
        let e = add_node("r.json", &registry(), &indexed)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[2].index: index 1 is also used by node [0]"),
            "{e}"
        );
        let e = add_node(
            "r.json",
            &registry(),
            &json!({"public_key": C, "endpoints": [], "colour": 1}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("[2].colour: unknown field"), "{e}");
        assert_eq!(
            add_node("r.json", "{}", &entry(C, 40003)),
            Err(EditError::NotAnArray)
        );
    }

    #[test]
    fn a_node_is_removed_with_its_comments_on_its_lines() {
        let (out, label) = remove_node("r.json", &registry(), &Selector::Name("b".into())).unwrap();
        assert_eq!(label, "b");
        assert!(
            !out.contains("bravo") && out.contains("// alpha: Berlin"),
            "{out}"
        );
        assert_eq!(Registry::parse("r.json", &out).unwrap().0.nodes.len(), 1);
        let (out, _) = remove_node("r.json", &registry(), &Selector::Key(A.into())).unwrap();
        assert!(
            out.contains("// alpha: Berlin") && out.contains("// bravo"),
            "{out}"
        );
        let registry_after = Registry::parse("r.json", &out).unwrap().0;
        assert_eq!(registry_after.nodes.len(), 1);
        assert_eq!(registry_after.nodes[0].name.as_deref(), Some("b"));
        assert_eq!(
            remove_node("r.json", &registry(), &Selector::Name("z".into())),
            Err(EditError::NotFound("name `z`".into()))
        );
        // Added then removed: the file as it was.
        let added = add_node("r.json", &registry(), &entry(C, 40003)).unwrap();
        let (back, _) = remove_node("r.json", &added, &Selector::Key(C.into())).unwrap();
        assert_eq!(back, registry());
    }
}
