//! Helpers the lab tests of the `braid` binary share.
#![allow(dead_code)] // each test file uses some of them

pub(crate) mod pings;

use braid_lab::{Lab, NodeFiles};
use std::io::{Read, Write};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs the braid binary under test.
pub(crate) fn braid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(args)
        .output()
        .expect("run braid")
}

/// Polls `ok` until it holds; panics naming `what` after `timeout`.
pub(crate) fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

/// Starts `braid run` on every node (each with a private /run/wireguard), logging to
/// `<config dir>/braid.log`.
pub(crate) fn start_daemons(lab: &Lab, files: &[NodeFiles]) {
    for f in files {
        let log = f.config.with_file_name("braid.log");
        lab.spawn_private_uapi(
            f.index,
            Command::new(env!("CARGO_BIN_EXE_braid"))
                .arg("run")
                .arg("-c")
                .arg(&f.config),
            Some(&log),
        )
        .unwrap();
    }
}

/// Waits until every node has its bridge `braid0` (braid made its node network).
pub(crate) fn wait_for_bridges(lab: &Lab, nodes: usize) {
    wait_until("every node's bridge", Duration::from_secs(20), || {
        (1..=nodes).all(|i| {
            lab.try_exec(i, "ip", &["link", "show", "braid0"])
                .is_ok_and(|o| o.status.success())
        })
    });
}

/// Edits a JSON file in place.
pub(crate) fn edit_json(path: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut doc);
    std::fs::write(path, doc.to_string()).unwrap();
}

/// Runs `ip args...`, panicking with its stderr when it fails.
pub(crate) fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The node through which node 1 sends IPv6 traffic to `dest`: its next hop is
/// `fe80::<index>` (lab nodes' link-local addresses carry their index).
pub(crate) fn relay(lab: &Lab, dest: &str) -> Option<usize> {
    let out = lab.try_exec(1, "ip", &["-6", "route", "get", dest]).ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let via = text.split_whitespace().skip_while(|w| *w != "via").nth(1)?;
    usize::from_str_radix(via.strip_prefix("fe80::")?, 16).ok()
}

/// One HTTP/1.0 request to 127.0.0.1:8091 inside a namespace; returns (status code, body).
pub(crate) fn http(ns: &str, method: &str, path: &str) -> (u16, String) {
    let request = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    braid_system::netns::run_in(ns, move || {
        let mut stream = std::net::TcpStream::connect("127.0.0.1:8091").ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream.write_all(request.as_bytes()).ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((code, body))
    })
    .unwrap()
    .unwrap_or((0, String::new()))
}

/// The value of the first sample of `metric` whose labels contain all of `with`.
pub(crate) fn sample(metrics: &str, metric: &str, with: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .find(|l| with.iter().all(|w| l.contains(w)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Node 3's IPv4 next hop toward the internet for the mesh's traffic (from its gateway
/// address on the bridge, an address of the pool): a link address `169.254.0.<exit>`.
pub(crate) fn default_next_hop(lab: &Lab) -> Option<String> {
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
