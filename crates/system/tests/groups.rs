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
        Self(name)
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
    let (found, first, second, gone) = netns::block_on_in(&ns.0, || async {
        let nl = Netlink::connect().unwrap();
        let found = nl.link_by_name("t9").await.unwrap().map(|l| l.name);
        (
            found,
            nl.delete_link("t9").await.unwrap(),
            nl.delete_link("t9").await.unwrap(),
            nl.link_by_name("t9").await.unwrap().is_none(),
        )
    })
    .unwrap();
    assert_eq!(found.as_deref(), Some("t9"));
    assert!(first && !second && gone);
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

#[test]
fn uplinks_are_found_by_their_tables_and_path_rules_are_reconciled() {
    if !root_with_netns() {
        return;
    }
    let ns = Namespace::new("u");
    for k in 0..3 {
        ns.ip(&[
            "link",
            "add",
            &format!("wan{k}"),
            "type",
            "veth",
            "peer",
            "name",
            &format!("hub{k}"),
        ]);
        ns.ip(&["link", "set", &format!("wan{k}"), "up"]);
        ns.ip(&[
            "addr",
            "add",
            &format!("198.18.{k}.1/24"),
            "dev",
            &format!("wan{k}"),
        ]);
    }
    // wan0 carries main's default; wan1 and wan2 have their own tables, like ratbond's.
    ns.ip(&[
        "route",
        "add",
        "default",
        "via",
        "198.18.0.254",
        "dev",
        "wan0",
    ]);
    ns.ip(&[
        "route",
        "add",
        "default",
        "via",
        "198.18.1.254",
        "dev",
        "wan1",
        "table",
        "101",
    ]);
    ns.ip(&[
        "route",
        "add",
        "default",
        "via",
        "198.18.2.254",
        "dev",
        "wan2",
        "table",
        "102",
    ]);
    // Someone else's rule stays.
    ns.ip(&[
        "rule",
        "add",
        "from",
        "192.0.2.1",
        "lookup",
        "7",
        "priority",
        "900",
    ]);
    let (uplinks, first, second, after) = netns::block_on_in(&ns.0, || async {
        use braid_system::uplinks::PathRule;
        let nl = Netlink::connect().unwrap();
        let uplinks: Vec<(String, u32)> = nl
            .uplinks()
            .await
            .unwrap()
            .into_iter()
            .map(|u| (u.name, u.table))
            .collect();
        let mut want = std::collections::BTreeSet::new();
        want.insert(PathRule::Oif {
            interface: "wan1".into(),
            table: 101,
        });
        want.insert(PathRule::From {
            source: "198.18.2.1".parse().unwrap(),
            table: 102,
        });
        let first = nl.sync_path_rules(&want).await.unwrap();
        // The same again changes nothing; then wan1's rule goes.
        let second = nl.sync_path_rules(&want).await.unwrap();
        want.remove(&PathRule::Oif {
            interface: "wan1".into(),
            table: 101,
        });
        let after = nl.sync_path_rules(&want).await.unwrap();
        (uplinks, first, second, after)
    })
    .unwrap();
    assert_eq!(
        uplinks,
        vec![("wan1".to_string(), 101), ("wan2".to_string(), 102)]
    );
    assert_eq!(first, (2, 0), "oif rules count once per rule");
    assert_eq!(second, (0, 0));
    assert_eq!(after.1, 2, "the oif rule's IPv4 and IPv6 messages removed");
    let rules = Command::new("ip")
        .args(["-n", &ns.0, "rule", "show"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(
        rules.contains("from 198.18.2.1 lookup 102 proto 98"),
        "{rules}"
    );
    assert!(!rules.contains("wan1"), "{rules}");
    assert!(rules.contains("from 192.0.2.1 lookup 7"), "{rules}");
}
