//! Static routes (routing mode `static`, after the design note in shared/seeds/001): each
//! peer's /64 and /24 over the links to that peer, and the default route toward the exits,
//! the preferred exit first. Next hops are the peer's link-local IPv6 address and its IPv4
//! link address, which are the same on all of the peer's links.

use crate::links::LinkPlan;
use crate::{NodePlan, Plan};
use ipnet::IpNet;
use std::net::IpAddr;

/// Metric of the first route to a destination; further links and exits count up from it.
pub const BASE_METRIC: u32 = 1024;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoutePlan {
    pub destination: IpNet,
    pub via: IpAddr,
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
/// `plan.routes` to be empty (it computes them).
pub fn static_routes(plan: &Plan) -> Vec<RoutePlan> {
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
        }
    }
    if plan.node.exit_preference.is_none() {
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
