//! The earliest-arrival scheduler: each packet goes on the path where it is expected to
//! arrive first.
//!
//! For every live path it estimates (the same idea as MPTCP's ECF, Lim et al., "ECF: An
//! MPTCP Path Scheduler to Manage Heterogeneous Paths", CoNEXT 2017, and BLEST, Ferlin et
//! al., IFIP Networking 2016, applied per packet below the transport):
//! - its rate `r` (bytes/s): the capacity estimate (`rate.rs`), capped at the path's
//!   configured rate cap; a path not measured yet counts as the slowest measured one
//!   (at most [`DEFAULT_RATE`]);
//! - its queue `q`: bytes sent on it and not yet drained at `r` ([`VirtualQueue`]);
//! - its delay `d`: the one-way delay toward the peer, relative to the other paths
//!   (`owd.rs`), as the smoothed residual of probe samples less the queue this model
//!   expected ahead of each probe, so a rate estimated too high or too low is corrected
//!   by what the probes see within a probe interval or two.
//!
//! A packet of `L` bytes would arrive at `max(q/r + d, base) + L/r`; it goes on the path
//! where that is smallest. With exact estimates that never reorders (a packet sent later
//! can only arrive earlier on a path that the earlier packet would have chosen), and a
//! path slower than the best is used exactly when the best one's queue has grown by more
//! than their difference in delay, so a bond is never slower than its best path alone.
//!
//! Each live path also has a [`Role`]:
//! - out (`delay`): its delay exceeds the best path's base delay by more than the reorder
//!   wait the receiver can give (`reorder_wait_max`, 100 ms by default). Its packets would
//!   arrive after the receiver gave up waiting for them, so it would only add reordering
//!   (a GEO satellite at 600 ms next to 5 ms fibre). It is used when the better paths are
//!   gone.
//! - repeat (`loss`): its one-way loss exceeds the cleanest path's by more than
//!   [`LOSS_TOLERANCE`] (0.1%): each packet sent on it goes twice, back to back, which
//!   turns independent loss `p` into `p²` (0.5% into 0.0025%) for half its capacity. One
//!   TCP flow cannot live with random loss (at 0.2% loss, about a tenth of a megabit per
//!   second of CUBIC per 100 ms of RTT... far below any uplink's rate), so half a clean
//!   path is worth more than a whole lossy one.
//! - out (`loss`): even `p²` is above [`REPEAT_LIMIT`] (`p` over 1%): not worth using
//!   while a cleaner path is up.
//!
//! Rate caps: a path over its cap is skipped while another conforms (as for the other
//! per-packet schedulers).

use crate::path::Path;
use std::time::Instant;

/// The rate a path is assumed to have before its bottleneck is found, at most
/// (100 Mbit/s).
pub const DEFAULT_RATE: f64 = 12_500_000.0;
/// The virtual queue never holds more than this much time at its rate (a real queue that
/// long would have dropped).
pub const MAX_QUEUE_S: f64 = 1.0;
/// Nor more than the largest queue seen on the path (its peak one-way delay above the
/// base over 10 s), but at least this (s).
pub const MIN_QUEUE_CAP_S: f64 = 0.010;

/// How much time the virtual queue of `p` may hold (s).
pub(crate) fn queue_cap(p: &Path) -> f64 {
    (p.owd_out.peak_excess_us() / 1e6).clamp(MIN_QUEUE_CAP_S, MAX_QUEUE_S)
}
/// Loss above the cleanest live path's that makes a path lossy (fraction).
pub const LOSS_TOLERANCE: f64 = 0.001;
/// A lossy path whose loss, squared (what repeating each packet leaves), is above this
/// (and above the cleanest path's own loss) is left out.
pub const REPEAT_LIMIT: f64 = 1e-4;
/// Buckets (of 200 packets and a second or more) a loss estimate must rest on before it
/// counts.
pub const MIN_LOSS_BUCKETS: usize = 3;

/// Bytes sent on a path and not yet drained at its estimated rate.
#[derive(Debug, Clone, Copy, Default)]
pub struct VirtualQueue {
    bytes: f64,
    at: Option<Instant>,
}

impl VirtualQueue {
    fn drained(&self, rate: f64, now: Instant) -> f64 {
        match self.at {
            None => self.bytes,
            Some(at) => {
                let dt = now.saturating_duration_since(at).as_secs_f64();
                (self.bytes - rate * dt).max(0.0)
            }
        }
    }

    /// The queue in seconds at `rate` (bytes/s) at `now`.
    pub fn delay(&self, rate: f64, now: Instant) -> f64 {
        if rate <= 0.0 {
            return 0.0;
        }
        self.drained(rate, now) / rate
    }

