//! What the engine sends: data from the TUN, and the messages it sends by itself
//! (handshakes, keepalives, packets a new session releases), on the timers it keeps.

use crate::{Engine, Outgoing, Route, Routes, Socket, Transmit};
use boringtun::noise::TunnResult;
use boringtun::noise::errors::WireGuardError;
use std::time::Instant;

/// What encapsulating one packet gave, with the borrow of `out` ended.
enum Sealed {
    Data {
        offset: usize,
        len: usize,
    },
    /// No session: boringtun queued the packet and may want a handshake sent.
    Handshake {
        offset: usize,
        len: usize,
    },
    Queued,
    /// No session, and the initiation boringtun wanted to write did not fit `out`
    /// (148 bytes, more than a small packet needs): the packet is queued.
    QueuedNoRoom,
    Failed,
}

impl Engine {
    /// An IP packet from the TUN. `out` needs room for the packet plus 32 bytes (header
    /// and tag) rounded up to 16. On [`Outgoing::Data`] send `out[..len]` on each route.
    /// Bytes are charged to the bond's paths only for a data message that exists.
    pub fn send_packet(&mut self, now: Instant, packet: &[u8], out: &mut [u8]) -> Outgoing {
        let start = out.as_ptr() as usize;
        let tunn = &mut self.tunn;
        let sealed = self.clock.run(now, || match tunn.encapsulate(packet, out) {
            TunnResult::WriteToNetwork(p) => {
                let (offset, len) = (p.as_ptr() as usize - start, p.len());
                if p.first() == Some(&4) {
                    Sealed::Data { offset, len }
                } else {
                    Sealed::Handshake { offset, len }
                }
            }
            TunnResult::Err(WireGuardError::DestinationBufferTooSmall) => Sealed::QueuedNoRoom,
            TunnResult::Err(_) => Sealed::Failed,
            _ => Sealed::Queued,
        });
        match sealed {
            Sealed::Data { offset, len } => {
                if offset != 0 {
                    out.copy_within(offset..offset + len, 0);
                }
                self.ticks.activity(now, true);
                match self.data_routes(now, packet) {
                    Some(routes) => Outgoing::Data { len, routes },
                    None => {
                        self.stats.dropped_no_route += 1;
                        Outgoing::Dropped
                    }
                }
            }
            Sealed::Handshake { offset, len } => {
                self.ticks.activity(now, false);
                let message = out[offset..offset + len].to_vec();
                self.send_control(now, message);
                Outgoing::Pending
            }
            Sealed::Queued => {
                self.ticks.activity(now, false);
                Outgoing::Pending
            }
            Sealed::QueuedNoRoom => {
                self.ticks.activity(now, false);
                self.initiate(now, false);
                Outgoing::Pending
            }
            Sealed::Failed => {
                self.stats.dropped_no_route += 1;
                Outgoing::Dropped
            }
        }
    }

    /// Where a data packet goes: the bond's pick (charged to the paths), or the endpoint.
    fn data_routes(&mut self, now: Instant, packet: &[u8]) -> Option<Routes> {
        let Some(bond) = self.bond.as_mut() else {
            return self.endpoint.map(|to| {
                Routes::one(Route {
                    socket: Socket::Main,
                    to,
                })
            });
        };
        let picks = bond.pick(packet, now);
        let mut routes = Routes::default();
        for id in picks.iter() {
            if let Some(route) = self.path_route(*id) {
                routes.push(route);
            }
        }
        (!routes.is_empty()).then_some(routes)
    }

    /// Sends a message that is not user data on the best route: the bond's control path,
    /// or the endpoint.
    pub(crate) fn send_control(&mut self, now: Instant, payload: Vec<u8>) {
        let route = match self.bond.as_ref().and_then(|b| b.pick_control()) {
            Some(id) => {
                let route = self.path_route(id);
                if let (Some(bond), Some(_)) = (self.bond.as_mut(), route) {
                    bond.record_sent(id, payload.len(), now);
                }
                route
            }
            None => self.endpoint.map(|to| Route {
                socket: Socket::Main,
                to,
            }),
        };
        match route {
            Some(route) => self.push_transmit(Transmit { route, payload }),
            None => self.stats.dropped_no_route += 1,
        }
    }

    /// Sends a message that answers a datagram on the route it came in by (a cookie
    /// reply), charged to the bond's path there if it has one.
    pub(crate) fn send_to(&mut self, now: Instant, route: Route, payload: Vec<u8>) {
        if let Some(id) = self.known_path(route.socket, route.to)
            && let Some(bond) = self.bond.as_mut()
        {
            bond.record_sent(id, payload.len(), now);
        }
        self.push_transmit(Transmit { route, payload });
    }

    /// Starts a handshake if the peer's address is known (`force`: even if one is in
    /// progress).
    pub(crate) fn initiate(&mut self, now: Instant, force: bool) {
        if self.endpoint.is_none() && self.bond.is_none() {
            return;
        }
        let mut buffer = self.take_buffer();
        let tunn = &mut self.tunn;
        let message = self.clock.run(now, || {
            match tunn.format_handshake_initiation(&mut buffer, force) {
                TunnResult::WriteToNetwork(p) => Some(p.to_vec()),
                _ => None,
            }
        });
        self.buffer = buffer;
        if let Some(message) = message {
            self.send_control(now, message);
        }
    }

    /// Sends the packets that waited for the session that just began (and any
    /// initiation boringtun makes for them), on `route` or else as control messages.
    pub(crate) fn release_queued(&mut self, now: Instant, route: Option<Route>) {
        let mut buffer = self.take_buffer();
        loop {
            let tunn = &mut self.tunn;
            let message = self
                .clock
                .run(now, || match tunn.decapsulate(None, &[], &mut buffer) {
                    TunnResult::WriteToNetwork(p) => Some(p.to_vec()),
                    _ => None,
                });
            match (message, route) {
                (Some(message), Some(route)) => self.send_to(now, route, message),
                (Some(message), None) => self.send_control(now, message),
                (None, _) => break,
            }
        }
        self.buffer = buffer;
    }

    /// Runs what is due at `now`: WireGuard's timers (retransmits, keepalives, rekeying),
    /// the bond's (probes, failover, reorder gaps), and a dead bond's handshake retry.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.ticks.due() {
            self.run_wireguard_timers(now);
        }
        if let Some(bond) = self.bond.as_mut()
            && bond.poll_timeout().is_some_and(|due| due <= now)
        {
            bond.handle_timeout(now);
            self.drain_bond(now);
        }
        if self.dead_retry_due().is_some_and(|due| due <= now) {
            self.last_dead_retry = Some(now);
            self.initiate(now, true);
        }
    }

    fn run_wireguard_timers(&mut self, now: Instant) {
        let mut buffer = self.take_buffer();
        let tunn = &mut self.tunn;
        let message = self
            .clock
            .run(now, || match tunn.update_timers(&mut buffer) {
                TunnResult::WriteToNetwork(p) => Some(p.to_vec()),
                TunnResult::Err(WireGuardError::ConnectionExpired) => None,
                TunnResult::Err(e) => {
                    tracing::trace!("timers: {e:?}");
                    None
                }
                _ => None,
            });
        self.buffer = buffer;
        if let Some(message) = message {
            self.send_control(now, message);
        }
        let has_session = self.has_session(now);
        self.ticks.ran(now, has_session);
    }
}
