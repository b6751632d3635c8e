//! Status of a bonded link, as it appears in `braid status` JSON.

use crate::arrival::Excluded;
use crate::path::{Counters, DownReason, PathId, PathState};
use crate::prober::ProbeCounters;
use crate::reorder::ReorderCounters;
use crate::scheduler::Scheduler;
use std::net::SocketAddr;

/// One path of a bonded link (docs/status-json.md, `bond.paths`; docs/metrics.md).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PathStatus {
    /// This side's number for the path (0, 1, … in configured order).
    pub id: PathId,
    /// What people call the path: its uplink (interface or source) for a configured path,
    /// the peer's address for a learned one. The bond knows only `pathN` and the address;
    /// the link names configured paths after their uplinks.
    pub name: String,
    /// The identity both ends use for this path (the configured side's id).
    pub key: u32,
    /// "configured" or "learned".
    pub origin: &'static str,
    /// The peer's address, for a learned path.
    pub peer: Option<SocketAddr>,
    /// Whether the path is probing, up or down.
    pub state: PathState,
    /// Why the path is down; `None` unless it is.
    pub down_reason: Option<DownReason>,
    /// Smoothed round-trip time from probes (RFC 6298 SRTT), ms.
    pub rtt_ms: Option<f64>,
    /// Smallest round-trip time of the last 10 s, ms.
    pub min_rtt_ms: Option<f64>,
    /// Round-trip jitter (RFC 3550 style), ms.
    pub jitter_ms: f64,
    /// Probe loss over the last 128 probes since the path's first answer, 0..=1 (0 before
    /// any answer: see `loss_samples`).
    pub loss: f64,
    /// How many probe outcomes `loss` rests on (0: no probe answered yet).
    pub loss_samples: u32,
    /// Data loss from the peer's received counters (smoothed), 0..=1.
    pub data_loss: f64,
    /// What the peer received from this path, bit/s, over the last sample.
    pub delivery_rate_bps: f64,
    /// What this side sent on the path over the last probe interval, bit/s.
    pub sent_bps: f64,
    /// This path's share of what the link sent over the last probe interval, 0..=1 (0 for a
    /// path that is down).
    pub share: f64,
    /// The path's capacity once a sample found its bottleneck (a queue or heavy loss),
    /// bit/s; `None` before: a path that never carried enough to fill it has no measured
    /// capacity.
    pub capacity_bps: Option<f64>,
    /// At least this, bit/s: the largest delivery rate seen recently with the probing
    /// gain, never below 128 kbit/s (the weighted scheduler's weight when none is set);
    /// the capacity once measured. `None` before any traffic.
    pub capacity_lower_bound_bps: Option<f64>,
    /// The rate `earliest-arrival` drains the path's queue at, bit/s: the capacity, else
    /// the slowest measured path's (10 Mbit/s if none), capped at the rate cap.
    pub rate_bps: f64,
    /// Bytes sent and not yet drained at `rate_bps`, as time (ms).
    pub queue_ms: f64,
    /// One-way delay toward the peer above the fastest path's (base delays over 10 s), ms.
    pub send_delay_ms: Option<f64>,
    /// Jitter of the one-way delay toward the peer (RFC 3550 style), ms.
    pub send_jitter_ms: f64,
    /// One-way delay from the peer above the fastest path's, ms.
    pub receive_delay_ms: Option<f64>,
    /// One-way loss toward the peer over about the last 4000 packets, 0..=1.
    pub send_loss: f64,
    /// How much later than on the best path a 1400-byte packet sent now would arrive on
    /// this one, as `earliest-arrival` expects (queue, rate and delay), ms; live paths.
    pub arrival_ms: Option<f64>,
    /// `earliest-arrival` sends each packet twice on this path (it is lossy).
    pub repeating: bool,
    /// Why `earliest-arrival` leaves this live path out while a better one is up.
    pub excluded: Option<Excluded>,
    /// The configured weight for the weighted scheduler; `None`: measured.
    pub weight: Option<u32>,
    /// The configured priority for the backup scheduler; lower is preferred.
    pub priority: u32,
    /// The configured rate cap (`rate_mbit`), bit/s.
    pub rate_cap_bps: Option<u64>,
    /// Packets and bytes sent and received on the path (flattened into the object).
    #[serde(flatten)]
    pub counters: Counters,
    /// Milliseconds since the last probe answer.
    pub last_probe_answer_ms_ago: Option<f64>,
    /// Milliseconds since the last probe request sent.
    pub last_probe_sent_ms_ago: Option<f64>,
}

/// The receive side's reorder buffer, shared by all paths of a link.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReorderStatus {
    /// Whether packets are put back in order (the peer spreads one flow over paths).
    pub enabled: bool,
    /// How long a gap is waited for now, ms (from the paths' delay spread).
    pub wait_ms: f64,
    /// The largest reordering the buffer saw recently (halving every 10 s), ms: how
    /// long filled gaps were waited for and how late packets after a skipped gap came.
    pub observed_ms: f64,
    /// Packets waiting now.
    pub buffered: usize,
    /// The buffer's counters (flattened into the object).
    #[serde(flatten)]
    pub counters: ReorderCounters,
}

/// A bonded link's scheduler, reorder buffer, probes and paths.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BondStatus {
    /// The scheduler in use for sending.
    pub scheduler: Scheduler,
    /// "configured", "peer" (the far side follows the configured side) or "default".
    pub scheduler_source: &'static str,
    /// Whether the peer answers probes (false: plain WireGuard, one path at a time).
    pub peer_probes: bool,
    /// The reorder buffer.
    pub reorder: ReorderStatus,
    /// Probes sent, accepted and refused.
    pub probes: ProbeCounters,
    /// Every path, configured ones first.
    pub paths: Vec<PathStatus>,
}
