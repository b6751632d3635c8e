//! Fast reroute (issue 13) in the 4-node lab: a ping every 10 ms from node 1's workload to
//! node 4's while the direct link 1-4 carries it; the 1-4 underlay is cut, then restored.
//! Measured: the longest gap in the replies after the cut, and how long after the restore
//! node 1's route goes over the direct link again.
//!
//! The two tests assert issue 13's targets with braid's default settings in modes `babel`
//! and `bird` (gap <= 1 s, back on the direct link <= 2 s), with slack for a loaded 2-core
//! machine; a third moves a static default route to the next exit. Two more put 5 % loss on
//! the direct link instead of cutting it: braid's measured loss raises the link's cost
//! (`routing::cost`), traffic takes a clean detour, and comes back once the loss is gone. The benchmark (bench/convergence.sh) prints the numbers for
//! BENCHMARKS.md, beside the routing daemon's own detection at the same hello interval
//! (braid's liveness off) in the same run. `BRAID_CONVERGENCE_DEBUG=1` prints route
//! monitors and the daemons' logs; `BRAID_CONVERGENCE_HELLO`, `_CUT_SECS`, `_PAUSE`
//! (before the restore) and `_PAUSE_AFTER` (seconds) help looking into a run.

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One run's numbers.
#[derive(Debug)]
struct Run {
    /// The longest stretch without a reply, from the cut on (ms).
    gap_ms: u64,
    /// Pings without a reply in the whole run.
    lost: u64,
    /// The next hop after the cut (the node index of its `fe80::N`), if any.
    detour: Option<usize>,
    /// From the restore until node 1 routes over the direct link again (ms); `None` if it
    /// did not within the window.
    back_ms: Option<u64>,
}

const PING_INTERVAL_MS: u64 = 10;

