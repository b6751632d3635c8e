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
    // So does the HTTP listener (it asks the same status task).
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
        // Every connection that the listener's backlog takes within 15 s: on a loaded
        // machine some connects time out while the daemon closes the ones over its cap.
        let deadline = Instant::now() + Duration::from_secs(15);
        (0..n)
            .take_while(|_| Instant::now() < deadline)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()
            })
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
    // Far more than the daemon's cap (32 here) must have been offered for the test to mean
    // anything.
    assert!(flood.len() > 128, "only {} connections", flood.len());
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

/// Runs braid as user nobody (uid 65534).
fn braid_as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_braid"))
        .args(args)
        .output()
        .unwrap()
}

/// Issue 17, defect 9: `braid status` needed a parseable config to find the socket, and
/// printed `error: error: ...` after a bad edit; non-root users got no clear word.
#[test]
fn status_reaches_the_daemon_whatever_the_config_says() {
    let Some(m) = mesh("st_status", 2) else {
        return;
    };
    m.start(1);
    m.wait_answering(1);
    let socket = m.socket(1);
    let socket = socket.to_str().unwrap();

    // A config with a semantic error: the socket is still read from it.
    edit_json(&m.configs[0], |doc| {
        doc["transport"][0]["send_port"] = 0.into()
    });
    let out = braid(&["status", "--json", "-c", m.config(1)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("warning: {}: 1 error", m.config(1))) && err.contains(socket),
        "{err}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["links"].is_array(), "{doc}");

    // Not even JSON: --socket reaches the daemon, and so does --socket alone.
    std::fs::write(&m.configs[0], "{ \"registry\": ").unwrap();
    let out = braid(&["status", "-c", m.config(1), "--socket", socket]);
    assert!(out.status.success(), "{out:?}");
    let out = braid(&["status", "--socket", socket]);
    assert!(out.status.success(), "{out:?}");
    // Without --socket the default is tried, and a failure has one `error:` prefix.
    let out = braid(&["status", "-c", m.config(1)]);
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        assert!(
            err.contains("error: no daemon answered on control socket /run/braid/braid.sock")
                || err.contains("error: permission denied"),
            "{err}"
        );
        assert!(!err.contains("error: error"), "{err}");
        assert_eq!(err.matches("error:").count(), 1, "{err}");
    }

    // With every control connection taken (64 clients that send nothing), braid status
    // is told the daemon is busy, as an error; it used to say "Broken pipe (os error 32)".
    let stalled: Vec<UnixStream> = (0..64)
        .map(|_| UnixStream::connect(socket).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let out = braid(&["status", "--socket", socket]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.starts_with("error: busy: 64 control connections"),
        "{err}"
    );
    drop(stalled);

    // A user other than root is told that the socket is root's.
    let out = braid_as_nobody(&["status", "--socket", socket]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.starts_with("error: permission denied: the control socket")
            && err.contains("run this as root"),
        "{err}"
    );
    // A config this user may not read is said so, not taken for one with errors whose
    // socket is then looked for at the default path (another daemon's).
    let out = braid_as_nobody(&["status", "-c", m.config(1)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.starts_with(&format!("error: permission denied reading {}", m.config(1)))
            && err.contains("run this as root")
            && !err.contains("/run/braid/braid.sock"),
        "{err}"
    );
}

/// Issue 17, defect 9: after `kill -9`, `braid down` left the links' UAPI sockets behind
/// (ghosts in `wg show`), and it reported deleting interface groups even when there was
/// nothing to delete.
#[test]
fn down_after_a_crash_removes_stale_uapi_sockets_and_says_when_nothing_is_left() {
    let Some(m) = mesh("dw_down", 2) else { return };
    // The daemon runs under a holder process that keeps its private /run/wireguard alive
    // after the daemon is killed.
    let pidfile = m.configs[0].with_file_name("braid.pid");
    let log = m.configs[0].with_file_name("braid.log");
    let script = format!(
        "{} run -c {} >{} 2>&1 & echo $! >{}; exec sleep 600",
        env!("CARGO_BIN_EXE_braid"),
        m.config(1),
        log.display(),
        pidfile.display()
    );
    let holder = m
        .lab
        .spawn_private_uapi(1, Command::new("sh").args(["-c", &script]), None)
        .unwrap();
    m.start(2);
    m.wait_answering(1);
    let in_holder = |args: &[&str]| -> Output {
        let holder = holder.to_string();
        let mut all = vec!["-t", holder.as_str(), "-m", "-n"];
        all.extend_from_slice(args);
        Command::new("nsenter").args(&all).output().unwrap()
    };
    let uapi = || String::from_utf8_lossy(&in_holder(&["ls", "/run/wireguard"]).stdout).to_string();
    wait_until("the links' UAPI sockets", Duration::from_secs(20), || {
        uapi().contains("brd4x40004.sock") && uapi().contains("brd6x40005.sock")
    });
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill on the PID of a braid daemon this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until("the daemon gone", Duration::from_secs(5), || {
        gone(pid as u32)
    });
    assert!(
        uapi().contains("brd4x40004.sock"),
        "kill -9 leaves the sockets"
    );

    let braid_bin = env!("CARGO_BIN_EXE_braid");
    let down = in_holder(&[braid_bin, "down", "-c", m.config(1)]);
    let out = String::from_utf8_lossy(&down.stdout);
    assert!(down.status.success(), "{down:?}");
    assert!(
        // The TUN devices went with the process; the node's bridge stayed.
        out.contains("no daemon was running; removed")
            && out.contains("braid0")
            && out.contains("interface groups 2 and 1 deleted")
            && out.contains("2 stale UAPI sockets")
            && out.contains("the stale control socket"),
        "{out}"
    );
    let left = uapi();
    assert!(!left.contains("brd"), "UAPI sockets left: {left}");
    assert!(!m.socket(1).exists());

    // Again: nothing left, and it says so instead of reporting deletions.
    let down = in_holder(&[braid_bin, "down", "-c", m.config(1)]);
    let out = String::from_utf8_lossy(&down.stdout);
    assert!(down.status.success(), "{down:?}");
    assert_eq!(
        out.trim(),
        "down: no daemon was running and braid had left nothing to remove"
    );
}
