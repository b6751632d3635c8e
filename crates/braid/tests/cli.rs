//! The `braid` binary end to end: check, plan, meta, keygen and pubkey on real files.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn braid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(args)
        .output()
        .expect("run braid")
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/three-nodes")
        .join(name)
}

fn plan_json(config: &Path) -> Value {
    let out = braid(&["plan", "-c", config.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("plan --json is JSON")
}

fn link<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no link {name}"))
}

#[test]
fn three_node_example_is_valid() {
    for node in ["alpha.json", "bravo.json", "charlie.json"] {
        let out = braid(&["check", "-c", example(node).to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("valid; 4 links planned"));
    }
}

#[test]
fn plan_json_shows_mirrored_ports() {
    let alpha = plan_json(&example("alpha.json"));
    let bravo = plan_json(&example("bravo.json"));
    assert_eq!(alpha["version"], 1);
    // alpha (send port 50102) toward bravo (50104): listen on bravo's, send to bravo at alpha's.
    let ab = link(&alpha, "brd4x50104");
    assert_eq!(ab["listen_port"], 50104);
    assert_eq!(ab["endpoint"], "192.0.2.2:50102");
    assert_eq!(ab["peer"], "bravo");
    // bravo toward alpha is the mirror image.
    let ba = link(&bravo, "brd4x50102");
    assert_eq!(ba["listen_port"], 50102);
    assert_eq!(ba["endpoint"], "192.0.2.1:50104");
    assert_eq!(ba["peer_public_key"], alpha["node"]["public_key"]);
    // charlie has no IPv6 address: it dials in, nobody dials it.
    assert_eq!(link(&alpha, "brd6x50107")["endpoint"], Value::Null);
    assert_eq!(link(&bravo, "brd6x50107")["listen_port"], 50107);
    // The address plan.
    assert_eq!(alpha["node"]["addresses"]["prefix6"], "2001:db8:5e:1::/64");
    assert_eq!(bravo["node"]["link_local6"], "fe80::2");
    for key in [
        "name",
        "family",
        "listen_port",
        "endpoint",
        "mtu",
        "fwmark",
        "group",
        "peer_public_key",
    ] {
        assert!(ab.get(key).is_some(), "link field {key} missing");
    }
}

#[test]
fn plan_text_lists_links() {
    let out = braid(&["plan", "-c", example("charlie.json").to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("brd4x50102") && text.contains("192.0.2.1:50106"),
        "{text}"
    );
}

#[test]
fn meta_prints_the_registry_entry() {
    let out = braid(&["meta", "-c", example("alpha.json").to_str().unwrap()]);
    assert!(out.status.success());
    let entry: Value = serde_json::from_slice(&out.stdout).unwrap();
    let registry: Value =
        serde_json::from_str(&std::fs::read_to_string(example("registry.json")).unwrap()).unwrap();
    assert_eq!(entry["public_key"], registry[0]["public_key"]);
    assert_eq!(entry["endpoints"], registry[0]["endpoints"]);
}

#[test]
fn keygen_and_pubkey_agree_with_wg() {
    let key = braid(&["keygen"]);
    assert!(key.status.success());
    let key = String::from_utf8(key.stdout).unwrap();
    assert_eq!(key.trim().len(), 44);
    let ours = pipe(env!("CARGO_BIN_EXE_braid"), &["pubkey"], &key);
    if Command::new("wg").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED part of keygen_and_pubkey_agree_with_wg: `wg` (wireguard-tools) is not installed"
        );
        return;
    }
    assert_eq!(ours, pipe("wg", &["pubkey"], &key));
    // And the other way round: wg genkey's keys work with braid pubkey.
    let wg_key =
        String::from_utf8(Command::new("wg").arg("genkey").output().unwrap().stdout).unwrap();
    assert_eq!(
        pipe(env!("CARGO_BIN_EXE_braid"), &["pubkey"], &wg_key),
        pipe("wg", &["pubkey"], &wg_key)
    );
}

#[test]
fn pubkey_rejects_garbage() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_braid"))
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdin: the private key"));
}

