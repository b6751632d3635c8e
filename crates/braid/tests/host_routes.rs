//! Mesh routes beside the host's own routes. Node 2 has its own default route (IPv4 and
//! IPv6) through an "ISP" namespace that leads nowhere; node 1 is the Babel exit to an
//! "internet" namespace. Node 2's workload still reaches the internet through the exit
//! (braid's and babeld's routes live in braid's table, picked by policy rules for the
//! mesh's sources), the host's own traffic keeps using the host's default route, removing
//! the host's default changes nothing for the workload, and a route babeld wants that the
//! kernel does not hold is a problem in the status until it is back.

mod common;
use common::*;

use braid_lab::{ConfigOptions, INTERNET_HOST, Lab, LabSpec, namespace_prefix};
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
    // n1 -- router -- internet, the lab's upstream (removed with the lab); n2 -- ISP (a
    // dead end), in a namespace with the lab's prefix (removed with it too).
    lab.add_upstream(1).unwrap();
    let isp = format!("{}s", namespace_prefix(lab.name()));
    ip(&["netns", "add", &isp]);
    ip(&["-n", &isp, "link", "set", "lo", "up"]);
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
        (lab.ns(2), "isp0", "2001:db8:a5::2/64", "203.0.113.2/24"),
        (isp.clone(), "eth0", "2001:db8:a5::1/64", "203.0.113.1/24"),
    ] {
        ip(&["-n", &ns, "addr", "add", v6, "dev", dev, "nodad"]);
        ip(&["-n", &ns, "addr", "add", v4, "dev", dev]);
        ip(&["-n", &ns, "link", "set", dev, "up"]);
    }
    // n2's own default routes, as a real machine has them (static, from its installer).
    ip(&[
        "-n",
        &lab.ns(2),
        "route",
        "add",
        "default",
        "via",
        "203.0.113.1",
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
    let options = ConfigOptions {
        routing: "babel".into(),
        hello_interval: Some(1),
        exit: Some(1),
        ..ConfigOptions::default()
    };
    let files = lab.write_configs(dir.path(), &options).unwrap();
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
    assert!(lab.route_back(&text(routes)).unwrap() > 0);
    lab.add_workload(2, "braid0").unwrap();
    let n2 = &files[1].config;
    let (internet4, internet6) = (INTERNET_HOST.v4.to_string(), INTERNET_HOST.v6.to_string());

    // The workload reaches the internet through the exit, IPv4 (masqueraded) and IPv6.
    wait_until(
        "w2 -> internet over IPv4 through the exit",
        Duration::from_secs(60),
        || lab.workload_ping(2, &internet4),
    );
    wait_until(
        "w2 -> internet over IPv6 through the exit",
        Duration::from_secs(30),
        || lab.workload_ping(2, &internet6),
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
        main4.contains("default via 203.0.113.1 dev isp0 proto static"),
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
        lab.exec(2, "ip", &["-4", "route", "get", &internet4])
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
        "203.0.113.1",
    ]);
    assert!(
        lab.workload_ping(2, &internet4),
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
        "203.0.113.1",
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
        || status(n2)["routing"]["healthy"] == true && lab.workload_ping(2, &internet4),
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
