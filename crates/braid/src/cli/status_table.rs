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
        "{:<15} {:<10} {:<10} {:<28} {:>6} {:>10} {:>12} {:>12} {:>7}",
        "link", "state", "peer", "endpoint", "listen", "handshake", "rx", "tx", "routes"
    );
    for l in doc["links"].as_array().into_iter().flatten() {
        let state = l["state"].as_str().unwrap_or("?");
        let _ = writeln!(
            out,
            "{:<15} {} {:<10} {:<28} {:>6} {:>10} {:>12} {:>12} {:>7}",
            l["name"].as_str().unwrap_or("?"),
            colour(state, &format!("{state:<10}")),
            l["peer"].as_str().unwrap_or("?"),
            l["endpoint"].as_str().unwrap_or("(none)"),
            l["listen_port"].as_u64().unwrap_or(0),
            ago(now, &l["last_handshake"]),
            format!(
                "{}B/{}p",
                l["rx_bytes"].as_u64().unwrap_or(0),
                l["rx_packets"].as_u64().unwrap_or(0)
            ),
            format!(
                "{}B/{}p",
                l["tx_bytes"].as_u64().unwrap_or(0),
                l["tx_packets"].as_u64().unwrap_or(0)
            ),
            routes(l),
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
            format!("{}B", p["tx_bytes"].as_u64().unwrap_or(0)),
            format!("{}B", p["rx_bytes"].as_u64().unwrap_or(0)),
            ms(&p["last_probe_answer_ms_ago"]).replace("ms", "ms ago"),
        );
    }
}
