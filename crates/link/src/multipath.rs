//! A link over several underlay paths: braid-bond's [`Bond`] decides, this module moves the
//! bytes. The side with configured paths owns one UDP socket per path (bound to the path's
//! interface or source address) and sends to the peer's endpoint on each; the far side has
//! only the link's own socket and learns the peer's paths from the source addresses of
//! authenticated traffic, answering each on the address it came from.
//!
//! Every path has its own GSO queue, so a batch of packets for one path still leaves in one
//! system call while the scheduler spreads others elsewhere.

use crate::counters::{Counters, add};
use crate::gso::GsoQueue;
use braid_bond::{Bond, BondConfig, PathId, PathSpec, ProbeKeys, Scheduler};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

/// The link's own socket, which the far side sends every path's traffic on.
pub struct Main<'a> {
    pub socket: &'a UdpSocket,
    pub udp: &'a crate::send::UdpState,
    pub ipv6: bool,
    pub endpoint: Option<SocketAddr>,
}

/// A configured path's socket.
pub struct PathSocket {
    pub label: String,
    /// The interface the socket is bound to, if any (netlink events name it).
    pub interface: Option<String>,
    pub socket: UdpSocket,
    pub udp: crate::send::UdpState,
    pub ipv6: bool,
}

pub struct Multipath {
    pub bond: Bond,
    /// Configured paths: `sockets[i]` carries `PathId(i)` (paths are added in this order).
    pub sockets: Vec<PathSocket>,
    /// One GSO queue per path that has sent, by path id.
    queues: Vec<(PathId, GsoQueue)>,
    /// When the bond's status was last published for `braid status`.
    published: Option<Instant>,
}

/// The address a dual-stack socket sends to: IPv4 peers as IPv4-mapped IPv6.
pub fn socket_addr_for(ipv6_socket: bool, addr: SocketAddr) -> SocketAddr {
    match (ipv6_socket, addr) {
        (true, SocketAddr::V4(v4)) => SocketAddr::from((v4.ip().to_ipv6_mapped(), v4.port())),
        _ => addr,
    }
}

fn epoch() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Distinct enough across restarts when the system has no randomness to give.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        return nanos ^ u64::from(std::process::id());
    }
    u64::from_le_bytes(bytes)
}

impl Multipath {
    /// The side with configured paths: one socket each, probed from the start.
    pub fn active(
        keys: ProbeKeys,
        scheduler: Scheduler,
        paths: Vec<(PathSocket, PathSpec)>,
        now: Instant,
    ) -> Multipath {
        let config = BondConfig {
            scheduler: Some(scheduler),
            ..BondConfig::default()
        };
        let mut bond = Bond::new(config, keys, epoch(), now);
        let mut sockets = Vec::new();
        for (socket, spec) in paths {
            if bond.add_path(spec, now).is_ok() {
                sockets.push(socket);
            }
        }
        Multipath {
            bond,
            sockets,
            queues: Vec::new(),
            published: None,
        }
    }

    /// The far side, made when the peer's first probe arrives: it learns the paths and
    /// follows the peer's scheduler.
    pub fn passive(keys: ProbeKeys, now: Instant) -> Multipath {
        Multipath {
            bond: Bond::new(BondConfig::default(), keys, epoch(), now),
            sockets: Vec::new(),
            queues: Vec::new(),
            published: None,
        }
    }

    /// Whether the bond's status is due to be published again (twice a second).
    pub fn publish_due(&mut self, now: Instant) -> bool {
        let due = self
            .published
            .is_none_or(|t| now.duration_since(t).as_millis() >= 500);
        if due {
            self.published = Some(now);
        }
        due
    }

    /// The path's GSO queue, made on first use (its buffer is mapped lazily); `None` if
    /// it cannot be mapped, and the packet then goes on its own.
    fn queue_index(&mut self, path: PathId) -> Option<usize> {
        if let Some(i) = self.queues.iter().position(|(id, _)| *id == path) {
            return Some(i);
        }
        let queue = GsoQueue::new().ok()?;
        self.queues.push((path, queue));
        Some(self.queues.len() - 1)
    }

    /// Queues an encrypted packet for `path`, sending what is queued there first when it
    /// cannot join.
    pub fn queue(&mut self, path: PathId, packet: &[u8], main: &Main<'_>, counters: &Counters) {
        let Some(i) = self.queue_index(path) else {
            self.send_one(path, packet, main, counters);
            return;
        };
        let max = self.max_segments(path, main);
        if !self.queues[i].1.fits(packet.len(), max) {
            self.flush_queue(i, main, counters);
        }
        let queue = &mut self.queues[i].1;
        if queue.tail().len() < packet.len() {
            self.send_one(path, packet, main, counters);
            return;
        }
        queue.tail()[..packet.len()].copy_from_slice(packet);
        if queue.commit(packet.len()) {
            self.flush_queue(i, main, counters);
        }
    }

