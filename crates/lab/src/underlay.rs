//! The underlay: one veth pair per pair of nodes, made directly inside the two namespaces,
//! with each node's addresses and a host route to every peer.

use crate::LabError;
use crate::command::ip_batch;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A node's underlay addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeAddrs {
    /// `198.18.0.<i>` (benchmarking range).
    pub v4: Ipv4Addr,
    /// `2001:db8::<i>` (documentation range).
    pub v6: Ipv6Addr,
}

/// Underlay addresses of node `i` (1-based, at most 254): `198.18.0.<i>` and `2001:db8::<i>`.
pub fn node_addrs(i: usize) -> NodeAddrs {
    let low = u8::try_from(i).unwrap_or(u8::MAX);
    NodeAddrs {
        v4: Ipv4Addr::new(198, 18, 0, low),
        v6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(low)),
    }
}

/// The name of node `me`'s veth toward node `peer`: `u<peer>`.
pub fn iface(peer: usize) -> String {
    format!("u{peer}")
}

/// Creates the veth pairs of a full mesh of `nodes` nodes; `ns(i)` names node i's
/// namespace. Nothing is created in the caller's namespace: `ip link add ... netns A type
/// veth peer ... netns B` puts both ends straight into the nodes.
pub(crate) fn create_links(nodes: usize, ns: impl Fn(usize) -> String) -> Result<(), LabError> {
    let mut lines = Vec::new();
    for i in 1..=nodes {
        for j in (i + 1)..=nodes {
            lines.push(format!(
                "link add {} netns {} type veth peer name {} netns {}",
                iface(j),
                ns(i),
                iface(i),
                ns(j)
            ));
        }
    }
    ip_batch(None, &lines)
}

/// Inside node `me`'s namespace `ns`: brings its veths up, puts its addresses on each
/// (`/32` and `/128`, `nodad`) and routes each peer's addresses over the peer's veth.
pub(crate) fn configure_node(ns: &str, me: usize, nodes: usize) -> Result<(), LabError> {
    let mine = node_addrs(me);
    let mut lines = Vec::new();
    for peer in (1..=nodes).filter(|&p| p != me) {
        let (dev, theirs) = (iface(peer), node_addrs(peer));
        lines.push(format!("link set {dev} up"));
        lines.push(format!("address add {}/32 dev {dev}", mine.v4));
        lines.push(format!("address add {}/128 dev {dev} nodad", mine.v6));
        lines.push(format!("route add {}/32 dev {dev}", theirs.v4));
        lines.push(format!("route add {}/128 dev {dev}", theirs.v6));
    }
    ip_batch(Some(ns), &lines)
}
