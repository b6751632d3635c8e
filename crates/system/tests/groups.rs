//! Interface-group accounting against the real kernel, inside a throwaway namespace.

use braid_system::{Netlink, netns};
use std::process::Command;

fn root_with_netns() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !(root && ip) {
        eprintln!("SKIPPED: braid-system tests need root and `ip netns` (iproute2)");
    }
    root && ip
}

/// A namespace that is deleted when the guard drops, also on panic.
struct Namespace(String);

impl Namespace {
    fn new(tag: &str) -> Self {
        let name = format!("brd-sys{}-{tag}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        assert!(
            Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .unwrap()
                .success()
        );
        Namespace(name)
    }
    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn stale_active_accounting_deletes_only_what_is_no_longer_wanted() {
    if !root_with_netns() {
        return;
    }
    let ns = Namespace::new("g");
    for i in 1..=3 {
        ns.ip(&[
            "link",
            "add",
            &format!("a{i}"),
            "group",
            "2",
            "type",
            "veth",
            "peer",
            "name",
            &format!("b{i}"),
            "group",
            "2",
        ]);
    }
    ns.ip(&["tuntap", "add", "mode", "tun", "name", "t1"]);
    ns.ip(&["link", "set", "t1", "group", "2"]);
    ns.ip(&[
        "link", "add", "keep", "type", "veth", "peer", "name", "keep2",
    ]); // group 0: not braid's

    let names = netns::block_on_in(&ns.0, || async {
        let nl = Netlink::connect().unwrap();
        assert_eq!(nl.mark_stale(2, 1).await.unwrap(), 7);
        let a1 = nl.link_by_name("a1").await.unwrap().unwrap();
        let b1 = nl.link_by_name("b1").await.unwrap().unwrap();
        nl.set_group(a1.index, 2).await.unwrap();
        nl.set_group(b1.index, 2).await.unwrap();
        nl.delete_group(1).await.unwrap();
        // Deleting an empty group is fine (a second reconcile, or `down` twice).
        nl.delete_group(1).await.unwrap();
        let mut names: Vec<String> = nl
            .links()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        names.sort();
        names
    })
    .unwrap();
    assert_eq!(names, vec!["a1", "b1", "keep", "keep2", "lo"]);
}

#[test]
fn delete_link_by_name() {
    if !root_with_netns() {
        return;
    }
    let ns = Namespace::new("d");
    ns.ip(&["tuntap", "add", "mode", "tun", "name", "t9"]);
    let (first, second) = netns::block_on_in(&ns.0, || async {
        let nl = Netlink::connect().unwrap();
        (
            nl.delete_link("t9").await.unwrap(),
            nl.delete_link("t9").await.unwrap(),
        )
    })
    .unwrap();
    assert!(first && !second);
}

#[test]
fn entering_a_missing_namespace_names_it() {
    let err = netns::run_in("brd-no-such-namespace", || ()).unwrap_err();
    assert!(
        err.to_string()
            .contains("network namespace brd-no-such-namespace"),
        "{err}"
    );
}
