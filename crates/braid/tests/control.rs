//! The daemon against hostile or mistaken local clients, in the lab: a stalled control
//! socket client, a flood of idle status-listener connections, a second `braid run` of the
//! same config, and the CLI when the config is broken or the daemon is gone.

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Mesh {
    lab: Lab,
    _dir: tempfile::TempDir,
    configs: Vec<PathBuf>,
}

impl Mesh {
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
    fn socket(&self, node: usize) -> PathBuf {
        self.configs[node - 1].with_file_name("braid.sock")
    }
    fn log(&self, node: usize) -> String {
        std::fs::read_to_string(self.configs[node - 1].with_file_name("braid.log"))
            .unwrap_or_default()
    }
    /// Waits until node `node`'s daemon answers `braid status`.
    fn wait_answering(&self, node: usize) {
        wait_until("the daemon to answer", Duration::from_secs(20), || {
            braid(&["status", "-c", self.config(node)]).status.success()
        });
    }
}

/// A lab of `nodes` nodes named after `tag` and this process (unique among engineers).
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
    Some(Mesh {
        lab,
        _dir: dir,
        configs: files.into_iter().map(|f| f.config).collect(),
    })
}

/// Runs braid with `args`, killing it after `limit`; `None` when it had to be killed.
fn braid_within(args: &[&str], limit: Duration) -> Option<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
        || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// Issue 17, defect 4: a client that sends half a request and waits used to stall the
/// whole daemon (status, reload, the HTTP listener, even SIGTERM).
#[test]
fn a_stalled_control_client_freezes_nothing() {
    let Some(m) = mesh("cs_stall", 2) else { return };
    let pid = m.start(1);
    m.wait_answering(1);

    let mut stalled = UnixStream::connect(m.socket(1)).unwrap();
    stalled.write_all(b"{\"command\":").unwrap();
    // Another client is answered at once, well before the stalled one's deadline.
    let started = Instant::now();
    let status = braid_within(
        &["status", "--json", "-c", m.config(1)],
        Duration::from_secs(10),
    )
    .expect("braid status answered while a client stalls");
    assert!(status.status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "status took {:?}",
        started.elapsed()
    );
    // So does the HTTP listener (it asks the same run loop).
    let (code, _) = http(&m.lab.ns(1), "GET", "/status");
    assert_eq!(code, 200);
    // The stalled client is told why after about 2 s, and the connection closed.
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = String::new();
    stalled.read_to_string(&mut reply).unwrap();
    assert!(reply.contains("no complete request within 2 s"), "{reply}");
    // A request larger than 64 KiB is refused without being read to its end.
    let mut big = UnixStream::connect(m.socket(1)).unwrap();
    big.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..64 {
        if big.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut reply = String::new();
    let _ = big.read_to_string(&mut reply);
    assert!(reply.contains("request too large"), "{reply}");

    // SIGTERM is obeyed at once even with a stalled client connected.
    let mut stalled = UnixStream::connect(m.socket(1)).unwrap();
    stalled.write_all(b"{").unwrap();
    // SAFETY: kill on the PID of a braid daemon this test started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    wait_until(
        "the daemon to stop on SIGTERM",
        Duration::from_secs(5),
        || gone(pid),
    );
    assert!(m.log(1).contains("down"), "{}", m.log(1));
}

/// Opens up to `n` TCP connections to the status listener of namespace `ns` and keeps them
/// idle; stops at the first that does not connect within a second (a full backlog).
fn idle_http_connections(ns: &str, n: usize) -> Vec<std::net::TcpStream> {
    let addr: std::net::SocketAddr = "127.0.0.1:8091".parse().unwrap();
    braid_system::netns::run_in(ns, move || {
        (0..n)
            .map_while(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok())
            .collect()
    })
    .unwrap()
}

