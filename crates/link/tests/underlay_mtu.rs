//! Links over an underlay whose MTU is below the link MTU plus WireGuard's overhead (issue
//! 15, defect 3): a veth pair of MTU 1300 under links of MTU 1420, so every full-size
//! encrypted datagram (1420 + 32 bytes of WireGuard, + 28 of UDP/IPv4 = 1480 bytes) is larger
//! than the underlay. The kernel must fragment it at the source, GSO batches included; before
//! the fix braid dropped them silently (small pings passed, a TCP stream moved 0 bytes).
//!
//! braid to braid (IPv4 and IPv6 underlays), braid to wireguard-go 0.0.20250522 (the current
//! release, with UDP GSO, from `/work/shared/anchors/bin/`) and to Debian's wireguard-go.
//! Traffic stays inside the lab's namespaces.

mod common;

use braid_lab::{Lab, LabSpec};
use common::*;
use std::process::Command;

/// The underlay MTU under test (an IPv6 minimum path is 1280; PPPoE is 1492).
const UNDERLAY_MTU: &str = "1300";
/// ICMP payload of a ping that fills the link MTU: 1392 + 8 (ICMP) + 20 (IPv4) = 1420.
const FULL_PING: u32 = 1392;

/// Sets both ends of the lab's veth pair to [`UNDERLAY_MTU`].
fn narrow_underlay(lab: &Lab) {
    lab.exec(1, "ip", &["link", "set", "u2", "mtu", UNDERLAY_MTU])
        .unwrap();
    lab.exec(2, "ip", &["link", "set", "u1", "mtu", UNDERLAY_MTU])
        .unwrap();
}

/// Full-size pings both ways (10 each, `-M do`: the overlay must not fragment them itself):
/// how many got no answer, as (1 -> 2, 2 -> 1).
fn full_size_ping_losses(lab: &Lab) -> (u32, u32) {
    let lost = |from: usize, to: &str| {
        let size = FULL_PING.to_string();
        let out = lab
            .try_exec(
                from,
                "ping",
                &[
                    "-n", "-q", "-M", "do", "-i", "0.05", "-W", "1", "-s", &size, "-c", "10", to,
                ],
            )
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let received = text
            .split(", ")
            .find_map(|part| part.strip_suffix(" received"))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or(0);
        10 - received.min(10)
    };
    (lost(1, "169.254.0.2"), lost(2, "169.254.0.1"))
}

fn tools_or_skip(test: &str, tools: &[&str]) -> bool {
    if !braid_lab::available_or_skip(test) {
        return false;
    }
    for tool in tools {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!("\n*** SKIPPED {test}: {tool} is not installed (scripts/deps.sh) ***\n");
            return false;
        }
    }
    true
}

/// Two braid links over the narrow underlay, on IPv4 or IPv6 endpoints: full-size pings
/// and one TCP stream each way pass, and both ends count the fragmented datagrams and learn
/// the underlay's MTU.
fn braid_pair(test: &str, tag: &str, ipv6: bool) {
    if !tools_or_skip(test, &["iperf3"]) {
        return;
    }
    let lab = Lab::up(LabSpec::new(&lab_name(tag), 2)).unwrap();
    narrow_underlay(&lab);
    let (a, b) = (key_pair(), key_pair());
    let (to_b, to_a) = if ipv6 {
        ("[2001:db8::2]:40002", "[2001:db8::1]:40004")
    } else {
        ("198.18.0.2:40002", "198.18.0.1:40004")
    };
    let mut ca = config("brdm2", 40004, Some(to_b), &a, &b.1, 1);
    let mut cb = config("brdm1", 40002, Some(to_a), &b, &a.1, 2);
    ca.ipv6 = ipv6;
    cb.ipv6 = ipv6;
    let la = start_in(&lab, 1, ca);
    let lb = start_in(&lab, 2, cb);
    wait_for("a small ping over the link", || lab.ping(1, "169.254.0.2"));
    assert_eq!(
        full_size_ping_losses(&lab),
        (0, 0),
        "pings of {FULL_PING} bytes (datagrams of {} bytes on a {UNDERLAY_MTU}-byte underlay)",
        FULL_PING + 28 + 32 + if ipv6 { 48 } else { 28 }
    );
    // Single datagrams (no GSO batch) are counted and teach the MTU too: each node sent 20
    // full-size ones (its pings and its answers).
    for (node, link) in [(1, &la), (2, &lb)] {
        let s = link.stats();
        assert!(
            s.tx_fragmented >= 20 && s.underlay_mtu == Some(1300),
            "node {node} after the pings: {s:?}"
        );
    }
    let forward = iperf3_mbits(&lab, false, 5);
    let reverse = iperf3_mbits(&lab, true, 5);
    eprintln!("{test}: one TCP stream 1 -> 2 {forward:.0} Mbit/s, 2 -> 1 {reverse:.0} Mbit/s");
    assert!(
        forward > 10.0 && reverse > 10.0,
        "one TCP stream: {forward:.1} and {reverse:.1} Mbit/s"
    );
    for (node, link) in [(1, &la), (2, &lb)] {
        let s = link.stats();
        eprintln!(
            "{test}: node {node}: tx {} datagrams, {} fragmented, {} GSO fallbacks, underlay MTU {:?}",
            s.tx_packets, s.tx_fragmented, s.tx_gso_fallbacks, s.underlay_mtu
        );
        assert_eq!(s.underlay_mtu, Some(1300), "node {node}: {s:?}");
        // Once the MTU is known, TCP bursts are cut to fit (reseg): few datagrams need
        // fragments (the pings, a burst when the MTU is checked again every 10 s).
        assert!(s.tx_fragmented < s.tx_packets / 20, "node {node}: {s:?}");
    }
    drop((la, lb));
}

