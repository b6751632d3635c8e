//! The lab against the real kernel: namespaces, veths, addresses, shaping, cuts, processes,
//! and cleanup on drop, on panic and after a "killed" run. Needs root and `ip netns`;
//! otherwise every test prints SKIPPED and passes.

mod common;

use braid_lab::{Lab, LabError, LabSpec, LinkShape, cleanup};
use common::{lab_namespaces, stdout, unique_name};

fn skip(test: &str) -> bool {
    !braid_lab::available_or_skip(test)
}

#[test]
fn every_pair_pings_over_ipv4_and_ipv6() {
    if skip("every_pair_pings_over_ipv4_and_ipv6") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&unique_name("pg"), 3)).unwrap();
    for i in 1..=3 {
        for j in (1..=3).filter(|&j| j != i) {
            let (v4, v6) = (lab.addrs(j).v4.to_string(), lab.addrs(j).v6.to_string());
            assert!(lab.ping(i, &v4), "n{i} -> n{j} over IPv4 ({v4})");
            assert!(lab.ping(i, &v6), "n{i} -> n{j} over IPv6 ({v6})");
        }
    }
    // Forwarding is on in every node.
    let forwarding = stdout(
        lab.exec(2, "sysctl", &["-n", "net.ipv4.ip_forward"])
            .unwrap(),
    );
    assert_eq!(forwarding.trim(), "1");
}

#[test]
fn a_panicking_test_leaves_no_namespace_or_veth() {
    if skip("a_panicking_test_leaves_no_namespace_or_veth") {
        return;
    }
    let lab_name = unique_name("pn");
    let inner = lab_name.clone();
    let result = std::panic::catch_unwind(move || {
        let lab = Lab::up(LabSpec::new(&inner, 3)).unwrap();
        assert_eq!(lab_namespaces(&inner).len(), 3);
        lab.spawn(1, std::process::Command::new("sleep").arg("300"))
            .unwrap();
        panic!("a test failing in the middle of its lab");
    });
    assert!(result.is_err());
    assert!(
        lab_namespaces(&lab_name).is_empty(),
        "namespaces survived the panic"
    );
    // The veths were made inside the namespaces and died with them; none is in the host.
    let host = stdout(
        std::process::Command::new("ip")
            .args(["-o", "link", "show", "type", "veth"])
            .output()
            .unwrap(),
    );
    assert!(
        !host
            .lines()
            .any(|l| l.contains(": u1@") || l.contains(": u2@") || l.contains(": u3@")),
        "{host}"
    );
}

#[test]
fn cleanup_removes_what_a_killed_run_left() {
    if skip("cleanup_removes_what_a_killed_run_left") {
        return;
    }
    let lab_name = unique_name("kl");
    let other = Lab::up(LabSpec::new(&unique_name("kx"), 1)).unwrap();
    let lab = Lab::up(LabSpec::new(&lab_name, 2)).unwrap();
    std::mem::forget(lab); // as if the process had been killed
    assert_eq!(lab_namespaces(&lab_name).len(), 2);
    cleanup(Some(&lab_name)).unwrap();
    assert!(lab_namespaces(&lab_name).is_empty());
    // Another lab's namespaces are not touched.
    assert_eq!(lab_namespaces(other.name()).len(), 1);
    other.down().unwrap();
}

#[test]
fn a_lab_replaces_the_leftovers_of_its_name() {
    if skip("a_lab_replaces_the_leftovers_of_its_name") {
        return;
    }
    let lab_name = unique_name("rp");
    std::mem::forget(Lab::up(LabSpec::new(&lab_name, 2)).unwrap());
    let lab = Lab::up(LabSpec::new(&lab_name, 2)).unwrap();
    assert!(lab.ping(1, &lab.addrs(2).v4.to_string()));
    lab.down().unwrap();
    assert!(lab_namespaces(&lab_name).is_empty());
}

#[test]
fn cut_blocks_a_pair_and_restore_brings_it_back() {
    if skip("cut_blocks_a_pair_and_restore_brings_it_back") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&unique_name("ct"), 3)).unwrap();
    let v4 = lab.addrs(3).v4.to_string();
    assert!(lab.ping(1, &v4));
    lab.cut(1, 3).unwrap();
    assert!(!lab.ping(1, &v4), "cut pair still pings");
    assert!(
        !lab.ping(3, &lab.addrs(1).v6.to_string()),
        "cut pair still pings back over IPv6"
    );
    assert!(
        lab.ping(1, &lab.addrs(2).v4.to_string()),
        "other pairs are not affected"
    );
    lab.cut(1, 3).unwrap(); // cutting twice is harmless
    lab.restore(1, 3).unwrap();
    assert!(lab.ping(1, &v4));
    assert!(lab.ping(3, &lab.addrs(1).v6.to_string()));
}

