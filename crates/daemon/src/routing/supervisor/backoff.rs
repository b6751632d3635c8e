//! Restart pacing for a routing daemon that exits or fails to start.

use std::time::{Duration, Instant};

/// Restart pacing (pure): the first restart after a failure is immediate, further
/// consecutive ones wait 250 ms, 500 ms, 1 s, ... up to 10 s; a daemon that has run for
/// [`Backoff::STABLE`] resets the count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
    next: Option<Instant>,
}

impl Backoff {
    /// The longest wait before a restart.
    pub const MAX: Duration = Duration::from_secs(10);
    /// How long a daemon must run to count as stable: the failures are forgotten then.
    pub const STABLE: Duration = Duration::from_secs(30);

    /// The wait before the attempt that follows `failures` consecutive failures.
    pub fn delay(failures: u32) -> Duration {
        match failures {
            0 | 1 => Duration::ZERO,
            n => Duration::from_millis(250)
                .saturating_mul(1 << (n - 2).min(8))
                .min(Self::MAX),
        }
    }

    /// One more failure at `now`.
    pub fn failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.next = Some(now + Self::delay(self.failures));
    }

    /// Whether a start may be attempted at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next.is_none_or(|t| now >= t)
    }

    /// The daemon has been running since `since`: after [`Self::STABLE`], failures are
    /// forgotten.
    pub fn running(&mut self, since: Instant, now: Instant) {
        if now.duration_since(since) >= Self::STABLE {
            *self = Self::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_restarts_at_once_then_doubles_up_to_ten_seconds() {
        assert_eq!(Backoff::delay(1), Duration::ZERO);
        assert_eq!(Backoff::delay(2), Duration::from_millis(250));
        assert_eq!(Backoff::delay(3), Duration::from_millis(500));
        assert_eq!(Backoff::delay(30), Backoff::MAX);
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(b.due(t0));
        b.failed(t0);
        assert!(b.due(t0), "the first restart is immediate");
        b.failed(t0);
        assert!(!b.due(t0) && b.due(t0 + Duration::from_millis(250)));
        b.running(t0, t0 + Backoff::STABLE);
        assert_eq!(b, Backoff::default());
    }
}
