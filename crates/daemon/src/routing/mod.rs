//! Routing: where a route is decided ([`decide`]: which of the plan's routes go in now,
//! what the node announces, which routing daemon with what configuration), where it is
//! installed ([`install`]: the node network, braid's table, policy rules and NAT, over
//! netlink), and the routing daemons braid drives ([`supervisor`] keeps babeld or BIRD
//! running and in step on a thread of its own; [`babel`] and [`bird`] speak to each). What
//! routing did is reported in the status document (`crate::status`, `routing`), the metrics
//! (`crate::metrics`) and the status page.

pub mod babel;
pub mod bird;
pub mod cost;
pub mod decide;
pub mod install;
pub mod supervisor;

pub use decide::{Wanted, engine_dir, link_alive, wanted, wanted_engine};
pub use install::{
    NAT_TABLE, Outcome, apply, delete_groups_keeping, extra_interfaces, install, teardown,
};
pub use supervisor::{follow_costs, stop_stale_engines, supervise_engine};

use crate::backend::LinkBackend;
use crate::reconciler::Reconciler;

/// A link's routing cost as braid set it from its measured loss (see [`cost`]); `None`
/// when braid sets none (no babeld or BIRD: modes `none` and `static`).
pub fn link_cost<B: LinkBackend>(r: &Reconciler<B>, link: &str) -> Option<cost::RoutingCost> {
    use braid_model::extensions::RoutingMode;
    let mode = r.loaded()?.config.routing.mode;
    if !matches!(mode, RoutingMode::Babel | RoutingMode::Bird) {
        return None;
    }
    r.routing().engine().map(|e| e.costs().cost(link))
}

/// The routing's problems now: setting up the node network and routes, and the routing
/// daemon. Empty when routing is healthy.
pub fn problems<B: LinkBackend>(r: &Reconciler<B>) -> Vec<String> {
    r.routing().problems()
}