    /// `len` more bytes were sent at `now`; the queue holds at most `cap` seconds at
    /// `rate` (a real queue drops beyond what it holds).
    pub fn add(&mut self, len: usize, rate: f64, cap: f64, now: Instant) {
        let b = self.drained(rate, now) + len as f64;
        self.bytes = b.min(rate * cap.min(MAX_QUEUE_S)).max(0.0);
        self.at = Some(self.at.map_or(now, |a| a.max(now)));
    }

    /// Empties the queue (the path went down or came back).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Why a live path is not used while better ones are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Excluded {
    /// Its delay exceeds the best path's by more than the reorder wait.
    Delay,
    /// Its loss exceeds the cleanest path's, even with each packet sent twice.
    Loss,
}

/// What the earliest-arrival scheduler does with a live path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Send on it as usual.
    Use,
    /// Lossy: every packet goes twice.
    Repeat,
    /// Left out while a better path is up, and why.
    Out(Excluded),
}

/// What the scheduler knows about one live path; times in seconds, relative to the
/// (unknown) clock offset shared by all paths.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Estimate {
    pub rate: f64,
    pub queue: f64,
    pub delay: f64,
    pub base: f64,
    pub role: Role,
}

impl Estimate {
    /// When `len` bytes sent now would arrive (the first copy, for a repeating path).
    pub(crate) fn arrival(&self, len: usize) -> f64 {
        (self.queue + self.delay).max(self.base) + len as f64 / self.rate
    }
}

/// The rate the virtual queue of `paths[i]` drains at: its measured capacity; for a path
/// whose bottleneck was not found yet, the slowest measured path's capacity but at most
/// [`DEFAULT_RATE`] (or what it has already carried, if more), so an unknown path is
/// tried rather than assumed to be as slow as the light traffic it carried so far;
/// capped at its rate cap.
pub(crate) fn queue_rate(paths: &[Path], i: usize) -> f64 {
    let p = &paths[i];
    let r = p.capacity.measured().unwrap_or_else(|| {
        let guess = paths
            .iter()
            .filter_map(|q| q.capacity.measured())
            .min_by(f64::total_cmp)
            .map_or(DEFAULT_RATE, |slowest| slowest.min(DEFAULT_RATE));
        guess.max(p.capacity.estimate().unwrap_or(0.0))
    });
    let r = match &p.bucket {
        Some(b) => r.min(b.rate()),
        None => r,
    };
    r.max(crate::rate::FLOOR)
}

/// The estimates of every live path (`None` for paths that are not up), index-aligned
/// with `paths`. `spread_limit`: the reorder wait the receiver can give, in seconds.
pub(crate) fn estimates(
    paths: &[Path],
    spread_limit: f64,
    repeat: bool,
    now: Instant,
) -> Vec<Option<Estimate>> {
    let us = |v: f64| v / 1e6;
    let measured = |p: &Path| p.is_up() && p.owd_out.samples() > 0;
    // Delays of measured paths; unmeasured ones borrow the slowest measured path's.
    let known: Vec<(f64, f64, f64)> = paths
        .iter()
        .filter(|p| measured(p))
        .filter_map(|p| {
            let base = us(p.owd_out.base_us()? as f64);
            let delay = us(p.owd_out.residual_us()?);
            let high = us(p.owd_out.high_us()?);
            Some((delay, base, high))
        })
        .collect();
    let best_base = known.iter().map(|k| k.1).min_by(f64::total_cmp);
    let borrowed = known
        .iter()
        .filter(|k| best_base.is_none_or(|b| k.2 - b <= spread_limit))
        .fold(None::<(f64, f64, f64)>, |acc, k| match acc {
            None => Some(*k),
            Some(a) => Some((a.0.max(k.0), a.1.max(k.1), a.2.max(k.2))),
        })
        .unwrap_or((0.0, 0.0, 0.0));
    let floor = loss_floor(paths);
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if !p.is_up() {
                return None;
            }
            let rate = queue_rate(paths, i);
            let (delay, base, high) = if measured(p) {
                (
                    us(p.owd_out.residual_us().unwrap_or(0.0)),
                    us(p.owd_out.base_us().unwrap_or(0) as f64),
                    us(p.owd_out.high_us().unwrap_or(0.0)),
                )
            } else {
                borrowed
            };
            let mut role = Role::Use;
            if let Some(b) = best_base
                && high - b > spread_limit
            {
                role = Role::Out(Excluded::Delay);
            } else if let Some(floor) = floor {
                role = loss_role(p, floor, repeat);
            }
            Some(Estimate {
                rate,
                queue: p.queue.delay(rate, now),
                delay,
                base,
                role,
            })
        })
        .collect()
}

