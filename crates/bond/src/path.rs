//! A path: one underlay route between the two ends of a link (one local socket or source
//! address on this side, one peer address). Its configuration, state and measurements.

use crate::arrival::VirtualQueue;
use crate::loss::{LossRate, LossWindow};
use crate::owd::OneWayDelay;
use crate::prober::PathProbe;
use crate::rate::{CapacityEstimator, TokenBucket};
use crate::rtt::RttEstimator;
use std::net::SocketAddr;
use std::time::Instant;

/// A path's identity on this side of the link. Configured paths are numbered 0, 1, …
/// in the order given; learned paths get the next free numbers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct PathId(pub u32);

impl std::fmt::Display for PathId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "path{}", self.0)
    }
}

/// What the configuration says about a path (see `braid_model::extensions::PathConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct PathSpec {
    /// Share of traffic for the weighted scheduler; `None`: weigh by measured capacity.
    pub weight: Option<u32>,
    /// Lower is preferred by the backup scheduler.
    pub priority: u32,
    /// Send at most this many bits per second on the path.
    pub rate_cap_bps: Option<u64>,
}

impl From<&braid_model::extensions::PathConfig> for PathSpec {
    fn from(c: &braid_model::extensions::PathConfig) -> Self {
        Self {
            weight: c.weight,
            priority: c.priority,
            rate_cap_bps: c.rate_mbit.map(|m| u64::from(m) * 1_000_000),
        }
    }
}

/// Whether the schedulers may use a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathState {
    /// Not (or no longer) confirmed by enough consecutive probe answers; not used while
    /// another path is up.
    Probing,
    /// Answering probes; used.
    Up,
    /// Out: see [`DownReason`].
    Down,
}

/// Why a path is down (`down_reason` in status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DownReason {
    /// `path_down` was called (link down, route removed); not probed until `path_up`.
    Admin,
    /// Probes went unanswered for the failover time; still probed.
    NoAnswer,
}

/// Where a path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// From this side's configuration; the worker owns a socket for it.
    Configured,
    /// Learned from the peer's authenticated traffic arriving from this address.
    Learned(SocketAddr),
}

/// Traffic on one path since it was added, as in `braid status` (bytes are wire sizes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Everything sent on the path (data, probes, control; both copies of a repeated
    /// packet).
    pub tx_bytes: u64,
    /// Packets sent on the path (as `tx_bytes`).
    pub tx_packets: u64,
    /// Second copies sent by `earliest-arrival` on a lossy path (part of `tx_*`).
    pub tx_repeated_bytes: u64,
    /// Second copies sent on a lossy path (as `tx_repeated_bytes`).
    pub tx_repeated_packets: u64,
    /// Bytes of authenticated datagrams received on the path.
    pub rx_bytes: u64,
    /// Authenticated datagrams received on the path.
    pub rx_packets: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Path {
    pub id: PathId,
    /// The identity both ends agree on, used by the flow scheduler's rendezvous hash
    /// so both directions of a flow take the same path: the configured side's id.
    pub key: u32,
    pub spec: PathSpec,
    pub origin: Origin,
    pub state: PathState,
    pub down_reason: Option<DownReason>,
    pub rtt: RttEstimator,
    pub loss: LossWindow,
    pub capacity: CapacityEstimator,
    /// One-way delay toward the peer (from replies to our probes).
    pub owd_out: OneWayDelay,
    /// One-way delay from the peer (from its probe requests).
    pub owd_in: OneWayDelay,
    /// One-way loss toward the peer over about the last 4000 packets.
    pub loss_rate: LossRate,
    /// Bytes sent and not yet drained at the estimated rate (earliest-arrival).
    pub queue: VirtualQueue,
    pub bucket: Option<TokenBucket>,
    /// The weighted scheduler's byte credit.
    pub credit: f64,
    pub counters: Counters,
    /// Last authenticated packet (data or probe) received on the path.
    pub last_heard: Option<Instant>,
    pub probe: PathProbe,
}

impl Path {
    pub(crate) fn new(id: PathId, spec: PathSpec, origin: Origin, now: Instant) -> Self {
        Self {
            id,
            key: id.0,
            spec,
            origin,
            state: PathState::Probing,
            down_reason: None,
            rtt: RttEstimator::default(),
            loss: LossWindow::default(),
            capacity: CapacityEstimator::default(),
            owd_out: OneWayDelay::default(),
            owd_in: OneWayDelay::default(),
            loss_rate: LossRate::default(),
            queue: VirtualQueue::default(),
            bucket: spec.rate_cap_bps.map(|r| TokenBucket::new(r, now)),
            credit: 0.0,
            counters: Counters::default(),
            last_heard: None,
            probe: PathProbe::new(now),
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.state == PathState::Up
    }

    pub(crate) fn is_admin_down(&self) -> bool {
        self.down_reason == Some(DownReason::Admin)
    }

    pub(crate) fn set_spec(&mut self, spec: PathSpec, now: Instant) {
        if spec.rate_cap_bps != self.spec.rate_cap_bps {
            self.bucket = spec.rate_cap_bps.map(|r| TokenBucket::new(r, now));
        }
        self.spec = spec;
    }

    /// The most recent sign of life: a probe answer or authenticated traffic.
    pub(crate) fn last_sign_of_life(&self) -> Option<Instant> {
        match (self.probe.last_answer, self.last_heard) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}
