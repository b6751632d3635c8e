//! The lab: a mesh of N nodes on one machine, each a network namespace, joined by veth
//! pairs (a full mesh, so every pair can be shaped, made lossy or cut on its own). Used by
//! `braid lab`, the integration tests and the benchmarks.
//!
//! Everything the lab makes is named `brd-<lab>-...` and removed when the [`Lab`] drops,
//! also while a test panics; [`cleanup`] removes what a killed run left behind.

pub mod command;
pub mod configs;
mod lab;

pub use configs::{ConfigOptions, NodeFiles};
pub use lab::{Lab, LabSpec, LinkShape, NodeAddrs, cleanup, namespace_prefix};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{command}` could not start: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("lab name `{0}` must be 1..=8 characters of a-z, 0-9")]
    BadName(String),
    #[error("a lab needs 1..=50 nodes, not {0}")]
    BadSize(usize),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("random bytes for keys: {0}")]
    Random(String),
}

/// True when this process can build a lab (root, and `ip netns` works).
pub fn available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && command::ip(&["netns", "list"]).is_ok()
}

/// For tests: `true` when the lab can run; otherwise prints a loud SKIPPED line.
pub fn available_or_skip(test: &str) -> bool {
    let ok = available();
    if !ok {
        eprintln!("SKIPPED {test}: the lab needs root and iproute2's `ip netns`");
    }
    ok
}
