//! The node's own network and braid's routes: with an address plan, the node's bridge for
//! its workloads (holding the /64's ::1 and the /24's .254) and forwarding; in routing mode
//! `static`, the plan's routes to every peer's prefixes and toward the exit, reconciled on
//! every reload (routes tagged `proto 98`).

use crate::backend::LinkBackend;
use crate::reconciler::Reconciler;
use braid_model::extensions::RoutingMode;
use braid_system::routes::RouteSpec;
use braid_system::{Netlink, SystemError};
use std::collections::HashMap;
use std::net::IpAddr;

/// The names braid owns besides its links (kept in the active interface group).
pub fn extra_interfaces<B: LinkBackend>(r: &Reconciler<B>) -> Vec<String> {
    r.loaded()
        .and_then(|l| l.config.address_plan.as_ref())
        .map(|p| vec![p.bridge.clone()])
        .unwrap_or_default()
}

fn set_forwarding(netns: Option<&str>) -> Result<(), SystemError> {
    let write = || -> std::io::Result<()> {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
        std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1")
    };
    let result = match netns {
        None => write(),
        Some(ns) => braid_system::netns::run_in(ns, write)?,
    };
    result.map_err(|source| SystemError::Netns {
        name: netns.unwrap_or("(current)").to_string(),
        source,
    })
}

/// Brings the node network and the routes in line with the plan. Returns the routes
/// (added, removed).
/// The routes now installed, and how many a call added and removed.
#[derive(Debug, Default)]
pub struct Outcome {
    pub installed: Vec<braid_plan::routes::RoutePlan>,
    pub added: usize,
    pub removed: usize,
}

pub async fn apply<B: LinkBackend>(r: &Reconciler<B>) -> Result<Outcome, SystemError> {
    let Some(loaded) = r.loaded() else {
        return Ok(Outcome::default());
    };
    let config = &loaded.config;
    let nl = Netlink::connect_in(config.netns.as_deref())?;
    let vrf = crate::vrf::ensure(&nl, loaded).await?;
    crate::vrf::enslave_links(&nl, loaded, r.running(), vrf).await?;
    // Routes over the overlay (links and bridge) go into the VRF's table.
    let mut overlay: std::collections::HashSet<&str> = r.running().collect();
    if let (Some(plan), Some(addresses)) = (&config.address_plan, &loaded.plan.node.addresses) {
        let bridge = nl.ensure_bridge(&plan.bridge, config.active_group).await?;
        nl.set_controller(&plan.bridge, vrf.map(|v| v.index))
            .await?;
        overlay.insert(plan.bridge.as_str());
        nl.add_address(bridge, IpAddr::V6(addresses.address6), 64)
            .await?;
        if let Some(gw) = addresses.gateway4 {
            nl.add_address(bridge, IpAddr::V4(gw), 24).await?;
        }
        if let Some(vrf) = vrf {
            // Linux picks the source of what the node itself sends into a VRF from the
            // outgoing link and the VRF device first; with only a link-local address on
            // the link, IPv6 would leave from fe80::. The node's addresses on the VRF
            // device make its own traffic leave from its overlay address.
            nl.add_address(vrf.index, IpAddr::V6(addresses.address6), 128)
                .await?;
            if let Some(gw) = addresses.gateway4 {
                nl.add_address(vrf.index, IpAddr::V4(gw), 32).await?;
            }
        }
    }
    if config.routing.mode != RoutingMode::None {
        set_forwarding(config.netns.as_deref())?;
    }
    let index: HashMap<String, u32> = nl
        .links()
        .await?
        .into_iter()
        .map(|l| (l.name, l.index))
        .collect();
    let table_of = |dev: &str| match vrf {
        Some(v) if overlay.contains(dev) => v.table,
        _ => braid_system::routes::MAIN_TABLE,
    };
    let now = std::time::SystemTime::now();
    let running: std::collections::HashSet<&str> = r.running().collect();
    // Default routes only go over links that carry traffic now, so that a dead exit loses
    // its default route and the next exit takes over.
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
    let (installed, desired): (Vec<_>, Vec<RouteSpec>) = loaded
        .plan
        .routes
        .iter()
        // Routes over links that are not up yet wait; others (the upstream) go in at once.
        .filter(|route| {
            running.contains(route.dev.as_str()) || !planned.contains(route.dev.as_str())
        })
        .filter(|route| route.destination.prefix_len() != 0 || alive(&route.dev))
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
        .unzip();
    let mut desired = desired;
    let mut installed = installed;
    if matches!(config.routing.mode, RoutingMode::Babel | RoutingMode::Bird) {
        // babeld redistributes the node's own prefixes from these routes (proto 98).
        for route in announce_routes(loaded) {
            if let Some(&oif) = index.get(&route.dev) {
                desired.push(RouteSpec {
                    destination: route.destination,
                    gateway: None,
                    oif,
                    metric: route.metric,
                    table: table_of(&route.dev),
                });
                installed.push(route);
            }
        }
    }
    let (added, removed) = nl.sync_routes(&desired).await?;
    let masquerade = match (&config.exit, &config.address_plan) {
        (Some(exit), Some(plan)) if exit.masquerade && config.routing.mode != RoutingMode::None => {
            plan.ipv4_pool
                .map(|pool| (exit.upstream_interface.clone(), pool))
        }
        _ => None,
    };
    match masquerade {
        Some((upstream, pool)) => nat(
            config.netns.as_deref(),
            Some(&format!(
                "table ip {NAT_TABLE} {{\n chain postrouting {{\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname \"{upstream}\" ip saddr {pool} masquerade\n }}\n}}\n"
            )),
        )?,
        None if config.exit.is_some() => nat(config.netns.as_deref(), None)?,
        None => {}
    }
    Ok(Outcome {
        installed,
        added,
        removed,
    })
}

