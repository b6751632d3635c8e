//! Rates: a token bucket that enforces a path's configured cap, and the estimator that
//! turns probe reports (bytes the peer received) into a path's usable capacity for the
//! weighted scheduler.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How much a capped path may send in one burst beyond its rate: this much time's worth
/// of bytes, but never less than [`MIN_BURST`].
const BURST_TIME: Duration = Duration::from_millis(20);
const MIN_BURST: f64 = 16.0 * 1500.0;

/// A per-path token bucket in bytes. Tokens may go negative: a packet is never split, so
/// the send that crosses zero is allowed and the debt is paid back before the next one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket for `bits_per_second`, full at `now`.
    pub fn new(bits_per_second: u64, now: Instant) -> Self {
        let rate = bits_per_second as f64 / 8.0;
        let burst = (rate * BURST_TIME.as_secs_f64()).max(MIN_BURST);
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Bytes per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = self.last.max(now);
    }

    /// Whether a packet may go now.
    pub fn conforms(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens > 0.0
    }

    /// How long until the bucket conforms again (zero if it does).
    pub fn debt_time(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens > 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }

    /// Takes `bytes` sent at `now` from the bucket; the debt is bounded by one burst.
    pub fn consume(&mut self, bytes: usize, now: Instant) {
        self.refill(now);
        // Bounded debt: one burst's worth, so a long outage of other paths cannot build
        // up an unbounded backlog on this one.
        self.tokens = (self.tokens - bytes as f64).max(-self.burst);
    }
}

/// One delivery-rate sample: over an interval, what we sent on a path and what the peer
/// says it received on it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateSample {
    /// Bytes per second we put on the path.
    pub sent: f64,
    /// Bytes per second the peer received from the path.
    pub delivered: f64,
    /// Packets sent in the interval (a repeated packet once).
    pub packets: u64,
    /// Of those, the packets the peer did not receive.
    pub lost: u64,
    /// Whether the path is queueing: its one-way delay toward the peer clearly above its
    /// base (`owd.rs`), or without those, its RTT above its minimum by a margin.
    pub queueing: bool,
    /// Whether the earliest-arrival model expected more queue than the path can have had
    /// (its residual delay fell below the path's base delay): the rate is too low.
    pub overestimated_queue: bool,
}

/// Estimates a path's capacity in bytes per second, the way BBR estimates a bottleneck
/// (Cardwell et al., "BBR: Congestion-Based Congestion Control", ACM Queue 2016): the
/// peer cannot receive faster than the bottleneck, so the largest delivery rate over the
/// last [`WINDOW`] samples in which the path was in use is a lower bound that reaches the
/// capacity as soon as the path was kept busy for one sample.
///
/// On top of it, a probing gain: a sample without congestion in which the queue model
/// (bytes sent, drained at the estimate; `arrival.rs`) expected more queue than the
/// path's one-way delay showed raises the gain by [`GROWTH`] (up to [`MAX_GAIN`]): we sent
/// faster than the estimate and no queue built, so the path carries more. Before a
/// path's bottleneck was ever found, a sample that used [`USED_RATIO`] of the estimate
/// raises it too; after, one that used [`FULL_RATIO`] of it without a queue raises it
/// by [`GENTLE_GROWTH`] (the path may have become faster). A queue, or
/// heavy loss ([`HEAVY_LOSS`] of the packets: random loss of a few percent is not
/// congestion), resets the gain to 1 and keeps only the last [`CONGESTED_WINDOW`]
/// samples, so the estimate is what the path just delivered at its bottleneck.
///
/// Samples of an idle path (sent below [`IDLE_RATIO`] of the estimate) change nothing: a
/// path keeps its estimate while it is not needed. Until a sample finds the bottleneck
/// the estimate is only a lower bound and [`measured`](CapacityEstimator::measured) is
/// `None`: light traffic says nothing about what a path can carry.
#[derive(Debug, Clone, Default)]
pub struct CapacityEstimator {
    samples: VecDeque<f64>,
    gain: f64,
    delivered: f64,
    /// Whether a sample ever found the bottleneck (a queue or heavy loss), or the queue
    /// model's evidence raised the gain: until then the estimate is only a lower bound
    /// (what light traffic happened to use).
    measured: bool,
}

