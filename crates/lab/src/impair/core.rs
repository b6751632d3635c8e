//! The pure core of the impairment forwarder: one direction of one uplink as a state
//! machine that takes `now` and a packet length and says when the packet arrives at the
//! far end, or that it is lost. No clock, no I/O; randomness comes from a seeded
//! generator, so a run is reproducible from its seed and its arrivals.
//!
//! The model of a packet's trip, in order (as a real access line: the modem's queue, the
//! line's rate, the medium, the distance):
//! 1. **Queue**: a packet that finds `queue_packets` packets still waiting for the line
//!    (or on it) is dropped (tail drop, like tc-netem's `limit` and a modem's FIFO).
//! 2. **Rate**: the line sends one packet after another at `rate_mbit` (IP bytes, as the
//!    forwarder sees them); a packet leaves when the line has sent it (serialisation).
//! 3. **Outage, loss, bursty loss**, decided at the moment the packet leaves: inside a
//!    periodic outage window everything is lost; then random loss with `loss_percent`;
//!    then the Gilbert-Elliott chain (below). A lost packet still used the line.
//! 4. **Delay and jitter**: it arrives `delay` plus a jitter offset after leaving. With
//!    `reorder`, the offset is drawn per packet, uniform in `[-jitter, +jitter]` (tc-netem's
//!    default jitter), so packets close together can swap. Without it, the offset is a
//!    random walk through points drawn uniformly in that range every `4 * jitter` (at
//!    least 1 ms) and joined by straight lines, so the delay never falls faster than time
//!    passes and packets keep their order; arrival times are also never earlier than the
//!    previous packet's. The total delay is never below zero.
//!
//! Gilbert-Elliott (E. N. Gilbert, "Capacity of a burst-noise channel", 1960; E. O.
//! Elliott, 1963; parameterised as in tc-netem's `loss gemodel p r 1-h 1-k` and Salsano et
//! al., "Definition of a general and intuitive loss model for packet networks and its
//! implementation in the Netem module", 2012): a two-state chain, Good and Bad, stepped
//! once per packet that reaches the line. The packet is lost with the current state's loss
//! probability (`loss_bad`, default 100 %; `loss_good`, default 0 %), then the chain moves
//! Good -> Bad with probability `p` and Bad -> Good with `r`. The long-run share of time in
//! Bad is `p / (p + r)`, and a stay in Bad lasts `1 / r` packets on average.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Queue limit when a direction has a rate and no `queue_packets`: tc-netem's default
/// `limit` (tc-netem(8)).
pub const DEFAULT_QUEUE_PACKETS: u32 = 1000;

/// The shortest step of the order-keeping jitter walk.
const MIN_WALK_STEP: Duration = Duration::from_millis(1);

/// Bursty loss: the Gilbert-Elliott chain, probabilities in percent (0..=100).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GilbertElliott {
    /// Per packet, the chance of moving from Good to Bad, percent.
    pub p: f64,
    /// Per packet, the chance of moving from Bad to Good, percent (> 0).
    pub r: f64,
    /// Loss in the Bad state, percent (tc-netem's `1-h`); usually 100.
    pub loss_bad: f64,
    /// Loss in the Good state, percent (tc-netem's `1-k`); usually 0.
    pub loss_good: f64,
}

impl GilbertElliott {
    /// The long-run loss ratio, 0..=1: `pi_bad * loss_bad + pi_good * loss_good`.
    pub fn mean_loss(&self) -> f64 {
        let bad = self.p / (self.p + self.r);
        (bad * self.loss_bad + (1.0 - bad) * self.loss_good) / 100.0
    }
}

/// A periodic total outage: from `every` after the setting on, every `every`, nothing gets
/// through for `lasting` (e.g. a LEO satellite handover).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// The period.
    pub every: Duration,
    /// How long each outage lasts (shorter than `every`).
    pub lasting: Duration,
}

