//! [`Bond`]: one link's paths, scheduler, probes and reorder buffer, driven by a worker.

use crate::arrival::{self, Role};
use crate::path::{DownReason, Origin, Path, PathId, PathSpec, PathState};
use crate::probe::{Kind, PROBE_LEN, ProbeKeys};
use crate::prober::{self, ProbeDrop, ProbeSession, Transition};
use crate::reorder::{Released, ReorderBuffer, ReorderConfig, Verdict};
use crate::scheduler::{self, ArrivalParams, MAX_PATHS, Picks, SchedState, Scheduler};
use crate::status::{BondStatus, PathStatus, ReorderStatus};
use crate::wg;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// When the receiver reorders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReorderMode {
    /// When the peer spreads single flows over paths (round-robin, weighted,
    /// earliest-arrival).
    Auto,
    /// Always.
    On,
    /// Never: packets are delivered as they come.
    Off,
}

/// How a bond probes, fails over and reorders; [`Default`] gives braid's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct BondConfig {
    /// The scheduler for sending. `None`: use the one the peer announces (the far side of
    /// a bond needs no configuration), `flow` until it does.
    pub scheduler: Option<Scheduler>,
    /// A probe request goes out on every path this often.
    pub probe_interval: Duration,
    /// A path whose last probe answer is older than this goes down (target; it is
    /// stretched to 2·RTT + 4·RTTVAR + interval on long paths, up to `failover_max`).
    pub failover: Duration,
    /// The most `failover` is stretched to on long paths.
    pub failover_max: Duration,
    /// Consecutive answers that bring a probing path up.
    pub up_after: u32,
    /// When the receiver holds out-of-order packets.
    pub reorder: ReorderMode,
    /// The reorder buffer's limits.
    pub reorder_buffer: ReorderConfig,
    /// Bounds of the reorder wait, which otherwise follows the paths' one-way delay
    /// spread. The upper bound is also the spread beyond which `earliest-arrival` leaves
    /// a slow path out while a faster one is up (its packets would come after the wait).
    pub reorder_wait_min: Duration,
    /// The upper bound of the reorder wait (see `reorder_wait_min`).
    pub reorder_wait_max: Duration,
    /// `earliest-arrival`: send each packet twice on a path whose loss exceeds the
    /// cleanest path's (true), or leave such a path out (false).
    pub repeat_on_lossy_paths: bool,
    /// A learned path with no authenticated traffic for this long is forgotten.
    pub forget_learned_after: Duration,
}

impl Default for BondConfig {
    fn default() -> Self {
        Self {
            scheduler: None,
            probe_interval: Duration::from_millis(50),
            // With probes every 50 ms, the gap a cut leaves is this plus up to one
            // interval: 250 ms keeps it under the 300 ms target (bench/bond.py, case d).
            failover: Duration::from_millis(250),
            failover_max: Duration::from_secs(1),
            up_after: 3,
            reorder: ReorderMode::Auto,
            reorder_buffer: ReorderConfig::default(),
            reorder_wait_min: Duration::from_millis(1),
            reorder_wait_max: Duration::from_millis(100),
            repeat_on_lossy_paths: true,
            forget_learned_after: Duration::from_secs(120),
        }
    }
}

/// Why a path operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BondError {
    /// The link already has [`MAX_PATHS`] paths.
    #[error("a link has at most {MAX_PATHS} paths")]
    TooManyPaths,
    /// No path has this id.
    #[error("{0} is not a path of this link")]
    NoSuchPath(PathId),
}

/// A probe to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The path (socket) to send it on.
    pub path: PathId,
    /// For a learned path: the peer address to send to (configured paths: the socket's
    /// usual destination, the peer's endpoint).
    pub to: Option<SocketAddr>,
    /// The probe, authenticated ([`crate::probe`]'s wire format).
    pub payload: [u8; PROBE_LEN],
}

/// Something worth logging or acting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The path came up: enough consecutive probe answers.
    PathUp(PathId),
    /// The path went down, and why.
    PathDown(PathId, DownReason),
    /// The peer probed from a new address: a learned path with this id.
    PathLearned(PathId, SocketAddr),
    /// A learned path was silent for `forget_learned_after` and is gone.
    PathForgotten(PathId),
}

