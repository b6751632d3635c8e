//! How often the link's WireGuard timers run.
//!
//! boringtun's timers (retransmitting handshakes, keepalives, rekeying, expiring sessions)
//! expect a tick every 250 ms. A mesh of a thousand links mostly sits idle, so the tick
//! slows down when nothing happens: a link with a session ticks every 250 ms while it
//! carries traffic and every second after [`IDLE_AFTER`] of silence (its timers then fire
//! up to a second late, which an idle link does not notice). A link whose peer has never
//! answered ticks at 5 s, doubling to 60 s: its only timer work is retrying the
//! handshake, three X25519 operations each. Traffic or the peer dialling in brings the fast
//! tick back at once.

use std::time::{Duration, Instant};

/// boringtun's timer granularity.
pub(crate) const FAST: Duration = Duration::from_millis(250);
/// The tick of a link with a session and no recent traffic.
pub(crate) const IDLE: Duration = Duration::from_secs(1);
/// Silence after which a link counts as idle.
pub(crate) const IDLE_AFTER: Duration = Duration::from_secs(10);
/// The first tick of a link whose peer has not answered; it doubles up to
/// [`UNANSWERED_MAX`].
pub(crate) const UNANSWERED: Duration = Duration::from_secs(5);
pub(crate) const UNANSWERED_MAX: Duration = Duration::from_secs(60);

/// The tick's state: when it is next due and how long the next one will be.
#[derive(Debug, Clone)]
pub(crate) struct Ticks {
    due: Instant,
    tick: Duration,
    unanswered: Duration,
    last_activity: Instant,
}

impl Ticks {
    /// A link that ticks at once.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            due: now,
            tick: FAST,
            unanswered: UNANSWERED,
            last_activity: now,
        }
    }

    pub(crate) fn due(&self) -> Instant {
        self.due
    }

    /// The timers ran at `now`; `has_session` says whether the link has a session.
    pub(crate) fn ran(&mut self, now: Instant, has_session: bool) {
        let idle = now.saturating_duration_since(self.last_activity) > IDLE_AFTER;
        self.tick = match (has_session, idle) {
            (true, false) => FAST,
            (true, true) => IDLE,
            (false, _) => self.unanswered,
        };
        self.unanswered = if has_session {
            UNANSWERED
        } else {
            (self.tick * 2).min(UNANSWERED_MAX)
        };
        self.due = now + self.tick;
    }

    /// Traffic moved at `now`. A link on a slow tick that has (or just got) a session
    /// gets the fast tick back; one whose peer never answered keeps waiting for it.
    pub(crate) fn activity(&mut self, now: Instant, has_session: bool) {
        self.last_activity = now;
        if self.tick > FAST && has_session {
            self.tick = FAST;
            self.due = self.due.min(now + FAST);
        }
    }

    /// The configuration changed (a new endpoint, a new session): retry soon again.
    pub(crate) fn reset(&mut self, now: Instant) {
        self.unanswered = UNANSWERED;
        self.tick = FAST;
        self.due = self.due.min(now + FAST);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unanswered_link_backs_off_to_a_minute_and_an_answer_brings_the_fast_tick_back() {
        let t0 = Instant::now();
        let mut ticks = Ticks::new(t0);
        let mut now = t0;
        let mut gaps = Vec::new();
        for _ in 0..6 {
            ticks.ran(now, false);
            gaps.push(ticks.due() - now);
            now = ticks.due();
        }
        assert_eq!(gaps[0], UNANSWERED);
        assert_eq!(gaps[1], UNANSWERED * 2);
        assert_eq!(*gaps.last().unwrap(), UNANSWERED_MAX);
        // Between two slow ticks, the peer answers: the next tick is a fast one away.
        let answer = now - Duration::from_secs(30);
        ticks.activity(answer, true);
        assert_eq!(ticks.due(), answer + FAST);
    }

    #[test]
    fn a_busy_link_ticks_fast_and_an_idle_one_every_second() {
        let t0 = Instant::now();
        let mut ticks = Ticks::new(t0);
        ticks.activity(t0, true);
        ticks.ran(t0, true);
        assert_eq!(ticks.due(), t0 + FAST);
        let later = t0 + IDLE_AFTER + Duration::from_secs(1);
        ticks.ran(later, true);
        assert_eq!(ticks.due(), later + IDLE);
    }
}
