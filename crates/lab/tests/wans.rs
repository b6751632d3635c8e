//! The multi-WAN lab (`LabSpec::with_wans`, `braid lab up --wans`) against the real
//! kernel: the hub, every uplink's addresses and routing table, traffic from each uplink
//! to every node through the hub (also from a UDP socket bound to an uplink, as braid's
//! path sockets are), shaping, loss, cuts and link state of one uplink leaving the others
//! alone, cleanup, and the generated configs' paths. Needs root and `ip netns`; otherwise
//! the kernel tests print SKIPPED and pass (the config tests run anyway).

mod common;

use braid_lab::command::in_netns;
use braid_lab::{ConfigOptions, Lab, LabError, LabSpec, LinkShape, cleanup, write_configs};
use common::{lab_namespaces, stdout, unique_name};
use serde_json::Value;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn skip(test: &str) -> bool {
    !braid_lab::available_or_skip(test)
}

/// `ping -I <dev>` from node `i` (a socket bound to the device) to `to`.
fn ping_via(lab: &Lab, i: usize, dev: &str, to: &str) -> bool {
    lab.try_exec(i, "ping", &["-c", "1", "-W", "1", "-I", dev, to])
        .is_ok_and(|o| o.status.success())
}

/// Packet loss in percent of `count` pings, 5 ms apart, from node `i` bound to `dev`.
fn loss_via(lab: &Lab, i: usize, dev: &str, to: &str, count: u32) -> f64 {
    let out = lab
        .try_exec(
            i,
            "ping",
            &[
                "-q",
                "-c",
                &count.to_string(),
                "-i",
                "0.005",
                "-W",
                "1",
                "-I",
                dev,
                to,
            ],
        )
        .unwrap();
    let text = stdout(out);
    let field = text
        .split(',')
        .find(|f| f.contains("packet loss"))
        .unwrap_or_else(|| panic!("no loss in ping's summary: {text}"));
    field
        .trim()
        .trim_end_matches(" packet loss")
        .trim_end_matches('%')
        .parse()
        .unwrap_or_else(|_| panic!("loss `{field}`"))
}

/// Runs `f` on a thread inside the namespace `ns` (setns is per thread).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on a namespace file we opened; it affects only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

/// A UDP echo server in `ns` on port `port` that answers every datagram with the
/// source address it saw, until `stop` is set.
fn echo_server(ns: &str, port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let path = format!("/run/netns/{ns}");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: as in `in_ns`.
        assert_eq!(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        let socket = UdpSocket::bind(("0.0.0.0", port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((_, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(from.to_string().as_bytes(), from);
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("echo server did not start");
    handle
}

/// From a UDP socket in `ns` bound (SO_BINDTODEVICE) to `dev`: sends to `to` and returns
/// the source address the echo server saw, or `None` when no answer came within a second.
fn bound_udp_echo(ns: &str, dev: &'static str, to: SocketAddr) -> Option<String> {
    in_ns(ns, move || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        // SAFETY: setsockopt with a valid socket and a buffer of the given length.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                dev.as_ptr().cast(),
                dev.len() as libc::socklen_t,
            )
        };
        assert_eq!(
            rc,
            0,
            "SO_BINDTODEVICE {dev}: {}",
            std::io::Error::last_os_error()
        );
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 100];
        for _ in 0..3 {
            socket.send_to(b"hello", to).unwrap();
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                assert_eq!(from, to, "the answer came from elsewhere");
                return Some(String::from_utf8_lossy(&buf[..n]).to_string());
            }
        }
        None
    })
}

