//! A peer restarts into another WireGuard implementation with the same key: braid ->
//! wireguard-go and wireguard-go -> braid, with Debian's wireguard-go and the current
//! release (`../shared/anchors/bin/wireguard-go-0.0.20250522`). Before braid used the
//! standard TAI64 base, braid -> wireguard-go left the link refusing the new peer's
//! initiations as replays for about 25 s.

mod common;

use braid_lab::{Lab, LabSpec};
use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Restarts must be taken about as fast as a first handshake: well under the 25 s the
/// old timestamp base cost.
const BACK_WITHIN: Duration = Duration::from_secs(5);

/// The current wireguard-go release from the shared anchors, if present.
fn anchor_wireguard_go() -> Option<PathBuf> {
    let name = "wireguard-go-0.0.20250522";
    let mut places = Vec::new();
    if let Ok(dir) = std::env::var("BRAID_ANCHORS") {
        places.push(PathBuf::from(dir).join(name));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..");
    places.push(root.join("shared/anchors/bin").join(name));
    places.push(PathBuf::from("/work/shared/anchors/bin").join(name));
    places.into_iter().find(|p| p.exists())
}

/// Which wireguard-go: Debian's (`wireguard-go` on PATH) or the current release.
#[derive(Clone, Copy)]
enum Go {
    Debian,
    Current,
}

fn binary(go: Go, test: &str) -> Option<PathBuf> {
    let found = match go {
        Go::Debian => Command::new("wireguard-go")
            .arg("--version")
            .output()
            .ok()
            .map(|_| PathBuf::from("wireguard-go")),
        Go::Current => anchor_wireguard_go(),
    };
    if found.is_none() {
        eprintln!(
            "SKIPPED {test}: wireguard-go not found (Debian's: scripts/deps.sh; the current release: set BRAID_ANCHORS to the anchors' bin directory)"
        );
    }
    found
}

fn stop_pid(pid: u32) {
    // SAFETY: kill on the PID of a process this test started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
}

/// How long until node 2 reaches node 1 over the link again.
fn time_to_ping(lab: &Lab) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(40) {
        if lab.ping(2, "169.254.0.1") {
            return start.elapsed();
        }
    }
    start.elapsed()
}

/// `braid_first`: node 2 runs braid, then restarts as wireguard-go; else the other way.
fn restart(test: &str, tag: &str, go: Go, braid_first: bool) {
    if !braid_lab::available_or_skip(test) {
        return;
    }
    let Some(go) = binary(go, test) else {
        return;
    };
    let lab = Lab::up(LabSpec::new(&lab_name(tag), 2)).unwrap();
    let (a, b) = (key_pair(), key_pair());
    let dir = std::env::temp_dir().join(format!("brd-rs-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ifname = format!("brdrs{:x}{tag}", std::process::id() % 0xffff);
    let _braid = start_in(&lab, 1, config("brdt2", 40004, None, &a, &b.1, 1));
    let braid_peer = || {
        start_in(
            &lab,
            2,
            config("brdt1", 40002, Some("198.18.0.1:40004"), &b, &a.1, 2),
        )
    };
    // The first life of node 2.
    if braid_first {
        let first = braid_peer();
        wait_for("the first life's ping", || lab.ping(2, "169.254.0.1"));
        first.stop();
        let restarted =
            wireguard_go_on_node2(&lab, &go, &ifname, &b, &a.1, Some("198.18.0.1:40004"), &dir);
        let took = time_to_ping(&lab);
        stop_pid(restarted);
        eprintln!("{test}: braid -> wireguard-go, back after {took:?}");
        assert!(took < BACK_WITHIN, "back after {took:?}");
    } else {
        let first =
            wireguard_go_on_node2(&lab, &go, &ifname, &b, &a.1, Some("198.18.0.1:40004"), &dir);
        wait_for("the first life's ping", || lab.ping(2, "169.254.0.1"));
        stop_pid(first);
        wait_for("wireguard-go gone", || {
            !std::path::Path::new(&format!("/var/run/wireguard/{ifname}.sock")).exists()
        });
        // wireguard-go may hold its port for a moment after its socket file is gone.
        let mut second = None;
        wait_for("braid taking port 40002", || {
            let config = config("brdt1", 40002, Some("198.18.0.1:40004"), &b, &a.1, 2);
            second =
                braid_system::netns::run_in(&lab.ns(2), move || braid_link::Link::start(config))
                    .ok()
                    .and_then(Result::ok);
            second.is_some()
        });
        let took = time_to_ping(&lab);
        eprintln!("{test}: wireguard-go -> braid, back after {took:?}");
        assert!(took < BACK_WITHIN, "back after {took:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_braid_peer_restarting_as_debian_wireguard_go_is_taken_at_once() {
    restart("restart_braid_to_debian_go", "ra", Go::Debian, true);
}

#[test]
fn a_debian_wireguard_go_peer_restarting_as_braid_is_taken_at_once() {
    restart("restart_debian_go_to_braid", "rb", Go::Debian, false);
}

#[test]
fn a_braid_peer_restarting_as_current_wireguard_go_is_taken_at_once() {
    restart("restart_braid_to_current_go", "rc", Go::Current, true);
}

#[test]
fn a_current_wireguard_go_peer_restarting_as_braid_is_taken_at_once() {
    restart("restart_current_go_to_braid", "rd", Go::Current, false);
}
