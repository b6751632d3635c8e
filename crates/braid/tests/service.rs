//! braid as a system service: the systemd units pass `systemd-analyze verify`, every
//! subcommand has a man page, completions load in bash, zsh and fish, `--log-level` and
//! `--log-format json` work, and `braid run` tells a service manager READY=1 once its links
//! and control socket are up and STOPPING=1 when it is stopped (root, in a lab).

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec};
use serde_json::Value;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The subcommands `braid ... --help` lists under "Commands:", as page names
/// (`braid-lab-up`), at every depth: read from the binary's help, not from its source.
fn subcommands_from_help(path: &[&str], out: &mut Vec<String>) {
    let mut args: Vec<&str> = path.to_vec();
    args.push("--help");
    let help = braid(&args);
    assert!(help.status.success(), "{}", text(&help));
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    let Some(list) = help.split("Commands:\n").nth(1) else {
        return;
    };
    for line in list.lines().take_while(|l| l.starts_with("  ")) {
        let name = line.split_whitespace().next().unwrap_or_default();
        if name == "help" {
            continue; // clap's own; its text is --help
        }
        let mut sub = path.to_vec();
        sub.push(name);
        out.push(format!("braid-{}", sub.join("-")));
        subcommands_from_help(&sub, out);
    }
}

