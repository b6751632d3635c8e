//! The engine's bond: made at start on the side with configured paths (one socket each),
//! or on the far side when the peer's first probe arrives from where it last
//! authenticated. braid-bond decides (paths, scheduler, probes, reordering); this module
//! turns its decisions into routes, follows the peer, and notices a bond whose paths are
//! all down.

use crate::{Engine, Event, Route, Socket, Transmit};
use braid_bond::{Bond, BondConfig, PathId, ProbeKeys};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often a bond whose paths are all down retries the handshake: a peer that restarted
/// (and lost the session) answers the next one, and the link is back within a second.
pub(crate) const DEAD_RETRY: Duration = Duration::from_secs(1);
/// For how long after all paths went down the fast retry goes on; after that boringtun's
/// own retries (every 5 s while traffic waits) take over.
pub(crate) const DEAD_RETRY_FOR: Duration = Duration::from_secs(120);

/// The link's probe keys (one X25519 agreement: made once, when the engine is made).
pub(crate) fn keys(private_key: [u8; 32], peer_public_key: [u8; 32]) -> Option<ProbeKeys> {
    ProbeKeys::derive(
        &x25519_dalek::StaticSecret::from(private_key),
        &x25519_dalek::PublicKey::from(peer_public_key),
    )
    .ok()
}

/// The bond of the side with configured paths: `PathId(i)` is `Socket::Path(i)`.
pub(crate) fn active(engine: &Engine, now: Instant) -> Option<Bond> {
    let config = BondConfig {
        scheduler: Some(engine.scheduler),
        ..BondConfig::default()
    };
    let mut random = engine.random.clone();
    let mut bond = Bond::new(config, engine.probe_keys.clone()?, random.next_u64(), now);
    for spec in &engine.configured {
        bond.add_path(*spec, now).ok()?;
    }
    Some(bond)
}

impl Engine {
    /// The route of a bond's path: a configured path's own socket to the endpoint, or the
    /// link's socket to a learned path's address.
    pub(crate) fn path_route(&self, id: PathId) -> Option<Route> {
        if (id.0 as usize) < self.configured.len() {
            return Some(Route {
                socket: Socket::Path(id.0 as u8),
                to: self.endpoint?,
            });
        }
        let to = self.bond.as_ref()?.path_addr(id).or(self.endpoint)?;
        Some(Route {
            socket: Socket::Main,
            to,
        })
    }

    /// The path a datagram came in on, if the bond knows it (never learns).
    pub(crate) fn known_path(&self, socket: Socket, from: SocketAddr) -> Option<PathId> {
        let bond = self.bond.as_ref()?;
        match socket {
            Socket::Path(i) if usize::from(i) < self.configured.len() => Some(PathId(u32::from(i))),
            Socket::Path(_) => None,
            Socket::Main => bond.path_by_addr(from),
        }
    }

    /// A bond probe arrived (unauthenticated until braid-bond opens it with the probe keys).
    pub(crate) fn handle_probe(
        &mut self,
        now: Instant,
        socket: Socket,
        from: SocketAddr,
        datagram: &[u8],
    ) {
        if self.bond.is_none() {
            self.follow(now, socket, from, datagram);
        } else if let Some(bond) = self.bond.as_mut() {
            let result = match socket {
                Socket::Path(i) => bond.handle_probe(PathId(u32::from(i)), datagram, now),
                Socket::Main => bond.handle_probe_from(from, datagram, now).map(|_| ()),
            };
            if result.is_err() {
                self.stats.dropped_bad_packet += 1;
            }
        }
        self.drain_bond(now);
    }

