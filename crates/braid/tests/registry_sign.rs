//! `braid registry keygen | sign | verify` against the real minisign (Debian package
//! minisign): minisign verifies braid's signatures and braid verifies minisign's; a changed
//! byte, another key, a missing signature and a registry with errors are refused.

use std::path::Path;
use std::process::{Command, Output};

fn braid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(args)
        .output()
        .expect("run braid")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn minisign(dir: &Path, args: &[&str]) -> Output {
    Command::new("minisign")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run minisign")
}

fn have_minisign(test: &str) -> bool {
    let ok = Command::new("minisign").arg("-v").output().is_ok();
    if !ok {
        eprintln!("SKIPPED {test}: minisign is not installed (apt-get install minisign)");
    }
    ok
}

const REGISTRY: &str = r#"[
  // comments stay signed bytes like any other
  {"public_key": "sZp4uL3rvCumiTHMdvGWUqnqO2dOYv9UqkPQxjgqqRc=", "name": "a",
   "endpoints": [{"send_port": 40001, "address_family": "ip4", "address": "192.0.2.1"}]}
]
"#;

#[test]
fn minisign_verifies_braid_and_braid_verifies_minisign() {
    if !have_minisign("minisign_verifies_braid_and_braid_verifies_minisign") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let at = |name: &str| d.join(name).display().to_string();
    std::fs::write(d.join("registry.json"), REGISTRY).unwrap();

    // braid's key pair and signature; minisign checks them.
    let out = braid(&[
        "registry",
        "keygen",
        "--no-password",
        "-s",
        &at("b.key"),
        "-p",
        &at("b.pub"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let braid_pub = text(&out.stdout).trim().to_string();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(d.join("b.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let out = braid(&["registry", "sign", "-s", &at("b.key"), &at("registry.json")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = minisign(d, &["-Vm", "registry.json", "-P", &braid_pub]);
    assert!(
        out.status.success(),
        "minisign refused braid's signature: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("file:registry.json"),
        "{}",
        text(&out.stdout)
    );
    let out = braid(&[
        "registry",
        "verify",
        "-p",
        &at("b.pub"),
        &at("registry.json"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("valid; signed by key"),
        "{}",
        text(&out.stdout)
    );

    // minisign's key pair and signature (its default trusted comment); braid checks them.
    let out = minisign(d, &["-G", "-W", "-p", "m.pub", "-s", "m.key"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = minisign(
        d,
        &["-Sm", "registry.json", "-s", "m.key", "-x", "m.minisig"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = braid(&[
        "registry",
        "verify",
        "-p",
        &at("m.pub"),
        "-x",
        &at("m.minisig"),
        &at("registry.json"),
    ]);
    assert!(
        out.status.success(),
        "braid refused minisign's signature: {}",
        text(&out.stderr)
    );
    // A key file from minisign signs with braid too, and minisign checks that.
    std::fs::remove_file(d.join("registry.json.minisig")).unwrap();
    let out = braid(&["registry", "sign", "-s", &at("m.key"), &at("registry.json")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        minisign(d, &["-Vm", "registry.json", "-p", "m.pub"])
            .status
            .success()
    );

    // Several trusted keys: either signs.
    let out = braid(&[
        "registry",
        "verify",
        "-p",
        &at("b.pub"),
        "-p",
        &at("m.pub"),
        &at("registry.json"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Another key than the trusted one.
    let out = braid(&["registry", "verify", "-P", &braid_pub, &at("registry.json")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("which is not trusted"),
        "{}",
        text(&out.stderr)
    );

    // One changed byte: refused by both.
    let tampered = REGISTRY.replace("40001", "40002");
    std::fs::write(d.join("registry.json"), tampered).unwrap();
    let out = braid(&[
        "registry",
        "verify",
        "-p",
        &at("m.pub"),
        &at("registry.json"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("registry refused: its signature does not match its content"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !minisign(d, &["-Vm", "registry.json", "-p", "m.pub"])
            .status
            .success()
    );

    // No signature at all.
    std::fs::remove_file(d.join("registry.json.minisig")).unwrap();
    let out = braid(&[
        "registry",
        "verify",
        "-p",
        &at("m.pub"),
        &at("registry.json"),
    ]);
    assert!(
        text(&out.stderr).contains("registry refused: it is not signed"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sign_refuses_a_bad_registry_and_each_signature_is_a_newer_version() {
    if !have_minisign("sign_refuses_a_bad_registry_and_each_signature_is_a_newer_version") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let at = |name: &str| d.join(name).display().to_string();
    assert!(
        braid(&[
            "registry",
            "keygen",
            "--no-password",
            "-s",
            &at("k"),
            "-p",
            &at("k.pub")
        ])
        .status
        .success()
    );
    // keygen refuses to overwrite.
    let out = braid(&[
        "registry",
        "keygen",
        "--no-password",
        "-s",
        &at("k"),
        "-p",
        &at("k2.pub"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("does not overwrite"));

    std::fs::write(d.join("r.json"), REGISTRY.replace("40001", "0")).unwrap();
    let out = braid(&["registry", "sign", "-s", &at("k"), &at("r.json")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("[0].endpoints[0].send_port: 0 is outside"),
        "{}",
        text(&out.stderr)
    );
    assert!(!d.join("r.json.minisig").exists());

    std::fs::write(d.join("r.json"), REGISTRY).unwrap();
    let version = || {
        let sig = std::fs::read_to_string(d.join("r.json.minisig")).unwrap();
        braid_model::signed::comment_timestamp(
            sig.lines()
                .nth(2)
                .unwrap()
                .trim_start_matches("trusted comment: "),
        )
        .unwrap()
    };
    assert!(
        braid(&["registry", "sign", "-s", &at("k"), &at("r.json")])
            .status
            .success()
    );
    let first = version();
    // Signed again within the same second: still a later version.
    assert!(
        braid(&["registry", "sign", "-s", &at("k"), &at("r.json")])
            .status
            .success()
    );
    assert!(version() > first, "{} then {}", first, version());
    assert!(
        minisign(d, &["-Vm", "r.json", "-p", "k.pub"])
            .status
            .success()
    );
}

#[test]
fn password_protected_keys_of_either_tool_sign() {
    if !have_minisign("password_protected_keys_of_either_tool_sign") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let at = |name: &str| d.join(name).display().to_string();
    std::fs::write(d.join("r.json"), REGISTRY).unwrap();
    let piped = |args: &[&str], input: &str| {
        use std::io::Write;
        let mut child = Command::new("minisign")
            .current_dir(d)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    // minisign's encrypted key (scrypt); braid signs with the password from the environment.
    let out = piped(&["-G", "-p", "m.pub", "-s", "m.key"], "pw\npw\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["registry", "sign", "-s", &at("m.key"), &at("r.json")])
        .env("BRAID_REGISTRY_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        minisign(d, &["-Vm", "r.json", "-p", "m.pub"])
            .status
            .success()
    );
    // A wrong password signs nothing.
    let out = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["registry", "sign", "-s", &at("m.key"), &at("r.json")])
        .env("BRAID_REGISTRY_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Wrong password"),
        "{}",
        text(&out.stderr)
    );

    // braid's encrypted key; minisign signs with it, braid verifies.
    let out = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["registry", "keygen", "-s", &at("b.key"), "-p", &at("b.pub")])
        .env("BRAID_REGISTRY_PASSWORD", "pw2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = piped(
        &["-Sm", "r.json", "-s", "b.key", "-x", "b.minisig"],
        "pw2\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = braid(&[
        "registry",
        "verify",
        "-p",
        &at("b.pub"),
        "-x",
        &at("b.minisig"),
        &at("r.json"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
