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
//!
//! The peer's keepalives also measure the path: they leave at a fixed interval, so the
//! share of them missing over the last [`LOSS_WINDOW`] is the loss from the peer to this
//! side ([`Liveness::loss`]), which braid reports and routing can weigh.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The loss of keepalives is judged over this window.
pub(crate) const LOSS_WINDOW: Duration = Duration::from_secs(10);
/// Fewer keepalives than this in the window: the peer does not send them at an interval
/// (not braid, or its liveness off), and no loss is reported.
const MIN_KEEPALIVES: usize = 5;

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
    /// The engine's count of keepalives received at the last look.
    keepalives_seen: u64,
    /// When the peer's keepalives of the last [`LOSS_WINDOW`] arrived (to within a tick).
    keepalive_arrivals: VecDeque<Instant>,
    /// When the link was first heard.
    first_heard: Option<Instant>,
    /// The peer sends keepalives at braid's cadence (two arrived within `dead_after` of
    /// each other) since the link was last alive again: only then does a silence mean it
    /// is dead. A peer without braid's liveness (kernel WireGuard, wireguard-go) sends
    /// keepalives 10 s or more apart, so its link is never declared dead and its routing
    /// daemon's own detection decides, as before liveness.
    armed: bool,
}

impl Liveness {
    pub(crate) fn new(config: LivenessConfig) -> Self {
        Self {
            config,
            rx_seen: 0,
            heard: None,
            next_keepalive: None,
            alive: true,
            keepalives_seen: 0,
            keepalive_arrivals: VecDeque::new(),
            first_heard: None,
            armed: false,
        }
    }

    /// The share of the peer's keepalives lost over the last [`LOSS_WINDOW`], 0..=1:
    /// `1 - received / expected`, expected between the window's first and last arrival
    /// at the median gap between arrivals (the peer's interval, whatever it is
    /// configured to; timer slack and symmetric jitter do not bias it). `None` until the
    /// link was heard for a whole window (since it was first heard, or alive again after
    /// it was dead: a dead spell is not counted as loss), or when the peer sends fewer
    /// than 5 keepalives in it (not braid, or its liveness off). Above about 40 % loss
    /// the median gap itself grows and the loss is underestimated.
    pub(crate) fn loss(&mut self, now: Instant) -> Option<f64> {
        let since = now.checked_sub(LOSS_WINDOW)?;
        while self.keepalive_arrivals.front().is_some_and(|&t| t < since) {
            self.keepalive_arrivals.pop_front();
        }
        if self.first_heard.is_none_or(|t| t > since)
            || self.keepalive_arrivals.len() < MIN_KEEPALIVES
        {
            return None;
        }
        let mut gaps: Vec<Duration> = self
            .keepalive_arrivals
            .iter()
            .zip(self.keepalive_arrivals.iter().skip(1))
            .map(|(a, b)| b.saturating_duration_since(*a))
            .collect();
        gaps.sort_unstable();
        let interval = gaps[gaps.len() / 2].max(Duration::from_millis(1));
        // Expected between the first and the last arrival of the window, both received:
        // counting from the window's edges instead gave a clean link 0-2 % (one keepalive
        // more or less in the window, depending on where its edges fall).
        let (first, last) = (
            self.keepalive_arrivals.front()?,
            self.keepalive_arrivals.back()?,
        );
        let span = last.saturating_duration_since(*first);
        let expected = (span.as_secs_f64() / interval.as_secs_f64()).round() + 1.0;
        let received = self.keepalive_arrivals.len() as f64;
        Some((1.0 - received / expected).clamp(0.0, 1.0))
    }