    /// The far side makes its bond on the first probe from the address the peer last
    /// authenticated from (the endpoint); probes from other addresses are taken once the
    /// bond knows the peer's probe epoch (braid-bond checks they are fresh).
    fn follow(&mut self, now: Instant, socket: Socket, from: SocketAddr, datagram: &[u8]) {
        if self.endpoint != Some(from) || socket != Socket::Main || self.last_rx.is_none() {
            self.stats.dropped_unknown_key += 1;
            return;
        }
        // Checked before anything is made for it: a datagram that merely starts like a
        // probe, from a forged source, costs a MAC check and nothing more.
        let Some(keys) = self.probe_keys.clone() else {
            self.stats.dropped_bad_packet += 1;
            return;
        };
        if keys.open(datagram).is_err() {
            self.stats.dropped_bad_packet += 1;
            return;
        }
        let epoch = self.random.next_u64();
        let mut bond = Bond::new(BondConfig::default(), keys, epoch, now);
        let accepted = bond
            .learn_path(from, now)
            .map_err(|_| ())
            .and_then(|id| bond.handle_probe(id, datagram, now).map_err(|_| ()));
        if accepted.is_err() {
            self.stats.dropped_bad_packet += 1;
            return;
        }
        self.bond = Some(bond);
        self.event(Event::PeerBonds { from });
    }

    /// An authenticated initiation from an address the far side's bond does not know: the
    /// peer started over (new path sockets, or none). Follow it anew: the answer goes
    /// where the initiation came from, and the peer's next probes make a new bond.
    pub(crate) fn maybe_unfollow(&mut self, socket: Socket, from: SocketAddr) {
        let learned_only = self.configured.is_empty();
        if socket == Socket::Main
            && learned_only
            && self
                .bond
                .as_ref()
                .is_some_and(|b| b.path_by_addr(from).is_none())
        {
            self.bond = None;
            self.dead_since = None;
            self.event(Event::PeerUnbonded { from });
        }
    }

    /// An uplink went down or came back (the shell watches netlink): configured path
    /// `index` is out at once, or probed again (up after it answers).
    pub fn set_path_up(&mut self, now: Instant, index: u8, up: bool) {
        let Some(bond) = self.bond.as_mut() else {
            return;
        };
        let id = PathId(u32::from(index));
        let _ = if up {
            bond.path_up(id, now)
        } else {
            bond.path_down(id)
        };
        self.drain_bond(now);
    }

    /// Moves what the bond queued (probes, events, released packets) into the engine's
    /// queues, and notices when its paths are all down or one comes back.
    pub(crate) fn drain_bond(&mut self, now: Instant) {
        let Some(mut bond) = self.bond.take() else {
            return;
        };
        while let Some(t) = bond.poll_transmit() {
            let route = if (t.path.0 as usize) < self.configured.len() {
                self.endpoint.map(|to| Route {
                    socket: Socket::Path(t.path.0 as u8),
                    to,
                })
            } else {
                t.to.or(self.endpoint).map(|to| Route {
                    socket: Socket::Main,
                    to,
                })
            };
            if let Some(route) = route {
                self.push_transmit(Transmit {
                    route,
                    payload: t.payload.to_vec(),
                });
            }
        }
        while let Some(r) = bond.pop_received() {
            self.push_packet(r.packet);
        }
        let mut changed = false;
        while let Some(e) = bond.poll_event() {
            changed = true;
            self.event(Event::Path(e));
        }
        let any_up = bond.path_ids().any(|id| {
            bond.path_state(id)
                .is_some_and(|s| s == braid_bond::PathState::Up)
        });
        self.bond = Some(bond);
        if changed {
            self.note_liveness(now, any_up);
        }
    }

    /// A bond is dead when every path that was up is gone; it is alive again when one
    /// answers. (Paths still probing at start do not make a bond dead.)
    fn note_liveness(&mut self, now: Instant, any_up: bool) {
        let was_up = std::mem::replace(&mut self.bond_up, any_up);
        if was_up && !any_up && self.dead_since.is_none() {
            self.dead_since = Some(now);
            self.last_dead_retry = None;
            self.event(Event::Dead);
        } else if any_up && self.dead_since.take().is_some() {
            self.event(Event::Alive);
        }
    }

    /// When the next handshake retry of a dead bond is due.
    pub(crate) fn dead_retry_due(&self) -> Option<Instant> {
        let since = self.dead_since?;
        let next = self.last_dead_retry.map_or(since, |t| t + DEAD_RETRY);
        (next < since + DEAD_RETRY_FOR).then_some(next)
    }
}
