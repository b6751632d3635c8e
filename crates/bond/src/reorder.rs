//! The reorder buffer: puts packets that came over different paths back in the order
//! the sender sent them, by WireGuard's data-message counter.
//!
//! The worker decrypts first and pushes the plaintext with the receiver index and
//! counter it read from the message header (bytes 4..8 and 8..16 of a type-4 message).
//! Reordering after decryption means only authentic packets are ever held, and the
//! buffer never has to guess at ciphertext. boringtun 0.7's replay window accepts
//! counters up to 1024 behind the highest seen, so a gap can be filled as long as it
//! is fewer than 1024 packets old; [`ReorderConfig::max_packets`] should stay at or
//! below that.
//!
//! Rules:
//! - The counter at `next` is delivered at once, followed by any held run after it.
//! - A counter ahead of `next` is held. A held packet waits at most `wait`
//!   ([`ReorderBuffer::set_wait`]); then the gap before the lowest held packet is
//!   skipped and the run after it released.
//! - A counter behind `next` (its gap was skipped) is late: delivered (default) or
//!   dropped ([`ReorderConfig::deliver_late`]).
//! - A counter already seen (a redundant scheduler's second copy) is a duplicate and is
//!   discarded; one more than 1024 behind the highest seen is too old and dropped.
//! - Memory is bounded by [`ReorderConfig::max_packets`] and `max_bytes` over held and
//!   ready packets together: when full, the gap is skipped early (forced).
//! - A new session (receiver index not seen before) flushes everything held, in order,
//!   and starts over; packets still arriving for the previous session are delivered as
//!   they come.
//! - When disabled (the peer's scheduler keeps flows on one path) every packet is
//!   delivered at once; duplicates are still discarded.
//!
//! The buffer also measures how much reordering there really is ([`observed`]): how
//! long a gap that did fill had been waited for, and for a packet that came after its
//! gap was skipped, how long it would have had to wait. The largest recent value (it
//! halves every [`OBSERVED_HALF_LIFE`]) lets the link raise the wait to what the paths
//! actually do, as RACK's reordering window grows on evidence of reordering (RFC 8985
//! §6.2).
//!
//! [`observed`]: ReorderBuffer::observed

use crate::window::{Seen, Window};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Width of the duplicate window, the same as boringtun's replay window.
pub const SEEN_WINDOW: u64 = 1024;
/// The observed reordering halves this often when nothing larger is seen.
pub const OBSERVED_HALF_LIFE: Duration = Duration::from_secs(10);
/// Skipped gaps remembered to tell how late a late packet was.
const SKIPS: usize = 64;
const SEEN_WORDS: usize = (SEEN_WINDOW / 64) as usize;

/// Limits of the reorder buffer; beyond them packets are released early (`forced`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReorderConfig {
    /// Most packets held or waiting to be popped.
    pub max_packets: usize,
    /// Most bytes held or waiting to be popped.
    pub max_bytes: usize,
    /// Deliver packets that arrive after their gap was skipped (true) or drop them.
    pub deliver_late: bool,
}

impl Default for ReorderConfig {
    fn default() -> Self {
        Self {
            max_packets: 1024,
            max_bytes: 4 << 20,
            deliver_late: true,
        }
    }
}

/// What to do with a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write it to the TUN now (it is next in order), then drain [`ReorderBuffer::pop`].
    Deliver,
    /// It was copied into the buffer; drain [`ReorderBuffer::pop`].
    Buffered,
    /// Already seen: discard.
    Duplicate,
    /// Older than the duplicate window, or late and late packets are dropped: discard.
    Dropped,
}

/// A packet the buffer releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The WireGuard session (receiver index) the packet came in.
    pub session: u32,
    /// Its WireGuard counter (the transport data message's nonce counter).
    pub counter: u64,
    /// The decrypted IP packet.
    pub packet: Vec<u8>,
}

/// What the reorder buffer did, since the link started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ReorderCounters {
    /// Delivered in order without waiting.
    pub in_order: u64,
    /// Held because an earlier counter was missing.
    pub held: u64,
    /// Released after waiting out a gap that never filled.
    pub released_after_wait: u64,
    /// Released early because the buffer was full.
    pub forced: u64,
    /// Arrived after their gap was skipped, and delivered anyway.
    pub released_late: u64,
    /// Discarded: a second copy of a counter already seen.
    pub duplicates: u64,
    /// Discarded: too old, late (when late packets are dropped), or no room.
    pub dropped: u64,
    /// Delivered for the previous session after a new one started.
    pub previous_session: u64,
}

