//! Helpers shared by the lab's kernel tests.
#![allow(dead_code)]

use braid_lab::{command::namespaces, namespace_prefix};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A lab name unique to this process and call: `<tag><pid><n>`, at most 8 characters.
pub(crate) fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 36;
    let name = format!(
        "{tag}{:04x}{}",
        std::process::id() % 0x10000,
        char::from_digit(n as u32, 36).unwrap_or('z')
    );
    assert!(name.len() <= 8, "tag `{tag}` is too long for a lab name");
    name
}

/// The namespaces of the lab `name` that exist now.
pub(crate) fn lab_namespaces(name: &str) -> Vec<String> {
    namespaces()
        .expect("ip netns list")
        .into_iter()
        .filter(|n| n.starts_with(&namespace_prefix(name)))
        .collect()
}

/// The standard output of a successful command, as text.
pub(crate) fn stdout(output: std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}