/// One bonded link. See the crate docs for the order a worker calls things in.
#[derive(Debug)]
pub struct Bond {
    cfg: BondConfig,
    keys: ProbeKeys,
    flow_seed: u64,
    paths: Vec<Path>,
    next_id: u32,
    sched: SchedState,
    probes: ProbeSession,
    reorder: ReorderBuffer,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

/// Most probes and events queued before the oldest are dropped (the worker drains them
/// after every call; this only bounds memory if it does not).
const MAX_QUEUED: usize = 1024;

impl Bond {
    /// A bond with no paths yet. `epoch` must be random (it makes this instance's probes
    /// distinguishable from any earlier instance's).
    pub fn new(cfg: BondConfig, keys: ProbeKeys, epoch: u64, now: Instant) -> Self {
        let reorder = ReorderBuffer::new(
            cfg.reorder_buffer,
            cfg.reorder == ReorderMode::On,
            cfg.reorder_wait_min,
        );
        Self {
            flow_seed: keys.flow_seed(),
            keys,
            paths: Vec::new(),
            next_id: 0,
            sched: SchedState::default(),
            probes: ProbeSession::new(epoch, now),
            reorder,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            cfg,
        }
    }

    // ---- paths ----

    /// Adds a configured path (this side owns a socket for it). Probing starts at once.
    pub fn add_path(&mut self, spec: PathSpec, now: Instant) -> Result<PathId, BondError> {
        self.insert(spec, Origin::Configured, now)
    }

    fn insert(
        &mut self,
        spec: PathSpec,
        origin: Origin,
        now: Instant,
    ) -> Result<PathId, BondError> {
        if self.paths.len() >= MAX_PATHS && matches!(origin, Origin::Learned(_)) {
            // A roaming peer can leave stale learned paths behind: make room by
            // forgetting the learned path that is not up and was heard from longest ago.
            let victim = self
                .paths
                .iter()
                .filter(|p| matches!(p.origin, Origin::Learned(_)) && !p.is_up())
                .min_by_key(|p| p.last_sign_of_life())
                .map(|p| p.id);
            if let Some(id) = victim {
                self.paths.retain(|p| p.id != id);
                self.event(Event::PathForgotten(id));
            }
        }
        if self.paths.len() >= MAX_PATHS {
            return Err(BondError::TooManyPaths);
        }
        let id = PathId(self.next_id);
        self.next_id += 1;
        self.paths.push(Path::new(id, spec, origin, now));
        Ok(id)
    }

    /// The path for authenticated traffic from `addr`, learned if new. Call it only
    /// after a data message from `addr` decrypted (never for unauthenticated input).
    /// A learned path is up at once (it just delivered) and, once the peer is known to
    /// probe, probed like any other.
    pub fn learn_path(&mut self, addr: SocketAddr, now: Instant) -> Result<PathId, BondError> {
        if let Some(id) = self.path_by_addr(addr) {
            return Ok(id);
        }
        let id = self.insert(PathSpec::default(), Origin::Learned(addr), now)?;
        if let Some(p) = self.paths.last_mut() {
            p.state = PathState::Up;
            p.last_heard = Some(now);
            p.probe.last_answer = Some(now);
        }
        self.event(Event::PathLearned(id, addr));
        Ok(id)
    }

    /// The learned path whose peer address is `addr`.
    pub fn path_by_addr(&self, addr: SocketAddr) -> Option<PathId> {
        self.paths
            .iter()
            .find(|p| p.origin == Origin::Learned(addr))
            .map(|p| p.id)
    }

    /// The peer address of a learned path.
    pub fn path_addr(&self, id: PathId) -> Option<SocketAddr> {
        match self.path(id)?.origin {
            Origin::Learned(a) => Some(a),
            Origin::Configured => None,
        }
    }

    /// Every path's id, configured and learned, in table order.
    pub fn path_ids(&self) -> impl Iterator<Item = PathId> + '_ {
        self.paths.iter().map(|p| p.id)
    }

    /// Path `id`'s state; `None` for no such path.
    pub fn path_state(&self, id: PathId) -> Option<PathState> {
        self.path(id).map(|p| p.state)
    }

