//! The desired links, computed exactly as ranet computes them: for each local transport,
//! each peer (every registry node but this one, matched by public key) and each of the
//! peer's endpoints of the transport's family, one point-to-point link.

use braid_model::extensions::{PathConfig, Scheduler};
use braid_model::{AddressFamily, Config, Host, PublicKey, Registry};
use std::fmt;

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

impl serde::Serialize for RemoteEndpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
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
    /// The transport's underlay paths (empty: the one default path, plain WireGuard).
    pub paths: Vec<PathConfig>,
    /// How packets spread over the paths (meaningful with two paths or more).
    pub scheduler: Scheduler,
}

/// The keepalive (seconds) of a link that carries a default route, when its transport sets
/// none: a link to an exit (the peer has an `exit_preference`), or any link of an exit.
/// Both ends compute it from the same registry, so both send: each sees the other alive
/// (braid's liveness of a link with a keepalive is traffic from the peer within three
/// intervals), a NAT mapping on the way stays open, and an idle router keeps its default
/// route whatever the far side's config says. 25 s is wg-quick's usual value for NAT.
pub const EXIT_KEEPALIVE: u16 = 25;

/// Computes the links, sorted by name. Deterministic: same inputs, same output.
pub fn plan_links(config: &Config, registry: &Registry) -> Vec<LinkPlan> {
    let own_key = config.private_key.public_key();
    let own_exit = config.exit.is_some();
    let mut links = Vec::new();
    for (t, transport) in config.transports.iter().enumerate() {
        for node in registry.nodes.iter().filter(|n| n.public_key != own_key) {
            for endpoint in node
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
                    peer_public_key: node.public_key,
                    local_public_key: own_key,
                    peer: node.label(),
                    keepalive: transport
                        .keepalive
                        .or((own_exit || node.exit_preference.is_some()).then_some(EXIT_KEEPALIVE)),
                    transport: t,
                    paths: transport.paths.clone(),
                    scheduler: transport.scheduler,
                });
            }
        }
    }
    links.sort_by(|a, b| a.name.cmp(&b.name));
    links
}
