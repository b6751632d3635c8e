//! Multi-WAN bonding with the real binary in the lab: node 1 has two uplinks (wan0, wan1
//! through the lab's hub, each with a default route in its own table), node 2 one. braid
//! installs the path policy rules, bonds the two paths, takes a path out when its uplink
//! goes down or goes silent, uses it again when it is back, follows the uplinks with
//! `wan: "auto"`, and removes its rules on down.

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec, NodeFiles};
use serde_json::Value;
use std::time::{Duration, Instant};

fn lab_name(tag: &str) -> String {
    format!("{tag}{:x}", std::process::id() % 0xffff)
}

fn bonded_lab(tag: &str, scheduler: &str) -> (Lab, tempfile::TempDir, Vec<NodeFiles>) {
    let lab = Lab::up(LabSpec::new(&lab_name(tag), 2).with_wans(&[2, 1])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(
            dir.path(),
            &ConfigOptions {
                ip6: false,
                scheduler: Some(scheduler.into()),
                ..ConfigOptions::default()
            },
        )
        .unwrap();
    (lab, dir, files)
}

/// The bond of node `f`'s first link, from `braid status --json`.
fn bond(f: &NodeFiles) -> Value {
    let out = braid(&["status", "--json", "-c", f.config.to_str().unwrap()]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    doc["links"][0]["bond"].clone()
}

fn states(bond: &Value) -> Vec<String> {
    bond["paths"]
        .as_array()
        .map(|p| {
            p.iter()
                .map(|p| p["state"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn rules(lab: &Lab) -> String {
    String::from_utf8_lossy(&lab.exec(1, "ip", &["rule", "show"]).unwrap().stdout).to_string()
}

/// Pings node 2's link address from node 1, `count` at 10 ms; returns the number lost.
fn lost(lab: &Lab, count: u32) -> u32 {
    lab.lost_pings(1, "169.254.0.2", count, 56)
}

#[test]
fn two_uplinks_bond_fail_over_and_come_back() {
    if !braid_lab::available_or_skip("two_uplinks_bond_fail_over_and_come_back") {
        return;
    }
    let (lab, _dir, files) = bonded_lab("bo", "round-robin");
    start_daemons(&lab, &files);
    wait_until("both paths up", Duration::from_secs(20), || {
        states(&bond(&files[0])) == ["up", "up"]
    });
    let r = rules(&lab);
    assert!(
        r.contains("oif wan0 lookup 100 proto 98") && r.contains("oif wan1 lookup 101 proto 98"),
        "{r}"
    );
    assert_eq!(lost(&lab, 100), 0);
    let table = braid(&["status", "-c", files[0].config.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("scheduler round-robin (configured)")
            && table.contains("\n  wan0 ")
            && table.contains("\n  wan1 "),
        "{table}"
    );
    let metrics = http(&lab.ns(1), "GET", "/metrics").1;
    assert_eq!(
        sample(
            &metrics,
            "braid_path_up",
            &["link=\"brd4x40004\"", "path=\"wan1\""]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "braid_path_rtt_seconds", &["path=\"wan0\""]).is_some_and(|v| v > 0.0)
    );
    // A new healthy path shows no loss: probes before its first answer are not counted.
    for path in ["wan0", "wan1"] {
        let loss = sample(
            &metrics,
            "braid_path_loss_ratio",
            &[&format!("path=\"{path}\"")],
        );
        assert!(
            loss.is_some_and(|l| l < 0.05),
            "{path}: {loss:?}\n{metrics}"
        );
        assert!(
            sample(
                &metrics,
                "braid_path_traffic_share_ratio",
                &[&format!("path=\"{path}\"")]
            )
            .is_some(),
            "{metrics}"
        );
    }
    let far = bond(&files[1]);
    assert_eq!(
        far["scheduler"], "round-robin",
        "the far side follows: {far}"
    );

    // wan1's link goes down: netlink takes the path out at once.
    lab.set_wan_link(1, 1, false).unwrap();
    let t = Instant::now();
    wait_until("wan1 out", Duration::from_secs(2), || {
        let b = bond(&files[0]);
        b["paths"][1]["state"] == "down" && b["paths"][1]["down_reason"] == "admin"
    });
    eprintln!("wan1 link down -> path out in {:?}", t.elapsed());
    // The far side learns of it from its probes (within the 300 ms failover target).
    let gap = lost(&lab, 50);
    assert!(gap <= 35, "{gap} of 50 pings lost after the link went down");
    assert_eq!(lost(&lab, 50), 0, "wan0 carries everything");
    lab.set_wan_link(1, 1, true).unwrap();
    wait_until("wan1 back", Duration::from_secs(5), || {
        states(&bond(&files[0])) == ["up", "up"]
    });

    // wan0 goes silent (dropped in the hub, the link stays up): probes take it out.
    lab.cut_wan(1, 0).unwrap();
    let gap = lost(&lab, 200);
    assert!(
        gap <= 40,
        "{gap} of 200 pings at 10 ms lost across a silent cut"
    );
    assert_eq!(states(&bond(&files[0]))[0], "down");
    lab.restore_wan(1, 0).unwrap();
    let t = Instant::now();
    wait_until("wan0 back", Duration::from_secs(5), || {
        states(&bond(&files[0])) == ["up", "up"]
    });
    eprintln!(
        "silent cut: {gap} pings lost; restored path up in {:?}",
        t.elapsed()
    );

    // down removes braid's rules.
    let out = braid(&["down", "-c", files[0].config.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(!rules(&lab).contains("proto 98"), "{}", rules(&lab));
}

#[test]
fn wan_auto_follows_the_uplinks() {
    if !braid_lab::available_or_skip("wan_auto_follows_the_uplinks") {
        return;
    }
    let (lab, _dir, files) = bonded_lab("ba", "weighted");
    // Node 1 lists no paths: it finds its uplinks by their tables.
    edit_json(&files[0].config, |doc| {
        for t in doc["transport"].as_array_mut().unwrap() {
            let t = t.as_object_mut().unwrap();
            t.remove("paths");
            t.insert("wan".into(), "auto".into());
        }
    });
    start_daemons(&lab, &files);
    wait_until("two paths found", Duration::from_secs(20), || {
        states(&bond(&files[0])) == ["up", "up"]
    });
    assert_eq!(bond(&files[0])["scheduler"], "weighted");
    // An uplink goes away: its path is out at once, the link and its bond stay (no
    // reload, no new socket); it comes back: the same path is probed and up again.
    let log = files[0].config.with_file_name("braid.log");
    let remade = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("link recreated")
            .count()
    };
    let remade_before = remade();
    lab.set_wan_link(1, 1, false).unwrap();
    wait_until("wan1's path out", Duration::from_secs(10), || {
        states(&bond(&files[0])) == ["up", "down"] && lost(&lab, 5) == 0
    });
    lab.set_wan_link(1, 1, true).unwrap();
    wait_until("two paths again", Duration::from_secs(15), || {
        states(&bond(&files[0])) == ["up", "up"] && lost(&lab, 3) == 0
    });
    assert_eq!(lost(&lab, 50), 0);
    assert_eq!(remade(), remade_before, "the link was made again");
}

/// Bytes node 1 sent on each path so far.
fn sent(f: &NodeFiles) -> Vec<u64> {
    bond(f)["paths"]
        .as_array()
        .map(|p| {
            p.iter()
                .map(|p| p["tx_bytes"].as_u64().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

/// 200 pings of 1000 bytes at 10 ms; returns the bytes each path sent meanwhile.
fn spread(lab: &Lab, f: &NodeFiles) -> Vec<u64> {
    let before = sent(f);
    assert_eq!(lab.lost_pings(1, "169.254.0.2", 200, 1000), 0);
    // The status is published twice a second.
    std::thread::sleep(Duration::from_millis(700));
    sent(f).iter().zip(&before).map(|(a, b)| a - b).collect()
}

#[test]
fn flow_redundant_and_backup_spread_as_configured() {
    if !braid_lab::available_or_skip("flow_redundant_and_backup_spread_as_configured") {
        return;
    }
    // 200 pings of ~1 KB put ~210 KB on a path that carries them; probes put ~10 KB on each.
    let carried = 150_000;
    let idle = 40_000;
    for scheduler in ["flow", "redundant", "backup"] {
        let (lab, _dir, files) = bonded_lab(&format!("b{}", &scheduler[..1]), scheduler);
        start_daemons(&lab, &files);
        wait_until("both paths up", Duration::from_secs(20), || {
            states(&bond(&files[0])) == ["up", "up"]
        });
        let d = spread(&lab, &files[0]);
        eprintln!("{scheduler}: bytes per path {d:?}");
        match scheduler {
            // One flow (one ping), one path.
            "flow" => assert!(
                d.iter().filter(|&&b| b > carried).count() == 1
                    && d.iter().filter(|&&b| b < idle).count() == 1,
                "flow: {d:?}"
            ),
            // Every packet on every path.
            "redundant" => assert!(d.iter().all(|&b| b > carried), "redundant: {d:?}"),
            // The preferred path only (equal priorities: the first), until it fails.
            _ => {
                assert!(d[0] > carried && d[1] < idle, "backup: {d:?}");
                lab.cut_wan(1, 0).unwrap();
                wait_until("wan0 out", Duration::from_secs(3), || {
                    states(&bond(&files[0]))[0] == "down"
                });
                let d = spread(&lab, &files[0]);
                assert!(d[1] > carried, "backup after the cut: {d:?}");
            }
        }
    }
}