    /// Takes a path out for good (its uplink left the configuration): nothing is sent on
    /// it again, and its id is never reused (a path added later gets a new one). Errors: [`BondError::NoSuchPath`].
    pub fn remove_path(&mut self, id: PathId) -> Result<(), BondError> {
        let i = self.index(id)?;
        self.paths.remove(i);
        Ok(())
    }

    /// Changes the configured scheduler (configuration reload); `None` follows the peer's.
    pub fn set_scheduler(&mut self, scheduler: Option<Scheduler>, now: Instant) {
        if self.cfg.scheduler != scheduler {
            self.cfg.scheduler = scheduler;
            self.sched = SchedState::default();
            self.update_reorder(now);
        }
    }

    /// When a path last showed the peer alive: the newest probe answer on any path (an
    /// answer is authenticated with the link's probe keys, so only the peer can make it).
    /// The link counts it as traffic from the peer: a bonded link whose peer sends no
    /// keepalives still shows it alive while its paths answer.
    pub fn last_answer(&self) -> Option<Instant> {
        self.paths.iter().filter_map(|p| p.probe.last_answer).max()
    }

    /// Changes a path's weight, priority or cap (configuration reload).
    pub fn set_path_spec(
        &mut self,
        id: PathId,
        spec: PathSpec,
        now: Instant,
    ) -> Result<(), BondError> {
        let i = self.index(id)?;
        self.paths[i].set_spec(spec, now);
        Ok(())
    }

    /// The path's interface went down or its route went away: out at once, and not
    /// probed until [`path_up`](Self::path_up).
    pub fn path_down(&mut self, id: PathId) -> Result<(), BondError> {
        let i = self.index(id)?;
        let p = &mut self.paths[i];
        if p.is_admin_down() {
            return Ok(());
        }
        p.state = PathState::Down;
        p.down_reason = Some(DownReason::Admin);
        p.probe.consecutive = 0;
        p.probe.outstanding.clear();
        p.credit = 0.0;
        p.queue.clear();
        self.event(Event::PathDown(id, DownReason::Admin));
        Ok(())
    }

    /// The path's interface and route are back: probe it now; it comes up after
    /// `up_after` answers.
    pub fn path_up(&mut self, id: PathId, now: Instant) -> Result<(), BondError> {
        let i = self.index(id)?;
        let p = &mut self.paths[i];
        if p.is_admin_down() {
            p.state = PathState::Probing;
            p.down_reason = None;
            p.probe.last_answer = None;
            p.probe.next_send = now;
            p.probe.since = now;
        }
        Ok(())
    }

    // ---- sending ----

    /// The scheduler in use: configured, else the peer's, else `flow`.
    pub fn scheduler(&self) -> Scheduler {
        self.cfg
            .scheduler
            .or(self.probes.peer_scheduler)
            .unwrap_or(Scheduler::Flow)
    }

    /// The path(s) to send this plaintext IP packet on, its bytes accounted to them.
    /// Encapsulate once and send the same datagram once per entry returned: on every
    /// path for `redundant`, and twice on the same path when `earliest-arrival` repeats
    /// packets on a lossy one (the peer's replay window drops the second copy that
    /// arrives).
    pub fn pick(&mut self, packet: &[u8], now: Instant) -> Picks {
        let wire = wg::data_wire_len(packet.len());
        let params = self.arrival_params();
        let picks = if self.probes.peer_speaks_bond {
            scheduler::pick(
                self.scheduler(),
                &mut self.sched,
                &mut self.paths,
                packet,
                wire,
                self.flow_seed,
                params,
                now,
            )
        } else {
            // A peer that does not probe is plain WireGuard: one path, the one it was
            // last heard on (or the first configured one).
            scheduler::fallback(&self.paths)
        };
        for (k, id) in picks.iter().enumerate() {
            self.record_sent(*id, wire, now);
            if picks[..k].contains(id)
                && let Ok(i) = self.index(*id)
            {
                let c = &mut self.paths[i].counters;
                c.tx_repeated_bytes += wire as u64;
                c.tx_repeated_packets += 1;
            }
        }
        picks
    }

    fn arrival_params(&self) -> ArrivalParams {
        ArrivalParams {
            spread_limit: self.cfg.reorder_wait_max.as_secs_f64(),
            repeat: self.cfg.repeat_on_lossy_paths,
        }
    }

