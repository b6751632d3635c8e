//! Round-trip time: smoothed RTT and variation as in RFC 6298, jitter as in RFC 3550
//! (mean deviation between consecutive samples), and a windowed minimum.

use std::time::{Duration, Instant};

/// How long a minimum RTT sample is trusted before a larger sample may replace it.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);

/// Round-trip estimates of one path from probe answers: RFC 6298's SRTT and RTTVAR,
/// RFC 3550's jitter, and the minimum over a 10 s window.
#[derive(Debug, Clone, Default)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    jitter: Duration,
    last: Option<Duration>,
    min: Option<(Duration, Instant)>,
}

impl RttEstimator {
    /// Takes one RTT sample measured at `now` (RFC 6298 section 2: alpha 1/8, beta 1/4;
    /// the first sample sets SRTT and RTTVAR = sample/2).
    pub fn update(&mut self, sample: Duration, now: Instant) {
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(sample);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
        if let Some(last) = self.last {
            let d = last.abs_diff(sample);
            // J += (|D| - J) / 16, in nanoseconds to keep the sign.
            let j = self.jitter.as_nanos() as i128;
            let j = j + (d.as_nanos() as i128 - j) / 16;
            self.jitter = Duration::from_nanos(j.max(0) as u64);
        }
        self.last = Some(sample);
        match self.min {
            Some((min, since))
                if sample >= min && now.saturating_duration_since(since) < MIN_RTT_WINDOW => {}
            _ => self.min = Some((sample, now)),
        }
    }

    /// Smoothed RTT, once there is a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// RTT variation (RFC 6298's RTTVAR); zero before the first sample.
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// Mean deviation between consecutive samples (RFC 3550 section 6.4.1, gain 1/16).
    pub fn jitter(&self) -> Duration {
        self.jitter
    }

    /// The smallest sample of the last 10 s (a larger one replaces it after that).
    pub fn min(&self) -> Option<Duration> {
        self.min.map(|(m, _)| m)
    }

    /// The most recent sample.
    pub fn latest(&self) -> Option<Duration> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_sets_srtt_and_half_variation() {
        let now = Instant::now();
        let mut r = RttEstimator::default();
        assert_eq!(r.srtt(), None);
        r.update(Duration::from_millis(40), now);
        assert_eq!(r.srtt(), Some(Duration::from_millis(40)));
        assert_eq!(r.rttvar(), Duration::from_millis(20));
    }

    #[test]
    fn converges_to_a_steady_rtt_and_variation_shrinks() {
        let now = Instant::now();
        let mut r = RttEstimator::default();
        r.update(Duration::from_millis(100), now);
        for _ in 0..100 {
            r.update(Duration::from_millis(20), now);
        }
        let srtt = r.srtt().unwrap();
        assert!(srtt < Duration::from_micros(20_100), "{srtt:?}");
        assert!(r.rttvar() < Duration::from_millis(1));
        assert_eq!(r.min(), Some(Duration::from_millis(20)));
    }

    #[test]
    fn jitter_follows_sample_to_sample_differences() {
        let now = Instant::now();
        let mut r = RttEstimator::default();
        for i in 0..400 {
            let ms = if i % 2 == 0 { 10 } else { 14 };
            r.update(Duration::from_millis(ms), now);
        }
        let j = r.jitter();
        assert!(
            j > Duration::from_micros(3_800) && j <= Duration::from_millis(4),
            "{j:?}"
        );
    }

    #[test]
    fn minimum_expires_after_its_window() {
        let t0 = Instant::now();
        let mut r = RttEstimator::default();
        r.update(Duration::from_millis(10), t0);
        r.update(Duration::from_millis(30), t0 + Duration::from_secs(5));
        assert_eq!(r.min(), Some(Duration::from_millis(10)));
        r.update(Duration::from_millis(30), t0 + Duration::from_secs(11));
        assert_eq!(r.min(), Some(Duration::from_millis(30)));
    }
}