#[test]
fn the_hub_joins_every_uplink_of_every_node() {
    if skip("the_hub_joins_every_uplink_of_every_node") {
        return;
    }
    let name = unique_name("wh");
    let lab = Lab::up(LabSpec::new(&name, 3).with_wans(&[2, 3, 1])).unwrap();
    assert!(lab.has_wans());
    assert_eq!((lab.wans(1), lab.wans(2), lab.wans(3)), (2, 3, 1));
    let mut namespaces = lab_namespaces(&name);
    namespaces.sort();
    assert_eq!(
        namespaces,
        [
            format!("brd-{name}-hub"),
            format!("brd-{name}-n1"),
            format!("brd-{name}-n2"),
            format!("brd-{name}-n3")
        ]
    );
    assert_eq!(lab.hub(), format!("brd-{name}-hub"));
    // No pair veths: nodes reach each other only through the hub.
    let links = stdout(lab.exec(1, "ip", &["-o", "link", "show"]).unwrap());
    assert!(
        links.contains("wan0@") && links.contains("wan1@"),
        "{links}"
    );
    assert!(
        !links.contains(" u2@") && !links.contains("wan2@"),
        "{links}"
    );
    // Every uplink: its address, and a default route in its own table; main has the
    // underlay over uplink 0 and no default.
    for i in 1..=3 {
        for k in 0..lab.wans(i) {
            let addrs = stdout(
                lab.exec(i, "ip", &["-o", "addr", "show", "dev", &format!("wan{k}")])
                    .unwrap(),
            );
            assert!(addrs.contains(&format!("198.18.{k}.{i}/32")), "{addrs}");
            let v6 = if k == 0 {
                format!("2001:db8::{i}/128")
            } else {
                format!("2001:db8:{k}::{i}/128")
            };
            assert!(addrs.contains(&v6), "{addrs}");
            assert_eq!(format!("{}/128", lab.wan_addrs(i, k).v6), v6);
            for family in ["-4", "-6"] {
                let table = stdout(
                    lab.exec(
                        i,
                        "ip",
                        &[family, "route", "show", "table", &format!("10{k}")],
                    )
                    .unwrap(),
                );
                let gw = if family == "-4" {
                    format!("198.18.{k}.254")
                } else {
                    "fe80::fe".to_string()
                };
                assert!(
                    table.contains(&format!("default via {gw} dev wan{k}")),
                    "n{i} table 10{k}: {table}"
                );
            }
        }
        let main = stdout(lab.exec(i, "ip", &["route", "show"]).unwrap());
        assert!(
            main.contains("198.18.0.0/15 via 198.18.0.254 dev wan0"),
            "{main}"
        );
        assert!(!main.contains("default"), "{main}");
    }
    assert_eq!(lab.addrs(2).v4, lab.wan_addrs(2, 0).v4);
    // From each uplink of each node (a socket bound to it, as braid's path sockets are)
    // to every uplink of every other node. IPv4 goes out by the kernel's on-link fallback
    // (the hub answers ARP for what it routes); IPv6 has no such fallback, so it needs the
    // per-uplink rule braid adds (`oif wan<k> lookup 100+k`), added here.
    let all_pairs = |family: &str| {
        for i in 1..=3 {
            for k in 0..lab.wans(i) {
                let dev = format!("wan{k}");
                for j in (1..=3).filter(|&j| j != i) {
                    for m in 0..lab.wans(j) {
                        let to = lab.wan_addrs(j, m);
                        let to = if family == "-4" {
                            to.v4.to_string()
                        } else {
                            to.v6.to_string()
                        };
                        assert!(ping_via(&lab, i, &dev, &to), "n{i} {dev} -> n{j} {to}");
                    }
                }
            }
        }
    };
    all_pairs("-4");
    for i in 1..=3 {
        for k in 1..lab.wans(i) {
            for family in ["-4", "-6"] {
                let (dev, table) = (format!("wan{k}"), format!("10{k}"));
                lab.exec(
                    i,
                    "ip",
                    &[family, "rule", "add", "oif", &dev, "lookup", &table],
                )
                .unwrap();
            }
        }
    }
    all_pairs("-4");
    all_pairs("-6");
    // The hub forwards and holds "the internet"; nodes reach it through their tables.
    let internet = braid_lab::INTERNET_V4.to_string();
    assert!(!lab.ping(1, &internet), "main has no default route");
    assert!(ping_via(&lab, 1, "wan1", &internet));
    assert!(ping_via(
        &lab,
        2,
        "wan2",
        &braid_lab::INTERNET_V6.to_string()
    ));
    lab.down().unwrap();
    assert!(lab_namespaces(&name).is_empty());
}

