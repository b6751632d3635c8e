//! Where a route is installed. The node's own network and braid's routes: with an address plan, the node's bridge for
//! its workloads (holding the /64's ::1 and the /24's .254) and forwarding; in routing mode
//! `static`, the plan's routes to every peer's prefixes and toward the exit, reconciled on
//! every reload (routes tagged `proto 98`).
//!
//! Every route braid wants goes into braid's own table (`routes::MESH_TABLE`, or the VRF's
//! table for routes over the overlay with VRF isolation), never into the main table, and
//! policy rules (`braid_system::rules`) send the mesh's traffic there: the host's own
//! routes, its default route above all, stay as they are and in charge of the host's own
//! traffic. A route braid cannot install is an error in the log, the status and the health.

use super::decide::{Wanted, announce_routes, masqueraded, mesh_rules, route_specs, wanted};
use super::supervisor::stop_stale_engines;
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

/// Turns IPv4 and IPv6 forwarding on (sysctls, in the namespace's own `/proc/sys`: written
/// from a thread that entered it). Blocks: run it with `crate::off_runtime`.
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

/// What [`apply`] did: the routes now installed, how many it added and removed, and what
/// it could not do (routes it could not install or remove, the policy rules), one
/// sentence each.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The routes installed now (what the status document shows as `routing.routes`).
    pub installed: Vec<braid_plan::routes::RoutePlan>,
    /// How many routes this call added.
    pub added: usize,
    /// How many routes this call removed.
    pub removed: usize,
    /// What could not be done, one sentence each (routes, policy rules).
    pub failed: Vec<String>,
}

/// Brings the node network, braid's routes and its policy rules in line with the plan:
/// [`wanted`] then [`install`], in one call (`braid up`). Reads the links' state from the
/// backend, which may block (see [`wanted`]).
pub async fn apply<B: LinkBackend>(r: &Reconciler<B>) -> Result<Outcome, SystemError> {
    match wanted(r) {
        Some(wanted) => install(&wanted).await,
        None => Ok(Outcome::default()),
    }
}

/// Brings the node network, braid's routes and its policy rules in line with `wanted`
/// (decided from the daemon's state by [`wanted`]). Needs no access to that state: the
/// daemon runs it without its lock. What blocks (the sysctls, `nft`) runs on tokio's
/// blocking pool, the rest is asynchronous netlink.
pub async fn install(wanted: &Wanted) -> Result<Outcome, SystemError> {
    let loaded = &*wanted.loaded;
    let config = &loaded.config;
    let nl = Netlink::connect_in(config.netns.as_deref())?;
    let (vrf, overlay) = node_network(&nl, &wanted.running, loaded).await?;
    if config.routing.mode != RoutingMode::None {
        let netns = config.netns.clone();
        crate::off_runtime(move || set_forwarding(netns.as_deref())).await?;
    }
    let index: HashMap<String, u32> = nl
        .links()
        .await?
        .into_iter()
        .map(|l| (l.name, l.index))
        .collect();
    // Routes over the overlay (links and bridge) go into the VRF's table.
    let table_of = |dev: &str| match vrf {
        Some(v) if overlay.contains(dev) => v.table,
        _ => braid_system::routes::MESH_TABLE,
    };
    let (mut installed, mut desired) = route_specs(&wanted.routes, &index, &table_of);
    if config.routing.mode != RoutingMode::None {
        // The node's own prefixes in braid's table: the mesh's traffic is looked up there
        // first (the policy rules), so without them traffic for this node's workloads
        // would follow an exit's default route out again. babeld and BIRD also
        // redistribute them from these routes (proto 98).
        let own = announce_routes(loaded);
        add_local_routes(own, &index, &table_of, &mut installed, &mut desired);
    }
    if config.routing.mode == RoutingMode::Babel {
        // The node's LANs, on the interfaces that hold them, for babeld to redistribute.
        let lans = lan_announce_routes(&nl, &loaded.plan.node.lan_subnets, &index).await;
        add_local_routes(lans, &index, &table_of, &mut installed, &mut desired);
    }
    let tables: Vec<u32> = std::iter::once(braid_system::routes::MESH_TABLE)
        .chain(vrf.map(|v| v.table))
        .collect();
    let sync = nl.sync_routes(&desired, &tables).await?;
    let failed_specs: Vec<&RouteSpec> = sync.failed.iter().map(|(spec, _)| spec).collect();
    let installed: Vec<_> = installed
        .into_iter()
        .zip(&desired)
        .filter(|(_, spec)| !failed_specs.contains(spec))
        .map(|(route, _)| route)
        .collect();
    let mut failed: Vec<String> = sync.failed.iter().map(|(_, why)| why.clone()).collect();
    if let Err(e) = nl
        .sync_mesh_rules(braid_system::routes::MESH_TABLE, &mesh_rules(loaded))
        .await
    {
        failed.push(e.to_string());
    }
    apply_nat(loaded).await?;
    Ok(Outcome {
        installed,
        added: sync.added,
        removed: sync.removed,
        failed,
    })
}

