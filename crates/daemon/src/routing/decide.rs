//! Where a route is decided: which of the plan's routes go into the kernel now (links up,
//! exits alive, braid's liveness), the node's own prefixes and LANs to announce, the policy
//! rules, what an exit masquerades, and which routing daemon (babeld or BIRD) is wanted
//! with what configuration. Functions of the loaded inputs and the links' state; the
//! kernel is changed in `install`, the routing daemon in `supervisor`.

use crate::backend::LinkBackend;
use crate::reconciler::Reconciler;
use braid_model::extensions::RoutingMode;
use braid_system::routes::RouteSpec;
use std::collections::HashMap;
use std::net::IpAddr;

/// The node's /64 and /24 on its bridge, as routes babeld can redistribute.
pub(super) fn announce_routes(loaded: &crate::load::Loaded) -> Vec<braid_plan::routes::RoutePlan> {
    let (Some(plan), Some(a)) = (&loaded.config.address_plan, &loaded.plan.node.addresses) else {
        return Vec::new();
    };
    let mut out = vec![braid_plan::routes::RoutePlan {
        destination: ipnet::IpNet::V6(a.prefix6),
        via: IpAddr::V6(a.address6),
        dev: plan.bridge.clone(),
        metric: 10,
    }];
    if let (Some(subnet), Some(gw)) = (a.subnet4, a.gateway4) {
        out.push(braid_plan::routes::RoutePlan {
            destination: ipnet::IpNet::V4(subnet),
            via: IpAddr::V4(gw),
            dev: plan.bridge.clone(),
            metric: 10,
        });
    }
    out
}

/// What [`super::install`] brings the kernel in line with, decided from the daemon's state
/// at one moment: the inputs in use, the links that run, and the plan's routes that go in
/// now ([`routes_now`]). Owned, so that the installing runs without the daemon's lock.
#[derive(Clone)]
pub struct Wanted {
    /// The inputs in use (config, registry, plan).
    pub loaded: std::sync::Arc<crate::load::Loaded>,
    /// The names of the links the backend runs.
    pub running: Vec<String>,
    /// The plan's routes that go in now.
    pub routes: Vec<braid_plan::routes::RoutePlan>,
}

/// What routing installs now; `None` before the first successful reload. Reads every
/// link's state from the backend, which may block (the kernel backend asks the kernel over
/// netlink): call it off the async runtime.
pub fn wanted<B: LinkBackend>(r: &Reconciler<B>) -> Option<Wanted> {
    let loaded = r.loaded_shared()?;
    let routes = routes_now(r, &loaded);
    Some(Wanted {
        running: r.running().map(str::to_string).collect(),
        loaded,
        routes,
    })
}

/// The plan's routes that go in now: routes over links that are not up yet wait (others,
/// to the upstream, go in at once), default routes only over links that carry traffic (a
/// dead exit loses its default route and the next exit takes over), and no route over a
/// link braid's liveness declared dead.
fn routes_now<B: LinkBackend>(
    r: &Reconciler<B>,
    loaded: &crate::load::Loaded,
) -> Vec<braid_plan::routes::RoutePlan> {
    let now = std::time::SystemTime::now();
    let running: std::collections::HashSet<&str> = r.running().collect();
    let alive = |dev: &str| {
        loaded
            .plan
            .links
            .iter()
            .find(|l| l.name == dev)
            .is_none_or(|l| link_alive(l, r.backend().stats(dev).as_ref(), now))
    };
    let planned: std::collections::HashSet<&str> =
        loaded.plan.links.iter().map(|l| l.name.as_str()).collect();
    loaded
        .plan
        .routes
        .iter()
        .filter(|route| {
            running.contains(route.dev.as_str()) || !planned.contains(route.dev.as_str())
        })
        .filter(|route| route.destination.prefix_len() != 0 || alive(&route.dev))
        // braid's liveness: no route over a dead link (another route to the prefix, over
        // another link or exit, takes over; see `liveness`).
        .filter(|route| !r.backend().dead(&route.dev))
        .cloned()
        .collect()
}

/// Each of `routes` whose interface exists (in `index`, name to index) with the kernel
/// route that installs it, in table `table_of(interface)`.
pub(super) fn route_specs(
    routes: &[braid_plan::routes::RoutePlan],
    index: &HashMap<String, u32>,
    table_of: &dyn Fn(&str) -> u32,
) -> (Vec<braid_plan::routes::RoutePlan>, Vec<RouteSpec>) {
    routes
        .iter()
        .filter_map(|route| {
            let spec = RouteSpec {
                destination: route.destination,
                gateway: Some(route.via),
                oif: *index.get(&route.dev)?,
                metric: route.metric,
                table: table_of(&route.dev),
            };
            Some((route.clone(), spec))
        })
        .unzip()
}