#[derive(Debug, Clone)]
struct Held {
    packet: Vec<u8>,
}

/// Puts decrypted packets back in WireGuard counter order: a packet after a gap waits
/// up to `wait` for the gap to fill, then the gap is skipped. Bounded by [`ReorderConfig`].
#[derive(Debug, Clone)]
pub struct ReorderBuffer {
    cfg: ReorderConfig,
    enabled: bool,
    wait: Duration,
    session: Option<u32>,
    previous: Option<u32>,
    /// The counter to deliver next.
    next: u64,
    seen: Window<SEEN_WORDS>,
    held: BTreeMap<u64, Held>,
    /// (arrival, counter) of held packets in arrival order; entries below `next` are stale.
    arrivals: VecDeque<(Instant, u64)>,
    ready: VecDeque<Released>,
    bytes: usize,
    counters: ReorderCounters,
    /// Recent skips: (when, the wait then, `next` before, `next` after).
    skips: VecDeque<(Instant, Duration, u64, u64)>,
    /// Largest reordering seen, and when.
    observed: Option<(Duration, Instant)>,
}

impl ReorderBuffer {
    /// An empty buffer; `enabled` false passes every packet straight through.
    pub fn new(cfg: ReorderConfig, enabled: bool, wait: Duration) -> Self {
        Self {
            cfg,
            enabled,
            wait,
            session: None,
            previous: None,
            next: 0,
            seen: Window::default(),
            held: BTreeMap::new(),
            arrivals: VecDeque::new(),
            ready: VecDeque::new(),
            bytes: 0,
            counters: ReorderCounters::default(),
            skips: VecDeque::new(),
            observed: None,
        }
    }

    /// The largest reordering seen recently (see the module docs), decayed to `now`.
    pub fn observed(&self, now: Instant) -> Duration {
        match self.observed {
            None => Duration::ZERO,
            Some((d, at)) => {
                let age = now.saturating_duration_since(at).as_secs_f64();
                d.mul_f64(0.5f64.powf(age / OBSERVED_HALF_LIFE.as_secs_f64()))
            }
        }
    }

    fn observe(&mut self, d: Duration, now: Instant) {
        if d >= self.observed(now) {
            self.observed = Some((d, now));
        }
    }

    /// A packet behind `next`: if a recent skip passed over it, it came this much later
    /// than the packet that started the wait.
    fn observe_late(&mut self, counter: u64, now: Instant) {
        let skip = self
            .skips
            .iter()
            .rev()
            .find(|(_, _, before, after)| *before <= counter && counter < *after)
            .copied();
        if let Some((at, wait, _, _)) = skip {
            self.observe(now.saturating_duration_since(at) + wait, now);
        }
    }

    /// Sets how long a gap is waited for.
    pub fn set_wait(&mut self, wait: Duration) {
        self.wait = wait;
    }

    /// How long a gap is waited for.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Whether out-of-order packets are held.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Turns reordering on or off; turning it off releases everything held, in order.
    pub fn set_enabled(&mut self, on: bool) {
        if self.enabled && !on {
            self.flush();
        }
        if on && !self.enabled {
            self.next = self.seen.top();
        }
        self.enabled = on;
    }

    /// The counters so far.
    pub fn counters(&self) -> ReorderCounters {
        self.counters
    }

    /// Packets held waiting for a gap (not counting those ready to pop).
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// Held and ready packets together, the quantity the bounds apply to.
    pub fn buffered_len(&self) -> usize {
        self.held.len() + self.ready.len()
    }

    /// Bytes of the held and ready packets.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// The next packet to write to the TUN, in order.
    pub fn pop(&mut self) -> Option<Released> {
        let r = self.ready.pop_front()?;
        self.bytes = self.bytes.saturating_sub(r.packet.len());
        Some(r)
    }

