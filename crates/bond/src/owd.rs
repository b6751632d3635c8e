//! One-way delay of a path in one direction, from probe timestamps.
//!
//! Every probe carries its sender's clock (µs since the sender's bond started). A reply
//! to our request carries the peer's clock when the request arrived (its timestamp less
//! the time it held the request), and a request from the peer carries the peer's clock
//! when it left. So for each path:
//! - send direction: `peer clock at arrival − our clock at sending` = one-way delay + θ,
//! - receive direction: `our clock at arrival − peer clock at sending` = one-way delay − θ,
//!
//! where θ is the (unknown) offset between the two clocks. θ is the same for every path
//! of a link, so these *relative* one-way delays compare paths exactly, which is all the
//! earliest-arrival scheduler and the reorder wait need, even on asymmetric paths (an LTE
//! uplink whose two directions differ), where half the RTT would mislead. Clock drift
//! moves θ by parts per million: a few µs per second, well inside the estimates' noise.
//! When the peer's epoch changes (it restarted, so its clock origin moved), every path's
//! estimates must be [reset](OneWayDelay::reset) together.
//!
//! Per path and direction this keeps the base (minimum over [`BASE_WINDOW`], the
//! propagation delay plus θ), the jitter (RFC 3550 §6.4.1: mean difference between
//! consecutive samples), the smoothed excess over the base (queueing plus jitter), and
//! for the send direction the *residual*: the sample less the queue our own virtual queue
//! model expected ahead of the probe (see `scheduler.rs`), smoothed. The residual is the
//! path's delay as the scheduler should see it: it absorbs what the model gets wrong (a
//! rate estimate too high or too low shows up as a residual that grows or shrinks).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The base delay is the minimum over this long.
pub const BASE_WINDOW: Duration = Duration::from_secs(10);
/// The window is kept as this many sub-windows, so an old minimum expires in steps.
const BUCKETS: u32 = 5;
/// Gain of the smoothed excess and residual (per probe, one every 50 ms by default: a
/// time constant of about 200 ms, one rate sample).
const GAIN: f64 = 0.25;

/// A minimum (or, negated, a maximum) over a sliding time window, kept as a few
/// sub-window minima.
#[derive(Debug, Clone, Default)]
struct WindowedMin {
    buckets: VecDeque<(Instant, i64)>,
}

impl WindowedMin {
    fn update(&mut self, v: i64, now: Instant) {
        let span = BASE_WINDOW / BUCKETS;
        match self.buckets.back_mut() {
            Some((start, min)) if now.saturating_duration_since(*start) < span => {
                *min = (*min).min(v);
            }
            _ => self.buckets.push_back((now, v)),
        }
        while self.buckets.len() > 1
            && self
                .buckets
                .front()
                .is_some_and(|(start, _)| now.saturating_duration_since(*start) >= BASE_WINDOW)
        {
            self.buckets.pop_front();
        }
    }

    fn get(&self) -> Option<i64> {
        self.buckets.iter().map(|(_, m)| *m).min()
    }
}

/// One direction of one path. All values in µs, relative (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct OneWayDelay {
    base: WindowedMin,
    /// The largest excess over the base (negated), over the same window.
    peak: WindowedMin,
    last: Option<i64>,
    jitter: f64,
    /// The same mean difference, smoothed 4 times more slowly: the scale thresholds use.
    spread: f64,
    excess: f64,
    residual: Option<f64>,
    samples: u64,
    /// Samples taken with no queue expected ahead.
    idle: u64,
}

impl OneWayDelay {
    /// A sample: the relative one-way delay of one probe (µs), and for the send direction
    /// the queueing delay (µs) our model expected ahead of it.
    ///
    /// The jitter and spread are taken from samples the model expected no queue ahead
    /// of (less than 1 ms), so a path's own traffic does not count as its jitter.
    pub fn update(&mut self, sample_us: i64, expected_queue_us: f64, now: Instant) {
        self.base.update(sample_us, now);
        if let Some(last) = self.last
            && expected_queue_us < 1_000.0
        {
            let d = sample_us.saturating_sub(last).unsigned_abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
            // A running mean at first, then an exponential one.
            self.idle += 1;
            let n = self.idle.clamp(1, 64) as f64;
            self.spread += (d - self.spread) / n;
        }
        self.last = Some(sample_us);
        let base = self.base.get().unwrap_or(sample_us);
        let above = sample_us.saturating_sub(base);
        let excess = above as f64;
        self.peak.update(above.saturating_neg(), now);
        let residual = sample_us as f64 - expected_queue_us;
        if self.samples == 0 {
            self.excess = excess;
            self.residual = Some(residual);
        } else {
            self.excess += (excess - self.excess) * GAIN;
            let r = self.residual.unwrap_or(residual);
            self.residual = Some(r + (residual - r) * GAIN);
        }
        self.samples += 1;
    }

    /// Forgets everything (the peer's clock origin changed).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Samples taken since the last reset.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The minimum over the last [`BASE_WINDOW`]: propagation delay plus the clock offset.
    pub fn base_us(&self) -> Option<i64> {
        self.base.get()
    }

