//! The probe state machine: sending a request per path every interval, answering the
//! peer's requests, and turning answers into RTT, loss, delivery rate and up/down.
//!
//! Freshness: every probe carries the sender's *epoch* (random, fixed for the life of
//! its bond) and a *sequence* number that increases over all its paths.
//! - A reply is accepted only if it echoes our epoch and the sequence of a request we
//!   sent on that path and have not yet seen answered. So a recorded reply can never be
//!   replayed to mark a path up, and a late duplicate is ignored. Liveness, RTT, loss
//!   and rates come from replies only.
//! - The peer's epoch is *confirmed* by the first reply that passes that check (only the
//!   live peer can answer our fresh request). Requests in the confirmed epoch pass a
//!   1024-wide replay window; requests from another epoch (the peer restarted, or an
//!   attacker replays old ones) are answered, at most one per half interval per path,
//!   but change nothing. Their sequence numbers are remembered in a window of their own
//!   which becomes the replay window if that epoch is confirmed, so a request seen
//!   before confirmation cannot be replayed after it. This breaks the chicken-and-egg of two fresh ends without
//!   letting a replay do more than elicit a reply on a path we already have.

use crate::path::{DownReason, Origin, Path, PathSpec, PathState};
use crate::probe::{Kind, Probe};
use crate::rate::RateSample;
use crate::scheduler::Scheduler;
use crate::window::Window;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Most requests kept waiting for an answer per path; older ones count as lost.
const MAX_OUTSTANDING: usize = 64;
/// Delivery-rate samples span at least this much of the peer's time.
const RATE_INTERVAL_US: u64 = 200_000;
/// A sample that sent at least this share of a path's measured capacity may have
/// overflowed its queue: its losses do not count as the path's random loss.
const FULL_LOAD: f64 = 0.9;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Outstanding {
    pub seq: u64,
    pub sent_at: Instant,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_repeated_bytes: u64,
    pub tx_repeated_packets: u64,
    /// The queue (µs) the earliest-arrival model expected ahead of this request.
    pub queue_us: f64,
}

/// The counters at one answered request: ours when we sent it, the peer's when it
/// answered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateSnap {
    pub peer_ts_us: u64,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_repeated_bytes: u64,
    pub tx_repeated_packets: u64,
    pub sent_at: Instant,
}

#[derive(Debug, Clone)]
pub(crate) struct PathProbe {
    pub next_send: Instant,
    pub outstanding: VecDeque<Outstanding>,
    pub last_answer: Option<Instant>,
    pub last_sent: Option<Instant>,
    pub consecutive: u32,
    pub rate_snap: Option<RateSnap>,
    pub last_unconfirmed_reply: Option<Instant>,
    /// Loss of data packets from the counters (EWMA), next to probe loss.
    pub data_loss: f64,
    /// What this side sent on the path between the last two answered probes, bytes/s
    /// (status: the path's share of traffic).
    pub sent_rate: f64,
    /// The most packets the peer reported receiving on this path in a request.
    pub peer_rx_packets: u64,
    /// When probing of the path began (made, or brought back up by its uplink): the
    /// start of its silence when it never answered.
    pub since: Instant,
}

impl PathProbe {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            next_send: now,
            outstanding: VecDeque::new(),
            last_answer: None,
            last_sent: None,
            consecutive: 0,
            rate_snap: None,
            last_unconfirmed_reply: None,
            data_loss: 0.0,
            sent_rate: 0.0,
            peer_rx_packets: 0,
            since: now,
        }
    }
}

/// Counters of probe traffic, for status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ProbeCounters {
    /// Probe requests sent.
    pub sent_requests: u64,
    /// Probe replies sent (answers to the peer's requests).
    pub sent_replies: u64,
    /// The peer's requests that passed every check.
    pub accepted_requests: u64,
    /// Replies to this side's requests that passed every check.
    pub accepted_replies: u64,
    /// Failed the MAC: forged, corrupted or from the wrong key.
    pub bad_mac: u64,
    /// Not a well-formed probe (length, version, kind).
    pub malformed: u64,
    /// A request whose sequence was already seen in the confirmed epoch.
    pub replayed: u64,
    /// A reply to nothing we are waiting for (replayed, duplicate, or too late).
    pub unsolicited: u64,
    /// Requests from an unconfirmed epoch left unanswered to bound reflection.
    pub rate_limited: u64,
    /// Arrived on a path this side does not know.
    pub unknown_path: u64,
}

