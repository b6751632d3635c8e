//! `braid init` and `braid meta` end to end on real files: the config and 0600 key file it
//! writes, refusal to overwrite, ports picked from the registry, `wg genkey` key files.

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn braid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(args)
        .output()
        .expect("run braid")
}

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/three-nodes")
        .join(name)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_a_valid_config_and_a_0600_key_and_prints_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(example("registry.json"), dir.path().join("registry.json")).unwrap();
    let config = dir.path().join("node.json");
    let c = config.to_str().unwrap();
    let out = braid(&[
        "init",
        "-c",
        c,
        "--registry",
        "registry.json",
        "--address",
        "192.0.2.9",
        "--address",
        "ip6=",
        "--address-plan",
        "2001:db8:5e::/48",
        "--name",
        "delta",
        "--index",
        "9",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let entry: Value = serde_json::from_slice(&out.stdout).expect("the entry is JSON");
    let key = dir.path().join("private.key");
    assert_eq!(mode(&key), 0o600);
    // The registry's nodes use 50102..=50107: auto picks the lowest free ports from 40001.
    assert_eq!(entry["name"], "delta");
    assert_eq!(entry["index"], 9);
    assert_eq!(entry["endpoints"][0]["send_port"], 40001);
    assert_eq!(entry["endpoints"][0]["address"], "192.0.2.9");
    assert_eq!(entry["endpoints"][1]["send_port"], 40002);
    assert_eq!(entry["endpoints"][1]["address_family"], "ip6");
    assert_eq!(entry["endpoints"][1]["address"], "");
    // The entry's key is the key file's.
    let pubkey = Command::new(env!("CARGO_BIN_EXE_braid"))
        .arg("pubkey")
        .stdin(std::fs::File::open(&key).unwrap())
        .output()
        .unwrap();
    assert_eq!(text(&pubkey.stdout).trim(), entry["public_key"]);
    // meta prints the same entry from the written config; check accepts it.
    let meta = braid(&["meta", "-c", c]);
    assert!(meta.status.success(), "{}", text(&meta.stderr));
    assert_eq!(
        serde_json::from_slice::<Value>(&meta.stdout).unwrap(),
        entry
    );
    let check = braid(&["check", "-c", c]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    // The config holds no secret: no warning about its mode.
    assert!(!text(&check.stderr).contains("other users can read it"));

    // Nothing is overwritten: the config, or the key file alone.
    let before = std::fs::read(&key).unwrap();
    let again = braid(&[
        "init",
        "-c",
        c,
        "--registry",
        "registry.json",
        "--address",
        "192.0.2.9",
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr)
            .contains("node.json: the config exists; braid init does not overwrite it"),
        "{}",
        text(&again.stderr)
    );
    let other = dir.path().join("other.json");
    let again = braid(&[
        "init",
        "-c",
        other.to_str().unwrap(),
        "--registry",
        "registry.json",
        "--address",
        "192.0.2.9",
        "--key-file",
        key.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("private.key: the private key file exists"));
    assert!(!other.exists());
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn init_writes_nothing_for_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.json");
    let out = braid(&[
        "init",
        "-c",
        config.to_str().unwrap(),
        "--registry",
        "registry.json",
        "--address",
        "192.0.2.9",
        "--prefix",
        "averylongprefix",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("transport[0].prefix") && err.contains("nothing written"),
        "{err}"
    );
    assert!(!config.exists() && !dir.path().join("private.key").exists());
    // Routing without an address plan: the model's error, nothing written.
    let out = braid(&[
        "init",
        "-c",
        config.to_str().unwrap(),
        "--registry",
        "registry.json",
        "--address",
        "192.0.2.9",
        "--routing",
        "babel",
    ]);
    assert!(
        text(&out.stderr).contains("routing.mode"),
        "{}",
        text(&out.stderr)
    );
    assert!(!config.exists());
}

#[test]
fn meta_prints_name_index_and_exit_preference() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc: Value = serde_json::from_str(&braid_model::jsonc::strip(
        &std::fs::read_to_string(example("alpha.json")).unwrap(),
    ))
    .unwrap();
    doc["name"] = "alpha".into();
    doc["index"] = 3.into();
    doc["exit"] =
        serde_json::json!({"upstream_interface": "eth0", "gateway6": "fe80::1", "preference": 20});
    doc["registry"] = example("registry.json").display().to_string().into();
    let config = dir.path().join("alpha.json");
    std::fs::write(&config, doc.to_string()).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = braid(&["meta", "-c", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let entry: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&entry["name"], &entry["index"], &entry["exit_preference"]),
        (&"alpha".into(), &3.into(), &20.into())
    );
    let keys: Vec<&str> = entry
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "public_key",
            "name",
            "index",
            "exit_preference",
            "endpoints",
            "remarks"
        ]
    );
}

#[test]
fn a_key_file_from_wg_genkey_works_and_must_be_0600() {
    let Ok(genkey) = Command::new("wg").arg("genkey").output() else {
        eprintln!(
            "SKIPPED a_key_file_from_wg_genkey_works_and_must_be_0600: `wg` (wireguard-tools) is not installed"
        );
        return;
    };
    let key_text = text(&genkey.stdout);
    assert!(
        key_text.ends_with('\n'),
        "wg genkey ends its key with a newline"
    );
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("wg.key");
    std::fs::write(&key, &key_text).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut doc: Value = serde_json::from_str(&braid_model::jsonc::strip(
        &std::fs::read_to_string(example("alpha.json")).unwrap(),
    ))
    .unwrap();
    doc.as_object_mut().unwrap().remove("private_key");
    // Relative to the config's directory.
    doc["private_key_file"] = "wg.key".into();
    doc["registry"] = example("registry.json").display().to_string().into();
    let config = dir.path().join("node.json");
    std::fs::write(&config, doc.to_string()).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = config.to_str().unwrap();
    let out = braid(&["meta", "-c", c]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let entry: Value = serde_json::from_slice(&out.stdout).unwrap();
    let wg_pub = Command::new("sh")
        .arg("-c")
        .arg(format!("wg pubkey < {}", key.display()))
        .output()
        .unwrap();
    assert_eq!(entry["public_key"], text(&wg_pub.stdout).trim());

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = braid(&["check", "-c", c]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let shown = key.display().to_string();
    assert!(
        err.contains(&format!("{c}: private_key_file: the private key file {shown} can be read or written by other users (mode 0644); fix: chmod 600 {shown}")),
        "{err}"
    );
    std::fs::remove_file(&key).unwrap();
    let err = text(&braid(&["check", "-c", c]).stderr);
    assert!(
        err.contains(&format!(
            "private_key_file: cannot read the private key file {shown}: No such file"
        )),
        "{err}"
    );
}
