//! `braid run` in the lab: reload adds and removes peers without disturbing the links that
//! did not change, invalid input changes nothing, SIGHUP reloads, and `braid down` cleans
//! up even after SIGKILL.

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn links(lab: &Lab, node: usize) -> Vec<String> {
    let out = lab
        .exec(node, "ip", &["-o", "link", "show", "group", "2"])
        .unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with("brd")) // the links; the bridge braid0 is in the group too
        .collect();
    names.sort();
    names
}

fn all_up(config: &Path) -> bool {
    let out = braid(&["status", "--json", "-c", config.to_str().unwrap()]);
    let Ok(doc) = serde_json::from_slice::<Value>(&out.stdout) else {
        return false;
    };
    doc["links"]
        .as_array()
        .is_some_and(|l| !l.is_empty() && l.iter().all(|l| l["state"] == "up"))
}

struct Mesh {
    lab: Lab,
    dir: tempfile::TempDir,
    configs: Vec<PathBuf>,
    full_registry: String,
}

impl Mesh {
    fn registry(&self) -> PathBuf {
        self.dir.path().join("registry.json")
    }
    /// Writes the registry with only `nodes` (1-based) in it.
    fn keep_only(&self, nodes: &[usize]) {
        let all: Value = serde_json::from_str(&self.full_registry).unwrap();
        let kept: Vec<Value> = nodes.iter().map(|i| all[i - 1].clone()).collect();
        std::fs::write(
            self.registry(),
            serde_json::to_string_pretty(&kept).unwrap(),
        )
        .unwrap();
    }
    fn start(&self, node: usize) -> u32 {
        let config = &self.configs[node - 1];
        let log = config.with_file_name("braid.log");
        self.lab
            .spawn_private_uapi(
                node,
                Command::new(env!("CARGO_BIN_EXE_braid"))
                    .arg("run")
                    .arg("-c")
                    .arg(config),
                Some(&log),
            )
            .unwrap()
    }
    fn config(&self, node: usize) -> &str {
        self.configs[node - 1].to_str().unwrap()
    }
}

fn mesh(tag: &str, nodes: usize) -> Option<Mesh> {
    if !braid_lab::available_or_skip(tag) {
        return None;
    }
    let name = format!("{}{:x}", &tag[..2], std::process::id() % 0xffff);
    let lab = Lab::up(LabSpec::new(&name, nodes)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(dir.path(), &ConfigOptions::default())
        .unwrap();
    let full_registry = std::fs::read_to_string(dir.path().join("registry.json")).unwrap();
    Some(Mesh {
        lab,
        dir,
        configs: files.into_iter().map(|f| f.config).collect(),
        full_registry,
    })
}

#[test]
fn reload_adds_and_removes_peers_without_disturbing_unchanged_links() {
    let Some(m) = mesh("rl_reload", 4) else {
        return;
    };
    m.keep_only(&[1, 2, 3]);
    let pids: Vec<u32> = (1..=3).map(|i| m.start(i)).collect();
    wait_until("links of n1..n3 up", Duration::from_secs(20), || {
        (1..=3).all(|i| all_up(&m.configs[i - 1]))
    });
    assert_eq!(
        links(&m.lab, 1),
        vec!["brd4x40004", "brd4x40006", "brd6x40005", "brd6x40007"]
    );

    // 300 pings at 10 ms intervals across the unchanged link n1 -> n2 while n3 leaves and n4 joins.
    let mut ping = Command::new("ip");
    ping.args([
        "netns",
        "exec",
        &m.lab.ns(1),
        "ping",
        "-6",
        "-q",
        "-i",
        "0.01",
        "-c",
        "300",
        "fe80::2%brd4x40004",
    ]);
    let ping = ping.stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    m.keep_only(&[1, 2, 4]);
    let reload = braid(&["reload", "-c", m.config(1)]);
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    let summary = String::from_utf8_lossy(&reload.stdout).to_string();
    assert!(
        summary.contains("2 added, 0 updated, 2 removed, 2 unchanged"),
        "{summary}"
    );
    // n2 reloads on SIGHUP.
    // SAFETY: kill on the PID of a braid daemon this test started.
    unsafe { libc::kill(pids[1] as i32, libc::SIGHUP) };
    m.start(4);
    let ping = ping.wait_with_output().unwrap();
    let ping = String::from_utf8_lossy(&ping.stdout).to_string();
    assert!(
        ping.contains("300 packets transmitted, 300 received, 0% packet loss"),
        "{ping}"
    );

    assert_eq!(
        links(&m.lab, 1),
        vec!["brd4x40004", "brd4x40008", "brd6x40005", "brd6x40009"]
    );
    wait_until("n1 <-> n4", Duration::from_secs(20), || {
        m.lab.ping(1, "fe80::4%brd4x40008")
    });
    wait_until("n2 reloaded by SIGHUP", Duration::from_secs(10), || {
        links(&m.lab, 2).contains(&"brd4x40008".to_string())
    });
}

#[test]
fn invalid_input_at_reload_leaves_the_network_as_it_was() {
    let Some(m) = mesh("iv_invalid", 2) else {
        return;
    };
    for i in 1..=2 {
        m.start(i);
    }
    wait_until("links up", Duration::from_secs(20), || {
        all_up(&m.configs[0])
    });
    let before = links(&m.lab, 1);
    let broken = m
        .full_registry
        .replacen("\"send_port\": 40004", "\"send_port\": 0", 1);
    std::fs::write(m.registry(), broken).unwrap();
    let reload = braid(&["reload", "-c", m.config(1)]);
    assert_eq!(reload.status.code(), Some(1));
    let err = String::from_utf8_lossy(&reload.stderr).to_string();
    assert!(
        err.contains("the running network is unchanged")
            && err.contains("[1].endpoints[0].send_port: 0 is outside"),
        "{err}"
    );
    assert_eq!(links(&m.lab, 1), before);
    assert!(m.lab.ping(1, "fe80::2%brd4x40004"));
    let status = braid(&["status", "--json", "-c", m.config(1)]);
    let doc: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        doc["node"]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("send_port"),
        "{doc}"
    );
}