/// Why an incoming probe changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeDrop {
    /// Failed the MAC or is not a well-formed probe.
    #[error(transparent)]
    Invalid(#[from] crate::probe::ProbeError),
    /// A request whose sequence was already seen in the confirmed epoch.
    #[error("request replayed")]
    Replayed,
    /// A reply to no request this side is waiting for.
    #[error("reply to no outstanding request")]
    Unsolicited,
    /// A request from an epoch not yet confirmed, beyond the rate limit for those.
    #[error("request from an unconfirmed epoch, rate-limited")]
    RateLimited,
    /// A probe naming a path this side does not know.
    #[error("probe on an unknown path")]
    UnknownPath,
}

/// The link-wide probe state.
#[derive(Debug, Clone)]
pub(crate) struct ProbeSession {
    pub epoch: u64,
    pub next_seq: u64,
    pub start: Instant,
    pub peer_epoch: Option<u64>,
    pub replay: Window<16>,
    /// Requests seen from an epoch not yet confirmed, so that they cannot be replayed
    /// once it is.
    pub pending: Option<(u64, Window<16>)>,
    pub peer_scheduler: Option<Scheduler>,
    /// Whether the peer has ever sent an authenticated probe.
    pub peer_speaks_bond: bool,
    pub counters: ProbeCounters,
}

impl ProbeSession {
    pub(crate) fn new(epoch: u64, now: Instant) -> Self {
        Self {
            epoch,
            next_seq: 1,
            start: now,
            peer_epoch: None,
            replay: Window::default(),
            pending: None,
            peer_scheduler: None,
            peer_speaks_bond: false,
            counters: ProbeCounters::default(),
        }
    }

    /// Our clock as probes carry it: µs since this bond started.
    pub(crate) fn ts_us(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_micros() as u64
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        s
    }

    /// A probe carrying this path's attributes and counters; the caller sets kind and echo.
    fn base(&mut self, path: &Path, own_scheduler: Option<Scheduler>, now: Instant) -> Probe {
        Probe {
            kind: Kind::Request,
            scheduler: own_scheduler,
            configured: path.origin == Origin::Configured,
            path_key: path.key,
            priority: path.spec.priority,
            weight: path.spec.weight.unwrap_or(0),
            held_us: 0,
            epoch: self.epoch,
            seq: self.take_seq(),
            ts_us: self.ts_us(now),
            echo_epoch: 0,
            echo_seq: 0,
            rx_packets: path.counters.rx_packets,
            rx_bytes: path.counters.rx_bytes,
            rate_cap_bps: path.spec.rate_cap_bps.unwrap_or(0),
        }
    }

    /// A new request on `path`, recorded as outstanding with the queue (µs) the
    /// earliest-arrival model expects ahead of it.
    pub(crate) fn request(
        &mut self,
        path: &mut Path,
        own_scheduler: Option<Scheduler>,
        queue_us: f64,
        now: Instant,
    ) -> Probe {
        let p = self.base(path, own_scheduler, now);
        if path.probe.outstanding.len() >= MAX_OUTSTANDING {
            path.probe.outstanding.pop_front();
            path.loss.record(true);
            path.probe.consecutive = 0;
        }
        path.probe.outstanding.push_back(Outstanding {
            seq: p.seq,
            sent_at: now,
            tx_bytes: path.counters.tx_bytes,
            tx_packets: path.counters.tx_packets,
            tx_repeated_bytes: path.counters.tx_repeated_bytes,
            tx_repeated_packets: path.counters.tx_repeated_packets,
            queue_us,
        });
        path.probe.last_sent = Some(now);
        self.counters.sent_requests += 1;
        p
    }