/// How one direction of an uplink behaves. The default passes everything at once.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Settings {
    /// Line rate in Mbit/s of IP packets; `None` for no limit (and no queue).
    pub rate_mbit: Option<f64>,
    /// One-way delay added to every packet.
    pub delay: Duration,
    /// The delay varies by up to this much either way.
    pub jitter: Duration,
    /// Jitter may reorder packets (drawn per packet); otherwise order is kept.
    pub reorder: bool,
    /// Random loss, percent (0..=100).
    pub loss_percent: f64,
    /// Bursty loss on top of the random loss.
    pub burst_loss: Option<GilbertElliott>,
    /// Queue limit in packets (only with a rate); [`DEFAULT_QUEUE_PACKETS`] when `None`.
    pub queue_packets: Option<u32>,
    /// Periodic total outages.
    pub outage: Option<Outage>,
}

impl Settings {
    /// True when this direction changes nothing (packets pass at once, none lost).
    pub fn is_clear(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the ranges; the message names the field and the range.
    pub fn validate(&self) -> Result<(), String> {
        let percent = |name: &str, v: f64| {
            if (0.0..=100.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} {v} is not a percentage (0..=100)"))
            }
        };
        if let Some(rate) = self.rate_mbit
            && !(rate.is_finite() && (0.001..=100_000.0).contains(&rate))
        {
            return Err(format!(
                "rate {rate} Mbit/s is out of range (0.001..=100000)"
            ));
        }
        if self.delay > Duration::from_secs(10) || self.jitter > Duration::from_secs(10) {
            return Err("delay and jitter are at most 10 s".into());
        }
        percent("loss", self.loss_percent)?;
        if let Some(ge) = self.burst_loss {
            percent("burst-loss p", ge.p)?;
            percent("burst-loss r", ge.r)?;
            percent("burst-loss loss in the bad state", ge.loss_bad)?;
            percent("burst-loss loss in the good state", ge.loss_good)?;
            if ge.r <= 0.0 {
                return Err(
                    "burst-loss r must be above 0, or the line never leaves the bad state".into(),
                );
            }
        }
        if self.queue_packets == Some(0) {
            return Err("queue must hold at least 1 packet".into());
        }
        if let Some(o) = self.outage
            && (o.every.is_zero() || o.lasting >= o.every)
        {
            return Err(format!(
                "outage lasting {:?} every {:?}: it must be shorter than its period",
                o.lasting, o.every
            ));
        }
        Ok(())
    }
}

/// Why a packet was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full.
    Queue,
    /// Random loss.
    Loss,
    /// The Gilbert-Elliott chain.
    BurstLoss,
    /// Inside an outage window.
    Outage,
}

/// What happens to a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It arrives at the far end at this time.
    Deliver(Instant),
    /// It is lost.
    Drop(DropReason),
}

/// Counts of one direction since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Packets seen.
    pub packets: u64,
    /// Packets delivered (or to be).
    pub delivered: u64,
    /// Bytes delivered (or to be).
    pub delivered_bytes: u64,
    /// Dropped by the queue limit.
    pub dropped_queue: u64,
    /// Dropped by random loss.
    pub dropped_loss: u64,
    /// Dropped by the Gilbert-Elliott chain.
    pub dropped_burst: u64,
    /// Dropped inside an outage.
    pub dropped_outage: u64,
}

/// A small seeded generator (SplitMix64, Steele, Lea and Flood, "Fast splittable
/// pseudorandom number generators", OOPSLA 2014): good enough for loss and jitter, and
/// reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: f64) -> bool {
        percent > 0.0 && self.unit() * 100.0 < percent
    }

    /// Uniform in [-span, +span] nanoseconds.
    fn offset(&mut self, span: i64) -> i64 {
        ((self.unit() * 2.0 - 1.0) * span as f64).round() as i64
    }
}

/// The order-keeping jitter walk: the offset at `t0` is `d0`, at `t1` is `d1`, straight in
/// between.
#[derive(Debug, Clone, Copy)]
struct Walk {
    t0: Instant,
    d0: i64,
    t1: Instant,
    d1: i64,
}

