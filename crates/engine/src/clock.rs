//! The engine's two clocks, both derived from the `now` it is given.
//!
//! The engine never reads a clock. It is made with a `now` and the wall-clock time at that
//! moment; later calls pass `now` only, and wall-clock readings (handshake timestamps,
//! "last handshake" for `wg show`) are the first reading plus the monotonic time since.
//! boringtun's `Tunn` reads both clocks itself; every call into it runs inside
//! [`Clock::run`], which hands it these readings (braid's patch of boringtun,
//! `patches/PATCHES.md`).

use std::time::{Duration, Instant};

/// A monotonic origin and the wall-clock time (since the Unix epoch) at that origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    wall_at_origin: Duration,
}

impl Clock {
    /// `wall` is the time since the Unix epoch at `now`.
    pub fn new(now: Instant, wall: Duration) -> Clock {
        Clock {
            origin: now,
            wall_at_origin: wall,
        }
    }

    /// Wall-clock time (since the Unix epoch) at `now`.
    pub fn wall(&self, now: Instant) -> Duration {
        self.wall_at_origin + now.saturating_duration_since(self.origin)
    }

    /// Runs `f` with boringtun's clocks reading `now`.
    pub fn run<R>(&self, now: Instant, f: impl FnOnce() -> R) -> R {
        // One second past the origin, so that boringtun's "time since start" arithmetic
        // never meets an instant before the one its state was made at.
        let monotonic = Duration::from_secs(1) + now.saturating_duration_since(self.origin);
        boringtun::clock::with_clock(monotonic, self.wall(now), f)
    }
}
