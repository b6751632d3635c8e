//! What the daemon needs from a link backend (braid's userspace data plane, or kernel
//! WireGuard): create, update in place, remove, and report links. The daemon decides what;
//! the backend does it.

use braid_model::PrivateKey;
use braid_plan::reconcile::Change;
use braid_plan::{LinkPlan, NodePlan};
use serde::Serialize;
use std::time::SystemTime;

/// Everything a backend needs to bring one link up.
#[derive(Debug, Clone)]
pub struct LinkSetup<'a> {
    pub link: &'a LinkPlan,
    /// This node (its link-local and link addresses go on every link).
    pub node: &'a NodePlan,
    /// The peer at the other end, when the plan knows it.
    pub peer: Option<&'a NodePlan>,
    pub private_key: &'a PrivateKey,
    /// The overlay namespace, when the config isolates the overlay that way.
    pub netns: Option<&'a str>,
    /// The VRF the link belongs to, when the config isolates the overlay that way.
    pub vrf: Option<&'a str>,
    /// braid's fast link liveness as (keepalive interval, dead after), when the routing
    /// mode acts on it (`RoutingConfig::liveness`; docs/routing.md, "Link liveness").
    pub liveness: Option<(std::time::Duration, std::time::Duration)>,
}

#[derive(Debug, thiserror::Error)]
#[error("link {link}: {message}")]
pub struct BackendError {
    pub link: String,
    pub message: String,
}

/// Counters and state of one link, as `braid status` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    /// The endpoint the link sends to now (may differ from the plan after roaming).
    pub endpoint: Option<String>,
    /// The UDP port the link listens on (the kernel's choice with random_port).
    pub listen_port: u16,
    #[serde(serialize_with = "unix_seconds")]
    pub last_handshake: Option<SystemTime>,
    /// When an authenticated datagram last arrived.
    #[serde(serialize_with = "unix_seconds")]
    pub last_rx: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Datagrams dropped: not WireGuard, failed authentication, or replayed.
    pub dropped_bad_packet: u64,
    pub dropped_unknown_key: u64,
    pub dropped_replay: u64,
    /// Packets from the TUN that could not be sent: no endpoint yet, or a send error.
    pub dropped_no_route: u64,
    /// Handshake initiations refused (replayed or older timestamps, another key, invalid).
    pub rejected_handshakes: u64,
    /// Unauthenticated handshakes answered with a cookie reply (the link was under load).
    pub cookie_replies: u64,
    /// Datagrams sent above the underlay's path MTU, fragmented by the kernel.
    pub tx_fragmented: u64,
    /// Batches sent one datagram per message because the kernel refused UDP GSO for them.
    pub tx_gso_fallbacks: u64,
    /// The underlay's path MTU toward the peer, once the kernel reported one (a datagram was
    /// too large for it); `None` until then.
    pub underlay_mtu: Option<u32>,
    /// Multi-path links: paths (state, RTT, jitter, loss, rates, bytes, last probe),
    /// scheduler and reorder-buffer counters; see docs/bonding.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bond: Option<serde_json::Value>,
}

fn unix_seconds<S: serde::Serializer>(time: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match time.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        Some(d) => s.serialize_u64(d.as_secs()),
        None => s.serialize_none(),
    }
}

pub trait LinkBackend: Send {
    /// A short name for status output: "userspace" or "kernel".
    fn name(&self) -> &'static str;
    fn add(&mut self, setup: LinkSetup<'_>) -> Result<(), BackendError>;
    /// Takes over a link that already exists exactly as planned (left by an earlier
    /// one-shot `braid up` or daemon), without touching it; false when there is none or it
    /// differs, and the link is then added (or fixed) by [`LinkBackend::add`].
    fn adopt(&mut self, _setup: LinkSetup<'_>) -> bool {
        false
    }
    /// Applies `changes` to a running link, in place where possible.
    fn update(&mut self, setup: LinkSetup<'_>, changes: &[Change]) -> Result<(), BackendError>;
    fn remove(&mut self, name: &str) -> Result<(), BackendError>;
    /// Removes every link; backends may do it faster than one by one.
    fn remove_all(&mut self, names: &[String]) -> Vec<Result<(), BackendError>> {
        names.iter().map(|name| self.remove(name)).collect()
    }
    fn stats(&self, name: &str) -> Option<LinkStats>;
    /// Whether braid's link liveness declared the link dead (its carrier is off; see
    /// `liveness`). Backends without liveness: never.
    fn dead(&self, _name: &str) -> bool {
        false
    }
    /// Resolves the link's DNS endpoint again and points the link at the answer.
    fn re_resolve(&mut self, _link: &braid_plan::LinkPlan) {}
    /// An uplink (a path's interface) went down or came back. Backends without paths
    /// ignore it.
    fn set_path_state(&mut self, _interface: &str, _up: bool) {}
    /// The running links whose interface is gone (deleted by someone else): the
    /// reconciler makes them again.
    fn missing(&mut self) -> Vec<String> {
        Vec::new()
    }
}
