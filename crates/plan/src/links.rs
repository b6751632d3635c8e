//! The desired links, computed exactly as ranet computes them: for each local transport,
//! each peer (every registry node but this one, matched by public key) and each of the
//! peer's endpoints of the transport's family, one point-to-point link. Every per-link fact
//! a backend needs is decided here: name, ports, endpoint, MTU, mark, group, keys,
//! keepalive, the link's addresses and its underlay paths (`wan: "auto"` expanded over the
//! uplinks found). The backends only map these fields to their own calls.

use crate::NodePlan;
use braid_model::extensions::{PathConfig, Scheduler};
use braid_model::{AddressFamily, Config, Host, PublicKey, Registry, Transport};
use ipnet::{Ipv4Net, Ipv6Net};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

/// Where a link sends: the peer's address at this node's send port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RemoteEndpoint {
    /// The peer's address: an IP or a DNS name resolved by the daemon.
    pub host: Host,
    /// The UDP port to send to.
    pub port: u16,
}

impl fmt::Display for RemoteEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(std::net::IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}

impl RemoteEndpoint {
    /// The address to send to when the host is an IP literal; `None` for a DNS name, which
    /// the daemon resolves off its event loop and hands to the running link (the link
    /// comes up without an endpoint meanwhile, as a WireGuard peer that dials in does).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Name(_) => None,
        }
    }
}

impl serde::Serialize for RemoteEndpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The addresses on one link's interface, from the address plan (docs/address-plan.md).
/// Every link of a node carries the same ones; the peer's IPv4 link address makes the IPv4
/// one point to point, so the peer's address routes over the link to that peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LinkAddresses {
    /// This node's IPv6 link-local address as a /64 (`fe80::<index>`, or from the key
    /// without an address plan; [`crate::address::link_local6`]).
    pub link_local6: Ipv6Net,
    /// This node's IPv4 link address, `169.254.<hi>.<lo>/16`, when the address plan has an
    /// IPv4 pool.
    pub link4: Option<Ipv4Net>,
    /// The peer's IPv4 link address, the far end of the point-to-point address, when both
    /// have one.
    pub peer_link4: Option<Ipv4Addr>,
}

impl LinkAddresses {
    /// The addresses of a link from `node` to `peer` (`None`: the peer is not in the
    /// registry's address plan).
    pub fn between(node: &NodePlan, peer: Option<&NodePlan>) -> Self {
        let link4 = |n: &NodePlan| n.addresses.as_ref().and_then(|a| a.link4);
        Self {
            link_local6: Ipv6Net::new(node.link_local6, 64)
                .expect("64 is a valid IPv6 prefix length"),
            link4: link4(node),
            peer_link4: peer.and_then(link4).map(|n| n.addr()),
        }
    }
}

/// One planned point-to-point link.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkPlan {
    /// Interface name: transport prefix + the peer endpoint's send port.
    pub name: String,
    /// The address family of the underlay (the transport's IPv4 or IPv6).
    pub family: AddressFamily,
    /// The peer's send port, or 0 when the transport uses random ports.
    pub listen_port: u16,
    /// `None` when the peer has no address: it dials in.
    pub endpoint: Option<RemoteEndpoint>,
    /// The interface MTU in bytes (from the transport).
    pub mtu: u32,
    /// The firewall mark on the link's own UDP packets (from the transport), so they are not routed into the mesh.
    pub fwmark: u32,
    /// The config's active interface group.
    pub group: u32,
    /// The peer's X25519 public key.
    #[serde(serialize_with = "crate::serialize_key")]
    pub peer_public_key: PublicKey,
    /// This node's own public key (from the config's private key): a new one is a key
    /// rotation, applied to the running link in place.
    #[serde(serialize_with = "crate::serialize_key")]
    pub local_public_key: PublicKey,
    /// The peer's registry name or short key.
    pub peer: String,
    /// Persistent keepalive in seconds, if any.
    pub keepalive: Option<u16>,
    /// Index of the config transport this link belongs to.
    pub transport: usize,
    /// The link's underlay paths: the transport's `paths`, or with `wan: "auto"` one per
    /// uplink found (empty: the one default path, plain WireGuard).
    pub paths: Vec<PathConfig>,
    /// How packets spread over the paths (meaningful with two paths or more).
    pub scheduler: Scheduler,
    /// The addresses on the link's interface.
    pub addresses: LinkAddresses,
}

/// The keepalive (seconds) of a link that carries a default route, when its transport sets
/// none: a link to an exit (the peer has an `exit_preference`), or any link of an exit.
/// Both ends compute it from the same registry, so both send: each sees the other alive
/// (braid's liveness of a link with a keepalive is traffic from the peer within three
/// intervals), a NAT mapping on the way stays open, and an idle router keeps its default
/// route whatever the far side's config says. 25 s is wg-quick's usual value for NAT.
pub const EXIT_KEEPALIVE: u16 = 25;

