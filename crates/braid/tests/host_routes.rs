//! Mesh routes beside the host's own routes. Node 2 has its own default route (IPv4 and
//! IPv6) through an "ISP" namespace that leads nowhere; node 1 is the Babel exit to an
//! "internet" namespace. Node 2's workload still reaches the internet through the exit
//! (braid's and babeld's routes live in braid's table, picked by policy rules for the
//! mesh's sources), the host's own traffic keeps using the host's default route, removing
//! the host's default changes nothing for the workload, and a route babeld wants that the
//! kernel does not hold is a problem in the status until it is back.

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec, namespace_prefix};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

fn status(config: &std::path::Path) -> Value {
    let out = braid(&["status", "--json", "-c", config.to_str().unwrap()]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn text(out: std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn an_exits_default_reaches_workloads_on_a_node_with_its_own_default_route() {
    let test = "an_exits_default_reaches_workloads_on_a_node_with_its_own_default_route";
    if !braid_lab::available_or_skip(test) {
        return;
    }
    if Command::new("babeld").arg("-V").output().is_err() {
        eprintln!("SKIPPED {test}: babeld is not installed");
        return;
    }
    let lab = Lab::up(LabSpec::new(
        &format!("rh{:x}", std::process::id() % 0xffff),
        2,
    ))
    .unwrap();
    let prefix = namespace_prefix(lab.name());
    let (router, internet, isp) = (
        format!("{prefix}r"),
        format!("{prefix}i"),
        format!("{prefix}s"),
    );
    // n1 -- router -- internet, as in exit.rs; n2 -- ISP (a dead end).
    for ns in [&router, &internet, &isp] {
        ip(&["netns", "add", ns]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    ip(&[
        "link",
        "add",
        "up0",
        "netns",
        &lab.ns(1),
        "type",
        "veth",
        "peer",
        "name",
        "r0",
        "netns",
        &router,
    ]);
    ip(&[
        "link", "add", "r1", "netns", &router, "type", "veth", "peer", "name", "eth0", "netns",
        &internet,
    ]);
    ip(&[
        "link",
        "add",
        "isp0",
        "netns",
        &lab.ns(2),
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &isp,
    ]);
    for (ns, dev, v6, v4) in [
        (lab.ns(1), "up0", "2001:db8:ff::2/64", "198.51.100.2/24"),
        (router.clone(), "r0", "2001:db8:ff::1/64", "198.51.100.1/24"),
        (router.clone(), "r1", "2001:db8:1::1/64", "203.0.113.1/24"),
        (
            internet.clone(),
            "eth0",
            "2001:db8:1::2/64",
            "203.0.113.2/24",
        ),
        (lab.ns(2), "isp0", "2001:db8:a5::2/64", "192.0.2.2/24"),
        (isp.clone(), "eth0", "2001:db8:a5::1/64", "192.0.2.1/24"),
    ] {
        ip(&["-n", &ns, "addr", "add", v6, "dev", dev, "nodad"]);
        ip(&["-n", &ns, "addr", "add", v4, "dev", dev]);
        ip(&["-n", &ns, "link", "set", dev, "up"]);
    }
    route_internet_via_router(&router, &internet);
    // n2's own default routes, as a real machine has them (static, from its installer).
    ip(&[
        "-n",
        &lab.ns(2),
        "route",
        "add",
        "default",
        "via",
        "192.0.2.1",
        "proto",
        "static",
    ]);
    ip(&[
        "-n",
        &lab.ns(2),
        "-6",
        "route",
        "add",
        "default",
        "via",
        "2001:db8:a5::1",
        "proto",
        "static",
    ]);

    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(dir.path(), &ConfigOptions::default())
        .unwrap();
    for f in &files {
        edit_json(&f.config, |c| {
            c["routing"] = json!({"mode": "babel", "hello_interval": 1})
        });
    }
    edit_json(
        &files[0].config,
        |c| c["exit"] = json!({"upstream_interface": "up0", "gateway6": "2001:db8:ff::1", "gateway4": "198.51.100.1"}),
    );
    edit_json(&dir.path().join("registry.json"), |r| {
        r[0]["exit_preference"] = json!(100)
    });
    start_daemons(&lab, &files);
    wait_for_bridges(&lab, 2);
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
    ip(&["netns", "exec", &router, "sh", "-e", "-c", &text(routes)]);
    lab.add_workload(2, "braid0").unwrap();
    let n2 = &files[1].config;

    // The workload reaches the internet through the exit, IPv4 (masqueraded) and IPv6.
    wait_until(
        "w2 -> internet over IPv4 through the exit",
        Duration::from_secs(60),
        || lab.workload_ping(2, "203.0.113.2"),
    );
    wait_until(
        "w2 -> internet over IPv6 through the exit",
        Duration::from_secs(30),
        || lab.workload_ping(2, "2001:db8:1::2"),
    );
    wait_until("n2 healthy", Duration::from_secs(10), || {
        status(n2)["routing"]["healthy"] == true
    });
    let doc = status(n2);
    assert_eq!(doc["routing"]["problems"], json!([]), "{doc}");
    // The mesh's default routes are in braid's table, the host's stay in main, untouched,
    // and the host's own traffic keeps leaving through its own uplink.
    let main4 = text(
        lab.exec(2, "ip", &["-4", "route", "show", "default"])
            .unwrap(),
    );
    assert!(
        main4.contains("default via 192.0.2.1 dev isp0 proto static"),
        "{main4}"
    );
    let main6 = text(
        lab.exec(2, "ip", &["-6", "route", "show", "default"])
            .unwrap(),
    );
    assert!(
        main6.contains("default via 2001:db8:a5::1 dev isp0 proto static"),
        "{main6}"
    );
    let mesh = text(
        lab.exec(
            2,
            "ip",
            &["-4", "route", "show", "table", "98", "proto", "babel"],
        )
        .unwrap(),
    );
    assert!(mesh.contains("default via"), "{mesh}");
    let host = text(
        lab.exec(2, "ip", &["-4", "route", "get", "203.0.113.2"])
            .unwrap(),
    );
    assert!(host.contains("dev isp0"), "the host's own traffic: {host}");
    let rules = text(lab.exec(2, "ip", &["-4", "rule"]).unwrap());
    assert!(
        rules.contains("from 10.0.0.0/8 lookup 98 proto 98")
            && rules.contains("lookup 98 suppress_prefixlength 0 proto 98"),
        "{rules}"
    );

    // Without the host's default route, the workload's way out does not change.
    ip(&[
        "-n",
        &lab.ns(2),
        "route",
        "del",
        "default",
        "via",
        "192.0.2.1",
    ]);
    assert!(
        lab.workload_ping(2, "203.0.113.2"),
        "w2 lost the internet with the host's default route"
    );

    // Something else takes babeld's place in braid's table: the status says so, naming it.
    ip(&[
        "-n",
        &lab.ns(2),
        "route",
        "replace",
        "default",
        "via",
        "192.0.2.1",
        "dev",
        "isp0",
        "table",
        "98",
        "proto",
        "static",
    ]);
    wait_until(
        "n2 reporting babeld's missing default route",
        Duration::from_secs(15),
        || {
            let doc = status(n2);
            doc["routing"]["healthy"] == false
                && doc["routing"]["engine"]["missing_routes"]
                    .as_array()
                    .is_some_and(|m| {
                        m.iter().any(|p| {
                            let p = p.as_str().unwrap_or_default();
                            p.contains("0.0.0.0/0") && p.contains("proto static")
                        })
                    })
        },
    );
    // braid leaves the other route alone; once it is gone, babeld's comes back by itself
    // and the health clears.
    let still = text(
        lab.exec(2, "ip", &["-4", "route", "show", "table", "98", "default"])
            .unwrap(),
    );
    assert!(still.contains("proto static"), "{still}");
    ip(&[
        "-n",
        &lab.ns(2),
        "route",
        "del",
        "default",
        "table",
        "98",
        "proto",
        "static",
    ]);
    wait_until(
        "n2 healthy with babeld's default again",
        Duration::from_secs(30),
        || status(n2)["routing"]["healthy"] == true && lab.workload_ping(2, "203.0.113.2"),
    );

    // braid down leaves neither rules nor routes in its table, and the host's IPv6 default.
    let down = braid(&["down", "-c", n2.to_str().unwrap()]);
    assert!(down.status.success(), "{down:?}");
    let left = text(
        lab.exec(2, "ip", &["route", "show", "table", "98"])
            .unwrap(),
    ) + &text(
        lab.exec(2, "ip", &["-6", "route", "show", "table", "98"])
            .unwrap(),
    );
    assert!(left.is_empty(), "left in table 98: {left}");
    let rules = text(lab.exec(2, "ip", &["rule"]).unwrap())
        + &text(lab.exec(2, "ip", &["-6", "rule"]).unwrap());
    assert!(!rules.contains("lookup 98"), "{rules}");
    let main6 = text(
        lab.exec(2, "ip", &["-6", "route", "show", "default"])
            .unwrap(),
    );
    assert!(main6.contains("default via 2001:db8:a5::1"), "{main6}");
}
