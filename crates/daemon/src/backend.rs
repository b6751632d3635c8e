//! What the daemon needs from a link backend (braid's userspace data plane, or kernel
//! WireGuard): create, update in place, remove, and report links. The daemon decides what;
//! the backend does it.

use braid_model::PrivateKey;
use braid_plan::LinkPlan;
use braid_plan::reconcile::Change;
use std::net::SocketAddr;

/// Everything a backend needs to bring one link up: the plan's link (every per-link fact:
/// name, ports, MTU, mark, group, keys, keepalive, addresses, paths) and what is not in the
/// plan. A backend maps these fields to its own calls and decides nothing itself.
#[derive(Debug, Clone)]
pub struct LinkSetup<'a> {
    /// The link to bring up, as the plan made it.
    pub link: &'a LinkPlan,
    /// The address the link sends to from the start: the plan's endpoint when it is an IP
    /// ([`braid_plan::RemoteEndpoint::socket_addr`]). `None` when the peer dials in, or its
    /// endpoint is a DNS name: the link comes up without one, and the daemon points it at
    /// the name's address when its look-up answers ([`LinkBackend::set_resolved`]). No
    /// backend looks a name up itself.
    pub endpoint: Option<SocketAddr>,
    /// This node's WireGuard private key (the config's `private_key`).
    pub private_key: &'a PrivateKey,
    /// The overlay namespace, when the config isolates the overlay that way.
    pub netns: Option<&'a str>,
    /// The VRF the link belongs to, when the config isolates the overlay that way.
    pub vrf: Option<&'a str>,
    /// braid's fast link liveness as (keepalive interval, dead after), when the routing
    /// mode acts on it (`RoutingConfig::liveness`; docs/routing.md, "Link liveness").
    pub liveness: Option<(std::time::Duration, std::time::Duration)>,
}

/// A link the backend could not add, change or remove, and why (one sentence).
#[derive(Debug, thiserror::Error)]
#[error("link {link}: {message}")]
pub struct BackendError {
    /// The link's interface name.
    pub link: String,
    /// What went wrong, without the link's name.
    pub message: String,
}

/// Counters and state of one link, as `braid status` reports them: the link's own
/// snapshot, one type from the link to the JSON, the metrics and the page (the kernel
/// backend fills what kernel WireGuard reports).
pub type LinkStats = braid_link::Snapshot;

/// A link backend: braid's userspace data plane ([`crate::userspace`]) or kernel
/// WireGuard ([`crate::kernel`]). Synchronous, and its calls may block (the kernel
/// backend's, [`LinkBackend::stats`] included, are netlink round trips): the daemon calls
/// it from the reconciler's own thread or tokio's blocking pool, never on the async
/// runtime (`run`).
pub trait LinkBackend: Send {
    /// A short name for status output: "userspace" or "kernel".
    fn name(&self) -> &'static str;
    /// Brings a new link up as planned (its interface, addresses, WireGuard peer).
    fn add(&mut self, setup: LinkSetup<'_>) -> Result<(), BackendError>;
    /// Takes over a link that already exists exactly as planned (left by an earlier
    /// one-shot `braid up` or daemon), without touching it; false when there is none or it
    /// differs, and the link is then added (or fixed) by [`LinkBackend::add`].
    fn adopt(&mut self, _setup: LinkSetup<'_>) -> bool {
        false
    }
    /// Applies `changes` to a running link, in place where possible.
    fn update(&mut self, setup: LinkSetup<'_>, changes: &[Change]) -> Result<(), BackendError>;
    /// Removes the link and its interface.
    fn remove(&mut self, name: &str) -> Result<(), BackendError>;
    /// Removes every link; backends may do it faster than one by one.
    fn remove_all(&mut self, names: &[String]) -> Vec<Result<(), BackendError>> {
        names.iter().map(|name| self.remove(name)).collect()
    }
    /// The link's counters and state; `None` when the backend does not run it.
    fn stats(&self, name: &str) -> Option<LinkStats>;
    /// Whether braid's link liveness declared the link dead (its carrier is off; see
    /// `liveness`). Backends without liveness: never.
    fn dead(&self, _name: &str) -> bool {
        false
    }
    /// Points the link at `addr`, a fresh answer for its DNS endpoint (resolved by the
    /// caller, off the async runtime), when it is not there already.
    fn set_resolved(&mut self, _link: &LinkPlan, _addr: SocketAddr) {}
    /// An uplink (a path's interface) went down or came back. Backends without paths
    /// ignore it.
    fn set_path_state(&mut self, _interface: &str, _up: bool) {}
    /// The running links whose interface is gone (deleted by someone else): the
    /// reconciler makes them again.
    fn missing(&mut self) -> Vec<String> {
        Vec::new()
    }
}