/// One direction of one uplink: see the module documentation for the model.
#[derive(Debug, Clone)]
pub struct Impairment {
    settings: Settings,
    rng: Rng,
    /// When the line has sent everything accepted so far.
    line_free: Instant,
    /// When each packet in the queue (or on the line) will have left, oldest first.
    queue: VecDeque<Instant>,
    ge_bad: bool,
    last_arrival: Option<Instant>,
    walk: Option<Walk>,
    /// Outage windows count from here.
    epoch: Instant,
    counters: Counters,
}

impl Impairment {
    /// A direction with `settings`, its randomness from `seed`, starting at `now`.
    pub fn new(settings: Settings, seed: u64, now: Instant) -> Self {
        Self {
            settings,
            rng: Rng::new(seed),
            line_free: now,
            queue: VecDeque::new(),
            ge_bad: false,
            last_arrival: None,
            walk: None,
            epoch: now,
            counters: Counters::default(),
        }
    }

    /// The current settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The counts so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Packets in the queue (or on the line) at `now`.
    pub fn queued(&self, now: Instant) -> usize {
        self.queue.iter().filter(|&&t| t > now).count()
    }

    /// Changes the settings at `now`, while traffic runs: packets already accepted keep
    /// their times; the line, queue and chain state carry on. A new outage setting starts
    /// its period at `now`; a new jitter setting starts a new walk. Without `reorder`,
    /// packets still never overtake earlier ones (a shorter delay takes over gradually).
    pub fn set(&mut self, settings: Settings, now: Instant) {
        if settings.outage != self.settings.outage {
            self.epoch = now;
        }
        if settings.jitter != self.settings.jitter || settings.reorder != self.settings.reorder {
            self.walk = None;
        }
        if settings.burst_loss.is_none() {
            self.ge_bad = false;
        }
        self.settings = settings;
    }

    /// Starts the randomness again from `seed` (the rest of the state carries on).
    pub fn reseed(&mut self, seed: u64) {
        self.rng = Rng::new(seed);
    }

    /// A packet of `len` bytes arrives at `now` (calls come in time order): when it
    /// reaches the far end, or why it is lost.
    pub fn on_packet(&mut self, now: Instant, len: usize) -> Verdict {
        self.counters.packets += 1;
        while self.queue.front().is_some_and(|&t| t <= now) {
            self.queue.pop_front();
        }
        let leaves = match self.settings.rate_mbit {
            Some(rate) => {
                let limit = self.settings.queue_packets.unwrap_or(DEFAULT_QUEUE_PACKETS);
                if self.queue.len() >= limit as usize {
                    return self.drop(DropReason::Queue);
                }
                let start = self.line_free.max(now);
                let leaves = start + serialisation(len, rate);
                self.line_free = leaves;
                self.queue.push_back(leaves);
                leaves
            }
            None => now,
        };
        if self.in_outage(leaves) {
            return self.drop(DropReason::Outage);
        }
        if self.rng.chance(self.settings.loss_percent) {
            return self.drop(DropReason::Loss);
        }
        if let Some(ge) = self.settings.burst_loss {
            let lost = self.rng.chance(if self.ge_bad {
                ge.loss_bad
            } else {
                ge.loss_good
            });
            let flip = self.rng.chance(if self.ge_bad { ge.r } else { ge.p });
            if flip {
                self.ge_bad = !self.ge_bad;
            }
            if lost {
                return self.drop(DropReason::BurstLoss);
            }
        }
        let mut arrives = leaves + self.delay_at(leaves);
        if !self.settings.reorder {
            if let Some(last) = self.last_arrival {
                arrives = arrives.max(last);
            }
            self.last_arrival = Some(arrives);
        }
        self.counters.delivered += 1;
        self.counters.delivered_bytes += len as u64;
        Verdict::Deliver(arrives)
    }

    fn drop(&mut self, reason: DropReason) -> Verdict {
        let c = &mut self.counters;
        match reason {
            DropReason::Queue => c.dropped_queue += 1,
            DropReason::Loss => c.dropped_loss += 1,
            DropReason::BurstLoss => c.dropped_burst += 1,
            DropReason::Outage => c.dropped_outage += 1,
        }
        Verdict::Drop(reason)
    }

