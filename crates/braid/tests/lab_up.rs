//! `braid lab up`, the README's first command, end to end as root: the default main job
//! (four nodes, Babel, workloads, an exit, n1's bonded uplinks, a failover) and its output;
//! then `braid lab down` removes everything it made.

mod common;
use common::*;

use braid_lab::namespace_prefix;
use std::time::{Duration, Instant};

/// Removes the lab (`braid lab down`) when the test ends, also when it panics.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = braid(&["lab", "down", "--name", &self.0]);
    }
}

fn lab_namespaces(name: &str) -> Vec<String> {
    braid_lab::command::namespaces()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&namespace_prefix(name)))
        .collect()
}

#[test]
fn lab_up_shows_the_main_job_and_lab_down_removes_it() {
    let test = "lab_up_shows_the_main_job_and_lab_down_removes_it";
    if !braid_lab::available_or_skip(test) {
        return;
    }
    if std::process::Command::new("babeld")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED {test}: babeld is not installed");
        return;
    }
    let name = format!("mj{:x}", std::process::id() % 0xffff);
    let dir = tempfile::tempdir().unwrap();
    let _down = Down(name.clone());
    let started = Instant::now();
    let out = braid(&[
        "lab",
        "up",
        "--name",
        &name,
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let errors = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!("braid lab up took {elapsed:?}:\n{text}\n{errors}");
    assert!(out.status.success(), "{text}\n{errors}");

    // The plan, the uplinks and the exit.
    assert!(text.contains("routing babel"), "{text}");
    assert!(
        text.contains("n1: wan0 198.18.0.1, wan1 198.18.1.1"),
        "{text}"
    );
    assert!(text.contains("2001:db8:bd00:4::/64"), "{text}");
    // Every workload reaches every other, both families.
    assert!(text.contains("all reachable"), "{text}");
    for i in 1..=4 {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("w{i} ")))
            .unwrap_or_else(|| panic!("no matrix row for w{i}: {text}"));
        assert_eq!(row.matches("ok/ok").count(), 3, "{row}");
        assert!(
            text.contains(&format!("  w{i}: IPv6 ok, IPv4 ok")),
            "w{i} -> internet: {text}"
        );
    }
    // A throughput figure over the bonded link.
    let throughput = text
        .lines()
        .find(|l| l.starts_with("throughput n1 -> n2"))
        .unwrap_or_else(|| panic!("no throughput line: {text}"));
    // Each uplink's share of what n1 sent: both named, adding up to the whole.
    let shares: Vec<f64> = throughput
        .split("bonded over ")
        .nth(1)
        .unwrap_or_else(|| panic!("not bonded: {throughput}"))
        .split(" + ")
        .map(|part| {
            part.split(['(', '%'])
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no share in `{part}`: {throughput}"))
        })
        .collect();
    assert_eq!(shares.len(), 2, "{throughput}");
    assert!(
        (99.0..=101.0).contains(&shares.iter().sum::<f64>()),
        "{throughput}"
    );
    let mbit: f64 = throughput
        .split(": ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {throughput}"));
    assert!(mbit > 1.0, "{throughput}");
    // A failover measured and bounded: traffic came back within the 15 s bound.
    let failover = text
        .lines()
        .find(|l| l.starts_with("failover: cut the underlay between n2 and n"))
        .unwrap_or_else(|| panic!("no failover line: {text}"));
    // "traffic stopped for 2.31 s", or "no interruption (...)" when the reroute lost less
    // than the probes notice; never "did not return".
    let secs: f64 = match failover.split("traffic stopped for ").nth(1) {
        Some(rest) => rest
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no outage figure: {failover}")),
        None => {
            assert!(failover.contains("no interruption"), "{failover}");
            0.0
        }
    };
    assert!(secs <= 15.0, "{failover}");
    assert!(failover.ends_with("link restored"), "{failover}");
    // The lab stays up after the command: nodes, hub, workloads, router and internet.
    let namespaces = lab_namespaces(&name);
    assert_eq!(namespaces.len(), 4 + 1 + 4 + 2, "{namespaces:?}");

    // lab down removes the --dir too: it holds only what lab up wrote there (configs,
    // registry, logs); a directory with anything else would be left alone.
    let down = braid(&[
        "lab",
        "down",
        "--name",
        &name,
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(lab_namespaces(&name).is_empty(), "lab down left namespaces");
    assert!(
        !dir.path().exists(),
        "lab down left {}",
        dir.path().display()
    );
    assert!(elapsed < Duration::from_secs(120), "took {elapsed:?}");
}
