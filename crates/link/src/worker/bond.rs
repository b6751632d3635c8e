//! The worker's multi-path side: probes, the bond's timers, per-path sending, reordering
//! and path state from netlink. The bond itself (braid-bond) decides; this moves bytes.

use super::{Source, Worker, flush_tun};
use crate::counters::add;
use crate::multipath::{Main, Multipath};
use boringtun::noise::TunnResult;
use std::net::SocketAddr;
use std::time::Instant;

impl Worker {
    /// Runs the bond's timers when due: probes, failover, reorder gaps.
    pub(super) fn bond_timers(&mut self, now: Instant) {
        let Some(mp) = self.multipath.as_mut() else {
            return;
        };
        if mp.bond.poll_timeout().is_some_and(|due| due <= now) {
            mp.bond.handle_timeout(now);
        }
        let main = Main {
            socket: &self.socket,
            udp: &self.udp,
            ipv6: self.ipv6_socket,
            endpoint: self.endpoint,
        };
        mp.send_probes(&main);
        mp.log_events(&self.name);
        if mp.publish_due(now) {
            let mut status = serde_json::to_value(mp.bond.status(now)).ok();
            // Configured paths by name (their interface or source), learned ones by address.
            if let Some(paths) = status
                .as_mut()
                .and_then(|s| s.get_mut("paths"))
                .and_then(|p| p.as_array_mut())
            {
                for path in paths {
                    let id = path["id"].as_u64().unwrap_or(u64::MAX);
                    let name = match path["peer"].as_str() {
                        Some(peer) => peer.to_string(),
                        None => mp.label(braid_bond::PathId(id as u32)),
                    };
                    path["name"] = serde_json::Value::String(name);
                }
            }
            *self.counters.bond.lock().unwrap_or_else(|p| p.into_inner()) = status;
        }
        let mut released = false;
        while let Some(r) = mp.bond.pop_received() {
            if self.writer.is_full() {
                flush_tun(&mut self.writer, &self.tun, &self.name);
            }
            let len = r.packet.len();
            self.writer.slot(len)[..len].copy_from_slice(&r.packet);
            self.writer.commit(len);
            released = true;
        }
        if released {
            flush_tun(&mut self.writer, &self.tun, &self.name);
        }
    }

    pub(super) fn bond_due(&self) -> Option<Instant> {
        self.multipath.as_ref()?.bond.poll_timeout()
    }

    /// Multi-path: the bond picks the path(s); the packet is encrypted once and queued on
    /// each (several for the redundant scheduler).
    pub(super) fn encapsulate_multipath(&mut self, plaintext: &[u8], dst: &mut [u8]) {
        let Some(mp) = self.multipath.as_mut() else {
            return;
        };
        let picks = mp.bond.pick(plaintext, Instant::now());
        let packet = match self.tunn.encapsulate(plaintext, dst) {
            TunnResult::WriteToNetwork(packet) => packet,
            TunnResult::Err(e) => {
                tracing::debug!(link = %self.name, "encapsulate: {e:?}");
                return;
            }
            _ => return,
        };
        let main = Main {
            socket: &self.socket,
            udp: &self.udp,
            ipv6: self.ipv6_socket,
            endpoint: self.endpoint,
        };
        if packet.first() != Some(&4) {
            // No session yet: boringtun queued the packet and asks for a handshake.
            if let Some(path) = mp.bond.pick_control() {
                mp.send_one(path, packet, &main, &self.counters);
            }
            return;
        }
        if picks.is_empty() {
            add(&self.counters.dropped_no_route, 1);
        }
        for path in &picks {
            mp.queue(*path, packet, &main, &self.counters);
        }
    }

    /// A bond probe. The far side makes its bond on the first one that comes from the
    /// address the peer was last authenticated at (a handshake or data), learning that
    /// address as the first path; probes from other addresses are taken once the bond
    /// knows the peer's probe epoch (braid-bond checks they are fresh).
    pub(super) fn handle_probe(&mut self, datagram: &[u8], from: SocketAddr, source: Source) {
        let now = Instant::now();
        if self.multipath.is_none() {
            if self.endpoint != Some(from) || source != Source::Main {
                add(&self.counters.dropped_unknown_key, 1);
                return;
            }
            let Ok(keys) = braid_bond::ProbeKeys::derive(
                &x25519_dalek::StaticSecret::from(self.private_key),
                &x25519_dalek::PublicKey::from(self.peer_public_key),
            ) else {
                add(&self.counters.dropped_bad_packet, 1);
                return;
            };
            let mut mp = Multipath::passive(keys, now);
            let accepted = mp
                .bond
                .learn_path(from, now)
                .map_err(|_| ())
                .and_then(|id| mp.bond.handle_probe(id, datagram, now).map_err(|_| ()));
            if accepted.is_err() {
                add(&self.counters.dropped_bad_packet, 1);
                return;
            }
            tracing::info!(link = %self.name, peer = %from, "the peer bonds paths: following");
            self.multipath = Some(Box::new(mp));
        } else if let Some(mp) = self.multipath.as_mut() {
            let result = match source {
                Source::Path(i) => {
                    mp.bond
                        .handle_probe(braid_bond::PathId(u32::from(i)), datagram, now)
                }
                Source::Main => mp.bond.handle_probe_from(from, datagram, now).map(|_| ()),
            };
            if result.is_err() {
                add(&self.counters.dropped_bad_packet, 1);
                return;
            }
        }
        self.bond_timers(now);
    }

    /// Packets the reorder buffer lets go (in order) join the TUN batch.
    pub(super) fn drain_reordered(&mut self) {
        let Some(mp) = self.multipath.as_mut() else {
            return;
        };
        while let Some(r) = mp.bond.pop_received() {
            if self.writer.is_full() {
                flush_tun(&mut self.writer, &self.tun, &self.name);
            }
            let len = r.packet.len();
            self.writer.slot(len)[..len].copy_from_slice(&r.packet);
            self.writer.commit(len);
        }
    }

    pub(super) fn set_path_state(&mut self, interface: &str, up: bool) {
        let Some(mp) = self.multipath.as_mut() else {
            return;
        };
        let now = Instant::now();
        for id in mp.paths_on(interface) {
            let result = if up {
                mp.bond.path_up(id, now)
            } else {
                mp.bond.path_down(id)
            };
            if result.is_ok() {
                tracing::info!(link = %self.name, path = %interface, up, "uplink state");
            }
        }
        mp.log_events(&self.name);
    }
}