    /// True when `t` falls in an outage window.
    pub fn in_outage(&self, t: Instant) -> bool {
        let Some(o) = self.settings.outage else {
            return false;
        };
        let since = t.saturating_duration_since(self.epoch).as_nanos();
        let every = o.every.as_nanos();
        since >= every && since % every < o.lasting.as_nanos()
    }

    /// The one-way delay of a packet leaving at `t`.
    fn delay_at(&mut self, t: Instant) -> Duration {
        let base = nanos(self.settings.delay);
        let span = nanos(self.settings.jitter);
        if span == 0 {
            return self.settings.delay;
        }
        let offset = if self.settings.reorder {
            self.rng.offset(span)
        } else {
            self.walk_at(t, span)
        };
        Duration::from_nanos((base + offset).max(0) as u64)
    }

    /// The jitter walk's offset at `t` (calls come in time order).
    fn walk_at(&mut self, t: Instant, span: i64) -> i64 {
        let step = Duration::from_nanos(4 * span as u64).max(MIN_WALK_STEP);
        let mut walk = match self.walk {
            // After an idle gap of more than a step, start afresh from here.
            Some(w) if t < w.t1 + step => w,
            _ => Walk {
                t0: t,
                d0: self.rng.offset(span),
                t1: t + step,
                d1: self.rng.offset(span),
            },
        };
        while t >= walk.t1 {
            walk = Walk {
                t0: walk.t1,
                d0: walk.d1,
                t1: walk.t1 + step,
                d1: self.rng.offset(span),
            };
        }
        self.walk = Some(walk);
        let done = t.saturating_duration_since(walk.t0).as_nanos() as f64;
        let whole = (walk.t1 - walk.t0).as_nanos() as f64;
        walk.d0 + ((walk.d1 - walk.d0) as f64 * done / whole).round() as i64
    }
}

