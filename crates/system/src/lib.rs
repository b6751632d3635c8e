//! braid's system layer: rtnetlink operations on the interfaces braid owns (TUN and
//! WireGuard devices, VRFs), kernel WireGuard over generic netlink, and network namespaces.
//! Interfaces are accounted by interface group, as ranet does: before a reconcile every
//! active link is marked stale, links that should exist are marked active
//! again, and whatever is still stale is deleted by the kernel in one request.

#![expect(
    missing_docs,
    reason = "issue 11: this crate's public items are still to be documented"
)]
pub mod groups;
pub mod links;
pub mod netns;
pub mod routes;
pub mod rules;
pub mod sync;
pub mod uplinks;
pub mod wireguard;

pub use groups::{LinkInfo, Netlink};

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("netlink connection: {0}")]
    Connect(#[source] std::io::Error),
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{what}: {source}")]
    Genl {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "this kernel has no WireGuard (no generic netlink family \"wireguard\"); load the module (modprobe wireguard) or set \"backend\": \"userspace\""
    )]
    NoWireGuard,
    /// The system is not as braid needs it (a name taken by another kind of interface, a
    /// device that vanished); the message says what to do.
    #[error("{0}")]
    State(String),
    /// A route braid wants has the key (table, destination, metric) of a route braid did
    /// not make; braid leaves that route alone and says so.
    #[error(
        "route {route} (table {table}, metric {metric}) collides with a route braid did not make ({holder}); braid leaves it alone: remove it to let braid's in ({fix})"
    )]
    RouteCollision {
        route: String,
        table: u32,
        metric: u32,
        holder: String,
        fix: String,
    },
    #[error("network namespace {name}: {source}")]
    Netns {
        name: String,
        #[source]
        source: std::io::Error,
    },
}
