//! Routes: what the kernel sends over each link and where each family's default route
//! leaves (the kernel's view), and the routes braid installed itself with the routing's
//! health.

use super::family::{int, labels, series, single};
use crate::status::Status;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Each link's routes in the kernel and the exit in use per family.
pub(super) fn register_kernel(registry: &mut Registry, status: &Status) {
    series::<Gauge>(
        registry,
        "link_routes",
        "Routes the kernel sends over the link (0: it carries none)",
        status
            .links
            .iter()
            .filter_map(|l| Some((super::link::link_labels(l), int(l.routes?)))),
    );
    let exits = status.routing.exits.iter().flat_map(|e| {
        [("ip4", &e.ip4), ("ip6", &e.ip6)]
            .into_iter()
            .filter_map(|(family, exit)| {
                let exit = exit.as_ref()?;
                let l = labels(&[
                    ("family", family),
                    ("dev", &exit.dev),
                    ("link", exit.link.as_deref().unwrap_or("")),
                    ("peer", exit.peer.as_deref().unwrap_or("")),
                ]);
                Some((l, 1))
            })
    });
    series::<Gauge>(
        registry,
        "exit_info",
        "Where each family's default route leaves: over a link to an exit node, or the node's own uplink (always 1)",
        exits,
    );
}

/// The routes braid installed itself, by family, and whether routing is healthy.
pub(super) fn register_own(registry: &mut Registry, status: &Status) {
    let routes = &status.routing.routes;
    let by_family = [("ip4", false), ("ip6", true)].map(|(family, v6)| {
        let n = routes
            .iter()
            .filter(|r| r.destination.addr().is_ipv6() == v6)
            .count();
        (labels(&[("family", family)]), int(n))
    });
    series::<Gauge>(
        registry,
        "routes",
        "Routes braid installed itself (routing mode static), by family",
        by_family,
    );
    single::<Gauge>(
        registry,
        "routing_healthy",
        "1 when the node network and braid's routes were last set up without error",
        i64::from(status.routing.healthy),
    );
}
