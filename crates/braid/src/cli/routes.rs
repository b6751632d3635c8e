//! `braid routes --upstream`: what the upstream router needs to route the mesh's traffic back
//! to this exit (the design note's "route back"): every node's /64 via the exit's
//! upstream-facing address, and every /24 too when IPv4 is not masqueraded; or with
//! `--aggregate` the network's whole allocation (and IPv4 pool), which never changes as
//! nodes join or leave (docs/routing.md, "The upstream router").

use anyhow::{Context, Result, bail};
use braid_daemon::load;
use braid_plan::routes::upstream_return_routes;
use clap::ValueEnum;
use std::net::IpAddr;
use std::path::Path;

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// `ip route replace` commands, ready to run on a Linux upstream router.
    Ip,
    /// BIRD 2 static routes, for a `protocol static` block.
    Bird,
    /// A JSON array of {destination, via}.
    Json,
}

/// The aggregate set: the network's IPv6 allocation via `via6`, and its IPv4 pool via
/// `via4` when given (IPv4 not masqueraded). Empty without an address plan.
pub(crate) fn aggregate_routes(
    plan: Option<&braid_model::extensions::AddressPlanConfig>,
    via6: Option<IpAddr>,
    via4: Option<IpAddr>,
) -> Vec<braid_plan::routes::RoutePlan> {
    let Some(plan) = plan else { return Vec::new() };
    let route = |destination, via| braid_plan::routes::RoutePlan {
        destination,
        via,
        dev: String::new(),
        metric: 0,
    };
    let mut routes: Vec<_> = via6
        .map(|via| route(ipnet::IpNet::V6(plan.ipv6), via))
        .into_iter()
        .collect();
    if let (Some(via), Some(pool)) = (via4, plan.ipv4_pool) {
        routes.push(route(ipnet::IpNet::V4(pool), via));
    }
    routes
}

pub(crate) fn run(
    config_path: &Path,
    format: Format,
    via6: Option<IpAddr>,
    via4: Option<IpAddr>,
    aggregate: bool,
) -> Result<bool> {
    let loaded = match load::load(config_path) {
        Ok(loaded) => loaded,
        Err(problems) => {
            eprintln!("{problems}");
            return Ok(false);
        }
    };
    let Some(exit) = &loaded.config.exit else {
        bail!(
            "{}: exit: this node is not an exit; run `braid routes --upstream` with an exit's config",
            config_path.display()
        );
    };
    let (mut via6, mut via4) = (via6, via4);
    if via6.is_none() || (via4.is_none() && !exit.masquerade) {
        // The exit's addresses on its upstream interface, read from the system.
        let (found6, found4) =
            upstream_addresses(loaded.config.netns.as_deref(), &exit.upstream_interface)?;
        via6 = via6.or(found6);
        via4 = via4.or(found4);
    }
    if via6.is_none() {
        bail!(
            "no global IPv6 address on {} to route back to; give it with --via6",
            exit.upstream_interface
        );
    }
    // With masquerading, IPv4 comes back to the exit's own address: no routes needed.
    let via4 = if exit.masquerade { None } else { via4 };
    let routes = if aggregate {
        aggregate_routes(loaded.config.address_plan.as_ref(), via6, via4)
    } else {
        upstream_return_routes(&loaded.plan, via6, via4)
    };
    match format {
        Format::Ip => {
            for r in &routes {
                let family = if r.destination.addr().is_ipv6() {
                    "-6"
                } else {
                    "-4"
                };
                println!("ip {family} route replace {} via {}", r.destination, r.via);
            }
        }
        Format::Bird => {
            for r in &routes {
                println!("route {} via {};", r.destination, r.via);
            }
        }
        Format::Json => {
            let rows: Vec<_> = routes
                .iter()
                .map(|r| serde_json::json!({"destination": r.destination, "via": r.via}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
    }
    Ok(true)
}

fn upstream_addresses(
    netns: Option<&str>,
    interface: &str,
) -> Result<(Option<IpAddr>, Option<IpAddr>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let name = interface.to_string();
    let netns = netns.map(str::to_string);
    let addresses = runtime.block_on(async move {
        let nl = braid_system::Netlink::connect_in(netns.as_deref())?;
        match nl.link_by_name(&name).await? {
            Some(link) => nl.global_addresses(link.index).await.map(Some),
            None => Ok(None),
        }
    });
    let addresses: Option<Vec<IpAddr>> = addresses
        .map_err(|e: braid_system::SystemError| anyhow::anyhow!(e))
        .context("reading the upstream interface")?;
    let Some(addresses) = addresses else {
        bail!("the upstream interface {interface} does not exist here")
    };
    Ok((
        addresses.iter().copied().find(IpAddr::is_ipv6),
        addresses.iter().copied().find(IpAddr::is_ipv4),
    ))
}
