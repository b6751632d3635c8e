//! Helpers shared by the link tests: keys, link configs, waiting.
#![allow(dead_code)] // each test file uses a different subset

use braid_lab::Lab;
use braid_link::{Link, LinkConfig};
use braid_model::PrivateKey;
use std::time::{Duration, Instant};

pub(crate) fn key_pair() -> ([u8; 32], [u8; 32]) {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .unwrap();
    let key = PrivateKey::from_random_bytes(seed);
    (key.0, key.public_key().0)
}

pub(crate) fn config(
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
        liveness: None,
    }
}

pub(crate) fn start_in(lab: &Lab, node: usize, config: LinkConfig) -> Link {
    braid_system::netns::run_in(&lab.ns(node), move || Link::start(config))
        .unwrap()
        .unwrap()
}

pub(crate) fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

pub(crate) fn lab_name(tag: &str) -> String {
    format!("{tag}{:x}", std::process::id() % 0xffff)
}

/// One TCP stream with iperf3 for `seconds` from node 1 to node 2's tunnel address
/// 169.254.0.2 (`reverse`: node 2 sends); returns Mbit/s received, 0 when iperf3 produced
/// no report (a stalled tunnel: iperf3 is bounded by `timeout` so a stall cannot hang the
/// test). The server is ended by PID.
pub(crate) fn iperf3_mbits(lab: &Lab, reverse: bool, seconds: u32) -> f64 {
    // A port of its own per run: the previous run's server is sent SIGTERM but not waited
    // for, and on a loaded machine it still held the port when the next server started
    // ("Address already in use"; CI measured 0 Mbit/s).
    static NEXT_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(5301);
    let port = NEXT_PORT
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .to_string();
    let server = lab
        .spawn(
            2,
            std::process::Command::new("iperf3").args([
                "-s",
                "-p",
                &port,
                "--logfile",
                "/dev/null",
            ]),
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
        "-p",
        &port,
        "-t",
        &seconds,
        "-J",
    ];
    if reverse {
        args.push("-R");
    }
    // Retried until a run reports: the server may not listen yet, and on a loaded machine
    // a run can end with a control-connection error before it measures anything. 0 when
    // none reported within 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let received = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|r| r["end"]["sum_received"]["bits_per_second"].as_f64())
    };
    let mbits = loop {
        let out = lab.try_exec(1, "timeout", &args).unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if let Some(bits) = received(&text) {
            break bits / 1e6;
        }
        if Instant::now() > deadline {
            break 0.0;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    // SAFETY: kill on the PID of the iperf3 server started above.
    unsafe { libc::kill(server as i32, libc::SIGTERM) };
    mbits
}

/// A directory removed when dropped (also while a failing test unwinds).
pub(crate) struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Node 2 of `lab` as a wireguard-go peer of node 1's braid link: `binary` runs as `-f
/// ifname` (its UAPI socket lives in the shared /var/run/wireguard, so `ifname` must be
/// unique), configured with `wg set`: key `own`, listen port 40002, peer `peer` with every
/// address allowed and, if given, `endpoint`; addressed 169.254.0.2/16 with MTU 1420, up.
/// `dir` holds the key file. Returns wireguard-go's PID (the lab ends it on drop).
pub(crate) fn wireguard_go_on_node2(
    lab: &Lab,
    binary: &std::path::Path,
    ifname: &str,
    own: &([u8; 32], [u8; 32]),
    peer: &[u8; 32],
    endpoint: Option<&str>,
    dir: &std::path::Path,
) -> u32 {
    let mut go = std::process::Command::new(binary);
    go.args(["-f", ifname])
        .env("LOG_LEVEL", "error")
        .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1");
    let pid = lab.spawn(2, &mut go).unwrap();
    let socket = format!("/var/run/wireguard/{ifname}.sock");
    wait_for("wireguard-go's UAPI socket", || {
        std::path::Path::new(&socket).exists()
    });
    let key_file = dir.join("key");
    std::fs::write(&key_file, braid_model::PublicKey(own.0).to_base64()).unwrap();
    let peer = braid_model::PublicKey(*peer).to_base64();
    let mut set = vec![
        "set",
        ifname,
        "private-key",
        key_file.to_str().unwrap(),
        "listen-port",
        "40002",
        "peer",
        &peer,
        "allowed-ips",
        "0.0.0.0/0,::/0",
    ];
    if let Some(endpoint) = endpoint {
        set.extend(["endpoint", endpoint]);
    }
    lab.exec(2, "wg", &set).unwrap();
    lab.exec(2, "ip", &["addr", "add", "169.254.0.2/16", "dev", ifname])
        .unwrap();
    lab.exec(2, "ip", &["link", "set", ifname, "mtu", "1420", "up"])
        .unwrap();
    pid
}