    /// The one path for a message that is not user data (handshake, cookie, keepalive):
    /// the best live path by priority then RTT, else the fallback.
    pub fn pick_control(&self) -> Option<PathId> {
        if !self.probes.peer_speaks_bond {
            return scheduler::fallback(&self.paths).first().copied();
        }
        self.paths
            .iter()
            .filter(|p| p.is_up())
            .min_by_key(|p| (p.spec.priority, p.rtt.srtt().unwrap_or(Duration::MAX), p.id))
            .map(|p| p.id)
            .or_else(|| scheduler::fallback(&self.paths).first().copied())
    }

    /// Accounts bytes sent on a path outside [`pick`](Self::pick) (handshakes etc.).
    pub fn record_sent(&mut self, id: PathId, wire_len: usize, now: Instant) {
        if let Ok(i) = self.index(id) {
            let rate = arrival::queue_rate(&self.paths, i);
            let p = &mut self.paths[i];
            let cap = arrival::queue_cap(p);
            p.queue.add(wire_len, rate, cap, now);
            p.counters.tx_bytes += wire_len as u64;
            p.counters.tx_packets += 1;
            if let Some(b) = p.bucket.as_mut() {
                b.consume(wire_len, now);
            }
        }
    }

    // ---- receiving ----

    /// A WireGuard message arrived on `id` and boringtun accepted it (authenticated):
    /// counts it for the delivery rate the peer is told about.
    pub fn on_authenticated(&mut self, id: PathId, wire_len: usize, now: Instant) {
        if let Ok(i) = self.index(id) {
            let p = &mut self.paths[i];
            p.counters.rx_bytes += wire_len as u64;
            p.counters.rx_packets += 1;
            p.last_heard = Some(now);
        }
    }

    /// A datagram starting with the probe type ([`crate::probe::is_probe`]) arrived on
    /// `id` (a configured path's socket, or [`path_by_addr`](Self::path_by_addr) of its
    /// source). Queues the reply to a request; drain [`poll_transmit`](Self::poll_transmit).
    pub fn handle_probe(&mut self, id: PathId, msg: &[u8], now: Instant) -> Result<(), ProbeDrop> {
        let probe = self.open_probe(msg)?;
        let Ok(i) = self.index(id) else {
            self.probes.counters.unknown_path += 1;
            return Err(ProbeDrop::UnknownPath);
        };
        if !self.probes.peer_speaks_bond {
            self.probes.peer_speaks_bond = true;
            // Learned paths were not being probed; their failover clock starts now.
            for p in self
                .paths
                .iter_mut()
                .filter(|p| p.origin != Origin::Configured)
            {
                p.probe.last_answer = Some(now);
                p.probe.next_send = now;
            }
        }
        let own = self.cfg.scheduler;
        let interval = self.cfg.probe_interval;
        match probe.kind {
            Kind::Request => {
                let p = &mut self.paths[i];
                let accepted = self.probes.check_request(p, &probe, interval, now)?;
                if accepted {
                    p.counters.rx_bytes += msg.len() as u64;
                    p.counters.rx_packets += 1;
                    p.last_heard = Some(now);
                    // One-way, from the peer: our clock now less its clock at sending.
                    let sample = (self.probes.ts_us(now) as i64).saturating_sub(probe.ts_us as i64);
                    p.owd_in.update(sample, 0.0, now);
                    // A fresh request saying the peer received more of our packets on this
                    // path shows it works both ways, as an answer would: a path whose
                    // queue is full and drops our requests is not taken for dead while
                    // the peer keeps receiving on it.
                    if probe.rx_packets > p.probe.peer_rx_packets {
                        if p.probe.peer_rx_packets > 0 && p.state != PathState::Down {
                            p.probe.last_answer = Some(now);
                        }
                        p.probe.peer_rx_packets = probe.rx_packets;
                    }
                    prober::adopt_attributes(p, &probe, now);
                    self.probes.peer_scheduler = probe.scheduler;
                }
                let reply = self.probes.reply(&self.paths[i], &probe, own, now);
                let payload = self.keys.seal(&reply);
                self.queue_probe(i, payload, now);
            }
            Kind::Reply => {
                let up_after = self.cfg.up_after;
                let epoch = self.probes.peer_epoch;
                let p = &mut self.paths[i];
                self.probes.accept_reply(p, &probe, now)?;
                if self.probes.peer_epoch != epoch {
                    // The peer's clock origin moved: one-way delays start over, on
                    // every path at once (they are compared with each other).
                    for p in &mut self.paths {
                        p.owd_out.reset();
                        p.owd_in.reset();
                    }
                }
                let p = &mut self.paths[i];
                p.counters.rx_bytes += msg.len() as u64;
                p.counters.rx_packets += 1;
                p.last_heard = Some(now);
                prober::adopt_attributes(p, &probe, now);
                self.probes.peer_scheduler = probe.scheduler;
                if p.is_admin_down() {
                    return Ok(());
                }
                if prober::on_answer(p, up_after) == Transition::Up {
                    p.credit = 0.0;
                    self.event(Event::PathUp(id));
                }
                self.update_reorder(now);
            }
        }
        Ok(())
    }