fn pipe(program: &str, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

/// A temporary copy of the example with one file replaced.
fn broken(file: &str, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["alpha.json", "registry.json"] {
        let text = std::fs::read_to_string(example(name)).unwrap();
        let text = if name == file { edit(text) } else { text };
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn check_fails(dir: &tempfile::TempDir) -> String {
    let config = dir.path().join("alpha.json");
    let out = braid(&["check", "-c", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn check_names_file_path_and_fix() {
    let dir = broken("registry.json", |t| {
        t.replacen("\"send_port\": 50104", "\"send_port\": 0", 1)
    });
    let err = check_fails(&dir);
    assert!(
        err.contains("registry.json: [1].endpoints[0].send_port: 0 is outside 1..=65535; fix:"),
        "{err}"
    );
    assert!(err.contains("1 error found"), "{err}");
}

#[test]
fn check_reports_missing_registry() {
    let dir = broken("alpha.json", |t| {
        t.replace("\"registry.json\"", "\"nowhere.json\"")
    });
    let err = check_fails(&dir);
    assert!(
        err.contains("nowhere.json: cannot read the registry"),
        "{err}"
    );
}

#[test]
fn check_reports_every_problem_at_once() {
    let dir = broken("registry.json", |t| {
        t.replacen("\"send_port\": 50104", "\"send_port\": 50102", 1)
            .replacen("\"192.0.2.3\"", "\"192.0.2.3:1\"", 1)
    });
    let err = check_fails(&dir);
    assert!(
        err.contains("[1].endpoints[0].send_port: send port 50102 is also used by node [0]"),
        "{err}"
    );
    assert!(
        err.contains("[2].endpoints[0].address: `192.0.2.3:1` is neither"),
        "{err}"
    );
    assert!(err.contains("2 errors found"), "{err}");
    let dir = broken("registry.json", |t| {
        t.replacen("\"index\": 3", "\"index\": 65535", 1)
    });
    let err = check_fails(&dir);
    assert!(err.contains("[2].index: index 65535 is too large for the IPv4 pool 10.0.0.0/8, which holds indexes 1..=65534"), "{err}");
    assert!(
        err.contains("alpha.json"),
        "the fix names the config to change: {err}"
    );
}

#[test]
fn check_reports_problems_of_both_files_together() {
    let dir = broken("registry.json", |t| {
        t.replacen("\"send_port\": 50104", "\"send_port\": 0", 1)
    });
    let config = dir.path().join("alpha.json");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"mtu\": 1420", "\"mtu\": 576");
    std::fs::write(&config, text).unwrap();
    let err = check_fails(&dir);
    assert!(
        err.contains("alpha.json: transport[0].mtu: 576 is outside 1280..=65535"),
        "{err}"
    );
    assert!(
        err.contains("registry.json: [1].endpoints[0].send_port: 0 is outside"),
        "{err}"
    );
    assert!(err.contains("3 errors found"), "{err}");
}

#[test]
fn check_reports_index_collisions() {
    let dir = broken("registry.json", |t| {
        t.replacen("\"index\": 3", "\"index\": 2", 1)
    });
    let err = check_fails(&dir);
    assert!(
        err.contains("[2].index: index 2 is also used by node [1]"),
        "{err}"
    );
}

#[test]
fn check_rejects_a_missing_config() {
    let out = braid(&["check", "-c", "/nonexistent/braid.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/nonexistent/braid.json: cannot read the config")
    );
}

#[test]
fn help_has_examples_for_each_subcommand() {
    for sub in [
        "check", "plan", "init", "keygen", "pubkey", "meta", "run", "reload", "status", "down",
        "lab",
    ] {
        let out = braid(&[sub, "--help"]);
        assert!(out.status.success(), "{sub}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Example"),
            "{sub} --help has no example:\n{text}"
        );
    }
}

#[test]
fn lab_up_prints_plans_and_lab_down_removes_everything() {
    if !braid_lab::available_or_skip("lab_up_prints_plans_and_lab_down_removes_everything") {
        return;
    }
    let name = format!("cli{:x}", std::process::id() % 0xfff);
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().join("lab");
    let dir_arg = dir_arg.to_str().unwrap();
    let out = braid(&[
        "lab",
        "up",
        "--plan-only",
        "--links-only",
        "--nodes",
        "3",
        "--name",
        &name,
        "--dir",
        dir_arg,
    ]);
    let namespaces = |name: &str| {
        braid_lab::command::namespaces()
            .unwrap()
            .into_iter()
            .filter(|n| n.starts_with(&braid_lab::namespace_prefix(name)))
            .count()
    };
    let up_namespaces = namespaces(&name);
    let down = braid(&["lab", "down", "--name", &name, "--dir", dir_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(up_namespaces, 3);
    assert!(text.contains("== n3 (namespace brd-"), "{text}");
    assert!(
        text.contains("brd4x40004      ip4  40004 198.18.0.2:40002"),
        "{text}"
    );
    assert!(down.status.success());
    assert_eq!(namespaces(&name), 0);
    assert!(!dir.path().join("lab").exists());
}

#[test]
fn lab_up_runs_the_mesh_and_every_link_answers() {
    if !braid_lab::available_or_skip("lab_up_runs_the_mesh_and_every_link_answers") {
        return;
    }
    let name = format!("run{:x}", std::process::id() % 0xfff);
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().join("lab");
    let dir_arg = dir_arg.to_str().unwrap();
    let out = braid(&[
        "lab",
        "up",
        "--links-only",
        "--nodes",
        "3",
        "--seconds",
        "1",
        "--name",
        &name,
        "--dir",
        dir_arg,
    ]);
    let status = braid(&[
        "status",
        "--json",
        "-c",
        &format!("{dir_arg}/n1/config.json"),
    ]);
    let down = braid(&["lab", "down", "--name", &name, "--dir", dir_arg]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("all 12 links up"), "{text}");
    for row in [
        "n1           -     3/3     3/3",
        "n3         3/3     3/3       -",
    ] {
        assert!(text.contains(row), "matrix row `{row}` missing:\n{text}");
    }
    assert!(
        text.contains("Mbit/s") || text.contains("iperf3 is not installed"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The daemon's status over the control socket agrees.
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let doc: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["node"]["backend"], "userspace");
    let links = doc["links"].as_array().unwrap();
    assert_eq!(links.len(), 4);
    assert!(
        links
            .iter()
            .all(|l| l["state"] == "up" && l["rx_packets"].as_u64().unwrap() > 0),
        "{doc}"
    );
    assert!(down.status.success());
}

#[test]
fn run_refuses_what_this_build_cannot_do() {
    let dir = broken("alpha.json", |t| {
        t.replacen(
            "\"vrf\": \"\",",
            "\"vrf\": \"\", \"backend\": \"kernel\",",
            1,
        )
    });
    let dir_userspace = broken("alpha.json", |t| {
        t.replacen(
            "\"vrf\": \"\",",
            "\"vrf\": \"\", \"backend\": \"userspace\",",
            1,
        )
    });
    let out = braid(&[
        "up",
        "-c",
        dir_userspace.path().join("alpha.json").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("backend: \"userspace\" links need a running process")
            && err.contains("use `braid run -c"),
        "{err}"
    );
    // A VRF with a routing engine is refused until the engines run inside the VRF.
    let vrf_babel = broken("alpha.json", |t| {
        t.replacen(
            "\"vrf\": \"\",",
            "\"vrf\": \"brdvrf\", \"routing\": {\"mode\": \"babel\"},",
            1,
        )
    });
    let out = braid(&[
        "run",
        "-c",
        vrf_babel.path().join("alpha.json").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("vrf: \"brdvrf\" with routing.mode \"babel\" is not supported yet")
            && err.contains("use routing mode \"static\""),
        "{err}"
    );
    // Bonded links are the userspace backend's: refused with the kernel backend and by
    // the one-shot `up`, whatever this kernel has.
    let bonded = broken("alpha.json", |t| {
        t.replacen(
            "\"vrf\": \"\",",
            "\"vrf\": \"\", \"backend\": \"kernel\",",
            1,
        )
        .replacen(
            "\"random_port\": false",
            "\"random_port\": false, \"paths\": [{\"interface\": \"wan0\"}]",
            1,
        )
    });
    let bonded = bonded.path().join("alpha.json");
    for command in ["run", "up"] {
        let out = braid(&[command, "-c", bonded.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && err.contains("transport[0]: multi-path links")
                && err.contains("userspace backend"),
            "{command}: {err}"
        );
    }
    // Where the kernel has WireGuard the kernel backend runs (the VM test covers that);
    // here it must be refused with the fix named.
    if kernel_has_wireguard() {
        eprintln!("WARNING: this kernel has WireGuard; the kernel-backend refusal is not checked");
        return;
    }
    let config = dir.path().join("alpha.json");
    let out = braid(&["run", "-c", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("backend: \"kernel\", but this kernel has no WireGuard")
            && err.contains("modprobe wireguard"),
        "{err}"
    );
    let out = braid(&["up", "-c", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("`braid up` uses kernel WireGuard, but"),
        "{err}"
    );
}

/// `braid check` refuses exactly what `braid run` refuses: one validation for both (it
/// used to call these configs valid).
#[test]
fn check_refuses_what_run_refuses() {
    let cases = [
        (
            broken("alpha.json", |t| {
                t.replacen(
                    "\"vrf\": \"\",",
                    "\"vrf\": \"brdvrf\", \"routing\": {\"mode\": \"bird\"},",
                    1,
                )
            }),
            "alpha.json: vrf: \"brdvrf\" with routing.mode \"bird\" is not supported yet",
        ),
        (
            broken("alpha.json", |t| {
                t.replacen(
                    "\"vrf\": \"\",",
                    "\"vrf\": \"\", \"backend\": \"kernel\",",
                    1,
                )
                .replacen(
                    "\"random_port\": false",
                    "\"random_port\": false, \"wan\": \"auto\"",
                    1,
                )
            }),
            "alpha.json: transport[0]: multi-path links (\"paths\", \"wan\") need the userspace backend",
        ),
    ];
    for (dir, needle) in &cases {
        let config = dir.path().join("alpha.json");
        let check = check_fails(dir);
        assert!(
            check.contains(needle) && check.contains("; fix: ") && check.contains("1 error found"),
            "check: {check}"
        );
        let run = braid(&["run", "-c", config.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success() && err.contains(needle), "run: {err}");
        assert!(!err.contains("error: error:"), "one `error:` prefix: {err}");
    }
}

/// A registry that is not UTF-8 is an encoding error (it was "make it readable"), and a
/// config others can read, private key and all, is warned about.
#[test]
fn check_names_encoding_errors_and_exposed_keys() {
    use std::os::unix::fs::PermissionsExt;
    let dir = broken("registry.json", |t| t);
    let registry = dir.path().join("registry.json");
    let mut bytes = std::fs::read(&registry).unwrap();
    bytes.splice(1..1, b"\n// caf\xe9\n".iter().copied());
    std::fs::write(&registry, bytes).unwrap();
    let err = check_fails(&dir);
    assert!(
        err.contains("registry.json: the registry (named by the config's `registry` field) is not UTF-8 text: invalid byte 0xe9 at line 2, column 7")
            && err.contains("fix: save the file as UTF-8")
            && !err.contains("readable"),
        "{err}"
    );

    let dir = broken("registry.json", |t| t);
    let config = dir.path().join("alpha.json");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = braid(&["check", "-c", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && err.contains("warning: ")
            && err.contains("alpha.json: private_key: the config holds this node's private key and other users can read it (mode 0644); fix: chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = braid(&["check", "-c", config.to_str().unwrap()]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
}

/// Whether the generic netlink family of WireGuard exists (module loaded or built in).
fn kernel_has_wireguard() -> bool {
    Path::new("/sys/module/wireguard").exists()
}
