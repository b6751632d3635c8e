//! docs/recipe-multiwan.md end to end, with the example configs as they are
//! (examples/multiwan): a router with two uplinks (60 and 20 Mbit/s), each behind its ISP's
//! NAT, bonded to a server that is the exit; a LAN of its own subnet (192.0.2.0/24,
//! declared in the registry's `lan_subnets`) behind the router; a host on the internet
//! (203.0.113.1, in the lab's hub). A 10 Mbit/s TCP download (iperf3 -R: what the LAN
//! host receives, every 0.2 s; less than either line carries alone, so a dip is an outage
//! and not the line's rate) from the internet host to the LAN host runs while one uplink goes down and comes back, a reload changes the link's
//! scheduler, and the other uplink is cut silently and restored: the stream survives,
//! the router's default route toward the exit never goes away, and the link is never
//! made again. The stalls of the stream are printed (the user saw 1.3 s and 6.2 s
//! outages that killed the stream when an uplink went and came back, and a default route
//! that went for ~1 s on every reload).

mod common;
use common::*;

use braid_lab::{Lab, LabSpec, namespace_prefix};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// braid's own routing table (`braid_system::routes::MESH_TABLE`).
const MESH_TABLE: &str = "98";
const INTERNET: &str = "203.0.113.1";

/// A process started by the test, ended (by its id) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Copies the example files into `dir`, with the control sockets moved into `dir` (the
/// only change: several tests and engineers share /run).
fn example_files(dir: &Path) -> (PathBuf, PathBuf) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/multiwan");
    for name in ["router.json", "server.json", "registry.json"] {
        let text = std::fs::read_to_string(examples.join(name)).unwrap();
        let text = text.replace(
            "/run/braid/",
            &format!("{}/", dir.to_str().expect("a UTF-8 temp dir")),
        );
        std::fs::write(dir.join(name), text).unwrap();
    }
    (dir.join("router.json"), dir.join("server.json"))
}

fn start(lab: &Lab, node: usize, config: &Path) {
    let log = config.with_extension("log");
    lab.spawn_private_uapi(
        node,
        Command::new(env!("CARGO_BIN_EXE_braid"))
            .arg("run")
            .arg("-c")
            .arg(config),
        Some(&log),
    )
    .unwrap();
}