#[test]
fn down_cleans_up_after_sigkill_and_after_a_normal_run() {
    let Some(m) = mesh("dn_down", 2) else { return };
    let pid = m.start(1);
    m.start(2);
    wait_until("links up", Duration::from_secs(20), || {
        all_up(&m.configs[1])
    });
    // SIGKILL: the daemon cannot clean up; `braid down` must.
    // SAFETY: kill on the PID of a braid daemon this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_until("n1's daemon gone", Duration::from_secs(5), || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    let down = m
        .lab
        .exec(1, env!("CARGO_BIN_EXE_braid"), &["down", "-c", m.config(1)])
        .unwrap();
    assert!(String::from_utf8_lossy(&down.stdout).contains("interface groups 2 and 1 deleted"));
    assert!(links(&m.lab, 1).is_empty());
    assert!(!Path::new(&m.configs[0].with_file_name("braid.sock")).exists());
    // Through the running daemon.
    let down = braid(&["down", "-c", m.config(2)]);
    assert!(down.status.success());
    assert!(
        String::from_utf8_lossy(&down.stdout).contains("2 removed"),
        "{}",
        String::from_utf8_lossy(&down.stdout)
    );
    assert!(links(&m.lab, 2).is_empty());
}

#[test]
fn wg_show_reads_braid_links() {
    let Some(m) = mesh("wg_show", 2) else { return };
    if Command::new("wg").arg("--version").output().is_err() {
        eprintln!("SKIPPED wg_show_reads_braid_links: wg (wireguard-tools) is not installed");
        return;
    }
    let pid = m.start(1);
    m.start(2);
    wait_until("links up", Duration::from_secs(20), || {
        all_up(&m.configs[0])
    });
    assert!(m.lab.ping(1, "fe80::2%brd4x40004"));
    // The daemon has a private /run/wireguard (lab nodes share link names): enter it.
    let wg = |args: &[&str]| {
        let mut all = vec![
            "-t".to_string(),
            pid.to_string(),
            "-m".into(),
            "-n".into(),
            "wg".into(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let out = Command::new("nsenter").args(&all).output().unwrap();
        assert!(
            out.status.success(),
            "wg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let registry: Value = serde_json::from_str(&m.full_registry).unwrap();
    let peer = registry[1]["public_key"].as_str().unwrap();
    let show = wg(&["show", "brd4x40004"]);
    for want in [
        format!("peer: {peer}"),
        "endpoint: 198.18.0.2:40002".into(),
        "allowed ips: 0.0.0.0/0, ::/0".into(),
        "latest handshake:".into(),
        "transfer:".into(),
        "listening port: 40004".into(),
    ] {
        assert!(
            show.contains(&want),
            "`{want}` missing from wg show:\n{show}"
        );
    }
    // The dump: interface line, then the peer: key, psk, endpoint, allowed ips, handshake, rx, tx, keepalive.
    let dump = wg(&["show", "brd4x40004", "dump"]);
    let peer_line: Vec<&str> = dump.lines().nth(1).unwrap().split('\t').collect();
    assert_eq!(peer_line[0], peer);
    assert_eq!(peer_line[2], "198.18.0.2:40002");
    assert!(
        peer_line[4].parse::<u64>().unwrap() > 0,
        "handshake time: {dump}"
    );
    assert!(
        peer_line[5].parse::<u64>().unwrap() > 0 && peer_line[6].parse::<u64>().unwrap() > 0,
        "transfer: {dump}"
    );
    // Every link is listed, and showconf works.
    let all = wg(&["show", "interfaces"]);
    assert_eq!(all.split_whitespace().count(), 2, "{all}");
    assert!(wg(&["showconf", "brd6x40005"]).contains("ListenPort = 40005"));
    // set: the endpoint may change; a new private key is refused with a clear errno.
    let out = Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-m",
            "-n",
            "wg",
            "set",
            "brd4x40004",
            "listen-port",
            "1234",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn overlay_isolation_by_namespace_keeps_sockets_in_the_underlay() {
    let Some(m) = mesh("ov_overlay", 2) else {
        return;
    };
    // n1 isolates its overlay in namespace brd-<lab>-o1 (the lab removes it). braid would
    // create a missing one, but a lab daemon runs in `ip netns exec`'s private mount
    // namespace, where a new /run/netns entry is not visible to this test: make it here.
    let overlay = format!("{}o1", braid_lab::namespace_prefix(m.lab.name()));
    assert!(
        Command::new("ip")
            .args(["netns", "add", &overlay])
            .status()
            .unwrap()
            .success()
    );
    let config = std::fs::read_to_string(&m.configs[0]).unwrap();
    let mut doc: Value = serde_json::from_str(&config).unwrap();
    doc["netns"] = Value::String(overlay.clone());
    std::fs::write(&m.configs[0], serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    m.start(1);
    m.start(2);
    wait_until("links up", Duration::from_secs(20), || {
        all_up(&m.configs[0]) && all_up(&m.configs[1])
    });
    let in_overlay = Command::new("ip")
        .args(["-n", &overlay, "-o", "link", "show", "group", "2"])
        .output()
        .unwrap();
    let in_overlay = String::from_utf8_lossy(&in_overlay.stdout).to_string();
    assert_eq!(
        in_overlay.lines().filter(|l| l.contains(": brd")).count(),
        2,
        "both links live in the overlay:\n{in_overlay}"
    );
    assert!(
        in_overlay.contains(": braid0:"),
        "the node's bridge lives in the overlay too:\n{in_overlay}"
    );
    assert!(
        links(&m.lab, 1).is_empty(),
        "no link in the underlay namespace"
    );
    // The UDP sockets stay in the underlay: n1's namespace listens on the links' ports.
    let sockets =
        String::from_utf8_lossy(&m.lab.exec(1, "ss", &["-uln"]).unwrap().stdout).to_string();
    assert!(
        sockets.contains(":40004") && sockets.contains(":40005"),
        "{sockets}"
    );
    // And traffic flows from the overlay namespace to n2.
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &overlay,
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "fe80::2%brd4x40004",
        ])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    // `down` finds the links in the overlay.
    let down = braid(&["down", "-c", m.config(1)]);
    assert!(down.status.success());
    let left = Command::new("ip")
        .args(["-n", &overlay, "-o", "link", "show", "group", "2"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&left.stdout).lines().count(), 0);
}

/// `/etc/netns/<ns>/hosts`, which `ip netns exec` puts over /etc/hosts for processes it
/// starts in that namespace; removed on drop.
struct NetnsHosts(PathBuf);

impl NetnsHosts {
    fn new(ns: &str, text: &str) -> Self {
        let dir = Path::new("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hosts"), text).unwrap();
        Self(dir)
    }
    /// Rewrites the file in place (same inode, so the bind mount shows the new text).
    fn set(&self, text: &str) {
        std::fs::write(self.0.join("hosts"), text).unwrap();
    }
}

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn dns_endpoints_are_resolved_again_until_the_peer_answers() {
    let Some(m) = mesh("ns_dns", 2) else { return };
    // n1 publishes no address (n2 cannot dial it); n2 publishes a DNS name that n1's
    // resolver first maps to an address where nobody is.
    let mut registry: Value = serde_json::from_str(&m.full_registry).unwrap();
    for endpoint in registry[0]["endpoints"].as_array_mut().unwrap() {
        endpoint["address"] = Value::String(String::new());
    }
    registry[1]["endpoints"][0]["address"] = Value::String("n2.lab.test".into());
    std::fs::write(
        m.registry(),
        serde_json::to_string_pretty(&registry).unwrap(),
    )
    .unwrap();
    let hosts = NetnsHosts::new(&m.lab.ns(1), "198.18.0.99 n2.lab.test\n");
    m.start(1);
    m.start(2);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !m.lab.ping(1, "fe80::2%brd4x40004"),
        "no handshake while the name points nowhere"
    );
    hosts.set("198.18.0.2 n2.lab.test\n");
    wait_until(
        "n1 re-resolving n2.lab.test and shaking hands",
        Duration::from_secs(20),
        || m.lab.ping(1, "fe80::2%brd4x40004"),
    );
    let status = braid(&["status", "--json", "-c", m.config(1)]);
    let doc: Value = serde_json::from_slice(&status.stdout).unwrap();
    let link = doc["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "brd4x40004")
        .unwrap()
        .clone();
    assert_eq!(link["endpoint"], "198.18.0.2:40002", "{link}");
}

#[test]
fn a_key_rotation_is_applied_in_place_on_reload() {
    let Some(m) = mesh("kr_rotate", 2) else {
        return;
    };
    for i in 1..=2 {
        m.start(i);
    }
    wait_until("links up", Duration::from_secs(20), || {
        (1..=2).all(|i| all_up(&m.configs[i - 1]))
    });
    // A new key for n1: in its config, and its new public key in the registry.
    let key = String::from_utf8(braid(&["keygen"]).stdout).unwrap();
    let key = key.trim().to_string();
    let mut pubkey = Command::new(env!("CARGO_BIN_EXE_braid"));
    pubkey
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = pubkey.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), key.as_bytes()).unwrap();
    let public = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&m.configs[0]).unwrap()).unwrap();
    config["private_key"] = Value::String(key);
    std::fs::write(
        &m.configs[0],
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
    let mut registry: Value = serde_json::from_str(&m.full_registry).unwrap();
    registry[0]["public_key"] = Value::String(public.trim().to_string());
    std::fs::write(
        m.registry(),
        serde_json::to_string_pretty(&registry).unwrap(),
    )
    .unwrap();
    let reload = braid(&["reload", "-c", m.config(1)]);
    let summary = String::from_utf8_lossy(&reload.stdout).to_string();
    assert!(
        summary.contains("0 added, 2 updated, 0 removed"),
        "{summary}"
    );
    assert!(braid(&["reload", "-c", m.config(2)]).status.success());
    wait_until(
        "n1 <-> n2 under the new key",
        Duration::from_secs(10),
        || m.lab.ping(1, "fe80::2%brd4x40004") && m.lab.ping(2, "fe80::1%brd4x40002"),
    );
    wait_until("links up again", Duration::from_secs(10), || {
        (1..=2).all(|i| all_up(&m.configs[i - 1]))
    });
}

#[test]
fn a_link_whose_interface_is_deleted_is_made_again() {
    let Some(m) = mesh("ld_deleted", 2) else {
        return;
    };
    for i in 1..=2 {
        m.start(i);
    }
    wait_until("links up", Duration::from_secs(20), || {
        (1..=2).all(|i| all_up(&m.configs[i - 1]))
    });
    // An admin's slip: the interface goes away under the running daemon.
    m.lab.exec(1, "ip", &["link", "del", "brd4x40004"]).unwrap();
    wait_until("brd4x40004 made again", Duration::from_secs(10), || {
        links(&m.lab, 1).contains(&"brd4x40004".to_string())
    });
    wait_until("traffic over it again", Duration::from_secs(10), || {
        m.lab.ping(1, "fe80::2%brd4x40004")
    });
    let log = std::fs::read_to_string(m.configs[0].with_file_name("braid.log")).unwrap();
    assert!(log.contains("interface disappeared"), "{log}");
}