    /// A decrypted data packet, with the receiver index and counter read from its
    /// header ([`crate::wg::data_header`]) before decryption. On
    /// [`Verdict::Deliver`] write `packet` to the TUN; then, whatever the verdict,
    /// write everything [`pop_received`](Self::pop_received) returns.
    pub fn push_received(
        &mut self,
        session: u32,
        counter: u64,
        packet: &[u8],
        now: Instant,
    ) -> Verdict {
        self.reorder.push(session, counter, packet, now)
    }

    /// The next packet the reorder buffer releases, in order; `None` while it waits.
    pub fn pop_received(&mut self) -> Option<Released> {
        self.reorder.pop()
    }

    /// For the side that learns paths: a probe from `addr`. From a known path it is
    /// [`handle_probe`](Self::handle_probe). From a new address it is taken only if it
    /// is a fresh request of the peer's confirmed epoch (so it cannot be a replay); the
    /// address becomes a learned path, probing (it comes up after `up_after` answers,
    /// unlike a path learned from data, which is up at once).
    pub fn handle_probe_from(
        &mut self,
        addr: SocketAddr,
        msg: &[u8],
        now: Instant,
    ) -> Result<PathId, ProbeDrop> {
        if let Some(id) = self.path_by_addr(addr) {
            return self.handle_probe(id, msg, now).map(|()| id);
        }
        let probe = self.open_probe(msg)?;
        let fresh = probe.kind == Kind::Request
            && self.probes.peer_epoch == Some(probe.epoch)
            && self.probes.replay.would_accept(probe.seq);
        if !fresh {
            if probe.kind == Kind::Request && self.probes.peer_epoch != Some(probe.epoch) {
                // Not taken, but remembered: it must not count as fresh later.
                self.probes.note_unconfirmed(&probe)?;
            }
            self.probes.counters.unknown_path += 1;
            return Err(ProbeDrop::UnknownPath);
        }
        let id = self
            .insert(PathSpec::default(), Origin::Learned(addr), now)
            .map_err(|_| ProbeDrop::UnknownPath)?;
        self.event(Event::PathLearned(id, addr));
        self.handle_probe(id, msg, now).map(|()| id)
    }

    // ---- timers and output ----

    /// Whether this side probes `p` now: not administratively down, and for a learned
    /// path only once the peer probes (a plain WireGuard peer gets no probes).
    fn probed(&self, p: &Path) -> bool {
        !p.is_admin_down() && (p.origin == Origin::Configured || self.probes.peer_speaks_bond)
    }

    fn failover_after(&self, p: &Path) -> Duration {
        let from_rtt = p.rtt.srtt().map_or(Duration::ZERO, |s| {
            2 * s + 4 * p.rtt.rttvar() + self.cfg.probe_interval
        });
        self.cfg.failover.max(from_rtt).min(self.cfg.failover_max)
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let paths = self
            .paths
            .iter()
            .filter(|p| self.probed(p))
            .filter_map(|p| {
                let failover = self.failover_after(p);
                let lost = prober::lost_after(p, failover, self.cfg.failover_max);
                prober::next_deadline(p, failover, lost)
            });
        let forget = self.paths.iter().filter_map(|p| match p.origin {
            Origin::Learned(_) => p
                .last_sign_of_life()
                .map(|t| t + self.cfg.forget_learned_after),
            Origin::Configured => None,
        });
        paths.chain(forget).chain(self.reorder.poll_timeout()).min()
    }