/// The policy rules that send traffic to the mesh, and the mesh's own traffic, into
/// braid's table; none in routing mode `none` (braid routes nothing then).
pub(super) fn mesh_rules(
    loaded: &crate::load::Loaded,
) -> std::collections::BTreeSet<braid_system::rules::MeshRule> {
    let config = &loaded.config;
    if config.routing.mode == RoutingMode::None {
        return Default::default();
    }
    let sources: Vec<ipnet::IpNet> = config
        .address_plan
        .iter()
        .flat_map(|p| {
            std::iter::once(ipnet::IpNet::V6(p.ipv6)).chain(p.ipv4_pool.map(ipnet::IpNet::V4))
        })
        .chain(lan_subnets(&loaded.plan))
        .collect();
    let bridge = config.address_plan.as_ref().map(|p| p.bridge.as_str());
    braid_system::rules::desired(&sources, bridge)
}

/// Every LAN subnet of the mesh (the node's own and its peers', registry `lan_subnets`):
/// their traffic takes braid's table like the mesh's own sources, so a LAN behind a
/// router reaches the exit's default route, and an exit sends the LAN's traffic upstream.
pub(super) fn lan_subnets(plan: &braid_plan::Plan) -> impl Iterator<Item = ipnet::IpNet> + '_ {
    std::iter::once(&plan.node)
        .chain(&plan.peers)
        .flat_map(|n| n.lan_subnets.iter().copied())
}

/// What an exit masquerades, as an nftables set body: the IPv4 pool and every IPv4 LAN
/// subnet of the mesh; `None` when there is nothing (IPv4 off and no IPv4 LAN).
pub(super) fn masqueraded(pool: Option<ipnet::Ipv4Net>, plan: &braid_plan::Plan) -> Option<String> {
    let nets: Vec<String> = pool
        .into_iter()
        .map(ipnet::IpNet::V4)
        .chain(lan_subnets(plan).filter(|n| matches!(n, ipnet::IpNet::V4(_))))
        .map(|n| n.to_string())
        .collect();
    (!nets.is_empty()).then(|| format!("{{ {} }}", nets.join(", ")))
}

/// babeld's redistribute rules for the node's LAN subnets (pure).
fn lan_redistribute(lans: &[ipnet::IpNet]) -> Vec<String> {
    lans.iter()
        .map(|l| format!("ip {} eq {} allow", l.trunc(), l.prefix_len()))
        .collect()
}

/// The routing daemon the loaded inputs call for (babeld in mode `babel`, BIRD in mode
/// `bird`), with what it must be told; `None` in other modes.
pub fn wanted_engine<B: LinkBackend>(r: &Reconciler<B>) -> Option<super::supervisor::Wanted> {
    let loaded = r.loaded()?;
    let config = &loaded.config;
    let plan = config.address_plan.as_ref()?;
    // braid's link liveness drives the links' carrier (userspace links only: kernel
    // WireGuard has none); the routing daemon is set up for it (see `liveness`).
    let liveness = config.routing.liveness().is_some() && r.backend().name() == "userspace";
    match config.routing.mode {
        RoutingMode::Babel => Some(babel_wanted(r, loaded, plan, liveness)),
        RoutingMode::Bird => bird_wanted(loaded, plan, liveness, rxcosts(r)),
        _ => None,
    }
}

/// The running links whose routing cost braid raised (lossy links; see `cost`).
fn rxcosts<B: LinkBackend>(r: &Reconciler<B>) -> std::collections::BTreeMap<String, u16> {
    r.routing()
        .engine()
        .map(|e| e.costs().rxcosts())
        .unwrap_or_default()
}

/// babeld as braid wants it: the node's prefixes and LANs redistributed (and on an exit
/// the default routes), its links, and their parameters.
fn babel_wanted<B: LinkBackend>(
    r: &Reconciler<B>,
    loaded: &crate::load::Loaded,
    plan: &braid_model::extensions::AddressPlanConfig,
    liveness: bool,
) -> super::supervisor::Wanted {
    let config = &loaded.config;
    let dir = engine_dir(config, "babeld");
    let mut redistribute: Vec<String> = announce_routes(loaded)
        .iter()
        .map(|r| {
            format!(
                "ip {} eq {} allow",
                r.destination.trunc(),
                r.destination.prefix_len()
            )
        })
        .collect();
    redistribute.extend(lan_redistribute(&loaded.plan.node.lan_subnets));
    if config.exit.is_some() {
        // An exit announces the default route, IPv6 source-specific from the
        // network's allocation (RAIT's slides), with its preference as the metric.
        let metric = loaded.plan.node.exit_preference.unwrap_or(0).min(0xfffe);
        // braid's own default routes upstream only (`proto 98` is added by
        // config_text), not whatever else holds a default route.
        redistribute.push(format!(
            "ip ::/0 eq 0 metric {metric} src-prefix {}",
            plan.ipv6
        ));
        redistribute.push(format!("ip 0.0.0.0/0 eq 0 metric {metric}"));
    }
    let files = super::babel::Files::in_dir(&dir);
    let link_parameters =
        super::babel::interface_parameters(config.routing.hello_interval, liveness);
    super::supervisor::Wanted::Babel {
        config: super::babel::config_text(
            &files.ctl,
            &plan.bridge,
            config.routing.hello_interval,
            &link_parameters,
            liveness,
            &redistribute,
        ),
        dir,
        netns: config.netns.clone(),
        link_parameters,
        links: r.running().map(str::to_string).collect(),
        rxcosts: rxcosts(r),
    }
}

