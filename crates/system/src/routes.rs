//! Routes braid installs, tagged with braid's own routing protocol number so they can be
//! listed, reconciled and removed without touching anyone else's: braid adds routes
//! without replacing (a route of the same key that braid did not make is a
//! [`SystemError::RouteCollision`], left alone), and removes only routes of its protocol in
//! its own tables.

use crate::SystemError;
use crate::groups::Netlink;
use futures_util::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::RouteMessageBuilder;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// braid's routing protocol number (`proto 98` in `ip route`), unassigned in rt_protos.
pub const RTPROT_BRAID: u8 = 98;

/// One route: destination via a gateway on an interface, with a metric.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteSpec {
    /// The prefix the route reaches.
    pub destination: IpNet,
    /// `None`: a route straight onto the interface (scope link).
    pub gateway: Option<IpAddr>,
    /// The outgoing interface's index.
    pub oif: u32,
    /// The route's metric (priority): lower wins.
    pub metric: u32,
    /// The routing table: [`MAIN_TABLE`], or a VRF's.
    pub table: u32,
}

/// The main routing table (`ip route` without `table`).
pub const MAIN_TABLE: u32 = 254;

/// braid's own routing table: the routes braid wants (its own, `proto 98`, and its
/// routing daemon's) live here, never in the main table, so they do not compete with the
/// host's; the policy rules of [`crate::rules`] send traffic here (`ip route show table
/// 98`).
pub const MESH_TABLE: u32 = 98;

/// babeld's routing protocol number (`proto babel`).
pub const RTPROT_BABEL: u8 = 42;
/// BIRD's routing protocol number (`proto bird`).
pub const RTPROT_BIRD: u8 = 12;

/// The name `ip route` gives a routing protocol number (rt_protos), with the number.
pub fn protocol_name(protocol: u8) -> String {
    let name = match protocol {
        1 => "redirect",
        2 => "kernel",
        3 => "boot",
        4 => "static",
        RTPROT_BIRD => "bird",
        16 => "dhcp",
        RTPROT_BABEL => "babel",
        RTPROT_BRAID => "braid",
        186 => "bgp",
        188 => "ospf",
        _ => return format!("proto {protocol}"),
    };
    format!("proto {name} ({protocol})")
}

/// A route as the kernel holds it, whoever made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    /// The prefix the route reaches.
    pub destination: IpNet,
    /// A source-specific route's source prefix (`from`), if any.
    pub source: Option<IpNet>,
    /// Who made it (`proto`): e.g. [`RTPROT_BRAID`], [`RTPROT_BABEL`].
    pub protocol: u8,
    /// The routing table.
    pub table: u32,
    /// The route's metric (priority).
    pub metric: u32,
    /// The next hop; `None` for a route straight onto the interface.
    pub gateway: Option<IpAddr>,
    /// The outgoing interface's index; 0 when the kernel reports none.
    pub oif: u32,
}

/// What [`Netlink::sync_routes`] did: routes added and removed, and the routes it could
/// not add or remove, each with one sentence saying why (the others were still applied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSync {
    /// Routes added or replaced.
    pub added: usize,
    /// Stale routes removed.
    pub removed: usize,
    /// Routes that could not be added or removed, each with why.
    pub failed: Vec<(RouteSpec, String)>,
}

fn nl(what: String) -> impl FnOnce(rtnetlink::Error) -> SystemError {
    move |source| SystemError::Netlink { what, source }
}

fn address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn spec_of(message: &RouteMessage) -> Option<RouteSpec> {
    let v6 = message.header.address_family == netlink_packet_route::AddressFamily::Inet6;
    let mut destination = if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let (mut gateway, mut oif, mut metric) = (None, 0, 0);
    let mut table = u32::from(message.header.table);
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(a) => destination = address(a)?,
            RouteAttribute::Gateway(a) => gateway = address(a),
            RouteAttribute::Oif(i) => oif = *i,
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    Some(RouteSpec {
        destination: IpNet::new(destination, message.header.destination_prefix_length).ok()?,
        gateway,
        oif,
        metric,
        table,
    })
}

fn protocol_of(message: &RouteMessage) -> u8 {
    u8::from(message.header.protocol)
}

fn kernel_route(message: &RouteMessage) -> Option<KernelRoute> {
    let spec = spec_of(message)?;
    let source = message.attributes.iter().find_map(|a| match a {
        RouteAttribute::Source(a) => {
            address(a).and_then(|ip| IpNet::new(ip, message.header.source_prefix_length).ok())
        }
        _ => None,
    });
    Some(KernelRoute {
        destination: spec.destination,
        source,
        protocol: protocol_of(message),
        table: spec.table,
        metric: spec.metric,
        gateway: spec.gateway,
        oif: spec.oif,
    })
}

impl Netlink {
    /// Every route (IPv4 and IPv6) in `table`, whoever made it.
    pub async fn routes_in_table(&self, table: u32) -> Result<Vec<KernelRoute>, SystemError> {
        let mut all = self.routes().await?;
        all.retain(|r| r.table == table);
        Ok(all)
    }