/// braid's nftables table on an exit: IPv4 from the pool is masqueraded to the upstream.
pub const NAT_TABLE: &str = "braid_nat";

/// Replaces braid's NAT table with `rules` (a whole `table ...` block), or removes it.
fn nat(netns: Option<&str>, rules: Option<&str>) -> Result<(), SystemError> {
    // "add" then "delete" makes the delete succeed whether or not the table existed.
    let script = format!(
        "table ip {NAT_TABLE}\ndelete table ip {NAT_TABLE}\n{}",
        rules.unwrap_or("")
    );
    let run = move || -> std::io::Result<()> {
        use std::io::Write as _;
        let mut child = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "nft: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    };
    // A child started from a thread inside the namespace runs in that namespace.
    let result = match netns {
        None => run(),
        Some(ns) => braid_system::netns::run_in(ns, run)?,
    };
    result.map_err(|source| SystemError::Netns {
        name: format!(
            "{} (nftables table {NAT_TABLE})",
            netns.unwrap_or("current")
        ),
        source,
    })
}

/// Removes what [`apply`] set up outside braid's interfaces: its routes (those on braid's
/// links go with the links; the upstream default routes do not) and the NAT table.
pub async fn teardown(config: &braid_model::Config) -> Result<(), SystemError> {
    // Path policy rules live in the underlay: this namespace.
    crate::uplinks::remove_rules().await?;
    let nl = Netlink::connect_in(config.netns.as_deref())?;
    nl.sync_routes(&[]).await?;
    if config.exit.is_some() {
        nat(config.netns.as_deref(), None)?;
    }
    Ok(())
}

/// The node's /64 and /24 on its bridge, as routes babeld can redistribute.
fn announce_routes(loaded: &crate::load::Loaded) -> Vec<braid_plan::routes::RoutePlan> {
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

/// In routing mode `babel`: starts babeld if it is not running (again, if it died) and
/// makes its interfaces braid's running links. In other modes: stops it.
pub fn supervise_babel<B: LinkBackend>(
    r: &mut Reconciler<B>,
) -> Result<(), crate::babel::BabelError> {
    // What babeld needs, copied out of the loaded inputs.
    let wanted = r
        .loaded()
        .filter(|l| l.config.routing.mode == RoutingMode::Babel)
        .and_then(|loaded| {
            let config = &loaded.config;
            let plan = config.address_plan.as_ref()?;
            let dir = std::path::Path::new(&config.control_socket)
                .parent()
                .unwrap_or(std::path::Path::new("/run/braid"))
                .join("babeld");
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
            if config.exit.is_some() {
                // An exit announces the default route, IPv6 source-specific from the
                // network's allocation (RAIT's slides), with its preference as the metric.
                let metric = loaded.plan.node.exit_preference.unwrap_or(0).min(0xfffe);
                redistribute.push(format!(
                    "ip ::/0 eq 0 metric {metric} src-prefix {}",
                    plan.ipv6
                ));
                redistribute.push(format!("ip 0.0.0.0/0 eq 0 metric {metric}"));
            }
            Some((
                dir,
                config.netns.clone(),
                plan.bridge.clone(),
                config.routing.hello_interval,
                redistribute,
            ))
        });
    let Some((dir, netns, bridge, hello_interval, redistribute)) = wanted else {
        if let Some(babel) = r.babel.take() {
            babel.stop();
        }
        return Ok(());
    };
    if r.babel.as_mut().is_some_and(|b| !b.alive()) {
        tracing::warn!("babeld exited; starting it again");
        r.babel = None;
    }
    if r.babel.is_none() {
        r.babel = Some(crate::babel::Babeld::start(
            &dir,
            netns.as_deref(),
            &bridge,
            hello_interval,
            &redistribute,
        )?);
    }
    let links: std::collections::BTreeSet<String> = r.running().map(str::to_string).collect();
    match r.babel.as_mut() {
        Some(babel) => babel.sync(&links),
        None => Ok(()),
    }
}

/// In routing mode `bird`: starts BIRD if it is not running (again, if it died) and reloads
/// it when its configuration changes. In other modes: stops it.
pub fn supervise_bird<B: LinkBackend>(r: &mut Reconciler<B>) -> Result<(), crate::bird::BirdError> {
    let wanted = r
        .loaded()
        .filter(|l| l.config.routing.mode == RoutingMode::Bird)
        .and_then(|loaded| {
            let config = &loaded.config;
            let plan = config.address_plan.as_ref()?;
            let a = loaded.plan.node.addresses.as_ref()?;
            let dir = std::path::Path::new(&config.control_socket)
                .parent()
                .unwrap_or(std::path::Path::new("/run/braid"))
                .join("bird");
            let router_id = a
                .gateway4
                .unwrap_or_else(|| std::net::Ipv4Addr::from((a.index as u32).max(1)));
            let inputs = crate::bird::BirdInputs {
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
            };
            Some((dir, config.netns.clone(), inputs))
        });
    let Some((dir, netns, inputs)) = wanted else {
        if let Some(bird) = r.bird.take() {
            bird.stop();
        }
        return Ok(());
    };
    if r.bird.as_mut().is_some_and(|b| !b.alive()) {
        tracing::warn!("bird exited; starting it again");
        r.bird = None;
    }
    match r.bird.as_mut() {
        Some(bird) => bird.update(inputs),
        None => {
            r.bird = Some(crate::bird::Bird::start(&dir, netns.as_deref(), inputs)?);
            Ok(())
        }
    }
}

/// Whether a link carries traffic now: its state is `up` (see `status::link_state`).
pub fn link_alive(
    link: &braid_plan::LinkPlan,
    stats: Option<&crate::backend::LinkStats>,
    now: std::time::SystemTime,
) -> bool {
    crate::status::link_state(stats, link.keepalive, now) == "up"
}
