//! The human-readable `braid status` table, rendered from the typed status document
//! ([`Status`], docs/status-json.md) the daemon sends. A daemon of another version still
//! renders: fields this build does not know are ignored, missing ones read as their
//! defaults (empty, zero, null), and words it does not know are shown as they come.

use braid_bond::{BondStatus, PathStatus};
use braid_daemon::routing::cost::{CostReason, RoutingCost};
use braid_daemon::status::{Exit, LinkStatus, Status};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::SystemTime;

/// Reads the daemon's status document and renders it; the error names where the document
/// did not fit this build's (its JSON path: `node.uptime_seconds`; inside a link, the
/// link: `links[0]`, since its counters are flattened into it).
pub(crate) fn render_json(doc: &serde_json::Value) -> anyhow::Result<String> {
    let status: Status = serde_path_to_error::deserialize(doc).map_err(|e| {
        anyhow::anyhow!(
            "the daemon's status document does not fit this braid's (another version?): {}: {}; `braid status --json` shows it as it is",
            e.path(),
            e.inner()
        )
    })?;
    Ok(render(&status, SystemTime::now()))
}

fn ago(now: SystemTime, then: Option<SystemTime>) -> String {
    match then.map(|t| now.duration_since(t)) {
        Some(Ok(d)) => format!("{}s ago", d.as_secs()),
        Some(Err(_)) => "just now".into(),
        None => "never".into(),
    }
}

/// A count in SI units with one decimal from 1000 up: `999`, `1.2k`, `106.0M`.
fn si(n: u64) -> String {
    let mut value = n as f64;
    for unit in ["", "k", "M", "G", "T"] {
        if value < 999.95 || unit == "T" {
            return if unit.is_empty() {
                n.to_string()
            } else {
                format!("{value:.1}{unit}")
            };
        }
        value /= 1000.0;
    }
    unreachable!("the loop returns at T")
}

/// Traffic as `bytes/packets`, in SI units: `106.0MB/76.0kp`.
fn traffic(bytes: u64, packets: u64) -> String {
    format!("{}B/{}p", si(bytes), si(packets))
}

fn colour(state: &str, text: &str) -> String {
    if !std::io::stdout().is_terminal() {
        return text.to_string();
    }
    let code = match state {
        "up" => "32",
        "connecting" => "33",
        _ => "31",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// A word of the document, or `fallback` when it is empty (absent in the daemon's).
fn or<'a>(word: &'a str, fallback: &'a str) -> &'a str {
    if word.is_empty() { fallback } else { word }
}

/// An enum's word as the document writes it (its serde name: `earliest-arrival`, `up`).
fn word<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".into(),
    }
}

/// The table: the node, its routing and registry, and one row per link (with its paths).
pub(crate) fn render(status: &Status, now: SystemTime) -> String {
    let node = &status.node;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {} ({})  backend {}  up {}s",
        node.name.as_deref().unwrap_or("-"),
        or(&node.public_key, "-"),
        or(node.backend, "-"),
        node.uptime_seconds
    );
    if let Some(err) = &node.last_error {
        let _ = writeln!(out, "last error: {err}");
    }
    render_routing(&mut out, status);
    let _ = writeln!(
        out,
        "{:<15} {:<10} {:<10} {:<28} {:>6} {:>10} {:>15} {:>15} {:>7} {:>10}",
        "link", "state", "peer", "endpoint", "listen", "handshake", "rx", "tx", "routes", "cost"
    );
    for link in &status.links {
        render_link(&mut out, link, now);
        if let Some(bond) = &link.stats.bond {
            render_paths(&mut out, bond);
        }
    }
    out
}

/// One link's row.
fn render_link(out: &mut String, l: &LinkStatus, now: SystemTime) {
    let state = or(l.state, "?");
    let s = &l.stats;
    let _ = writeln!(
        out,
        "{:<15} {} {:<10} {:<28} {:>6} {:>10} {:>15} {:>15} {:>7} {:>10}",
        or(&l.name, "?"),
        colour(state, &format!("{state:<10}")),
        or(&l.peer, "?"),
        s.endpoint.map_or("(none)".to_string(), |e| e.to_string()),
        s.listen_port,
        ago(now, s.last_handshake),
        traffic(s.rx_bytes, s.rx_packets),
        traffic(s.tx_bytes, s.tx_packets),
        routes(l),
        cost(l.routing_cost),
    );
}

