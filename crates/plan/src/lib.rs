//! braid's plan: from a config and a registry, the links to create and the address plan.
//! Pure: no I/O, no clock. The plan is the one place that decides names, ports and
//! addresses; every I/O layer consumes it.

pub mod address;
pub mod links;
pub mod reconcile;
pub mod routes;

pub use address::{AddressError, NodeAddresses};
pub use links::{LinkAddresses, LinkPlan, RemoteEndpoint, plan_links};

use braid_model::extensions::RoutingMode;
use braid_model::problem::{Problem, Problems, Severity};
use braid_model::read::{field_path, index_path};
use braid_model::{Config, PublicKey, Registry};
use std::collections::HashMap;
use std::net::Ipv6Addr;

/// The files the plan came from, to name them in problems.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// Path of the config file, as given.
    pub config: &'a str,
    /// Path (or URL) of the registry, as given.
    pub registry: &'a str,
}

/// One node of the mesh as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodePlan {
    /// The node's X25519 public key (the registry's key for it).
    #[serde(serialize_with = "serialize_key")]
    pub public_key: PublicKey,
    /// The node's name from the registry, if it has one.
    pub name: Option<String>,
    /// IPv6 link-local address used on every link of the node.
    pub link_local6: Ipv6Addr,
    /// With an address plan: the node's prefixes and addresses.
    pub addresses: Option<NodeAddresses>,
    /// The node's rank as an exit (lower is preferred); `None`: not an exit.
    pub exit_preference: Option<u32>,
    /// LANs behind the node with their own addresses (registry `lan_subnets`): routed to
    /// it like its own block, and NATed by exits like the pool.
    pub lan_subnets: Vec<ipnet::IpNet>,
}

/// The whole plan for one node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// This node.
    pub node: NodePlan,
    /// Every other node of the registry, in registry order.
    pub peers: Vec<NodePlan>,
    /// The links, sorted by name.
    pub links: Vec<LinkPlan>,
    /// The routes braid installs itself (routing mode `static`; empty otherwise).
    pub routes: Vec<routes::RoutePlan>,
}

pub(crate) fn serialize_key<S: serde::Serializer>(
    key: &PublicKey,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(key)
}

/// Computes the plan with no uplinks found: transports with `wan: "auto"` get no path (the
/// default route). See [`plan_with_uplinks`].
pub fn plan(config: &Config, registry: &Registry, sources: Sources<'_>) -> Result<Plan, Problems> {
    plan_with_uplinks(config, registry, sources, &[])
}

/// Computes the plan. `uplinks` are the uplinks found now (interface names, as the daemon's
/// uplink scan reports them): transports with `wan: "auto"` get one path per uplink.
/// Fails with every address-plan problem (index collisions, indexes outside the allocation
/// or the pool), each naming the registry entry and the fix.
pub fn plan_with_uplinks(
    config: &Config,
    registry: &Registry,
    sources: Sources<'_>,
    uplinks: &[String],
) -> Result<Plan, Problems> {
    let own_key = config.private_key.public_key();
    let nodes = node_plans(config, registry, sources)?;
    // A node missing from the registry still has a plan (a warning says peers won't know it).
    let node = nodes
        .iter()
        .find(|n| n.public_key == own_key)
        .cloned()
        .unwrap_or_else(|| NodePlan {
            public_key: own_key,
            name: None,
            link_local6: address::link_local6(None, &own_key),
            addresses: None,
            exit_preference: None,
            lan_subnets: Vec::new(),
        });
    let links = plan_links(config, registry, &node, &nodes, uplinks);
    let peers = nodes
        .into_iter()
        .filter(|n| n.public_key != own_key)
        .collect();
    let mut plan = Plan {
        node,
        peers,
        links,
        routes: Vec::new(),
    };
    match (config.routing.mode, &config.exit) {
        (RoutingMode::Static, exit) => plan.routes = routes::static_routes(&plan, exit.as_ref()),
        // With a routing daemon, an exit still installs its own way out.
        (RoutingMode::Babel | RoutingMode::Bird, Some(exit)) => {
            plan.routes = routes::upstream_default_routes(exit)
        }
        _ => {}
    }
    Ok(plan)
}

