//! Loss: over a sliding window of the last [`WINDOW`] probe outcomes (round trip), and
//! over about the last [`HORIZON`] packets sent on a path (one way, from the peer's
//! received counters).

/// How many outcomes the window holds.
pub const WINDOW: u32 = 128;

/// Probes lost before the path's first answer are not counted: until then the peer may
/// simply not be listening yet (no session, its socket for the path not made), and a new
/// healthy path would show most of its first probes as lost (issue 16: 56-75 %).
#[derive(Debug, Clone, Default)]
pub struct LossWindow {
    /// Bit i set: the i-th most recent outcome was a loss.
    lost: u128,
    len: u32,
    /// A probe was answered: losses count from then on.
    answered: bool,
}

impl LossWindow {
    /// One probe's outcome; a loss before any answer is ignored (see the type).
    pub fn record(&mut self, lost: bool) {
        self.answered |= !lost;
        if !self.answered {
            return;
        }
        self.lost = (self.lost << 1) | u128::from(lost);
        self.len = (self.len + 1).min(WINDOW);
    }

    /// Fraction lost among the outcomes in the window; 0 when there are none.
    pub fn loss(&self) -> f64 {
        if self.len == 0 {
            return 0.0;
        }
        let mask = if self.len >= 128 {
            u128::MAX
        } else {
            (1u128 << self.len) - 1
        };
        f64::from((self.lost & mask).count_ones()) / f64::from(self.len)
    }

    /// How many outcomes the window holds (counted from the first answer).
    pub fn samples(&self) -> u32 {
        self.len
    }

    /// Whether a probe was ever answered.
    pub fn answered(&self) -> bool {
        self.answered
    }
}

/// Packets per [`LossRate`] bucket, at least.
pub const BUCKET: u64 = 200;
/// Time per [`LossRate`] bucket, at least.
pub const BUCKET_TIME: std::time::Duration = std::time::Duration::from_secs(1);
/// Buckets [`LossRate`] keeps.
pub const BUCKETS: usize = 9;

/// A path's *random* loss, one way: the median loss rate of the last [`BUCKETS`] buckets,
/// each of at least [`BUCKET`] packets and [`BUCKET_TIME`]. Random loss shows in most
/// buckets (at 0.5%, a 200-packet bucket loses one or more in 63% of cases); a queue
/// overflowing (our own traffic finding the bottleneck, a slow start) loses many packets
/// within a second or two, a few buckets, which the median ignores. A busy path closes
/// a bucket every second; one carrying only probes (40 a second counting replies) every
/// 5 s, so a verdict lasts about 45 s without traffic.
#[derive(Debug, Clone, Default)]
pub struct LossRate {
    buckets: std::collections::VecDeque<f64>,
    /// Their median, kept as buckets close (read for every packet scheduled).
    median: f64,
    sent: u64,
    lost: u64,
    since: Option<std::time::Instant>,
}

impl LossRate {
    /// `sent` packets went out and the peer received `received` of them.
    pub fn record(&mut self, sent: u64, received: u64, now: std::time::Instant) {
        self.sent += sent;
        self.lost += sent.saturating_sub(received);
        let since = *self.since.get_or_insert(now);
        if self.sent >= BUCKET && now.saturating_duration_since(since) >= BUCKET_TIME {
            self.since = Some(now);
            let rate = (self.lost as f64 / self.sent as f64).min(1.0);
            if self.buckets.len() >= BUCKETS {
                self.buckets.pop_front();
            }
            self.buckets.push_back(rate);
            self.sent = 0;
            self.lost = 0;
            let mut v: Vec<f64> = self.buckets.iter().copied().collect();
            v.sort_by(f64::total_cmp);
            self.median = v[v.len() / 2];
        }
    }

    /// The median loss rate of the buckets, 0..=1 (0 before any).
    pub fn loss(&self) -> f64 {
        self.median
    }

    /// How many buckets the estimate rests on.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_lost_before_the_first_answer_do_not_count() {
        let mut w = LossWindow::default();
        for _ in 0..40 {
            w.record(true);
        }
        assert_eq!((w.loss(), w.samples()), (0.0, 0));
        for _ in 0..3 {
            w.record(false);
        }
        w.record(true);
        assert_eq!(w.samples(), 4);
        assert!((w.loss() - 0.25).abs() < 1e-12, "{}", w.loss());
    }

    #[test]
    fn loss_rate_is_the_median_of_recent_buckets() {
        let t0 = std::time::Instant::now();
        let mut t = t0;
        let mut tick = || {
            t += std::time::Duration::from_millis(500);
            t
        };
        let mut r = LossRate::default();
        assert_eq!(r.loss(), 0.0);
        // Random loss: 1 in 200 in most buckets (a bucket per second).
        for i in 0..9 {
            r.record(100, 100, tick());
            r.record(100, if i % 4 == 0 { 100 } else { 99 }, tick());
        }
        assert!(r.buckets() >= 8, "{}", r.buckets());
        assert!((r.loss() - 0.005).abs() < 1e-12, "{}", r.loss());
        // A queue overflowing in two buckets out of nine: the median does not move.
        let mut c = LossRate::default();
        for i in 0..18 {
            c.record(100, if i == 6 || i == 7 { 60 } else { 100 }, tick());
        }
        assert_eq!(c.loss(), 0.0);
        // A burst of loss within one second is one bucket, however many packets.
        let mut b = LossRate::default();
        for k in 0..10 {
            b.record(2000, 1800, t0 + std::time::Duration::from_millis(50 * k));
        }
        assert!(b.buckets() <= 1);
        // Packets counted in small samples still make buckets; more received than sent
        // (counters crossing a sample boundary) is not negative.
        let mut d = LossRate::default();
        for _ in 0..50 {
            d.record(8, 8, tick());
        }
        d.record(10, 20, tick());
        assert_eq!(d.buckets(), 2);
        assert_eq!(d.loss(), 0.0);
    }
}
