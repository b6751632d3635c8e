//! What the engine reports, and how often.
//!
//! Events are per change of state, never per packet. The ones a peer or an attacker can
//! cause at packet rate (refused handshakes, a peer hopping between addresses) pass a
//! [`Gate`]: at most one per interval, carrying how many were held back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Something the I/O shell logs or acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The peer authenticated from a new address (it roamed, or dialled in). `suppressed`
    /// changes before this one were not reported (at most one report a second).
    EndpointChanged {
        /// The peer's new address.
        endpoint: SocketAddr,
        /// Earlier changes not reported (rate limit).
        suppressed: u64,
    },
    /// A handshake completed: a new session.
    HandshakeCompleted,
    /// A handshake initiation was refused. At most one report every 10 s.
    HandshakeRejected {
        /// Where the initiation came from.
        from: SocketAddr,
        /// Why it was refused.
        reason: Rejection,
        /// Earlier refusals not reported (rate limit).
        suppressed: u64,
    },
    /// The peer started bonding paths; this side follows (learns its paths).
    PeerBonds {
        /// The address of the peer's datagram that showed it.
        from: SocketAddr,
    },
    /// The peer started over without the paths this side had learned; they are dropped.
    PeerUnbonded {
        /// The address of the peer's datagram that showed it.
        from: SocketAddr,
    },
    /// All paths of a bonded link are down: the engine retries the handshake every
    /// second until one answers.
    Dead,
    /// A path of a bonded link that was entirely down answers again, or the peer of a
    /// followed bond that was entirely down started over (after [`Event::PeerUnbonded`]).
    Alive,
    /// A path of a bonded link changed state.
    Path(braid_bond::Event),
}

/// Why a handshake initiation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Its timestamp is not newer than the last one taken from this peer (a replay, or a
    /// peer whose clock is behind its previous run).
    OldTimestamp,
    /// Sent to or from another key than this link's.
    WrongKey,
    /// Malformed, or its MAC or encryption does not verify.
    Invalid,
}

/// At most one event per `interval`; counts the ones held back.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    interval: Duration,
    next: Option<Instant>,
    held: u64,
}

impl Gate {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            next: None,
            held: 0,
        }
    }

    /// Some(number held back since the last pass) if an event may pass at `now`.
    pub(crate) fn pass(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|next| now < next) {
            self.held += 1;
            return None;
        }
        self.next = Some(now + self.interval);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_passes_one_event_per_interval_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut gate = Gate::new(Duration::from_secs(10));
        assert_eq!(gate.pass(t0), Some(0));
        for i in 1..=30 {
            assert_eq!(gate.pass(t0 + Duration::from_millis(i * 10)), None);
        }
        assert_eq!(gate.pass(t0 + Duration::from_secs(10)), Some(30));
    }
}
