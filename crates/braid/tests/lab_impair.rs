//! `braid lab up --profiles` and `braid lab wan` with impairment flags, end to end: the
//! CLI starts `braid lab impair` in the hub (detached, so `braid` returns), the profile's
//! delay shows in ping, a change takes effect, `--show` reports the counters, and
//! `braid lab down` ends the forwarder with the lab. Needs root, `ip netns` and iptables;
//! otherwise it prints SKIPPED and passes.

mod common;

use common::braid;
use std::process::Command;

/// Removes the lab when the test ends, also on panic.
struct LabGuard(String);

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = braid(&["lab", "down", "--name", &self.0]);
    }
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Mean RTT in ms of `count` pings from the lab's n1 over `dev` to n2.
fn rtt(ns: &str, dev: &str, count: u32) -> f64 {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-n", "-q", "-i", "0.05", "-I", dev,
        ])
        .args(["-c", &count.to_string(), "198.18.0.2"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("rtt"))
        .and_then(|l| l.split(" = ").nth(1))
        .and_then(|v| v.split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rtt: {text}"))
}

#[test]
fn lab_profiles_and_impairment_flags_work_from_the_cli() {
    if !braid_lab::available_or_skip("lab_profiles_and_impairment_flags_work_from_the_cli") {
        return;
    }
    if Command::new("iptables-legacy")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "\n*** SKIPPED lab_profiles_and_impairment_flags_work_from_the_cli: iptables is not installed (scripts/deps.sh) ***\n"
        );
        return;
    }
    let name = format!("li{:x}", std::process::id() % 0xffff);
    let _guard = LabGuard(name.clone());
    let up = ok(&braid(&[
        "lab",
        "up",
        "--bare",
        "--name",
        &name,
        "--nodes",
        "2",
        "--wans",
        "2,1",
        "--profiles",
        "n1w1=geo",
    ]));
    assert!(up.contains("n1 wan1: geo profile"), "{up}");
    let n1 = format!("brd-{name}-n1");
    rtt(&n1, "wan1", 3); // neighbour resolution
    let geo = rtt(&n1, "wan1", 10);
    let plain = rtt(&n1, "wan0", 10);
    eprintln!("geo profile: {geo:.1} ms; wan0: {plain:.2} ms");
    assert!((599.0..=602.0).contains(&geo), "geo RTT {geo}");
    assert!(plain < 5.0, "wan0 is not impaired: {plain}");
    // A change from the CLI, per direction, while the forwarder runs.
    let set = ok(&braid(&[
        "lab", "wan", "--name", &name, "--node", "1", "--wan", "1", "--rate", "50/10", "--delay",
        "20/5", "--loss", "0.5",
    ]));
    assert!(
        set.contains("impaired by the forwarder: down rate 50 Mbit/s, delay 20 ms"),
        "{set}"
    );
    let changed = rtt(&n1, "wan1", 20);
    assert!(
        (24.5..=27.0).contains(&changed),
        "RTT {changed} after the change"
    );
    let show = ok(&braid(&["lab", "wan", "--name", &name, "--show"]));
    assert!(
        show.contains("n1w1 down rate 50 Mbit/s, delay 20 ms, loss 0.5 %, queue 1000"),
        "{show}"
    );
    assert!(
        show.contains("n1w1 up   rate 10 Mbit/s, delay 5 ms"),
        "{show}"
    );
    // Bad values name the flag.
    let bad = braid(&[
        "lab", "wan", "--name", &name, "--node", "1", "--wan", "1", "--delay", "soon",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--delay `soon`"));
    // One forwarder, in the hub; `braid lab down` ends it.
    let hub = format!("brd-{name}-hub");
    let pids = Command::new("ip")
        .args(["netns", "pids", &hub])
        .output()
        .unwrap();
    let pids: Vec<String> = String::from_utf8_lossy(&pids.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(pids.len(), 1, "{pids:?}");
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", pids[0])).unwrap();
    assert!(cmdline.contains("lab\0impair"), "{cmdline:?}");
    ok(&braid(&["lab", "down", "--name", &name]));
    assert!(
        std::fs::read_to_string(format!("/proc/{}/cmdline", pids[0]))
            .map_or(true, |c| !c.contains("lab\0impair")),
        "the forwarder outlived the lab"
    );
}