/// The loss of the cleanest live path whose loss is known.
fn loss_floor(paths: &[Path]) -> Option<f64> {
    paths
        .iter()
        .filter(|p| p.is_up() && p.loss_rate.buckets() >= MIN_LOSS_BUCKETS)
        .map(|p| p.loss_rate.loss())
        .min_by(f64::total_cmp)
}

fn loss_role(p: &Path, floor: f64, repeat: bool) -> Role {
    if p.loss_rate.buckets() < MIN_LOSS_BUCKETS {
        return Role::Use;
    }
    let loss = p.loss_rate.loss();
    if loss <= floor + LOSS_TOLERANCE {
        Role::Use
    } else if repeat && loss * loss <= REPEAT_LIMIT.max(floor) {
        Role::Repeat
    } else {
        Role::Out(Excluded::Loss)
    }
}

/// Among the indices `ok` (live paths under their caps), the one where a packet of `len`
/// bytes arrives first: paths in use first, excluded ones only if no other is in `ok`.
/// Ties go to the lower index.
pub(crate) fn earliest(est: &[Option<Estimate>], ok: &[usize], len: usize) -> Option<usize> {
    let best_among = |usable: &dyn Fn(&Estimate) -> bool| {
        ok.iter()
            .filter_map(|&i| est.get(i).copied().flatten().map(|e| (i, e)))
            .filter(|(_, e)| usable(e))
            .min_by(|(ia, a), (ib, b)| a.arrival(len).total_cmp(&b.arrival(len)).then(ia.cmp(ib)))
            .map(|(i, _)| i)
    };
    best_among(&|e| !matches!(e.role, Role::Out(_)))
        .or_else(|| best_among(&|e| e.role == Role::Out(Excluded::Loss)))
        .or_else(|| best_among(&|_| true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::{Origin, PathId, PathSpec, PathState};
    use crate::rate::RateSample;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn virtual_queue_drains_at_its_rate_and_is_bounded() {
        let t0 = Instant::now();
        let mut q = VirtualQueue::default();
        q.add(10_000, 1e6, 1.0, t0);
        assert!((q.delay(1e6, t0) - 0.010).abs() < 1e-9);
        assert!((q.delay(1e6, t0 + Duration::from_millis(4)) - 0.006).abs() < 1e-9);
        assert_eq!(q.delay(1e6, t0 + Duration::from_millis(20)), 0.0);
        for _ in 0..10_000 {
            q.add(1500, 1e6, 5.0, t0);
        }
        assert!((q.delay(1e6, t0) - MAX_QUEUE_S).abs() < 1e-9);
        q.add(1500, 1e6, 0.02, t0);
        assert!((q.delay(1e6, t0) - 0.02).abs() < 1e-9);
    }

    /// A live path whose capacity was measured at `rate` (bytes/s) and whose one-way
    /// delay toward the peer is `delay_us` (relative), with no jitter.
    fn path(i: u32, rate: f64, delay_us: i64, now: Instant) -> Path {
        let mut p = Path::new(PathId(i), PathSpec::default(), Origin::Configured, now);
        p.state = PathState::Up;
        p.capacity.update(RateSample {
            sent: rate,
            delivered: rate,
            packets: 1000,
            lost: 0,
            queueing: true,
            overestimated_queue: false,
        });
        for _ in 0..4 {
            p.owd_out.update(delay_us, 0.0, now);
        }
        p
    }

    /// Sends `packets` (gap before it in µs, size) through the earliest-arrival choice
    /// with the model as reality; returns, per packet, the path and the absolute arrival
    /// (s after the start).
    fn send(paths: &mut [Path], packets: &[(u32, usize)], t0: Instant) -> Vec<(usize, f64)> {
        let ok: Vec<usize> = (0..paths.len()).collect();
        let mut t = t0;
        let mut out = Vec::new();
        for &(gap, len) in packets {
            t += Duration::from_micros(u64::from(gap));
            let est = estimates(paths, 0.1, true, t);
            let i = earliest(&est, &ok, len).expect("a live path");
            let e = est[i].expect("live");
            let at = (t - t0).as_secs_f64() + e.arrival(len);
            out.push((i, at));
            paths[i].queue.add(len, e.rate, MAX_QUEUE_S, t);
        }
        out
    }

    /// Paths (rate in bytes/s, delay in µs) and packets (gap in µs, size).
    type Setup = (Vec<(f64, i64)>, Vec<(u32, usize)>);

    fn setup() -> impl Strategy<Value = Setup> {
        (
            prop::collection::vec((1e5f64..1e8, 0i64..50_000), 1..5),
            prop::collection::vec((0u32..2_000, 60usize..1500), 1..300),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// With exact estimates, packets arrive in the order they were sent, up to one
        /// packet's transmission time: a later packet could only arrive earlier on a
        /// path the earlier one would have chosen, unless it is shorter.
        #[test]
        fn exact_estimates_never_reorder((specs, packets) in setup()) {
            let t0 = Instant::now();
            let mut paths: Vec<Path> = specs
                .iter()
                .enumerate()
                .map(|(i, (r, d))| path(i as u32, *r, *d, t0))
                .collect();
            let arrivals = send(&mut paths, &packets, t0);
            for (k, w) in arrivals.windows(2).enumerate() {
                let (len, next_rate) = (packets[k].1 as f64, specs[w[1].0].0);
                prop_assert!(w[1].1 >= w[0].1 - len / next_rate - 1e-9, "{:?}", w);
            }
            // With packets of one size, strictly in order.
            let same: Vec<(u32, usize)> = packets.iter().map(|(g, _)| (*g, 1400)).collect();
            let mut paths: Vec<Path> = specs
                .iter()
                .enumerate()
                .map(|(i, (r, d))| path(i as u32, *r, *d, t0))
                .collect();
            for w in send(&mut paths, &same, t0).windows(2) {
                prop_assert!(w[1].1 >= w[0].1 - 1e-9, "{:?}", w);
            }
        }

        /// Every packet arrives no later than it would if every packet went on any one
        /// of the paths alone: a bond is never slower than its best path.
        #[test]
        fn never_later_than_on_any_path_alone((specs, packets) in setup()) {
            let t0 = Instant::now();
            let mut paths: Vec<Path> = specs
                .iter()
                .enumerate()
                .map(|(i, (r, d))| path(i as u32, *r, *d, t0))
                .collect();
            let bonded = send(&mut paths, &packets, t0);
            for (j, (r, d)) in specs.iter().enumerate() {
                let mut alone = [path(j as u32, *r, *d, t0)];
                let single = send(&mut alone, &packets, t0);
                for (b, a) in bonded.iter().zip(&single) {
                    prop_assert!(b.1 <= a.1 + 1e-9, "path {}: {} > {}", j, b.1, a.1);
                }
            }
        }

        /// A path slower than the best by more than the reorder wait is never chosen
        /// while the others are up, however long their queues.
        #[test]
        fn a_path_beyond_the_reorder_wait_is_left_out(
            (specs, packets) in setup(),
            extra in 101_000i64..700_000,
        ) {
            let t0 = Instant::now();
            let mut paths: Vec<Path> = specs
                .iter()
                .enumerate()
                .map(|(i, (r, d))| path(i as u32, *r, *d, t0))
                .collect();
            let slow = paths.len();
            paths.push(path(slow as u32, 1e8, 50_000 + extra, t0));
            let est = estimates(&paths, 0.1, true, t0);
            prop_assert_eq!(est[slow].map(|e| e.role), Some(Role::Out(Excluded::Delay)));
            for (i, _) in send(&mut paths, &packets, t0) {
                prop_assert!(i != slow);
            }
        }
    }

    #[test]
    fn a_lossy_path_repeats_and_a_very_lossy_one_is_left_out() {
        let t0 = Instant::now();
        let mut ps = vec![
            path(0, 1e6, 10_000, t0),
            path(1, 1e6, 10_000, t0),
            path(2, 1e6, 10_000, t0),
        ];
        let mut t = t0;
        for _ in 0..5 {
            t += Duration::from_secs(2);
            ps[0].loss_rate.record(1000, 1000, t);
            ps[1].loss_rate.record(1000, 995, t);
            ps[2].loss_rate.record(1000, 970, t);
        }
        let roles: Vec<Role> = estimates(&ps, 0.1, true, t)
            .iter()
            .map(|e| e.unwrap().role)
            .collect();
        assert_eq!(roles, [Role::Use, Role::Repeat, Role::Out(Excluded::Loss)]);
        // Without repeating, the lossy one is left out too.
        let roles: Vec<Role> = estimates(&ps, 0.1, false, t)
            .iter()
            .map(|e| e.unwrap().role)
            .collect();
        assert_eq!(roles[1], Role::Out(Excluded::Loss));
        // All equally lossy: relative to the cleanest, none is.
        for p in &mut ps {
            p.loss_rate = crate::loss::LossRate::default();
            for k in 0..5 {
                p.loss_rate
                    .record(1000, 950, t + Duration::from_secs(2 * k));
            }
        }
        assert!(
            estimates(&ps, 0.1, true, t)
                .iter()
                .all(|e| e.unwrap().role == Role::Use)
        );
    }
}
