//! The six schedulers: which path(s) a packet goes out on.
//!
//! `earliest-arrival` (the default, `arrival.rs`) sends each packet where it is expected
//! to arrive first; the others are simpler rules. Every scheduler considers only paths
//! that are up. With none up it falls back to one
//! path, the one with the most recent sign of life (probe answer or authenticated
//! traffic) that is not administratively down, so a link is never black-holed while
//! probes are still deciding. Rate caps (token buckets) are respected by the per-packet
//! schedulers (`round-robin`, `weighted`, `earliest-arrival`): a path over its cap is
//! skipped, and when every path is over, the one that will conform soonest is used. `flow` and `backup` ignore
//! caps (moving a flow to honour a cap would reorder it); `redundant` ignores them too.

use crate::arrival;
use crate::flow_hash::{flow_hash, rendezvous_score};
use crate::path::{Path, PathId};
pub use braid_model::extensions::Scheduler;
use std::time::Instant;

/// The most paths one link may have.
pub const MAX_PATHS: usize = 16;

/// Credits of the weighted scheduler are kept within ± this many bytes, so a path that
/// was capped or idle cannot save up a burst.
const CREDIT_LIMIT: f64 = 256.0 * 1024.0;

/// The paths a packet is to be sent on: one; all live ones for `redundant`; or one path
/// twice when `earliest-arrival` repeats packets on a lossy path (send the datagram once
/// per entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picks {
    ids: [PathId; MAX_PATHS],
    len: usize,
}

impl Picks {
    /// No path: the packet cannot be sent.
    pub const fn none() -> Self {
        Self {
            ids: [PathId(0); MAX_PATHS],
            len: 0,
        }
    }

    /// Just path `id`.
    pub fn one(id: PathId) -> Self {
        let mut p = Self::none();
        p.push(id);
        p
    }

    fn push(&mut self, id: PathId) {
        if self.len < MAX_PATHS {
            self.ids[self.len] = id;
            self.len += 1;
        }
    }

    /// The picks in order (a repeated path appears twice).
    pub fn as_slice(&self) -> &[PathId] {
        &self.ids[..self.len]
    }
}

impl std::ops::Deref for Picks {
    type Target = [PathId];
    fn deref(&self) -> &[PathId] {
        self.as_slice()
    }
}

impl<'a> IntoIterator for &'a Picks {
    type Item = &'a PathId;
    type IntoIter = std::slice::Iter<'a, PathId>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

/// Scheduler state that lives across packets.
#[derive(Debug, Clone, Default)]
pub(crate) struct SchedState {
    rr_last: Option<PathId>,
}

/// Settings of the earliest-arrival scheduler.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ArrivalParams {
    /// The longest reorder wait the receiver gives (s): paths slower than the best by
    /// more are left out.
    pub spread_limit: f64,
    /// Whether lossy paths repeat packets (else they are left out).
    pub repeat: bool,
}

impl Default for ArrivalParams {
    fn default() -> Self {
        Self {
            spread_limit: 0.1,
            repeat: true,
        }
    }
}

/// Chooses the path(s) for one packet. `packet` is the plaintext IP packet, `wire_len`
/// what it will weigh on the wire. Does not account the bytes (the caller does).
#[allow(clippy::too_many_arguments)]
pub(crate) fn pick(
    kind: Scheduler,
    st: &mut SchedState,
    paths: &mut [Path],
    packet: &[u8],
    wire_len: usize,
    seed: u64,
    arrival: ArrivalParams,
    now: Instant,
) -> Picks {
    if !paths.iter().any(Path::is_up) {
        return fallback(paths);
    }
    match kind {
        Scheduler::Flow => pick_flow(paths, flow_hash(packet, seed)),
        Scheduler::RoundRobin => pick_round_robin(st, paths, now),
        Scheduler::Weighted => pick_weighted(paths, wire_len, now),
        Scheduler::Redundant => {
            let mut p = Picks::none();
            for path in paths.iter().filter(|p| p.is_up()) {
                p.push(path.id);
            }
            p
        }
        Scheduler::Backup => paths
            .iter()
            .filter(|p| p.is_up())
            .min_by_key(|p| (p.spec.priority, p.id))
            .map_or(Picks::none(), |p| Picks::one(p.id)),
        Scheduler::EarliestArrival => pick_earliest_arrival(paths, wire_len, arrival, now),
    }
}

