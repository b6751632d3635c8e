//! braid's fast link liveness: whether the peer is still heard, decided here only, from
//! `now` and the engine's count of authenticated datagrams (no I/O; the worker acts).
//!
//! A link that was heard from once sends a keepalive (an empty WireGuard data message,
//! WireGuard paper section 6.5) every `interval`, so each side hears the other at least
//! that often even when nothing else flows. When nothing authenticated arrived for
//! `dead_after`, the link is dead: the worker takes its TUN device's carrier away, which
//! babeld, BIRD and the kernel all see at once (docs/routing.md, "Link liveness"). The
//! keepalives go on while the link is dead; the first authenticated datagram makes it
//! alive again. A link never heard from (a peer that does not exist or is not up yet)
//! sends nothing and keeps no timer: it costs nothing, however many there are.

use std::time::{Duration, Instant};

/// How fast a link proves it is alive, and how long a silence makes it dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessConfig {
    /// A keepalive is sent this often.
    pub interval: Duration,
    /// A link silent this long is dead.
    pub dead_after: Duration,
}

/// What the worker does after [`Liveness::tick`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Actions {
    /// Send a keepalive now.
    pub(crate) keepalive: bool,
    /// The link changed state: `Some(true)` alive again, `Some(false)` dead.
    pub(crate) changed: Option<bool>,
}

/// The liveness of one link.
#[derive(Debug, Clone)]
pub(crate) struct Liveness {
    config: LivenessConfig,
    /// The engine's count of authenticated datagrams at the last look.
    rx_seen: u64,
    /// When an authenticated datagram was last seen (`None`: never).
    heard: Option<Instant>,
    /// When the next keepalive is due.
    next_keepalive: Option<Instant>,
    alive: bool,
}

impl Liveness {
    pub(crate) fn new(config: LivenessConfig) -> Self {
        Self {
            config,
            rx_seen: 0,
            heard: None,
            next_keepalive: None,
            alive: true,
        }
    }

    /// Whether the link is alive (true until it was heard and then fell silent).
    #[cfg(test)]
    pub(crate) fn alive(&self) -> bool {
        self.alive
    }

    /// When [`tick`](Self::tick) must run next; `None` while the link was never heard.
    pub(crate) fn due(&self) -> Option<Instant> {
        let heard = self.heard?;
        let death = heard + self.config.dead_after;
        Some(match (self.alive, self.next_keepalive) {
            (true, Some(k)) => k.min(death),
            (true, None) => death,
            (false, Some(k)) => k,
            (false, None) => heard + self.config.interval,
        })
    }

    /// Looks at the engine's count of authenticated datagrams (`rx_packets`) at `now`:
    /// refreshes the last time heard, and says whether to send a keepalive and whether the
    /// link changed state. Cheap enough to call after every batch.
    pub(crate) fn tick(&mut self, now: Instant, rx_packets: u64) -> Actions {
        let mut actions = Actions::default();
        if rx_packets != self.rx_seen {
            self.rx_seen = rx_packets;
            self.heard = Some(now);
            if self.next_keepalive.is_none() {
                self.next_keepalive = Some(now);
            }
            if !self.alive {
                self.alive = true;
                actions.changed = Some(true);
            }
        }
        let Some(heard) = self.heard else {
            return actions;
        };
        if self.alive && now.saturating_duration_since(heard) >= self.config.dead_after {
            self.alive = false;
            actions.changed = Some(false);
        }
        if let Some(due) = self.next_keepalive
            && now >= due
        {
            actions.keepalive = true;
            // From now, not from `due`: a late tick does not send a burst.
            self.next_keepalive = Some(now + self.config.interval);
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LivenessConfig {
        LivenessConfig {
            interval: Duration::from_millis(200),
            dead_after: Duration::from_millis(700),
        }
    }

    #[test]
    fn a_link_never_heard_sends_nothing_and_keeps_no_timer() {
        let t0 = Instant::now();
        let mut l = Liveness::new(config());
        assert_eq!(l.tick(t0, 0), Actions::default());
        assert_eq!(l.tick(t0 + Duration::from_secs(60), 0), Actions::default());
        assert!(l.alive());
        assert_eq!(l.due(), None);
    }

    #[test]
    fn heard_links_keep_alive_and_die_after_the_silence() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut l = Liveness::new(config());
        // First heard: a keepalive at once, the next one interval later.
        let a = l.tick(t0, 1);
        assert!(a.keepalive && a.changed.is_none());
        assert_eq!(l.due(), Some(t0 + ms(200)));
        assert!(!l.tick(t0 + ms(100), 1).keepalive);
        assert!(l.tick(t0 + ms(200), 2).keepalive);
        // Silent from 200 ms: alive at 899, dead at 900.
        assert_eq!(l.due(), Some(t0 + ms(400)));
        l.tick(t0 + ms(400), 2);
        l.tick(t0 + ms(600), 2);
        l.tick(t0 + ms(800), 2);
        assert_eq!(l.due(), Some(t0 + ms(900)));
        assert_eq!(l.tick(t0 + ms(899), 2).changed, None);
        assert!(l.alive());
        assert_eq!(l.tick(t0 + ms(900), 2).changed, Some(false));
        assert!(!l.alive());
        // Dead: keepalives go on (the peer hears them and comes back too).
        assert_eq!(l.due(), Some(t0 + ms(1000)));
        let a = l.tick(t0 + ms(1000), 2);
        assert!(a.keepalive && a.changed.is_none());
        // One authenticated datagram: alive again.
        assert_eq!(l.tick(t0 + ms(1100), 3).changed, Some(true));
        assert!(l.alive());
    }

    #[test]
    fn a_late_tick_sends_one_keepalive_not_a_burst() {
        let t0 = Instant::now();
        let mut l = Liveness::new(config());
        l.tick(t0, 1);
        let late = t0 + Duration::from_millis(650);
        assert!(l.tick(late, 2).keepalive);
        assert!(!l.tick(late, 2).keepalive);
        assert_eq!(l.due(), Some(late + Duration::from_millis(200)));
    }
}
