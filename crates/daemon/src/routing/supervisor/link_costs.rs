//! Following the links' routing costs: each link's measured loss is given to the
//! supervisor's `LinkCosts` (see `routing::cost`), and the routing daemon is told at once
//! when a cost changed ([`follow_costs`]).

use super::engine::supervise_engine;
use crate::backend::LinkBackend;
use crate::reconciler::Reconciler;
use std::time::Instant;

/// Gives the links' routing costs a look at their loss now (see `routing::cost`), and logs
/// each link whose cost changed.
/// True when one changed (the routing daemon is then to be told: [`supervise_engine`]).
pub(super) fn observe_costs<B: LinkBackend>(r: &mut Reconciler<B>, now: Instant) -> bool {
    let Some(engine) = r.routing().engine() else {
        return false;
    };
    let before = engine.costs.rxcosts();
    let looks: Vec<(String, Option<f64>)> = r
        .running()
        .map(|name| {
            let loss = r.backend().stats(name).and_then(|s| s.keepalive_loss);
            (name.to_string(), loss)
        })
        .collect();
    let Some(engine) = r.routing_mut().engine_mut() else {
        return false;
    };
    let changed = engine
        .costs
        .observe(now, looks.iter().map(|(n, l)| (n.as_str(), *l)));
    if changed {
        let after = engine.costs.rxcosts();
        for (link, _) in &looks {
            if before.get(link) != after.get(link) {
                let cost = engine.costs.cost(link);
                tracing::info!(
                    link = %link,
                    rxcost = cost.rxcost,
                    loss_percent = cost.loss.map(|l| format!("{:.1}", 100.0 * l)),
                    "link {}: routing cost changed",
                    cost.reason.name()
                );
            }
        }
    }
    changed
}

/// Gives the links' routing costs a look at their loss (at most one sample a second per
/// link, see `cost::SAMPLE_EVERY`), and tells the routing daemon at once when a cost
/// changed. Called on the daemon's link-state watch (every 250 ms), so a lossy link is
/// penalised within a second of the decision, not at the next retry tick.
pub fn follow_costs<B: LinkBackend>(r: &mut Reconciler<B>) {
    if observe_costs(r, Instant::now()) {
        supervise_engine(r);
    }
}