    fn max_segments(&self, path: PathId, main: &Main<'_>) -> usize {
        let udp = match self.sockets.get(path.0 as usize) {
            Some(s) => &s.udp,
            None => main.udp,
        };
        udp.max_gso_segments().clamp(1, 64)
    }

    pub fn flush_all(&mut self, main: &Main<'_>, counters: &Counters) {
        for i in 0..self.queues.len() {
            self.flush_queue(i, main, counters);
        }
    }

    fn flush_queue(&mut self, i: usize, main: &Main<'_>, counters: &Counters) {
        let path = self.queues[i].0;
        let Some((socket, udp, ipv6, to)) = target(&self.bond, &self.sockets, path, main) else {
            if let Some((_, _, count)) = self.queues[i].1.take() {
                add(&counters.dropped_no_route, count as u64);
            }
            return;
        };
        let Some((contents, segment_size, count)) = self.queues[i].1.take() else {
            return;
        };
        let transmit = quinn_udp::Transmit {
            destination: socket_addr_for(ipv6, to),
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        match crate::send::send_batch(udp, socket, &transmit) {
            Ok(sent) => sent.count(counters),
            Err(e) => {
                add(&counters.dropped_no_route, count as u64);
                tracing::debug!(%path, %to, "send: {e}");
            }
        }
    }

    /// Sends one datagram on `path` now (handshakes, probes, the odd packet).
    pub fn send_one(&mut self, path: PathId, packet: &[u8], main: &Main<'_>, counters: &Counters) {
        if let Some(i) = self.queues.iter().position(|(id, _)| *id == path) {
            self.flush_queue(i, main, counters);
        }
        let Some((socket, _, ipv6, to)) = target(&self.bond, &self.sockets, path, main) else {
            add(&counters.dropped_no_route, 1);
            return;
        };
        match socket.send_to(packet, socket_addr_for(ipv6, to)) {
            Ok(_) => {
                add(&counters.tx_packets, 1);
                add(&counters.tx_bytes, packet.len() as u64);
            }
            Err(e) => {
                add(&counters.dropped_no_route, 1);
                if e.kind() != ErrorKind::WouldBlock {
                    tracing::debug!(%path, %to, "send: {e}");
                }
            }
        }
    }

    /// Sends the probes the bond has queued.
    pub fn send_probes(&mut self, main: &Main<'_>) {
        while let Some(t) = self.bond.poll_transmit() {
            let Some((socket, _, ipv6, to)) = target(&self.bond, &self.sockets, t.path, main)
            else {
                continue;
            };
            let to = t.to.unwrap_or(to);
            if let Err(e) = socket.send_to(&t.payload, socket_addr_for(ipv6, to)) {
                tracing::trace!(path = %t.path, %to, "probe: {e}");
            }
        }
    }

    /// Logs what happened to the paths.
    pub fn log_events(&mut self, link: &str) {
        while let Some(event) = self.bond.poll_event() {
            use braid_bond::Event::*;
            match event {
                PathUp(id) => tracing::info!(link, path = %self.label(id), "path up"),
                PathDown(id, reason) => {
                    tracing::warn!(link, path = %self.label(id), ?reason, "path down")
                }
                PathLearned(id, addr) => {
                    tracing::info!(link, path = %id, %addr, "path learned")
                }
                PathForgotten(id) => tracing::info!(link, path = %id, "path forgotten"),
            }
        }
    }

    /// The configured paths bound to `interface`.
    pub fn paths_on(&self, interface: &str) -> Vec<PathId> {
        (0..self.sockets.len())
            .filter(|&i| self.sockets[i].interface.as_deref() == Some(interface))
            .map(|i| PathId(i as u32))
            .collect()
    }

    /// A path's name for logs and status: its interface or source, else its number.
    pub fn label(&self, id: PathId) -> String {
        self.sockets
            .get(id.0 as usize)
            .map(|s| s.label.clone())
            .unwrap_or_else(|| id.to_string())
    }
}

/// Where a path's datagrams go: a configured path's own socket to the peer's endpoint, or
/// the link's socket to a learned path's address.
fn target<'a>(
    bond: &Bond,
    sockets: &'a [PathSocket],
    path: PathId,
    main: &Main<'a>,
) -> Option<(&'a UdpSocket, &'a crate::send::UdpState, bool, SocketAddr)> {
    if let Some(s) = sockets.get(path.0 as usize) {
        return Some((&s.socket, &s.udp, s.ipv6, main.endpoint?));
    }
    let to = bond.path_addr(path).or(main.endpoint)?;
    Some((main.socket, main.udp, main.ipv6, to))
}