#[test]
fn a_udp_socket_bound_to_an_uplink_leaves_and_returns_through_it() {
    if skip("a_udp_socket_bound_to_an_uplink_leaves_and_returns_through_it") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&unique_name("wu"), 2).with_wans(&[2, 1])).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = echo_server(&lab.ns(2), 47000, stop.clone());
    let to: SocketAddr = "198.18.0.2:47000".parse().unwrap();
    let n1 = lab.ns(1);
    let run = || -> Result<(), String> {
        // Bound to wan1 with the policy rule braid adds: source 198.18.1.1, and the far
        // side's answer to that source comes back through the hub over n1w1.
        lab.exec(1, "ip", &["rule", "add", "oif", "wan1", "lookup", "101"])
            .map_err(|e| e.to_string())?;
        let seen = bound_udp_echo(&n1, "wan1", to);
        if !seen
            .as_deref()
            .is_some_and(|s| s.starts_with("198.18.1.1:"))
        {
            return Err(format!(
                "bound to wan1 with the rule: the server saw {seen:?}"
            ));
        }
        let seen = bound_udp_echo(&n1, "wan0", to);
        if !seen
            .as_deref()
            .is_some_and(|s| s.starts_with("198.18.0.1:"))
        {
            return Err(format!("bound to wan0: the server saw {seen:?}"));
        }
        // Without the rule, the kernel's on-link fallback (and the hub's proxy ARP) still
        // takes wan1.
        lab.exec(1, "ip", &["rule", "del", "oif", "wan1", "lookup", "101"])
            .map_err(|e| e.to_string())?;
        let seen = bound_udp_echo(&n1, "wan1", to);
        if !seen
            .as_deref()
            .is_some_and(|s| s.starts_with("198.18.1.1:"))
        {
            return Err(format!("bound to wan1, no rule: the server saw {seen:?}"));
        }
        // A cut on wan1 stops the bound socket and leaves wan0 alone.
        lab.cut_wan(1, 1).map_err(|e| e.to_string())?;
        if let Some(seen) = bound_udp_echo(&n1, "wan1", to) {
            return Err(format!("wan1 is cut but an answer came ({seen})"));
        }
        if bound_udp_echo(&n1, "wan0", to).is_none() {
            return Err("a cut on wan1 stopped wan0".into());
        }
        lab.restore_wan(1, 1).map_err(|e| e.to_string())?;
        if bound_udp_echo(&n1, "wan1", to).is_none() {
            return Err("wan1 restored but no answer".into());
        }
        Ok(())
    };
    let result = run();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    result.unwrap();
}

#[test]
fn cutting_one_uplink_leaves_the_others_alone() {
    if skip("cutting_one_uplink_leaves_the_others_alone") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&unique_name("wc"), 2).with_wans(&[2])).unwrap();
    let (n2w0, n1w1) = ("198.18.0.2", "198.18.1.1");
    assert!(ping_via(&lab, 1, "wan1", n2w0));
    lab.cut_wan(1, 1).unwrap();
    lab.cut_wan(1, 1).unwrap(); // twice is harmless
    assert!(
        !ping_via(&lab, 1, "wan1", n2w0),
        "cut uplink still pings out"
    );
    assert!(
        !ping_via(&lab, 2, "wan0", n1w1),
        "cut uplink still reachable from outside"
    );
    assert!(
        !ping_via(&lab, 1, "wan1", "2001:db8::2"),
        "cut uplink still pings out over IPv6"
    );
    assert!(
        ping_via(&lab, 1, "wan0", n2w0),
        "the other uplink is cut too"
    );
    assert!(
        ping_via(&lab, 2, "wan1", "198.18.0.1"),
        "n2's wan1 is not cut"
    );
    lab.restore_wan(1, 1).unwrap();
    assert!(ping_via(&lab, 1, "wan1", n2w0));
    assert!(ping_via(&lab, 2, "wan0", n1w1));
    // Link down takes the uplink's routes away; up brings them back.
    lab.set_wan_link(1, 1, false).unwrap();
    let table = stdout(
        lab.exec(1, "ip", &["route", "show", "table", "101"])
            .unwrap(),
    );
    assert!(table.trim().is_empty(), "{table}");
    assert!(!ping_via(&lab, 1, "wan1", n2w0));
    assert!(ping_via(&lab, 1, "wan0", n2w0));
    lab.set_wan_link(1, 1, true).unwrap();
    let table = stdout(
        lab.exec(1, "ip", &["route", "show", "table", "101"])
            .unwrap(),
    );
    assert!(
        table.contains("default via 198.18.1.254 dev wan1"),
        "{table}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ping_via(&lab, 1, "wan1", n2w0) {
        assert!(Instant::now() < deadline, "wan1 did not come back up");
    }
}

