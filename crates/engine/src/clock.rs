//! The engine's two clocks, both derived from the `now` it is given.
//!
//! The engine never reads a clock. It is made with a `now` and the wall-clock time at that
//! moment; later calls pass `now` only, and wall-clock readings (handshake timestamps,
//! "last handshake" for `wg show`) are the first reading plus the monotonic time since,
//! moved forward whenever the shell reports a wall clock that is ahead
//! ([`Clock::follow_wall`]).
//! boringtun's `Tunn` reads both clocks itself; every call into it runs inside
//! [`Clock::run`], which hands it these readings (braid's patch of boringtun,
//! `patches/PATCHES.md`).

use std::time::{Duration, Instant};

/// A monotonic origin and the wall-clock time (since the Unix epoch) at that origin.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: Instant,
    wall_at_origin: Duration,
}

impl Clock {
    /// `wall` is the time since the Unix epoch at `now`.
    pub(crate) fn new(now: Instant, wall: Duration) -> Self {
        Self {
            origin: now,
            wall_at_origin: wall,
        }
    }

    /// Wall-clock time (since the Unix epoch) at `now`.
    pub(crate) fn wall(&self, now: Instant) -> Duration {
        self.wall_at_origin + now.saturating_duration_since(self.origin)
    }

    /// The wall clock read `wall` at `now`: later readings follow it if it is ahead
    /// (a clock set by NTP after the start, or time the monotonic clock did not count
    /// while the machine slept), never if it is behind (handshake timestamps must keep
    /// growing: a peer refuses one not newer than the last it took).
    pub(crate) fn follow_wall(&mut self, now: Instant, wall: Duration) {
        let ours = self.wall(now);
        if wall > ours {
            self.wall_at_origin += wall - ours;
        }
    }

    /// Runs `f` with boringtun's clocks reading `now`.
    pub(crate) fn run<R>(&self, now: Instant, f: impl FnOnce() -> R) -> R {
        // One second past the origin, so that boringtun's "time since start" arithmetic
        // never meets an instant before the one its state was made at.
        let monotonic = Duration::from_secs(1) + now.saturating_duration_since(self.origin);
        boringtun::clock::with_clock(monotonic, self.wall(now), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_follows_a_correction_forward_and_never_back() {
        let t0 = Instant::now();
        let mut clock = Clock::new(t0, Duration::from_secs(1000));
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(clock.wall(t1), Duration::from_secs(1010));
        clock.follow_wall(t1, Duration::from_secs(5000));
        assert_eq!(clock.wall(t1), Duration::from_secs(5000));
        assert_eq!(
            clock.wall(t1 + Duration::from_secs(1)),
            Duration::from_secs(5001)
        );
        clock.follow_wall(t1, Duration::from_secs(10));
        assert_eq!(clock.wall(t1), Duration::from_secs(5000), "never back");
    }
}
