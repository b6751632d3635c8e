//! Benchmark (not a timed test; `#[ignore]`, run by bench/convergence.sh): in the 5-node
//! Babel lab with the A-E underlay blocked, the gap in a 10 ms ping from A's workload to E's
//! when the relay in use is cut, for hello intervals of 1 s and 4 s.

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Returns (relay before, relay after, lost pings, gap in ms).
fn measure(hello: u16) -> (usize, usize, u64, u64) {
    let n = 5;
    let lab = Lab::up(LabSpec::new(
        &format!("cv{hello}{:x}", std::process::id() % 0xfff),
        n,
    ))
    .unwrap();
    lab.cut(1, 5).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(
            dir.path(),
            &ConfigOptions {
                routing: "babel".into(),
                ..ConfigOptions::default()
            },
        )
        .unwrap();
    for f in &files {
        edit_json(&f.config, |c| c["routing"]["hello_interval"] = json!(hello));
    }
    start_daemons(&lab, &files);
    wait_for_bridges(&lab, n);
    lab.add_workload(1, "braid0").unwrap();
    let w5 = lab.add_workload(5, "braid0").unwrap().v6.to_string();
    wait_until("w1 -> w5", Duration::from_secs(120), || {
        lab.workload_ping(1, &w5)
    });
    std::thread::sleep(Duration::from_secs(2 * u64::from(hello) + 2)); // settle
    let before = relay(&lab, &w5).unwrap();
    // 3000 pings at 10 ms (30 s); the cut comes 3 s in.
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.workload_ns(1),
            "ping",
            "-q",
            "-i",
            "0.01",
            "-c",
            "3000",
            "-W",
            "1",
            &w5,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    lab.cut(1, before).unwrap();
    let out = ping.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let received: u64 = text
        .split(", ")
        .find(|p| p.ends_with("received"))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let after = relay(&lab, &w5).unwrap_or(0);
    let lost = 3000 - received;
    (before, after, lost, lost * 10)
}

#[test]
#[ignore = "benchmark: run bench/convergence.sh"]
fn babel_convergence_after_a_relay_cut() {
    if !braid_lab::available_or_skip("babel_convergence_after_a_relay_cut") {
        return;
    }
    for hello in [1u16, 4] {
        let (before, after, lost, gap) = measure(hello);
        println!(
            "hello {hello} s: relay n{before} cut, traffic through n{after}; {lost} of 3000 pings lost at 10 ms: gap {gap} ms"
        );
    }
}