#[test]
fn a_cut_also_blocks_traffic_forwarded_over_the_pair() {
    if skip("a_cut_also_blocks_traffic_forwarded_over_the_pair") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&unique_name("fw"), 3)).unwrap();
    let (a1, a2, a3) = (lab.addrs(1), lab.addrs(2), lab.addrs(3));
    // n1 and n3 reach each other through n2.
    let via = |node: usize, to: &str, gw: &str, dev: &str| {
        lab.exec(node, "ip", &["route", "replace", to, "via", gw, "dev", dev])
            .unwrap();
    };
    via(1, &format!("{}/32", a3.v4), &a2.v4.to_string(), "u2");
    via(3, &format!("{}/32", a1.v4), &a2.v4.to_string(), "u2");
    let to_n3 = a3.v4.to_string();
    assert!(lab.ping(1, &to_n3), "n1 -> n2 -> n3");
    lab.cut(1, 3).unwrap();
    assert!(
        lab.ping(1, &to_n3),
        "the direct pair is cut, not the path via n2"
    );
    lab.cut(2, 3).unwrap();
    assert!(
        !lab.ping(1, &to_n3),
        "n2 still forwards over the cut pair 2-3"
    );
    lab.restore(2, 3).unwrap();
    assert!(lab.ping(1, &to_n3));
}

#[test]
fn shaping_installs_tbf_and_loss_rules() {
    if skip("shaping_installs_tbf_and_loss_rules") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&unique_name("sh"), 2)).unwrap();
    let shaped = LinkShape {
        rate_mbit: Some(50),
        loss_percent: Some(30),
    };
    lab.shape(1, 2, shaped).unwrap();
    lab.shape(2, 1, shaped).unwrap(); // the same state again changes nothing
    for (me, dev) in [(1, "u2"), (2, "u1")] {
        let qdisc = stdout(lab.exec(me, "tc", &["qdisc", "show", "dev", dev]).unwrap());
        assert!(qdisc.contains("tbf") && qdisc.contains("50Mbit"), "{qdisc}");
        let rules = stdout(
            lab.exec(me, "nft", &["list", "table", "inet", "braid_lab"])
                .unwrap(),
        );
        assert!(rules.contains("numgen random mod 100 < 30 drop"), "{rules}");
    }
    // 100% loss: nothing gets through; clearing the shape brings the pair back.
    lab.shape(
        1,
        2,
        LinkShape {
            rate_mbit: None,
            loss_percent: Some(100),
        },
    )
    .unwrap();
    assert!(!lab.ping(1, &lab.addrs(2).v4.to_string()));
    lab.shape(1, 2, LinkShape::default()).unwrap();
    assert!(lab.ping(1, &lab.addrs(2).v4.to_string()));
    let qdisc = stdout(lab.exec(1, "tc", &["qdisc", "show", "dev", "u2"]).unwrap());
    assert!(!qdisc.contains("tbf"), "{qdisc}");
    let rules = stdout(
        lab.exec(1, "nft", &["list", "table", "inet", "braid_lab"])
            .unwrap(),
    );
    assert!(!rules.contains("numgen"), "{rules}");
}

#[test]
fn the_spec_shapes_single_pairs() {
    if skip("the_spec_shapes_single_pairs") {
        return;
    }
    let spec = LabSpec::new(&unique_name("ps"), 3).with_shape(
        3,
        1,
        LinkShape {
            rate_mbit: Some(20),
            loss_percent: None,
        },
    );
    let lab = Lab::up(spec).unwrap();
    let shaped = stdout(lab.exec(1, "tc", &["qdisc", "show", "dev", "u3"]).unwrap());
    assert!(
        shaped.contains("tbf") && shaped.contains("20Mbit"),
        "{shaped}"
    );
    let plain = stdout(lab.exec(1, "tc", &["qdisc", "show", "dev", "u2"]).unwrap());
    assert!(!plain.contains("tbf"), "{plain}");
}

