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

pub fn render(doc: &Value) -> String {
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
    let _ = writeln!(
        out,
        "{:<15} {:<10} {:<10} {:<28} {:>6} {:>10} {:>12} {:>12}",
        "link", "state", "peer", "endpoint", "listen", "handshake", "rx", "tx"
    );
    for l in doc["links"].as_array().into_iter().flatten() {
        let state = l["state"].as_str().unwrap_or("?");
        let _ = writeln!(
            out,
            "{:<15} {} {:<10} {:<28} {:>6} {:>10} {:>12} {:>12}",
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
        );
    }
    out
}
