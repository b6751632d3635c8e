//! Real links in real namespaces: braid to braid, and braid to wireguard-go configured with
//! `wg` (wireguard-tools). Traffic stays inside the lab's namespaces.

mod common;

use braid_lab::{Lab, LabSpec};
use braid_link::Link;
use common::*;
use std::process::Command;

#[test]
fn braid_to_braid_carries_ipv4_and_ipv6() {
    if !braid_lab::available_or_skip("braid_to_braid_carries_ipv4_and_ipv6") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&lab_name("lb"), 2)).unwrap();
    let (a, b) = (key_pair(), key_pair());
    let la = start_in(
        &lab,
        1,
        config("brdt2", 40004, Some("198.18.0.2:40002"), &a, &b.1, 1),
    );
    let lb = start_in(
        &lab,
        2,
        config("brdt1", 40002, Some("198.18.0.1:40004"), &b, &a.1, 2),
    );
    wait_for("IPv4 ping over the link", || lab.ping(1, "169.254.0.2"));
    assert!(lab.ping(2, "169.254.0.1"));
    assert!(
        lab.ping(1, "fe80::2%brdt2"),
        "IPv6 link-local over the link"
    );
    let (sa, sb) = (la.stats(), lb.stats());
    assert!(sa.last_handshake.is_some() && sb.last_handshake.is_some());
    assert!(sa.tx_packets >= 3 && sb.rx_packets >= 3, "{sa:?} {sb:?}");
    assert_eq!(sa.listen_port, 40004);
    // The interface carries braid's group and MTU.
    let link = String::from_utf8_lossy(
        &lab.exec(1, "ip", &["-d", "link", "show", "brdt2"])
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(
        link.contains("mtu 1420") && link.contains("group 2"),
        "{link}"
    );
    la.stop();
    lb.stop();
    // The TUN devices are gone with the links. (Closing the device's last descriptor
    // removes it; a process another test forks at that moment holds a copy until its exec,
    // so allow a moment.)
    wait_for("brdt2 removed", || {
        !lab.try_exec(1, "ip", &["link", "show", "brdt2"])
            .unwrap()
            .status
            .success()
    });
}

#[test]
fn a_peer_without_endpoint_is_reached_when_it_dials_in_and_garbage_is_counted() {
    if !braid_lab::available_or_skip("a_peer_without_endpoint_is_reached_when_it_dials_in") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&lab_name("lr"), 2)).unwrap();
    let (a, b) = (key_pair(), key_pair());
    // Node 1 does not know where node 2 is (node 2 is "behind NAT").
    let la = start_in(&lab, 1, config("brdt2", 40004, None, &a, &b.1, 1));
    let lb = start_in(
        &lab,
        2,
        config("brdt1", 40002, Some("198.18.0.1:40004"), &b, &a.1, 2),
    );
    wait_for("node 2 dialling in", || lab.ping(2, "169.254.0.1"));
    assert!(
        lab.ping(1, "169.254.0.2"),
        "node 1 answers over the roamed endpoint"
    );
    assert_eq!(la.stats().endpoint.unwrap().to_string(), "198.18.0.2:40002");
    // Garbage and a handshake from a stranger are dropped and counted.
    let junk = "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'\\x04' + b'x'*40, ('198.18.0.1', 40004)); s.sendto(b'\\x01' + b'y'*147, ('198.18.0.1', 40004))";
    lab.exec(2, "python3", &["-c", junk]).unwrap();
    wait_for("drops counted", || {
        let s = la.stats();
        s.dropped_bad_packet + s.dropped_unknown_key >= 2
    });
    assert!(lab.ping(1, "169.254.0.2"), "the link still works");
    drop(lb);
}

#[test]
fn a_busy_port_is_a_clear_error() {
    if !braid_lab::available_or_skip("a_busy_port_is_a_clear_error") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&lab_name("lp"), 1)).unwrap();
    let (a, b) = (key_pair(), key_pair());
    let _first = start_in(&lab, 1, config("brdt7", 40010, None, &a, &b.1, 1));
    let err = braid_system::netns::run_in(&lab.ns(1), move || {
        Link::start(config("brdt8", 40010, None, &a, &b.1, 1)).err()
    })
    .unwrap()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "link brdt8: UDP port 40010 is already in use"
    );
}

fn wg(lab: &Lab, node: usize, args: &[&str]) -> String {
    let out = lab.exec(node, "wg", args).unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Node 1 runs a braid link, node 2 wireguard-go configured with `wg set`. `braid_dials`:
/// only braid knows the other's endpoint (else only wireguard-go does), so the first
/// handshake comes from that side.
fn wireguard_go_pair(test: &str, tag: &str, braid_dials: bool) {
    if !braid_lab::available_or_skip(test) {
        return;
    }
    for tool in ["wireguard-go", "wg", "iperf3"] {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!("SKIPPED {test}: {tool} is not installed");
            return;
        }
    }
    let lab = Lab::up(LabSpec::new(&lab_name(tag), 2)).unwrap();
    let (a, b) = (key_pair(), key_pair());
    // wireguard-go's UAPI socket lives in the shared /var/run/wireguard: use a unique name.
    let ifname = format!("brdwg{:x}{tag}", std::process::id() % 0xffff);
    let dir = std::env::temp_dir().join(format!("brd-wg-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let endpoint = (!braid_dials).then_some("198.18.0.1:40004");
    wireguard_go_on_node2(
        &lab,
        std::path::Path::new("wireguard-go"),
        &ifname,
        &b,
        &a.1,
        endpoint,
        &dir,
    );
    let endpoint = braid_dials.then_some("198.18.0.2:40002");
    let la = start_in(&lab, 1, config("brdt2", 40004, endpoint, &a, &b.1, 1));
    if braid_dials {
        wait_for("ping braid -> wireguard-go", || lab.ping(1, "169.254.0.2"));
        assert!(lab.ping(2, "169.254.0.1"), "ping wireguard-go -> braid");
    } else {
        // Traffic from wireguard-go's side starts the handshake (wireguard-go retries it
        // every 5 s; on a loaded machine the first attempts can be lost).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
        while !lab.ping(2, "169.254.0.1") {
            assert!(
                std::time::Instant::now() < deadline,
                "no ping wireguard-go -> braid in 40 s; braid: {:?}; wireguard-go: {}",
                la.stats(),
                wg(&lab, 2, &["show", &ifname, "dump"])
            );
        }
        assert!(lab.ping(1, "169.254.0.2"), "ping braid -> wireguard-go");
        assert_eq!(
            la.stats().endpoint.unwrap().to_string(),
            "198.18.0.2:40002",
            "braid learned the endpoint"
        );
    }
    let handshakes = wg(&lab, 2, &["show", &ifname, "latest-handshakes"]);
    let when: u64 = handshakes
        .split_whitespace()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    assert!(when > 0, "wg show reports no handshake: {handshakes}");
    assert!(la.stats().last_handshake.is_some());
    let forward = iperf3_mbits(&lab, false, 5);
    let reverse = iperf3_mbits(&lab, true, 5);
    eprintln!(
        "{test}: iperf3 braid -> wireguard-go {forward:.0} Mbit/s, wireguard-go -> braid {reverse:.0} Mbit/s"
    );
    assert!(forward > 1.0 && reverse > 1.0, "{forward} {reverse}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn braid_dials_wireguard_go() {
    wireguard_go_pair("braid_dials_wireguard_go", "wa", true);
}

#[test]
fn wireguard_go_dials_braid() {
    wireguard_go_pair("wireguard_go_dials_braid", "wb", false);
}
