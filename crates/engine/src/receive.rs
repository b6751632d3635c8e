//! Datagrams from the network: decrypt, authenticate, then (and only then) learn.

use crate::{Engine, Event, Incoming, Rejection, Route, Socket};
use boringtun::noise::TunnResult;
use boringtun::noise::errors::WireGuardError;
use std::net::SocketAddr;
use std::time::Instant;

/// WireGuard message types (WireGuard paper, section 5.4).
const INITIATION: u8 = 1;
const RESPONSE: u8 = 2;
const COOKIE_REPLY: u8 = 3;
const DATA: u8 = 4;
/// A data message with an empty payload: header (16 bytes) and tag (16).
const KEEPALIVE_LEN: usize = 32;

/// What decapsulating one datagram gave, with the borrow of `out` ended.
enum Outcome {
    Failed(WireGuardError),
    /// A message to send back (response, cookie reply, keepalive) at `out[..len]`.
    Reply(usize),
    /// A decrypted packet at `out[offset..offset + len]`.
    Packet {
        offset: usize,
        len: usize,
    },
    Done,
}

/// Whether a datagram of type `kind` that decapsulated without error (and gave back a
/// message of type `reply_kind`, if any) came from the peer: data and responses are
/// authenticated by their decryption, an initiation only when it was answered with a
/// response (not with a cookie reply: under load, before its MAC2 is checked).
fn authenticates(kind: u8, reply_kind: Option<u8>) -> bool {
    if reply_kind == Some(COOKIE_REPLY) {
        return false;
    }
    match kind {
        INITIATION => reply_kind == Some(RESPONSE),
        RESPONSE | DATA => true,
        _ => false,
    }
}

