//! The daemon stays responsive while a reload brings up many links: the link changes run
//! off the async runtime, one link at a time, and status requests (the control socket's
//! `status` and HTTP `/status`) are answered between links instead of after the reload.
//!
//! The peers are absent (random keys, addresses in 198.19.0.0/16 that nothing answers, as
//! `bench/scale.py` makes them): the links come up and stay idle inside the lab's
//! namespace, removed with it.

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Peers added by the reload: one link each (the lab's config has an ip4 transport only).
const PEERS: usize = 200;

/// The registry with this node (the lab's) and `peers` absent ones.
fn registry_with_absent_peers(own: &Value, peers: usize) -> Value {
    let mut nodes = vec![own.clone()];
    for i in 2..peers + 2 {
        // A distinct 32-byte key per peer (any 32 bytes are a Curve25519 public key).
        let mut key = [0x5au8; 32];
        key[..8].copy_from_slice(&(i as u64).to_le_bytes());
        nodes.push(serde_json::json!({
            "public_key": braid_model::PublicKey(key).to_base64(),
            "name": format!("absent{i}"),
            "index": i,
            "endpoints": [{
                "send_port": 41000 + 2 * i,
                "address_family": "ip4",
                "address": format!("198.19.{}.{}", i / 256, i % 256),
            }],
        }));
    }
    Value::Array(nodes)
}

/// One status request's start and end.
struct Answer {
    start: Instant,
    end: Instant,
}

#[test]
fn status_answers_while_a_reload_brings_up_many_links() {
    let tag = "rs_responsive";
    if !braid_lab::available_or_skip(tag) {
        return;
    }
    let name = format!("rs{:x}", std::process::id() % 0xffff);
    let lab = Lab::up(LabSpec::new(&name, 1)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = ConfigOptions {
        ip6: false,
        ..ConfigOptions::default()
    };
    let files = lab.write_configs(dir.path(), &options).unwrap();
    let config = files[0].config.to_str().unwrap().to_string();
    let registry_path = dir.path().join("registry.json");
    let registry: Value =
        serde_json::from_str(&std::fs::read_to_string(&registry_path).unwrap()).unwrap();
    let own = registry[0].clone();
    std::fs::write(&registry_path, Value::Array(vec![own.clone()]).to_string()).unwrap();

    let log = Path::new(&config).with_file_name("braid.log");
    lab.spawn_private_uapi(
        1,
        Command::new(env!("CARGO_BIN_EXE_braid")).args(["run", "-c", &config]),
        Some(&log),
    )
    .unwrap();
    wait_until("the daemon to answer", Duration::from_secs(30), || {
        braid(&["status", "-c", &config]).status.success()
    });

    std::fs::write(
        &registry_path,
        registry_with_absent_peers(&own, PEERS).to_string(),
    )
    .unwrap();
    let reload_config = config.clone();
    let reload = std::thread::spawn(move || {
        let start = Instant::now();
        let out = braid(&["reload", "-c", &reload_config]);
        (start, Instant::now(), out)
    });
    // Status over the control socket and over HTTP, alternately, until the reload is done.
    let ns = lab.ns(1);
    let mut control = Vec::new();
    let mut http_answers = Vec::new();
    while !reload.is_finished() {
        let start = Instant::now();
        let out = braid(&["status", "--json", "-c", &config]);
        assert!(
            out.status.success(),
            "status failed during the reload: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(doc["links"].is_array());
        control.push(Answer {
            start,
            end: Instant::now(),
        });
        let start = Instant::now();
        let (code, _) = http(&ns, "GET", "/status");
        assert_eq!(code, 200, "HTTP /status during the reload");
        http_answers.push(Answer {
            start,
            end: Instant::now(),
        });
    }
    let (reload_start, reload_end, out) = reload.join().unwrap();
    assert!(
        out.status.success(),
        "reload: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let reload_time = reload_end - reload_start;
    let during = |answers: &[Answer]| -> Vec<Duration> {
        answers
            .iter()
            .filter(|a| a.start > reload_start && a.end < reload_end)
            .map(|a| a.end - a.start)
            .collect()
    };
    let (control_during, http_during) = (during(&control), during(&http_answers));
    let slowest = control_during
        .iter()
        .chain(&http_during)
        .max()
        .copied()
        .unwrap_or_default();
    println!(
        "reload of {PEERS} new links: {reload_time:?}; answered during it: {} control status, {} HTTP /status; slowest {slowest:?}",
        control_during.len(),
        http_during.len()
    );
    // A loop that did the reload's link work itself could answer none of them before the
    // reload's own reply: several answered ones show that status is served between links.
    assert!(
        control_during.len() >= 3 && !http_during.is_empty(),
        "status was not answered while the reload ran ({reload_time:?}): {} control, {} HTTP",
        control_during.len(),
        http_during.len()
    );
    assert!(
        slowest < Duration::from_secs(2),
        "a status request during the reload took {slowest:?}"
    );
    wait_until("every link running", Duration::from_secs(60), || {
        let out = braid(&["status", "--json", "-c", &config]);
        serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|doc| {
            doc["links"].as_array().is_some_and(|links| {
                links.len() == PEERS && links.iter().all(|l| l["state"] != "failed")
            })
        })
    });
    let down = braid(&["down", "-c", &config]);
    assert!(down.status.success(), "braid down");
}