    /// The answer to `req` on `path`.
    pub(crate) fn reply(
        &mut self,
        path: &Path,
        req: &Probe,
        own_scheduler: Option<Scheduler>,
        now: Instant,
    ) -> Probe {
        let mut p = self.base(path, own_scheduler, now);
        p.kind = Kind::Reply;
        p.echo_epoch = req.epoch;
        p.echo_seq = req.seq;
        self.counters.sent_replies += 1;
        p
    }

    /// Remembers the sequence of an authenticated request from an unconfirmed epoch;
    /// `Err` if it was seen before.
    pub(crate) fn note_unconfirmed(&mut self, req: &Probe) -> Result<(), ProbeDrop> {
        match self.pending.as_mut() {
            Some((epoch, w)) if *epoch == req.epoch => {
                if w.check_and_mark(req.seq).is_err() {
                    self.counters.replayed += 1;
                    return Err(ProbeDrop::Replayed);
                }
            }
            _ => {
                let mut w = Window::default();
                let _ = w.check_and_mark(req.seq);
                self.pending = Some((req.epoch, w));
            }
        }
        Ok(())
    }

    /// Checks a request. `Ok(true)`: accepted, take its information and answer;
    /// `Ok(false)`: unconfirmed epoch, answer only; `Err`: drop.
    pub(crate) fn check_request(
        &mut self,
        path: &mut Path,
        req: &Probe,
        interval: Duration,
        now: Instant,
    ) -> Result<bool, ProbeDrop> {
        if self.peer_epoch == Some(req.epoch) {
            if self.replay.check_and_mark(req.seq).is_err() {
                self.counters.replayed += 1;
                return Err(ProbeDrop::Replayed);
            }
            self.counters.accepted_requests += 1;
            return Ok(true);
        }
        let p = &mut path.probe;
        if p.last_unconfirmed_reply
            .is_some_and(|t| now.saturating_duration_since(t) < interval / 2)
        {
            self.counters.rate_limited += 1;
            return Err(ProbeDrop::RateLimited);
        }
        p.last_unconfirmed_reply = Some(now);
        Ok(false)
    }

    /// Checks a reply and, if it answers an outstanding request, applies it to `path`:
    /// RTT, loss, rates, and the consecutive-answer count. Returns the RTT sample.
    pub(crate) fn accept_reply(
        &mut self,
        path: &mut Path,
        rep: &Probe,
        now: Instant,
    ) -> Result<Duration, ProbeDrop> {
        if rep.echo_epoch != self.epoch {
            self.counters.unsolicited += 1;
            return Err(ProbeDrop::Unsolicited);
        }
        let Some(i) = path
            .probe
            .outstanding
            .iter()
            .position(|o| o.seq == rep.echo_seq)
        else {
            self.counters.unsolicited += 1;
            return Err(ProbeDrop::Unsolicited);
        };
        if self.peer_epoch != Some(rep.epoch) {
            // Only the live peer can answer our fresh request: its epoch is current.
            self.peer_epoch = Some(rep.epoch);
            self.replay = match self.pending.take() {
                Some((e, w)) if e == rep.epoch => w,
                _ => Window::default(),
            };
        }
        if self.replay.check_and_mark(rep.seq).is_err() {
            self.counters.replayed += 1;
            return Err(ProbeDrop::Replayed);
        }
        let Some(o) = path.probe.outstanding.remove(i) else {
            return Err(ProbeDrop::Unsolicited);
        };
        self.counters.accepted_replies += 1;
        let rtt = now
            .saturating_duration_since(o.sent_at)
            .saturating_sub(Duration::from_micros(u64::from(rep.held_us)));
        path.rtt.update(rtt, now);
        // One-way, toward the peer: its clock when the request arrived less ours when it
        // left (plus the clocks' offset, the same on every path).
        let sent_us = self.ts_us(o.sent_at) as i64;
        let arrived_us = (rep.ts_us as i64).saturating_sub(i64::from(rep.held_us));
        path.owd_out
            .update(arrived_us.saturating_sub(sent_us), o.queue_us, now);
        if !path.loss.answered() {
            // The path's first answer: probes sent before this one went out while the
            // peer may not have been listening yet; they are not counted as lost.
            path.probe.outstanding.retain(|x| x.sent_at > o.sent_at);
        }
        path.loss.record(false);
        path.probe.consecutive = path.probe.consecutive.saturating_add(1);
        path.probe.last_answer = Some(now);
        rate_sample(path, rep, &o, now);
        Ok(rtt)
    }
}