#[test]
fn loss_on_one_uplink_leaves_the_others_alone() {
    if skip("loss_on_one_uplink_leaves_the_others_alone") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&unique_name("wl"), 2).with_wans(&[2, 1])).unwrap();
    let lossy = LinkShape {
        rate_mbit: None,
        loss_percent: Some(30),
    };
    lab.shape_wan(1, 1, lossy).unwrap();
    lab.shape_wan(1, 1, lossy).unwrap(); // the same again changes nothing
    let rules = stdout(
        in_netns(
            &lab.hub(),
            "nft",
            &["list", "chain", "inet", "braid_lab", "loss_n1w1"],
        )
        .unwrap(),
    );
    assert_eq!(
        rules.matches("numgen random mod 100 < 30 drop").count(),
        1,
        "{rules}"
    );
    // 30% each way: about 51% of round trips lost (200 pings: 95% within 44..58).
    let lost = loss_via(&lab, 1, "wan1", "198.18.0.2", 200);
    assert!((30.0..=72.0).contains(&lost), "wan1 lost {lost}%");
    let clean = loss_via(&lab, 1, "wan0", "198.18.0.2", 200);
    assert!(clean < 1.0, "wan0 lost {clean}% with loss only on wan1");
    lab.shape_wan(1, 1, LinkShape::default()).unwrap();
    let cleared = loss_via(&lab, 1, "wan1", "198.18.0.2", 100);
    assert!(cleared < 1.0, "wan1 still lost {cleared}% after clearing");
}

/// One TCP stream from node 1 bound to `dev` to node 2's iperf3 server, in Mbit/s.
fn iperf_via(lab: &Lab, dev: &str, seconds: u32) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = lab
            .try_exec(
                1,
                "iperf3",
                &[
                    "-c",
                    "198.18.0.2",
                    "-p",
                    "47001",
                    "--bind-dev",
                    dev,
                    "-t",
                    &seconds.to_string(),
                    "-J",
                ],
            )
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if let Some(bps) = report["end"]["sum_received"]["bits_per_second"].as_f64() {
            return bps / 1e6;
        }
        assert!(
            Instant::now() < deadline,
            "iperf3 over {dev}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_rate_on_one_uplink_limits_only_it() {
    if skip("a_rate_on_one_uplink_limits_only_it") {
        return;
    }
    if Command::new("iperf3").arg("--version").output().is_err() {
        eprintln!(
            "\n*** SKIPPED a_rate_on_one_uplink_limits_only_it: iperf3 is not installed ***\n"
        );
        return;
    }
    let lab = Lab::up(LabSpec::new(&unique_name("wr"), 2).with_wans(&[2, 1])).unwrap();
    lab.shape_wan(
        1,
        1,
        LinkShape {
            rate_mbit: Some(20),
            loss_percent: None,
        },
    )
    .unwrap();
    for (ns, dev) in [(lab.ns(1), "wan1"), (lab.hub(), "n1w1")] {
        let qdisc = stdout(in_netns(&ns, "tc", &["qdisc", "show", "dev", dev]).unwrap());
        assert!(
            qdisc.contains("tbf") && qdisc.contains("20Mbit"),
            "{ns} {dev}: {qdisc}"
        );
    }
    let plain = stdout(
        lab.exec(1, "tc", &["qdisc", "show", "dev", "wan0"])
            .unwrap(),
    );
    assert!(!plain.contains("tbf"), "{plain}");
    lab.spawn(2, Command::new("iperf3").args(["-s", "-p", "47001"]))
        .unwrap();
    let shaped = iperf_via(&lab, "wan1", 2);
    let free = iperf_via(&lab, "wan0", 2);
    eprintln!("wan1 (20 Mbit/s tbf): {shaped:.1} Mbit/s; wan0: {free:.0} Mbit/s");
    assert!(
        (10.0..=22.0).contains(&shaped),
        "wan1 at 20 Mbit/s carried {shaped:.1}"
    );
    assert!(free > 100.0, "wan0 is not shaped but carried {free:.1}");
    lab.shape_wan(1, 1, LinkShape::default()).unwrap();
    for (ns, dev) in [(lab.ns(1), "wan1"), (lab.hub(), "n1w1")] {
        let qdisc = stdout(in_netns(&ns, "tc", &["qdisc", "show", "dev", dev]).unwrap());
        assert!(!qdisc.contains("tbf"), "{ns} {dev}: {qdisc}");
    }
}