    /// Notes the engine's count of keepalives received (`rx_keepalives`) at `now`.
    pub(crate) fn note_keepalives(&mut self, now: Instant, rx_keepalives: u64) {
        let new = rx_keepalives.saturating_sub(self.keepalives_seen);
        self.keepalives_seen = rx_keepalives;
        // A burst after a stall arrives together; at most a window's worth is kept.
        for _ in 0..new.min(4096) {
            if self
                .keepalive_arrivals
                .back()
                .is_some_and(|&prev| now.saturating_duration_since(prev) <= self.config.dead_after)
            {
                self.armed = true;
            }
            self.keepalive_arrivals.push_back(now);
        }
        while self.keepalive_arrivals.len() > 4096 {
            self.keepalive_arrivals.pop_front();
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
        Some(match (self.alive && self.armed, self.next_keepalive) {
            (true, Some(k)) => k.min(death),
            (true, None) => death,
            (false, Some(k)) => k,
            (false, None) if self.alive => return None,
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
            self.first_heard.get_or_insert(now);
            if self.next_keepalive.is_none() {
                self.next_keepalive = Some(now);
            }
            if !self.alive {
                self.alive = true;
                actions.changed = Some(true);
                // A dead spell is not loss (the carrier took the link out of routing
                // meanwhile): the loss is measured again from here, a window later.
                self.keepalive_arrivals.clear();
                self.first_heard = Some(now);
            }
        }
        let Some(heard) = self.heard else {
            return actions;
        };
        if self.alive
            && self.armed
            && now.saturating_duration_since(heard) >= self.config.dead_after
        {
            self.alive = false;
            // Armed again by the peer's keepalives once it is back: a peer that came back
            // as another WireGuard implementation is not declared dead again.
            self.armed = false;
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

    #[test]
    fn keepalive_loss_is_the_share_missing_at_the_peers_interval() {
        let mut l = Liveness::new(config());
        let mut t = Instant::now();
        let (mut rx, mut keepalives, mut k) = (0, 0, 0u64);
        // The peer sends every 203 ms (its timer's slack); every n-th is lost (0: none).
        let mut run = |l: &mut Liveness, secs: u64, every_nth_lost: u64| {
            for _ in 0..(secs * 1000 / 203) {
                t += Duration::from_millis(203);
                k += 1;
                if every_nth_lost == 0 || k % every_nth_lost != 0 {
                    rx += 1;
                    keepalives += 1;
                }
                l.tick(t, rx);
                l.note_keepalives(t, keepalives);
            }
            l.loss(t)
        };
        assert_eq!(run(&mut l, 5, 0), None, "heard for less than a window");
        let clean = run(&mut l, 15, 0).unwrap();
        assert!(clean < 0.01, "{clean}");
        let lossy = run(&mut l, 30, 20).unwrap();
        assert!((0.03..0.07).contains(&lossy), "every 20th lost: {lossy}");
        let recovered = run(&mut l, 11, 0).unwrap();
        assert!(
            recovered < 0.01,
            "a window after the loss ended: {recovered}"
        );
    }

    #[test]
    fn a_clean_link_reads_no_loss_wherever_the_window_falls() {
        let mut l = Liveness::new(config());
        let t0 = Instant::now();
        let mut worst: f64 = 0.0;
        // The peer every 200 ms (200-206: timer slack), read every 7 ms from 11 s on.
        let mut at = t0;
        let mut k = 0u64;
        let mut now = t0;
        while now < t0 + Duration::from_secs(40) {
            now += Duration::from_millis(7);
            while at <= now {
                k += 1;
                l.tick(at, k);
                l.note_keepalives(at, k);
                at += Duration::from_millis(200 + (k * 3) % 7);
            }
            if let Some(loss) = l.loss(now) {
                worst = worst.max(loss);
            }
        }
        assert!(worst < 0.005, "a clean link read {worst}");
    }

    #[test]
    fn a_dead_spell_is_not_loss() {
        let mut l = Liveness::new(config());
        let t0 = Instant::now();
        let mut k = 0u64;
        let mut feed = |l: &mut Liveness, from: u64, to: u64| {
            for ms in (from..to).step_by(200) {
                let t = t0 + Duration::from_millis(ms);
                k += 1;
                l.tick(t, k);
                l.note_keepalives(t, k);
            }
        };
        feed(&mut l, 0, 12_000);
        assert!(l.loss(t0 + Duration::from_millis(12_000)).unwrap() < 0.005);
        // Silent for 6 s: dead (60 keepalives so far).
        assert_eq!(
            l.tick(t0 + Duration::from_millis(12_800), 60).changed,
            Some(false)
        );
        feed(&mut l, 18_000, 27_800);
        assert_eq!(
            l.loss(t0 + Duration::from_millis(27_800)),
            None,
            "measured again only a whole window after it came back"
        );
        feed(&mut l, 27_800, 29_000);
        let after = l.loss(t0 + Duration::from_millis(29_000)).unwrap();
        assert!(after < 0.005, "{after}");
    }

    #[test]
    fn no_keepalive_loss_without_the_peers_keepalives() {
        let t0 = Instant::now();
        let mut l = Liveness::new(config());
        // Data every 10 ms for 20 s, no keepalives (a peer without braid's liveness).
        for k in 0..2000u64 {
            let t = t0 + Duration::from_millis(k * 10);
            l.tick(t, k + 1);
            l.note_keepalives(t, 0);
        }
        assert_eq!(l.loss(t0 + Duration::from_secs(20)), None);
    }

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
        l.note_keepalives(t0, 1);
        assert!(a.keepalive && a.changed.is_none());
        assert_eq!(l.due(), Some(t0 + ms(200)));
        assert!(!l.tick(t0 + ms(100), 1).keepalive);
        assert!(l.tick(t0 + ms(200), 2).keepalive);
        // The peer's second keepalive 200 ms after the first: it runs braid's liveness.
        l.note_keepalives(t0 + ms(200), 2);
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
    fn a_peer_without_braids_keepalives_is_never_declared_dead() {
        // Kernel WireGuard or wireguard-go: a keepalive every 10 s at most (passive), data
        // now and then. Silences far longer than `dead_after` are normal for it.
        let t0 = Instant::now();
        let mut l = Liveness::new(config());
        let mut rx = 0;
        for k in 0..6u64 {
            let t = t0 + Duration::from_secs(10 * k);
            rx += 1;
            assert_eq!(l.tick(t, rx).changed, None);
            l.note_keepalives(t, k + 1);
            assert_eq!(l.tick(t + Duration::from_secs(9), rx).changed, None);
        }
        assert!(l.alive());
        // A braid peer that died, came back as such a peer: dead once, then never again.
        let mut l = Liveness::new(config());
        let ms = Duration::from_millis;
        l.tick(t0, 1);
        l.note_keepalives(t0, 1);
        l.tick(t0 + ms(200), 2);
        l.note_keepalives(t0 + ms(200), 2);
        assert_eq!(l.tick(t0 + ms(900), 2).changed, Some(false));
        assert_eq!(l.tick(t0 + ms(5000), 3).changed, Some(true));
        l.note_keepalives(t0 + ms(5000), 3);
        assert_eq!(l.tick(t0 + ms(14_000), 3).changed, None);
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