/// Updates the path's delivery-rate and capacity estimates from an accepted reply.
fn rate_sample(path: &mut Path, rep: &Probe, o: &Outstanding, now: Instant) {
    let snap = RateSnap {
        peer_ts_us: rep.ts_us,
        rx_bytes: rep.rx_bytes,
        rx_packets: rep.rx_packets,
        tx_bytes: o.tx_bytes,
        tx_packets: o.tx_packets,
        tx_repeated_bytes: o.tx_repeated_bytes,
        tx_repeated_packets: o.tx_repeated_packets,
        sent_at: o.sent_at,
    };
    let Some(prev) = path.probe.rate_snap else {
        path.probe.rate_snap = Some(snap);
        return;
    };
    if snap.peer_ts_us < prev.peer_ts_us
        || snap.rx_bytes < prev.rx_bytes
        || snap.sent_at < prev.sent_at
    {
        // The peer restarted or replies crossed: start over from here.
        path.probe.rate_snap = Some(snap);
        return;
    }
    let peer_dt = snap.peer_ts_us - prev.peer_ts_us;
    if peer_dt < RATE_INTERVAL_US {
        return;
    }
    let our_dt = snap
        .sent_at
        .saturating_duration_since(prev.sent_at)
        .as_secs_f64();
    // The peer counts what decrypted: of a repeated packet, one copy. Counted as
    // delivered on the wire, the second copy is assumed to have arrived too.
    let repeated_bytes = snap
        .tx_repeated_bytes
        .saturating_sub(prev.tx_repeated_bytes);
    // Over the longer of the two intervals: jitter can shorten the peer's (both probes
    // delayed differently), which would show more delivered than the path carries.
    let span = (peer_dt as f64 / 1e6).max(our_dt);
    let delivered = ((snap.rx_bytes - prev.rx_bytes) + repeated_bytes) as f64 / span;
    let sent = if our_dt > 0.0 {
        snap.tx_bytes.saturating_sub(prev.tx_bytes) as f64 / our_dt
    } else {
        0.0
    };
    path.probe.sent_rate = sent;
    let tx_pkts = snap.tx_packets.saturating_sub(prev.tx_packets);
    let pairs = snap
        .tx_repeated_packets
        .saturating_sub(prev.tx_repeated_packets)
        .min(tx_pkts / 2);
    let unique = tx_pkts - pairs;
    let rx_pkts = snap.rx_packets.saturating_sub(prev.rx_packets);
    if unique > 0 {
        let l = 1.0 - (rx_pkts as f64 / unique as f64).min(1.0);
        path.probe.data_loss = 0.75 * path.probe.data_loss + 0.25 * l;
    }
    let queueing = if path.owd_out.samples() >= 2 {
        path.owd_out.queueing()
    } else {
        match (path.rtt.srtt(), path.rtt.min()) {
            (Some(s), Some(m)) => s > m + (m / 2).max(Duration::from_millis(5)),
            _ => false,
        }
    };
    // The path's own (random) loss, per copy, from samples that cannot have overflowed
    // its queue: no queue, not heavy loss, and less than [`FULL_LOAD`] of a measured
    // capacity sent. Every unique packet lost is charged to the copies sent once
    // (probes, packets not repeated), which overstates it while repeating (a repeated
    // packet is lost only when both copies are) and so keeps repeating.
    let lost = unique.saturating_sub(rx_pkts);
    let heavy = lost as f64 > unique as f64 * crate::rate::HEAVY_LOSS;
    let full = path
        .capacity
        .measured()
        .is_some_and(|c| sent >= c * FULL_LOAD);
    if !queueing && !heavy && !full {
        let singles = tx_pkts - 2 * pairs;
        let lost = lost.min(singles);
        path.loss_rate.record(singles, singles - lost, now);
    }
    let overestimated_queue = match (path.owd_out.residual_us(), path.owd_out.base_us()) {
        (Some(r), Some(b)) => r < b as f64 - path.owd_out.queueing_bar_us(),
        _ => false,
    };
    path.capacity.update(RateSample {
        sent,
        delivered,
        packets: unique,
        lost: unique.saturating_sub(rx_pkts),
        queueing,
        overestimated_queue,
    });
    path.probe.rate_snap = Some(snap);
}

