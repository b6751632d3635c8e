//! Routing modes `babel` (real babeld) and `bird` (real BIRD 2) in the lab: five nodes, the
//! underlay between A and E blocked; A's workload reaches E's through another node, and when
//! that relay's link is cut, through yet another.

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

#[test]
fn babel_routes_around_a_blocked_underlay_and_fails_over() {
    around_a_blocked_underlay(
        "babel_routes_around_a_blocked_underlay_and_fails_over",
        "babel",
        "babeld",
        "-V",
        "babel",
    );
}

#[test]
fn bird_routes_around_a_blocked_underlay_and_fails_over() {
    around_a_blocked_underlay(
        "bird_routes_around_a_blocked_underlay_and_fails_over",
        "bird",
        "bird",
        "--version",
        "bird",
    );
}

/// `mode`: the routing mode; `tool`/`flag`: how to tell the engine is installed; `proto`: the
/// kernel protocol its routes carry.
fn around_a_blocked_underlay(test: &str, mode: &str, tool: &str, flag: &str, proto: &str) {
    if !braid_lab::available_or_skip(test) {
        return;
    }
    if Command::new(tool).arg(flag).output().is_err() {
        eprintln!("SKIPPED {test}: {tool} is not installed");
        return;
    }
    let n = 5;
    let lab = Lab::up(LabSpec::new(
        &format!("{}{:x}", &mode[..2], std::process::id() % 0xffff),
        n,
    ))
    .unwrap();
    lab.cut(1, 5).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(dir.path(), &ConfigOptions::default())
        .unwrap();
    for f in &files {
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(&f.config).unwrap()).unwrap();
        config["routing"] = json!({"mode": mode, "hello_interval": 1});
        std::fs::write(&f.config, config.to_string()).unwrap();
    }
    start_daemons(&lab, &files);
    wait_for_bridges(&lab, n);
    let w1 = lab.add_workload(1, "braid0").unwrap();
    let w5 = lab.add_workload(5, "braid0").unwrap();
    let _ = w1;
    wait_until(
        "w1 -> w5 over IPv6 through a relay",
        Duration::from_secs(60),
        || lab.workload_ping(1, &w5.v6.to_string()),
    );
    wait_until("w1 -> w5 over IPv4", Duration::from_secs(30), || {
        lab.workload_ping(1, &w5.v4.to_string())
    });
    let first = relay(&lab, &w5.v6.to_string()).expect("a route to w5");
    assert!(
        (2..=4).contains(&first),
        "the route to E goes through B, C or D, not {first}"
    );
    // babeld learned it: proto babel routes in n1, in braid's table.
    let routes = String::from_utf8_lossy(
        &lab.exec(
            1,
            "ip",
            &["-6", "route", "show", "table", "98", "proto", proto],
        )
        .unwrap()
        .stdout,
    )
    .to_string();
    assert!(routes.contains("2001:db8:bd00:5::/64"), "{routes}");
    // Cut the relay off from A: traffic moves to another relay.
    lab.cut(1, first).unwrap();
    wait_until(
        "w1 -> w5 through another relay",
        Duration::from_secs(90),
        || {
            relay(&lab, &w5.v6.to_string()).is_some_and(|r| r != first)
                && lab.workload_ping(1, &w5.v6.to_string())
        },
    );
    let second = relay(&lab, &w5.v6.to_string()).unwrap();
    assert!(second != first && second != 5, "relay {first} -> {second}");
    // The status reports babel and its routes' health.
    let status = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["status", "--json", "-c", files[0].config.to_str().unwrap()])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["routing"]["mode"], mode);
    assert_eq!(doc["routing"]["healthy"], true, "{doc}");
    if mode == "babel" {
        peers_come_and_go_without_restarting_babeld(
            &files[0].config,
            &dir.path().join("registry.json"),
        );
    }
}

/// Node 4 leaves the registry and n1 reloads: babeld keeps running (same PID) and stops
/// speaking on n4's links; node 4 comes back and babeld speaks on them again.
fn peers_come_and_go_without_restarting_babeld(
    config: &std::path::Path,
    registry: &std::path::Path,
) {
    let babel_dir = config.with_file_name("babeld");
    let pid = || {
        std::fs::read_to_string(babel_dir.join("babeld.pid"))
            .unwrap()
            .trim()
            .to_string()
    };
    let interfaces = || {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(babel_dir.join("babeld.ctl")).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s.write_all(b"dump\nquit\n").unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.lines()
            .filter(|l| l.starts_with("add interface"))
            .filter_map(|l| l.split_whitespace().nth(2))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let before = pid();
    assert!(
        interfaces().contains(&"brd4x40008".to_string()),
        "{:?}",
        interfaces()
    );
    let full = std::fs::read_to_string(registry).unwrap();
    let mut without: Value = serde_json::from_str(&full).unwrap();
    without.as_array_mut().unwrap().remove(3);
    std::fs::write(registry, without.to_string()).unwrap();
    let reload = braid(&["reload", "-c", config.to_str().unwrap()]);
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    // braid tells babeld from its supervision thread, right after the reload.
    wait_until("babeld dropping n4's links", Duration::from_secs(5), || {
        !interfaces().contains(&"brd4x40008".to_string())
    });
    assert_eq!(pid(), before, "babeld was restarted");
    std::fs::write(registry, full).unwrap();
    assert!(
        braid(&["reload", "-c", config.to_str().unwrap()])
            .status
            .success()
    );
    wait_until(
        "babeld speaking on n4's links again",
        Duration::from_secs(5),
        || interfaces().contains(&"brd4x40008".to_string()),
    );
    assert_eq!(pid(), before, "babeld was restarted");
}