    /// Mean difference between consecutive samples (RFC 3550 style), µs.
    pub fn jitter_us(&self) -> f64 {
        self.jitter
    }

    /// Smoothed delay above the base (queueing plus jitter), µs.
    pub fn excess_us(&self) -> f64 {
        self.excess
    }

    /// The queueing bar: 2 ms plus three times the slowly smoothed sample-to-sample
    /// difference of samples taken with no queue expected (the path's own jitter), µs.
    pub fn queueing_bar_us(&self) -> f64 {
        2_000.0 + 3.0 * self.spread
    }

    /// The largest delay above the base over the last [`BASE_WINDOW`] (how much queue
    /// the path can hold, as far as seen), µs.
    pub fn peak_excess_us(&self) -> f64 {
        self.peak.get().map_or(0.0, |p| -(p as f64))
    }

    /// Smoothed sample less the queue the sender's model expected ahead of it, µs.
    pub fn residual_us(&self) -> Option<f64> {
        self.residual
    }

    /// A high estimate of the delay of a packet that finds no queue: the base plus three
    /// times the mean difference between consecutive samples (for jitter uniform over a
    /// range, that difference is a third of the range), smoothed slowly, µs.
    pub fn high_us(&self) -> Option<f64> {
        self.base_us().map(|b| b as f64 + 3.0 * self.spread)
    }

    /// Whether the path is queueing: the smoothed excess is above 2 ms plus three times
    /// the slowly smoothed sample-to-sample difference (so a jittery but empty path is
    /// not taken for a full one: for jitter uniform over 0..30 ms the mean excess is
    /// 15 ms, the bar 32 ms).
    pub fn queueing(&self) -> bool {
        self.samples >= 2 && self.excess > self.queueing_bar_us()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn base_is_the_windowed_minimum_and_expires_in_steps() {
        let t0 = Instant::now();
        let mut d = OneWayDelay::default();
        d.update(20_000, 0.0, t0);
        d.update(25_000, 0.0, t0 + 2500 * MS);
        assert_eq!(d.base_us(), Some(20_000));
        // Ten seconds later the 20 ms sample has left the window; the 25 ms one at 2.5 s
        // goes at 12.5 s.
        d.update(30_000, 0.0, t0 + 10_500 * MS);
        assert_eq!(d.base_us(), Some(25_000));
        d.update(30_000, 0.0, t0 + 12_600 * MS);
        assert_eq!(d.base_us(), Some(30_000));
    }

    #[test]
    fn excess_shows_queueing_and_jitter_raises_the_bar() {
        let t0 = Instant::now();
        let mut steady = OneWayDelay::default();
        for i in 0..40 {
            steady.update(10_000, 0.0, t0 + i * 50 * MS);
        }
        assert!(!steady.queueing());
        for i in 40..60 {
            steady.update(40_000, 0.0, t0 + i * 50 * MS);
        }
        assert!(steady.queueing(), "{}", steady.excess_us());
        // Jitter of 0..30 ms and no queue: not queueing.
        let mut jittery = OneWayDelay::default();
        let mut x = 7u64;
        for i in 0..400 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let j = ((x >> 33) % 30_000) as i64;
            jittery.update(35_000 + j, 0.0, t0 + i * 50 * MS);
            if i > 100 {
                assert!(
                    !jittery.queueing(),
                    "{i}: {} {}",
                    jittery.excess_us(),
                    jittery.jitter_us()
                );
            }
        }
        let high = jittery.high_us().unwrap();
        assert!((55_000.0..75_000.0).contains(&high), "{high}");
    }

    #[test]
    fn residual_takes_out_the_expected_queue() {
        let t0 = Instant::now();
        let mut d = OneWayDelay::default();
        // The model expected 30 ms of queue and the probe took 30 ms longer: the path's
        // own delay is unchanged.
        for i in 0..20 {
            d.update(20_000 + 30_000, 30_000.0, t0 + i * 50 * MS);
        }
        assert!((d.residual_us().unwrap() - 20_000.0).abs() < 1.0);
        // The queue was 10 ms longer than expected: the residual shows it.
        for i in 20..60 {
            d.update(60_000, 30_000.0, t0 + i * 50 * MS);
        }
        assert!((d.residual_us().unwrap() - 30_000.0).abs() < 10.0);
        d.reset();
        assert_eq!(d.samples(), 0);
        assert_eq!(d.residual_us(), None);
    }

    #[test]
    fn extreme_samples_from_a_confused_peer_do_not_panic() {
        let t0 = Instant::now();
        let mut d = OneWayDelay::default();
        for v in [i64::MAX, i64::MIN, 0, i64::MIN, i64::MAX, -1] {
            d.update(v, f64::MAX, t0);
            d.update(v, 0.0, t0);
        }
        let _ = (
            d.high_us(),
            d.queueing(),
            d.peak_excess_us(),
            d.residual_us(),
        );
    }
}
