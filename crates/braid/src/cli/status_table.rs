//! The human-readable `braid status` table, rendered from the status JSON document.

use serde_json::Value;
use std::fmt::Write as _;
use std::io::IsTerminal;

fn ago(now: u64, then: &Value) -> String {
    match then.as_u64() {
        Some(t) if now >= t => format!("{}s ago", now - t),
        Some(_) => "just now".into(),
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
fn traffic(bytes: &Value, packets: &Value) -> String {
    format!(
        "{}B/{}p",
        si(bytes.as_u64().unwrap_or(0)),
        si(packets.as_u64().unwrap_or(0))
    )
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

pub(crate) fn render(doc: &Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let node = &doc["node"];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {} ({})  backend {}  up {}s",
        node["name"].as_str().unwrap_or("-"),
        node["public_key"].as_str().unwrap_or("-"),
        node["backend"].as_str().unwrap_or("-"),
        node["uptime_seconds"].as_u64().unwrap_or(0)
    );
    if let Some(err) = node["last_error"].as_str() {
        let _ = writeln!(out, "last error: {err}");
    }
    render_routing(&mut out, doc);
    let _ = writeln!(
        out,
        "{:<15} {:<10} {:<10} {:<28} {:>6} {:>10} {:>15} {:>15} {:>7} {:>10}",
        "link", "state", "peer", "endpoint", "listen", "handshake", "rx", "tx", "routes", "cost"
    );
    for l in doc["links"].as_array().into_iter().flatten() {
        let state = l["state"].as_str().unwrap_or("?");
        let _ = writeln!(
            out,
            "{:<15} {} {:<10} {:<28} {:>6} {:>10} {:>15} {:>15} {:>7} {:>10}",
            l["name"].as_str().unwrap_or("?"),
            colour(state, &format!("{state:<10}")),
            l["peer"].as_str().unwrap_or("?"),
            l["endpoint"].as_str().unwrap_or("(none)"),
            l["listen_port"].as_u64().unwrap_or(0),
            ago(now, &l["last_handshake"]),
            traffic(&l["rx_bytes"], &l["rx_packets"]),
            traffic(&l["tx_bytes"], &l["tx_packets"]),
            routes(l),
            cost(l),
        );
        render_paths(&mut out, &l["bond"]);
    }
    out
}

/// How many routes the kernel sends over a link, and their best metric (`-`: unknown).
fn routes(link: &Value) -> String {
    match (link["routes"].as_u64(), link["route_metric"].as_u64()) {
        (Some(n), Some(m)) if n > 0 => format!("{n}@{m}"),
        (Some(n), _) => n.to_string(),
        (None, _) => "-".into(),
    }
}

/// The Babel cost braid gives the link (`32`, `1024 lossy`; `-`: braid sets none).
fn cost(link: &Value) -> String {
    let c = &link["routing_cost"];
    match (c["rxcost"].as_u64(), c["reason"].as_str()) {
        (Some(rxcost), Some("lossy")) => format!("{rxcost} lossy"),
        (Some(rxcost), _) => rxcost.to_string(),
        (None, _) => "-".into(),
    }
}

/// Routing mode and health, the exit per family and the registry's version.
fn render_routing(out: &mut String, doc: &Value) {
    let routing = &doc["routing"];
    let health = if routing["healthy"] == true {
        "healthy".to_string()
    } else {
        format!("NOT healthy: {}", routing["error"].as_str().unwrap_or("?"))
    };
    let _ = writeln!(
        out,
        "routing {} ({health})",
        routing["mode"].as_str().unwrap_or("?")
    );
    let exit = |family: &str| {
        let e = &routing["exits"][family];
        match e["dev"].as_str() {
            None if routing["exits"].is_null() => "unknown".to_string(),
            None => "none".to_string(),
            Some(dev) => {
                let via = e["via"]
                    .as_str()
                    .map_or(String::new(), |v| format!(" via {v}"));
                match e["peer"].as_str() {
                    Some(peer) => format!("{peer} over {dev}{via}"),
                    None => format!("{dev}{via} (own uplink)"),
                }
            }
        }
    };
    let _ = writeln!(out, "exit    ipv4 {}  ipv6 {}", exit("ip4"), exit("ip6"));
    let registry = &doc["registry"];
    let version = match registry["signed_version"].as_u64() {
        Some(v) => format!(
            "signed version {v} by {}",
            registry["signed_by"].as_str().unwrap_or("?")
        ),
        None => format!(
            "sha256 {}",
            doc["node"]["registry_version"].as_str().unwrap_or("-")
        ),
    };
    let _ = writeln!(out, "registry {version}");
}

/// The paths of a multi-path link, one line each under the link.
fn render_paths(out: &mut String, bond: &Value) {
    let Some(paths) = bond["paths"].as_array() else {
        return;
    };
    let r = &bond["reorder"];
    let _ = writeln!(
        out,
        "  scheduler {} ({}), reorder {} (wait {:.1}ms, held {}, waited out {}, late {}, dropped {})",
        bond["scheduler"].as_str().unwrap_or("?"),
        bond["scheduler_source"].as_str().unwrap_or("?"),
        if r["enabled"] == true { "on" } else { "off" },
        r["wait_ms"].as_f64().unwrap_or(0.0),
        r["held"].as_u64().unwrap_or(0),
        r["released_after_wait"].as_u64().unwrap_or(0),
        r["released_late"].as_u64().unwrap_or(0),
        r["dropped"].as_u64().unwrap_or(0),
    );
    let _ = writeln!(
        out,
        "  {:<22} {:<8} {:>9} {:>9} {:>7} {:>11} {:>11} {:>6} {:>12} {:>12} probe",
        "path", "state", "rtt", "owd+", "loss", "rate est", "sent", "share", "tx", "rx"
    );
    for p in paths {
        let state = p["state"].as_str().unwrap_or("?");
        let ms = |v: &Value| v.as_f64().map_or("-".to_string(), |v| format!("{v:.1}ms"));
        let mbit = |v: &Value| {
            v.as_f64()
                .map_or("-".to_string(), |v| format!("{:.1}Mb/s", v / 1e6))
        };
        // No loss before the path's first probe answer: nothing to count it from.
        let loss = match p["loss_samples"].as_u64() {
            Some(0) => "-".to_string(),
            _ => format!("{:.1}%", p["loss"].as_f64().unwrap_or(0.0) * 100.0),
        };
        let rate = if p["capacity_bps"].is_null() {
            &p["rate_bps"]
        } else {
            &p["capacity_bps"]
        };
        let _ = writeln!(
            out,
            "  {:<22} {} {:>9} {:>9} {:>7} {:>11} {:>11} {:>5.0}% {:>12} {:>12} {}",
            p["name"].as_str().unwrap_or("-"),
            colour(state, &format!("{state:<8}")),
            ms(&p["rtt_ms"]),
            ms(&p["send_delay_ms"]),
            loss,
            mbit(rate),
            mbit(&p["sent_bps"]),
            p["share"].as_f64().unwrap_or(0.0) * 100.0,
            format!("{}B", si(p["tx_bytes"].as_u64().unwrap_or(0))),
            format!("{}B", si(p["rx_bytes"].as_u64().unwrap_or(0))),
            ms(&p["last_probe_answer_ms_ago"]).replace("ms", "ms ago"),
        );
    }
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

    #[test]
    fn busy_links_keep_their_columns() {
        // A link after an iperf3 run printed `222400B/2093p 105959510B/75996p`, wider than
        // its columns, and pushed `routes` out of line with the header.
        let link = |name: &str, bytes: u64, packets: u64| {
            serde_json::json!({
                "name": name, "state": "up", "peer": "n2", "endpoint": "198.18.0.2:40002",
                "listen_port": 40004, "last_handshake": null,
                "rx_bytes": bytes, "rx_packets": packets,
                "tx_bytes": bytes * 3, "tx_packets": packets * 3,
                "routes": 2, "route_metric": 1024,
                "routing_cost": { "rxcost": 1024, "reason": "lossy", "loss": 0.05 },
                "bond": { "scheduler": "earliest-arrival", "scheduler_source": "configured",
                          "reorder": { "enabled": true },
                          "paths": [{ "name": "wan0", "state": "up", "tx_bytes": bytes,
                                      "rx_bytes": bytes, "share": 0.5 }] }
            })
        };
        let doc = serde_json::json!({
            "node": { "name": "n1" },
            "routing": { "mode": "babel", "healthy": true },
            "links": [link("brd4x40004", 105_959_510_000, 75_996_000), link("brd4x40006", 15, 1)],
        });
        let text = plain(&render(&doc));
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().find(|l| l.starts_with("link ")).unwrap();
        let rows: Vec<&&str> = lines.iter().filter(|l| l.starts_with("brd")).collect();
        assert_eq!(rows.len(), 2, "{text}");
        for row in rows {
            assert_eq!(row.len(), header.len(), "{text}");
            assert!(row.ends_with(" 2@1024 1024 lossy"), "{row}");
        }
        assert!(text.contains("106.0GB/76.0Mp"), "{text}");
        let paths = lines
            .iter()
            .find(|l| l.trim_start().starts_with("path "))
            .unwrap();
        let wan0 = lines
            .iter()
            .find(|l| l.trim_start().starts_with("wan0 "))
            .unwrap();
        // The path rows end with the probe column, which the header names last.
        assert_eq!(
            wan0.find(" 106.0GB").map(|i| i + " 106.0GB".len()),
            paths
                .find("           tx")
                .map(|i| i + "           tx".len()),
            "{text}"
        );
    }
}