/// LAN subnets that would take another node's traffic: inside the network's own
/// allocation or pool, or overlapping another node's LAN.
fn lan_problems(
    config: &Config,
    registry: &Registry,
    error: &mut impl FnMut(String, String, String),
) {
    let own: Vec<ipnet::IpNet> = config
        .address_plan
        .iter()
        .flat_map(|p| {
            std::iter::once(ipnet::IpNet::V6(p.ipv6)).chain(p.ipv4_pool.map(ipnet::IpNet::V4))
        })
        .collect();
    let overlaps =
        |a: &ipnet::IpNet, b: &ipnet::IpNet| a.contains(&b.network()) || b.contains(&a.network());
    for (i, node) in registry.nodes.iter().enumerate() {
        for (k, net) in node.lan_subnets.iter().enumerate() {
            let path = index_path(&field_path(&index_path("", i), "lan_subnets"), k);
            if let Some(block) = own.iter().find(|b| overlaps(b, net)) {
                error(
                    path.clone(),
                    format!("{net} overlaps the network's own addresses ({block})"),
                    "list only LANs outside the address plan; the node's own block is routed already".into(),
                );
            }
            for (j, other) in registry.nodes.iter().enumerate().take(i) {
                if let Some(theirs) = other.lan_subnets.iter().find(|o| overlaps(o, net)) {
                    error(
                        path.clone(),
                        format!("{net} overlaps node [{j}]'s LAN subnet {theirs}"),
                        "give each LAN to one node only (renumber one of them)".into(),
                    );
                }
            }
        }
    }
}

fn node_plans(
    config: &Config,
    registry: &Registry,
    sources: Sources<'_>,
) -> Result<Vec<NodePlan>, Problems> {
    let mut problems = Vec::new();
    let mut error = |path: String, message: String, fix: String| {
        problems.push(Problem {
            severity: Severity::Error,
            file: sources.registry.to_string(),
            path,
            message,
            fix,
        });
    };
    let mut taken: HashMap<u64, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, node) in registry.nodes.iter().enumerate() {
        let path = field_path(&index_path("", i), "index");
        let addresses = match &config.address_plan {
            None => None,
            Some(plan) => {
                let (index, derived) = match node.index {
                    Some(index) => (index, false),
                    None => (address::derived_index(plan, &node.public_key), true),
                };
                let how = if derived {
                    " (derived from the public key)"
                } else {
                    ""
                };
                if let Some(first) = taken.insert(index, i) {
                    taken.insert(index, first);
                    error(
                        path.clone(),
                        format!("index {index}{how} is also node [{first}]'s index"),
                        format!(
                            "set \"index\" explicitly on one of the two nodes to an unused value in 1..={}",
                            address::max_index(plan)
                        ),
                    );
                }
                match address::node_addresses(plan, index) {
                    Ok(addresses) => Some(addresses),
                    Err(e) => {
                        let fix = match e {
                            AddressError::IndexZero => "use an index from 1".to_string(),
                            AddressError::BeyondAllocation { max, .. } => format!(
                                "set \"index\" to a value in 1..={max}, or configure a larger allocation (address_plan.ipv6 in {})",
                                sources.config
                            ),
                            AddressError::TooLargeForPool { max, .. } => format!(
                                "set \"index\" to a value in 1..={max}, or widen address_plan.ipv4_pool in {} (or set it to \"off\")",
                                sources.config
                            ),
                        };
                        error(path, format!("{e}{how}"), fix);
                        None
                    }
                }
            }
        };
        let index = addresses.as_ref().map(|a| a.index);
        out.push(NodePlan {
            public_key: node.public_key,
            name: node.name.clone(),
            link_local6: address::link_local6(index, &node.public_key),
            addresses,
            exit_preference: node.exit_preference,
            lan_subnets: node.lan_subnets.clone(),
        });
    }
    lan_problems(config, registry, &mut error);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Problems(problems))
    }
}
