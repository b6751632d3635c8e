//! braid's system layer: rtnetlink operations on the interfaces braid owns, and network
//! namespaces. Interfaces are accounted by interface group, as ranet does: before a
//! reconcile every active link is marked stale, links that should exist are marked active
//! again, and whatever is still stale is deleted by the kernel in one request.

pub mod groups;
pub mod netns;
pub mod routes;

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
    #[error("network namespace {name}: {source}")]
    Netns {
        name: String,
        #[source]
        source: std::io::Error,
    },
}
