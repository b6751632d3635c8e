//! The Prometheus exposition of a status document. Names carry their units; counters end in
//! `_total`; links are labelled `link`, `peer` and `family`. docs/metrics.md lists them all.
//!
//! Every family reads fields of the typed [`Status`], one file per part of it:
//! [`node`] (this node and the daemon process), [`link`] (per link), [`path`] (per path of
//! a multi-path link, and its reorder buffer), [`routing`] (routes and exits) and
//! [`registry`] (the registry's version and fetcher); [`family`] holds what they share.

mod family;
mod link;
mod node;
mod path;
mod registry;
mod routing;
#[cfg(test)]
pub(crate) mod tests;

use crate::status::Status;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// Renders the status as Prometheus text (OpenMetrics-compatible exposition).
pub fn render(status: &Status) -> String {
    encode_registry(&registry_of(status))
}

/// As [`render`], plus the process's descriptors and the status listener's connections.
pub fn render_with_listener(status: &Status, listener: &crate::http::ListenerStats) -> String {
    let mut registry = registry_of(status);
    node::register_process(&mut registry, listener);
    encode_registry(&registry)
}

fn encode_registry(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, registry);
    out
}

/// Every family of the status document, in the order they are exposed.
fn registry_of(status: &Status) -> Registry {
    let mut registry = Registry::with_prefix("braid");
    node::register(&mut registry, status);
    link::register(&mut registry, status);
    routing::register_kernel(&mut registry, status);
    path::register(&mut registry, status);
    registry::register(&mut registry, status);
    routing::register_own(&mut registry, status);
    registry
}