#[test]
fn every_subcommand_has_a_man_page_that_renders() {
    let dir = tempfile::tempdir().unwrap();
    let out = braid(&["man", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let mut wanted = vec!["braid".to_string()];
    subcommands_from_help(&[], &mut wanted);
    for sub in [
        "braid-run",
        "braid-lab-up",
        "braid-completions",
        "braid-man",
    ] {
        assert!(wanted.contains(&sub.to_string()), "{wanted:?}");
    }
    let mut written: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    written.sort();
    let mut expected: Vec<String> = wanted.iter().map(|n| format!("{n}.8")).collect();
    expected.sort();
    assert_eq!(written, expected);
    // Each page is valid roff: groff renders it without a warning.
    if !have("groff") {
        eprintln!(
            "SKIPPED part of every_subcommand_has_a_man_page_that_renders: groff is not installed"
        );
        return;
    }
    for page in &expected {
        let path = dir.path().join(page);
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{page}: {}",
            text(&out)
        );
        let roff = std::fs::read_to_string(&path).unwrap();
        assert!(roff.starts_with(".ie \\n(.g .ds Aq"), "{page}");
        assert!(roff.contains(".SH NAME"), "{page}");
    }
    // braid-run(8) has the subcommand's own text and its examples.
    let run = std::fs::read_to_string(dir.path().join("braid-run.8")).unwrap();
    assert!(run.contains("braid run"), "{run}");
    assert!(run.contains("READY=1"), "{run}");
    // `braid man` alone prints braid(8).
    let top = braid(&["man"]);
    assert_eq!(
        top.stdout,
        std::fs::read(dir.path().join("braid.8")).unwrap()
    );
}

/// Runs `script` in bash with the braid completion loaded; returns stdout.
fn bash_with_completion(script: &str) -> String {
    let bin = env!("CARGO_BIN_EXE_braid");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source <('{bin}' completions bash) && {script}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// What bash completes after `words` (the last one being completed).
fn bash_completes(words: &[&str]) -> Vec<String> {
    let array = words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let cword = words.len() - 1;
    let prev = words[cword.saturating_sub(1)];
    let cur = words[cword];
    let out = bash_with_completion(&format!(
        "COMP_WORDS=({array}); COMP_CWORD={cword}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; _braid braid '{cur}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words.join(" ")
    ));
    out.lines().map(str::to_string).collect()
}

#[test]
fn bash_completion_loads_and_completes_subcommands_and_values() {
    let registered = bash_with_completion("complete -p braid");
    assert!(registered.contains("-F _braid braid"), "{registered}");
    assert_eq!(bash_completes(&["braid", "sta"]), vec!["status"]);
    let lab = bash_completes(&["braid", "lab", ""]);
    for sub in ["up", "down", "cleanup"] {
        assert!(lab.contains(&sub.to_string()), "{lab:?}");
    }
    let shells = bash_completes(&["braid", "completions", ""]);
    assert!(
        ["bash", "zsh", "fish"]
            .iter()
            .all(|s| shells.contains(&s.to_string())),
        "{shells:?}"
    );
    assert_eq!(
        bash_completes(&["braid", "--log-format", ""]),
        vec!["text", "json"]
    );
}

#[test]
fn zsh_and_fish_completions_load() {
    let bin = env!("CARGO_BIN_EXE_braid");
    if have("zsh") {
        let out = Command::new("zsh")
            .arg("-c")
            .arg(format!(
                "autoload -U compinit && compinit -u -D && source <('{bin}' completions zsh) && print -r -- $_comps[braid] && (( $+functions[_braid] ))"
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "zsh: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "_braid");
    } else {
        eprintln!(
            "SKIPPED the zsh part of zsh_and_fish_completions_load: zsh is not installed (scripts/deps.sh)"
        );
    }
    if have("fish") {
        let out = Command::new("fish")
            .arg("-c")
            .arg(format!(
                "'{bin}' completions fish | source; and complete -C'braid sta'; and complete -C'braid lab '"
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "fish: {}", text(&out));
        let listed = String::from_utf8_lossy(&out.stdout).to_string();
        let names: Vec<&str> = listed
            .lines()
            .filter_map(|l| l.split('\t').next())
            .collect();
        assert!(names.contains(&"status"), "{listed}");
        assert!(
            names.contains(&"up") && names.contains(&"cleanup"),
            "{listed}"
        );
    } else {
        eprintln!(
            "SKIPPED the fish part of zsh_and_fish_completions_load: fish is not installed (scripts/deps.sh)"
        );
    }
}

/// A config `braid run` refuses after logging a warning (others can read it): a log line
/// and an error, without root and without touching the system.
fn refused_config() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let examples = repo().join("examples/three-nodes");
    std::fs::copy(
        examples.join("registry.json"),
        dir.path().join("registry.json"),
    )
    .unwrap();
    let config = dir.path().join("alpha.json");
    let text = std::fs::read_to_string(examples.join("alpha.json")).unwrap();
    let text = text.replacen(
        "\"vrf\": \"\"",
        "\"vrf\": \"brdvrf\", \"routing\": { \"mode\": \"babel\" }",
        1,
    );
    std::fs::write(&config, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    (dir, config)
}

#[test]
fn json_logs_are_one_object_per_line_and_levels_filter() {
    let (_dir, config) = refused_config();
    let config = config.to_str().unwrap();
    let out = braid(&["--log-format", "json", "run", "-c", config]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert_eq!(lines[0]["level"], "WARN");
    assert!(lines[0]["message"].as_str().unwrap().contains("mode 0644"));
    assert_eq!(lines[1]["level"], "ERROR");
    assert!(
        lines[1]["message"]
            .as_str()
            .unwrap()
            .contains("is not supported yet"),
        "{stderr}"
    );
    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["target"].is_string(),
            "{line}"
        );
    }
    // The environment variable chooses the format too; --log-level error drops the warning.
    let out = Command::new(env!("CARGO_BIN_EXE_braid"))
        .env("BRAID_LOG_FORMAT", "json")
        .args(["run", "-c", config, "--log-level", "error"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("\"level\":\"ERROR\""), "{stderr}");
    // BRAID_LOG, then RUST_LOG, when there is no --log-level.
    let quiet = |var: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_braid"))
            .env_remove("BRAID_LOG")
            .env_remove("RUST_LOG")
            .env(var, "error")
            .args(["run", "-c", config])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    for var in ["BRAID_LOG", "RUST_LOG"] {
        let stderr = quiet(var);
        assert!(!stderr.contains("mode 0644"), "{var}=error: {stderr}");
        assert!(stderr.contains("is not supported yet"), "{var}: {stderr}");
    }
}

#[test]
fn a_log_level_that_is_no_level_is_refused_with_the_choices() {
    let out = braid(&["--log-level", "verbose", "keygen"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("--log-level") && err.contains("off, error, warn, info, debug, trace"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let out = braid(&["keygen", "--log-level", "info,braid_link=debug"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// `systemd-analyze verify` on a copy of `unit` whose ExecStart names the binary under
/// test (verify checks that the command exists), with braid's man pages on MANPATH (it
/// checks `Documentation=man:...` too). Returns the lines that mention braid.
fn verify(unit: &str, instance: Option<&str>, edit: impl Fn(String) -> String) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man/man8");
    let out = braid(&["man", man.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let source = std::fs::read_to_string(repo().join("packaging/systemd").join(unit)).unwrap();
    assert!(source.contains("ExecStart=/usr/bin/braid run -c /etc/braid/"));
    let copy = edit(source.replace("/usr/bin/braid", env!("CARGO_BIN_EXE_braid")));
    std::fs::write(dir.path().join(unit), copy).unwrap();
    let name = instance.unwrap_or(unit);
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join(name))
        .env("MANPATH", dir.path().join("man"))
        .output()
        .unwrap();
    let all = text(&out);
    assert!(out.status.success(), "systemd-analyze verify {name}: {all}");
    all.lines()
        .filter(|l| l.contains("braid"))
        .map(str::to_string)
        .collect()
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        eprintln!(
            "\n*** SKIPPED systemd_units_pass_systemd_analyze_verify: systemd-analyze is not installed (package systemd, scripts/deps.sh); the units are NOT verified ***\n"
        );
        return;
    }
    let same = |s: String| s;
    assert_eq!(verify("braid.service", None, same), Vec::<String>::new());
    assert_eq!(
        verify("braid@.service", Some("braid@mesh.service"), same),
        Vec::<String>::new()
    );
    // The check can fail: a misspelt setting is reported, naming the unit.
    let broken = verify("braid.service", None, |s| {
        s.replace("Type=notify", "Type=notfy")
    });
    assert!(broken.iter().any(|l| l.contains("notfy")), "{broken:?}");
    // What the units promise.
    for unit in ["braid.service", "braid@.service"] {
        let text = std::fs::read_to_string(repo().join("packaging/systemd").join(unit)).unwrap();
        for line in [
            "Type=notify",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE",
            "DeviceAllow=/dev/net/tun rw",
            "ProtectSystem=strict",
            "ExecStartPre=+/bin/mkdir -p -m 0755 /run/wireguard",
            "ReadWritePaths=-/run/wireguard",
        ] {
            assert!(text.lines().any(|l| l == line), "{unit}: no {line}");
        }
    }
}

/// Waits for one datagram on `socket`, at most `timeout`.
fn receive(socket: &UnixDatagram, timeout: Duration) -> Option<String> {
    // Until the deadline: CI once saw the wait end with an error after 0.7 s instead of
    // 20 s (a signal to the test process interrupts recv with EINTR).
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => return Some(String::from_utf8_lossy(&buf[..n]).to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(e) => {
                // Said, and waited out: the deadline decides, not a passing error.
                eprintln!("receive: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// braid's links on node `i` (interface group 2, names starting with `brd`).
fn lab_links(lab: &Lab, i: usize) -> Vec<String> {
    let out = lab
        .exec(i, "ip", &["-o", "link", "show", "group", "2"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with("brd"))
        .collect()
}

#[test]
fn run_tells_the_service_manager_ready_when_links_are_up_and_stopping_on_sigterm() {
    let test = "run_tells_the_service_manager_ready_when_links_are_up_and_stopping_on_sigterm";
    if !braid_lab::available_or_skip(test) {
        return;
    }
    let name = format!("sd{:x}", std::process::id() % 0xffff);
    let lab = Lab::up(LabSpec::new(&name, 2)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(dir.path(), &ConfigOptions::default())
        .unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let config1 = files[0].config.clone();
    let log1 = dir.path().join("n1.log");
    // node 1 as systemd would start it (NOTIFY_SOCKET), logging JSON at debug level.
    let started = Instant::now();
    let pid = lab
        .spawn_private_uapi(
            1,
            Command::new("env")
                .arg(format!("NOTIFY_SOCKET={}", notify_path.display()))
                .arg(env!("CARGO_BIN_EXE_braid"))
                .args(["--log-format", "json", "--log-level", "debug", "run", "-c"])
                .arg(&config1),
            Some(&log1),
        )
        .unwrap();
    let ready = receive(&notify, Duration::from_secs(20));
    // What READY=1 promises holds the moment it arrives: the links exist and the control
    // socket answers.
    let links = lab_links(&lab, 1);
    let status = braid(&["status", "--json", "-c", config1.to_str().unwrap()]);
    let log = || std::fs::read_to_string(&log1).unwrap_or_default();
    let ready = ready.unwrap_or_else(|| panic!("no READY=1 within 20 s; log:\n{}", log()));
    eprintln!("READY=1 after {:?}: {ready:?}", started.elapsed());
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(
        ready.contains("STATUS=running: 2 added, 0 updated, 0 removed, 0 unchanged"),
        "{ready}"
    );
    assert_eq!(links.len(), 2, "links at READY=1: {links:?}");
    assert!(
        status.status.success(),
        "status at READY=1: {}",
        text(&status)
    );
    let doc: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["links"].as_array().map(Vec::len), Some(2), "{doc}");

    // SIGTERM: STOPPING=1, then everything braid made goes.
    // SAFETY: kill on the PID of the braid daemon this test started (env execs it).
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let stopping = receive(&notify, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no STOPPING=1 within 10 s; log:\n{}", log()));
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    wait_until("node 1's links removed", Duration::from_secs(10), || {
        lab_links(&lab, 1).is_empty()
    });

    // Its log: JSON lines only, at debug level too.
    let text = log();
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["message"] == "started"),
        "{text}"
    );
    assert!(lines.iter().any(|l| l["level"] == "DEBUG"), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().unwrap_or("").contains("READY=1")),
        "{text}"
    );
}
