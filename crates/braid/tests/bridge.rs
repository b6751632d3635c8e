//! The node's bridge across restarts: a crash (`kill -9`) or a restart (SIGTERM) of `braid
//! run` leaves the bridge `braid0` and the workloads attached to it; the next `braid run`
//! adopts it (same interface, same ports) and traffic flows again without re-attaching
//! anything. Only `braid down` removes it.

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `ip -o link show dev` of `dev` in node `i`, if it exists.
fn link(lab: &Lab, i: usize, dev: &str) -> Option<String> {
    let out = lab
        .try_exec(i, "ip", &["-o", "link", "show", "dev", dev])
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

/// The interface index at the start of an `ip -o link` line.
fn index(line: &str) -> String {
    line.split(':').next().unwrap_or_default().to_string()
}

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
        || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

#[test]
fn restarts_keep_the_bridge_and_its_workloads_only_down_removes_it() {
    let test = "restarts_keep_the_bridge_and_its_workloads_only_down_removes_it";
    if !braid_lab::available_or_skip(test) {
        return;
    }
    let lab = Lab::up(LabSpec::new(
        &format!("rb{:x}", std::process::id() % 0xffff),
        2,
    ))
    .unwrap();
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
    let start = |i: usize| {
        let f = &files[i - 1];
        lab.spawn_private_uapi(
            i,
            Command::new(env!("CARGO_BIN_EXE_braid"))
                .arg("run")
                .arg("-c")
                .arg(&f.config),
            Some(&f.config.with_file_name("braid.log")),
        )
        .unwrap()
    };
    let mut n1 = start(1);
    start(2);
    wait_for_bridges(&lab, 2);
    lab.add_workload(1, "braid0").unwrap();
    let w2 = lab.add_workload(2, "braid0").unwrap();
    wait_until("w1 -> w2", Duration::from_secs(30), || {
        lab.workload_ping(1, &w2.v6.to_string()) && lab.workload_ping(1, &w2.v4.to_string())
    });
    let bridge = index(&link(&lab, 1, "braid0").unwrap());

    for (how, signal) in [("kill -9", libc::SIGKILL), ("SIGTERM", libc::SIGTERM)] {
        // SAFETY: kill on the PID of a braid daemon this test started.
        unsafe { libc::kill(n1 as i32, signal) };
        wait_until(
            &format!("n1's braid gone after {how}"),
            Duration::from_secs(10),
            || gone(n1),
        );
        let kept = link(&lab, 1, "braid0");
        assert!(kept.is_some(), "{how} of braid run removed the bridge");
        let port = link(&lab, 1, "wl0").unwrap_or_default();
        assert!(
            port.contains("master braid0"),
            "after {how}, the workload is detached: {port}"
        );
        let restarted = std::time::Instant::now();
        n1 = start(1);
        // The restarted braid adopts the bridge: the same interface, the workload still on it.
        wait_until(
            &format!("w1 -> w2 after {how} and a restart"),
            Duration::from_secs(30),
            || lab.workload_ping(1, &w2.v6.to_string()) && lab.workload_ping(1, &w2.v4.to_string()),
        );
        eprintln!(
            "after {how}: w1 -> w2 (IPv6 and IPv4) {:?} after the restart",
            restarted.elapsed()
        );
        assert_eq!(
            index(&link(&lab, 1, "braid0").unwrap()),
            bridge,
            "the bridge was recreated after {how}"
        );
        assert!(
            link(&lab, 1, "wl0")
                .unwrap_or_default()
                .contains("master braid0")
        );
    }

    // `braid down` removes it.
    let down = braid(&["down", "-c", files[0].config.to_str().unwrap()]);
    assert!(down.status.success(), "{down:?}");
    assert!(
        link(&lab, 1, "braid0").is_none(),
        "braid down left the bridge"
    );
}
