//! The routing daemon (babeld, BIRD) through crashes: it dies with braid (`kill -9` of
//! `braid run` leaves no orphan), a restarted braid has routing healthy within 2 s, a
//! routing daemon that dies is started again and the health clears by itself, and one that
//! an earlier braid left running is stopped at start and by `braid down`.

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec};
use serde_json::{Value, json};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The PIDs of the processes running `program` with the config file `conf` (what braid
/// starts), from /proc.
fn daemons(program: &str, conf: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        // argv[0] names the program and an argument is braid's config file for it.
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let named = args.first().is_some_and(|a| {
            Path::new(std::ffi::OsStr::from_bytes(a)).file_name()
                == Some(std::ffi::OsStr::new(program))
        });
        if named && args.contains(&conf.as_os_str().as_bytes()) {
            out.push(pid);
        }
    }
    out
}

fn status(config: &Path) -> Option<Value> {
    let out = braid(&["status", "--json", "-c", config.to_str().unwrap()]);
    serde_json::from_slice(&out.stdout).ok()
}

/// The end of a node's braid.log, for failure messages.
fn log_tail(config: &Path) -> String {
    let text = std::fs::read_to_string(config.with_file_name("braid.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn healthy(config: &Path) -> bool {
    status(config).is_some_and(|doc| doc["routing"]["healthy"] == true)
}

fn kill(pid: i32, signal: i32) {
    // SAFETY: kill on a PID this test started (braid) or found by its command line.
    unsafe { libc::kill(pid, signal) };
}

/// Polls `ok` every 20 ms; returns how long it took, or `None` after `timeout`.
fn time_until(timeout: Duration, mut ok: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ok() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

struct Node<'a> {
    lab: &'a Lab,
    config: PathBuf,
}

impl Node<'_> {
    fn start(&self) -> i32 {
        let log = self.config.with_file_name("braid.log");
        self.lab
            .spawn_private_uapi(
                1,
                Command::new(env!("CARGO_BIN_EXE_braid"))
                    .arg("run")
                    .arg("-c")
                    .arg(&self.config),
                Some(&log),
            )
            .unwrap() as i32
    }
}

#[test]
fn babeld_dies_with_braid_and_comes_back_healthy_within_two_seconds() {
    crash_and_restart(
        "babeld_dies_with_braid_and_comes_back_healthy_within_two_seconds",
        "babel",
        "babeld",
    );
}

#[test]
fn bird_dies_with_braid_and_comes_back_healthy_within_two_seconds() {
    crash_and_restart(
        "bird_dies_with_braid_and_comes_back_healthy_within_two_seconds",
        "bird",
        "bird",
    );
}

fn crash_and_restart(test: &str, mode: &str, program: &str) {
    if !braid_lab::available_or_skip(test) {
        return;
    }
    if Command::new(program).arg("--help").output().is_err() {
        eprintln!("SKIPPED {test}: {program} is not installed");
        return;
    }
    let lab = Lab::up(LabSpec::new(
        &format!("rd{}{:x}", &mode[..2], std::process::id() % 0xffff),
        2,
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(dir.path(), &ConfigOptions::default())
        .unwrap();
    for f in &files {
        edit_json(&f.config, |c| {
            c["routing"] = json!({"mode": mode, "hello_interval": 1})
        });
    }
    let node = Node {
        lab: &lab,
        config: files[0].config.clone(),
    };
    let engine_dir =
        files[0]
            .config
            .with_file_name(if mode == "babel" { "babeld" } else { "bird" });
    let conf = engine_dir.join(format!("{program}.conf"));
    let pid_file = engine_dir.join(format!("{program}.pid"));
    let braid1 = node.start();
    lab.spawn_private_uapi(
        2,
        Command::new(env!("CARGO_BIN_EXE_braid"))
            .arg("run")
            .arg("-c")
            .arg(&files[1].config),
        Some(&files[1].config.with_file_name("braid.log")),
    )
    .unwrap();
    wait_for_bridges(&lab, 2);
    let w1 = lab.add_workload(1, "braid0").unwrap();
    let w2 = lab.add_workload(2, "braid0").unwrap();
    let _ = w1;
    wait_until(
        "w1 -> w2 over babel routes",
        Duration::from_secs(60),
        || lab.workload_ping(1, &w2.v6.to_string()),
    );
    wait_until("n1 healthy", Duration::from_secs(10), || {
        healthy(&node.config)
    });
    let first = daemons(program, &conf);
    assert_eq!(first.len(), 1, "one {program} for n1: {first:?}");

    // 1. kill -9 of braid: its routing daemon goes with it (parent-death signal).
    kill(braid1, libc::SIGKILL);
    let gone = time_until(Duration::from_secs(5), || {
        daemons(program, &conf).is_empty()
    });
    assert!(
        gone.is_some(),
        "{program} {first:?} outlived braid's kill -9 (still running: {:?})",
        daemons(program, &conf)
    );
    eprintln!("{program} ended {:?} after braid's kill -9", gone.unwrap());

    // 2. A restarted braid has routing healthy within 2 s, with exactly one daemon.
    node.start();
    let back = time_until(Duration::from_secs(10), || healthy(&node.config));
    let doc = status(&node.config).unwrap_or_default();
    let back = back.unwrap_or_else(|| {
        panic!(
            "routing not healthy after restart: {doc}\n{}",
            log_tail(&node.config)
        )
    });
    eprintln!("routing healthy {back:?} after the restart");
    assert!(
        back <= Duration::from_secs(2),
        "healthy only after {back:?}"
    );
    let second = daemons(program, &conf);
    assert_eq!(second.len(), 1, "one {program} after restart: {second:?}");
    assert_eq!(doc["routing"]["engine"]["program"], program, "{doc}");
    assert_eq!(doc["routing"]["engine"]["pid"], second[0], "{doc}");
    let traffic = time_until(Duration::from_secs(30), || {
        lab.workload_ping(1, &w2.v6.to_string())
    });
    eprintln!("w1 -> w2 flowing again {traffic:?} after routing was healthy");
    assert!(traffic.is_some(), "w1 -> w2 after the restart");

    // 3. The routing daemon itself dies: braid starts it again and the health clears by
    // itself (no reload).
    kill(second[0], libc::SIGKILL);
    let again = time_until(Duration::from_secs(5), || {
        let now = daemons(program, &conf);
        now.len() == 1 && now[0] != second[0] && healthy(&node.config)
    });
    let doc = status(&node.config).unwrap_or_default();
    assert!(
        again.is_some(),
        "{program} not back and healthy: {doc}\n{}",
        log_tail(&node.config)
    );
    eprintln!(
        "{program} back and healthy {:?} after its kill -9",
        again.unwrap()
    );
    assert!(
        doc["routing"]["engine"]["restarts"].as_u64() >= Some(1)
            && doc["routing"]["engine"]["pid"] == json!(daemons(program, &conf)[0]),
        "{doc}\n{}",
        log_tail(&node.config)
    );

    // 4. A daemon an earlier braid left running (one started before the parent-death
    // signal, say) is stopped by `braid down` without a daemon ...
    let down = braid(&["down", "-c", node.config.to_str().unwrap()]);
    assert!(down.status.success(), "{down:?}");
    assert!(
        daemons(program, &conf).is_empty(),
        "braid down left {program}"
    );
    let orphan = || {
        let mut command = Command::new(program);
        if mode == "babel" {
            command
                .arg("-c")
                .arg(&conf)
                .arg("-I")
                .arg(&pid_file)
                .arg("-S")
                .arg(engine_dir.join("babeld.state"));
        } else {
            command
                .arg("-f")
                .arg("-c")
                .arg(&conf)
                .arg("-s")
                .arg(engine_dir.join("bird.ctl"))
                .arg("-P")
                .arg(&pid_file);
        }
        lab.spawn_logged(1, &mut command, Some(&engine_dir.join("orphan.log")))
            .unwrap();
        wait_until("the orphan's pid file", Duration::from_secs(5), || {
            std::fs::read_to_string(&pid_file)
                .is_ok_and(|p| daemons(program, &conf).contains(&p.trim().parse().unwrap_or(0)))
        });
    };
    orphan();
    let down = braid(&["down", "-c", node.config.to_str().unwrap()]);
    assert!(down.status.success(), "{down:?}");
    assert!(
        daemons(program, &conf).is_empty(),
        "braid down did not stop the orphan {program}"
    );
    // ... and by a starting braid, which then runs its own.
    orphan();
    let left = daemons(program, &conf);
    node.start();
    let ours = time_until(Duration::from_secs(10), || {
        let now = daemons(program, &conf);
        now.len() == 1 && !left.contains(&now[0]) && healthy(&node.config)
    });
    assert!(
        ours.is_some(),
        "the orphan {left:?} was not replaced: {:?}, {}",
        daemons(program, &conf),
        status(&node.config).unwrap_or_default()
    );
    eprintln!("orphan replaced, healthy {:?} after start", ours.unwrap());
}