    /// Pushes one decrypted packet with its session (receiver index) and counter.
    pub fn push(&mut self, session: u32, counter: u64, packet: &[u8], now: Instant) -> Verdict {
        match self.session {
            Some(s) if s == session => {}
            _ if self.previous == Some(session) => {
                self.counters.previous_session += 1;
                return self.deliver_or_queue(session, counter, packet);
            }
            _ => self.start_session(session, counter),
        }
        if let Err(v) = self.check_seen(counter) {
            return v;
        }
        if !self.enabled {
            self.next = self.seen.top();
            self.counters.in_order += 1;
            return self.deliver_or_queue(session, counter, packet);
        }
        if counter < self.next {
            self.observe_late(counter, now);
            if !self.cfg.deliver_late {
                self.counters.dropped += 1;
                return Verdict::Dropped;
            }
            self.counters.released_late += 1;
            return self.deliver_or_queue(session, counter, packet);
        }
        if counter == self.next {
            // It fills a gap that held packets waited for: that much reordering.
            self.trim_arrivals();
            if let Some((at, _)) = self.arrivals.front() {
                self.observe(now.saturating_duration_since(*at), now);
            }
            self.counters.in_order += 1;
            let v = self.deliver_or_queue(session, counter, packet);
            self.next = self.next.saturating_add(1);
            self.drain_run();
            return v;
        }
        // Ahead of a gap: make room if needed, then hold.
        while self.full(packet.len()) && !self.held.is_empty() {
            let n = self.skip_gap(now);
            self.counters.forced += n;
        }
        if self.full(packet.len()) {
            self.counters.dropped += 1;
            return Verdict::Dropped;
        }
        if counter < self.next {
            // Forcing skipped past this counter's place: it is late now.
            self.counters.released_late += 1;
            return self.deliver_or_queue(session, counter, packet);
        }
        if counter == self.next {
            self.counters.in_order += 1;
            let v = self.deliver_or_queue(session, counter, packet);
            self.next = self.next.saturating_add(1);
            self.drain_run();
            return v;
        }
        self.counters.held += 1;
        self.bytes += packet.len();
        self.held.insert(
            counter,
            Held {
                packet: packet.to_vec(),
            },
        );
        self.arrivals.push_back((now, counter));
        Verdict::Buffered
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.arrivals
            .iter()
            .find(|(_, c)| *c >= self.next)
            .map(|(at, _)| *at + self.wait)
    }

    /// Skips gaps whose wait has run out; drain [`pop`](Self::pop) afterwards.
    pub fn handle_timeout(&mut self, now: Instant) {
        loop {
            self.trim_arrivals();
            match self.arrivals.front() {
                Some((at, _)) if *at + self.wait <= now => {
                    let n = self.skip_gap(now);
                    self.counters.released_after_wait += n;
                }
                _ => break,
            }
        }
    }

    fn full(&self, extra: usize) -> bool {
        self.held.len() + self.ready.len() >= self.cfg.max_packets
            || self.bytes + extra > self.cfg.max_bytes
    }

    fn deliver_or_queue(&mut self, session: u32, counter: u64, packet: &[u8]) -> Verdict {
        if self.ready.is_empty() {
            return Verdict::Deliver;
        }
        if self.ready.len() >= self.cfg.max_packets
            || self.bytes + packet.len() > self.cfg.max_bytes
        {
            self.counters.dropped += 1;
            return Verdict::Dropped;
        }
        self.bytes += packet.len();
        self.ready.push_back(Released {
            session,
            counter,
            packet: packet.to_vec(),
        });
        Verdict::Buffered
    }

    /// Moves the held run starting at `next` to the ready queue; returns how many.
    fn drain_run(&mut self) -> u64 {
        let mut n = 0;
        while let Some(h) = self.held.remove(&self.next) {
            self.ready.push_back(Released {
                session: self.session.unwrap_or(0),
                counter: self.next,
                packet: h.packet,
            });
            self.next = self.next.saturating_add(1);
            n += 1;
        }
        self.trim_arrivals();
        n
    }

    /// Gives up on the gap before the lowest held packet; returns how many were released.
    fn skip_gap(&mut self, now: Instant) -> u64 {
        match self.held.first_key_value() {
            Some((&c, _)) => {
                if self.skips.len() >= SKIPS {
                    self.skips.pop_front();
                }
                self.skips.push_back((now, self.wait, self.next, c));
                self.next = c;
                self.drain_run()
            }
            None => 0,
        }
    }

    /// Releases everything held, in order, skipping every gap (no wait is recorded).
    fn skip_all(&mut self) {
        while let Some((&c, _)) = self.held.first_key_value() {
            self.next = c;
            self.drain_run();
        }
    }

    fn trim_arrivals(&mut self) {
        while self.arrivals.front().is_some_and(|(_, c)| *c < self.next) {
            self.arrivals.pop_front();
        }
    }

    fn flush(&mut self) {
        self.skip_all();
        self.arrivals.clear();
    }

