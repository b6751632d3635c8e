//! Rates: a token bucket that enforces a path's configured cap, and the estimator that
//! turns probe reports (bytes the peer received) into a path's usable capacity for the
//! weighted scheduler.

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
        TokenBucket {
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

    pub fn consume(&mut self, bytes: usize, now: Instant) {
        self.refill(now);
        // Bounded debt: one burst's worth, so a long outage of other paths cannot build
        // up an unbounded backlog on this one.
        self.tokens = (self.tokens - bytes as f64).max(-self.burst);
    }
}

/// One delivery-rate sample: over an interval, what we sent on a path and what the peer
/// says it received on it.
#[derive(Debug, Clone, Copy)]
pub struct RateSample {
    /// Bytes per second we put on the path.
    pub sent: f64,
    /// Bytes per second the peer received from the path.
    pub delivered: f64,
    /// Whether the path's RTT is above its minimum by a queueing margin.
    pub queueing: bool,
}

/// Estimates a path's capacity in bytes per second. A sample taken while the path is
/// losing or queueing (delivered clearly below sent, or RTT inflated) measures the
/// bottleneck, so the estimate becomes the delivered rate; a sample where we used most of
/// the estimate without trouble probes upwards by [`GROWTH`]; otherwise the estimate only
/// rises to what was delivered.
#[derive(Debug, Clone, Default)]
pub struct CapacityEstimator {
    estimate: Option<f64>,
    delivered: f64,
}

/// Multiplicative growth per uncongested, well-used sample.
pub const GROWTH: f64 = 1.10;
/// A sample is congested when delivered < sent × this.
pub const LOSS_RATIO: f64 = 0.95;
/// After a congested sample the estimate is set a little under the delivered rate so the
/// queue that built up can drain.
pub const BACKOFF: f64 = 0.95;
/// Only samples that used at least this share of the estimate may grow it.
pub const USED_RATIO: f64 = 0.7;
/// Estimates never fall below this (bytes/s), so a path that carried no traffic for a
/// while still gets some and can show what it can do.
pub const FLOOR: f64 = 16_000.0;

impl CapacityEstimator {
    pub fn update(&mut self, s: RateSample) {
        self.delivered = s.delivered;
        if s.sent <= 0.0 && s.delivered <= 0.0 {
            return;
        }
        let congested = s.delivered < s.sent * LOSS_RATIO || s.queueing;
        let next = match self.estimate {
            None if congested => s.delivered * BACKOFF,
            None => s.delivered.max(s.sent),
            Some(_) if congested => s.delivered * BACKOFF,
            Some(e) if s.sent >= e * USED_RATIO => e.max(s.delivered) * GROWTH,
            Some(e) => e.max(s.delivered),
        };
        self.estimate = Some(next.max(FLOOR));
    }

    /// The capacity in bytes per second, once measured.
    pub fn estimate(&self) -> Option<f64> {
        self.estimate
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

    #[test]
    fn capacity_settles_at_the_bottleneck() {
        // A path that delivers at most 100 units while we keep offering more.
        let mut c = CapacityEstimator::default();
        let cap = 100_000.0;
        let mut offered = 50_000.0;
        for _ in 0..200 {
            let delivered = f64::min(offered, cap);
            c.update(RateSample {
                sent: offered,
                delivered,
                queueing: false,
            });
            // The scheduler offers what the estimate allows.
            offered = c.estimate().unwrap();
        }
        let e = c.estimate().unwrap();
        assert!(e > 0.85 * cap && e < 1.15 * cap, "{e}");
    }

    #[test]
    fn queueing_backs_off_even_without_loss() {
        let mut c = CapacityEstimator::default();
        c.update(RateSample {
            sent: 1e6,
            delivered: 1e6,
            queueing: false,
        });
        c.update(RateSample {
            sent: 1e6,
            delivered: 1e6,
            queueing: true,
        });
        assert!(c.estimate().unwrap() < 1e6);
    }
}