/// The Babel cost braid gives the link (`32`, `1024 lossy`; `-`: braid sets none).
fn cost(cost: Option<RoutingCost>) -> String {
    match cost {
        Some(RoutingCost {
            rxcost,
            reason: CostReason::Lossy,
            ..
        }) => format!("{rxcost} lossy"),
        Some(c) => c.rxcost.to_string(),
        None => "-".into(),
    }
}

/// How many routes the kernel sends over a link, and their best metric (`-`: unknown).
fn routes(link: &LinkStatus) -> String {
    match (link.routes, link.route_metric) {
        (Some(n), Some(m)) if n > 0 => format!("{n}@{m}"),
        (Some(n), _) => n.to_string(),
        (None, _) => "-".into(),
    }
}

/// One family's exit: `unknown` (the kernel's routes were not read), `none`, the exit
/// node and the link to it, or the node's own uplink.
fn exit(read: bool, exit: Option<&Exit>) -> String {
    let Some(e) = exit else {
        return if read { "none" } else { "unknown" }.to_string();
    };
    let via = e.via.map_or(String::new(), |v| format!(" via {v}"));
    match &e.peer {
        Some(peer) => format!("{peer} over {}{via}", e.dev),
        None => format!("{}{via} (own uplink)", e.dev),
    }
}

/// Routing mode and health, the exit per family and the registry's version.
fn render_routing(out: &mut String, status: &Status) {
    let routing = &status.routing;
    let health = if routing.healthy {
        "healthy".to_string()
    } else {
        format!("NOT healthy: {}", routing.error.as_deref().unwrap_or("?"))
    };
    let _ = writeln!(out, "routing {} ({health})", or(routing.mode, "?"));
    let exits = routing.exits.as_ref();
    let _ = writeln!(
        out,
        "exit    ipv4 {}  ipv6 {}",
        exit(exits.is_some(), exits.and_then(|e| e.ip4.as_ref())),
        exit(exits.is_some(), exits.and_then(|e| e.ip6.as_ref()))
    );
    let registry = &status.registry;
    let version = match registry.signed_version {
        Some(v) => format!(
            "signed version {v} by {}",
            registry.signed_by.as_deref().unwrap_or("?")
        ),
        None => format!(
            "sha256 {}",
            status.node.registry_version.as_deref().unwrap_or("-")
        ),
    };
    let _ = writeln!(out, "registry {version}");
}

/// A number the document may hold as null (not finite), or `None`.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The paths of a multi-path link, one line each under the link.
fn render_paths(out: &mut String, bond: &BondStatus) {
    let r = &bond.reorder;
    let _ = writeln!(
        out,
        "  scheduler {} ({}), reorder {} (wait {:.1}ms, held {}, waited out {}, late {}, dropped {})",
        word(&bond.scheduler),
        or(bond.scheduler_source, "?"),
        if r.enabled { "on" } else { "off" },
        finite(r.wait_ms).unwrap_or(0.0),
        r.counters.held,
        r.counters.released_after_wait,
        r.counters.released_late,
        r.counters.dropped,
    );
    let _ = writeln!(
        out,
        "  {:<22} {:<8} {:>9} {:>9} {:>7} {:>11} {:>11} {:>6} {:>12} {:>12} probe",
        "path", "state", "rtt", "owd+", "loss", "rate est", "sent", "share", "tx", "rx"
    );
    for p in &bond.paths {
        render_path(out, p);
    }
}