    fn start_session(&mut self, session: u32, first: u64) {
        self.flush();
        self.previous = self.session;
        self.session = Some(session);
        self.seen = Window::default();
        self.skips.clear();
        // A session's counters start at 0: if this one is early in the session, wait
        // for what came before it; otherwise start here.
        self.next = if first < self.cfg.max_packets as u64 {
            0
        } else {
            first
        };
        if !self.enabled {
            self.next = first;
        }
    }

    fn check_seen(&mut self, c: u64) -> Result<(), Verdict> {
        match self.seen.check_and_mark(c) {
            Ok(()) => Ok(()),
            Err(Seen::Duplicate) => {
                self.counters.duplicates += 1;
                Err(Verdict::Duplicate)
            }
            Err(Seen::TooOld) => {
                self.counters.dropped += 1;
                Err(Verdict::Dropped)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Pushes and collects everything released, as (counter, payload byte).
    fn push(b: &mut ReorderBuffer, s: u32, c: u64, now: Instant, out: &mut Vec<u64>) -> Verdict {
        let v = b.push(s, c, &[c as u8], now);
        if v == Verdict::Deliver {
            out.push(c);
        }
        while let Some(r) = b.pop() {
            out.push(r.counter);
        }
        v
    }

    fn timeout(b: &mut ReorderBuffer, now: Instant, out: &mut Vec<u64>) {
        b.handle_timeout(now);
        while let Some(r) = b.pop() {
            out.push(r.counter);
        }
    }

    #[test]
    fn in_order_packets_are_delivered_without_copying() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(ReorderConfig::default(), true, 10 * MS);
        let mut out = vec![];
        for c in 0..5 {
            assert_eq!(push(&mut b, 1, c, t, &mut out), Verdict::Deliver);
        }
        assert_eq!(out, [0, 1, 2, 3, 4]);
        assert_eq!(b.poll_timeout(), None);
        assert_eq!(b.counters().in_order, 5);
    }

    #[test]
    fn a_gap_is_filled_then_the_run_released() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(ReorderConfig::default(), true, 10 * MS);
        let mut out = vec![];
        push(&mut b, 1, 0, t, &mut out);
        assert_eq!(push(&mut b, 1, 2, t, &mut out), Verdict::Buffered);
        assert_eq!(push(&mut b, 1, 3, t + MS, &mut out), Verdict::Buffered);
        assert_eq!(out, [0]);
        assert_eq!(b.poll_timeout(), Some(t + 10 * MS));
        assert_eq!(push(&mut b, 1, 1, t + 2 * MS, &mut out), Verdict::Deliver);
        assert_eq!(out, [0, 1, 2, 3]);
        assert_eq!(b.poll_timeout(), None);
        assert_eq!(b.counters().held, 2);
    }

    #[test]
    fn a_gap_that_never_fills_is_skipped_after_the_wait_and_late_ones_still_go() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(ReorderConfig::default(), true, 10 * MS);
        let mut out = vec![];
        push(&mut b, 1, 0, t, &mut out);
        push(&mut b, 1, 2, t, &mut out);
        push(&mut b, 1, 4, t + 5 * MS, &mut out);
        timeout(&mut b, t + 9 * MS, &mut out);
        assert_eq!(out, [0]);
        // 2 waited its 10 ms: the gap at 1 is skipped. 4 has waited 5 ms only.
        timeout(&mut b, t + 10 * MS, &mut out);
        assert_eq!(out, [0, 2]);
        assert_eq!(b.poll_timeout(), Some(t + 15 * MS));
        timeout(&mut b, t + 15 * MS, &mut out);
        assert_eq!(out, [0, 2, 4]);
        assert_eq!(b.counters().released_after_wait, 2);
        // 1 arrives late: delivered, counted.
        assert_eq!(push(&mut b, 1, 1, t + 20 * MS, &mut out), Verdict::Deliver);
        assert_eq!(b.counters().released_late, 1);
        // Dropped instead when so configured.
        let cfg = ReorderConfig {
            deliver_late: false,
            ..ReorderConfig::default()
        };
        let mut strict = ReorderBuffer::new(cfg, true, 10 * MS);
        let mut o = vec![];
        push(&mut strict, 1, 0, t, &mut o);
        push(&mut strict, 1, 2, t, &mut o);
        timeout(&mut strict, t + 10 * MS, &mut o);
        assert_eq!(
            push(&mut strict, 1, 1, t + 11 * MS, &mut o),
            Verdict::Dropped
        );
        assert_eq!(o, [0, 2]);
    }

