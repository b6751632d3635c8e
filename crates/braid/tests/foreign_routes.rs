//! braid removes only the routes it made, and never replaces the host's: an exit whose
//! host has its own IPv6 default route (the very route braid wants upstream) keeps it
//! through braid's start, restart and `braid down`; a route of someone else's that takes the
//! place of one braid needs is reported (log, status) and left alone; routes of braid's
//! protocol outside braid's tables (as an earlier braid left in the main table) stay.

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn status(config: &Path) -> Value {
    let out = braid(&["status", "--json", "-c", config.to_str().unwrap()]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn routes(lab: &Lab, args: &[&str]) -> String {
    String::from_utf8_lossy(&lab.exec(1, "ip", args).unwrap().stdout).to_string()
}

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
        || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

#[test]
fn braid_leaves_the_hosts_routes_alone_and_reports_collisions() {
    let test = "braid_leaves_the_hosts_routes_alone_and_reports_collisions";
    if !braid_lab::available_or_skip(test) {
        return;
    }
    let lab = Lab::up(LabSpec::new(
        &format!("rf{:x}", std::process::id() % 0xffff),
        2,
    ))
    .unwrap();
    // n1 is an exit with an upstream interface (a veth to nowhere is enough here).
    let ns = lab.ns(1);
    for args in [
        vec![
            "-n", &ns, "link", "add", "up0", "type", "veth", "peer", "name", "up0p",
        ],
        vec!["-n", &ns, "link", "set", "up0", "up"],
        vec!["-n", &ns, "link", "set", "up0p", "up"],
        vec!["-n", &ns, "addr", "add", "198.51.100.2/24", "dev", "up0"],
        vec![
            "-n",
            &ns,
            "addr",
            "add",
            "2001:db8:ff::2/64",
            "dev",
            "up0",
            "nodad",
        ],
        // The host's own IPv6 default route: the very route braid wants upstream.
        vec![
            "-n",
            &ns,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:ff::1",
            "dev",
            "up0",
            "metric",
            "1024",
            "proto",
            "static",
        ],
        // Someone else's route where braid wants its IPv4 default upstream (table 98,
        // metric 1024).
        vec![
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            "198.51.100.1",
            "dev",
            "up0",
            "table",
            "98",
            "metric",
            "1024",
            "proto",
            "static",
        ],
        // A route of braid's protocol in the main table, as an earlier braid left it.
        vec![
            "-n",
            &ns,
            "route",
            "add",
            "203.0.113.0/24",
            "via",
            "198.51.100.1",
            "dev",
            "up0",
            "proto",
            "98",
        ],
    ] {
        ip(&args);
    }
    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(
            dir.path(),
            &ConfigOptions {
                routing: "static".into(),
                ..ConfigOptions::default()
            },
        )
        .unwrap();
    edit_json(
        &files[0].config,
        |c| c["exit"] = json!({"upstream_interface": "up0", "gateway6": "2001:db8:ff::1", "gateway4": "198.51.100.1"}),
    );
    let config = &files[0].config;
    let start = || {
        lab.spawn_private_uapi(
            1,
            Command::new(env!("CARGO_BIN_EXE_braid"))
                .arg("run")
                .arg("-c")
                .arg(config),
            Some(&config.with_file_name("braid.log")),
        )
        .unwrap()
    };
    let host_default = || routes(&lab, &["-6", "route", "show", "default"]);
    let foreign = || routes(&lab, &["-4", "route", "show", "table", "98", "default"]);
    let legacy = || routes(&lab, &["-4", "route", "show", "203.0.113.0/24"]);
    let intact = |when: &str| {
        let host = host_default();
        assert!(
            host.contains("default via 2001:db8:ff::1 dev up0 proto static metric 1024"),
            "{when}: the host's IPv6 default route: {host:?}"
        );
        let other = foreign();
        assert!(
            other.contains("default via 198.51.100.1 dev up0 proto static metric 1024"),
            "{when}: the other route in table 98: {other:?}"
        );
        let old = legacy();
        assert!(
            old.contains("203.0.113.0/24 via 198.51.100.1 dev up0 proto 98"),
            "{when}: the earlier braid's route in main: {old:?}"
        );
    };

    let pid = start();
    // braid installed its IPv6 default upstream (in its own table), beside the host's.
    wait_until(
        "braid's IPv6 default upstream",
        Duration::from_secs(20),
        || {
            routes(
                &lab,
                &["-6", "route", "show", "table", "all", "proto", "98"],
            )
            .contains("default via 2001:db8:ff::1 dev up0")
        },
    );
    intact("running");
    // The collision is reported.
    wait_until(
        "n1 reporting the collision",
        Duration::from_secs(20),
        || {
            let doc = status(config);
            doc["routing"]["healthy"] == false
                && doc["routing"]["problems"].as_array().is_some_and(|p| {
                    p.iter().any(|p| {
                        let p = p.as_str().unwrap_or_default();
                        p.contains("0.0.0.0/0 via 198.51.100.1")
                            && p.contains("collides with a route braid did not make")
                            && p.contains("proto static")
                    })
                })
        },
    );
    let mine = routes(&lab, &["-6", "route", "show", "table", "98", "proto", "98"]);
    assert!(
        mine.contains("default via 2001:db8:ff::1 dev up0"),
        "braid's IPv6 default upstream: {mine}"
    );
    intact("running, after the collision was reported");
    let log = std::fs::read_to_string(config.with_file_name("braid.log")).unwrap();
    assert!(
        log.contains("collides with a route braid did not make"),
        "{log}"
    );

    // A restart (SIGTERM) and braid down leave them too.
    // SAFETY: kill on the PID of a braid daemon this test started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    wait_until("braid gone", Duration::from_secs(10), || gone(pid));
    intact("after SIGTERM");
    start();
    wait_until("braid back", Duration::from_secs(20), || {
        status(config)["routing"]["problems"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    });
    let down = braid(&["down", "-c", config.to_str().unwrap()]);
    assert!(down.status.success(), "{down:?}");
    intact("after braid down");
    let mine = routes(
        &lab,
        &["-6", "route", "show", "table", "all", "proto", "98"],
    );
    assert!(mine.is_empty(), "braid's own routes left: {mine}");
}
