//! Property: for every pair of nodes A and B of a random registry, A's link toward B listens
//! on B's send port and sends to B's address at A's send port, and B's link toward A is the
//! mirror image.

use braid_model::{Config, PrivateKey, Registry};
use braid_plan::{Sources, plan};
use proptest::prelude::*;
use serde_json::json;

#[derive(Debug, Clone)]
struct NodeSpec {
    key: PrivateKey,
    port4: Option<u16>,
    port6: Option<u16>,
    dialable: bool,
}

fn nodes() -> impl Strategy<Value = Vec<NodeSpec>> {
    (2usize..7).prop_flat_map(|n| {
        (
            prop::collection::hash_set(1024u16..65000, 2 * n),
            prop::collection::vec((any::<[u8; 32]>(), 0u8..3, any::<bool>()), n),
        )
            .prop_map(move |(ports, specs)| {
                let ports: Vec<u16> = ports.into_iter().collect();
                specs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (seed, families, dialable))| NodeSpec {
                        key: PrivateKey::from_random_bytes(seed),
                        port4: (families != 2).then_some(ports[2 * i]),
                        port6: (families != 1).then_some(ports[2 * i + 1]),
                        dialable,
                    })
                    .collect()
            })
    })
}

fn registry_text(nodes: &[NodeSpec]) -> String {
    let entries: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut endpoints = Vec::new();
            if let Some(p) = n.port4 {
                let address = if n.dialable { format!("198.18.0.{}", i + 1) } else { String::new() };
                endpoints.push(json!({"send_port": p, "address_family": "ip4", "address": address}));
            }
            if let Some(p) = n.port6 {
                let address = if n.dialable { format!("2001:db8::{}", i + 1) } else { String::new() };
                endpoints.push(json!({"send_port": p, "address_family": "ip6", "address": address}));
            }
            json!({"public_key": n.key.public_key().to_base64(), "endpoints": endpoints, "remarks": {}})
        })
        .collect();
    serde_json::to_string(&entries).unwrap()
}

fn config_text(n: &NodeSpec, random_port: bool) -> String {
    let mut transports = Vec::new();
    if let Some(p) = n.port4 {
        transports.push(json!({"address_family": "ip4", "address": "", "send_port": p, "mtu": 1420, "prefix": "b4x", "fwmark": 54, "random_port": random_port}));
    }
    if let Some(p) = n.port6 {
        transports.push(json!({"address_family": "ip6", "address": "", "send_port": p, "mtu": 1400, "prefix": "b6x", "fwmark": 54, "random_port": random_port}));
    }
    json!({"registry": "registry.json", "private_key": n.key.to_base64(), "vrf": "", "stale_group": 1, "active_group": 2, "transport": transports})
        .to_string()
}

