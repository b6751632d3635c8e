//! A new uplink joins a running bonded link in place, with the real binary in the lab:
//! node 1 has three uplinks, the third down at the start; with `wan: "auto"` the link
//! bonds two paths, and when the third uplink comes up it gets a socket of its own, is
//! probed and carries its share, while the link (its interface, session and routes) stays.

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec, NodeFiles};
use serde_json::Value;
use std::time::Duration;

fn bond(f: &NodeFiles) -> Value {
    let out = braid(&["status", "--json", "-c", f.config.to_str().unwrap()]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    doc["links"][0]["bond"].clone()
}

fn paths(f: &NodeFiles) -> Vec<(String, String, u64)> {
    bond(f)["paths"]
        .as_array()
        .map(|p| {
            p.iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or("?").to_string(),
                        p["state"].as_str().unwrap_or("?").to_string(),
                        p["tx_bytes"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn states(f: &NodeFiles) -> Vec<String> {
    paths(f).into_iter().map(|(_, s, _)| s).collect()
}

#[test]
fn a_new_uplink_joins_the_running_bond_in_place() {
    if !braid_lab::available_or_skip("a_new_uplink_joins_the_running_bond_in_place") {
        return;
    }
    let lab = Lab::up(
        LabSpec::new(&format!("lp{:x}", std::process::id() % 0xffff), 2).with_wans(&[3, 1]),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(
            dir.path(),
            &ConfigOptions {
                ip6: false,
                scheduler: Some("round-robin".into()),
                ..ConfigOptions::default()
            },
        )
        .unwrap();
    edit_json(&files[0].config, |doc| {
        for t in doc["transport"].as_array_mut().unwrap() {
            let t = t.as_object_mut().unwrap();
            t.remove("paths");
            t.insert("wan".into(), "auto".into());
        }
    });
    lab.set_wan_link(1, 2, false).unwrap();
    start_daemons(&lab, &files);
    wait_until("two paths up", Duration::from_secs(30), || {
        states(&files[0]) == ["up", "up"]
    });
    let log = files[0].config.with_file_name("braid.log");
    let remade = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("link recreated")
            .count()
    };
    let remade_before = remade();
    assert_eq!(lab.lost_pings(1, "169.254.0.2", 50, 56), 0);

    lab.set_wan_link(1, 2, true).unwrap();
    wait_until("the third path up", Duration::from_secs(15), || {
        states(&files[0]) == ["up", "up", "up"]
    });
    let before = paths(&files[0]);
    assert_eq!(lab.lost_pings(1, "169.254.0.2", 200, 1000), 0);
    // The status is published twice a second.
    std::thread::sleep(Duration::from_millis(700));
    let after = paths(&files[0]);
    assert_eq!(after[2].0, "wan2", "{after:?}");
    let carried = after[2].2 - before[2].2;
    eprintln!("paths after the third joined: {after:?}; it carried {carried} bytes of the pings");
    assert!(
        carried > 40_000,
        "the new path carried {carried} bytes of ~200 kB: {after:?}"
    );
    assert_eq!(remade(), remade_before, "the link was made again");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("paths changed in place"), "{text}");
}