/// A link's persistent keepalive in seconds (`None`: off), from its transport's
/// `keepalive` as the config sets it (`None` when absent, `Some(0)` for an explicit 0) and
/// whether the link carries a default route (`carries_default`: a link of an exit, or to
/// one). A set value wins, and an explicit 0 turns the keepalive off even there; unset, a
/// link that carries a default route gets [`EXIT_KEEPALIVE`] and any other none.
pub fn link_keepalive(configured: Option<u16>, carries_default: bool) -> Option<u16> {
    match configured {
        Some(0) => None,
        Some(k) => Some(k),
        None => carries_default.then_some(EXIT_KEEPALIVE),
    }
}

/// The underlay paths of `transport`: with `wan: "auto"`, one per uplink in `uplinks` (an
/// interface name each, in the order given; none found: no path, so the link takes the
/// default route); otherwise the transport's own `paths`.
pub fn transport_paths(transport: &Transport, uplinks: &[String]) -> Vec<PathConfig> {
    if !transport.wan_auto {
        return transport.paths.clone();
    }
    uplinks
        .iter()
        .map(|name| PathConfig {
            interface: Some(name.clone()),
            ..PathConfig::default()
        })
        .collect()
}

/// Computes the links, sorted by name. Deterministic: same inputs, same output.
///
/// `node` is this node's plan and `nodes` the plan of every registry node, in registry
/// order (as [`crate::plan`] computes them; a node missing there gets no IPv4 peer link
/// address); `uplinks` are the uplinks found now, for transports with `wan: "auto"` (see
/// [`transport_paths`]).
pub fn plan_links(
    config: &Config,
    registry: &Registry,
    node: &NodePlan,
    nodes: &[NodePlan],
    uplinks: &[String],
) -> Vec<LinkPlan> {
    let own_key = config.private_key.public_key();
    let own_exit = config.exit.is_some();
    let mut links = Vec::new();
    for (t, transport) in config.transports.iter().enumerate() {
        let paths = transport_paths(transport, uplinks);
        for (i, peer) in registry
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.public_key != own_key)
        {
            let peer_plan = nodes.get(i).filter(|p| p.public_key == peer.public_key);
            let addresses = LinkAddresses::between(node, peer_plan);
            for endpoint in peer
                .endpoints
                .iter()
                .filter(|e| e.address_family == transport.address_family)
            {
                links.push(LinkPlan {
                    name: format!("{}{}", transport.prefix, endpoint.send_port),
                    family: transport.address_family,
                    listen_port: if transport.random_port {
                        0
                    } else {
                        endpoint.send_port
                    },
                    endpoint: endpoint.address.clone().map(|host| RemoteEndpoint {
                        host,
                        port: transport.send_port,
                    }),
                    mtu: transport.mtu,
                    fwmark: transport.fwmark,
                    group: config.active_group,
                    peer_public_key: peer.public_key,
                    local_public_key: own_key,
                    peer: peer.label(),
                    keepalive: link_keepalive(
                        transport.keepalive,
                        own_exit || peer.exit_preference.is_some(),
                    ),
                    transport: t,
                    paths: paths.clone(),
                    scheduler: transport.scheduler,
                    addresses,
                });
            }
        }
    }
    links.sort_by(|a, b| a.name.cmp(&b.name));
    links
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{link_local6, node_addresses};
    use braid_model::extensions::AddressPlanConfig;

    fn node(index: u64, key: u8) -> NodePlan {
        let plan = AddressPlanConfig {
            ipv6: "2001:db8::/48".parse().unwrap(),
            ipv4_pool: Some("10.0.0.0/8".parse().unwrap()),
            bridge: "braid0".into(),
        };
        let key = PublicKey([key; 32]);
        NodePlan {
            public_key: key,
            name: None,
            link_local6: link_local6(Some(index), &key),
            addresses: node_addresses(&plan, index).ok(),
            exit_preference: None,
            lan_subnets: Vec::new(),
        }
    }

    #[test]
    fn an_explicit_zero_keepalive_is_off_and_unset_is_braids_choice() {
        // Unset: 25 s on a link that carries a default route, none elsewhere.
        assert_eq!(link_keepalive(None, true), Some(EXIT_KEEPALIVE));
        assert_eq!(link_keepalive(None, false), None);
        // An explicit 0 is off, even toward an exit.
        assert_eq!(link_keepalive(Some(0), true), None);
        assert_eq!(link_keepalive(Some(0), false), None);
        // A set value wins everywhere.
        assert_eq!(link_keepalive(Some(5), true), Some(5));
        assert_eq!(link_keepalive(Some(5), false), Some(5));
    }

    #[test]
    fn a_peer_outside_the_address_plan_gets_no_point_to_point_address() {
        let me = node(3, 1);
        let both = LinkAddresses::between(&me, Some(&node(4, 2)));
        assert_eq!(both.link_local6.to_string(), "fe80::3/64");
        assert_eq!(both.link4.unwrap().to_string(), "169.254.0.3/16");
        assert_eq!(both.peer_link4.unwrap().to_string(), "169.254.0.4");
        let alone = LinkAddresses::between(&me, None);
        assert_eq!((alone.link4, alone.peer_link4), (both.link4, None));
    }
}
