//! Fast reroute (issue 13) in the 4-node lab: a ping every 10 ms from node 1's workload to
//! node 4's while the direct link 1-4 carries it; the 1-4 underlay is cut, then restored.
//! Measured: the longest gap in the replies after the cut, and how long after the restore
//! node 1's route goes over the direct link again.
//!
//! The two tests assert issue 13's targets with braid's default settings in modes `babel`
//! and `bird` (gap <= 1 s, back on the direct link <= 2 s), with slack for a loaded 2-core
//! machine; a third moves a static default route to the next exit. The benchmark (bench/convergence.sh) prints the numbers for
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

/// Node 3's IPv4 next hop toward the outside (a link address `169.254.0.<exit>`).
fn default_next_hop(lab: &Lab) -> Option<String> {
    let out = lab
        .try_exec(
            3,
            "ip",
            &["-4", "route", "get", "192.0.2.1", "from", "10.0.3.254"],
        )
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .skip_while(|w| *w != "via")
        .nth(1)
        .map(str::to_string)
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
