//! Helpers shared by the link tests: keys, link configs, waiting.
#![allow(dead_code)] // each test file uses a different subset

use braid_lab::Lab;
use braid_link::{Link, LinkConfig};
use braid_model::PrivateKey;
use std::time::{Duration, Instant};

pub fn key_pair() -> ([u8; 32], [u8; 32]) {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .unwrap();
    let key = PrivateKey::from_random_bytes(seed);
    (key.0, key.public_key().0)
}

pub fn config(
    name: &str,
    listen: u16,
    endpoint: Option<&str>,
    own: &([u8; 32], [u8; 32]),
    peer: &[u8; 32],
    index: u8,
) -> LinkConfig {
    LinkConfig {
        name: name.into(),
        mtu: 1420,
        group: 2,
        listen_port: listen,
        ipv6: false,
        endpoint: endpoint.map(|e| e.parse().unwrap()),
        fwmark: 0,
        private_key: own.0,
        peer_public_key: *peer,
        keepalive: None,
        link_local6: Some(format!("fe80::{index}/64").parse().unwrap()),
        link4: Some(format!("169.254.0.{index}/16").parse().unwrap()),
        peer_link4: None,
        uapi_dir: None,
        netns: None,
        paths: Vec::new(),
        scheduler: braid_model::extensions::Scheduler::Flow,
    }
}

pub fn start_in(lab: &Lab, node: usize, config: LinkConfig) -> Link {
    braid_system::netns::run_in(&lab.ns(node), move || Link::start(config))
        .unwrap()
        .unwrap()
}

pub fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

pub fn lab_name(tag: &str) -> String {
    format!("{tag}{:x}", std::process::id() % 0xffff)
}

/// One TCP stream with iperf3 for `seconds` from node 1 to node 2's tunnel address
/// 169.254.0.2 (`reverse`: node 2 sends); returns Mbit/s received, 0 when iperf3 produced
/// no report (a stalled tunnel: iperf3 is bounded by `timeout` so a stall cannot hang the
/// test). The server is ended by PID.
pub fn iperf3_mbits(lab: &Lab, reverse: bool, seconds: u32) -> f64 {
    let server = lab
        .spawn(
            2,
            std::process::Command::new("iperf3").args(["-s", "--logfile", "/dev/null"]),
        )
        .unwrap();
    let limit = (seconds + 15).to_string();
    let seconds = seconds.to_string();
    let mut args = vec![
        "-k",
        "2",
        &limit,
        "iperf3",
        "-c",
        "169.254.0.2",
        "-t",
        &seconds,
        "-J",
    ];
    if reverse {
        args.push("-R");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let report = loop {
        let out = lab.try_exec(1, "timeout", &args).unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !text.contains("unable to connect") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    // SAFETY: kill on the PID of the iperf3 server started above.
    unsafe { libc::kill(server as i32, libc::SIGTERM) };
    serde_json::from_str::<serde_json::Value>(&report)
        .ok()
        .and_then(|r| r["end"]["sum_received"]["bits_per_second"].as_f64())
        .map_or(0.0, |bits| bits / 1e6)
}

/// A directory removed when dropped (also while a failing test unwinds).
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