/// The states of the router's bond paths, from `braid status --json`.
fn path_states(router: &Path) -> Vec<String> {
    let out = braid(&["status", "--json", "-c", router.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    doc["links"][0]["bond"]["paths"]
        .as_array()
        .map(|p| {
            p.iter()
                .map(|p| p["state"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn has_default(ns: &str) -> bool {
    Command::new("ip")
        .args([
            "-n", ns, "-4", "route", "show", "table", MESH_TABLE, "default",
        ])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty())
}

fn recreated(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("link recreated")
        .count()
}

/// The longest run of iperf3 intervals (0.2 s each, as the receiver saw them) under
/// 1 Mbit/s, in seconds.
fn longest_stall(report: &serde_json::Value) -> f64 {
    let mut longest: f64 = 0.0;
    let mut run = 0.0;
    for interval in report["intervals"].as_array().into_iter().flatten() {
        let sum = &interval["sum"];
        if sum["bits_per_second"].as_f64().unwrap_or(0.0) < 1e6 {
            run += sum["seconds"].as_f64().unwrap_or(0.0);
            longest = longest.max(run);
        } else {
            run = 0.0;
        }
    }
    longest
}

/// The recipe's lab, as docs/recipe-multiwan.md builds it, with both daemons running and
/// both paths up. `tag` makes the lab's name unique; `edit` changes the router's config
/// text before the start.
struct Recipe {
    lab: Lab,
    _dir: tempfile::TempDir,
    router: PathBuf,
    router_ns: String,
    hub: String,
    lan: String,
}

fn recipe(tag: &str, edit: impl FnOnce(String) -> String) -> Recipe {
    let lab = Lab::up(
        LabSpec::new(&format!("{tag}{:x}", std::process::id() % 0xffff), 2).with_wans(&[2, 1]),
    )
    .unwrap();
    let prefix = namespace_prefix(lab.name());
    let (router_ns, hub) = (lab.ns(1), lab.hub());
    // The lines: 60 and 20 Mbit/s.
    for (k, rate) in [(0, 60), (1, 20)] {
        lab.shape_wan(
            1,
            k,
            braid_lab::LinkShape {
                rate_mbit: Some(rate),
                loss_percent: None,
            },
        )
        .unwrap();
    }
    // Each ISP puts the router behind its NAT (its own public address): the server sees
    // the two paths from 198.18.100.1 and 198.18.101.1, never the router's own addresses.
    let nat = "table ip rb_isp_nat {\n chain postrouting {\n  type nat hook postrouting priority srcnat; policy accept;\n  iifname \"n1w0\" snat to 198.18.100.1\n  iifname \"n1w1\" snat to 198.18.101.1\n }\n}\n";
    let mut nft = Command::new("ip")
        .args(["netns", "exec", &hub, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut nft.stdin.take().unwrap(), nat.as_bytes()).unwrap();
    assert!(nft.wait().unwrap().success());
    // The LAN: its own namespace (removed with the lab: same prefix), 192.0.2.0/24, the
    // router at .1.
    let lan = format!("{prefix}lan");
    ip(&["netns", "add", &lan]);
    ip(&[
        "link", "add", "lan0", "netns", &router_ns, "type", "veth", "peer", "name", "eth0",
        "netns", &lan,
    ]);
    ip(&[
        "-n",
        &router_ns,
        "addr",
        "add",
        "192.0.2.1/24",
        "dev",
        "lan0",
    ]);
    ip(&["-n", &router_ns, "link", "set", "lan0", "up"]);
    ip(&["-n", &lan, "addr", "add", "192.0.2.10/24", "dev", "eth0"]); // the LAN host
    ip(&["-n", &lan, "link", "set", "eth0", "up"]);
    ip(&["-n", &lan, "link", "set", "lo", "up"]);
    ip(&["-n", &lan, "route", "add", "default", "via", "192.0.2.1"]);

    let dir = tempfile::tempdir().unwrap();
    let (router, server) = example_files(dir.path());
    for config in [&router, &server] {
        let out = braid(&["check", "-c", config.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(&router).unwrap();
    std::fs::write(&router, edit(text)).unwrap();
    start(&lab, 2, &server);
    start(&lab, 1, &router);
    wait_until("both paths up", Duration::from_secs(30), || {
        path_states(&router) == ["up", "up"]
    });
    Recipe {
        lab,
        _dir: dir,
        router,
        router_ns,
        hub,
        lan,
    }
}

fn skip(test: &str) -> bool {
    if !braid_lab::available_or_skip(test) {
        return true;
    }
    if Command::new("iperf3").arg("--version").output().is_err() {
        eprintln!("SKIPPED {test}: iperf3 is not installed");
        return true;
    }
    false
}

#[test]
fn the_multiwan_recipe_carries_a_lan_through_uplink_failures_and_reloads() {
    if skip("the_multiwan_recipe_carries_a_lan_through_uplink_failures_and_reloads") {
        return;
    }
    let Recipe {
        lab,
        _dir,
        router,
        router_ns,
        hub,
        lan,
    } = recipe("rb", |t| t);
    let lan_ping = |count: &str| {
        Command::new("ip")
            .args([
                "netns", "exec", &lan, "ping", "-q", "-c", count, "-i", "0.2", "-W", "1",
            ])
            .arg(INTERNET)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    wait_until(
        "the LAN reaches the internet",
        Duration::from_secs(20),
        || lan_ping("1"),
    );

    // Idle for longer than the old 3 x keepalive + 2 s: the router keeps its default
    // route although the server sends no keepalive of its own config.
    std::thread::sleep(Duration::from_secs(20));
    assert!(
        has_default(&router_ns),
        "the router withdrew its default route while idle"
    );
    assert!(lan_ping("3"), "the LAN lost the internet while idle");

    let router_log = router.with_extension("log");
    let remade_before = recreated(&router_log);
    // A stream from the LAN host, watched every 0.2 s, and the router's default route,
    // watched every 50 ms.
    let _iperf_server = Proc(
        Command::new("ip")
            .args(["netns", "exec", &hub, "iperf3", "-s", "-1", "-B", INTERNET])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let client = Command::new("ip")
        .args([
            "netns", "exec", &lan, "iperf3", "-c", INTERNET, "-R", "-b", "10M", "-t", "30", "-i",
            "0.2", "-J",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, ns) = (stop.clone(), router_ns.clone());
        std::thread::spawn(move || {
            let (mut missing, mut longest, mut since) = (0, Duration::ZERO, None::<Instant>);
            while !stop.load(Ordering::Relaxed) {
                if has_default(&ns) {
                    if let Some(t) = since.take() {
                        longest = longest.max(t.elapsed());
                    }
                } else {
                    missing += 1;
                    since.get_or_insert_with(Instant::now);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (missing, longest)
        })
    };
    let t0 = Instant::now();
    let at = |s: u64| {
        let due = t0 + Duration::from_secs(s);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    };
    at(4);
    lab.set_wan_link(1, 1, false).unwrap(); // wan1's line goes down (link and routes)
    at(8);
    lab.set_wan_link(1, 1, true).unwrap();
    at(12);
    // A reload that changes the link: another scheduler.
    let text = std::fs::read_to_string(&router).unwrap();
    std::fs::write(
        &router,
        text.replace(
            "\"scheduler\": \"weighted\"",
            "\"scheduler\": \"earliest-arrival\"",
        ),
    )
    .unwrap();
    let out = braid(&["reload", "-c", router.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    at(17);
    lab.cut_wan(1, 0).unwrap(); // wan0 goes silent (the modem lost its line)
    at(21);
    lab.restore_wan(1, 0).unwrap();
    let out = client.wait_with_output().unwrap();
    stop.store(true, Ordering::Relaxed);
    let (missing, longest_missing) = watcher.join().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let received = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    let stall = longest_stall(&report);
    let series: Vec<String> = report["intervals"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            format!(
                "{:.0}",
                i["sum"]["bits_per_second"].as_f64().unwrap_or(0.0) / 1e6
            )
        })
        .collect();
    eprintln!("Mbit/s per 0.2 s: {}", series.join(" "));
    eprintln!(
        "stream: {:.1} Mbit/s received on average, longest stall {stall:.1} s; default route \
         missing in {missing} of the 50 ms samples (longest {longest_missing:?})",
        received / 1e6
    );
    assert!(
        out.status.success() && report["error"].is_null(),
        "the stream died: {}",
        report["error"]
    );
    assert!(received > 1e6, "{received} bit/s");
    assert_eq!(missing, 0, "the router's default route went away");
    assert_eq!(
        recreated(&router_log),
        remade_before,
        "the link was made again"
    );
    assert!(stall <= 1.5, "the stream stalled for {stall} s");
    assert_eq!(path_states(&router), ["up", "up"]);
    assert!(lan_ping("5"));
}

/// Issue 16: "after an ISP cut with measured weights the stream fell to 3-4 Mbit/s for
/// 2-3 s (the surviving WAN carries 18)". A download at full rate, wan0 (60 Mbit/s) cut
/// silently at 8 s and restored at 14 s, once per scheduler; prints the received rate
/// every 0.2 s and the mean over the cut after its first second. A measurement for a
/// quiet machine and a release build (`cargo test --release ... -- --ignored
/// --nocapture`), not a check: the debug daemons are CPU-bound below the lines' rates.
#[test]
#[ignore]
fn measure_an_isp_cut_at_full_rate() {
    if skip("measure_an_isp_cut_at_full_rate") {
        return;
    }
    for scheduler in ["weighted", "earliest-arrival"] {
        let r = recipe("rm", |t| {
            t.replace(
                "\"scheduler\": \"weighted\"",
                &format!("\"scheduler\": \"{scheduler}\""),
            )
        });
        let _server = Proc(
            Command::new("ip")
                .args([
                    "netns", "exec", &r.hub, "iperf3", "-s", "-1", "-B", INTERNET,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(500));
        let client = Command::new("ip")
            .args([
                "netns", "exec", &r.lan, "iperf3", "-c", INTERNET, "-R", "-t", "20", "-i", "0.2",
                "-J",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(8));
        r.lab.cut_wan(1, 0).unwrap();
        std::thread::sleep(Duration::from_secs(6));
        r.lab.restore_wan(1, 0).unwrap();
        let out = client.wait_with_output().unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let rates: Vec<f64> = report["intervals"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| i["sum"]["bits_per_second"].as_f64().unwrap_or(0.0) / 1e6)
            .collect();
        let mean = |from: f64, to: f64| {
            let slice: Vec<f64> = rates
                .iter()
                .enumerate()
                .filter(|(i, _)| (from..to).contains(&(*i as f64 * 0.2)))
                .map(|(_, r)| *r)
                .collect();
            slice.iter().sum::<f64>() / slice.len().max(1) as f64
        };
        eprintln!(
            "{scheduler}: before the cut {:.1} Mbit/s, during it (after 1 s) {:.1}, after the \
             restore (after 1 s) {:.1}; per 0.2 s: {}",
            mean(2.0, 8.0),
            mean(9.0, 14.0),
            mean(15.0, 20.0),
            rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert!(out.status.success(), "the stream died");
        drop(r);
    }
}