proptest! {
    #[test]
    fn links_mirror_each_other(nodes in nodes()) {
        prop_assume!(nodes.iter().map(|n| n.key.public_key()).collect::<std::collections::HashSet<_>>().len() == nodes.len());
        let (registry, _) = Registry::parse("registry.json", &registry_text(&nodes)).unwrap();
        let sources = Sources { config: "config.json", registry: "registry.json" };
        let plans: Vec<_> = nodes
            .iter()
            .map(|n| {
                let text = config_text(n, false);
                let (config, _) = Config::parse("config.json", &text).unwrap();
                plan(&config, &registry, sources).unwrap()
            })
            .collect();
        for (a, plan_a) in plans.iter().enumerate() {
            // Every link is unique by name and the list is sorted.
            let names: Vec<_> = plan_a.links.iter().map(|l| l.name.clone()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(&names, &sorted);
            for (b, node_b) in nodes.iter().enumerate() {
                if a == b { continue; }
                let node_a = &nodes[a];
                for (pa, pb, prefix, family) in [(node_a.port4, node_b.port4, "b4x", "ip4"), (node_a.port6, node_b.port6, "b6x", "ip6")] {
                    let toward_b = plan_a.links.iter().find(|l| l.peer_public_key == node_b.key.public_key() && l.family.name() == family);
                    let (Some(pa), Some(pb)) = (pa, pb) else {
                        prop_assert!(toward_b.is_none());
                        continue;
                    };
                    let ab = toward_b.expect("a link toward every peer of the same family");
                    prop_assert_eq!(&ab.name, &format!("{prefix}{pb}"));
                    prop_assert_eq!(ab.listen_port, pb);
                    match &ab.endpoint {
                        Some(e) => {
                            prop_assert!(node_b.dialable);
                            prop_assert_eq!(e.port, pa);
                            let want = if family == "ip4" { format!("198.18.0.{}", b + 1) } else { format!("2001:db8::{}", b + 1) };
                            prop_assert_eq!(e.host.to_string(), want);
                        }
                        None => prop_assert!(!node_b.dialable),
                    }
                    let ba = plans[b].links.iter().find(|l| l.peer_public_key == node_a.key.public_key() && l.family.name() == family).expect("mirror link");
                    prop_assert_eq!(ba.listen_port, pa);
                    prop_assert_eq!(&ba.name, &format!("{prefix}{pa}"));
                    if let Some(e) = &ba.endpoint { prop_assert_eq!(e.port, pb); }
                }
            }
        }
    }

    #[test]
    fn random_port_listens_on_zero(nodes in nodes()) {
        let (registry, _) = Registry::parse("registry.json", &registry_text(&nodes)).unwrap();
        let (config, _) = Config::parse("config.json", &config_text(&nodes[0], true)).unwrap();
        let sources = Sources { config: "config.json", registry: "registry.json" };
        let plan = plan(&config, &registry, sources).unwrap();
        prop_assert!(plan.links.iter().all(|l| l.listen_port == 0));
    }
}

#[test]
fn plan_is_deterministic() {
    let nodes: Vec<NodeSpec> = (0..4u8)
        .map(|i| NodeSpec {
            key: PrivateKey::from_random_bytes([i + 1; 32]),
            port4: Some(40000 + u16::from(i)),
            port6: Some(41000 + u16::from(i)),
            dialable: true,
        })
        .collect();
    let (registry, _) = Registry::parse("registry.json", &registry_text(&nodes)).unwrap();
    let (config, _) = Config::parse("config.json", &config_text(&nodes[1], false)).unwrap();
    let sources = Sources {
        config: "config.json",
        registry: "registry.json",
    };
    let first = plan(&config, &registry, sources).unwrap();
    assert_eq!(first, plan(&config, &registry, sources).unwrap());
    assert_eq!(first.links.len(), 6);
    assert_eq!(first.links[0].name, "b4x40000");
}

#[test]
fn static_routes_reach_every_peer_and_prefer_the_best_exit() {
    let nodes: Vec<NodeSpec> = (0..4u8)
        .map(|i| NodeSpec {
            key: PrivateKey::from_random_bytes([i + 1; 32]),
            port4: Some(40000 + u16::from(i)),
            port6: Some(41000 + u16::from(i)),
            dialable: true,
        })
        .collect();
    let mut registry: serde_json::Value = serde_json::from_str(&registry_text(&nodes)).unwrap();
    for (i, node) in registry.as_array_mut().unwrap().iter_mut().enumerate() {
        node["index"] = json!(i + 1);
    }
    registry[2]["exit_preference"] = json!(200);
    registry[3]["exit_preference"] = json!(100);
    let (registry, _) = Registry::parse("registry.json", &registry.to_string()).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&config_text(&nodes[0], false)).unwrap();
    config["address_plan"] = json!({"ipv6": "2001:db8:5e::/48"});
    config["routing"] = json!({"mode": "static"});
    let (config, _) = Config::parse("config.json", &config.to_string()).unwrap();
    let sources = Sources {
        config: "config.json",
        registry: "registry.json",
    };
    let plan = plan(&config, &registry, sources).unwrap();
    let routes = braid_plan::routes::static_routes(&plan, None);
    let to = |dest: &str| {
        routes
            .iter()
            .filter(|r| r.destination.to_string() == dest)
            .collect::<Vec<_>>()
    };
    // Node 2's /64 over both links to it, via its link-local address, ip4 link first.
    let r = to("2001:db8:5e:2::/64");
    assert_eq!(r.len(), 2);
    assert_eq!(
        (
            r[0].dev.as_str(),
            r[0].via.to_string().as_str(),
            r[0].metric
        ),
        ("b4x40001", "fe80::2", 1024)
    );
    assert_eq!(r[1].metric, 1025);
    // IPv4 /24s via the 169.254 link address.
    let r = to("10.0.3.0/24");
    assert_eq!(r[0].via.to_string(), "169.254.0.3");
    // Default: node 4 (preference 100) before node 3 (200).
    let defaults = to("::/0");
    assert_eq!(defaults.len(), 4);
    assert_eq!(defaults[0].via.to_string(), "fe80::4");
    assert!(
        defaults
            .iter()
            .filter(|r| r.via.to_string() == "fe80::3")
            .all(|r| r.metric > defaults[1].metric)
    );
}
