//! braid's fast link liveness, as the daemon configures it: the routing mode's keepalive
//! interval and dead time go to each userspace link (`braid_link::LivenessConfig`), which
//! decides alive or dead and turns its TUN device's carrier off and on. babeld and BIRD
//! follow the carrier at once (docs/routing.md, "Link liveness"); in mode `static` the
//! routes over a dead link are withdrawn (`routing::apply`).

use std::time::Duration;

/// The link's liveness settings from the setup's (interval, dead after).
pub fn link_liveness(setting: Option<(Duration, Duration)>) -> Option<braid_link::LivenessConfig> {
    setting.map(|(interval, dead_after)| braid_link::LivenessConfig {
        interval,
        dead_after,
    })
}

/// Whether braid routes over `link` now (mode `static`): it is up (`status::link_state`)
/// and braid's liveness has not declared it dead. The main loop re-applies the routes when
/// this changes for any link.
pub fn carries<B: crate::backend::LinkBackend>(
    r: &crate::reconciler::Reconciler<B>,
    link: &braid_plan::LinkPlan,
    now: std::time::SystemTime,
) -> bool {
    crate::routing::link_alive(link, r.backend().stats(&link.name).as_ref(), now)
        && !r.backend().dead(&link.name)
}
