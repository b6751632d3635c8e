//! The link's way out: its UDP sockets (its own, and one per configured path of a bond)
//! and a GSO queue per route, so that a batch of packets for one route leaves in one
//! system call while the engine spreads others elsewhere. The engine decides routes; this
//! only moves bytes and counts what left.

use crate::counters::{Counters, add};
use crate::gso::GsoQueue;
use braid_engine::{Route, Socket};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};

/// A UDP socket with its batched-I/O state.
pub(crate) struct UdpPort {
    pub socket: UdpSocket,
    pub udp: crate::send::UdpState,
    /// A dual-stack IPv6 socket: IPv4 peers are addressed as IPv4-mapped IPv6.
    pub ipv6: bool,
}

/// A configured path's socket.
pub(crate) struct PathPort {
    pub port: UdpPort,
    /// Its name in logs and status: interface and/or source address.
    pub label: String,
    /// The interface it is bound to, if any (netlink events name it).
    pub interface: Option<String>,
}

pub(crate) struct Output {
    pub main: UdpPort,
    pub paths: Vec<PathPort>,
    /// One GSO queue per route that has sent recently, at most [`MAX_QUEUES`] (more only
    /// while that many hold packets at once).
    queues: Vec<(Route, GsoQueue)>,
    /// When each queue was last used (a counter of `queue_index` calls), for eviction.
    used: Vec<u64>,
    uses: u64,
    /// A packet set aside while its queue is sent (kept to reuse its allocation).
    spare: Vec<u8>,
}

/// GSO queues kept for routes: two per possible path (a bond's paths, and the addresses a
/// roaming peer used last).
const MAX_QUEUES: usize = 2 * braid_bond::MAX_PATHS;

/// The address a dual-stack socket sends to: IPv4 peers as IPv4-mapped IPv6.
pub(crate) fn socket_addr_for(ipv6_socket: bool, addr: SocketAddr) -> SocketAddr {
    match (ipv6_socket, addr) {
        (true, SocketAddr::V4(v4)) => SocketAddr::from((v4.ip().to_ipv6_mapped(), v4.port())),
        _ => addr,
    }
}

impl Output {
    pub(crate) fn new(main: UdpPort, paths: Vec<PathPort>) -> Self {
        Self {
            main,
            paths,
            queues: Vec::new(),
            used: Vec::new(),
            uses: 0,
            spare: Vec::new(),
        }
    }

    pub(crate) fn port(&self, socket: Socket) -> Option<&UdpPort> {
        match socket {
            Socket::Main => Some(&self.main),
            Socket::Path(i) => self.paths.get(usize::from(i)).map(|p| &p.port),
        }
    }

    /// The configured paths bound to `interface`.
    pub(crate) fn paths_on(&self, interface: &str) -> Vec<u8> {
        (0..self.paths.len())
            .filter(|&i| self.paths[i].interface.as_deref() == Some(interface))
            .map(|i| i as u8)
            .collect()
    }

    /// The queue for `route`, made on first use (its buffer is mapped lazily); `None` if
    /// it cannot be mapped. A route not used for a while (a peer that roamed away, a path
    /// forgotten) gives its empty queue to the new one: indexes stay, routes change, so a
    /// caller holding an index checks [`route_of`](Self::route_of).
    pub(crate) fn queue_index(&mut self, route: Route) -> Option<usize> {
        self.uses += 1;
        if let Some(i) = self.queues.iter().position(|(r, _)| *r == route) {
            self.used[i] = self.uses;
            return Some(i);
        }
        if self.queues.len() >= MAX_QUEUES
            && let Some(i) = (0..self.queues.len())
                .filter(|&i| self.queues[i].1.is_empty())
                .min_by_key(|&i| self.used[i])
        {
            self.queues[i].0 = route;
            self.used[i] = self.uses;
            return Some(i);
        }
        let queue = GsoQueue::new().ok()?;
        self.queues.push((route, queue));
        self.used.push(self.uses);
        Some(self.queues.len() - 1)
    }

    pub(crate) fn route_of(&self, queue: usize) -> Route {
        self.queues[queue].0
    }

    fn max_segments(&self, route: Route) -> usize {
        self.port(route.socket)
            .map_or(1, |p| p.udp.max_gso_segments())
            .clamp(1, 64)
    }

    /// Free space at the tail of queue `i` for a packet of up to `room` bytes, sending
    /// what is queued there first if it has no room.
    pub(crate) fn tail(&mut self, i: usize, room: usize, counters: &Counters) -> &mut [u8] {
        let max = self.max_segments(self.queues[i].0);
        if !self.queues[i].1.has_room(room, max) {
            self.flush(i, counters);
        }
        self.queues[i].1.tail()
    }

    /// Queue `i`'s tail as it is (what was just written there), without sending.
    pub(crate) fn written(&mut self, i: usize) -> &mut [u8] {
        self.queues[i].1.tail()
    }