    /// Runs what is due: probes to send, lost probes, failover, reorder gaps, forgetting
    /// learned paths. Then drain [`poll_transmit`](Self::poll_transmit),
    /// [`pop_received`](Self::pop_received) and [`poll_event`](Self::poll_event).
    pub fn handle_timeout(&mut self, now: Instant) {
        let own = self.cfg.scheduler;
        let interval = self.cfg.probe_interval;
        for i in 0..self.paths.len() {
            if !self.probed(&self.paths[i]) {
                continue;
            }
            let failover = self.failover_after(&self.paths[i]);
            let p = &mut self.paths[i];
            let lost = prober::lost_after(p, failover, self.cfg.failover_max);
            if let Transition::Down(r) = prober::on_timer(p, failover, lost, now) {
                let id = p.id;
                self.event(Event::PathDown(id, r));
            }
            let interval = probe_interval(&self.paths[i], interval, now);
            let p = &mut self.paths[i];
            if p.probe.next_send <= now {
                let next = p.probe.next_send + interval;
                p.probe.next_send = if next <= now { now + interval } else { next };
                let rate = arrival::queue_rate(&self.paths, i);
                let p = &mut self.paths[i];
                let queue_us = p.queue.delay(rate, now) * 1e6;
                let req = self.probes.request(p, own, queue_us, now);
                let payload = self.keys.seal(&req);
                self.queue_probe(i, payload, now);
            }
        }
        let forget = self.cfg.forget_learned_after;
        let stale: Vec<PathId> = self
            .paths
            .iter()
            .filter(|p| matches!(p.origin, Origin::Learned(_)))
            .filter(|p| p.last_sign_of_life().is_none_or(|t| t + forget <= now))
            .map(|p| p.id)
            .collect();
        for id in stale {
            self.paths.retain(|p| p.id != id);
            self.event(Event::PathForgotten(id));
        }
        self.update_reorder(now);
        self.reorder.handle_timeout(now);
    }

    fn queue_probe(&mut self, i: usize, payload: [u8; PROBE_LEN], now: Instant) {
        let p = &self.paths[i];
        let (id, to) = (p.id, self.path_addr(p.id));
        self.record_sent(id, PROBE_LEN, now);
        if self.transmits.len() >= MAX_QUEUED {
            self.transmits.pop_front();
        }
        self.transmits.push_back(Transmit {
            path: id,
            to,
            payload,
        });
    }