#[test]
fn a_panic_or_a_killed_run_leaves_no_hub() {
    if skip("a_panic_or_a_killed_run_leaves_no_hub") {
        return;
    }
    let name = unique_name("wp");
    let inner = name.clone();
    let result = std::panic::catch_unwind(move || {
        let lab = Lab::up(LabSpec::new(&inner, 2).with_wans(&[2])).unwrap();
        assert_eq!(lab_namespaces(&inner).len(), 3);
        lab.spawn(1, Command::new("sleep").arg("300")).unwrap();
        panic!("a test failing in the middle of its lab");
    });
    assert!(result.is_err());
    assert!(
        lab_namespaces(&name).is_empty(),
        "the panic left namespaces"
    );
    let killed = unique_name("wk");
    std::mem::forget(Lab::up(LabSpec::new(&killed, 2).with_wans(&[2])).unwrap());
    assert_eq!(lab_namespaces(&killed).len(), 3);
    cleanup(Some(&killed)).unwrap();
    assert!(lab_namespaces(&killed).is_empty(), "cleanup left the hub");
    // A new lab of the same name replaces leftovers, hub included.
    std::mem::forget(Lab::up(LabSpec::new(&killed, 2).with_wans(&[2])).unwrap());
    let lab = Lab::up(LabSpec::new(&killed, 2).with_wans(&[2])).unwrap();
    assert!(ping_via(&lab, 1, "wan1", "198.18.0.2"));
    lab.down().unwrap();
    assert!(lab_namespaces(&killed).is_empty());
}