/// Issue 17, defect 5: idle connections to the status listener (any local user can make
/// them) used to take every descriptor of the daemon; status, reload and `wg show` then
/// failed, and reload blamed the config's permissions.
#[test]
fn idle_status_connections_cannot_exhaust_the_daemons_descriptors() {
    let Some(m) = mesh("fd_flood", 2) else { return };
    // A low limit so that the flood is small; the cap is an eighth of it (32).
    let pid = m
        .lab
        .spawn_private_uapi(
            1,
            Command::new("prlimit")
                .arg("--nofile=256:256")
                .arg(env!("CARGO_BIN_EXE_braid"))
                .arg("run")
                .arg("-c")
                .arg(m.config(1)),
            Some(&m.configs[0].with_file_name("braid.log")),
        )
        .unwrap();
    m.wait_answering(1);
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let baseline = fds();

    let mut flood = idle_http_connections(&m.lab.ns(1), 400);
    assert!(flood.len() > 300, "only {} connections", flood.len());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        fds() < baseline + 40,
        "the daemon holds {} descriptors (baseline {baseline})",
        fds()
    );
    // Root's tools still work during the flood.
    let status = braid_within(
        &["status", "--json", "-c", m.config(1)],
        Duration::from_secs(10),
    )
    .expect("status answered during the flood");
    assert!(status.status.success(), "{status:?}");
    let reload = braid_within(&["reload", "-c", m.config(1)], Duration::from_secs(10))
        .expect("reload answered during the flood");
    let out = String::from_utf8_lossy(&reload.stdout);
    assert!(
        reload.status.success() && out.contains("unchanged"),
        "{out} {}",
        String::from_utf8_lossy(&reload.stderr)
    );
    // The idle connections are closed by the daemon after 5 s.
    std::thread::sleep(Duration::from_secs(7));
    let mut still_open = 0;
    for stream in &mut flood {
        stream
            .set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let mut buf = [0u8; 16];
        if let Err(e) = stream.read(&mut buf)
            && matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "connections the daemon kept open");
    drop(flood);
    let (code, metrics) = http(&m.lab.ns(1), "GET", "/metrics");
    assert_eq!(code, 200);
    let closed_cap = sample(
        &metrics,
        "braid_status_connections_closed_total",
        &["reason=\"cap\""],
    );
    let closed_idle = sample(
        &metrics,
        "braid_status_connections_closed_total",
        &["reason=\"timeout\""],
    );
    assert!(
        closed_cap.is_some_and(|n| n > 0.0) && closed_idle.is_some_and(|n| n >= 32.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "braid_status_connections_max", &[]),
        Some(32.0)
    );
    assert_eq!(sample(&metrics, "braid_process_max_fds", &[]), Some(256.0));
    assert!(
        fds() <= baseline + 2,
        "{} descriptors after the flood, {baseline} before",
        fds()
    );
}

fn link_lines(lab: &Lab, node: usize) -> String {
    let out = lab
        .exec(node, "ip", &["-o", "link", "show", "group", "2"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // Counters and states change; names and indexes must not.
        .map(|l| l.split(" mtu ").next().unwrap_or(l).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Issue 17, defect 10: a second `braid run` of the same config used to fail on the busy
/// ports and, on its way out, delete the running daemon's interfaces and control socket.
#[test]
fn a_second_run_of_the_same_config_refuses_and_changes_nothing() {
    let Some(m) = mesh("si_single", 2) else {
        return;
    };
    let pid = m.start(1);
    m.start(2);
    wait_until("n1 <-> n2", Duration::from_secs(20), || {
        m.lab.ping(1, "fe80::2%brd4x40004")
    });
    let before = link_lines(&m.lab, 1);
    assert!(before.contains("brd4x40004"), "{before}");

    let started = Instant::now();
    let second = Command::new("timeout")
        .args(["20", "ip", "netns", "exec", &m.lab.ns(1)])
        .arg(env!("CARGO_BIN_EXE_braid"))
        .args(["run", "-c", m.config(1)])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("error: already running (pid {pid})")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Nothing changed: same interfaces (same indexes), socket and status, traffic flows.
    assert_eq!(link_lines(&m.lab, 1), before);
    assert!(m.socket(1).exists());
    assert!(braid(&["status", "-c", m.config(1)]).status.success());
    assert!(m.lab.ping(1, "fe80::2%brd4x40004"));
    assert!(!gone(pid));
}
