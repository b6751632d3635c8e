//! Per-link counters, shared between the link's thread and whoever reports on it.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

#[derive(Debug, Default)]
pub struct Counters {
    pub rx_bytes: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub rx_packets: AtomicU64,
    pub tx_packets: AtomicU64,
    /// Datagrams that are not valid WireGuard (bad length, type, MAC or AEAD tag).
    pub dropped_bad_packet: AtomicU64,
    /// Handshakes from a key that is not this link's peer, or for an unknown session.
    pub dropped_unknown_key: AtomicU64,
    /// Replayed or too old data packets.
    pub dropped_replay: AtomicU64,
    /// Packets from the TUN that could not be sent (no endpoint yet, socket error).
    pub dropped_no_route: AtomicU64,
    /// Handshake initiations refused (replayed or older timestamps, wrong key, invalid).
    pub rejected_handshakes: AtomicU64,
    /// Unauthenticated datagrams answered with a cookie reply (the link was under load).
    pub cookie_replies: AtomicU64,
    /// Datagrams sent larger than the underlay's path MTU (the kernel fragmented them).
    pub tx_fragmented: AtomicU64,
    /// Batches that left one datagram per message because the kernel refused UDP GSO for
    /// their segment size (see `send`).
    pub tx_gso_fallbacks: AtomicU64,
    /// The underlay's path MTU toward the peer as the kernel last reported it (IP bytes),
    /// when a send was too large for it; 0 until then.
    pub underlay_mtu: AtomicU64,
    pub(crate) last_handshake: Mutex<Option<SystemTime>>,
    pub(crate) last_rx: Mutex<Option<SystemTime>>,
    pub(crate) endpoint: Mutex<Option<SocketAddr>>,
    pub(crate) listen_port: AtomicU64,
    /// The TUN device went away under the link (`ip link del`, another tool's cleanup):
    /// the link stopped; its owner makes it again.
    pub(crate) device_gone: std::sync::atomic::AtomicBool,
    /// The link's liveness declared it dead (carrier off); see `Link::dead`.
    pub(crate) dead: std::sync::atomic::AtomicBool,
    /// Packets the engine had no route for (published; `dropped_no_route` counts failed
    /// sends, and the snapshot reports both together).
    pub(crate) engine_no_route: AtomicU64,
    /// The bond's status (paths, scheduler, reordering) as JSON, published twice a second
    /// by multi-path links.
    pub(crate) bond: Mutex<Option<serde_json::Value>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub dropped_bad_packet: u64,
    pub dropped_unknown_key: u64,
    pub dropped_replay: u64,
    pub dropped_no_route: u64,
    pub rejected_handshakes: u64,
    pub cookie_replies: u64,
    /// Datagrams sent larger than the underlay's path MTU, in fragments.
    pub tx_fragmented: u64,
    /// Batches sent one datagram per message because the kernel refused UDP GSO for them.
    pub tx_gso_fallbacks: u64,
    /// The underlay's path MTU toward the peer, when the kernel reported it (a datagram was
    /// too large for it).
    pub underlay_mtu: Option<u32>,
    pub last_handshake: Option<SystemTime>,
    /// When an authenticated datagram last arrived (to within a timer tick).
    pub last_rx: Option<SystemTime>,
    pub endpoint: Option<SocketAddr>,
    pub listen_port: u16,
    /// Multi-path links: braid-bond's status (see `braid_bond::BondStatus`).
    pub bond: Option<serde_json::Value>,
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// Takes the engine's counters and state (the link's thread, after each batch). The
    /// send side (`tx_*`, `dropped_no_route` for failed sends) is counted where the system
    /// calls happen and added to the engine's count of packets it had no route for.
    pub(crate) fn publish(
        &self,
        stats: &braid_engine::Stats,
        endpoint: Option<SocketAddr>,
        last_handshake: Option<SystemTime>,
        last_rx: Option<SystemTime>,
    ) {
        let set = |c: &AtomicU64, v: u64| c.store(v, Ordering::Relaxed);
        set(&self.rx_bytes, stats.rx_bytes);
        set(&self.rx_packets, stats.rx_packets);
        set(&self.dropped_bad_packet, stats.dropped_bad_packet);
        set(&self.dropped_unknown_key, stats.dropped_unknown_key);
        set(&self.dropped_replay, stats.dropped_replay);
        set(&self.engine_no_route, stats.dropped_no_route);
        set(&self.rejected_handshakes, stats.rejected_handshakes);
        set(&self.cookie_replies, stats.cookie_replies);
        *self.endpoint.lock().unwrap_or_else(|p| p.into_inner()) = endpoint;
        *self
            .last_handshake
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = last_handshake;
        *self.last_rx.lock().unwrap_or_else(|p| p.into_inner()) = last_rx;
    }

    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            rx_bytes: get(&self.rx_bytes),
            tx_bytes: get(&self.tx_bytes),
            rx_packets: get(&self.rx_packets),
            tx_packets: get(&self.tx_packets),
            dropped_bad_packet: get(&self.dropped_bad_packet),
            dropped_unknown_key: get(&self.dropped_unknown_key),
            dropped_replay: get(&self.dropped_replay),
            dropped_no_route: get(&self.dropped_no_route) + get(&self.engine_no_route),
            rejected_handshakes: get(&self.rejected_handshakes),
            cookie_replies: get(&self.cookie_replies),
            tx_fragmented: get(&self.tx_fragmented),
            tx_gso_fallbacks: get(&self.tx_gso_fallbacks),
            underlay_mtu: Some(get(&self.underlay_mtu) as u32).filter(|&m| m > 0),
            last_rx: *self.last_rx.lock().unwrap_or_else(|p| p.into_inner()),
            last_handshake: *self
                .last_handshake
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
            endpoint: *self.endpoint.lock().unwrap_or_else(|p| p.into_inner()),
            listen_port: get(&self.listen_port) as u16,
            bond: self.bond.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}
