//! Routing mode `static` in the lab: every node's bridge holds its ::1 and .254, braid's
//! routes carry every peer's /64 and /24 over the link to it, and every workload reaches
//! every other over IPv6 and IPv4.

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec};
use std::process::Command;
use std::time::Duration;

#[test]
fn static_routing_connects_every_workload_over_ipv6_and_ipv4() {
    if !braid_lab::available_or_skip("static_routing_connects_every_workload_over_ipv6_and_ipv4") {
        return;
    }
    let n = 4;
    let lab = Lab::up(LabSpec::new(
        &format!("st{:x}", std::process::id() % 0xffff),
        n,
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(
            dir.path(),
            &ConfigOptions {
                routing: "static".into(),
                ..ConfigOptions::default()
            },
        )
        .unwrap();
    start_daemons(&lab, &files);
    wait_for_bridges(&lab, n);
    let addrs: Vec<_> = (1..=n)
        .map(|i| lab.add_workload(i, "braid0").unwrap())
        .collect();
    // braid's routes: proto 98 in braid's table 98, one per peer prefix and link, and the
    // node's own prefix on its bridge.
    wait_until("n1's routes", Duration::from_secs(20), || {
        let out = lab
            .exec(
                1,
                "ip",
                &["-6", "route", "show", "table", "98", "proto", "98"],
            )
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count() == 2 * (n - 1) + 1
    });
    let routes = String::from_utf8_lossy(
        &lab.exec(
            1,
            "ip",
            &["-4", "route", "show", "table", "98", "proto", "98"],
        )
        .unwrap()
        .stdout,
    )
    .to_string();
    assert!(
        routes.contains("10.0.2.0/24 via 169.254.0.2 dev brd4x40004"),
        "{routes}"
    );
    let bridge = String::from_utf8_lossy(
        &lab.exec(1, "ip", &["addr", "show", "braid0"])
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(
        bridge.contains("2001:db8:bd00:1::1/64") && bridge.contains("10.0.1.254/24"),
        "{bridge}"
    );
    for i in 1..=n {
        for (j, to) in addrs.iter().enumerate() {
            if i == j + 1 {
                continue;
            }
            wait_until(
                &format!("w{i} -> w{} over IPv6", j + 1),
                Duration::from_secs(20),
                || lab.workload_ping(i, &to.v6.to_string()),
            );
            assert!(
                lab.workload_ping(i, &to.v4.to_string()),
                "w{i} -> w{} over IPv4",
                j + 1
            );
        }
    }
    // Status and metrics list the routes braid installed.
    let status = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["status", "--json", "-c", files[0].config.to_str().unwrap()])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["routing"]["mode"], "static");
    assert_eq!(doc["node"]["addresses"]["prefix6"], "2001:db8:bd00:1::/64");
    assert_eq!(doc["routing"]["healthy"], true);
    assert_eq!(
        doc["routing"]["routes"].as_array().unwrap().len(),
        4 * (n - 1) + 2,
        "{doc}"
    );
    let metrics = lab.exec(1, "python3", &["-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8091/metrics').read().decode())"]).unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout).to_string();
    assert!(
        metrics.contains("braid_routes{family=\"ip6\"} 7")
            && metrics.contains("braid_routing_healthy 1"),
        "{metrics}"
    );
    // `braid down` removes the bridge and the routes with the links.
    let down = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["down", "-c", files[0].config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(down.status.success());
    assert!(
        !lab.try_exec(1, "ip", &["link", "show", "braid0"])
            .unwrap()
            .status
            .success(),
        "the bridge survived down"
    );
    let left = lab
        .exec(
            1,
            "ip",
            &["-6", "route", "show", "table", "all", "proto", "98"],
        )
        .unwrap();
    assert!(left.stdout.is_empty());
}

#[test]
fn static_default_routes_fail_over_to_the_next_exit() {
    if !braid_lab::available_or_skip("static_default_routes_fail_over_to_the_next_exit") {
        return;
    }
    let n = 3;
    let lab = Lab::up(LabSpec::new(
        &format!("sf{:x}", std::process::id() % 0xffff),
        n,
    ))
    .unwrap();
    // Two exits, each with an upstream interface (a veth to nowhere is enough here).
    for k in 1..=2 {
        let ns = lab.ns(k);
        for args in [
            vec![
                "-n", &ns, "link", "add", "up0", "type", "veth", "peer", "name", "up0p",
            ],
            vec!["-n", &ns, "link", "set", "up0", "up"],
            vec!["-n", &ns, "link", "set", "up0p", "up"],
        ] {
            assert!(Command::new("ip").args(&args).status().unwrap().success());
        }
        let addr = format!("198.51.100.{}/24", 10 + k);
        assert!(
            Command::new("ip")
                .args(["-n", &ns, "addr", "add", &addr, "dev", "up0"])
                .status()
                .unwrap()
                .success()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(
            dir.path(),
            &ConfigOptions {
                routing: "static".into(),
                keepalive: 1,
                ..ConfigOptions::default()
            },
        )
        .unwrap();
    edit_json(&dir.path().join("registry.json"), |r| {
        r[0]["exit_preference"] = serde_json::json!(100);
        r[1]["exit_preference"] = serde_json::json!(200);
    });
    for k in 1..=2 {
        edit_json(
            &files[k - 1].config,
            |c| {
                c["exit"] =
                    serde_json::json!({"upstream_interface": "up0", "gateway4": "198.51.100.1"})
            },
        );
    }
    start_daemons(&lab, &files);
    // Node 3 sends the world to exit 1 (preference 100) ...
    wait_until(
        "n3's default route via exit 1",
        Duration::from_secs(30),
        || default_next_hop(&lab).as_deref() == Some("169.254.0.1"),
    );
    // ... and to exit 2 once exit 1 stops answering.
    lab.cut(1, 2).unwrap();
    lab.cut(1, 3).unwrap();
    wait_until(
        "n3's default route via exit 2",
        Duration::from_secs(30),
        || default_next_hop(&lab).as_deref() == Some("169.254.0.2"),
    );
    // And back when exit 1 returns.
    lab.restore(1, 3).unwrap();
    lab.restore(1, 2).unwrap();
    wait_until(
        "n3's default route via exit 1 again",
        Duration::from_secs(30),
        || default_next_hop(&lab).as_deref() == Some("169.254.0.1"),
    );
}
