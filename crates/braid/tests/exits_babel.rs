//! Two exits with Babel (real babeld): each exit announces the default route (IPv6
//! source-specific from the allocation) with its exit preference as the metric. Workloads
//! reach the internet through the preferred exit; cutting it off moves them to the other.

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec, namespace_prefix};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

/// Packets exit `k` has sent to its upstream router.
fn upstream_tx(lab: &Lab, k: usize) -> u64 {
    let out = lab
        .exec(k, "cat", &["/sys/class/net/up0/statistics/tx_packets"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Sends 10 pings from w3 to the internet and returns which exit carried most of them.
fn exit_used(lab: &Lab) -> Option<usize> {
    let before = [upstream_tx(lab, 1), upstream_tx(lab, 2)];
    let ok = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.workload_ns(3),
            "ping",
            "-q",
            "-c",
            "10",
            "-i",
            "0.05",
            "-W",
            "1",
            "192.0.2.1",
        ])
        .output()
        .ok()?;
    if !ok.status.success() {
        return None;
    }
    let sent = [
        upstream_tx(lab, 1) - before[0],
        upstream_tx(lab, 2) - before[1],
    ];
    match sent {
        [a, b] if a >= 10 && b < 5 => Some(1),
        [a, b] if b >= 10 && a < 5 => Some(2),
        _ => None,
    }
}

#[test]
fn babel_prefers_the_better_exit_and_fails_over_to_the_other() {
    if !braid_lab::available_or_skip("babel_prefers_the_better_exit_and_fails_over_to_the_other") {
        return;
    }
    if Command::new("babeld").arg("-V").output().is_err() {
        eprintln!(
            "SKIPPED babel_prefers_the_better_exit_and_fails_over_to_the_other: babeld is not installed"
        );
        return;
    }
    let n = 4;
    let lab = Lab::up(LabSpec::new(
        &format!("xb{:x}", std::process::id() % 0xffff),
        n,
    ))
    .unwrap();
    let p = namespace_prefix(lab.name());
    let (r1, r2, inet) = (format!("{p}r1"), format!("{p}r2"), format!("{p}i"));
    for ns in [&r1, &r2, &inet] {
        ip(&["netns", "add", ns]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    // exit k (node k) -- router rk -- internet
    for (k, router, v4_exit, v4_router, v6, v4_up, v4_inet, v6_up) in [
        (
            1,
            &r1,
            "198.51.100.2/25",
            "198.51.100.1/25",
            "2001:db8:ff:1::",
            "203.0.113.1/25",
            "203.0.113.2/25",
            "2001:db8:1:1::",
        ),
        (
            2,
            &r2,
            "198.51.100.130/25",
            "198.51.100.129/25",
            "2001:db8:ff:2::",
            "203.0.113.129/25",
            "203.0.113.130/25",
            "2001:db8:1:2::",
        ),
    ] {
        let (node, inet_if) = (lab.ns(k), format!("eth{k}"));
        ip(&[
            "link", "add", "up0", "netns", &node, "type", "veth", "peer", "name", "r0", "netns",
            router,
        ]);
        ip(&[
            "link", "add", "r1", "netns", router, "type", "veth", "peer", "name", &inet_if,
            "netns", &inet,
        ]);
        for (ns, dev, a6, a4) in [
            (
                node.clone(),
                "up0".to_string(),
                format!("{v6}2/64"),
                v4_exit.to_string(),
            ),
            (
                router.to_string(),
                "r0".into(),
                format!("{v6}1/64"),
                v4_router.to_string(),
            ),
            (
                router.to_string(),
                "r1".into(),
                format!("{v6_up}1/64"),
                v4_up.to_string(),
            ),
            (
                inet.clone(),
                inet_if.clone(),
                format!("{v6_up}2/64"),
                v4_inet.to_string(),
            ),
        ] {
            ip(&["-n", &ns, "addr", "add", &a6, "dev", &dev, "nodad"]);
            ip(&["-n", &ns, "addr", "add", &a4, "dev", &dev]);
            ip(&["-n", &ns, "link", "set", &dev, "up"]);
        }
        ip(&[
            "netns",
            "exec",
            router,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv4.ip_forward=1",
        ]);
        ip(&[
            "-n",
            router,
            "route",
            "add",
            "default",
            "via",
            v4_inet.split('/').next().unwrap(),
        ]);
        ip(&[
            "-n",
            router,
            "-6",
            "route",
            "add",
            "default",
            "via",
            &format!("{v6_up}2"),
        ]);
        let exit_net4 = if k == 1 {
            "198.51.100.0/25"
        } else {
            "198.51.100.128/25"
        };
        ip(&[
            "-n",
            &inet,
            "route",
            "add",
            exit_net4,
            "via",
            v4_up.split('/').next().unwrap(),
        ]);
        ip(&[
            "-n",
            &inet,
            "-6",
            "route",
            "add",
            &format!("{v6}/64"),
            "via",
            &format!("{v6_up}1"),
        ]);
    }
    // The internet's own addresses, and the way back to the mesh through exit 1's router.
    ip(&["-n", &inet, "addr", "add", "192.0.2.1/32", "dev", "lo"]);
    ip(&[
        "-n",
        &inet,
        "addr",
        "add",
        "2001:db8:1:ff::1/128",
        "dev",
        "lo",
    ]);
    ip(&[
        "-n",
        &inet,
        "-6",
        "route",
        "add",
        "2001:db8:bd00::/48",
        "via",
        "2001:db8:1:1::1",
    ]);

    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(dir.path(), &ConfigOptions::default())
        .unwrap();
    let registry_path = dir.path().join("registry.json");
    let mut registry: Value =
        serde_json::from_str(&std::fs::read_to_string(&registry_path).unwrap()).unwrap();
    registry[0]["exit_preference"] = json!(100);
    registry[1]["exit_preference"] = json!(200);
    std::fs::write(&registry_path, registry.to_string()).unwrap();
    for f in &files {
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(&f.config).unwrap()).unwrap();
        config["routing"] = json!({"mode": "babel", "hello_interval": 1});
        if f.index <= 2 {
            let (gw6, gw4) = if f.index == 1 {
                ("2001:db8:ff:1::1", "198.51.100.1")
            } else {
                ("2001:db8:ff:2::1", "198.51.100.129")
            };
            config["exit"] = json!({"upstream_interface": "up0", "gateway6": gw6, "gateway4": gw4});
        }
        std::fs::write(&f.config, config.to_string()).unwrap();
    }
    start_daemons(&lab, &files);
    wait_for_bridges(&lab, n);
    // Each router learns the way back to the mesh from its exit.
    for (k, router) in [(1, &r1), (2, &r2)] {
        let routes = lab
            .exec(
                k,
                env!("CARGO_BIN_EXE_braid"),
                &[
                    "routes",
                    "--upstream",
                    "-c",
                    files[k - 1].config.to_str().unwrap(),
                ],
            )
            .unwrap();
        ip(&[
            "netns",
            "exec",
            router,
            "sh",
            "-e",
            "-c",
            &String::from_utf8_lossy(&routes.stdout),
        ]);
    }
    lab.add_workload(3, "braid0").unwrap();

    wait_until("w3 -> internet over IPv6", Duration::from_secs(60), || {
        lab.workload_ping(3, "2001:db8:1:ff::1")
    });
    wait_until("w3 -> internet over IPv4", Duration::from_secs(30), || {
        lab.workload_ping(3, "192.0.2.1")
    });
    // Babel settles on the preferred exit (preference 100).
    wait_until(
        "the preferred exit carrying w3's traffic",
        Duration::from_secs(60),
        || exit_used(&lab) == Some(1),
    );
    // The default route node 3 learned is source-specific from the allocation.
    let routes = String::from_utf8_lossy(
        &lab.exec(
            3,
            "ip",
            &["-6", "route", "show", "table", "98", "proto", "babel"],
        )
        .unwrap()
        .stdout,
    )
    .to_string();
    assert!(routes.contains("from 2001:db8:bd00::/48"), "{routes}");

    // Exit 1 goes away (its underlay to every node is cut): traffic moves to exit 2.
    for j in 2..=n {
        lab.cut(1, j).unwrap();
    }
    wait_until(
        "w3 -> internet over IPv4 through exit 2",
        Duration::from_secs(90),
        || exit_used(&lab) == Some(2) && lab.workload_ping(3, "192.0.2.1"),
    );
}