/// Samples the maximum filter spans (one per 200 ms or more: about 2 s).
pub const WINDOW: usize = 10;
/// Samples kept after a congested one.
pub const CONGESTED_WINDOW: usize = 3;
/// Probing gain per sample.
pub const GROWTH: f64 = 1.25;
/// Largest probing gain.
pub const MAX_GAIN: f64 = 2.0;
/// A sample is congested when it lost more than this share of its packets (and at
/// least [`MIN_LOSS_PACKETS`] of them), or the path queues. Counting packets, not
/// comparing rates: on a jittery path the rates of one interval differ by the jitter.
pub const HEAVY_LOSS: f64 = 0.10;
/// Fewer losses than this in a sample never make it congested.
pub const MIN_LOSS_PACKETS: u64 = 5;
/// Before the bottleneck is found, a sample that used this share of the estimate grows it.
pub const USED_RATIO: f64 = 0.7;
/// After, a sample that used this share of the estimate without a queue grows it by
/// [`GENTLE_GROWTH`].
pub const FULL_RATIO: f64 = 0.9;
/// The factor an estimate grows by after the bottleneck is found (see [`FULL_RATIO`]).
pub const GENTLE_GROWTH: f64 = 1.05;
/// A sample that sent less than this share of the estimate is an idle path's.
pub const IDLE_RATIO: f64 = 0.1;
/// Estimates never fall below this (bytes/s), so a path that carried no traffic for a
/// while still gets some and can show what it can do.
pub const FLOOR: f64 = 16_000.0;

impl CapacityEstimator {
    /// Takes one interval's sample (sent, delivered, loss, queue) and updates the estimate.
    pub fn update(&mut self, s: RateSample) {
        self.delivered = s.delivered;
        if s.sent <= 0.0 && s.delivered <= 0.0 {
            return;
        }
        let before = self.estimate();
        if before.is_some_and(|e| s.sent < e * IDLE_RATIO && !s.overestimated_queue) {
            return;
        }
        if self.gain < 1.0 {
            self.gain = 1.0;
        }
        let heavy_loss =
            s.lost >= MIN_LOSS_PACKETS && s.lost as f64 > s.packets as f64 * HEAVY_LOSS;
        let congested = heavy_loss || s.queueing;
        self.samples.push_back(s.delivered.max(FLOOR));
        if congested {
            self.measured = true;
            self.gain = 1.0;
            while self.samples.len() > CONGESTED_WINDOW {
                self.samples.pop_front();
            }
        } else {
            while self.samples.len() > WINDOW {
                self.samples.pop_front();
            }
            // Grow on evidence (the queue model expected a queue the path did not
            // have); before the bottleneck was ever found, also whenever most of the
            // lower bound was used without trouble, so a path can show what it carries.
            let used = before.is_some_and(|e| s.sent >= e * USED_RATIO);
            let full = before.is_some_and(|e| s.sent >= e * FULL_RATIO);
            if (s.overestimated_queue && self.measured) || (used && !self.measured) {
                self.gain = (self.gain * GROWTH).min(MAX_GAIN);
            } else if full {
                // Sending all the estimate allows without a queue: a little more.
                self.gain = (self.gain * GENTLE_GROWTH).min(MAX_GAIN);
            }
        }
    }

    /// The capacity in bytes per second once a sample found the bottleneck; `None`
    /// before (see [`lower_bound`](Self::lower_bound)).
    pub fn measured(&self) -> Option<f64> {
        if self.measured { self.estimate() } else { None }
    }

    /// At least this many bytes per second: the largest delivery rate seen recently,
    /// with the probing gain (the capacity once [`measured`](Self::measured)).
    pub fn estimate(&self) -> Option<f64> {
        let max = self.samples.iter().copied().max_by(f64::total_cmp)?;
        Some((max * self.gain.max(1.0)).max(FLOOR))
    }

    /// The largest delivery rate of the window, without the probing gain (bytes/s).
    pub fn bottleneck(&self) -> Option<f64> {
        self.samples.iter().copied().max_by(f64::total_cmp)
    }

    /// The last measured delivery rate in bytes per second.
    pub fn delivered(&self) -> f64 {
        self.delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_paces_at_its_rate() {
        let t0 = Instant::now();
        // 8 Mbit/s = 1 MB/s; burst = max(20 kB, 24 kB) = 24 kB.
        let mut b = TokenBucket::new(8_000_000, t0);
        let mut sent = 0usize;
        while b.conforms(t0) {
            b.consume(1000, t0);
            sent += 1000;
        }
        assert_eq!(sent, 24_000);
        // Over one second at 1 MB/s, about 1 MB more goes out.
        let mut t = t0;
        let mut later = 0usize;
        while t < t0 + Duration::from_secs(1) {
            t += Duration::from_micros(100);
            while b.conforms(t) {
                b.consume(1000, t);
                later += 1000;
            }
        }
        assert!((990_000..=1_010_000).contains(&later), "{later}");
    }

    #[test]
    fn debt_time_is_the_time_to_pay_back() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(8_000_000, t0);
        b.consume(24_000 + 10_000, t0);
        let d = b.debt_time(t0);
        assert!((d.as_secs_f64() - 0.010).abs() < 1e-6, "{d:?}");
        assert_eq!(b.debt_time(t0 + Duration::from_millis(11)), Duration::ZERO);
    }