/// Runs the lab in `mode` (`babel` or `bird`), braid's liveness on (its defaults) or off
/// (the routing daemon's own detection); `hello` overrides the hello interval. The cut
/// lasts `cut_for`; the route back is awaited for up to `back_within` after the restore.
fn measure(mode: &str, liveness: bool, hello: Option<u16>, cut_for: Duration) -> Run {
    let n = 4;
    let tag = format!(
        "cv{}{}{:x}",
        &mode[..2],
        u8::from(liveness),
        std::process::id() % 0xfff
    );
    let lab = Lab::up(LabSpec::new(&tag, n)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(
            dir.path(),
            &ConfigOptions {
                routing: mode.into(),
                ..ConfigOptions::default()
            },
        )
        .unwrap();
    for f in &files {
        edit_json(&f.config, |c| {
            if let Some(h) = hello {
                c["routing"]["hello_interval"] = json!(h);
            }
            if !liveness {
                c["routing"]["liveness_interval_ms"] = json!(0);
            }
        });
    }
    start_daemons(&lab, &files);
    wait_for_bridges(&lab, n);
    lab.add_workload(1, "braid0").unwrap();
    let w4 = lab.add_workload(4, "braid0").unwrap().v6.to_string();
    wait_until("w1 -> w4", Duration::from_secs(120), || {
        lab.workload_ping(1, &w4)
    });
    wait_until(
        "node 1 routes to w4 over the direct link",
        Duration::from_secs(120),
        || relay(&lab, &w4) == Some(4),
    );
    std::thread::sleep(Duration::from_secs(2)); // settle
    let lead = Duration::from_secs(2);
    let back_window = Duration::from_secs(30);
    let total = lead + cut_for + back_window + Duration::from_secs(2);
    // Stopped (killed) when the run is done; the count only bounds a run gone wrong.
    let count = 10 * total.as_millis() as u64 / PING_INTERVAL_MS;
    let interval = format!("{}", PING_INTERVAL_MS as f64 / 1000.0);
    let mut ping = Command::new("ip")
        .args(["netns", "exec", &lab.workload_ns(1), "ping", "-n", "-i"])
        .arg(&interval)
        .args(["-D", "-W", "1", "-c", &count.to_string(), &w4])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = ping.stdout.take().unwrap();
    // Each reply as (seq, arrival in seconds since the epoch: `-D`).
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| reply(&line))
            .collect::<Vec<(u64, f64)>>()
    });
    let debug = std::env::var_os("BRAID_CONVERGENCE_DEBUG").is_some();
    let monitors: Vec<std::process::Child> = if debug {
        [1, 3, 4]
            .iter()
            .map(|&node| {
                let out = std::fs::File::create(dir.path().join(format!("monitor{node}"))).unwrap();
                Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &lab.ns(node),
                        "ip",
                        "-ts",
                        "monitor",
                        "link",
                        "route",
                    ])
                    .stdout(out)
                    .spawn()
                    .unwrap()
            })
            .collect()
    } else {
        Vec::new()
    };
    std::thread::sleep(lead);
    let cut_wall = std::time::SystemTime::now();
    lab.cut(1, 4).unwrap();
    let cut_at = Instant::now();
    if debug {
        println!(
            "cut from {:.3} to {:.3} (nftables in both namespaces)",
            epoch_seconds(cut_wall),
            epoch_seconds(std::time::SystemTime::now())
        );
    }
    let mut detour = None;
    let mut dumped = !debug;
    while cut_at.elapsed() < cut_for {
        if !dumped && cut_at.elapsed() > Duration::from_secs(3) {
            dumped = true;
            for node in 1..=n {
                let out = lab
                    .try_exec(node, "ip", &["-6", "route", "show", "table", "98"])
                    .unwrap();
                println!(
                    "n{node} routes 3 s after the cut:\n{}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
        }
        if let Some(r) = relay(&lab, &w4).filter(|r| *r != 4) {
            if detour.is_none() && std::env::var_os("BRAID_CONVERGENCE_DEBUG").is_some() {
                println!(
                    "detour via n{r} {} ms after the cut",
                    cut_at.elapsed().as_millis()
                );
            }
            detour = Some(r);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(secs) = std::env::var("BRAID_CONVERGENCE_PAUSE")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        println!("paused {secs} s for a look: lab {tag}, w4 {w4}");
        std::thread::sleep(Duration::from_secs(secs));
    }
    lab.restore(1, 4).unwrap();
    let restored = Instant::now();
    if let Some(secs) = std::env::var("BRAID_CONVERGENCE_PAUSE_AFTER")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        println!(
            "restored; paused {secs} s for a look: lab {tag}, files in {}",
            dir.path().display()
        );
        std::thread::sleep(Duration::from_secs(secs));
    }
    let mut back_ms = None;
    while restored.elapsed() < back_window {
        if relay(&lab, &w4) == Some(4) {
            back_ms = Some(restored.elapsed().as_millis() as u64);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // When ping was stopped: silence at the end is a gap too.
    let stopped_wall = epoch_seconds(std::time::SystemTime::now());
    for mut m in monitors {
        let _ = m.kill();
        let _ = m.wait();
    }
    if debug {
        for node in [1, 3, 4] {
            let text = std::fs::read_to_string(dir.path().join(format!("monitor{node}")))
                .unwrap_or_default();
            println!("n{node} monitor:\n{text}");
        }
        for f in &files {
            let log =
                std::fs::read_to_string(f.config.with_file_name("braid.log")).unwrap_or_default();
            println!("node {} log:\n{log}", f.index);
        }
    }
    let _ = ping.kill();
    let _ = ping.wait();
    let replies = reader.join().unwrap();
    // The longest stretch without a reply from the cut on (arrival times), and silence at
    // the end counts too.
    let cut_s = epoch_seconds(cut_wall);
    let mut gap_s: f64 = 0.0;
    let mut gap_at = 0.0;
    let mut last = cut_s;
    for &(_, at) in replies.iter().filter(|(_, at)| *at >= cut_s) {
        if at - last > gap_s {
            gap_s = at - last;
            gap_at = last - cut_s;
        }
        last = at;
    }
    if stopped_wall - last > gap_s {
        gap_s = stopped_wall - last;
        gap_at = last - cut_s;
    }
    if debug {
        println!("longest gap {gap_s:.3} s, from {gap_at:.3} s after the cut");
        let around: Vec<String> = replies
            .iter()
            .filter(|(_, at)| (cut_s - 0.1..cut_s + 3.0).contains(at))
            .map(|(seq, at)| format!("{seq}@{at:.3}"))
            .collect();
        println!("replies from 0.1 s before the cut: {}", around.join(" "));
    }
    // ping falls behind its 10 ms on a loaded machine: count from the seqs it used.
    let sent = replies.last().map_or(0, |r| r.0);
    Run {
        gap_ms: (gap_s * 1000.0) as u64,
        lost: sent.saturating_sub(replies.len() as u64),
        detour,
        back_ms,
    }
}

/// A reply line of `ping -D`: `[1796098079.123456] 64 bytes from ..: icmp_seq=7 ...`.
fn reply(line: &str) -> Option<(u64, f64)> {
    let at = line.strip_prefix('[')?.split(']').next()?.parse().ok()?;
    let seq = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("icmp_seq="))?
        .parse()
        .ok()?;
    Some((seq, at))
}

fn epoch_seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The longest gap after a cut with braid's defaults: issue 13's target is 1 s; the bound
/// has slack for a 2-core machine shared with other builds and labs.
const GAP_BOUND_MS: u64 = 1_500;

/// How long after the restore the direct link must carry the route again: issue 13's
/// target is 2 s, the bound has the same slack as the gap's.
const BACK_BOUND_MS: u64 = 3_000;

fn check_defaults(mode: &str) {
    let hello = std::env::var("BRAID_CONVERGENCE_HELLO")
        .ok()
        .and_then(|h| h.parse().ok());
    let cut_for = std::env::var("BRAID_CONVERGENCE_CUT_SECS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(6);
    let run = measure(mode, true, hello, Duration::from_secs(cut_for));
    println!("{mode}, braid defaults: {run:?}");
    assert!(
        run.detour.is_some(),
        "{mode}: traffic never took a detour: {run:?}"
    );
    assert!(
        run.gap_ms <= GAP_BOUND_MS,
        "{mode}: the longest gap after the cut was {} ms (bound {GAP_BOUND_MS}): {run:?}",
        run.gap_ms
    );
    let back = run.back_ms.unwrap_or(u64::MAX);
    assert!(
        back <= BACK_BOUND_MS,
        "{mode}: back on the direct link {back} ms after the restore (bound {BACK_BOUND_MS}): {run:?}"
    );
}

#[test]
fn babel_routes_around_a_dead_link_within_a_second() {
    if !braid_lab::available_or_skip("babel_routes_around_a_dead_link_within_a_second") {
        return;
    }
    check_defaults("babel");
}

#[test]
fn bird_routes_around_a_dead_link_within_a_second() {
    if !braid_lab::available_or_skip("bird_routes_around_a_dead_link_within_a_second") {
        return;
    }
    check_defaults("bird");
}

#[test]
#[ignore = "benchmark: run bench/convergence.sh"]
fn convergence_benchmark() {
    if !braid_lab::available_or_skip("convergence_benchmark") {
        return;
    }
    let modes = std::env::var("BRAID_CONVERGENCE_MODES").unwrap_or_else(|_| "babel bird".into());
    for mode in modes.split_whitespace() {
        for liveness in [true, false] {
            // The daemon's own detection needs a longer cut to show at all.
            let cut_for = Duration::from_secs(if liveness { 6 } else { 40 });
            let run = measure(mode, liveness, None, cut_for);
            println!(
                "{mode:5} {:<26} gap {:>6} ms, lost {:>5}, detour via n{}, back on the direct link {}",
                if liveness {
                    "braid liveness (defaults)"
                } else {
                    "daemon's own detection"
                },
                run.gap_ms,
                run.lost,
                run.detour.map_or("-".into(), |d| d.to_string()),
                run.back_ms
                    .map_or("not within 30 s".into(), |ms| format!("after {ms} ms")),
            );
        }
    }
}

/// Mode `static`, two exits (preferences 100 and 200), braid's defaults: when the link from
/// node 3 to the preferred exit dies, node 3's default moves to the other exit within
/// `dead_after_ms` plus braid's 250 ms look at link states (issue 13's target: 1 s; bound
/// with slack 2 s), and back when it returns.
#[test]
fn static_default_moves_to_the_next_exit_when_the_link_dies() {
    if !braid_lab::available_or_skip("static_default_moves_to_the_next_exit_when_the_link_dies") {
        return;
    }
    let n = 3;
    let lab = Lab::up(LabSpec::new(
        &format!("cvst{:x}", std::process::id() % 0xfff),
        n,
    ))
    .unwrap();
    // Two exits, each with an upstream interface (a veth to nowhere is enough here).
    for k in 1..=2 {
        let ns = lab.ns(k);
        let addr = format!("198.51.100.{}/24", 10 + k);
        for args in [
            vec![
                "-n", &ns, "link", "add", "up0", "type", "veth", "peer", "name", "up0p",
            ],
            vec!["-n", &ns, "link", "set", "up0", "up"],
            vec!["-n", &ns, "link", "set", "up0p", "up"],
            vec!["-n", &ns, "addr", "add", &addr, "dev", "up0"],
        ] {
            ip(&args);
        }
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
    edit_json(&dir.path().join("registry.json"), |r| {
        r[0]["exit_preference"] = json!(100);
        r[1]["exit_preference"] = json!(200);
    });
    for f in files.iter().take(2) {
        edit_json(&f.config, |c| {
            c["exit"] = json!({"upstream_interface": "up0", "gateway4": "198.51.100.1"})
        });
    }
    start_daemons(&lab, &files);
    wait_until("n3's default via exit 1", Duration::from_secs(60), || {
        default_next_hop(&lab).as_deref() == Some("169.254.0.1")
    });
    std::thread::sleep(Duration::from_secs(2));
    let cut = Instant::now();
    lab.cut(1, 3).unwrap();
    while default_next_hop(&lab).as_deref() != Some("169.254.0.2") {
        assert!(
            cut.elapsed() < Duration::from_secs(30),
            "n3's default never moved to exit 2"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let moved = cut.elapsed();
    let restored = Instant::now();
    lab.restore(1, 3).unwrap();
    while default_next_hop(&lab).as_deref() != Some("169.254.0.1") {
        assert!(
            restored.elapsed() < Duration::from_secs(30),
            "n3's default never came back to exit 1"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let back = restored.elapsed();
    println!(
        "static: default moved to exit 2 {moved:?} after the cut, back {back:?} after the restore"
    );
    assert!(
        moved <= Duration::from_secs(2),
        "the default moved {moved:?} after the cut (bound 2 s)"
    );
    assert!(
        back <= Duration::from_secs(3),
        "the default came back {back:?} after the restore (bound 3 s)"
    );
}

/// One run with loss on the direct link (numbers for BENCHMARKS.md).
#[derive(Debug)]
struct LossRun {
    /// From the loss's start until node 1 routes to w4 over a detour and stays there (ms).
    detour_ms: Option<u64>,
    /// The detour's node.
    detour: Option<usize>,
    /// From the loss's end until node 1 routes over the direct link again and stays (ms).
    back_ms: Option<u64>,
    /// Node 4's and node 1's costs of their links to each other while the loss was on.
    costs_lossy: Vec<String>,
    /// The same after the loss was gone and the route came back, and all four were clean.
    costs_clean: Vec<String>,
    /// From the loss's end until all four links were clean again (ms).
    all_clean_ms: u64,
    /// The longest gap in the pings' replies from the loss's start on (ms): the lossy link's
    /// own losses (5 % each way) and the routing daemons' changes (babeld: a link whose cost
    /// changes is removed and added again).
    gap_ms: u64,
    /// Pings without a reply while on the lossy link, on the detour, and after the return.
    lost: [(u64, u64); 3],
}

/// The cost each link between nodes `a` and `b` has on node `a` (`braid status --json`):
/// `link rxcost reason loss%`.
fn link_costs(files: &[braid_lab::NodeFiles], a: usize, b: usize) -> Vec<String> {
    let out = braid(&[
        "status",
        "--json",
        "-c",
        files[a - 1].config.to_str().unwrap(),
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let peer = format!("n{b}");
    doc["links"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["peer"] == peer.as_str())
        .map(|l| {
            let c = &l["routing_cost"];
            format!(
                "n{a} {} {} {} {}",
                l["name"].as_str().unwrap_or("?"),
                c["rxcost"],
                c["reason"].as_str().unwrap_or("-"),
                c["loss"]
                    .as_f64()
                    .map_or("-".into(), |l| format!("{:.1}%", 100.0 * l))
            )
        })
        .collect()
}

/// babeld's neighbours and its routes to node 4's /64 (its `dump`), for a look.
fn babeld_dump(ctl: &std::path::Path) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(ctl) else {
        return format!("no control socket {}", ctl.display());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"dump\n");
    let mut text = String::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        if text.ends_with("\nok\n") && text.contains("dump") || text.matches("\nok\n").count() >= 2
        {
            break;
        }
    }
    text.lines()
        .filter(|l| l.contains("neighbour") || l.contains("bd00:4::/64"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until `ok(relay)` holds for `stable` in a row; returns when that stretch began,
/// from `since`, or `None` after `timeout`.
fn stable_route(
    lab: &Lab,
    w4: &str,
    since: Instant,
    stable: Duration,
    timeout: Duration,
    ok: impl Fn(Option<usize>) -> bool,
) -> Option<(Duration, Option<usize>)> {
    let mut began: Option<(Instant, Option<usize>)> = None;
    let debug = std::env::var_os("BRAID_CONVERGENCE_DEBUG").is_some();
    let mut last = None;
    while since.elapsed() < timeout {
        let r = relay(lab, w4);
        if debug && r != last {
            println!(
                "{:>6} ms: node 1 -> w4 via {r:?}",
                since.elapsed().as_millis()
            );
            last = r;
        }
        if ok(r) {
            let (at, first) = *began.get_or_insert((Instant::now(), r));
            if at.elapsed() >= stable {
                return Some((at - since, first));
            }
        } else {
            began = None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// 5 % loss (each way) on the underlay of the direct link 1-4 while node 1's workload pings
/// node 4's every 10 ms; then the loss is cleared.
fn measure_loss(mode: &str) -> LossRun {
    let n = 4;
    let tag = format!("cvl{}{:x}", &mode[..2], std::process::id() % 0xfff);
    let lab = Lab::up(LabSpec::new(&tag, n)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(
            dir.path(),
            &ConfigOptions {
                routing: mode.into(),
                ..ConfigOptions::default()
            },
        )
        .unwrap();
    start_daemons(&lab, &files);
    wait_for_bridges(&lab, n);
    lab.add_workload(1, "braid0").unwrap();
    let w4 = lab.add_workload(4, "braid0").unwrap().v6.to_string();
    wait_until("w1 -> w4", Duration::from_secs(120), || {
        lab.workload_ping(1, &w4)
    });
    wait_until(
        "node 1 routes to w4 over the direct link",
        Duration::from_secs(120),
        || relay(&lab, &w4) == Some(4),
    );
    // The links' loss is measured once they were heard for 10 s, judged over 20-30 s more.
    std::thread::sleep(Duration::from_secs(2));
    let mut ping = Command::new("ip")
        .args(["netns", "exec", &lab.workload_ns(1), "ping", "-n", "-i"])
        .args(["0.01", "-D", "-W", "1", "-c", "100000", &w4])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = ping.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| reply(&line))
            .collect::<Vec<(u64, f64)>>()
    });
    std::thread::sleep(Duration::from_secs(1));
    let lossy_wall = epoch_seconds(std::time::SystemTime::now());
    let lossy = Instant::now();
    let five = braid_lab::LinkShape {
        loss_percent: Some(5),
        ..Default::default()
    };
    lab.shape(1, 4, five).unwrap();
    // A detour that holds for 5 s: not the moment babeld re-adds node 1's own interface.
    let moved = stable_route(
        &lab,
        &w4,
        lossy,
        Duration::from_secs(5),
        Duration::from_secs(LOSS_BOUND_SECS + 10),
        |r| r.is_some_and(|r| r != 4),
    );
    if std::env::var_os("BRAID_CONVERGENCE_DEBUG").is_some() && mode == "babel" {
        for node in [1, 2, 4] {
            println!(
                "n{node} babeld:\n{}",
                babeld_dump(&dir.path().join(format!("n{node}/babeld/babeld.ctl")))
            );
        }
    }
    let mut costs_lossy = link_costs(&files, 4, 1);
    costs_lossy.extend(link_costs(&files, 1, 4));
    let clean_wall = epoch_seconds(std::time::SystemTime::now());
    let clean = Instant::now();
    lab.shape(1, 4, braid_lab::LinkShape::default()).unwrap();
    let back = stable_route(
        &lab,
        &w4,
        clean,
        Duration::from_secs(5),
        Duration::from_secs(LOSS_BOUND_SECS + 10),
        |r| r == Some(4),
    );
    // Each end judges its own links: wait until all four are clean again (node 1's route
    // to w4 follows node 4's costs, node 4's route back node 1's).
    let mut costs_clean = Vec::new();
    while clean.elapsed() < Duration::from_secs(LOSS_BOUND_SECS + 10) {
        costs_clean = link_costs(&files, 4, 1);
        costs_clean.extend(link_costs(&files, 1, 4));
        if costs_clean.iter().all(|c| c.contains(" clean ")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let all_clean_ms = clean.elapsed().as_millis() as u64;
    // The clean links' readings, for the thresholds (routing::cost).
    let others: Vec<String> = [(1, 2), (1, 3), (2, 4), (3, 4), (2, 3)]
        .iter()
        .flat_map(|&(a, b)| link_costs(&files, a, b))
        .collect();
    println!("clean links at the end: {others:?}");
    let stopped_wall = epoch_seconds(std::time::SystemTime::now());
    if std::env::var_os("BRAID_CONVERGENCE_DEBUG").is_some() {
        for f in &files {
            let log =
                std::fs::read_to_string(f.config.with_file_name("braid.log")).unwrap_or_default();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("routing cost") || l.contains("babeld interfaces"))
                .collect();
            println!("node {} log (costs):\n{}", f.index, lines.join("\n"));
        }
    }
    let _ = ping.kill();
    let _ = ping.wait();
    let replies = reader.join().unwrap();
    let mut gap_s: f64 = 0.0;
    let mut last = lossy_wall;
    for &(_, at) in replies.iter().filter(|(_, at)| *at >= lossy_wall) {
        gap_s = gap_s.max(at - last);
        last = at;
    }
    gap_s = gap_s.max(stopped_wall - last);
    // Pings lost in each phase: from the replies' sequence numbers (ping falls behind its
    // 10 ms on a loaded machine), between the first and the last reply of the phase.
    let phase = |from: f64, to: f64| {
        let seqs: Vec<u64> = replies
            .iter()
            .filter(|(_, at)| (from..to).contains(at))
            .map(|(s, _)| *s)
            .collect();
        match (seqs.first(), seqs.last()) {
            (Some(a), Some(b)) => {
                let sent = b - a + 1;
                (sent - seqs.len() as u64, sent)
            }
            _ => (0, 0),
        }
    };
    let on_detour = lossy_wall + moved.map_or(0.0, |m| m.0.as_secs_f64());
    LossRun {
        detour_ms: moved.map(|m| m.0.as_millis() as u64),
        detour: moved.and_then(|m| m.1),
        back_ms: back.map(|b| b.0.as_millis() as u64),
        costs_lossy,
        costs_clean,
        all_clean_ms,
        gap_ms: (gap_s * 1000.0) as u64,
        lost: [
            phase(lossy_wall, on_detour),
            phase(on_detour, clean_wall),
            phase(
                clean_wall + back.map_or(0.0, |b| b.0.as_secs_f64()),
                stopped_wall,
            ),
        ],
    }
}

/// How long traffic may take to leave a link with 5 % loss, and to come back after it is
/// gone: the decision needs 20-30 s of samples each way (`routing::cost`), more when a link's
/// loss happens to read low for a while (both links 1-4, over IPv4 and IPv6, must be judged
/// lossy), a look every 5 s (the daemon's retry tick) and the routing daemon's update.
/// Measured 22-47 s to the detour and 19-25 s back (BENCHMARKS.md); the bound has slack for
/// a loaded 2-core machine.
const LOSS_BOUND_SECS: u64 = 75;

fn check_loss(mode: &str) {
    let run = measure_loss(mode);
    println!("{mode}, 5 % loss on the direct link: {run:#?}");
    let pct = |(lost, sent): (u64, u64)| 100.0 * lost as f64 / sent.max(1) as f64;
    println!(
        "{mode:5} 5 % loss: detour via n{} after {} ms, back after {} ms (all four links clean \
         after {} ms); longest reply gap {} ms; pings lost {:.1} % on the lossy link, {:.1} % \
         on the detour, {:.1} % after the return",
        run.detour.map_or("-".into(), |d| d.to_string()),
        run.detour_ms.map_or("-".into(), |d| d.to_string()),
        run.back_ms.map_or("-".into(), |d| d.to_string()),
        run.all_clean_ms,
        run.gap_ms,
        pct(run.lost[0]),
        pct(run.lost[1]),
        pct(run.lost[2]),
    );
    let bound = LOSS_BOUND_SECS * 1000;
    let detour = run
        .detour
        .map_or(u64::MAX, |_| run.detour_ms.unwrap_or(u64::MAX));
    assert!(
        detour <= bound,
        "{mode}: traffic left the lossy link {detour} ms after the loss began (bound {bound}): {run:?}"
    );
    assert!(
        run.costs_lossy.iter().any(|c| c.contains(" 1024 lossy ")),
        "{mode}: no link between n1 and n4 shows the lossy cost: {run:?}"
    );
    let back = run.back_ms.unwrap_or(u64::MAX);
    assert!(
        back <= bound,
        "{mode}: back on the direct link {back} ms after the loss ended (bound {bound}): {run:?}"
    );
    assert!(
        run.all_clean_ms <= bound && run.costs_clean.iter().all(|c| c.contains(" clean ")),
        "{mode}: a link still lossy after the loss ended: {run:?}"
    );
}

#[test]
fn babel_leaves_a_lossy_link_and_comes_back() {
    if !braid_lab::available_or_skip("babel_leaves_a_lossy_link_and_comes_back") {
        return;
    }
    check_loss("babel");
}

#[test]
fn bird_leaves_a_lossy_link_and_comes_back() {
    if !braid_lab::available_or_skip("bird_leaves_a_lossy_link_and_comes_back") {
        return;
    }
    check_loss("bird");
}