/// The node network: braid's VRF (when the config isolates the overlay that way) with the
/// running links in it, and the node's bridge with its addresses. Returns the VRF and the
/// overlay's interfaces (the running links and the bridge), whose routes go into the VRF's
/// table.
async fn node_network<'a>(
    nl: &Netlink,
    running: &'a [String],
    loaded: &'a crate::load::Loaded,
) -> Result<
    (
        Option<braid_system::links::Vrf>,
        std::collections::HashSet<&'a str>,
    ),
    SystemError,
> {
    let config = &loaded.config;
    let vrf = crate::vrf::ensure(nl, loaded).await?;
    crate::vrf::enslave_links(nl, loaded, running.iter().map(String::as_str), vrf).await?;
    let mut overlay: std::collections::HashSet<&str> = running.iter().map(String::as_str).collect();
    let (Some(plan), Some(addresses)) = (&config.address_plan, &loaded.plan.node.addresses) else {
        return Ok((vrf, overlay));
    };
    let bridge = nl.ensure_bridge(&plan.bridge, config.active_group).await?;
    nl.set_controller(&plan.bridge, vrf.map(|v| v.index))
        .await?;
    overlay.insert(plan.bridge.as_str());
    nl.add_address(bridge, IpAddr::V6(addresses.address6), 64)
        .await?;
    if let Some(gw) = addresses.gateway4 {
        nl.add_address(bridge, IpAddr::V4(gw), 24).await?;
    }
    let present = nl.global_addresses(bridge).await?;
    for old in stale_bridge_addresses(&present, plan, addresses) {
        tracing::info!(bridge = %plan.bridge, address = %old, "removing the node's old address (it was renumbered)");
        nl.remove_address(bridge, old).await?;
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
    Ok((vrf, overlay))
}

/// Adds on-link routes (no gateway) for `routes` whose interface exists, to what
/// [`apply`] installs.
fn add_local_routes(
    routes: Vec<braid_plan::routes::RoutePlan>,
    index: &HashMap<String, u32>,
    table_of: &dyn Fn(&str) -> u32,
    installed: &mut Vec<braid_plan::routes::RoutePlan>,
    desired: &mut Vec<RouteSpec>,
) {
    for route in routes {
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

/// The addresses on the node's bridge (`present`) that braid put there for an earlier
/// index of this node: inside the address plan's allocation or IPv4 pool, but not the
/// node's address now. A renumbered node (its index changed) lost them: its old block's
/// connected routes would keep another node's new block from the mesh. Addresses outside
/// the plan (a LAN's, which the registry keeps outside it) are the operator's and stay.
fn stale_bridge_addresses(
    present: &[IpAddr],
    plan: &braid_model::extensions::AddressPlanConfig,
    now: &braid_plan::NodeAddresses,
) -> Vec<IpAddr> {
    present
        .iter()
        .copied()
        .filter(|ip| match ip {
            IpAddr::V6(v6) => plan.ipv6.contains(v6) && *v6 != now.address6,
            IpAddr::V4(v4) => {
                plan.ipv4_pool.is_some_and(|pool| pool.contains(v4)) && Some(*v4) != now.gateway4
            }
        })
        .collect()
}

/// An exit's NAT tables (see [`NAT_TABLE`]): set when it forwards the mesh upstream,
/// removed when it no longer does; nothing on other nodes.
async fn apply_nat(loaded: &crate::load::Loaded) -> Result<(), SystemError> {
    let config = &loaded.config;
    let rules = match (&config.exit, &config.address_plan) {
        (Some(exit), Some(plan)) if config.routing.mode != RoutingMode::None => {
            let mtu = config
                .transports
                .iter()
                .map(|t| t.mtu)
                .min()
                .unwrap_or(1420);
            let masquerade = exit
                .masquerade
                .then(|| masqueraded(plan.ipv4_pool, &loaded.plan))
                .flatten();
            let ipv6 = ipv6_sources(plan.ipv6, &loaded.plan);
            Some(exit_tables(
                &exit.upstream_interface,
                masquerade.as_deref(),
                &ipv6,
                mtu,
            ))
        }
        _ if config.exit.is_some() => None,
        _ => return Ok(()),
    };
    nat(config.netns.clone(), rules).await
}

/// The mesh's IPv6 sources an exit forwards upstream, as an nftables set body: the address
/// plan's allocation and every IPv6 LAN subnet of the mesh.
fn ipv6_sources(allocation: ipnet::Ipv6Net, plan: &braid_plan::Plan) -> String {
    let nets: Vec<String> = std::iter::once(ipnet::IpNet::V6(allocation))
        .chain(super::decide::lan_subnets(plan).filter(|n| matches!(n, ipnet::IpNet::V6(_))))
        .map(|n| n.trunc().to_string())
        .collect();
    format!("{{ {} }}", nets.join(", "))
}

/// An exit's nftables tables (pure), for `nft -f`: IPv4 from `masquerade` (a set body) is
/// masqueraded out of `upstream`; TCP SYNs of the mesh's IPv4 (`masquerade`) and IPv6
/// (`ipv6`) sources get their MSS clamped both ways to what fits a link of `mtu` bytes
/// (TCP and IPv4 headers 40 bytes, IPv6 60), as routers in front of tunnels do (RFC 4459,
/// section 3.2): a host on the internet then never sends the mesh a segment that does not
/// fit the link, even when the exit's ICMP "fragmentation needed" or "packet too big"
/// cannot reach it.
fn exit_tables(upstream: &str, masquerade: Option<&str>, ipv6: &str, mtu: u32) -> String {
    let clamp = |family: &str, sources: &str, headers: u32| {
        let mss = mtu.saturating_sub(headers);
        format!(
            " chain forward {{\n  type filter hook forward priority mangle; policy accept;\n  {family} daddr {sources} tcp flags syn tcp option maxseg size set rt mtu\n  {family} saddr {sources} tcp flags syn tcp option maxseg size > {mss} tcp option maxseg size set {mss}\n }}\n"
        )
    };
    let ipv4 = masquerade.map(|pool| {
        format!(
            "table ip {NAT_TABLE} {{\n chain postrouting {{\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname \"{upstream}\" ip saddr {pool} masquerade\n }}\n{}}}\n",
            clamp("ip", pool, 40)
        )
    });
    let ipv6 = format!("table ip6 {NAT_TABLE} {{\n{}}}\n", clamp("ip6", ipv6, 60));
    ipv4.unwrap_or_default() + &ipv6
}

/// braid's nftables tables on an exit (families `ip` and `ip6`): IPv4 from the pool and the
/// mesh's IPv4 LAN subnets is masqueraded to the upstream, and TCP connections of the
/// mesh's IPv4 and IPv6 sources are told the links' MTU
/// (the MSS of SYNs both ways clamped, as routers in front of tunnels do): a host on the
/// internet then never sends the masqueraded LAN a segment that does not fit the link,
/// even when the exit's ICMP "fragmentation needed" cannot reach it (measured: a download
/// to a LAN host stalled at 0 bit/s in the lab without it).
pub const NAT_TABLE: &str = "braid_nat";

/// Replaces braid's NAT table with `rules` (a whole `table ...` block), or removes it: one
/// `nft -f -` run in the namespace, waited for on the blocking pool (`crate::off_runtime`).
async fn nat(netns: Option<String>, rules: Option<String>) -> Result<(), SystemError> {
    crate::off_runtime(move || nft_replace(netns.as_deref(), rules.as_deref())).await
}

/// [`nat`]'s work, blocking until `nft` exits.
fn nft_replace(netns: Option<&str>, rules: Option<&str>) -> Result<(), SystemError> {
    // "add" then "delete" makes the delete succeed whether or not the table existed.
    let script = format!(
        "table ip {NAT_TABLE}\ndelete table ip {NAT_TABLE}\ntable ip6 {NAT_TABLE}\ndelete table ip6 {NAT_TABLE}\n{}",
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

/// Removes what [`apply`] set up outside braid's interfaces: a routing daemon an earlier
/// braid left, its routes (those on braid's links go with the links; the upstream default
/// routes do not) and the NAT table.
pub async fn teardown(config: &braid_model::Config) -> Result<(), SystemError> {
    // A routing daemon left by a braid that crashed (the running one is stopped already).
    // Stopping it waits (up to `supervisor::STOP_GRACE` and a second more): off the runtime.
    let stale = config.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || stop_stale_engines(&stale)).await {
        tracing::warn!("looking for routing daemons an earlier braid left: {e}");
    }
    // Path policy rules live in the underlay: this namespace.
    crate::uplinks::remove_rules().await?;
    let nl = Netlink::connect_in(config.netns.as_deref())?;
    // braid's tables: its own, and its VRF's (routes there also go with the VRF).
    let mut tables = vec![braid_system::routes::MESH_TABLE];
    if !config.vrf.is_empty()
        && let Some(table) = nl
            .link_by_name(&config.vrf)
            .await?
            .and_then(|l| l.vrf_table)
    {
        tables.push(table);
    }
    // Every step is tried; the first error is returned.
    let mut first: Option<SystemError> = None;
    match nl.sync_routes(&[], &tables).await {
        Ok(sync) => {
            if let Some((_, why)) = sync.failed.into_iter().next() {
                first.get_or_insert(SystemError::State(why));
            }
        }
        Err(e) => {
            first.get_or_insert(e);
        }
    }
    if let Err(e) = nl
        .sync_mesh_rules(braid_system::routes::MESH_TABLE, &Default::default())
        .await
    {
        first.get_or_insert(e);
    }
    if config.exit.is_some()
        && let Err(e) = nat(config.netns.clone(), None).await
    {
        first.get_or_insert(e);
    }
    first.map_or(Ok(()), Err)
}

/// Deletes braid's interface groups except the interfaces named in `keep` (the node's
/// bridge on a restart), which stay in the active group for the next start to adopt and
/// for `braid down` to remove. With `keep` empty: both groups, as `run::delete_groups`.
pub async fn delete_groups_keeping(
    netns: Option<&str>,
    active: u32,
    stale: u32,
    keep: &[String],
) -> Result<(), SystemError> {
    let nl = Netlink::connect_in(netns)?;
    if keep.is_empty() {
        nl.delete_group(active).await?;
        return nl.delete_group(stale).await;
    }
    for link in nl.links_in_group(active).await? {
        if !keep.contains(&link.name) {
            nl.set_group(link.index, stale).await?;
        }
    }
    nl.delete_group(stale).await
}

/// The node's own LAN subnets (registry `lan_subnets`) as routes on the interfaces that
/// hold an address in them, for babeld to redistribute like the node's block; a LAN with
/// no such interface (not up yet) is announced once it has one.
async fn lan_announce_routes(
    nl: &Netlink,
    lans: &[ipnet::IpNet],
    index: &HashMap<String, u32>,
) -> Vec<braid_plan::routes::RoutePlan> {
    let mut out = Vec::new();
    if lans.is_empty() {
        return out;
    }
    for (name, &i) in index {
        let Ok(addresses) = nl.addresses(i).await else {
            continue;
        };
        for lan in lans
            .iter()
            .filter(|l| addresses.iter().any(|a| l.contains(a)))
        {
            out.push(braid_plan::routes::RoutePlan {
                destination: *lan,
                via: lan.addr(),
                dev: name.clone(),
                metric: 10,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renumbered_node_loses_its_old_addresses_and_keeps_the_operators() {
        // Seen in the lab: n2's index went from 2 to 12; its bridge kept 10.0.2.254/24 and
        // 2001:db8:bd00:2::1/64 beside the new ones (a connected route to the block another
        // node may get next).
        let plan = braid_model::extensions::AddressPlanConfig {
            ipv6: "2001:db8:bd00::/48".parse().unwrap(),
            ipv4_pool: Some("10.0.0.0/8".parse().unwrap()),
            bridge: "braid0".into(),
        };
        let now = braid_plan::address::node_addresses(&plan, 12).unwrap();
        let ips =
            |list: &[&str]| -> Vec<IpAddr> { list.iter().map(|a| a.parse().unwrap()).collect() };
        let present = ips(&[
            "10.0.2.254",
            "10.0.12.254",
            "2001:db8:bd00:c::1",
            "2001:db8:bd00:2::1",
            "2001:db8:77::1",
            "192.0.2.1",
        ]);
        assert_eq!(
            stale_bridge_addresses(&present, &plan, &now),
            ips(&["10.0.2.254", "2001:db8:bd00:2::1"])
        );
        // IPv4 off: the pool's addresses are not braid's to judge.
        let v6_only = braid_model::extensions::AddressPlanConfig {
            ipv4_pool: None,
            ..plan.clone()
        };
        let now = braid_plan::address::node_addresses(&v6_only, 12).unwrap();
        assert_eq!(
            stale_bridge_addresses(&present, &v6_only, &now),
            ips(&["2001:db8:bd00:2::1"])
        );
    }

    /// Asks nftables to check `script` (`nft -c`) in a network namespace of its own, so
    /// nothing on the host is read or changed; `None` when that cannot run here (not root).
    fn nft_check(script: &str) -> Option<std::process::Output> {
        use std::io::Write as _;
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: nft -c needs root (CI runs this as root)");
            return None;
        }
        let mut child = std::process::Command::new("unshare")
            .args(["-n", "nft", "-c", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("unshare and nft are installed (scripts/deps.sh)");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(script.as_bytes())
            .expect("nft reads its script");
        Some(child.wait_with_output().expect("nft ran"))
    }

    #[test]
    fn an_exit_clamps_the_mss_of_ipv4_and_ipv6_and_nftables_accepts_the_tables() {
        let with_nat = exit_tables("up0", Some("{ 10.0.0.0/8 }"), "{ fd00:1::/48 }", 1420);
        assert!(with_nat.contains("ip saddr { 10.0.0.0/8 } masquerade"));
        assert!(with_nat.contains("maxseg size > 1380 tcp option maxseg size set 1380"));
        assert!(with_nat.contains("table ip6 braid_nat"));
        assert!(
            with_nat
                .contains("ip6 saddr { fd00:1::/48 } tcp flags syn tcp option maxseg size > 1360")
        );
        assert!(
            with_nat.contains(
                "ip6 daddr { fd00:1::/48 } tcp flags syn tcp option maxseg size set rt mtu"
            )
        );
        let without_nat = exit_tables("up0", None, "{ 2001:db8::/48 }", 1280);
        assert!(!without_nat.contains("table ip braid_nat"));
        assert!(without_nat.contains("size set 1220"));
        for script in [with_nat, without_nat] {
            if let Some(out) = nft_check(&script) {
                assert!(
                    out.status.success(),
                    "nft refused:\n{script}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}
