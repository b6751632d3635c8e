//! Per-link families (labels `link`, `peer`, `family`): links by state, handshakes,
//! traffic, drops, the underlay's path MTU, keepalive loss and the routing cost braid set.

use super::family::{FloatGauge, Labels, Spec, int, labels, series, with};
use crate::backend::LinkStats;
use crate::status::{LinkStatus, Status};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The labels of a link's series.
pub(super) fn link_labels(link: &LinkStatus) -> Labels {
    labels(&[
        ("link", &link.name),
        ("peer", &link.peer),
        ("family", &link.family),
    ])
}

/// The per-link counters: name (after `braid_`), help text, the count.
const COUNTERS: [Spec<LinkStats, u64>; 8] = [
    (
        "link_receive_bytes",
        "Bytes of WireGuard datagrams received on the link",
        |s| s.rx_bytes,
    ),
    (
        "link_transmit_bytes",
        "Bytes of WireGuard datagrams sent on the link",
        |s| s.tx_bytes,
    ),
    (
        "link_receive_packets",
        "WireGuard datagrams received on the link",
        |s| s.rx_packets,
    ),
    (
        "link_transmit_packets",
        "WireGuard datagrams sent on the link",
        |s| s.tx_packets,
    ),
    (
        "link_rejected_handshakes",
        "Handshake initiations the link refused (replayed or older timestamps, another key, invalid)",
        |s| s.rejected_handshakes,
    ),
    (
        "link_cookie_replies",
        "Handshakes answered with a cookie reply because the link was under load",
        |s| s.cookie_replies,
    ),
    (
        "link_fragmented_datagrams",
        "Datagrams sent above the underlay's path MTU, fragmented by the kernel",
        |s| s.tx_fragmented,
    ),
    (
        "link_gso_fallbacks",
        "Batches sent one datagram per message because the kernel refused UDP GSO for them",
        |s| s.tx_gso_fallbacks,
    ),
];

/// The planned links by state, and each link's series.
pub(super) fn register(registry: &mut Registry, status: &Status) {
    let by_state = ["up", "connecting", "stale", "failed"].map(|state| {
        let n = status.links.iter().filter(|l| l.state == state).count();
        (labels(&[("state", state)]), int(n))
    });
    series::<Gauge>(registry, "links", "Planned links by state", by_state);
    let rows: Vec<(Labels, &LinkStats, bool)> = status
        .links
        .iter()
        .map(|l| (link_labels(l), &l.stats, l.state == "up"))
        .collect();
    series::<Gauge>(
        registry,
        "link_up",
        "1 when the link had a handshake within 180 s",
        rows.iter().map(|(l, _, up)| (l.clone(), i64::from(*up))),
    );
    series::<FloatGauge>(
        registry,
        "link_last_handshake_timestamp_seconds",
        "Unix time of the link's last handshake (0: never)",
        rows.iter().map(|(l, s, _)| (l.clone(), unix(s))),
    );
    for (name, help, count) in COUNTERS {
        series::<Counter>(
            registry,
            name,
            help,
            rows.iter().map(|(l, s, _)| (l.clone(), count(s))),
        );
    }
    series::<Counter>(
        registry,
        "link_dropped_packets",
        "Packets dropped on the link, by reason",
        rows.iter().flat_map(|(l, s, _)| dropped(l, s)),
    );
    register_underlay(registry, &rows);
    series::<Gauge>(
        registry,
        "link_routing_cost",
        "The Babel rxcost braid gives babeld or BIRD for the link from its measured loss (label reason: clean, lossy, unmeasured)",
        status.links.iter().filter_map(|l| {
            let cost = l.routing_cost?;
            Some((
                with(&link_labels(l), "reason", cost.reason.name()),
                i64::from(cost.rxcost),
            ))
        }),
    );
}

/// The last handshake as Unix seconds (0: never).
fn unix(s: &LinkStats) -> f64 {
    s.last_handshake
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A link's drops, one series per reason.
fn dropped(base: &Labels, s: &LinkStats) -> [(Labels, u64); 4] {
    [
        ("bad_packet", s.dropped_bad_packet),
        ("unknown_key", s.dropped_unknown_key),
        ("replay", s.dropped_replay),
        ("no_route", s.dropped_no_route),
    ]
    .map(|(reason, n)| (with(base, "reason", reason), n))
}

/// What the link learnt of its underlay: the path MTU and keepalive loss, once known.
fn register_underlay(registry: &mut Registry, rows: &[(Labels, &LinkStats, bool)]) {
    series::<Gauge>(
        registry,
        "link_underlay_mtu_bytes",
        "The underlay's path MTU toward the peer, once the kernel reported one",
        rows.iter()
            .filter_map(|(l, s, _)| Some((l.clone(), i64::from(s.underlay_mtu?)))),
    );
    series::<FloatGauge>(
        registry,
        "link_keepalive_loss_ratio",
        "Share of the peer's liveness keepalives lost over the last 10 s (loss toward this node)",
        rows.iter()
            .filter_map(|(l, s, _)| Some((l.clone(), s.keepalive_loss?))),
    );
}