#[test]
fn spawned_processes_end_with_the_lab() {
    if skip("spawned_processes_end_with_the_lab") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&unique_name("sp"), 1)).unwrap();
    let pid = lab
        .spawn(1, std::process::Command::new("sleep").arg("300"))
        .unwrap();
    // It runs inside the node's namespace (once `ip netns exec` has entered it).
    let listed = || {
        stdout(
            std::process::Command::new("ip")
                .args(["netns", "pids", &lab.ns(1)])
                .output()
                .unwrap(),
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut pids = listed();
    while !pids.split_whitespace().any(|p| p == pid.to_string())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
        pids = listed();
    }
    assert!(
        pids.split_whitespace().any(|p| p == pid.to_string()),
        "{pids}"
    );
    lab.down().unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "sleep {pid} survived the lab"
    );
}

#[test]
fn failures_name_the_command_and_its_stderr() {
    if skip("failures_name_the_command_and_its_stderr") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&unique_name("er"), 2)).unwrap();
    let err = lab
        .exec(1, "ip", &["link", "show", "nosuchdev"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ip netns exec") && err.contains("nosuchdev"),
        "{err}"
    );
    assert!(err.to_lowercase().contains("does not exist"), "{err}");
    assert!(matches!(
        lab.cut(1, 3),
        Err(LabError::BadNode { node: 3, nodes: 2 })
    ));
    assert!(matches!(lab.cut(2, 2), Err(LabError::SameNode(2))));
    assert!(lab.exec(0, "true", &[]).is_err());
}

#[test]
fn bad_specs_are_refused_before_anything_is_made() {
    for spec in [
        LabSpec::new("Bad Name", 2),
        LabSpec::new("toolongname", 2),
        LabSpec::new("", 2),
        LabSpec::new("ok", 0),
        LabSpec::new("ok", 51),
        LabSpec::new("ok", 2).with_shape(1, 3, LinkShape::default()),
        LabSpec::new("ok", 2).with_shape(2, 2, LinkShape::default()),
    ] {
        assert!(Lab::up(spec.clone()).is_err(), "{spec:?} was accepted");
    }
}

#[test]
fn a_pair_cut_in_a_lab_with_uplinks_goes_through_the_hub() {
    if skip("a_pair_cut_in_a_lab_with_uplinks_goes_through_the_hub") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&unique_name("hc"), 3).with_wans(&[2, 1])).unwrap();
    let n2 = lab.addrs(2).v4.to_string();
    let n2_from_wan1 = ["-c", "1", "-W", "1", "-I", "wan1", &n2];
    assert!(lab.ping(1, &n2));
    lab.cut(1, 2).unwrap();
    assert!(!lab.ping(1, &n2), "the cut pair still pings");
    assert!(
        !lab.try_exec(1, "ping", &n2_from_wan1)
            .unwrap()
            .status
            .success(),
        "the cut pair still pings from n1's second uplink"
    );
    assert!(!lab.ping(2, &lab.addrs(1).v6.to_string()), "IPv6 back");
    assert!(
        lab.ping(1, &lab.addrs(3).v4.to_string()),
        "n1 -> n3 untouched"
    );
    assert!(
        lab.ping(2, &lab.addrs(3).v6.to_string()),
        "n2 -> n3 untouched"
    );
    lab.cut(2, 1).unwrap(); // twice, either order: harmless
    lab.restore(1, 2).unwrap();
    lab.restore(1, 2).unwrap(); // restoring an uncut pair: harmless
    assert!(lab.ping(1, &n2));
    assert!(
        lab.try_exec(1, "ping", &n2_from_wan1)
            .unwrap()
            .status
            .success()
    );
    // Pairs have no shapes of their own here.
    assert!(
        lab.shape(
            1,
            2,
            LinkShape {
                rate_mbit: Some(10),
                loss_percent: None
            }
        )
        .is_err()
    );
}

