//! Loss: over a sliding window of the last [`WINDOW`] probe outcomes (round trip), and
//! over about the last [`HORIZON`] packets sent on a path (one way, from the peer's
//! received counters).

/// How many outcomes the window holds.
pub const WINDOW: u32 = 128;

#[derive(Debug, Clone, Default)]
pub struct LossWindow {
    /// Bit i set: the i-th most recent outcome was a loss.
    lost: u128,
    len: u32,
}

impl LossWindow {
    pub fn record(&mut self, lost: bool) {
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

    pub fn samples(&self) -> u32 {
        self.len
    }
}

/// Packets [`LossRate`] averages over.
pub const HORIZON: f64 = 4000.0;

/// Half-life of [`LossRate`]'s memory in time.
pub const HALF_LIFE: std::time::Duration = std::time::Duration::from_secs(30);

/// One-way loss of everything sent on a path over about the last [`HORIZON`] packets, or
/// the last [`HALF_LIFE`] or so when fewer are sent: long enough to tell 0.5% from
/// nothing (20 losses expected), short enough to follow a path that changes within
/// seconds when it carries traffic, and within a minute when it carries only probes (40
/// a second counting replies).
#[derive(Debug, Clone, Copy, Default)]
pub struct LossRate {
    sent: f64,
    lost: f64,
    at: Option<std::time::Instant>,
}

impl LossRate {
    /// `sent` packets went out and the peer received `received` of them.
    pub fn record(&mut self, sent: u64, received: u64, now: std::time::Instant) {
        if let Some(at) = self.at {
            let age = now.saturating_duration_since(at).as_secs_f64();
            let k = 0.5f64.powf(age / HALF_LIFE.as_secs_f64());
            self.sent *= k;
            self.lost *= k;
        }
        self.at = Some(now);
        let lost = sent.saturating_sub(received);
        self.sent += sent as f64;
        self.lost += lost as f64;
        if self.sent > HORIZON {
            let k = HORIZON / self.sent;
            self.sent *= k;
            self.lost *= k;
        }
    }

    /// Fraction lost, 0..=1 (0 before anything was sent).
    pub fn loss(&self) -> f64 {
        if self.sent <= 0.0 {
            0.0
        } else {
            (self.lost / self.sent).clamp(0.0, 1.0)
        }
    }

    /// How many packets the estimate rests on (at most [`HORIZON`]).
    pub fn weight(&self) -> f64 {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_rate_follows_the_last_packets() {
        let t = std::time::Instant::now();
        let ms = std::time::Duration::from_millis(1);
        let mut r = LossRate::default();
        assert_eq!(r.loss(), 0.0);
        for _ in 0..100 {
            r.record(1000, 995, t);
        }
        assert!((r.loss() - 0.005).abs() < 1e-9, "{}", r.loss());
        assert_eq!(r.weight(), HORIZON);
        // The path heals: after 3 horizons the old loss has mostly faded.
        for _ in 0..12 {
            r.record(1000, 1000, t);
        }
        assert!(r.loss() < 0.0005, "{}", r.loss());
        // More received than sent (counters crossing a sample boundary) is not negative.
        r.record(10, 20, t);
        assert!(r.loss() >= 0.0);
        // With only a few packets, time makes it forget: half in 30 s.
        let mut r = LossRate::default();
        r.record(1000, 900, t);
        r.record(0, 0, t + 30_000 * ms);
        assert!((r.weight() - 500.0).abs() < 1e-6, "{}", r.weight());
        assert!((r.loss() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn counts_losses_in_the_window_only() {
        let mut w = LossWindow::default();
        assert_eq!(w.loss(), 0.0);
        for i in 0..10 {
            w.record(i % 2 == 0);
        }
        assert_eq!(w.loss(), 0.5);
        for _ in 0..WINDOW {
            w.record(false);
        }
        assert_eq!(w.loss(), 0.0);
        assert_eq!(w.samples(), WINDOW);
        w.record(true);
        assert!((w.loss() - 1.0 / 128.0).abs() < 1e-12);
    }
}
