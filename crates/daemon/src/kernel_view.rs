//! What the kernel does with braid's links, for the status document: how many routes
//! leave over each link (is it carrying routes, and at what metric) and where each
//! family's default route leaves (the exit in use). Read from the kernel's routing tables
//! over one long-lived netlink handle, so it shows what babeld, BIRD or braid's static
//! routes actually installed, not what was planned.

use crate::status::{Exit, Exits, Status};
use braid_system::Netlink;
use braid_system::routes::{KernelRoute, MAIN_TABLE};
use std::collections::HashMap;
use std::sync::Mutex;

/// The kernel's table of local and broadcast addresses: not routes to anywhere.
const LOCAL_TABLE: u32 = 255;
/// `proto kernel`: the prefix of an address on the interface, not a route braid or a
/// routing daemon chose.
const RTPROT_KERNEL: u8 = 2;

/// The status answers without the kernel's view after this long.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Routes over one link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Carried {
    pub(crate) routes: usize,
    pub(crate) best_metric: Option<u32>,
}

/// The kernel's view: routes per link (by interface name) and the exits.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct KernelView {
    pub(crate) carried: HashMap<String, Carried>,
    pub(crate) exits: Exits,
    /// Every route over one of the links: (destination, metric, interface).
    over_links: Vec<(ipnet::IpNet, u32, String)>,
}

impl KernelView {
    /// The link the kernel's most specific route to `address` over a link leaves by
    /// (lowest metric among equally specific ones).
    pub(crate) fn link_to(&self, address: std::net::IpAddr) -> Option<&str> {
        self.over_links
            .iter()
            .filter(|(dst, _, _)| dst.contains(&address))
            .min_by_key(|(dst, metric, _)| (std::cmp::Reverse(dst.prefix_len()), *metric))
            .map(|(_, _, dev)| dev.as_str())
    }
}

/// Builds the view from a route listing and the interfaces' names by index. `links` are
/// the node's links as (interface, peer): a default route over one of them is that peer's
/// exit. Each family's exit is the default route with the lowest metric over a link (babeld
/// installs IPv6 defaults source-specific, `from` the mesh's prefix), else the main
/// table's (the node's own uplink).
pub(crate) fn view_of(
    routes: &[KernelRoute],
    names: &HashMap<u32, String>,
    links: &[(String, String)],
) -> KernelView {
    let peer_of = |dev: &str| links.iter().find(|(l, _)| l == dev).map(|(_, p)| p.clone());
    let mut view = KernelView::default();
    for r in routes {
        if r.table == LOCAL_TABLE || r.protocol == RTPROT_KERNEL {
            continue;
        }
        let Some(dev) = names.get(&r.oif) else {
            continue;
        };
        if peer_of(dev).is_some() {
            view.over_links.push((r.destination, r.metric, dev.clone()));
            let c = view.carried.entry(dev.clone()).or_default();
            c.routes += 1;
            c.best_metric = Some(c.best_metric.map_or(r.metric, |m| m.min(r.metric)));
        }
    }
    let exit = |v6: bool| {
        let defaults = routes.iter().filter(|r| {
            r.destination.prefix_len() == 0
                && r.destination.addr().is_ipv6() == v6
                && r.table != LOCAL_TABLE
        });
        let over_link = defaults
            .clone()
            .filter(|r| names.get(&r.oif).is_some_and(|d| peer_of(d).is_some()))
            .min_by_key(|r| r.metric);
        let chosen = over_link.or_else(|| {
            defaults
                .filter(|r| r.table == MAIN_TABLE)
                .min_by_key(|r| r.metric)
        })?;
        let dev = names.get(&chosen.oif).cloned().unwrap_or_default();
        Some(Exit {
            peer: peer_of(&dev),
            link: peer_of(&dev).map(|_| dev.clone()),
            dev,
            via: chosen.gateway,
            from: chosen.source.map(|s| s.to_string()),
            table: chosen.table,
            metric: chosen.metric,
        })
    };
    view.exits = Exits {
        ip4: exit(false),
        ip6: exit(true),
    };
    view
}

/// The long-lived handle, with the namespace it was opened in.
static HANDLE: Mutex<Option<(Option<String>, Netlink)>> = Mutex::new(None);

fn handle(netns: Option<&str>) -> Result<Netlink, String> {
    let mut held = HANDLE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((ns, nl)) = held.as_ref()
        && ns.as_deref() == netns
    {
        return Ok(nl.clone());
    }
    let nl = Netlink::connect_in(netns).map_err(|e| e.to_string())?;
    *held = Some((netns.map(str::to_string), nl.clone()));
    Ok(nl)
}