    /// Every route (IPv4 and IPv6) in every table, whoever made it: one dump per family.
    pub async fn routes(&self) -> Result<Vec<KernelRoute>, SystemError> {
        let mut out = Vec::new();
        for query in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let mut stream = self.handle().route().get(query).execute();
            while let Some(message) = stream
                .try_next()
                .await
                .map_err(nl("listing routes".into()))?
            {
                if let Some(route) = kernel_route(&message) {
                    out.push(route);
                }
            }
        }
        Ok(out)
    }

    /// braid's routes (`proto 98`) in `tables`, with the messages that delete them.
    pub async fn braid_routes(
        &self,
        tables: &[u32],
    ) -> Result<Vec<(RouteSpec, RouteMessage)>, SystemError> {
        let mut out = Vec::new();
        for query in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let mut stream = self.handle().route().get(query).execute();
            while let Some(message) = stream
                .try_next()
                .await
                .map_err(nl("listing routes".into()))?
            {
                if message.header.protocol != RouteProtocol::Other(RTPROT_BRAID) {
                    continue;
                }
                if let Some(spec) = spec_of(&message).filter(|s| tables.contains(&s.table)) {
                    out.push((spec, message));
                }
            }
        }
        Ok(out)
    }

    /// Adds route `r` to its table as braid's (`proto 98`). A route of the same key that
    /// braid made is replaced; one it did not make is left alone:
    /// [`SystemError::RouteCollision`]. Other errors: [`SystemError::Netlink`].
    pub async fn add_route(&self, r: &RouteSpec) -> Result<(), SystemError> {
        let message = match (r.destination, r.gateway) {
            (IpNet::V4(dst), gw) => {
                let b = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(dst.addr(), dst.prefix_len())
                    .output_interface(r.oif)
                    .priority(r.metric)
                    .table_id(r.table)
                    .protocol(RouteProtocol::Other(RTPROT_BRAID));
                match gw {
                    // The gateway is the peer's point-to-point address on this interface.
                    Some(IpAddr::V4(gw)) => b.gateway(gw).onlink().build(),
                    Some(IpAddr::V6(_)) => return Ok(()), // never from the plan
                    None => b.scope(RouteScope::Link).build(),
                }
            }
            (IpNet::V6(dst), gw) => {
                let b = RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(dst.addr(), dst.prefix_len())
                    .output_interface(r.oif)
                    .priority(r.metric)
                    .table_id(r.table)
                    .protocol(RouteProtocol::Other(RTPROT_BRAID));
                match gw {
                    Some(IpAddr::V6(gw)) => b.gateway(gw).build(),
                    Some(IpAddr::V4(_)) => return Ok(()),
                    None => b.build(),
                }
            }
        };
        let via = r
            .gateway
            .map_or_else(|| format!("interface {}", r.oif), |g| g.to_string());
        // Never NLM_F_REPLACE on a guess: a route of the same key may be the host's.
        match self.handle().route().add(message.clone()).execute().await {
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => {}
            other => return other.map_err(nl(format!("adding route {} via {via}", r.destination))),
        }
        match self.holder_of(r).await? {
            // braid's own (another shape of a route it made): replacing it is braid's call.
            Some(holder) if holder.protocol == RTPROT_BRAID => self
                .handle()
                .route()
                .add(message)
                .replace()
                .execute()
                .await
                .map_err(nl(format!(
                    "replacing braid's route {} via {via}",
                    r.destination
                ))),
            Some(holder) => Err(SystemError::RouteCollision {
                route: format!("{} via {via}", r.destination),
                table: r.table,
                metric: r.metric,
                holder: format!(
                    "{}{}",
                    protocol_name(holder.protocol),
                    holder
                        .gateway
                        .map(|g| format!(" via {g}"))
                        .unwrap_or_default()
                ),
                fix: format!(
                    "ip route del {} table {} metric {} proto {}",
                    r.destination, r.table, holder.metric, holder.protocol
                ),
            }),
            None => Err(SystemError::State(format!(
                "adding route {} via {via} (table {}): the kernel says it exists, yet no route \
                 holds its place",
                r.destination, r.table
            ))),
        }
    }

    /// The route that holds the place of `r` in its table (same destination and metric,
    /// or else the same destination), whoever made it.
    async fn holder_of(&self, r: &RouteSpec) -> Result<Option<KernelRoute>, SystemError> {
        let routes = self.routes_in_table(r.table).await?;
        let same = |k: &&KernelRoute| k.destination == r.destination && k.source.is_none();
        Ok(routes
            .iter()
            .filter(same)
            .find(|k| k.metric == r.metric)
            .or_else(|| routes.iter().find(same))
            .cloned())
    }

    /// Makes braid's routes in `tables` (braid's own: [`MESH_TABLE`], a VRF's) exactly
    /// `desired`: removes the others of braid's protocol there, adds the missing. Routes
    /// elsewhere, the main table above all, are never removed (earlier builds of braid took
    /// over host routes there by replacing them; such a route may be the host's). A
    /// route that cannot be added or removed is reported in [`RouteSync::failed`] and the
    /// rest still applied; only failing to list the routes is an error.
    pub async fn sync_routes(
        &self,
        desired: &[RouteSpec],
        tables: &[u32],
    ) -> Result<RouteSync, SystemError> {
        let existing = self.braid_routes(tables).await?;
        let have: HashSet<&RouteSpec> = existing.iter().map(|(s, _)| s).collect();
        let want: HashSet<&RouteSpec> = desired.iter().collect();
        let mut out = RouteSync::default();
        for (spec, message) in &existing {
            if !want.contains(spec) {
                match self.handle().route().del(message.clone()).execute().await {
                    Ok(()) => out.removed += 1,
                    Err(e) => out.failed.push((
                        spec.clone(),
                        format!(
                            "cannot remove braid's route {} (table {}): {e}",
                            spec.destination, spec.table
                        ),
                    )),
                }
            }
        }
        for spec in desired.iter().filter(|s| !have.contains(s)) {
            match self.add_route(spec).await {
                Ok(()) => out.added += 1,
                Err(e @ SystemError::RouteCollision { .. }) => {
                    out.failed.push((spec.clone(), e.to_string()))
                }
                Err(e) => out.failed.push((
                    spec.clone(),
                    format!(
                        "cannot install route {} (table {}): {e}",
                        spec.destination, spec.table
                    ),
                )),
            }
        }
        Ok(out)
    }
}