fn pick_earliest_arrival(
    paths: &mut [Path],
    wire_len: usize,
    params: ArrivalParams,
    now: Instant,
) -> Picks {
    let ok = match conforming(paths, now) {
        Ok(ok) => ok,
        Err(id) => return Picks::one(id),
    };
    let est = arrival::estimates(paths, params.spread_limit, params.repeat, now);
    let Some(i) = arrival::earliest(&est, &ok, wire_len) else {
        return Picks::none();
    };
    let mut picks = Picks::one(paths[i].id);
    if est[i].is_some_and(|e| e.role == arrival::Role::Repeat) {
        picks.push(paths[i].id);
    }
    picks
}

/// No path is up: the most recently alive one that is not administratively down (any
/// path at all if all are), ties broken by priority then id.
pub(crate) fn fallback(paths: &[Path]) -> Picks {
    let candidates = || paths.iter().filter(|p| !p.is_admin_down());
    let best = |it: &mut dyn Iterator<Item = &Path>| {
        it.max_by(|a, b| {
            a.last_sign_of_life()
                .cmp(&b.last_sign_of_life())
                .then(b.spec.priority.cmp(&a.spec.priority))
                .then(b.id.cmp(&a.id))
        })
        .map(|p| p.id)
    };
    let chosen = best(&mut candidates()).or_else(|| best(&mut paths.iter()));
    chosen.map_or(Picks::none(), Picks::one)
}

fn pick_flow(paths: &[Path], hash: u64) -> Picks {
    let live = || paths.iter().filter(|p| p.is_up());
    let weighted = live().all(|p| p.spec.weight.is_some());
    let score = |p: &Path| {
        let w = if weighted {
            f64::from(p.spec.weight.unwrap_or(1))
        } else {
            1.0
        };
        rendezvous_score(hash, p.key, w)
    };
    live()
        .max_by(|a, b| score(a).total_cmp(&score(b)).then(b.key.cmp(&a.key)))
        .map_or(Picks::none(), |p| Picks::one(p.id))
}

/// Among live paths: those under their cap, or if none is, the single least-over one.
fn conforming(paths: &mut [Path], now: Instant) -> Result<Vec<usize>, PathId> {
    let mut ok = Vec::with_capacity(paths.len());
    let mut least_over: Option<(std::time::Duration, PathId)> = None;
    for (i, p) in paths.iter_mut().enumerate() {
        if !p.is_up() {
            continue;
        }
        match p.bucket.as_mut() {
            None => ok.push(i),
            Some(b) => {
                if b.conforms(now) {
                    ok.push(i);
                    continue;
                }
                let debt = b.debt_time(now);
                if least_over.is_none_or(|(d, _)| debt < d) {
                    least_over = Some((debt, p.id));
                }
            }
        }
    }
    match (ok.is_empty(), least_over) {
        (true, Some((_, id))) => Err(id),
        _ => Ok(ok),
    }
}

fn pick_round_robin(st: &mut SchedState, paths: &mut [Path], now: Instant) -> Picks {
    let ok = match conforming(paths, now) {
        Ok(ok) => ok,
        Err(id) => return Picks::one(id),
    };
    let next = ok
        .iter()
        .map(|&i| paths[i].id)
        .filter(|id| st.rr_last.is_none_or(|last| *id > last))
        .min()
        .or_else(|| ok.iter().map(|&i| paths[i].id).min());
    st.rr_last = next;
    next.map_or(Picks::none(), Picks::one)
}

/// The weight of each live path for the weighted scheduler: configured weights when
/// every live path has one, else measured capacity (bytes/s, capped at the rate cap);
/// a path whose bottleneck was not found yet counts as the mean of the measured ones,
/// or what it already carried if that is more.
pub(crate) fn weights(paths: &[Path]) -> Vec<(PathId, f64)> {
    let live: Vec<&Path> = paths.iter().filter(|p| p.is_up()).collect();
    if live.iter().all(|p| p.spec.weight.is_some()) {
        return live
            .iter()
            .map(|p| (p.id, f64::from(p.spec.weight.unwrap_or(1).max(1))))
            .collect();
    }
    let measured: Vec<f64> = live.iter().filter_map(|p| p.capacity.measured()).collect();
    let mean = if measured.is_empty() {
        1.0
    } else {
        measured.iter().sum::<f64>() / measured.len() as f64
    };
    live.iter()
        .map(|p| {
            // Not measured yet: at least what it already carried, and the mean.
            let lower = p.capacity.estimate().unwrap_or(0.0);
            let mut w = p.capacity.measured().unwrap_or(mean.max(lower));
            if let Some(b) = &p.bucket {
                w = w.min(b.rate());
            }
            (p.id, w.max(f64::MIN_POSITIVE))
        })
        .collect()
}