    /// Keeps the `len` bytes just written at queue `i`'s tail.
    pub(crate) fn commit_tail(&mut self, i: usize, len: usize, counters: &Counters) {
        if !self.queues[i].1.can_keep(len) {
            // Longer than the queued packets: they leave, it starts the next send.
            let mut packet = std::mem::take(&mut self.spare);
            packet.clear();
            packet.extend_from_slice(&self.queues[i].1.tail()[..len]);
            self.flush(i, counters);
            self.queues[i].1.tail()[..len].copy_from_slice(&packet);
            self.spare = packet;
        }
        if self.queues[i].1.commit(len) {
            self.flush(i, counters);
        }
    }

    /// Queues a copy of an encrypted packet for `route`.
    pub(crate) fn queue(&mut self, route: Route, packet: &[u8], counters: &Counters) {
        let Some(i) = self.queue_index(route) else {
            self.send_now(route, packet, counters);
            return;
        };
        let max = self.max_segments(route);
        if !self.queues[i].1.fits(packet.len(), max) {
            self.flush(i, counters);
        }
        let tail = self.queues[i].1.tail();
        if tail.len() < packet.len() {
            self.send_now(route, packet, counters);
            return;
        }
        tail[..packet.len()].copy_from_slice(packet);
        if self.queues[i].1.commit(packet.len()) {
            self.flush(i, counters);
        }
    }

    pub(crate) fn flush_all(&mut self, counters: &Counters) {
        for i in 0..self.queues.len() {
            self.flush(i, counters);
        }
    }

    /// Sends queue `i` in one system call (UDP GSO).
    fn flush(&mut self, i: usize, counters: &Counters) {
        let route = self.queues[i].0;
        let Some((contents, segment_size, count)) = self.queues[i].1.take() else {
            return;
        };
        let count = count as u64;
        let port = match route.socket {
            Socket::Main => &self.main,
            Socket::Path(p) => match self.paths.get(usize::from(p)) {
                Some(path) => &path.port,
                None => {
                    add(&counters.dropped_no_route, count);
                    return;
                }
            },
        };
        let transmit = quinn_udp::Transmit {
            destination: socket_addr_for(port.ipv6, route.to),
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        match crate::send::send_batch(&port.udp, &port.socket, &transmit) {
            Ok(sent) => sent.count(counters),
            Err(e) => {
                add(&counters.dropped_no_route, count);
                tracing::debug!(to = %route.to, "send: {e}");
            }
        }
    }

    /// Sends one datagram on `route` now, after what is queued there.
    pub(crate) fn send_now(&mut self, route: Route, packet: &[u8], counters: &Counters) {
        if let Some(i) = self.queues.iter().position(|(r, _)| *r == route) {
            self.flush(i, counters);
        }
        let Some(port) = self.port(route.socket) else {
            add(&counters.dropped_no_route, 1);
            return;
        };
        match port
            .socket
            .send_to(packet, socket_addr_for(port.ipv6, route.to))
        {
            Ok(_) => {
                add(&counters.tx_packets, 1);
                add(&counters.tx_bytes, packet.len() as u64);
            }
            Err(e) => {
                add(&counters.dropped_no_route, 1);
                if e.kind() != ErrorKind::WouldBlock {
                    tracing::debug!(to = %route.to, "send: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_output() -> Output {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("a loopback socket");
        socket.set_nonblocking(true).expect("non-blocking");
        let udp = crate::send::UdpState::new(&socket, "test", None).expect("socket state");
        Output::new(
            UdpPort {
                socket,
                udp,
                ipv6: false,
            },
            Vec::new(),
        )
    }

    #[test]
    fn queues_for_routes_no_longer_used_are_given_back() {
        let mut out = loopback_output();
        let counters = Counters::default();
        // The peer roams through 100 addresses (ports on loopback nobody listens on).
        for port in 0..100u16 {
            let route = Route {
                socket: Socket::Main,
                to: SocketAddr::from(([127, 0, 0, 1], 30000 + port)),
            };
            out.queue(route, &[0u8; 100], &counters);
            out.flush_all(&counters);
        }
        assert!(
            out.queues.len() <= 2 * braid_bond::MAX_PATHS,
            "{} GSO queues kept",
            out.queues.len()
        );
    }

    #[test]
    fn a_longer_packet_after_shorter_ones_starts_the_next_send_intact() {
        let mut out = loopback_output();
        let counters = Counters::default();
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("a receiver");
        let route = Route {
            socket: Socket::Main,
            to: receiver.local_addr().expect("bound"),
        };
        let i = out.queue_index(route).expect("a queue");
        for (len, fill) in [(100usize, 1u8), (100, 2), (300, 3)] {
            out.tail(i, len, &counters)[..len].fill(fill);
            out.commit_tail(i, len, &counters);
        }
        out.flush_all(&counters);
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .expect("timeout");
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while got.len() < 3 {
            let n = receiver.recv(&mut buf).expect("a datagram");
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got[0], vec![1u8; 100]);
        assert_eq!(got[1], vec![2u8; 100]);
        assert_eq!(got[2], vec![3u8; 300]);
    }
}
