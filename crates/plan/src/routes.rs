//! Static routes (routing mode `static`, after the design note in shared/seeds/001): each
//! peer's /64 and /24, and the LAN subnets it declares, over the links to that peer, and the default route toward the exits,
//! the preferred exit first. Next hops are the peer's link-local IPv6 address and its IPv4
//! link address, which are the same on all of the peer's links.

use crate::links::LinkPlan;
use crate::{NodePlan, Plan};
use braid_model::extensions::ExitConfig;
use ipnet::IpNet;
use std::net::IpAddr;

/// Metric of the first route to a destination; further links and exits count up from it.
pub const BASE_METRIC: u32 = 1024;

/// One route to install: `destination via <via> dev <dev> metric <metric>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoutePlan {
    /// The prefix the route reaches.
    pub destination: IpNet,
    /// The next hop: the peer's link-local address on the link, or an exit's upstream gateway.
    pub via: IpAddr,
    /// The link's interface name.
    pub dev: String,
    /// Lower wins; a backup route through another link or exit has a higher metric.
    pub metric: u32,
}

fn links_to<'a>(plan: &'a Plan, peer: &'a NodePlan) -> impl Iterator<Item = &'a LinkPlan> {
    plan.links
        .iter()
        .filter(move |l| l.peer_public_key == peer.public_key)
}

/// The routes of routing mode `static`, sorted by destination then metric. Expects
/// `plan.routes` to be empty (it computes them). An exit (`exit` set) sends the rest of
/// the world to its upstream instead of to other exits.
pub fn static_routes(plan: &Plan, exit: Option<&ExitConfig>) -> Vec<RoutePlan> {
    let mut routes = Vec::new();
    for peer in &plan.peers {
        let Some(addresses) = &peer.addresses else {
            continue;
        };
        for (rank, link) in links_to(plan, peer).enumerate() {
            let metric = BASE_METRIC + rank as u32;
            routes.push(RoutePlan {
                destination: IpNet::V6(addresses.prefix6),
                via: IpAddr::V6(peer.link_local6),
                dev: link.name.clone(),
                metric,
            });
            if let (Some(subnet), Some(link4)) = (addresses.subnet4, addresses.link4) {
                routes.push(RoutePlan {
                    destination: IpNet::V4(subnet),
                    via: IpAddr::V4(link4.addr()),
                    dev: link.name.clone(),
                    metric,
                });
            }
            // The LANs behind the peer, like its own block.
            for lan in &peer.lan_subnets {
                let via = match lan {
                    IpNet::V6(_) => Some(IpAddr::V6(peer.link_local6)),
                    IpNet::V4(_) => addresses.link4.map(|l| IpAddr::V4(l.addr())),
                };
                if let Some(via) = via {
                    routes.push(RoutePlan {
                        destination: *lan,
                        via,
                        dev: link.name.clone(),
                        metric,
                    });
                }
            }
        }
    }
    if let Some(exit) = exit {
        routes.extend(upstream_default_routes(exit));
    } else {
        let mut exits: Vec<&NodePlan> = plan
            .peers
            .iter()
            .filter(|p| p.exit_preference.is_some())
            .collect();
        exits.sort_by_key(|p| (p.exit_preference, p.public_key));
        let mut rank = 0;
        for exit in exits {
            for link in links_to(plan, exit) {
                let metric = BASE_METRIC + rank;
                rank += 1;
                routes.push(RoutePlan {
                    destination: "::/0".parse().expect("literal"),
                    via: IpAddr::V6(exit.link_local6),
                    dev: link.name.clone(),
                    metric,
                });
                if let Some(link4) = exit.addresses.as_ref().and_then(|a| a.link4) {
                    routes.push(RoutePlan {
                        destination: "0.0.0.0/0".parse().expect("literal"),
                        via: IpAddr::V4(link4.addr()),
                        dev: link.name.clone(),
                        metric,
                    });
                }
            }
        }
    }
    routes
        .sort_by(|a, b| (a.destination, a.metric, &a.dev).cmp(&(b.destination, b.metric, &b.dev)));
    routes
}

/// An exit's default routes: to the upstream router over the upstream interface.
pub fn upstream_default_routes(exit: &ExitConfig) -> Vec<RoutePlan> {
    let mut routes = Vec::new();
    for (gateway, destination) in [(exit.gateway6, "::/0"), (exit.gateway4, "0.0.0.0/0")] {
        if let Some(via) = gateway {
            routes.push(RoutePlan {
                destination: destination.parse().expect("literal"),
                via,
                dev: exit.upstream_interface.clone(),
                metric: BASE_METRIC,
            });
        }
    }
    routes
}

/// What the upstream router needs to route the mesh's traffic back to `exit_address`
/// (the exit's address on the upstream segment): every node's /64 and IPv6 LAN subnets,
/// and with IPv4 not masqueraded, every node's /24 and IPv4 LAN subnets (when
/// `exit_address4` is given).
pub fn upstream_return_routes(
    plan: &Plan,
    exit_address6: Option<IpAddr>,
    exit_address4: Option<IpAddr>,
) -> Vec<RoutePlan> {
    let mut routes = Vec::new();
    for node in std::iter::once(&plan.node).chain(&plan.peers) {
        let Some(a) = &node.addresses else { continue };
        if let Some(via) = exit_address6 {
            routes.push(RoutePlan {
                destination: IpNet::V6(a.prefix6),
                via,
                dev: String::new(),
                metric: BASE_METRIC,
            });
        }
        if let (Some(via), Some(subnet)) = (exit_address4, a.subnet4) {
            routes.push(RoutePlan {
                destination: IpNet::V4(subnet),
                via,
                dev: String::new(),
                metric: BASE_METRIC,
            });
        }
        for lan in &node.lan_subnets {
            let via = match lan {
                IpNet::V6(_) => exit_address6,
                IpNet::V4(_) => exit_address4,
            };
            if let Some(via) = via {
                routes.push(RoutePlan {
                    destination: *lan,
                    via,
                    dev: String::new(),
                    metric: BASE_METRIC,
                });
            }
        }
    }
    routes.sort_by(|a, b| {
        (a.destination.addr().is_ipv4(), a.destination)
            .cmp(&(b.destination.addr().is_ipv4(), b.destination))
    });
    routes
}