    #[test]
    fn duplicates_are_discarded_in_both_modes() {
        let t = Instant::now();
        for enabled in [true, false] {
            let mut b = ReorderBuffer::new(ReorderConfig::default(), enabled, 10 * MS);
            let mut out = vec![];
            for c in [0, 1, 1, 3, 3, 2, 0, 2] {
                push(&mut b, 7, c, t, &mut out);
            }
            timeout(&mut b, t + 20 * MS, &mut out);
            let mut sorted = out.clone();
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2, 3], "enabled {enabled}");
            assert_eq!(b.counters().duplicates, 4, "enabled {enabled}");
            if enabled {
                assert_eq!(out, [0, 1, 2, 3]);
            }
        }
    }

    #[test]
    fn a_new_session_flushes_the_old_one_and_restarts_at_zero() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(ReorderConfig::default(), true, 10 * MS);
        let mut out = vec![];
        for c in 5000..5003 {
            push(&mut b, 1, c, t, &mut out);
        }
        push(&mut b, 1, 5005, t, &mut out);
        assert_eq!(out, [5000, 5001, 5002]);
        // New session: 5005 is flushed first, then the new session's packets follow,
        // waiting for its counter 0.
        push(&mut b, 2, 1, t, &mut out);
        assert_eq!(out, [5000, 5001, 5002, 5005]);
        push(&mut b, 2, 0, t, &mut out);
        assert_eq!(out, [5000, 5001, 5002, 5005, 0, 1]);
        // A straggler of the previous session is delivered, not taken for a new one.
        assert_eq!(push(&mut b, 1, 5003, t, &mut out), Verdict::Deliver);
        assert_eq!(push(&mut b, 2, 2, t, &mut out), Verdict::Deliver);
        assert_eq!(b.counters().previous_session, 1);
    }

    #[test]
    fn memory_stays_bounded_and_too_old_counters_are_dropped() {
        let t = Instant::now();
        let cfg = ReorderConfig {
            max_packets: 64,
            max_bytes: 64 * 100,
            deliver_late: true,
        };
        let mut b = ReorderBuffer::new(cfg, true, Duration::from_secs(3600));
        // Every other counter missing: the buffer would hold forever without a bound.
        for c in 1..10_000u64 {
            let _ = b.push(1, c * 2, &[0u8; 100], t);
            assert!(b.buffered_len() <= 64, "{}", b.buffered_len());
            assert!(b.buffered_bytes() <= 6400);
            // The worker drains now and then, not always.
            if c % 10 == 0 {
                while b.pop().is_some() {}
            }
        }
        assert!(b.counters().forced > 0);
        assert_eq!(b.push(1, 2, &[0], t), Verdict::Dropped);
    }

    #[test]
    fn the_reordering_seen_is_measured_from_filled_gaps_and_late_packets() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(ReorderConfig::default(), true, 10 * MS);
        let mut out = vec![];
        assert_eq!(b.observed(t), Duration::ZERO);
        push(&mut b, 1, 0, t, &mut out);
        push(&mut b, 1, 2, t, &mut out);
        // 1 fills the gap 7 ms after 2 arrived.
        push(&mut b, 1, 1, t + 7 * MS, &mut out);
        assert_eq!(b.observed(t + 7 * MS), 7 * MS);
        // 4 waits its 10 ms, the gap at 3 is skipped at 20 ms; 3 comes at 35 ms: it would
        // have needed 25 ms.
        push(&mut b, 1, 4, t + 10 * MS, &mut out);
        timeout(&mut b, t + 20 * MS, &mut out);
        push(&mut b, 1, 3, t + 35 * MS, &mut out);
        assert_eq!(b.observed(t + 35 * MS), 25 * MS);
        // It halves every 10 s.
        let later = t + 35 * MS + OBSERVED_HALF_LIFE;
        let half = b.observed(later).as_secs_f64();
        assert!((half - 0.0125).abs() < 1e-6, "{half}");
    }

    #[test]
    fn disabling_releases_what_is_held() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(ReorderConfig::default(), true, 10 * MS);
        let mut out = vec![];
        push(&mut b, 1, 0, t, &mut out);
        push(&mut b, 1, 3, t, &mut out);
        b.set_enabled(false);
        while let Some(r) = b.pop() {
            out.push(r.counter);
        }
        assert_eq!(out, [0, 3]);
        assert_eq!(push(&mut b, 1, 2, t, &mut out), Verdict::Deliver);
        assert_eq!(push(&mut b, 1, 9, t, &mut out), Verdict::Deliver);
    }
}
