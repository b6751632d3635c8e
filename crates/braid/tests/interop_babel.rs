//! A node that is plain wireguard-go + babeld, configured by hand from the registry (one
//! WireGuard interface per peer, named and numbered as braid's plan does it), joins a Babel
//! mesh of braid nodes and exchanges routes with them.

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

#[test]
fn a_wireguard_go_and_babeld_node_joins_a_braid_babel_mesh() {
    let test = "a_wireguard_go_and_babeld_node_joins_a_braid_babel_mesh";
    if !braid_lab::available_or_skip(test) {
        return;
    }
    for (tool, flag) in [
        ("wireguard-go", "--version"),
        ("wg", "--version"),
        ("babeld", "-V"),
    ] {
        if Command::new(tool).arg(flag).output().is_err() {
            eprintln!("SKIPPED {test}: {tool} is not installed");
            return;
        }
    }
    let n = 3;
    let lab = Lab::up(LabSpec::new(
        &format!("ib{:x}", std::process::id() % 0xffff),
        n,
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(
            dir.path(),
            &ConfigOptions {
                ip6: false,
                routing: "babel".into(),
                ..ConfigOptions::default()
            },
        )
        .unwrap();
    for f in &files[..2] {
        edit_json(&f.config, |c| c["routing"]["hello_interval"] = json!(1));
    }
    start_daemons(&lab, &files[..2]);

    // Node 3 by hand: its key from its config, one wireguard-go interface per peer.
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(&files[2].config).unwrap()).unwrap();
    let key_file = dir.path().join("n3.key");
    std::fs::write(&key_file, config["private_key"].as_str().unwrap()).unwrap();
    let registry: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("registry.json")).unwrap())
            .unwrap();
    let own_port = registry[2]["endpoints"][0]["send_port"].as_u64().unwrap();
    let ns3 = lab.ns(3);
    let mut interfaces = Vec::new();
    for peer in &registry.as_array().unwrap()[..2] {
        let endpoint = &peer["endpoints"][0];
        let port = endpoint["send_port"].as_u64().unwrap();
        // As the plan names and numbers it: prefix + the peer's send port, listening there.
        let ifname = format!("brd4x{port}");
        let mut go = Command::new("wireguard-go");
        go.args(["-f", &ifname])
            .env("LOG_LEVEL", "error")
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1");
        lab.spawn_logged(3, &mut go, Some(&dir.path().join(format!("{ifname}.log"))))
            .unwrap();
        wait_until(
            "wireguard-go's UAPI socket",
            Duration::from_secs(10),
            || std::path::Path::new(&format!("/var/run/wireguard/{ifname}.sock")).exists(),
        );
        let endpoint = format!("{}:{own_port}", endpoint["address"].as_str().unwrap());
        lab.exec(
            3,
            "wg",
            &[
                "set",
                &ifname,
                "private-key",
                key_file.to_str().unwrap(),
                "listen-port",
                &port.to_string(),
                "peer",
                peer["public_key"].as_str().unwrap(),
                "endpoint",
                &endpoint,
                "allowed-ips",
                "0.0.0.0/0,::/0",
                "persistent-keepalive",
                "5",
            ],
        )
        .unwrap();
        ip(&["-n", &ns3, "addr", "add", "fe80::3/64", "dev", &ifname]);
        ip(&["-n", &ns3, "link", "set", &ifname, "mtu", "1420", "up"]);
        interfaces.push(ifname);
    }
    // Its own /64 on a bridge, as a static route babeld can redistribute.
    ip(&["-n", &ns3, "link", "add", "br3", "type", "bridge"]);
    ip(&["-n", &ns3, "link", "set", "br3", "up"]);
    ip(&[
        "-n",
        &ns3,
        "addr",
        "add",
        "2001:db8:bd00:3::1/64",
        "dev",
        "br3",
        "nodad",
    ]);
    ip(&[
        "-n",
        &ns3,
        "-6",
        "route",
        "add",
        "2001:db8:bd00:3::/64",
        "dev",
        "br3",
        "proto",
        "static",
        "metric",
        "10",
    ]);
    let ctl = dir.path().join("n3-babeld.ctl");
    let conf = format!(
        "local-path-readwrite {}\ninterface br3 type wired\n{}redistribute proto 4 ip 2001:db8:bd00:3::/64 eq 64 allow\nredistribute local deny\nredistribute deny\n",
        ctl.display(),
        interfaces.iter().map(|i| format!("interface {i} type tunnel link-quality true split-horizon false rxcost 32 hello-interval 1\n")).collect::<String>()
    );
    std::fs::write(dir.path().join("n3-babeld.conf"), conf).unwrap();
    let mut babeld = Command::new("babeld");
    babeld
        .arg("-c")
        .arg(dir.path().join("n3-babeld.conf"))
        .arg("-I")
        .arg(dir.path().join("n3-babeld.pid"))
        .arg("-S")
        .arg(dir.path().join("n3-babeld.state"));
    lab.spawn_logged(3, &mut babeld, Some(&dir.path().join("n3-babeld.log")))
        .unwrap();

    // Routes flow both ways: braid's n1 learns n3's /64, n3 learns n1's.
    wait_until(
        "n1 learning n3's /64 from babeld on n3",
        Duration::from_secs(60),
        || {
            // over n1's link to n3 (brd4x<n3's send port>), via whichever link-local babeld on n3 uses
            String::from_utf8_lossy(
                &lab.exec(
                    1,
                    "ip",
                    &[
                        "-6",
                        "route",
                        "show",
                        "table",
                        "98",
                        "2001:db8:bd00:3::/64",
                        "proto",
                        "babel",
                    ],
                )
                .unwrap()
                .stdout,
            )
            .contains(&format!("dev brd4x{own_port}"))
        },
    );
    wait_until(
        "n3 learning n1's /64 from braid's babeld",
        Duration::from_secs(60),
        || {
            String::from_utf8_lossy(
                &lab.exec(
                    3,
                    "ip",
                    &[
                        "-6",
                        "route",
                        "show",
                        "2001:db8:bd00:1::/64",
                        "proto",
                        "babel",
                    ],
                )
                .unwrap()
                .stdout,
            )
            .contains("via fe80::1")
        },
    );
    wait_for_bridges(&lab, 2);
    lab.add_workload(1, "braid0").unwrap();
    wait_until(
        "n1's workload reaching n3's network",
        Duration::from_secs(30),
        || lab.workload_ping(1, "2001:db8:bd00:3::1"),
    );
}