    /// The next probe to send, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next [`Event`], oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn event(&mut self, e: Event) {
        if self.events.len() >= MAX_QUEUED {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// Follows the peer's scheduler (reorder only when it spreads flows) and the delay
    /// spread of live paths (the wait).
    fn update_reorder(&mut self, now: Instant) {
        let peer = self.probes.peer_scheduler.or(self.cfg.scheduler);
        let on = match self.cfg.reorder {
            ReorderMode::On => true,
            ReorderMode::Off => false,
            ReorderMode::Auto => matches!(
                peer,
                Some(Scheduler::RoundRobin | Scheduler::Weighted | Scheduler::EarliestArrival)
            ),
        };
        self.reorder.set_enabled(on);
        let spread = reorder_wait(&self.paths, self.cfg.reorder_wait_max)
            .unwrap_or(self.cfg.reorder_wait_min);
        // What the buffer saw the paths actually do, with a margin.
        let seen = self.reorder.observed(now).mul_f64(1.25) + Duration::from_millis(1);
        let wait = spread.max(seen);
        self.reorder
            .set_wait(wait.clamp(self.cfg.reorder_wait_min, self.cfg.reorder_wait_max));
    }

    // ---- status ----

    /// The bond's status at `now`, for `braid status` and metrics.
    pub fn status(&self, now: Instant) -> BondStatus {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let out_lo = self.paths.iter().filter_map(|p| p.owd_out.base_us()).min();
        let in_lo = self.paths.iter().filter_map(|p| p.owd_in.base_us()).min();
        let above = |v: Option<i64>, lo: Option<i64>| Some(v?.saturating_sub(lo?) as f64 / 1e3);
        let estimates = self.arrival_estimates(now);
        let first = estimates
            .iter()
            .flatten()
            .map(|e| e.arrival(1400))
            .min_by(f64::total_cmp);
        let ago = |t: Option<Instant>| t.map(|t| ms(now.saturating_duration_since(t)));
        let sending = |p: &Path| {
            if p.state == PathState::Down {
                0.0
            } else {
                p.probe.sent_rate
            }
        };
        let total_sent: f64 = self.paths.iter().map(sending).sum();
        BondStatus {
            scheduler: self.scheduler(),
            scheduler_source: match (self.cfg.scheduler, self.probes.peer_scheduler) {
                (Some(_), _) => "configured",
                (None, Some(_)) => "peer",
                (None, None) => "default",
            },
            peer_probes: self.probes.peer_speaks_bond,
            reorder: ReorderStatus {
                enabled: self.reorder.is_enabled(),
                wait_ms: ms(self.reorder.wait()),
                observed_ms: ms(self.reorder.observed(now)),
                buffered: self.reorder.buffered_len(),
                counters: self.reorder.counters(),
            },
            probes: self.probes.counters,
            paths: self
                .paths
                .iter()
                .zip(estimates.iter().copied())
                .enumerate()
                .map(|(i, (p, est))| PathStatus {
                    id: p.id,
                    name: match p.origin {
                        Origin::Configured => p.id.to_string(),
                        Origin::Learned(addr) => addr.to_string(),
                    },
                    key: p.key,
                    origin: match p.origin {
                        Origin::Configured => "configured",
                        Origin::Learned(_) => "learned",
                    },
                    peer: self.path_addr(p.id),
                    state: p.state,
                    down_reason: p.down_reason,
                    rtt_ms: p.rtt.srtt().map(ms),
                    min_rtt_ms: p.rtt.min().map(ms),
                    jitter_ms: ms(p.rtt.jitter()),
                    loss: p.loss.loss(),
                    loss_samples: p.loss.samples(),
                    data_loss: p.probe.data_loss,
                    delivery_rate_bps: p.capacity.delivered() * 8.0,
                    sent_bps: sending(p) * 8.0,
                    share: if total_sent > 0.0 {
                        sending(p) / total_sent
                    } else {
                        0.0
                    },
                    capacity_bps: p.capacity.measured().map(|c| c * 8.0),
                    capacity_lower_bound_bps: p.capacity.estimate().map(|c| c * 8.0),
                    rate_bps: arrival::queue_rate(&self.paths, i) * 8.0,
                    queue_ms: p.queue.delay(arrival::queue_rate(&self.paths, i), now) * 1e3,
                    send_delay_ms: above(p.owd_out.base_us(), out_lo),
                    send_jitter_ms: p.owd_out.jitter_us() / 1e3,
                    receive_delay_ms: above(p.owd_in.base_us(), in_lo),
                    send_loss: p.loss_rate.loss(),
                    arrival_ms: est.zip(first).map(|(e, f)| (e.arrival(1400) - f) * 1e3),
                    repeating: est.is_some_and(|e| e.role == Role::Repeat),
                    excluded: est.and_then(|e| match e.role {
                        Role::Out(why) => Some(why),
                        _ => None,
                    }),
                    weight: p.spec.weight,
                    priority: p.spec.priority,
                    rate_cap_bps: p.spec.rate_cap_bps,
                    counters: p.counters,
                    last_probe_answer_ms_ago: ago(p.probe.last_answer),
                    last_probe_sent_ms_ago: ago(p.probe.last_sent),
                })
                .collect(),
        }
    }

    // ---- helpers ----

    /// The earliest-arrival estimates of every path (`None`: not up).
    fn arrival_estimates(&self, now: Instant) -> Vec<Option<arrival::Estimate>> {
        let p = self.arrival_params();
        arrival::estimates(&self.paths, p.spread_limit, p.repeat, now)
    }

    /// Checks a probe's MAC and form, counting what fails.
    fn open_probe(&mut self, msg: &[u8]) -> Result<crate::probe::Probe, ProbeDrop> {
        self.keys.open(msg).map_err(|e| {
            match e {
                crate::probe::ProbeError::Mac => self.probes.counters.bad_mac += 1,
                _ => self.probes.counters.malformed += 1,
            }
            ProbeDrop::Invalid(e)
        })
    }

    fn index(&self, id: PathId) -> Result<usize, BondError> {
        self.paths
            .iter()
            .position(|p| p.id == id)
            .ok_or(BondError::NoSuchPath(id))
    }

    fn path(&self, id: PathId) -> Option<&Path> {
        self.paths.iter().find(|p| p.id == id)
    }
}

/// The reorder wait for the live paths, unclamped; `None` with fewer than two.
///
/// From the one-way delays toward this side when at least two live paths have them: the
/// latest a packet is likely to arrive on any path (its base, smoothed excess and twice
/// its jitter) less the earliest any path delivers (the lowest base), plus 1 ms. Paths
/// whose delay exceeds the best's by more than `max` are left out of it: a sender using
/// `earliest-arrival` leaves them out too, and one that does not gets no longer wait
/// than `max` anyway. Without one-way delays (a peer's probes not seen yet): the RTT
/// spread plus twice the largest RTT variation, about twice the one-way spread.
fn reorder_wait(paths: &[Path], max: Duration) -> Option<Duration> {
    let live: Vec<&Path> = paths.iter().filter(|p| p.is_up()).collect();
    if live.len() < 2 {
        return None;
    }
    let measured: Vec<(f64, f64, f64)> = live
        .iter()
        .filter_map(|p| {
            let d = &p.owd_in;
            let base = d.base_us()? as f64;
            Some((
                base,
                d.high_us()?,
                base + d.excess_us() + 2.0 * d.jitter_us(),
            ))
        })
        .collect();
    if measured.len() >= 2 {
        let lo = measured.iter().map(|m| m.0).min_by(f64::total_cmp)?;
        let limit = max.as_secs_f64() * 1e6;
        let eligible: Vec<&(f64, f64, f64)> =
            measured.iter().filter(|m| m.1 - lo <= limit).collect();
        if eligible.len() < 2 {
            // One path in use: nothing to reorder but loss.
            return None;
        }
        let hi = eligible.iter().map(|m| m.2).max_by(f64::total_cmp)?;
        let us = (hi - lo).max(0.0) + 1_000.0;
        return Some(Duration::from_secs_f64(us.min(1e12) / 1e6));
    }
    let srtts: Vec<Duration> = live.iter().filter_map(|p| p.rtt.srtt()).collect();
    let (lo, hi) = (srtts.iter().min()?, srtts.iter().max()?);
    if srtts.len() < 2 {
        return None;
    }
    let var = live
        .iter()
        .map(|p| p.rtt.rttvar())
        .max()
        .unwrap_or_default();
    Some((*hi - *lo) + 2 * var + Duration::from_millis(1))
}

/// A path that is not up and has been silent for [`SILENT_AFTER`] is probed every
/// [`SILENT_INTERVAL`], and after [`LONG_SILENT_AFTER`] every [`LONG_SILENT_INTERVAL`]:
/// a bond whose peer is gone must not send 20 probes a second per path for ever (a
/// metered uplink pays for them). The first answer makes the path heard again, and it is
/// probed at the full rate from then on, so it comes up within one slow interval plus
/// `up_after` fast probes of returning.
pub const SILENT_AFTER: Duration = Duration::from_secs(5);
/// Probe interval of a path silent for [`SILENT_AFTER`].
pub const SILENT_INTERVAL: Duration = Duration::from_millis(500);
/// Silence after which a path is probed every [`LONG_SILENT_INTERVAL`].
pub const LONG_SILENT_AFTER: Duration = Duration::from_secs(60);
/// Probe interval of a path silent for [`LONG_SILENT_AFTER`].
pub const LONG_SILENT_INTERVAL: Duration = Duration::from_secs(2);

fn probe_interval(p: &Path, normal: Duration, now: Instant) -> Duration {
    if p.is_up() {
        return normal;
    }
    let heard = p
        .last_sign_of_life()
        .unwrap_or(p.probe.since)
        .max(p.probe.since);
    match now.saturating_duration_since(heard) {
        s if s >= LONG_SILENT_AFTER => LONG_SILENT_INTERVAL.max(normal),
        s if s >= SILENT_AFTER => SILENT_INTERVAL.max(normal),
        _ => normal,
    }
}
