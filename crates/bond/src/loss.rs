//! Loss over a sliding window of the last [`WINDOW`] probe outcomes.

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

#[cfg(test)]
mod tests {
    use super::*;

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
