//! Links that carry a default route keep themselves alive, and LAN subnets a node declares
//! are routed to it like its own block.

use braid_model::{Config, PrivateKey, Registry};
use braid_plan::links::EXIT_KEEPALIVE;
use braid_plan::{Plan, Sources, plan};
use serde_json::json;

const SOURCES: Sources<'static> = Sources {
    config: "config.json",
    registry: "registry.json",
};

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from_random_bytes([seed; 32])
}

/// Node 1 is a router (LAN 192.0.2.0/24 and 2001:db8:77::/48 behind it), node 2 the exit.
fn registry(router_lan: serde_json::Value) -> String {
    json!([
        {"public_key": key(1).public_key().to_base64(), "name": "router", "index": 1,
         "lan_subnets": router_lan,
         "endpoints": [{"send_port": 50101, "address_family": "ip4", "address": ""}]},
        {"public_key": key(2).public_key().to_base64(), "name": "exit", "index": 2,
         "exit_preference": 100,
         "endpoints": [{"send_port": 50102, "address_family": "ip4", "address": "198.18.0.2"}]},
    ])
    .to_string()
}

fn config(seed: u8, send_port: u16, keepalive: Option<u16>, exit: bool) -> Config {
    let mut transport = json!({"address_family": "ip4", "address": "", "send_port": send_port,
        "mtu": 1420, "prefix": "bond4x", "fwmark": 0, "random_port": false});
    if let Some(k) = keepalive {
        transport["keepalive"] = json!(k);
    }
    let mut c = json!({"registry": "registry.json", "private_key": key(seed).to_base64(),
        "vrf": "", "stale_group": 1, "active_group": 2, "transport": [transport],
        "address_plan": {"ipv6": "2001:db8:bd00::/48", "ipv4_pool": "10.0.0.0/8"},
        "routing": {"mode": "static"}});
    if exit {
        c["exit"] = json!({"upstream_interface": "wan0", "gateway4": "198.18.0.254",
            "masquerade": true});
    }
    Config::parse("config.json", &c.to_string())
        .expect("a valid config")
        .0
}

fn plan_of(config: &Config, registry: &str) -> Result<Plan, braid_model::Problems> {
    let (registry, _) = Registry::parse("registry.json", registry).expect("a valid registry");
    plan(config, &registry, SOURCES)
}

#[test]
fn both_ends_of_a_link_to_an_exit_send_keepalives_unless_set() {
    let lans = json!([]);
    let router = plan_of(&config(1, 50101, None, false), &registry(lans.clone())).unwrap();
    let exit = plan_of(&config(2, 50102, None, true), &registry(lans.clone())).unwrap();
    assert_eq!(router.links[0].keepalive, Some(EXIT_KEEPALIVE));
    assert_eq!(exit.links[0].keepalive, Some(EXIT_KEEPALIVE));
    // A configured keepalive wins.
    let router = plan_of(&config(1, 50101, Some(5), false), &registry(lans.clone())).unwrap();
    assert_eq!(router.links[0].keepalive, Some(5));
    // An explicit 0 is off, on the exit's side too: told apart from unset.
    let router = plan_of(&config(1, 50101, Some(0), false), &registry(lans.clone())).unwrap();
    assert_eq!(router.links[0].keepalive, None);
    let exit = plan_of(&config(2, 50102, Some(0), true), &registry(lans)).unwrap();
    assert_eq!(exit.links[0].keepalive, None);
}

#[test]
fn links_between_nodes_that_are_not_exits_keep_no_keepalive() {
    let registry = json!([
        {"public_key": key(1).public_key().to_base64(), "index": 1,
         "endpoints": [{"send_port": 50101, "address_family": "ip4", "address": "198.18.0.1"}]},
        {"public_key": key(2).public_key().to_base64(), "index": 2,
         "endpoints": [{"send_port": 50102, "address_family": "ip4", "address": "198.18.0.2"}]},
    ])
    .to_string();
    let p = plan_of(&config(1, 50101, None, false), &registry).unwrap();
    assert_eq!(p.links[0].keepalive, None);
}

#[test]
fn the_exit_routes_the_routers_lan_subnets_over_the_link_to_it() {
    let exit = plan_of(
        &config(2, 50102, None, true),
        &registry(json!(["192.0.2.0/24", "2001:db8:77::/48"])),
    )
    .unwrap();
    let to = |dest: &str| {
        exit.routes
            .iter()
            .find(|r| r.destination.to_string() == dest)
            .map(|r| (r.dev.clone(), r.via.to_string()))
    };
    let router = &exit.peers[0];
    let link4 = router.addresses.as_ref().unwrap().link4.unwrap().addr();
    assert_eq!(
        to("192.0.2.0/24"),
        Some(("bond4x50101".into(), link4.to_string()))
    );
    assert_eq!(
        to("2001:db8:77::/48"),
        Some(("bond4x50101".into(), router.link_local6.to_string()))
    );
    // The upstream needs the IPv6 LAN back (IPv4 is masqueraded).
    let back = braid_plan::routes::upstream_return_routes(
        &exit,
        Some("2001:db8:ffff::2".parse().unwrap()),
        None,
    );
    assert!(
        back.iter()
            .any(|r| r.destination.to_string() == "2001:db8:77::/48")
    );
    assert!(
        !back
            .iter()
            .any(|r| r.destination.to_string() == "192.0.2.0/24")
    );
}

#[test]
fn lan_subnets_inside_the_address_plan_or_twice_in_the_mesh_are_refused() {
    let problems = plan_of(
        &config(2, 50102, None, true),
        &registry(json!(["10.9.0.0/16"])),
    )
    .unwrap_err()
    .to_string();
    assert!(problems.contains("[0].lan_subnets[0]"), "{problems}");
    assert!(
        problems.contains("overlaps the network's own addresses"),
        "{problems}"
    );
    let text = json!([
        {"public_key": key(1).public_key().to_base64(), "index": 1, "lan_subnets": ["192.0.2.0/24"],
         "endpoints": [{"send_port": 50101, "address_family": "ip4", "address": ""}]},
        {"public_key": key(2).public_key().to_base64(), "index": 2, "lan_subnets": ["192.0.2.128/25"],
         "endpoints": [{"send_port": 50102, "address_family": "ip4", "address": "198.18.0.2"}]},
    ])
    .to_string();
    let problems = plan_of(&config(2, 50102, None, true), &text)
        .unwrap_err()
        .to_string();
    assert!(problems.contains("[1].lan_subnets[0]"), "{problems}");
    assert!(
        problems.contains("overlaps node [0]'s LAN subnet 192.0.2.0/24"),
        "{problems}"
    );
}

#[test]
fn bad_lan_subnets_are_refused_with_the_field_and_the_fix() {
    for (lan, says) in [
        (json!(["0.0.0.0/0"]), "is a default route"),
        (
            json!(["192.0.2.1/24"]),
            "write the network address: 192.0.2.0/24",
        ),
        (json!(["lan"]), "is not an IP prefix"),
        (json!("192.0.2.0/24"), "list"),
        (json!(["192.0.2.0/24", "192.0.2.0/24"]), "listed twice"),
    ] {
        let problems = Registry::parse("registry.json", &registry(lan.clone()))
            .unwrap_err()
            .to_string();
        assert!(problems.contains("registry.json"), "{problems}");
        assert!(problems.contains("lan_subnets"), "{lan}: {problems}");
        assert!(problems.contains(says), "{lan}: {problems}");
    }
}
