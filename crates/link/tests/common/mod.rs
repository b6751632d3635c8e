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