#[test]
fn the_upstream_routes_back_only_what_it_is_given() {
    if skip("the_upstream_routes_back_only_what_it_is_given") {
        return;
    }
    use braid_lab::INTERNET_HOST;
    use braid_lab::exit::{EXIT_UPSTREAM, UPSTREAM_GATEWAY};
    let lab = Lab::up(LabSpec::new(&unique_name("up"), 2).with_wans(&[1])).unwrap();
    lab.add_upstream(2).unwrap();
    assert_eq!(lab_namespaces(lab.name()).len(), 5, "n1 n2 hub r i");
    // The exit reaches its router; the internet host only once the exit routes to it, and
    // answers only once the router has the route back.
    assert!(lab.ping(2, &UPSTREAM_GATEWAY.v6.to_string()));
    lab.exec(
        2,
        "ip",
        &[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &UPSTREAM_GATEWAY.v6.to_string(),
        ],
    )
    .unwrap();
    let (host, from) = (INTERNET_HOST.v6.to_string(), "2001:db8:bd00:2::1");
    lab.exec(
        2,
        "ip",
        &["addr", "add", &format!("{from}/128"), "dev", "lo"],
    )
    .unwrap();
    let ping_from = || {
        lab.try_exec(2, "ping", &["-c", "1", "-W", "1", "-I", from, &host])
            .unwrap()
            .status
            .success()
    };
    assert!(!ping_from(), "the router routes back without being told");
    let applied = lab
        .route_back(&format!(
            "ip -6 route replace 2001:db8:bd00:2::/64 via {}\n",
            EXIT_UPSTREAM.v6
        ))
        .unwrap();
    assert_eq!(applied, 1);
    assert!(ping_from(), "the route back does not work");
    for hostile in [
        "reboot",
        "ip -6 route replace ::/0 via x; rm -rf /",
        "ip link del r0",
    ] {
        assert!(lab.route_back(hostile).is_err(), "{hostile} accepted");
    }
    let name = lab.name().to_string();
    lab.down().unwrap();
    assert!(
        lab_namespaces(&name).is_empty(),
        "router or internet left behind"
    );
}

#[test]
fn a_failover_measures_the_silence_and_gives_up_at_its_bound() {
    if skip("a_failover_measures_the_silence_and_gives_up_at_its_bound") {
        return;
    }
    use std::time::Duration;
    let lab = Lab::up(LabSpec::new(&unique_name("fo"), 2)).unwrap();
    // Stand-ins for braid's bridges: each node's gateway addresses on a bridge, and a
    // route to the other node's /64 over the pair.
    for (i, j) in [(1usize, 2usize), (2, 1)] {
        let br = braid_lab::BRIDGE;
        for cmd in [
            format!("link add {br} type bridge"),
            format!("link set {br} up"),
            format!("addr add 2001:db8:bd00:{i}::1/64 dev {br} nodad"),
            format!("addr add 10.0.{i}.254/24 dev {br}"),
            format!(
                "route add 2001:db8:bd00:{j}::/64 via {} dev u{j}",
                lab.addrs(j).v6
            ),
        ] {
            lab.exec(i, "ip", &cmd.split(' ').collect::<Vec<_>>())
                .unwrap();
        }
        lab.wait_for_bridge(i, br, Duration::from_secs(1)).unwrap();
        lab.add_workload(i, br).unwrap();
    }
    let to = braid_lab::workload_addrs(2).v6.to_string();
    assert!(lab.workload_ping(1, &to));
    // A cut undone after ~1 s: the outage is about a second.
    let report = std::thread::scope(|scope| {
        let (cut_done, cut_seen) = std::sync::mpsc::channel();
        let lab = &lab;
        scope.spawn(move || {
            if cut_seen.recv().is_ok() {
                std::thread::sleep(Duration::from_secs(1));
                lab.restore(1, 2).unwrap();
            }
        });
        lab.measure_failover(1, &to, Duration::from_secs(5), move || {
            lab.cut(1, 2)?;
            let _ = cut_done.send(());
            Ok(())
        })
        .unwrap()
    });
    let gap = report.outage.expect("traffic came back");
    assert!(
        gap > Duration::from_millis(800) && gap < Duration::from_millis(2500),
        "{gap:?}"
    );
    assert!(
        report.describe().starts_with("traffic stopped for "),
        "{}",
        report.describe()
    );
    // A cut nobody undoes: the measurement ends at its bound.
    let started = std::time::Instant::now();
    let report = lab
        .measure_failover(1, &to, Duration::from_secs(2), || lab.cut(1, 2))
        .unwrap();
    assert_eq!(report.outage, None);
    assert!(started.elapsed() < Duration::from_secs(6));
    assert_eq!(report.describe(), "traffic did not return within 2 s");
}