impl Engine {
    /// A UDP datagram from `from`, received on `socket`. `out` must hold the datagram's
    /// length; a data packet for the TUN is decrypted into it ([`Incoming::Packet`]).
    /// Afterwards drain [`poll_transmit`](Self::poll_transmit),
    /// [`poll_packet`](Self::poll_packet) and [`poll_event`](Self::poll_event).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        socket: Socket,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Incoming {
        if braid_bond::is_probe(datagram) {
            self.handle_probe(now, socket, from, datagram);
            return Incoming::Nothing;
        }
        let kind = datagram.first().copied().unwrap_or(0);
        let outcome = self.decapsulate(now, from, datagram, out);
        let reply_kind = match outcome {
            Outcome::Reply(len) => out[..len].first().copied(),
            _ => None,
        };
        if reply_kind == Some(COOKIE_REPLY) {
            self.stats.cookie_replies += 1;
        }
        if let Outcome::Failed(e) = &outcome {
            self.count_failure(now, e, kind, from);
            return Incoming::Nothing;
        }
        let authenticated = authenticates(kind, reply_kind);
        if authenticated {
            self.authenticated(now, socket, from, kind, datagram.len());
        }
        match outcome {
            Outcome::Reply(len) => {
                let reply = out[..len].to_vec();
                let cookie = reply_kind == Some(COOKIE_REPLY);
                self.send_reply(
                    now,
                    Route { socket, to: from },
                    kind,
                    cookie,
                    reply,
                    authenticated,
                );
                Incoming::Nothing
            }
            Outcome::Packet { offset, len } => {
                if offset != 0 {
                    out.copy_within(offset..offset + len, 0);
                }
                self.deliver(now, socket, from, datagram, &out[..len])
            }
            Outcome::Done => {
                if authenticated && kind == RESPONSE {
                    self.release_queued(now, None);
                }
                Incoming::Nothing
            }
            Outcome::Failed(_) => Incoming::Nothing,
        }
    }

    /// Sends what decapsulating a datagram of type `kind` from `from` gave back: a cookie
    /// reply or a handshake response to where the message came from, anything else (a
    /// keepalive) as control traffic; then what waited for the session.
    fn send_reply(
        &mut self,
        now: Instant,
        from: Route,
        kind: u8,
        cookie: bool,
        reply: Vec<u8>,
        authenticated: bool,
    ) {
        if cookie {
            // The cookie is for the address the message came from (WireGuard paper,
            // section 5.4.7): the sender proves it can receive there. Sent to the endpoint
            // (or nowhere, before the peer ever answered), a peer at a new address could
            // never get in while the link is under load.
            self.send_to(now, from, reply);
            return;
        }
        if kind == INITIATION {
            // A response (and whatever the new session lets go) goes where the initiation
            // came from; the endpoint follows on the session's first data message (see
            // `authenticated`).
            self.send_to(now, from, reply);
            self.release_queued(now, Some(from));
            return;
        }
        self.send_control(now, reply);
        if authenticated {
            self.release_queued(now, None);
        }
    }

    fn decapsulate(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Outcome {
        let start = out.as_ptr() as usize;
        let tunn = &mut self.tunn;
        let limiter = &self.rate_limiter;
        self.clock.run(now, || {
            if matches!(datagram.first(), Some(&INITIATION | &RESPONSE)) {
                // A new one-second window of the handshake rate limit, if one is due.
                // boringtun only opens one when its timers run, and an unanswered link
                // runs them once a minute (ticks.rs).
                limiter.reset_count();
            }
            match tunn.decapsulate(Some(from.ip()), datagram, out) {
                TunnResult::Err(e) => Outcome::Failed(e),
                TunnResult::WriteToNetwork(p) => Outcome::Reply(p.len()),
                TunnResult::WriteToTunnelV4(p, _) | TunnResult::WriteToTunnelV6(p, _) => {
                    Outcome::Packet {
                        offset: p.as_ptr() as usize - start,
                        len: p.len(),
                    }
                }
                TunnResult::Done => Outcome::Done,
            }
        })
    }

    /// Counts a datagram boringtun refused; refused initiations are also reported.
    fn count_failure(&mut self, now: Instant, e: &WireGuardError, kind: u8, from: SocketAddr) {
        use WireGuardError::*;
        let rejection = match e {
            // UnexpectedPacket: a handshake response or cookie reply for no handshake this
            // side is waiting for (a duplicate, or one that crossed a newer handshake).
            WrongKey | WrongIndex | NoCurrentSession | UnexpectedPacket => {
                self.stats.dropped_unknown_key += 1;
                Rejection::WrongKey
            }
            DuplicateCounter | InvalidCounter => {
                self.stats.dropped_replay += 1;
                Rejection::Invalid
            }
            WrongTai64nTimestamp => {
                self.stats.dropped_replay += 1;
                Rejection::OldTimestamp
            }
            _ => {
                self.stats.dropped_bad_packet += 1;
                Rejection::Invalid
            }
        };
        if kind == INITIATION {
            self.stats.rejected_handshakes += 1;
            if let Some(suppressed) = self.rejection_gate.pass(now) {
                self.event(Event::HandshakeRejected {
                    from,
                    reason: rejection,
                    suppressed,
                });
            }
        }
    }

    /// The datagram authenticated: count it, refresh liveness, learn where the peer is.
    fn authenticated(
        &mut self,
        now: Instant,
        socket: Socket,
        from: SocketAddr,
        kind: u8,
        len: usize,
    ) {
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += len as u64;
        if kind == DATA && len == KEEPALIVE_LEN {
            self.stats.rx_keepalives += 1;
        }
        self.last_rx = Some(now);
        let has_session = kind == DATA || self.has_session(now);
        self.ticks.activity(now, has_session);
        if kind == INITIATION {
            self.maybe_unfollow(socket, from);
        }
        if kind != DATA {
            self.handshake_at = Some(now);
            self.event(Event::HandshakeCompleted);
        }
        if self.bond.is_some() {
            let known = self.known_path(socket, from);
            let learns = socket == Socket::Main && self.configured.is_empty();
            if let Some(bond) = self.bond.as_mut() {
                // The far side learns the peer's paths from authenticated traffic.
                let path = match known {
                    Some(id) => Some(id),
                    None if learns => bond.learn_path(from, now).ok(),
                    None => None,
                };
                if let Some(id) = path {
                    bond.on_authenticated(id, len, now);
                }
            }
            self.drain_bond(now);
            // On the far side, the peer's paths are not roaming: the endpoint stays where
            // it is. The side that owns the paths sends all of them to one address, the
            // peer's, and follows it like any WireGuard peer.
            if self.endpoint.is_some() && self.configured.is_empty() {
                return;
            }
        }
        // An initiation proves the peer's key, not that the peer is at `from` now: after
        // a restart (which forgets the newest timestamp taken) anyone can replay an old
        // one. The peer confirms every handshake with a data message (kernel WireGuard,
        // wireguard-go and boringtun send a keepalive at once); the endpoint moves then.
        if kind != INITIATION {
            self.roam(now, from);
        }
    }

    /// The peer authenticated from `from`: it is there now.
    fn roam(&mut self, now: Instant, from: SocketAddr) {
        if self.endpoint == Some(from) {
            return;
        }
        self.endpoint = Some(from);
        if let Some(suppressed) = self.endpoint_gate.pass(now) {
            self.event(Event::EndpointChanged {
                endpoint: from,
                suppressed,
            });
        }
    }

    /// A decrypted data packet: straight to the TUN, or through the bond's reorder buffer.
    fn deliver(
        &mut self,
        now: Instant,
        _socket: Socket,
        _from: SocketAddr,
        datagram: &[u8],
        packet: &[u8],
    ) -> Incoming {
        let Some(bond) = self.bond.as_mut() else {
            return Incoming::Packet(packet.len());
        };
        let Some((index, counter)) = braid_bond::wg::data_header(datagram) else {
            return Incoming::Packet(packet.len());
        };
        let verdict = bond.push_received(index, counter, packet, now);
        let incoming = match verdict {
            braid_bond::Verdict::Deliver => Incoming::Packet(packet.len()),
            braid_bond::Verdict::Buffered => Incoming::Nothing,
            braid_bond::Verdict::Duplicate | braid_bond::Verdict::Dropped => {
                self.stats.dropped_replay += 1;
                Incoming::Nothing
            }
        };
        self.drain_bond(now);
        incoming
    }
}