    /// A sample of 1000-byte packets.
    fn sample(sent: f64, delivered: f64, queueing: bool) -> RateSample {
        RateSample {
            sent,
            delivered,
            packets: (sent / 1000.0) as u64,
            lost: ((sent - delivered).max(0.0) / 1000.0) as u64,
            queueing,
            overestimated_queue: false,
        }
    }

    #[test]
    fn capacity_settles_at_the_bottleneck() {
        // A path that delivers at most 100 units. We offer 1.5 times the estimate (a TCP
        // flow probing); while the path keeps up, no queue builds though the model
        // expected one, and the gain grows; beyond the bottleneck it queues.
        let cap = 100_000.0;
        for queue_signal in [true, false] {
            let mut c = CapacityEstimator::default();
            let mut offered = 5_000.0;
            for _ in 0..200 {
                let delivered = f64::min(offered, cap);
                c.update(RateSample {
                    overestimated_queue: offered <= cap,
                    ..sample(offered, delivered, queue_signal && offered > cap)
                });
                offered = 1.5 * c.estimate().unwrap();
            }
            assert_eq!(c.bottleneck(), Some(cap), "queue signal {queue_signal}");
            assert!(c.measured().is_some());
            let e = c.estimate().unwrap();
            assert!(e >= cap && e <= cap * GROWTH, "{e}");
        }
    }

    #[test]
    fn random_loss_does_not_make_the_estimate_collapse() {
        // 5% of what is sent is lost at random; the path could carry 1 MB/s; we offer
        // a fifth more than the estimate.
        let mut c = CapacityEstimator::default();
        let mut offered = 500_000.0;
        for _ in 0..100 {
            let delivered = f64::min(offered, 1e6) * 0.95;
            c.update(RateSample {
                overestimated_queue: offered < 1e6,
                ..sample(offered, delivered, offered > 1e6)
            });
            offered = 1.2 * c.estimate().unwrap();
        }
        let e = c.estimate().unwrap();
        assert!(e > 0.9e6 && e < 1.25e6, "{e}");
    }

    #[test]
    fn a_queue_gives_what_was_just_delivered_and_an_idle_path_keeps_its_estimate() {
        let mut c = CapacityEstimator::default();
        for _ in 0..5 {
            c.update(sample(1e6, 1e6, false));
        }
        // Used without trouble before any bottleneck was found: probing upwards.
        assert!(c.estimate().unwrap() > 1e6);
        assert_eq!(c.measured(), None, "light traffic is a lower bound only");
        // The path got slower: it queues, and delivered what it now can.
        for _ in 0..3 {
            c.update(sample(1e6, 4e5, true));
        }
        assert_eq!(c.estimate(), Some(4e5));
        // Idle (probes only): unchanged.
        for _ in 0..50 {
            c.update(sample(100.0, 100.0, false));
        }
        assert_eq!(c.estimate(), Some(4e5));
        // The model expected more queue than there was: probe upwards even so.
        c.update(RateSample {
            overestimated_queue: true,
            ..sample(1e5, 1e5, false)
        });
        assert_eq!(c.estimate(), Some(4e5 * GROWTH));
    }

    use proptest::prelude::*;

    proptest! {
        /// The peer never receives faster than the bottleneck, so the bottleneck
        /// estimate never exceeds the capacity, and a few saturated samples find it
        /// (less the random loss), whatever came before.
        #[test]
        fn the_bottleneck_estimate_is_a_lower_bound_that_saturation_finds(
            cap in 1e5f64..1e8,
            loss in 0.0f64..0.05,
            offers in prop::collection::vec(0.0f64..3.0, 1..60),
        ) {
            let mut c = CapacityEstimator::default();
            for k in offers {
                let sent = k * cap;
                let delivered = sent.min(cap) * (1.0 - loss);
                c.update(sample(sent, delivered, sent > cap));
                prop_assert!(c.bottleneck().unwrap_or(0.0) <= cap * (1.0 + 1e-9));
                prop_assert!(c.estimate().unwrap_or(0.0) <= cap.max(FLOOR) * MAX_GAIN * (1.0 + 1e-9));
            }
            for _ in 0..3 {
                c.update(sample(2.0 * cap, cap * (1.0 - loss), true));
            }
            let b = c.bottleneck().unwrap();
            prop_assert!(b >= cap * (1.0 - loss) * (1.0 - 1e-9), "{} of {}", b, cap);
            prop_assert!(c.measured().is_some());
        }
    }
}