#[test]
fn braid_to_braid_over_a_1300_byte_ipv4_underlay() {
    braid_pair("braid_to_braid_over_a_1300_byte_ipv4_underlay", "um", false);
}

#[test]
fn braid_to_braid_over_a_1300_byte_ipv6_underlay() {
    braid_pair("braid_to_braid_over_a_1300_byte_ipv6_underlay", "u6", true);
}

/// Node 1 runs braid, node 2 the wireguard-go at `binary` configured with `wg set`; both
/// over the narrow underlay. Full-size pings pass both ways and one TCP stream moves from
/// braid to wireguard-go. With `peer_sends`, one stream from wireguard-go to braid too.
fn wireguard_go_pair(test: &str, tag: &str, binary: &str, peer_sends: bool) {
    if !tools_or_skip(test, &["wg", "iperf3"]) {
        return;
    }
    if !std::path::Path::new(binary).exists() {
        eprintln!("\n*** SKIPPED {test}: {binary} is missing (scripts/deps.sh) ***\n");
        return;
    }
    let lab = Lab::up(LabSpec::new(&lab_name(tag), 2)).unwrap();
    narrow_underlay(&lab);
    let (a, b) = (key_pair(), key_pair());
    // wireguard-go's UAPI socket lives in the shared /var/run/wireguard: a unique name.
    let ifname = format!("brdu{tag}{:x}", std::process::id() % 0xffff);
    let dir = TempDir::new(&format!("brd-{tag}-{}", std::process::id()));
    wireguard_go_on_node2(
        &lab,
        std::path::Path::new(binary),
        &ifname,
        &b,
        &a.1,
        Some("198.18.0.1:40004"),
        &dir.0,
    );
    let la = start_in(
        &lab,
        1,
        config("brdm2", 40004, Some("198.18.0.2:40002"), &a, &b.1, 1),
    );
    wait_for("a small ping braid -> wireguard-go", || {
        lab.ping(1, "169.254.0.2")
    });
    assert_eq!(
        full_size_ping_losses(&lab),
        (0, 0),
        "pings of {FULL_PING} bytes both ways"
    );
    let forward = iperf3_mbits(&lab, false, 5);
    let reverse = iperf3_mbits(&lab, true, 5);
    eprintln!(
        "{test}: one TCP stream braid -> wireguard-go {forward:.0} Mbit/s, wireguard-go -> braid {reverse:.0} Mbit/s"
    );
    assert!(
        forward > 10.0,
        "one TCP stream braid -> wireguard-go: {forward:.1} Mbit/s"
    );
    if peer_sends {
        assert!(
            reverse > 10.0,
            "one TCP stream wireguard-go -> braid: {reverse:.1} Mbit/s"
        );
    }
    let s = la.stats();
    assert!(
        s.underlay_mtu == Some(1300) && s.tx_fragmented < s.tx_packets / 20,
        "{s:?}"
    );
    drop(la);
    // The lab ends wireguard-go; its socket file goes with it.
    drop(lab);
    let _ = std::fs::remove_file(format!("/var/run/wireguard/{ifname}.sock"));
}

/// The current wireguard-go release. Only braid's direction is asserted: this release's own
/// UDP GSO sends fail on this underlay ("sendmmsg: message too long", it has no fallback), so
/// its TCP stream toward braid moves next to nothing; full-size pings (single datagrams,
/// fragmented by its kernel) pass both ways.
#[test]
fn braid_to_wireguard_go_0_0_20250522_over_a_1300_byte_underlay() {
    wireguard_go_pair(
        "braid_to_wireguard_go_0_0_20250522_over_a_1300_byte_underlay",
        "uw",
        "/work/shared/anchors/bin/wireguard-go-0.0.20250522",
        false,
    );
}

/// Debian's wireguard-go (no GSO): both directions carry a TCP stream.
#[test]
fn braid_and_debian_wireguard_go_over_a_1300_byte_underlay() {
    wireguard_go_pair(
        "braid_and_debian_wireguard_go_over_a_1300_byte_underlay",
        "ud",
        "/usr/bin/wireguard-go",
        true,
    );
}
