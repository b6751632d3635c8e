//! The per-link facts the plan decides for both backends: the addresses on each link, the
//! endpoint a link can use without a DNS look-up, the paths of `wan: "auto"` transports
//! over the uplinks found, and which changes a backend takes in place.

use braid_model::extensions::PathConfig;
use braid_model::{Config, PrivateKey, Registry};
use braid_plan::reconcile::{
    Change, KernelUpdate, changes, diff, in_place_userspace, kernel_update,
};
use braid_plan::{LinkPlan, Plan, Sources, plan, plan_with_uplinks};
use serde_json::{Value, json};

const SOURCES: Sources<'static> = Sources {
    config: "config.json",
    registry: "registry.json",
};

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from_random_bytes([seed; 32])
}

/// Three nodes with indexes 1, 2 and 0x10a; node 3 publishes a DNS name.
fn registry() -> Value {
    json!([
        {"public_key": key(1).public_key().to_base64(), "name": "n1", "index": 1,
         "endpoints": [{"send_port": 40001, "address_family": "ip4", "address": "198.18.0.1"}]},
        {"public_key": key(2).public_key().to_base64(), "name": "n2", "index": 2,
         "endpoints": [{"send_port": 40002, "address_family": "ip4", "address": "198.18.0.2"}]},
        {"public_key": key(3).public_key().to_base64(), "name": "n3", "index": 0x10a,
         "endpoints": [{"send_port": 40003, "address_family": "ip4", "address": "n3.lab.test"}]},
    ])
}

fn config(transport_extra: Value, address_plan: Option<Value>) -> Config {
    let mut transport = json!({"address_family": "ip4", "address": "198.18.0.1",
        "send_port": 40001, "mtu": 1420, "prefix": "brd4x", "fwmark": 0, "random_port": false});
    if let (Some(t), Some(extra)) = (transport.as_object_mut(), transport_extra.as_object()) {
        t.extend(extra.clone());
    }
    let mut c = json!({"registry": "registry.json", "private_key": key(1).to_base64(),
        "vrf": "", "stale_group": 1, "active_group": 2, "transport": [transport]});
    if let Some(p) = address_plan {
        c["address_plan"] = p;
    }
    Config::parse("config.json", &c.to_string())
        .expect("a valid config")
        .0
}

fn with_pool() -> Option<Value> {
    Some(json!({"ipv6": "2001:db8:bd00::/48", "ipv4_pool": "10.0.0.0/8"}))
}

fn plan_of(config: &Config, registry: &Value, uplinks: &[String]) -> Plan {
    let (registry, _) =
        Registry::parse("registry.json", &registry.to_string()).expect("a valid registry");
    plan_with_uplinks(config, &registry, SOURCES, uplinks).expect("a valid plan")
}

fn link<'a>(plan: &'a Plan, name: &str) -> &'a LinkPlan {
    plan.links
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no link {name}"))
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_link_carries_the_nodes_addresses_and_points_to_its_peers_link_address() {
    let p = plan_of(&config(json!({}), with_pool()), &registry(), &[]);
    assert_eq!(p.links.len(), 2);
    let to_n2 = link(&p, "brd4x40002");
    let to_n3 = link(&p, "brd4x40003");
    for l in [to_n2, to_n3] {
        assert_eq!(l.addresses.link_local6.to_string(), "fe80::1/64");
        assert_eq!(
            l.addresses.link4.map(|n| n.to_string()).as_deref(),
            Some("169.254.0.1/16")
        );
        // The same facts the node's own plan holds, from one place.
        assert_eq!(l.addresses.link_local6.addr(), p.node.link_local6);
    }
    assert_eq!(
        to_n2.addresses.peer_link4.map(|a| a.to_string()).as_deref(),
        Some("169.254.0.2")
    );
    // Index 0x10a: 169.254.1.10, the address plan's worked example.
    assert_eq!(
        to_n3.addresses.peer_link4.map(|a| a.to_string()).as_deref(),
        Some("169.254.1.10")
    );
}

#[test]
fn without_an_ipv4_pool_links_carry_only_the_link_local_address() {
    let p = plan_of(
        &config(
            json!({}),
            Some(json!({"ipv6": "2001:db8:bd00::/48", "ipv4_pool": "off"})),
        ),
        &registry(),
        &[],
    );
    let l = link(&p, "brd4x40002");
    assert_eq!(l.addresses.link_local6.to_string(), "fe80::1/64");
    assert_eq!((l.addresses.link4, l.addresses.peer_link4), (None, None));
}

