//! A bonded link in real namespaces: node 1 has two paths to node 2 (the lab's veth and a
//! second veth pair made here), node 2 has no path configured and learns them. Traffic
//! stays inside the lab's namespaces.

mod common;

use braid_lab::{Lab, LabSpec};
use braid_link::Link;
use braid_model::extensions::{PathConfig, Scheduler};
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A second underlay between nodes 1 and 2: `bp1` (198.51.100.1) on node 1, `bp2` on node
/// 2, which also answers for node 2's underlay address, so that a socket bound to `bp1`
/// reaches 198.18.0.2 on-link.
fn second_underlay(lab: &Lab) {
    let ns2 = lab.ns(2);
    lab.exec(
        1,
        "ip",
        &[
            "link", "add", "bp1", "type", "veth", "peer", "name", "bp2", "netns", &ns2,
        ],
    )
    .unwrap();
    lab.exec(1, "ip", &["addr", "add", "198.51.100.1/32", "dev", "bp1"])
        .unwrap();
    lab.exec(1, "ip", &["link", "set", "bp1", "up"]).unwrap();
    lab.exec(2, "ip", &["addr", "add", "198.18.0.2/32", "dev", "bp2"])
        .unwrap();
    lab.exec(2, "ip", &["link", "set", "bp2", "up"]).unwrap();
    lab.exec(2, "ip", &["route", "add", "198.51.100.1/32", "dev", "bp2"])
        .unwrap();
}

fn path(interface: &str) -> PathConfig {
    PathConfig {
        interface: Some(interface.into()),
        ..PathConfig::default()
    }
}

fn bond(link: &Link) -> Value {
    serde_json::to_value(link.stats().bond).unwrap_or(Value::Null)
}

/// The number of paths in `state` and their tx packet counts.
fn paths_in(status: &Value, state: &str) -> Vec<u64> {
    status["paths"]
        .as_array()
        .map(|paths| {
            paths
                .iter()
                .filter(|p| p["state"] == state)
                .map(|p| p["tx_packets"].as_u64().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

/// Pings node 2 from node 1 over the link, `count` at 10 ms; returns how many were lost.
fn lost_pings(lab: &Lab, count: u32) -> u32 {
    lab.lost_pings(1, "169.254.0.2", count, 56)
}

#[test]
fn a_bonded_link_uses_both_paths_and_survives_losing_one() {
    if !braid_lab::available_or_skip("a_bonded_link_uses_both_paths_and_survives_losing_one") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&lab_name("mp"), 2)).unwrap();
    second_underlay(&lab);
    let (a, b) = (key_pair(), key_pair());
    let mut bonded = config("brdm2", 40004, Some("198.18.0.2:40002"), &a, &b.1, 1);
    bonded.paths = vec![path("u2"), path("bp1")];
    bonded.scheduler = Scheduler::RoundRobin;
    let la = start_in(&lab, 1, bonded);
    // Node 2 knows nothing of paths, nor where node 1 is: it learns both.
    let lb = start_in(&lab, 2, config("brdm1", 40002, None, &b, &a.1, 2));

    wait_for("ping over the bonded link", || lab.ping(1, "169.254.0.2"));
    wait_for("both paths up on node 1", || {
        paths_in(&bond(&la), "up").len() == 2
    });
    assert_eq!(lost_pings(&lab, 100), 0, "no loss with both paths up");
    let status = bond(&la);
    let sent = paths_in(&status, "up");
    assert!(
        sent.iter().all(|&n| n >= 20),
        "round-robin uses both paths: {status}"
    );
    wait_for(
        "node 2 learned both paths and follows the scheduler",
        || {
            let far = bond(&lb);
            far["peer_probes"] == true
                && paths_in(&far, "up").len() == 2
                && far["scheduler"] == "round-robin"
        },
    );

    // Cut the second path (its far end goes down): pings go on over the first one.
    lab.exec(2, "ip", &["link", "set", "bp2", "down"]).unwrap();
    let cut = Instant::now();
    let lost = lost_pings(&lab, 200);
    assert!(
        lost <= 40,
        "{lost} of 200 pings at 10 ms lost after a path cut (failover target 300 ms)"
    );
    wait_for("the cut path is down", || {
        paths_in(&bond(&la), "down").len() == 1
    });
    eprintln!(
        "path out after a cut: {lost} pings lost, {:?}",
        cut.elapsed()
    );
    assert_eq!(lost_pings(&lab, 50), 0, "one path carries everything");

    // Restore it (the route back went with the interface): used again.
    lab.exec(2, "ip", &["link", "set", "bp2", "up"]).unwrap();
    lab.exec(
        2,
        "ip",
        &["route", "replace", "198.51.100.1/32", "dev", "bp2"],
    )
    .unwrap();
    let restored = Instant::now();
    wait_for("the path is back", || paths_in(&bond(&la), "up").len() == 2);
    let back = restored.elapsed();
    eprintln!("path back after a restore: {back:?}");
    assert!(back < Duration::from_secs(5), "path back after {back:?}");
    let before = paths_in(&bond(&la), "up");
    assert_eq!(lost_pings(&lab, 50), 0);
    let after = paths_in(&bond(&la), "up");
    assert!(
        before.iter().zip(&after).all(|(b, a)| a > b),
        "both paths carry traffic again: {before:?} -> {after:?}"
    );
    drop((la, lb));
}