#[test]
fn uplink_operations_check_the_topology() {
    if skip("uplink_operations_check_the_topology") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&unique_name("wt"), 2).with_wans(&[2, 1])).unwrap();
    // Pairs can be cut (in the hub) but have no shapes of their own.
    let err = lab.shape(1, 2, LinkShape::default()).unwrap_err();
    assert!(
        matches!(err, LabError::Topology(_)) && err.to_string().contains("shape_wan"),
        "{err}"
    );
    let err = lab.shape_wan(2, 1, LinkShape::default()).unwrap_err();
    assert!(
        matches!(
            err,
            LabError::BadWan {
                node: 2,
                wan: 1,
                wans: 1
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("wan0..wan0"), "{err}");
    assert!(matches!(lab.cut_wan(3, 0), Err(LabError::BadNode { .. })));
    drop(lab);
    let mesh = Lab::up(LabSpec::new(&unique_name("wm"), 2)).unwrap();
    assert!(!mesh.has_wans());
    let err = mesh.cut_wan(1, 0).unwrap_err();
    assert!(err.to_string().contains("--wans"), "{err}");
}

#[test]
fn bad_wan_specs_are_refused_before_anything_is_made() {
    for spec in [
        LabSpec::new("ok", 2).with_wans(&[0]),
        LabSpec::new("ok", 2).with_wans(&[9]),
        LabSpec::new("ok", 2).with_wans(&[2, 1, 1]),
        LabSpec::new("ok", 2)
            .with_wans(&[2])
            .with_shape(1, 2, LinkShape::default()),
    ] {
        let err = Lab::up(spec.clone()).unwrap_err();
        assert!(
            matches!(err, LabError::Wans(_) | LabError::Topology(_)),
            "{spec:?}: {err}"
        );
    }
}

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn configs_carry_a_path_per_uplink() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_configs(
        "cfg",
        3,
        dir.path(),
        &ConfigOptions {
            wans: vec![3, 1],
            scheduler: Some("weighted".into()),
            ..ConfigOptions::default()
        },
    )
    .unwrap();
    let n1 = read_json(&files[0].config);
    for t in n1["transport"].as_array().unwrap() {
        assert_eq!(
            t["paths"],
            serde_json::json!([{"interface": "wan0"}, {"interface": "wan1"}, {"interface": "wan2"}])
        );
        assert_eq!(t["scheduler"], "weighted");
    }
    for f in &files[1..] {
        let config = read_json(&f.config);
        for t in config["transport"].as_array().unwrap() {
            assert!(
                t.get("paths").is_none() && t.get("scheduler").is_none(),
                "{t}"
            );
        }
    }
    // braid's model reads them as paths and a scheduler, and the plan accepts them.
    let registry_text = std::fs::read_to_string(dir.path().join("registry.json")).unwrap();
    let (registry, _) = braid_model::Registry::parse("registry.json", &registry_text).unwrap();
    for f in &files {
        let text = std::fs::read_to_string(&f.config).unwrap();
        let (config, _) = braid_model::Config::parse(&f.config.display().to_string(), &text)
            .unwrap_or_else(|p| panic!("{p}"));
        let expect = if f.index == 1 { 3 } else { 0 };
        for t in &config.transports {
            assert_eq!(t.paths.len(), expect, "n{}", f.index);
            let names: Vec<_> = t.paths.iter().filter_map(|p| p.interface.clone()).collect();
            assert_eq!(
                names,
                (0..expect).map(|k| format!("wan{k}")).collect::<Vec<_>>()
            );
            if f.index == 1 {
                assert_eq!(t.scheduler, braid_model::extensions::Scheduler::Weighted);
            }
        }
        let (config_name, registry_name) = (f.config.display().to_string(), "registry.json");
        let cross = braid_model::mesh::check(&config, &config_name, &registry, registry_name);
        assert!(cross.0.is_empty(), "{cross}");
        braid_plan::plan(
            &config,
            &registry,
            braid_plan::Sources {
                config: &config_name,
                registry: registry_name,
            },
        )
        .unwrap_or_else(|p| panic!("{p}"));
    }
}

#[test]
fn a_wan_lab_writes_its_own_uplinks_into_the_configs() {
    if skip("a_wan_lab_writes_its_own_uplinks_into_the_configs") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&unique_name("wf"), 2).with_wans(&[2, 1])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(dir.path(), &ConfigOptions::default())
        .unwrap();
    let n1 = read_json(&files[0].config);
    let n2 = read_json(&files[1].config);
    assert_eq!(
        n1["transport"][0]["paths"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(n2["transport"][0].get("paths").is_none());
    // The registry keeps publishing uplink 0.
    let registry = read_json(&dir.path().join("registry.json"));
    assert_eq!(registry[0]["endpoints"][0]["address"], "198.18.0.1");
}

#[test]
fn attach_reaches_a_running_lab_and_leaves_it_running() {
    if skip("attach_reaches_a_running_lab_and_leaves_it_running") {
        return;
    }
    let name = unique_name("wa");
    let lab = Lab::up(LabSpec::new(&name, 3).with_wans(&[2, 1, 3])).unwrap();
    {
        let attached = Lab::attach(&name).unwrap();
        assert_eq!(attached.nodes(), 3);
        assert_eq!(attached.wans_spec(), &[2, 1, 3]);
        attached.cut_wan(3, 2).unwrap();
        assert!(matches!(
            attached.cut_wan(2, 1),
            Err(LabError::BadWan { .. })
        ));
    } // dropping the attached handle removes nothing
    assert_eq!(lab_namespaces(&name).len(), 4);
    assert!(
        !ping_via(&lab, 1, "wan0", "198.18.2.3"),
        "the cut made through attach"
    );
    assert!(ping_via(&lab, 1, "wan0", "198.18.1.3"));
    lab.down().unwrap();
    let err = Lab::attach(&name).unwrap_err().to_string();
    assert!(err.contains("braid lab up"), "{err}");
    // A mesh lab attaches without uplinks.
    let mesh = Lab::up(LabSpec::new(&unique_name("wn"), 2)).unwrap();
    assert!(!Lab::attach(mesh.name()).unwrap().has_wans());
}