#[test]
fn without_an_address_plan_the_link_local_address_comes_from_the_key() {
    let p = plan_of(&config(json!({}), None), &registry(), &[]);
    let l = link(&p, "brd4x40002");
    assert_eq!(
        l.addresses.link_local6.addr(),
        braid_plan::address::link_local6(None, &key(1).public_key())
    );
    assert_eq!(l.addresses.link_local6.prefix_len(), 64);
    assert_eq!((l.addresses.link4, l.addresses.peer_link4), (None, None));
}

#[test]
fn an_ip_endpoint_needs_no_look_up_and_a_dns_name_does() {
    let p = plan_of(&config(json!({}), with_pool()), &registry(), &[]);
    let to_n2 = link(&p, "brd4x40002").endpoint.as_ref().unwrap();
    assert_eq!(
        to_n2.socket_addr().map(|a| a.to_string()).as_deref(),
        Some("198.18.0.2:40001")
    );
    let to_n3 = link(&p, "brd4x40003").endpoint.as_ref().unwrap();
    assert_eq!(to_n3.to_string(), "n3.lab.test:40001");
    assert_eq!(to_n3.socket_addr(), None);
}

#[test]
fn wan_auto_gets_one_path_per_uplink_found() {
    let c = config(json!({"wan": "auto"}), with_pool());
    // Nothing found: no path, the link takes the default route.
    let none = plan_of(&c, &registry(), &[]);
    assert!(none.links.iter().all(|l| l.paths.is_empty()));
    // `plan` is the plan with no uplinks found.
    let (r, _) = Registry::parse("registry.json", &registry().to_string()).unwrap();
    assert_eq!(plan(&c, &r, SOURCES).unwrap(), none);
    let two = plan_of(&c, &registry(), &strings(&["wan0", "wan1"]));
    for l in &two.links {
        let interfaces: Vec<_> = l.paths.iter().map(|p| p.interface.as_deref()).collect();
        assert_eq!(interfaces, vec![Some("wan0"), Some("wan1")], "{}", l.name);
        assert!(
            l.paths
                .iter()
                .all(|p| p.source.is_none() && p.weight.is_none() && p.rate_mbit.is_none())
        );
    }
    // A new uplink is a change of the paths only, which a bonded userspace link takes in
    // place.
    let d = diff(&none.links, &two.links);
    assert!(d.add.is_empty() && d.remove.is_empty());
    for (_, changed) in &d.update {
        assert_eq!(changed, &vec![Change::Paths]);
        assert!(changed.iter().all(|c| in_place_userspace(*c)));
    }
}

#[test]
fn listed_paths_ignore_the_uplinks_found() {
    let c = config(
        json!({"paths": [{"interface": "wan9"}, {"interface": "wan8", "weight": 2}]}),
        with_pool(),
    );
    let p = plan_of(&c, &registry(), &strings(&["wan0", "wan1"]));
    let l = link(&p, "brd4x40002");
    assert_eq!(l.paths.len(), 2);
    assert_eq!(l.paths[0].interface.as_deref(), Some("wan9"));
    assert_eq!(
        l.paths[1],
        PathConfig {
            interface: Some("wan8".into()),
            weight: Some(2),
            ..PathConfig::default()
        }
    );
}

#[test]
fn a_peer_that_renumbers_changes_its_links_addresses_and_the_link_is_made_again() {
    let c = config(json!({}), with_pool());
    let before = plan_of(&c, &registry(), &[]);
    let mut renumbered = registry();
    renumbered[1]["index"] = json!(7);
    let after = plan_of(&c, &renumbered, &[]);
    assert_eq!(
        link(&after, "brd4x40002")
            .addresses
            .peer_link4
            .map(|a| a.to_string())
            .as_deref(),
        Some("169.254.0.7")
    );
    let d = diff(&before.links, &after.links);
    assert_eq!(d.unchanged, vec!["brd4x40003"]);
    assert_eq!(d.update.len(), 1);
    assert_eq!(d.update[0].1, vec![Change::Addresses]);
    assert!(!in_place_userspace(Change::Addresses));
    assert_eq!(kernel_update(&d.update[0].1), KernelUpdate::Recreate);
}

#[test]
fn an_endpoint_move_is_a_peer_update_for_both_backends() {
    let c = config(json!({}), with_pool());
    let before = plan_of(&c, &registry(), &[]);
    let mut moved = registry();
    moved[1]["endpoints"][0]["address"] = json!("198.18.0.22");
    let after = plan_of(&c, &moved, &[]);
    let changed = changes(link(&before, "brd4x40002"), link(&after, "brd4x40002"));
    assert_eq!(changed, vec![Change::Endpoint]);
    assert!(in_place_userspace(Change::Endpoint));
    assert_eq!(kernel_update(&changed), KernelUpdate::Peer);
}