fn pick_weighted(paths: &mut [Path], wire_len: usize, now: Instant) -> Picks {
    let ok = match conforming(paths, now) {
        Ok(ok) => ok,
        Err(id) => return Picks::one(id),
    };
    let w = weights(paths);
    let weight_of = |id: PathId| w.iter().find(|(i, _)| *i == id).map_or(0.0, |(_, w)| *w);
    let total: f64 = ok.iter().map(|&i| weight_of(paths[i].id)).sum();
    if total <= 0.0 || !total.is_finite() {
        return ok
            .first()
            .map_or(Picks::none(), |&i| Picks::one(paths[i].id));
    }
    let len = wire_len as f64;
    for &i in &ok {
        let share = weight_of(paths[i].id) / total;
        let p = &mut paths[i];
        p.credit = (p.credit + len * share).clamp(-CREDIT_LIMIT, CREDIT_LIMIT);
    }
    let Some(chosen) = ok.iter().copied().max_by(|&a, &b| {
        paths[a]
            .credit
            .total_cmp(&paths[b].credit)
            .then(paths[b].id.cmp(&paths[a].id))
    }) else {
        return Picks::none();
    };
    let p = &mut paths[chosen];
    p.credit = (p.credit - len).clamp(-CREDIT_LIMIT, CREDIT_LIMIT);
    Picks::one(p.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::{DownReason, Origin, PathSpec, PathState};
    use std::time::Duration;

    const AP: ArrivalParams = ArrivalParams {
        spread_limit: 0.1,
        repeat: true,
    };

    fn paths(specs: &[PathSpec], now: Instant) -> Vec<Path> {
        specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut p = Path::new(PathId(i as u32), *s, Origin::Configured, now);
                p.state = PathState::Up;
                p
            })
            .collect()
    }

    fn udp(sport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[9] = 17;
        p[12..16].copy_from_slice(&[192, 0, 2, 1]);
        p[16..20].copy_from_slice(&[198, 51, 100, 1]);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&443u16.to_be_bytes());
        p
    }

    fn run(kind: Scheduler, ps: &mut [Path], n: usize, len: usize, now: Instant) -> Vec<usize> {
        let mut st = SchedState::default();
        let mut bytes = vec![0usize; ps.len()];
        for i in 0..n {
            let picks = pick(kind, &mut st, ps, &udp(i as u16), len, 1, AP, now);
            for id in &picks {
                bytes[id.0 as usize] += len;
            }
        }
        bytes
    }

    #[test]
    fn round_robin_alternates_equally_and_skips_down_paths() {
        let now = Instant::now();
        let mut ps = paths(&[PathSpec::default(); 3], now);
        assert_eq!(
            run(Scheduler::RoundRobin, &mut ps, 300, 100, now),
            [10_000; 3]
        );
        ps[1].state = PathState::Down;
        let b = run(Scheduler::RoundRobin, &mut ps, 300, 100, now);
        assert_eq!(b, [15_000, 0, 15_000]);
    }

    #[test]
    fn weighted_splits_bytes_by_configured_weight() {
        let now = Instant::now();
        let spec = |w| PathSpec {
            weight: Some(w),
            ..PathSpec::default()
        };
        let mut ps = paths(&[spec(300), spec(100)], now);
        let mut st = SchedState::default();
        let mut bytes = [0usize; 2];
        // Mixed packet sizes: the split is by bytes, not packets.
        for i in 0..40_000usize {
            let len = if i % 3 == 0 { 1400 } else { 80 };
            let p = pick(
                Scheduler::Weighted,
                &mut st,
                &mut ps,
                &udp(1),
                len,
                1,
                AP,
                now,
            );
            bytes[p[0].0 as usize] += len;
        }
        let ratio = bytes[0] as f64 / bytes[1] as f64;
        assert!((ratio - 3.0).abs() < 0.01, "{ratio}");
    }

    #[test]
    fn weighted_uses_measured_capacity_when_weights_are_unset() {
        let now = Instant::now();
        let mut ps = paths(&[PathSpec::default(); 2], now);
        for (p, rate) in ps.iter_mut().zip([3e6, 1e6]) {
            p.capacity.update(crate::rate::RateSample {
                sent: rate,
                delivered: rate,
                queueing: true,
                ..crate::rate::RateSample::default()
            });
        }
        let b = run(Scheduler::Weighted, &mut ps, 40_000, 1000, now);
        let ratio = b[0] as f64 / b[1] as f64;
        assert!((ratio - 3.0).abs() < 0.01, "{ratio}");
    }

    #[test]
    fn weighted_respects_rate_caps_and_picks_the_least_over_when_all_are() {
        let t0 = Instant::now();
        let spec = |w, cap| PathSpec {
            weight: Some(w),
            rate_cap_bps: Some(cap),
            priority: 0,
        };
        // Equal weights, but path 1 is capped at 8 Mbit/s (1 MB/s), path 0 at 80.
        let mut ps = paths(&[spec(1, 80_000_000), spec(1, 8_000_000)], t0);
        let mut st = SchedState::default();
        let mut bytes = [0usize; 2];
        // Offer 4 MB/s for 2 s: path 1 gets ~1 MB/s, path 0 the rest.
        let mut t = t0;
        for _ in 0..8_000 {
            t += Duration::from_micros(250);
            let p = pick(
                Scheduler::Weighted,
                &mut st,
                &mut ps,
                &udp(1),
                1000,
                1,
                AP,
                t,
            );
            bytes[p[0].0 as usize] += 1000;
            if let Some(b) = ps[p[0].0 as usize].bucket.as_mut() {
                b.consume(1000, t);
            }
        }
        assert!(bytes[1] <= 2_100_000, "{bytes:?}");
        assert!(bytes[1] >= 1_900_000, "{bytes:?}");
        // Both far over their caps: the one that conforms sooner is used.
        let later = t + Duration::from_secs(10);
        ps[0].bucket.as_mut().unwrap().consume(10_000_000, later);
        ps[1].bucket.as_mut().unwrap().consume(10_000, later);
        let p = pick(
            Scheduler::Weighted,
            &mut st,
            &mut ps,
            &udp(1),
            1000,
            1,
            AP,
            later,
        );
        assert_eq!(p.as_slice(), [PathId(1)]);
    }

    #[test]
    fn flow_keeps_a_flow_on_one_path_and_moves_it_only_when_its_path_dies() {
        let now = Instant::now();
        let mut ps = paths(&[PathSpec::default(); 3], now);
        let mut st = SchedState::default();
        let mut before = Vec::new();
        for f in 0..600u16 {
            let first = pick(Scheduler::Flow, &mut st, &mut ps, &udp(f), 100, 9, AP, now);
            for _ in 0..3 {
                assert_eq!(
                    pick(Scheduler::Flow, &mut st, &mut ps, &udp(f), 100, 9, AP, now),
                    first
                );
            }
            before.push(first[0]);
        }
        let share = |id| before.iter().filter(|p| **p == PathId(id)).count();
        for id in 0..3 {
            assert!((150..250).contains(&share(id)), "path {id}: {}", share(id));
        }
        ps[2].state = PathState::Down;
        for (f, old) in before.iter().enumerate() {
            let now_on = pick(
                Scheduler::Flow,
                &mut st,
                &mut ps,
                &udp(f as u16),
                100,
                9,
                AP,
                now,
            )[0];
            if *old == PathId(2) {
                assert_ne!(now_on, PathId(2));
            } else {
                assert_eq!(now_on, *old, "flow {f} moved although its path is up");
            }
        }
    }

    #[test]
    fn redundant_sends_on_every_live_path() {
        let now = Instant::now();
        let mut ps = paths(&[PathSpec::default(); 3], now);
        ps[1].state = PathState::Probing;
        let mut st = SchedState::default();
        let p = pick(
            Scheduler::Redundant,
            &mut st,
            &mut ps,
            &udp(1),
            100,
            1,
            AP,
            now,
        );
        assert_eq!(p.as_slice(), [PathId(0), PathId(2)]);
    }

    #[test]
    fn backup_uses_the_best_priority_live_path() {
        let now = Instant::now();
        let spec = |prio| PathSpec {
            priority: prio,
            ..PathSpec::default()
        };
        let mut ps = paths(&[spec(5), spec(1), spec(3)], now);
        let mut st = SchedState::default();
        let mut go =
            |ps: &mut [Path]| pick(Scheduler::Backup, &mut st, ps, &udp(1), 100, 1, AP, now);
        assert_eq!(go(&mut ps).as_slice(), [PathId(1)]);
        ps[1].state = PathState::Down;
        assert_eq!(go(&mut ps).as_slice(), [PathId(2)]);
    }

    #[test]
    fn with_no_live_path_the_most_recently_alive_one_is_used() {
        let t0 = Instant::now();
        let mut ps = paths(&[PathSpec::default(); 3], t0);
        for p in &mut ps {
            p.state = PathState::Down;
            p.down_reason = Some(DownReason::NoAnswer);
        }
        ps[0].probe.last_answer = Some(t0 + Duration::from_millis(5));
        ps[1].probe.last_answer = Some(t0 + Duration::from_millis(9));
        ps[2].last_heard = Some(t0 + Duration::from_millis(7));
        let mut st = SchedState::default();
        for kind in [
            Scheduler::Flow,
            Scheduler::RoundRobin,
            Scheduler::Weighted,
            Scheduler::Redundant,
            Scheduler::Backup,
            Scheduler::EarliestArrival,
        ] {
            let p = pick(kind, &mut st, &mut ps, &udp(1), 100, 1, AP, t0);
            assert_eq!(p.as_slice(), [PathId(1)], "{kind:?}");
        }
        ps[1].down_reason = Some(DownReason::Admin);
        let p = pick(Scheduler::Flow, &mut st, &mut ps, &udp(1), 100, 1, AP, t0);
        assert_eq!(p.as_slice(), [PathId(2)]);
        // All administratively down: still one path, not none.
        for p in &mut ps {
            p.down_reason = Some(DownReason::Admin);
        }
        let p = pick(Scheduler::Flow, &mut st, &mut ps, &udp(1), 100, 1, AP, t0);
        assert_eq!(p.as_slice(), [PathId(1)]);
        assert!(pick(Scheduler::Flow, &mut st, &mut [], &udp(1), 100, 1, AP, t0).is_empty());
    }

    use proptest::prelude::*;

    proptest! {
        /// Whatever the paths' states, rates and delays: every scheduler picks at least
        /// one path when there is any, only live ones while one is live, and a path
        /// twice only when earliest-arrival repeats on a lossy one.
        #[test]
        fn picks_are_live_paths(
            states in prop::collection::vec((0u8..3, 1e5f64..1e8, 0i64..200_000), 1..6),
            sports in prop::collection::vec(any::<u16>(), 1..50),
        ) {
            let now = Instant::now();
            let mut ps = paths(&vec![PathSpec::default(); states.len()], now);
            for (p, (st, rate, delay)) in ps.iter_mut().zip(&states) {
                p.state = match st {
                    0 => PathState::Up,
                    1 => PathState::Probing,
                    _ => PathState::Down,
                };
                p.capacity.update(crate::rate::RateSample {
                    sent: *rate,
                    delivered: *rate,
                    queueing: true,
                    ..crate::rate::RateSample::default()
                });
                p.owd_out.update(*delay, 0.0, now);
            }
            let any_up = ps.iter().any(|p| p.is_up());
            for kind in [
                Scheduler::Flow,
                Scheduler::RoundRobin,
                Scheduler::Weighted,
                Scheduler::Redundant,
                Scheduler::Backup,
                Scheduler::EarliestArrival,
            ] {
                let mut st = SchedState::default();
                for sport in &sports {
                    let picks = pick(kind, &mut st, &mut ps, &udp(*sport), 1400, 1, AP, now);
                    prop_assert!(!picks.is_empty());
                    for id in &picks {
                        let p = ps.iter().find(|p| p.id == *id).unwrap();
                        prop_assert!(!any_up || p.is_up(), "{:?} picked {:?}", kind, id);
                    }
                    let mut ids: Vec<PathId> = picks.to_vec();
                    ids.dedup();
                    if kind != Scheduler::EarliestArrival {
                        prop_assert_eq!(ids.len(), picks.len());
                    }
                }
            }
        }
    }
}