/// BIRD as braid wants it; `None` without the node's addresses.
fn bird_wanted(
    loaded: &crate::load::Loaded,
    plan: &braid_model::extensions::AddressPlanConfig,
    liveness: bool,
    rxcosts: std::collections::BTreeMap<String, u16>,
) -> Option<super::supervisor::Wanted> {
    let config = &loaded.config;
    let a = loaded.plan.node.addresses.as_ref()?;
    let router_id = a
        .gateway4
        .unwrap_or_else(|| std::net::Ipv4Addr::from((a.index as u32).max(1)));
    let inputs = super::bird::BirdInputs {
        router_id,
        bridge: plan.bridge.clone(),
        patterns: config
            .transports
            .iter()
            .map(|t| format!("{}*", t.prefix))
            .collect(),
        hello_interval: config.routing.hello_interval,
        prefix6: Some(a.prefix6.to_string()),
        subnet4: a.subnet4.map(|s| s.to_string()),
        exit_gateway6: config.exit.as_ref().and_then(|e| e.gateway6),
        exit_gateway4: config.exit.as_ref().and_then(|e| e.gateway4),
        exit_metric: loaded.plan.node.exit_preference.unwrap_or(0),
        liveness,
        rxcosts,
    };
    Some(super::supervisor::Wanted::Bird {
        dir: engine_dir(config, "bird"),
        netns: config.netns.clone(),
        inputs,
    })
}

/// The directory of a routing daemon's files: `<control socket dir>/<name>`.
pub fn engine_dir(config: &braid_model::Config, name: &str) -> std::path::PathBuf {
    std::path::Path::new(&config.control_socket)
        .parent()
        .unwrap_or(std::path::Path::new("/run/braid"))
        .join(name)
}

/// Whether a link carries traffic now: its state is `up` (see `status::link_state`).
pub fn link_alive(
    link: &braid_plan::LinkPlan,
    stats: Option<&crate::backend::LinkStats>,
    now: std::time::SystemTime,
) -> bool {
    crate::status::link_state(stats, link.keepalive, now) == "up"
}

#[cfg(test)]
mod lan_tests {
    use super::*;

    fn node(lans: &[&str]) -> braid_plan::NodePlan {
        braid_plan::NodePlan {
            public_key: braid_model::PublicKey([1; 32]),
            name: None,
            link_local6: "fe80::1".parse().unwrap(),
            addresses: None,
            exit_preference: None,
            lan_subnets: lans.iter().map(|l| l.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn an_exit_masquerades_the_pool_and_every_ipv4_lan_of_the_mesh() {
        let plan = braid_plan::Plan {
            node: node(&[]),
            peers: vec![node(&["192.0.2.0/24", "2001:db8:77::/48"]), node(&[])],
            links: Vec::new(),
            routes: Vec::new(),
        };
        assert_eq!(
            masqueraded(Some("10.0.0.0/8".parse().unwrap()), &plan).as_deref(),
            Some("{ 10.0.0.0/8, 192.0.2.0/24 }")
        );
        assert_eq!(
            masqueraded(None, &plan).as_deref(),
            Some("{ 192.0.2.0/24 }")
        );
        let plain = braid_plan::Plan {
            peers: vec![node(&["2001:db8:77::/48"])],
            ..plan
        };
        assert_eq!(masqueraded(None, &plain), None);
        assert_eq!(
            lan_subnets(&plain).count(),
            1,
            "IPv6 LANs take braid's table too"
        );
    }

    #[test]
    fn babeld_redistributes_exactly_the_nodes_lans() {
        let lans: Vec<ipnet::IpNet> = vec![
            "192.0.2.0/24".parse().unwrap(),
            "2001:db8:77::/48".parse().unwrap(),
        ];
        assert_eq!(
            lan_redistribute(&lans),
            vec![
                "ip 192.0.2.0/24 eq 24 allow",
                "ip 2001:db8:77::/48 eq 48 allow"
            ]
        );
    }
}
