//! The status listener in the lab: /status and /metrics tell the same truth as
//! `braid status --json`, numbers move with traffic, links come and go, bad requests get
//! 404/405, and the listener holds under a load of concurrent clients (wrk).

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

struct Mesh {
    lab: Lab,
    dir: tempfile::TempDir,
    configs: Vec<PathBuf>,
}

fn mesh(tag: &str, nodes: usize) -> Option<Mesh> {
    if !braid_lab::available_or_skip(tag) {
        return None;
    }
    let lab = Lab::up(LabSpec::new(
        &format!("{}{:x}", &tag[..2], std::process::id() % 0xffff),
        nodes,
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(dir.path(), &ConfigOptions::default())
        .unwrap();
    start_daemons(&lab, &files);
    let configs: Vec<PathBuf> = files.into_iter().map(|f| f.config).collect();
    Some(Mesh { lab, dir, configs })
}

#[test]
fn status_and_metrics_report_the_same_truth_as_links_come_and_go() {
    let Some(m) = mesh("ob_status", 3) else {
        return;
    };
    let ns = m.lab.ns(1);
    wait_until(
        "every link of n1 up in /metrics",
        Duration::from_secs(20),
        || {
            let (code, body) = http(&ns, "GET", "/metrics");
            code == 200 && sample(&body, "braid_links", &["state=\"up\""]) == Some(4.0)
        },
    );
    // /status is the JSON of `braid status --json`.
    let (code, body) = http(&ns, "GET", "/status");
    assert_eq!(code, 200);
    let over_http: Value = serde_json::from_str(&body).unwrap();
    let over_socket: Value = serde_json::from_slice(
        &braid(&["status", "--json", "-c", m.configs[0].to_str().unwrap()]).stdout,
    )
    .unwrap();
    assert_eq!(over_http["version"], 1);
    assert_eq!(
        over_http["node"]["public_key"],
        over_socket["node"]["public_key"]
    );
    assert_eq!(
        over_http["node"]["config_version"],
        over_socket["node"]["config_version"]
    );
    assert_eq!(over_http["node"]["last_reload_ok"], true);
    let names = |doc: &Value| {
        doc["links"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&over_http), names(&over_socket));

    // Traffic moves the counters, in /metrics and in /status.
    let (_, before) = http(&ns, "GET", "/metrics");
    let rx = |metrics: &str| {
        sample(
            metrics,
            "braid_link_receive_bytes_total",
            &["link=\"brd4x40004\""],
        )
        .unwrap()
    };
    assert!(
        m.lab
            .try_exec(
                1,
                "ping",
                &[
                    "-c",
                    "50",
                    "-i",
                    "0.01",
                    "-s",
                    "1000",
                    "-q",
                    "fe80::2%brd4x40004"
                ]
            )
            .unwrap()
            .status
            .success()
    );
    let (_, after) = http(&ns, "GET", "/metrics");
    assert!(
        rx(&after) >= rx(&before) + 50_000.0,
        "rx {} -> {}",
        rx(&before),
        rx(&after)
    );
    assert_eq!(
        sample(
            &after,
            "braid_link_up",
            &["link=\"brd4x40004\"", "peer=\"n2\"", "family=\"ip4\""]
        ),
        Some(1.0)
    );
    assert!(after.contains("braid_link_dropped_packets_total{link=\"brd4x40004\",peer=\"n2\",family=\"ip4\",reason=\"replay\"}"), "{after}");
    assert!(sample(&after, "braid_node_info", &["backend=\"userspace\""]) == Some(1.0));

    // n3 leaves the registry: its links leave /metrics and /status.
    let registry_path = m.dir.path().join("registry.json");
    let mut registry: Value =
        serde_json::from_str(&std::fs::read_to_string(&registry_path).unwrap()).unwrap();
    registry.as_array_mut().unwrap().truncate(2);
    std::fs::write(&registry_path, registry.to_string()).unwrap();
    assert!(
        braid(&["reload", "-c", m.configs[0].to_str().unwrap()])
            .status
            .success()
    );
    let (_, body) = http(&ns, "GET", "/metrics");
    assert!(
        !body.contains("peer=\"n3\""),
        "n3's links are still reported:\n{body}"
    );
    assert_eq!(sample(&body, "braid_links", &["state=\"up\""]), Some(2.0));
    let (_, status) = http(&ns, "GET", "/status");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["links"].as_array().unwrap().len(), 2);
    assert_ne!(
        status["node"]["registry_version"],
        over_http["node"]["registry_version"]
    );
    // A broken registry: the reload fails, the metrics say so, the links stay.
    std::fs::write(&registry_path, "[ not json").unwrap();
    assert!(
        !braid(&["reload", "-c", m.configs[0].to_str().unwrap()])
            .status
            .success()
    );
    let (_, body) = http(&ns, "GET", "/metrics");
    assert_eq!(sample(&body, "braid_last_reload_success", &[]), Some(0.0));
    assert_eq!(sample(&body, "braid_links", &["state=\"up\""]), Some(2.0));
}

#[test]
fn bad_requests_get_404_and_405_and_load_does_not_break_the_listener() {
    let Some(m) = mesh("ld_load", 2) else { return };
    let ns = m.lab.ns(1);
    wait_until("the listener", Duration::from_secs(20), || {
        http(&ns, "GET", "/status").0 == 200
    });
    assert_eq!(http(&ns, "GET", "/nope").0, 404);
    assert_eq!(http(&ns, "POST", "/status").0, 405);
    assert_eq!(http(&ns, "DELETE", "/metrics").0, 405);
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED the load part of bad_requests_get_404_and_405_and_load_does_not_break_the_listener: wrk is not installed"
        );
        return;
    }
    // 3 s of 50 concurrent connections on loopback inside the lab node.
    let out = m
        .lab
        .try_exec(
            1,
            "wrk",
            &[
                "-t",
                "2",
                "-c",
                "50",
                "-d",
                "3s",
                "http://127.0.0.1:8091/metrics",
            ],
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("Non-2xx"), "{text}");
    let requests: f64 = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    assert!(requests > 100.0, "{text}");
    eprintln!(
        "wrk against /metrics: {}",
        text.lines()
            .find(|l| l.contains("Requests/sec"))
            .unwrap_or("")
    );
    // Still answering, and the mesh still works.
    assert_eq!(http(&ns, "GET", "/status").0, 200);
    assert!(m.lab.ping(1, "fe80::2%brd4x40004"));
}
