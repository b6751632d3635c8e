//! An exit in the lab: an upstream router namespace and an "internet" namespace beyond the
//! exit. The upstream router applies `braid routes --upstream`; every workload reaches the
//! internet, IPv6 routed both ways, IPv4 masqueraded by the exit.

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

#[test]
fn every_workload_reaches_the_internet_through_the_exit_static() {
    through_the_exit(
        "every_workload_reaches_the_internet_through_the_exit_static",
        "static",
        None,
    );
}

#[test]
fn every_workload_reaches_the_internet_through_the_exit_babel() {
    through_the_exit(
        "every_workload_reaches_the_internet_through_the_exit_babel",
        "babel",
        Some("babeld"),
    );
}

#[test]
fn every_workload_reaches_the_internet_through_the_exit_bird() {
    through_the_exit(
        "every_workload_reaches_the_internet_through_the_exit_bird",
        "bird",
        Some("bird"),
    );
}

/// `mode`: the routing mode; `engine`: the routing daemon it needs, if any.
fn through_the_exit(test: &str, mode: &str, engine: Option<&str>) {
    if !braid_lab::available_or_skip(test) {
        return;
    }
    if let Some(tool) = engine
        && Command::new(tool).arg("--help").output().is_err()
    {
        eprintln!("SKIPPED {test}: {tool} is not installed");
        return;
    }
    let n = 3;
    let lab = Lab::up(LabSpec::new(
        &format!("e{}{:x}", &mode[..2], std::process::id() % 0xffff),
        n,
    ))
    .unwrap();
    // n1 is the exit: its upstream router and the internet (removed with the lab).
    lab.add_upstream(1).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let options = ConfigOptions {
        routing: mode.into(),
        hello_interval: Some(1),
        exit: Some(1),
        ..ConfigOptions::default()
    };
    let files = lab.write_configs(dir.path(), &options).unwrap();
    start_daemons(&lab, &files);
    wait_for_bridges(&lab, n);
    let workloads: Vec<_> = (1..=n)
        .map(|i| lab.add_workload(i, "braid0").unwrap())
        .collect();

    // The upstream router learns the way back from the exit.
    let routes = lab
        .exec(
            1,
            env!("CARGO_BIN_EXE_braid"),
            &[
                "routes",
                "--upstream",
                "-c",
                files[0].config.to_str().unwrap(),
            ],
        )
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout).to_string();
    assert_eq!(routes.lines().count(), n, "{routes}");
    assert!(
        routes.contains("ip -6 route replace 2001:db8:bd00:2::/64 via 2001:db8:ff::2"),
        "{routes}"
    );
    assert_eq!(lab.route_back(&routes).unwrap(), n);
    let bird = lab
        .exec(
            1,
            env!("CARGO_BIN_EXE_braid"),
            &[
                "routes",
                "--upstream",
                "--format",
                "bird",
                "-c",
                files[0].config.to_str().unwrap(),
            ],
        )
        .unwrap();
    assert!(
        String::from_utf8_lossy(&bird.stdout)
            .contains("route 2001:db8:bd00:3::/64 via 2001:db8:ff::2;")
    );

    for i in 1..=n {
        wait_until(
            &format!("w{i} -> internet over IPv6"),
            Duration::from_secs(20),
            || lab.workload_reaches_internet(i, true),
        );
        assert!(
            lab.workload_reaches_internet(i, false),
            "w{i} -> internet over IPv4"
        );
    }
    // `braid status` on n2 names the way to the exit in use per family, over a link: n1
    // directly, or (babel and bird, whose RTT-based cost moves routes on this loaded
    // machine) n3 relaying to n1. The direct way is waited for a while.
    let read = || -> Value {
        let status = braid(&["status", "--json", "-c", files[1].config.to_str().unwrap()]);
        serde_json::from_slice(&status.stdout).unwrap()
    };
    let direct = |status: &Value| {
        ["ip4", "ip6"]
            .iter()
            .all(|f| status["routing"]["exits"][f]["peer"] == "n1")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut status = read();
    while !direct(&status) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        status = read();
    }
    for family in ["ip4", "ip6"] {
        let exit = &status["routing"]["exits"][family];
        let peer = exit["peer"].as_str().unwrap_or("");
        let expected: &[&str] = if mode == "static" {
            &["n1"]
        } else {
            &["n1", "n3"]
        };
        assert!(
            expected.contains(&peer),
            "{family} exit of n2 through {peer:?}: {}",
            status["routing"]
        );
        assert!(exit["link"].is_string(), "{exit}");
    }
    eprintln!(
        "{}",
        String::from_utf8_lossy(
            &braid(&["status", "-c", files[1].config.to_str().unwrap()]).stdout
        )
    );
    // The internet sees IPv6 workloads as themselves (routed) and IPv4 as the exit (NAT):
    // it reaches a workload's IPv6 address, not its IPv4 one.
    assert!(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.internet_ns(),
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                &workloads[1].v6.to_string()
            ])
            .status()
            .unwrap()
            .success()
    );
    let nat = String::from_utf8_lossy(
        &lab.exec(1, "nft", &["list", "table", "ip", "braid_nat"])
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(
        nat.contains("oifname \"up0\" ip saddr 10.0.0.0/8 masquerade"),
        "{nat}"
    );
    // `down` on the exit removes the NAT table and the upstream default routes.
    let down = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["down", "-c", files[0].config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(down.status.success());
    assert!(
        !lab.try_exec(1, "nft", &["list", "table", "ip", "braid_nat"])
            .unwrap()
            .status
            .success()
    );
    assert!(
        lab.exec(1, "ip", &["route", "show", "table", "all", "proto", "98"])
            .unwrap()
            .stdout
            .is_empty()
    );
}