/// Applies the attributes a configured peer sends for a path this side learned.
pub(crate) fn adopt_attributes(path: &mut Path, p: &Probe, now: Instant) {
    if !p.configured || path.origin == Origin::Configured {
        return;
    }
    path.key = p.path_key;
    path.set_spec(
        PathSpec {
            weight: (p.weight != 0).then_some(p.weight),
            priority: p.priority,
            rate_cap_bps: (p.rate_cap_bps != 0).then_some(p.rate_cap_bps),
        },
        now,
    );
}

/// What changed in a path's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    Up,
    Down(DownReason),
}

/// After an accepted answer: a failed path starts probing again, a probing path with
/// enough consecutive answers comes up.
pub(crate) fn on_answer(path: &mut Path, up_after: u32) -> Transition {
    match (path.state, path.down_reason) {
        (PathState::Down, Some(DownReason::NoAnswer)) => {
            path.state = PathState::Probing;
            path.down_reason = None;
            path.probe.consecutive = path.probe.consecutive.min(1);
            if up_after <= 1 {
                path.state = PathState::Up;
                return Transition::Up;
            }
            Transition::None
        }
        (PathState::Probing, _) if path.probe.consecutive >= up_after => {
            path.state = PathState::Up;
            Transition::Up
        }
        _ => Transition::None,
    }
}

/// How long a request waits for its answer before it counts as lost: the failover time,
/// or before the path's first RTT sample `longest` (so a path slower than the failover
/// time, a GEO satellite's 600 ms, can be answered at all and come up).
pub(crate) fn lost_after(path: &Path, failover_after: Duration, longest: Duration) -> Duration {
    if path.rtt.srtt().is_some() {
        failover_after
    } else {
        failover_after.max(longest)
    }
}

/// On a timer: requests unanswered for `lost_after` count as lost; a path whose last
/// answer is older than `failover_after` goes down.
pub(crate) fn on_timer(
    path: &mut Path,
    failover_after: Duration,
    lost_after: Duration,
    now: Instant,
) -> Transition {
    while let Some(o) = path.probe.outstanding.front() {
        if o.sent_at + lost_after > now {
            break;
        }
        path.probe.outstanding.pop_front();
        path.loss.record(true);
        path.probe.consecutive = 0;
    }
    let silent = path
        .probe
        .last_answer
        .is_some_and(|a| a + failover_after <= now);
    if silent && matches!(path.state, PathState::Up | PathState::Probing) {
        path.state = PathState::Down;
        path.down_reason = Some(DownReason::NoAnswer);
        path.probe.consecutive = 0;
        path.credit = 0.0;
        return Transition::Down(DownReason::NoAnswer);
    }
    Transition::None
}

/// The earliest time [`on_timer`] has something to do for this path.
pub(crate) fn next_deadline(
    path: &Path,
    failover_after: Duration,
    lost_after: Duration,
) -> Option<Instant> {
    let lost = path
        .probe
        .outstanding
        .front()
        .map(|o| o.sent_at + lost_after);
    let fail = match path.state {
        PathState::Up | PathState::Probing => path.probe.last_answer.map(|a| a + failover_after),
        PathState::Down => None,
    };
    [Some(path.probe.next_send), lost, fail]
        .into_iter()
        .flatten()
        .min()
}