/// One path's row.
fn render_path(out: &mut String, p: &PathStatus) {
    let state = word(&p.state);
    let ms = |v: Option<f64>| {
        v.and_then(finite)
            .map_or("-".to_string(), |v| format!("{v:.1}ms"))
    };
    let mbit = |v: Option<f64>| {
        v.and_then(finite)
            .map_or("-".to_string(), |v| format!("{:.1}Mb/s", v / 1e6))
    };
    // No loss before the path's first probe answer: nothing to count it from.
    let loss = match p.loss_samples {
        0 => "-".to_string(),
        _ => format!("{:.1}%", finite(p.loss).unwrap_or(0.0) * 100.0),
    };
    let _ = writeln!(
        out,
        "  {:<22} {} {:>9} {:>9} {:>7} {:>11} {:>11} {:>5.0}% {:>12} {:>12} {}",
        or(&p.name, "-"),
        colour(&state, &format!("{state:<8}")),
        ms(p.rtt_ms),
        ms(p.send_delay_ms),
        loss,
        mbit(p.capacity_bps.or(Some(p.rate_bps))),
        mbit(Some(p.sent_bps)),
        finite(p.share).unwrap_or(0.0) * 100.0,
        format!("{}B", si(p.counters.tx_bytes)),
        format!("{}B", si(p.counters.rx_bytes)),
        ms(p.last_probe_answer_ms_ago).replace("ms", "ms ago"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                chars.by_ref().take_while(|&c| c != 'm').for_each(drop);
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn counts_are_short() {
        assert_eq!(si(0), "0");
        assert_eq!(si(999), "999");
        assert_eq!(si(1000), "1.0k");
        assert_eq!(si(222_400), "222.4k");
        assert_eq!(si(999_960), "1.0M");
        assert_eq!(si(105_959_510), "106.0M");
        assert_eq!(si(u64::MAX), "18446744.1T");
    }

    /// A path of a bonded link, every field set as the daemon would.
    fn path(name: &str, bytes: u64) -> PathStatus {
        PathStatus {
            id: braid_bond::PathId(0),
            name: name.into(),
            key: 0,
            origin: "configured",
            peer: None,
            state: braid_bond::PathState::Up,
            down_reason: None,
            rtt_ms: Some(20.0),
            min_rtt_ms: Some(18.0),
            jitter_ms: 1.0,
            loss: 0.0,
            loss_samples: 0,
            data_loss: 0.0,
            delivery_rate_bps: 1e6,
            sent_bps: 3e6,
            share: 0.5,
            capacity_bps: None,
            capacity_lower_bound_bps: None,
            rate_bps: 10e6,
            queue_ms: 0.0,
            send_delay_ms: Some(12.0),
            send_jitter_ms: 0.5,
            receive_delay_ms: None,
            send_loss: 0.0,
            arrival_ms: None,
            repeating: false,
            excluded: None,
            weight: None,
            priority: 0,
            rate_cap_bps: None,
            counters: braid_bond::Counters {
                tx_bytes: bytes,
                rx_bytes: bytes,
                ..Default::default()
            },
            last_probe_answer_ms_ago: Some(10.0),
            last_probe_sent_ms_ago: None,
        }
    }

    /// A bonded link, up, with two routes over it.
    fn link(name: &str, bytes: u64, packets: u64) -> LinkStatus {
        let bond = BondStatus {
            scheduler: braid_bond::Scheduler::EarliestArrival,
            scheduler_source: "configured",
            peer_probes: true,
            reorder: braid_bond::ReorderStatus {
                enabled: true,
                ..Default::default()
            },
            probes: Default::default(),
            paths: vec![path("wan0", bytes)],
        };
        LinkStatus {
            name: name.into(),
            peer: "n2".into(),
            family: "ip4".into(),
            state: "up",
            routes: Some(2),
            route_metric: Some(1024),
            routing_cost: Some(RoutingCost {
                rxcost: 1024,
                reason: CostReason::Lossy,
                loss: Some(0.05),
            }),
            stats: braid_daemon::backend::LinkStats {
                endpoint: Some("198.18.0.2:40002".parse().unwrap()),
                listen_port: 40004,
                rx_bytes: bytes,
                rx_packets: packets,
                tx_bytes: bytes * 3,
                tx_packets: packets * 3,
                bond: Some(bond),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// A status document as the daemon builds it, written as JSON the way it sends it.
    fn document() -> serde_json::Value {
        let mut status = Status::default();
        status.node.name = Some("n1".into());
        status.node.backend = "userspace";
        status.routing.mode = "babel";
        status.routing.healthy = true;
        status.links = vec![
            link("brd4x40004", 105_959_510_000, 75_996_000),
            link("brd4x40006", 15, 1),
        ];
        serde_json::to_value(&status).unwrap()
    }

    fn table(doc: &serde_json::Value) -> String {
        plain(&render_json(doc).unwrap())
    }

    #[test]
    fn busy_links_keep_their_columns() {
        // A link after an iperf3 run printed `222400B/2093p 105959510B/75996p`, wider than
        // its columns, and pushed `routes` out of line with the header.
        let text = table(&document());
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().find(|l| l.starts_with("link ")).unwrap();
        let rows: Vec<&&str> = lines.iter().filter(|l| l.starts_with("brd")).collect();
        assert_eq!(rows.len(), 2, "{text}");
        for row in rows {
            assert_eq!(row.len(), header.len(), "{text}");
            assert!(row.ends_with(" 2@1024 1024 lossy"), "{row}");
        }
        assert!(text.contains("106.0GB/76.0Mp"), "{text}");
        assert!(
            text.contains("scheduler earliest-arrival (configured), reorder on"),
            "{text}"
        );
        let paths = lines
            .iter()
            .find(|l| l.trim_start().starts_with("path "))
            .unwrap();
        let wan0 = lines
            .iter()
            .find(|l| l.trim_start().starts_with("wan0 "))
            .unwrap();
        assert!(wan0.contains(" up "), "{wan0}");
        // The path rows end with the probe column, which the header names last.
        assert_eq!(
            wan0.find(" 106.0GB").map(|i| i + " 106.0GB".len()),
            paths
                .find("           tx")
                .map(|i| i + "           tx".len()),
            "{text}"
        );
    }

    #[test]
    fn a_daemon_of_another_version_still_renders() {
        let doc = document();
        let mut other = doc.clone();
        // Fields this build does not know, at every level, and words it does not know.
        other["uplinks"] = serde_json::json!([{ "name": "wan0" }]);
        other["node"]["cpu"] = serde_json::json!(0.5);
        let link = &mut other["links"][0];
        link["jitter_ms"] = serde_json::json!(96);
        link["bond"]["paths"][0]["ecn"] = serde_json::json!(true);
        link["bond"]["scheduler_source"] = serde_json::json!("negotiated");
        // Fields an older daemon did not send.
        for gone in ["mesh", "registry"] {
            other.as_object_mut().unwrap().remove(gone);
        }
        for gone in ["keepalive_loss", "underlay_mtu", "route_metric"] {
            other["links"][1].as_object_mut().unwrap().remove(gone);
        }
        // The same table, with the new word and without the metric the kernel gave.
        let mut want: Vec<String> = table(&doc).lines().map(String::from).collect();
        let first = want
            .iter()
            .position(|l| l.contains("(configured)"))
            .unwrap();
        want[first] = want[first].replace("(configured)", "(negotiated)");
        let second = want
            .iter()
            .position(|l| l.starts_with("brd4x40006"))
            .unwrap();
        want[second] = want[second].replace(" 2@1024", "      2");
        assert_eq!(table(&other), want.join("\n") + "\n");
        // A path as daemons wrote it before `name`, `loss_samples`, `sent_bps`, `share`.
        let path = other["links"][0]["bond"]["paths"][0]
            .as_object_mut()
            .unwrap();
        for gone in ["name", "loss_samples", "sent_bps", "share"] {
            path.remove(gone);
        }
        assert!(table(&other).contains("\n  -  "), "{}", table(&other));
    }

    #[test]
    fn a_document_that_does_not_fit_is_a_clear_error() {
        let mut doc = document();
        doc["links"][0]["rx_bytes"] = serde_json::json!("many");
        let err = render_json(&doc).unwrap_err().to_string();
        assert!(err.contains("braid status --json"), "{err}");
        // Named by its path in the document: down to the link (its counters are
        // flattened into it, and serde's flatten does not keep the field's name).
        assert!(err.contains(": links[0]: invalid type"), "{err}");
        let mut doc = document();
        doc["node"]["uptime_seconds"] = serde_json::json!(-1);
        let err = render_json(&doc).unwrap_err().to_string();
        assert!(
            err.contains(": node.uptime_seconds: invalid value"),
            "{err}"
        );
    }
}
