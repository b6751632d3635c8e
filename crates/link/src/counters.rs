//! Per-link counters, shared between the link's thread and whoever reports on it.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// The link's counters and last-known state, written by the link's thread and read by
/// anyone through [`Counters::snapshot`]. Bytes are WireGuard datagram sizes (UDP payload),
/// as `wg show` counts them.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes of authenticated datagrams received.
    pub rx_bytes: AtomicU64,
    /// Bytes of datagrams sent.
    pub tx_bytes: AtomicU64,
    /// Authenticated datagrams received.
    pub rx_packets: AtomicU64,
    /// Datagrams sent.
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
    /// The share of the peer's keepalives lost over the last 10 s (single-path links with
    /// braid's liveness; see `liveness::Liveness::loss`).
    pub(crate) keepalive_loss: Mutex<Option<f64>>,
    /// The bond's status (paths, scheduler, reordering), published twice a second by
    /// multi-path links, with configured paths named after their uplinks.
    pub(crate) bond: Mutex<Option<braid_bond::BondStatus>>,
}

/// A copy of the counters at one moment: one link's part of the status document, as
/// `braid status --json` shows it under `links[]` (docs/status-json.md, `LINK`). The
/// kernel backend fills the fields it has and leaves the rest at their defaults.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// The endpoint the link sends to now (after roaming, the peer's latest address).
    pub endpoint: Option<SocketAddr>,
    /// The UDP port the link listens on.
    pub listen_port: u16,
    /// The last completed handshake (Unix seconds in JSON).
    #[serde(
        serialize_with = "unix_seconds",
        deserialize_with = "from_unix_seconds"
    )]
    pub last_handshake: Option<SystemTime>,
    /// When an authenticated datagram last arrived, to within a timer tick (Unix seconds
    /// in JSON).
    #[serde(
        serialize_with = "unix_seconds",
        deserialize_with = "from_unix_seconds"
    )]
    pub last_rx: Option<SystemTime>,
    /// Tunnel traffic received, bytes.
    pub rx_bytes: u64,
    /// Tunnel traffic sent, bytes.
    pub tx_bytes: u64,
    /// Tunnel packets received.
    pub rx_packets: u64,
    /// Tunnel packets sent.
    pub tx_packets: u64,
    /// Datagrams that are not valid WireGuard (bad length, type, MAC or AEAD tag).
    pub dropped_bad_packet: u64,
    /// Handshakes from a key that is not this link's peer, or for an unknown session.
    pub dropped_unknown_key: u64,
    /// Replayed or too old data packets.
    pub dropped_replay: u64,
    /// Packets from the TUN that could not be sent: no endpoint yet, or a send error.
    pub dropped_no_route: u64,
    /// Handshake initiations refused (replayed or older timestamps, another key, invalid).
    pub rejected_handshakes: u64,
    /// Unauthenticated handshakes answered with a cookie reply (the link was under load).
    pub cookie_replies: u64,
    /// Datagrams sent larger than the underlay's path MTU, in fragments.
    pub tx_fragmented: u64,
    /// Batches sent one datagram per message because the kernel refused UDP GSO for them.
    pub tx_gso_fallbacks: u64,
    /// The underlay's path MTU toward the peer, when the kernel reported it (a datagram was
    /// too large for it).
    pub underlay_mtu: Option<u32>,
    /// Loss from the peer to this side, 0..=1: the share of the peer's liveness keepalives
    /// missing over the last 10 s (single-path links when both ends run braid's link
    /// liveness; null otherwise, and for the first 10 s).
    pub keepalive_loss: Option<f64>,
    /// Multi-path links: paths (state, RTT, one-way delay, loss, rates, share, bytes, last
    /// probe), scheduler and reorder buffer; see docs/bonding.md. Absent in JSON otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bond: Option<braid_bond::BondStatus>,
}

/// A time as whole Unix seconds, or null.
fn unix_seconds<S: serde::Serializer>(time: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match time.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        Some(d) => s.serialize_u64(d.as_secs()),
        None => s.serialize_none(),
    }
}

/// Reads what [`unix_seconds`] wrote: whole Unix seconds, or null.
fn from_unix_seconds<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SystemTime>, D::Error> {
    let secs: Option<u64> = serde::Deserialize::deserialize(d)?;
    Ok(secs.map(|s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s)))
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

    /// Copies every counter and state field (each read on its own, not as one atomic set).
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
            keepalive_loss: *self
                .keepalive_loss
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
            bond: self.bond.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}
