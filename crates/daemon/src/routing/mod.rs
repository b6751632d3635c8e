//! Routing: where a route is decided ([`decide`]: which of the plan's routes go in now,
//! what the node announces, which routing daemon with what configuration), where it is
//! installed ([`install`]: the node network, braid's table, policy rules and NAT, over
//! netlink), and the routing daemons braid drives ([`supervisor`] keeps babeld or BIRD
//! running and in step on a thread of its own; [`babel`] and [`bird`] speak to each). What
//! routing did is reported in the status document (`crate::status`, `routing`), the metrics
//! (`crate::metrics`) and the status page.

pub mod babel;
pub mod bird;
pub mod decide;
pub mod install;
pub mod supervisor;

pub use decide::{Wanted, engine_dir, link_alive, wanted, wanted_engine};
pub use install::{
    NAT_TABLE, Outcome, apply, delete_groups_keeping, extra_interfaces, install, teardown,
};
pub use supervisor::{stop_stale_engines, supervise_engine};

use crate::backend::LinkBackend;
use crate::reconciler::Reconciler;

/// The routing's problems now: setting up the node network and routes, and the routing
/// daemon. Empty when routing is healthy.
pub fn problems<B: LinkBackend>(r: &Reconciler<B>) -> Vec<String> {
    r.routing().problems()
}
