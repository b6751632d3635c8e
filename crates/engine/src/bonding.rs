//! The engine's bond: made at start on the side with configured paths (one socket each),
//! or on the far side when the peer's first probe arrives from where it last
//! authenticated. braid-bond decides (paths, scheduler, probes, reordering); this module
//! turns its decisions into routes, follows the peer, and notices a bond whose paths are
//! all down.

use crate::{Engine, Event, Route, Socket, Transmit};
use braid_bond::{Bond, BondConfig, PathId, PathSpec, ProbeKeys, Scheduler};
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

/// A configured path: this side's socket [`Socket::Path`]`(slot)` for the slot's index.
/// A path taken out while the link runs keeps its slot (its socket stays open, unused) and
/// has no id; a path added gets a new slot, so sockets never change meaning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Slot {
    pub(crate) spec: PathSpec,
    /// The bond's id of the path; `None` once the path was taken out.
    pub(crate) id: Option<PathId>,
}

/// Most path sockets a link keeps (live and taken out): beyond, a change of paths needs a
/// new link (the shell's reactor tells sockets apart by a small number).
pub const MAX_SLOTS: usize = 64;

impl Engine {
    /// Makes the bond of the side with configured paths, one bond path per live slot.
    pub(crate) fn make_active_bond(&mut self, now: Instant) {
        let config = BondConfig {
            scheduler: Some(self.scheduler),
            ..BondConfig::default()
        };
        let Some(keys) = self.probe_keys.clone() else {
            self.bond = None;
            return;
        };
        let mut bond = Bond::new(config, keys, self.random.next_u64(), now);
        for slot in self.configured.iter_mut().filter(|s| s.id.is_some()) {
            slot.id = bond.add_path(slot.spec, now).ok();
        }
        self.bond = Some(bond);
    }

    /// The slot (socket) of a configured path.
    pub(crate) fn slot_of(&self, id: PathId) -> Option<u8> {
        self.configured
            .iter()
            .position(|s| s.id == Some(id))
            .map(|i| i as u8)
    }

    /// The socket slot of a bond path, for naming it (`None` for a learned path).
    pub fn path_slot(&self, id: PathId) -> Option<u8> {
        self.slot_of(id)
    }

    /// Changes the configured paths of a bonded link in place (configuration reload, an
    /// uplink added or taken out): `paths[i]` is slot `i`'s path, `None` for a slot
    /// whose path is taken out; slots past the current ones are new paths (the shell
    /// opened their sockets). Kept paths keep their state and measurements, taken-out
    /// ones are removed from the bond, new ones are probed at once. The session and the
    /// peer's view of the link stay. Returns false, changing nothing, when the link has
    /// no configured bond, a kept slot is given no path back, or there would be more
    /// than [`MAX_SLOTS`] slots: the link must be made again.
    pub fn set_paths(
        &mut self,
        now: Instant,
        paths: &[Option<PathSpec>],
        scheduler: Scheduler,
    ) -> bool {
        let fits = paths.len() >= self.configured.len()
            && paths.len() <= MAX_SLOTS
            && paths.iter().any(Option::is_some);
        // A slot taken out stays out (its socket may be reused for nothing else).
        let revives = self
            .configured
            .iter()
            .zip(paths)
            .any(|(slot, new)| slot.id.is_none() && new.is_some());
        if self.configured.is_empty() || self.bond.is_none() || !fits || revives {
            return false;
        }
        let Some(mut bond) = self.bond.take() else {
            return false;
        };
        self.scheduler = scheduler;
        bond.set_scheduler(Some(scheduler), now);
        for (i, new) in paths.iter().enumerate() {
            match (self.configured.get(i).copied(), new) {
                (Some(slot), Some(spec)) => {
                    if let Some(id) = slot.id
                        && slot.spec != *spec
                    {
                        let _ = bond.set_path_spec(id, *spec, now);
                    }
                    self.configured[i].spec = *spec;
                }
                (Some(slot), None) => {
                    if let Some(id) = slot.id {
                        let _ = bond.remove_path(id);
                    }
                    self.configured[i].id = None;
                }
                (None, Some(spec)) => self.configured.push(Slot {
                    spec: *spec,
                    id: bond.add_path(*spec, now).ok(),
                }),
                (None, None) => self.configured.push(Slot {
                    spec: PathSpec::default(),
                    id: None,
                }),
            }
        }
        self.bond = Some(bond);
        // A path taken out may have been the last one up; a new one is probed now.
        let any_up = self.bond.as_ref().is_some_and(|b| {
            b.path_ids()
                .any(|id| b.path_state(id) == Some(braid_bond::PathState::Up))
        });
        self.note_liveness(now, any_up);
        self.drain_bond(now);
        true
    }

    /// The route of a bond's path: a configured path's own socket to the endpoint, or the
    /// link's socket to a learned path's address.
    pub(crate) fn path_route(&self, id: PathId) -> Option<Route> {
        if let Some(slot) = self.slot_of(id) {
            return Some(Route {
                socket: Socket::Path(slot),
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
            Socket::Path(i) => self.configured.get(usize::from(i)).and_then(|s| s.id),
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
            let slot = |i: u8| self.configured.get(usize::from(i)).and_then(|s| s.id);
            let result = match socket {
                Socket::Path(i) => match slot(i) {
                    Some(id) => bond.handle_probe(id, datagram, now),
                    None => Err(braid_bond::ProbeDrop::UnknownPath),
                },
                Socket::Main => bond.handle_probe_from(from, datagram, now).map(|_| ()),
            };
            match result {
                // Counted like other authenticated datagrams, as probes sent are in tx.
                Ok(()) => {
                    self.stats.rx_packets += 1;
                    self.stats.rx_bytes += datagram.len() as u64;
                }
                Err(drop) => self.count_probe_drop(&drop),
            }
        }
        self.drain_bond(now);
    }

    /// Counts a probe the bond refused. Only a probe that is not one (bad MAC, malformed)
    /// is a bad packet: a reply that came after its request timed out, or a duplicate, is
    /// late traffic of a healthy path (counted with replays), and a probe for a path or
    /// epoch this side does not know yet is counted like a message for an unknown key.
    fn count_probe_drop(&mut self, drop: &braid_bond::ProbeDrop) {
        use braid_bond::ProbeDrop::*;
        match drop {
            Invalid(_) => self.stats.dropped_bad_packet += 1,
            Replayed | Unsolicited => self.stats.dropped_replay += 1,
            RateLimited | UnknownPath => self.stats.dropped_unknown_key += 1,
        }
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
            self.event(Event::PeerUnbonded { from });
            // The old bond's death ends with it: the peer just authenticated, so a link
            // that was `Dead` is alive again (the worker gives its carrier back). The new
            // bond starts from no path up and never emits `Alive` for the old one's death.
            if self.dead_since.take().is_some() {
                self.event(Event::Alive);
            }
        }
    }

    /// An uplink went down or came back (the shell watches netlink): configured path
    /// `index` is out at once, or probed again (up after it answers).
    pub fn set_path_up(&mut self, now: Instant, index: u8, up: bool) {
        let Some(id) = self.configured.get(usize::from(index)).and_then(|s| s.id) else {
            return;
        };
        let Some(bond) = self.bond.as_mut() else {
            return;
        };
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
            let slot = self.slot_of(t.path);
            let route = if let Some(slot) = slot {
                self.endpoint.map(|to| Route {
                    socket: Socket::Path(slot),
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
