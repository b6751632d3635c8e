//! Per-path families of multi-path links (labels `link`, `peer`, `path`, `origin`), and
//! each such link's reorder buffer (labels `link`, `peer`).

use super::family::{FloatGauge, Labels, Spec, labels, series, with};
use crate::status::{LinkStatus, Status};
use braid_bond::{BondStatus, PathState, PathStatus};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

fn seconds(ms: f64) -> f64 {
    ms / 1e3
}

/// The per-path gauges: name (after `braid_`), help text, the value (`None`: no sample).
const GAUGES: [Spec<PathStatus, Option<f64>>; 10] = [
    (
        "path_rtt_seconds",
        "Smoothed round-trip time of the path's probes (absent before the first answer)",
        |p| p.rtt_ms.map(seconds),
    ),
    (
        "path_jitter_seconds",
        "Jitter of the path's probe round trips",
        |p| p.rtt_ms.map(|_| seconds(p.jitter_ms)),
    ),
    (
        "path_send_delay_seconds",
        "One-way delay toward the peer above the fastest path's (base delays)",
        |p| p.send_delay_ms.map(seconds),
    ),
    (
        "path_loss_ratio",
        "Share of the path's recent probes without an answer, counted from its first answer",
        |p| (p.loss_samples > 0).then_some(p.loss),
    ),
    (
        "path_send_loss_ratio",
        "One-way random loss toward the peer, from the peer's received counters",
        |p| Some(p.send_loss),
    ),
    (
        "path_delivery_rate_bits_per_second",
        "Rate the peer reports receiving on the path",
        |p| Some(p.delivery_rate_bps),
    ),
    (
        "path_sent_rate_bits_per_second",
        "Rate this side sent on the path over the last probe interval",
        |p| Some(p.sent_bps),
    ),
    (
        "path_rate_estimate_bits_per_second",
        "The rate the scheduler expects the path to drain its queue at",
        |p| Some(p.rate_bps),
    ),
    (
        "path_capacity_bits_per_second",
        "Measured capacity of the path (absent until measured)",
        |p| p.capacity_bps,
    ),
    (
        "path_traffic_share_ratio",
        "The path's share of what the link sent over the last probe interval",
        |p| Some(p.share),
    ),
];

/// The per-path counters: name (after `braid_`), help text, the count.
const COUNTERS: [Spec<PathStatus, u64>; 2] = [
    ("path_transmit_bytes", "Bytes sent on the path", |p| {
        p.counters.tx_bytes
    }),
    ("path_receive_bytes", "Bytes received on the path", |p| {
        p.counters.rx_bytes
    }),
];

/// The multi-path links and their bonds.
fn bonded(status: &Status) -> impl Iterator<Item = (&LinkStatus, &BondStatus)> {
    status
        .links
        .iter()
        .filter_map(|l| Some((l, l.stats.bond.as_ref()?)))
}

/// Per-path metrics of multi-path links, and each link's reorder buffer.
pub(super) fn register(registry: &mut Registry, status: &Status) {
    // Labelled by the path's name (its uplink, or the peer's address for a learned path).
    let rows: Vec<(Labels, &PathStatus)> = bonded(status)
        .flat_map(|(link, bond)| {
            bond.paths.iter().map(move |p| {
                let l = labels(&[
                    ("link", &link.name),
                    ("peer", &link.peer),
                    ("path", &p.name),
                    ("origin", p.origin),
                ]);
                (l, p)
            })
        })
        .collect();
    series::<Gauge>(
        registry,
        "path_up",
        "1 when the path answers its probes and carries traffic",
        rows.iter()
            .map(|(l, p)| (l.clone(), i64::from(p.state == PathState::Up))),
    );
    for (name, help, value) in GAUGES {
        let samples = rows
            .iter()
            .filter_map(|(l, p)| Some((l.clone(), value(p)?)));
        series::<FloatGauge>(registry, name, help, samples);
    }
    for (name, help, count) in COUNTERS {
        let samples = rows.iter().map(|(l, p)| (l.clone(), count(p)));
        series::<Counter>(registry, name, help, samples);
    }
    register_reorder(registry, status);
}

/// Each multi-path link's reorder buffer: its counters by `what`, its wait and the
/// reordering it saw.
fn register_reorder(registry: &mut Registry, status: &Status) {
    let rows: Vec<(Labels, &BondStatus)> = bonded(status)
        .map(|(link, bond)| (labels(&[("link", &link.name), ("peer", &link.peer)]), bond))
        .collect();
    series::<Counter>(
        registry,
        "reorder_packets",
        "Reorder buffer: packets held for an earlier one, released after waiting out a gap, released late (after their gap was skipped), dropped, duplicates discarded",
        rows.iter().flat_map(|(l, b)| {
            let c = &b.reorder.counters;
            [
                ("held", c.held),
                ("released_after_wait", c.released_after_wait),
                ("released_late", c.released_late),
                ("dropped", c.dropped),
                ("duplicates", c.duplicates),
            ]
            .map(|(what, n)| (with(l, "what", what), n))
        }),
    );
    series::<FloatGauge>(
        registry,
        "reorder_wait_seconds",
        "How long the link's reorder buffer waits for a missing packet now",
        rows.iter()
            .map(|(l, b)| (l.clone(), seconds(b.reorder.wait_ms))),
    );
    series::<FloatGauge>(
        registry,
        "reorder_observed_seconds",
        "The largest reordering the link's buffer saw recently (halving every 10 s)",
        rows.iter()
            .map(|(l, b)| (l.clone(), seconds(b.reorder.observed_ms))),
    );
}