/// How long a line of `rate` Mbit/s takes to send `len` bytes.
pub fn serialisation(len: usize, rate_mbit: f64) -> Duration {
    // bits / (Mbit/s) = microseconds; * 1000 = nanoseconds.
    Duration::from_nanos((len as f64 * 8.0 * 1000.0 / rate_mbit).round() as u64)
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// Feeds packets of `len` bytes every `gap` for `count` packets; returns the verdicts
    /// with their arrival times.
    fn feed(
        imp: &mut Impairment,
        start: Instant,
        gap: Duration,
        count: usize,
        len: usize,
    ) -> Vec<(Instant, Verdict)> {
        (0..count)
            .map(|n| {
                let now = start + gap * n as u32;
                (now, imp.on_packet(now, len))
            })
            .collect()
    }

    #[test]
    fn the_default_passes_everything_at_once() {
        let t0 = Instant::now();
        let mut imp = Impairment::new(Settings::default(), 1, t0);
        for (now, v) in feed(&mut imp, t0, us(10), 1000, 1500) {
            assert_eq!(v, Verdict::Deliver(now));
        }
        assert!(Settings::default().is_clear());
    }

    #[test]
    fn a_fixed_delay_is_exact() {
        let t0 = Instant::now();
        let s = Settings {
            delay: ms(25),
            ..Settings::default()
        };
        let mut imp = Impairment::new(s, 1, t0);
        for (now, v) in feed(&mut imp, t0, us(100), 1000, 100) {
            assert_eq!(v, Verdict::Deliver(now + ms(25)));
        }
    }

    #[test]
    fn the_rate_spaces_packets_by_their_serialisation() {
        let t0 = Instant::now();
        let s = Settings {
            rate_mbit: Some(100.0),
            ..Settings::default()
        };
        let mut imp = Impairment::new(s, 1, t0);
        // 10 packets of 1500 bytes at once: 120 us each at 100 Mbit/s.
        for n in 1..=10u32 {
            assert_eq!(imp.on_packet(t0, 1500), Verdict::Deliver(t0 + us(120) * n));
        }
        assert_eq!(imp.queued(t0), 10);
        assert_eq!(imp.queued(t0 + us(600)), 5);
        // An idle line sends at once.
        let later = t0 + ms(10);
        assert_eq!(
            imp.on_packet(later, 1500),
            Verdict::Deliver(later + us(120))
        );
    }

    #[test]
    fn a_full_queue_drops_the_newcomer() {
        let t0 = Instant::now();
        let s = Settings {
            rate_mbit: Some(1.0),
            queue_packets: Some(5),
            ..Settings::default()
        };
        let mut imp = Impairment::new(s, 1, t0);
        let verdicts: Vec<_> = (0..8).map(|_| imp.on_packet(t0, 1000)).collect();
        assert!(
            verdicts[..5]
                .iter()
                .all(|v| matches!(v, Verdict::Deliver(_)))
        );
        assert!(
            verdicts[5..]
                .iter()
                .all(|v| *v == Verdict::Drop(DropReason::Queue))
        );
        assert_eq!(imp.counters().dropped_queue, 3);
        // 1000 bytes at 1 Mbit/s is 8 ms: after one has left there is room for one.
        assert!(matches!(
            imp.on_packet(t0 + ms(8), 1000),
            Verdict::Deliver(_)
        ));
        assert_eq!(
            imp.on_packet(t0 + ms(8), 1000),
            Verdict::Drop(DropReason::Queue)
        );
    }

    #[test]
    fn random_loss_matches_its_setting() {
        let t0 = Instant::now();
        let s = Settings {
            loss_percent: 5.0,
            ..Settings::default()
        };
        let mut imp = Impairment::new(s, 7, t0);
        let n = 200_000;
        feed(&mut imp, t0, us(1), n, 100);
        let lost = imp.counters().dropped_loss as f64 / n as f64;
        // sd of the ratio is sqrt(0.05 * 0.95 / n) = 0.0005.
        assert!((lost - 0.05).abs() < 0.0025, "lost {lost}");
    }

    /// Loss runs (consecutive lost packets) of a verdict sequence.
    fn runs(verdicts: &[(Instant, Verdict)]) -> Vec<usize> {
        let mut runs = Vec::new();
        let mut run = 0;
        for (_, v) in verdicts {
            if matches!(v, Verdict::Drop(_)) {
                run += 1;
            } else if run > 0 {
                runs.push(run);
                run = 0;
            }
        }
        runs
    }

    #[test]
    fn gilbert_elliott_loss_comes_in_bursts_of_the_set_length() {
        let t0 = Instant::now();
        let ge = GilbertElliott {
            p: 1.0,
            r: 25.0,
            loss_bad: 100.0,
            loss_good: 0.0,
        };
        let s = Settings {
            burst_loss: Some(ge),
            ..Settings::default()
        };
        let mut imp = Impairment::new(s, 11, t0);
        let n = 400_000;
        let verdicts = feed(&mut imp, t0, us(1), n, 100);
        let lost = imp.counters().dropped_burst as f64 / n as f64;
        let expect = ge.mean_loss(); // 1 / 26 = 3.85 %
        assert!(
            (lost - expect).abs() < 0.1 * expect,
            "lost {lost}, expect {expect}"
        );
        let runs = runs(&verdicts);
        let mean_run = runs.iter().sum::<usize>() as f64 / runs.len() as f64;
        // A stay in Bad lasts 1 / r = 4 packets on average.
        assert!((mean_run - 4.0).abs() < 0.3, "mean burst {mean_run}");
        // Random loss at the same rate has runs of about 1.04.
        let mut plain = Impairment::new(
            Settings {
                loss_percent: expect * 100.0,
                ..Settings::default()
            },
            11,
            t0,
        );
        let plain_runs = runs_of(&feed(&mut plain, t0, us(1), n, 100));
        assert!(plain_runs < 1.2, "random loss runs {plain_runs}");
    }

    fn runs_of(verdicts: &[(Instant, Verdict)]) -> f64 {
        let r = runs(verdicts);
        r.iter().sum::<usize>() as f64 / r.len() as f64
    }

    #[test]
    fn outages_drop_everything_inside_their_windows_only() {
        let t0 = Instant::now();
        let s = Settings {
            outage: Some(Outage {
                every: ms(1000),
                lasting: ms(100),
            }),
            ..Settings::default()
        };
        let mut imp = Impairment::new(s, 1, t0);
        for (now, v) in feed(&mut imp, t0, ms(1), 3500, 100) {
            let since = (now - t0).as_millis();
            let inside = since >= 1000 && since % 1000 < 100;
            assert_eq!(
                v == Verdict::Drop(DropReason::Outage),
                inside,
                "at {since} ms: {v:?}"
            );
        }
        assert_eq!(imp.counters().dropped_outage, 300);
    }

    #[test]
    fn jitter_without_reordering_keeps_order_and_spreads_the_delay() {
        let t0 = Instant::now();
        let s = Settings {
            delay: ms(25),
            jitter: ms(8),
            ..Settings::default()
        };
        let mut imp = Impairment::new(s, 3, t0);
        let verdicts = feed(&mut imp, t0, us(100), 100_000, 1500);
        let delays: Vec<f64> = verdicts
            .iter()
            .map(|(now, v)| match v {
                Verdict::Deliver(at) => (*at - *now).as_secs_f64() * 1000.0,
                _ => panic!("{v:?}"),
            })
            .collect();
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        let (lo, hi) = delays
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &d| (a.min(d), b.max(d)));
        assert!((mean - 25.0).abs() < 1.0, "mean {mean}");
        assert!(lo >= 17.0 - 1e-6 && hi <= 33.0 + 1e-6, "{lo}..{hi}");
        assert!(hi - lo > 10.0, "the delay hardly varies: {lo}..{hi}");
        let arrivals: Vec<Instant> = verdicts
            .iter()
            .map(|(_, v)| match v {
                Verdict::Deliver(at) => *at,
                _ => unreachable!(),
            })
            .collect();
        assert!(arrivals.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn jitter_with_reordering_swaps_packets() {
        let t0 = Instant::now();
        let s = Settings {
            delay: ms(25),
            jitter: ms(8),
            reorder: true,
            ..Settings::default()
        };
        let mut imp = Impairment::new(s, 3, t0);
        let verdicts = feed(&mut imp, t0, ms(1), 10_000, 1500);
        let arrivals: Vec<Instant> = verdicts
            .iter()
            .map(|(_, v)| match v {
                Verdict::Deliver(at) => *at,
                _ => unreachable!(),
            })
            .collect();
        let swaps = arrivals.windows(2).filter(|w| w[1] < w[0]).count();
        // Two draws 1 ms apart in a 16 ms range swap about 44 % of the time.
        assert!(swaps > 3000, "{swaps} swaps");
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let t0 = Instant::now();
        let s = Settings {
            rate_mbit: Some(10.0),
            delay: ms(20),
            jitter: ms(5),
            loss_percent: 3.0,
            burst_loss: Some(GilbertElliott {
                p: 2.0,
                r: 30.0,
                loss_bad: 100.0,
                loss_good: 0.0,
            }),
            ..Settings::default()
        };
        let a = feed(&mut Impairment::new(s, 42, t0), t0, us(300), 5000, 1200);
        let b = feed(&mut Impairment::new(s, 42, t0), t0, us(300), 5000, 1200);
        let c = feed(&mut Impairment::new(s, 43, t0), t0, us(300), 5000, 1200);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn validation_names_the_field() {
        let bad = [
            (
                Settings {
                    loss_percent: 101.0,
                    ..Settings::default()
                },
                "loss",
            ),
            (
                Settings {
                    rate_mbit: Some(0.0),
                    ..Settings::default()
                },
                "rate",
            ),
            (
                Settings {
                    queue_packets: Some(0),
                    ..Settings::default()
                },
                "queue",
            ),
            (
                Settings {
                    outage: Some(Outage {
                        every: ms(100),
                        lasting: ms(100),
                    }),
                    ..Settings::default()
                },
                "outage",
            ),
            (
                Settings {
                    burst_loss: Some(GilbertElliott {
                        p: 1.0,
                        r: 0.0,
                        loss_bad: 100.0,
                        loss_good: 0.0,
                    }),
                    ..Settings::default()
                },
                "burst-loss r",
            ),
        ];
        for (s, field) in bad {
            let err = s.validate().unwrap_err();
            assert!(err.contains(field), "{err}");
        }
        assert!(Settings::default().validate().is_ok());
    }

    fn settings() -> impl Strategy<Value = Settings> {
        (
            proptest::option::of(1.0f64..1000.0),
            0u64..50_000,
            0u64..30_000,
            any::<bool>(),
            0.0f64..20.0,
            proptest::option::of(1u32..200),
        )
            .prop_map(|(rate, delay, jitter, reorder, loss, queue)| Settings {
                rate_mbit: rate,
                delay: us(delay),
                jitter: us(jitter),
                reorder,
                loss_percent: loss,
                queue_packets: queue,
                ..Settings::default()
            })
    }

    /// Arrivals as (gap since the previous one in us, length).
    fn arrivals() -> impl Strategy<Value = Vec<(u64, usize)>> {
        proptest::collection::vec((0u64..2000, 40usize..1500), 1..400)
    }

    proptest! {
        #[test]
        fn packets_never_arrive_before_they_are_sent_nor_beyond_the_delay_bound(
            s in settings(), input in arrivals(), seed in any::<u64>()
        ) {
            let t0 = Instant::now();
            let mut imp = Impairment::new(s, seed, t0);
            let mut now = t0;
            let mut line = t0;
            for (gap, len) in input {
                now += us(gap);
                let verdict = imp.on_packet(now, len);
                // Every packet but one refused by the queue uses the line, lost or not.
                let sent = match s.rate_mbit {
                    Some(rate) if verdict != Verdict::Drop(DropReason::Queue) => {
                        line = line.max(now) + serialisation(len, rate);
                        line
                    }
                    _ => now,
                };
                if let Verdict::Deliver(at) = verdict {
                    prop_assert!(at >= sent, "arrives before it is sent");
                    prop_assert!(at <= sent + s.delay + s.jitter + us(1));
                }
            }
        }

        #[test]
        fn without_reordering_the_order_is_kept(
            s in settings(), input in arrivals(), seed in any::<u64>(), change in settings()
        ) {
            let (s, change) = (
                Settings { reorder: false, ..s },
                Settings { reorder: false, ..change },
            );
            let t0 = Instant::now();
            let mut imp = Impairment::new(s, seed, t0);
            let mut now = t0;
            let mut last = t0;
            let half = input.len() / 2;
            for (n, (gap, len)) in input.into_iter().enumerate() {
                now += us(gap);
                if n == half {
                    imp.set(change, now); // a change while traffic runs
                }
                if let Verdict::Deliver(at) = imp.on_packet(now, len) {
                    prop_assert!(at >= last, "overtook an earlier packet");
                    last = at;
                }
            }
        }

        #[test]
        fn the_rate_is_never_exceeded_and_the_queue_never_overflows(
            rate in 1.0f64..500.0, queue in 1u32..100, input in arrivals(), seed in any::<u64>()
        ) {
            let s = Settings { rate_mbit: Some(rate), queue_packets: Some(queue), ..Settings::default() };
            let t0 = Instant::now();
            let mut imp = Impairment::new(s, seed, t0);
            let mut now = t0;
            let mut sent = Vec::new();
            for (gap, len) in input {
                now += us(gap);
                if let Verdict::Deliver(at) = imp.on_packet(now, len) {
                    sent.push((at, len));
                }
                prop_assert!(imp.queued(now) <= queue as usize);
            }
            // Between any two departures, no more bytes left than the rate allows.
            for w in sent.windows(2) {
                let (a, b) = (w[0].0, w[1].0);
                prop_assert!(b >= a + serialisation(w[1].1, rate) - Duration::from_nanos(1));
            }
        }

        #[test]
        fn loss_counts_add_up(s in settings(), input in arrivals(), seed in any::<u64>()) {
            let t0 = Instant::now();
            let mut imp = Impairment::new(s, seed, t0);
            let mut now = t0;
            let n = input.len() as u64;
            for (gap, len) in input {
                now += us(gap);
                imp.on_packet(now, len);
            }
            let c = imp.counters();
            prop_assert_eq!(c.packets, n);
            prop_assert_eq!(
                c.delivered + c.dropped_queue + c.dropped_loss + c.dropped_burst + c.dropped_outage,
                n
            );
        }
    }
}
