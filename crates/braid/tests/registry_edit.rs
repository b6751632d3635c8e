//! `braid registry add-node` / `remove-node` on real files: an entry from `braid meta` piped
//! in, duplicates refused with the file unchanged, comments kept, signing in the same step.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn braid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(args)
        .output()
        .expect("run braid")
}

fn braid_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/three-nodes")
        .join(name)
}

#[test]
fn nodes_are_added_and_removed_safely() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let registry = d.join("registry.json");
    std::fs::copy(example("registry.json"), &registry).unwrap();
    let r = registry.to_str().unwrap();
    let original = std::fs::read_to_string(&registry).unwrap();

    // A new node: its entry from `braid init`, piped into add-node.
    let config = d.join("delta.json");
    let out = braid(&[
        "init",
        "-c",
        config.to_str().unwrap(),
        "--registry",
        r,
        "--address",
        "192.0.2.4",
        "--name",
        "delta",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let entry = out.stdout;
    let out = braid_with_stdin(&["registry", "add-node", r], &entry);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("added delta to"),
        "{}",
        text(&out.stderr)
    );
    let added = std::fs::read_to_string(&registry).unwrap();
    assert!(
        added.starts_with(&original[..original.rfind('}').unwrap()]),
        "the rest is kept:\n{added}"
    );
    // Every comment of the original is still there.
    for comment in original
        .lines()
        .filter_map(|l| l.find("//").map(|at| &l[at..]))
    {
        assert!(added.contains(comment), "lost {comment}");
    }
    let check = braid(&["check", "-c", config.to_str().unwrap()]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(
        !text(&check.stderr).contains("is not in"),
        "the node is in the registry now"
    );

    // The same entry again: refused, naming the duplicate; the file unchanged.
    let out = braid_with_stdin(&["registry", "add-node", r], &entry);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("public_key: public key") && err.contains("is also used by node [3]"),
        "{err}"
    );
    assert!(err.contains("unchanged"), "{err}");
    assert_eq!(std::fs::read_to_string(&registry).unwrap(), added);
    // Another key on a port in use.
    let mut other: serde_json::Value = serde_json::from_slice(&entry).unwrap();
    other["public_key"] = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".into();
    other["name"] = "echo".into();
    std::fs::write(d.join("echo.json"), other.to_string()).unwrap();
    let out = braid(&[
        "registry",
        "add-node",
        r,
        d.join("echo.json").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("send port 40001 is also used by node [3]"),
        "{}",
        text(&out.stderr)
    );

    // Removing it again gives the original file back.
    let out = braid(&["registry", "remove-node", r, "--name", "delta"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&registry).unwrap(), original);
    let out = braid(&["registry", "remove-node", r, "--name", "delta"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no node has name `delta`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn add_node_signs_in_the_same_step_and_warns_about_a_stale_signature() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let registry = d.join("registry.json");
    std::fs::copy(example("registry.json"), &registry).unwrap();
    let r = registry.to_str().unwrap();
    let key = d.join("k.key");
    let out = braid(&[
        "registry",
        "keygen",
        "--no-password",
        "-s",
        key.to_str().unwrap(),
        "-p",
        d.join("k.pub").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let public = text(&out.stdout).trim().to_string();
    let entry = r#"{"public_key": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", "name": "echo",
                    "endpoints": [{"send_port": 40009, "address_family": "ip4", "address": "192.0.2.9"}]}"#;
    std::fs::write(d.join("echo.json"), entry).unwrap();
    let out = braid(&[
        "registry",
        "add-node",
        r,
        d.join("echo.json").to_str().unwrap(),
        "--sign",
        key.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = braid(&["registry", "verify", "-P", &public, r]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    if Command::new("minisign").arg("-v").output().is_ok() {
        let out = Command::new("minisign")
            .args(["-Vm", r, "-P", &public])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // Without --sign: the old signature no longer matches, and braid says so.
    let out = braid(&[
        "registry",
        "remove-node",
        r,
        "--key",
        "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",
    ]);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("no longer matches the registry"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !braid(&["registry", "verify", "-P", &public, r])
            .status
            .success()
    );
}
