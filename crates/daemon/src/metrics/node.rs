//! This node (identity, input versions, uptime, reloads) and the daemon process
//! (descriptors, the status listener's connections).

use super::family::{FloatGauge, int, labels, series, single};
use crate::http::ListenerStats;
use crate::status::Status;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering::Relaxed;

/// This node: its identity and input versions, uptime, and how the last reload went.
pub(super) fn register(registry: &mut Registry, status: &Status) {
    let node = &status.node;
    let info = labels(&[
        ("public_key", &node.public_key),
        ("name", node.name.as_deref().unwrap_or("")),
        ("backend", node.backend),
        (
            "config_version",
            node.config_version.as_deref().unwrap_or(""),
        ),
        (
            "registry_version",
            node.registry_version.as_deref().unwrap_or(""),
        ),
    ]);
    series::<Gauge>(
        registry,
        "node_info",
        "This node: key, name, backend and input versions (always 1)",
        [(info, 1)],
    );
    let seconds = [
        (
            "uptime_seconds",
            "Seconds since braid run started",
            node.uptime_seconds,
        ),
        (
            "config_loaded_timestamp_seconds",
            "Unix time of the last successful reload",
            node.loaded_at.unwrap_or(0),
        ),
    ];
    for (name, help, value) in seconds {
        single::<FloatGauge>(registry, name, help, value as f64);
    }
    let flags = [
        (
            "last_reload_success",
            "1 when the last reload's input was valid, else 0",
            node.last_reload_ok,
        ),
        (
            "last_reload_error",
            "1 when the last reload failed or left links down, else 0",
            node.last_error.is_some(),
        ),
    ];
    for (name, help, flag) in flags {
        single::<Gauge>(registry, name, help, i64::from(flag));
    }
}

/// Descriptors of the process and connections of the status listener.
pub(super) fn register_process(registry: &mut Registry, listener: &ListenerStats) {
    let gauges = [
        (
            "process_open_fds",
            "File descriptors the daemon holds",
            crate::fds::open(),
        ),
        (
            "process_max_fds",
            "The daemon's limit on file descriptors (RLIMIT_NOFILE, soft)",
            crate::fds::limit(),
        ),
        (
            "status_connections",
            "Connections open on the status listener",
            Some(listener.open.load(Relaxed)),
        ),
        (
            "status_connections_max",
            "The most connections the status listener holds at once",
            Some(listener.cap.load(Relaxed)),
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(n) = value {
            single::<Gauge>(registry, name, help, int(n));
        }
    }
    let closed = [
        ("cap", listener.refused.load(Relaxed)),
        ("timeout", listener.timed_out.load(Relaxed)),
    ];
    series::<Counter>(
        registry,
        "status_connections_closed",
        "Status listener connections braid closed: at once because the cap was reached, or idle or open too long",
        closed.map(|(reason, n)| (labels(&[("reason", reason)]), n)),
    );
    single::<Counter>(
        registry,
        "status_accept_errors",
        "Failed accepts on the status listener (e.g. out of descriptors)",
        listener.accept_errors.load(Relaxed),
    );
}