/// Reads the kernel's routes and interfaces in `netns` (the overlay's namespace, or this
/// one) and builds the view for `links` (interface, peer).
pub(crate) async fn read(
    netns: Option<&str>,
    links: &[(String, String)],
) -> Result<KernelView, String> {
    let nl = handle(netns)?;
    let listing = async {
        let routes = nl.routes().await?;
        let names = nl
            .links()
            .await?
            .into_iter()
            .map(|l| (l.index, l.name))
            .collect::<HashMap<_, _>>();
        Ok::<_, braid_system::SystemError>((routes, names))
    };
    match listing.await {
        Ok((routes, names)) => Ok(view_of(&routes, &names, links)),
        Err(e) => {
            // A broken connection is opened again on the next request.
            *HANDLE.lock().unwrap_or_else(|p| p.into_inner()) = None;
            Err(e.to_string())
        }
    }
}

/// Fills the document's kernel view: each link's routes and metric, and the exits. When
/// the kernel cannot be read the fields stay null and `routing.kernel_error` says why.
pub async fn fill(mut status: Status, netns: Option<String>) -> Status {
    let links: Vec<(String, String)> = status
        .links
        .iter()
        .map(|l| (l.name.clone(), l.peer.clone()))
        .collect();
    let read = tokio::time::timeout(READ_TIMEOUT, read(netns.as_deref(), &links));
    match read
        .await
        .unwrap_or_else(|_| Err("the kernel did not list its routes within 2 s".into()))
    {
        Ok(view) => {
            for l in &mut status.links {
                let c = view.carried.get(&l.name).copied().unwrap_or_default();
                l.routes = Some(c.routes);
                l.route_metric = c.best_metric;
            }
            for n in &mut status.mesh {
                let Some(dev) = n.address6.and_then(|a| view.link_to(a.into())) else {
                    continue;
                };
                n.via = links.iter().find(|(l, _)| l == dev).map(|(_, p)| p.clone());
                n.via_link = Some(dev.to_string());
            }
            status.routing.exits = Some(view.exits);
        }
        Err(e) => status.routing.kernel_error = Some(e),
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, oif: u32, table: u32, metric: u32, protocol: u8) -> KernelRoute {
        KernelRoute {
            destination: dst.parse().unwrap(),
            source: None,
            protocol,
            table,
            metric,
            gateway: None,
            oif,
        }
    }

    #[test]
    fn routes_count_per_link_and_the_exit_is_the_default_over_a_link() {
        let names = HashMap::from([
            (1, "eth0".to_string()),
            (5, "brd4x40004".to_string()),
            (6, "brd4x40006".to_string()),
        ]);
        let links = vec![
            ("brd4x40004".to_string(), "n2".to_string()),
            ("brd4x40006".to_string(), "n3".to_string()),
        ];
        let routes = vec![
            route("10.0.2.0/24", 5, 98, 300, 42),
            route("10.0.3.0/24", 5, 98, 200, 42),
            route("169.254.0.0/16", 5, MAIN_TABLE, 0, RTPROT_KERNEL),
            route("10.0.2.1/32", 6, LOCAL_TABLE, 0, 2),
            route("0.0.0.0/0", 1, MAIN_TABLE, 0, 4),
            route("0.0.0.0/0", 5, 98, 512, 42),
            route("::/0", 1, MAIN_TABLE, 1024, 4),
        ];
        let mut from_mesh = route("::/0", 6, 98, 0, 42);
        from_mesh.source = Some("2001:db8:bd00::/48".parse().unwrap());
        let routes = [routes, vec![from_mesh]].concat();
        let view = view_of(&routes, &names, &links);
        assert_eq!(
            view.carried.get("brd4x40004"),
            Some(&Carried {
                routes: 3,
                best_metric: Some(200)
            })
        );
        // The local table's entry does not count; the source-specific default does.
        assert_eq!(view.carried.get("brd4x40006").map(|c| c.routes), Some(1));
        let ip4 = view.exits.ip4.clone().unwrap();
        assert_eq!(
            (ip4.dev.as_str(), ip4.peer.as_deref(), ip4.table),
            ("brd4x40004", Some("n2"), 98)
        );
        let ip6 = view.exits.ip6.clone().unwrap();
        assert_eq!(
            (ip6.dev.as_str(), ip6.peer.as_deref(), ip6.from.as_deref()),
            ("brd4x40006", Some("n3"), Some("2001:db8:bd00::/48"))
        );
        // A node's address: the most specific route over a link.
        assert_eq!(
            view.link_to("10.0.3.9".parse().unwrap()),
            Some("brd4x40004")
        );
        assert_eq!(
            view.link_to("2001:db8:bd00:3::1".parse().unwrap()),
            Some("brd4x40006")
        );
        assert_eq!(
            view.link_to("192.0.2.1".parse().unwrap()),
            Some("brd4x40004")
        );
        // Without routes over links, the main table's default: the node's own uplink.
        let own = view_of(&routes[4..7], &names, &links).exits;
        assert_eq!(
            own.ip6.map(|e| (e.dev, e.peer, e.link)),
            Some(("eth0".to_string(), None, None))
        );
    }
}
