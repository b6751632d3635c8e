//! braid's system layer: rtnetlink operations on the interfaces braid owns (TUN and
//! WireGuard devices, VRFs), kernel WireGuard over generic netlink, and network namespaces.
//! Interfaces are accounted by interface group, as ranet does: before a reconcile every
//! active link is marked stale, links that should exist are marked active
//! again, and whatever is still stale is deleted by the kernel in one request.

pub mod groups;
pub mod links;
pub mod netns;
pub mod routes;
pub mod rules;
pub mod sync;
pub mod uplinks;
pub mod wireguard;

pub use groups::{LinkInfo, Netlink};

/// Why a system operation failed; every variant's message says what was being done.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// The netlink socket could not be opened.
    #[error("netlink connection: {0}")]
    Connect(#[source] std::io::Error),
    /// A route-netlink request failed (the kernel's error inside `source`).
    #[error("{what}: {source}")]
    Netlink {
        /// What was being done, e.g. "looking up interface braid-a".
        what: String,
        /// rtnetlink's error.
        #[source]
        source: rtnetlink::Error,
    },
    /// A generic-netlink (WireGuard) request failed.
    #[error("{what}: {source}")]
    Genl {
        /// What was being done.
        what: String,
        /// The socket's error (a kernel errno for a refused request).
        #[source]
        source: std::io::Error,
    },
    #[error(
        "this kernel has no WireGuard (no generic netlink family \"wireguard\"); load the module (modprobe wireguard) or set \"backend\": \"userspace\""
    )]
    /// The kernel has no WireGuard generic-netlink family: the module is not loaded or built.
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
        /// braid's route: `<destination> via <gateway>`.
        route: String,
        /// The routing table.
        table: u32,
        /// The route's metric (priority).
        metric: u32,
        /// The other route: its protocol (who made it) and gateway.
        holder: String,
        /// The `ip route del` command that removes it.
        fix: String,
    },
    /// A network namespace could not be opened or entered.
    #[error("network namespace {name}: {source}")]
    Netns {
        /// The namespace's name (under /run/netns).
        name: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}
