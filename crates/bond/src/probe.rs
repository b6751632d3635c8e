//! The probe wire format and its authentication.
//!
//! A probe travels in the same UDP flow as the link's WireGuard messages. WireGuard
//! messages begin with a little-endian u32 type 1..=4; a probe begins with the bytes
//! `62 00 00 00` ('b'), so the two never collide and a receiver tells them apart by the
//! first four bytes ([`is_probe`]). All integers are little-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | type: `62 00 00 00` |
//! | 4 | 1 | kind: 1 request, 2 reply |
//! | 5 | 1 | version: 1 |
//! | 6 | 1 | sender's scheduler: 0 none, 1 flow, 2 round-robin, 3 weighted, 4 redundant, 5 backup, 6 earliest-arrival |
//! | 7 | 1 | flags: bit 0 = the sender configured this path (its attributes below are authoritative) |
//! | 8 | 4 | path key: the configured side's id of the path |
//! | 12 | 4 | priority of the path |
//! | 16 | 4 | weight of the path, 0 = measured |
//! | 20 | 4 | held: reply only, µs between receiving the request and sending the reply |
//! | 24 | 8 | epoch: random, fixed for the life of the sender's bond |
//! | 32 | 8 | sequence: per sender, from 1, increasing over all paths |
//! | 40 | 8 | timestamp: sender's clock in µs since its bond started |
//! | 48 | 8 | echo epoch: reply only, the request's epoch |
//! | 56 | 8 | echo sequence: reply only, the request's sequence |
//! | 64 | 8 | packets the sender received on this path (authenticated ones only) |
//! | 72 | 8 | bytes the sender received on this path (wire size) |
//! | 80 | 8 | rate cap of the path in bit/s, 0 = none |
//! | 88 | n | padding (zero or more bytes, ignored; room for path-MTU probes) |
//! | 88+n | 16 | MAC: keyed BLAKE2s-128 over every byte before it |
//!
//! Keys: both ends compute the same X25519 shared secret from their static keys, then
//! `base = BLAKE2s-256("braid bond probe v1" || dh || pk_lo || pk_hi)` (public keys in
//! byte order) and one key per direction, `BLAKE2s-256(base || 0x01)` for messages from
//! the lower key to the higher and `|| 0x02` the other way, so a message reflected back
//! to its sender fails authentication.

use crate::scheduler::Scheduler;
use blake2::digest::consts::U16;
use blake2::digest::{KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac, Digest};
use x25519_dalek::{PublicKey, StaticSecret};

/// The first four bytes of every probe.
pub const PROBE_TYPE: [u8; 4] = [0x62, 0, 0, 0];
/// Size of the fields before the MAC.
pub const HEADER_LEN: usize = 88;
/// Size of the MAC (keyed BLAKE2s-128) that ends every probe.
pub const MAC_LEN: usize = 16;
/// Size of an unpadded probe.
pub const PROBE_LEN: usize = HEADER_LEN + MAC_LEN;
/// Largest probe accepted (a padded path-MTU probe).
pub const MAX_PROBE_LEN: usize = 1500;
/// The probe format version this crate writes and accepts (offset 5).
pub const VERSION: u8 = 1;
const LABEL: &[u8] = b"braid bond probe v1";

/// Whether a datagram is a probe rather than a WireGuard message.
pub fn is_probe(datagram: &[u8]) -> bool {
    datagram.get(..4) == Some(&PROBE_TYPE[..])
}

/// A probe's kind (offset 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 1: asks the peer for a reply on the same path.
    Request,
    /// 2: answers a request (echoes its epoch and sequence).
    Reply,
}

/// A probe's fields (see the module docs for their meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Request or reply (offset 4).
    pub kind: Kind,
    /// The sender's scheduler (offset 6); `None`: code 0.
    pub scheduler: Option<Scheduler>,
    /// Flag bit 0: the sender configured this path (offset 7).
    pub configured: bool,
    /// The configured side's id of the path (offset 8).
    pub path_key: u32,
    /// The path's priority (offset 12).
    pub priority: u32,
    /// The path's weight, 0 = measured (offset 16).
    pub weight: u32,
    /// Reply only: µs between receiving the request and replying (offset 20).
    pub held_us: u32,
    /// The sender's epoch: random, fixed for its bond's life (offset 24).
    pub epoch: u64,
    /// The sender's sequence, from 1, over all paths (offset 32).
    pub seq: u64,
    /// The sender's clock in µs since its bond started (offset 40).
    pub ts_us: u64,
    /// Reply only: the request's epoch (offset 48).
    pub echo_epoch: u64,
    /// Reply only: the request's sequence (offset 56).
    pub echo_seq: u64,
    /// Authenticated packets the sender received on this path (offset 64).
    pub rx_packets: u64,
    /// Bytes (wire size) the sender received on this path (offset 72).
    pub rx_bytes: u64,
    /// The path's rate cap in bit/s, 0 = none (offset 80).
    pub rate_cap_bps: u64,
}

/// Why a datagram is not an acceptable probe.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    /// The first four bytes are not [`PROBE_TYPE`].
    #[error("not a probe: the type bytes are not 62 00 00 00")]
    NotAProbe,
    /// The length (bytes) is outside `PROBE_LEN..=MAX_PROBE_LEN`.
    #[error("probe of {0} bytes: must be {PROBE_LEN}..={MAX_PROBE_LEN}")]
    Length(usize),
    /// A version other than [`VERSION`].
    #[error("probe version {0} is not supported (this is version {VERSION})")]
    Version(u8),
    /// A kind byte other than 1 or 2.
    #[error("probe kind {0} is unknown")]
    Kind(u8),
    /// The MAC does not verify: forged, corrupted, reflected or from another key.
    #[error("probe MAC does not verify")]
    Mac,
}

/// Why probe keys cannot be derived from a pair of X25519 keys.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The peer's public key is a low-order point: the shared secret is all zero.
    #[error("the peer's public key is a low-order point: no shared secret")]
    LowOrder,
}

fn scheduler_code(s: Option<Scheduler>) -> u8 {
    match s {
        None => 0,
        Some(Scheduler::Flow) => 1,
        Some(Scheduler::RoundRobin) => 2,
        Some(Scheduler::Weighted) => 3,
        Some(Scheduler::Redundant) => 4,
        Some(Scheduler::Backup) => 5,
        Some(Scheduler::EarliestArrival) => 6,
    }
}

fn scheduler_from_code(c: u8) -> Option<Scheduler> {
    match c {
        1 => Some(Scheduler::Flow),
        2 => Some(Scheduler::RoundRobin),
        3 => Some(Scheduler::Weighted),
        4 => Some(Scheduler::Redundant),
        5 => Some(Scheduler::Backup),
        6 => Some(Scheduler::EarliestArrival),
        _ => None,
    }
}

/// The two MAC keys of a link's probes.
#[derive(Clone)]
pub struct ProbeKeys {
    send: [u8; 32],
    recv: [u8; 32],
}

impl std::fmt::Debug for ProbeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProbeKeys { .. }")
    }
}

fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

impl ProbeKeys {
    /// Derives the keys from this side's static private key and the peer's public key.
    pub fn derive(own: &StaticSecret, peer: &PublicKey) -> Result<Self, KeyError> {
        let dh = own.diffie_hellman(peer);
        if !dh.was_contributory() {
            return Err(KeyError::LowOrder);
        }
        let own_pub = PublicKey::from(own);
        let (lo, hi) = if own_pub.as_bytes() <= peer.as_bytes() {
            (own_pub.as_bytes(), peer.as_bytes())
        } else {
            (peer.as_bytes(), own_pub.as_bytes())
        };
        let base = hash(&[LABEL, dh.as_bytes(), lo, hi]);
        let lo_to_hi = hash(&[&base, &[1]]);
        let hi_to_lo = hash(&[&base, &[2]]);
        Ok(if own_pub.as_bytes() == lo {
            Self {
                send: lo_to_hi,
                recv: hi_to_lo,
            }
        } else {
            Self {
                send: hi_to_lo,
                recv: lo_to_hi,
            }
        })
    }

    /// Keys given directly (tests, or a pre-shared setup).
    pub fn from_raw(send: [u8; 32], recv: [u8; 32]) -> Self {
        Self { send, recv }
    }

    /// The seed of the flow scheduler's hash: the same at both ends (so both directions
    /// of a flow take the same path), unknown to anyone without the keys (so nobody can
    /// aim flows at one path).
    pub fn flow_seed(&self) -> u64 {
        let (a, b) = if self.send <= self.recv {
            (&self.send, &self.recv)
        } else {
            (&self.recv, &self.send)
        };
        let h = hash(&[b"braid bond flow seed", a, b]);
        let mut w = [0u8; 8];
        w.copy_from_slice(&h[..8]);
        u64::from_le_bytes(w)
    }

    /// The keys of the other end of the link.
    pub fn reversed(&self) -> Self {
        Self {
            send: self.recv,
            recv: self.send,
        }
    }

    fn mac(key: &[u8; 32]) -> Blake2sMac<U16> {
        <Blake2sMac<U16> as KeyInit>::new(key.into())
    }

    /// Encodes and authenticates a probe with no padding.
    pub fn seal(&self, p: &Probe) -> [u8; PROBE_LEN] {
        let mut out = [0u8; PROBE_LEN];
        encode(p, &mut out[..HEADER_LEN]);
        let mut m = Self::mac(&self.send);
        m.update(&out[..HEADER_LEN]);
        out[HEADER_LEN..].copy_from_slice(&m.finalize().into_bytes());
        out
    }

    /// Checks and decodes a received probe.
    pub fn open(&self, msg: &[u8]) -> Result<Probe, ProbeError> {
        if !is_probe(msg) {
            return Err(ProbeError::NotAProbe);
        }
        if !(PROBE_LEN..=MAX_PROBE_LEN).contains(&msg.len()) {
            return Err(ProbeError::Length(msg.len()));
        }
        let (body, tag) = msg.split_at(msg.len() - MAC_LEN);
        let mut m = Self::mac(&self.recv);
        m.update(body);
        m.verify_slice(tag).map_err(|_| ProbeError::Mac)?;
        decode(body)
    }
}

fn encode(p: &Probe, out: &mut [u8]) {
    out[0..4].copy_from_slice(&PROBE_TYPE);
    out[4] = match p.kind {
        Kind::Request => 1,
        Kind::Reply => 2,
    };
    out[5] = VERSION;
    out[6] = scheduler_code(p.scheduler);
    out[7] = u8::from(p.configured);
    out[8..12].copy_from_slice(&p.path_key.to_le_bytes());
    out[12..16].copy_from_slice(&p.priority.to_le_bytes());
    out[16..20].copy_from_slice(&p.weight.to_le_bytes());
    out[20..24].copy_from_slice(&p.held_us.to_le_bytes());
    let words = [
        p.epoch,
        p.seq,
        p.ts_us,
        p.echo_epoch,
        p.echo_seq,
        p.rx_packets,
        p.rx_bytes,
        p.rate_cap_bps,
    ];
    for (i, w) in words.iter().enumerate() {
        out[24 + 8 * i..32 + 8 * i].copy_from_slice(&w.to_le_bytes());
    }
}

fn decode(b: &[u8]) -> Result<Probe, ProbeError> {
    // `b` has at least HEADER_LEN bytes (checked by the caller); read defensively anyway.
    let u32_at = |at: usize| {
        b.get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    };
    let u64_at = |at: usize| {
        b.get(at..at + 8)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    if b.len() < HEADER_LEN {
        return Err(ProbeError::Length(b.len() + MAC_LEN));
    }
    if b[5] != VERSION {
        return Err(ProbeError::Version(b[5]));
    }
    let kind = match b[4] {
        1 => Kind::Request,
        2 => Kind::Reply,
        k => return Err(ProbeError::Kind(k)),
    };
    Ok(Probe {
        kind,
        scheduler: scheduler_from_code(b[6]),
        configured: b[7] & 1 != 0,
        path_key: u32_at(8),
        priority: u32_at(12),
        weight: u32_at(16),
        held_us: u32_at(20),
        epoch: u64_at(24),
        seq: u64_at(32),
        ts_us: u64_at(40),
        echo_epoch: u64_at(48),
        echo_seq: u64_at(56),
        rx_packets: u64_at(64),
        rx_bytes: u64_at(72),
        rate_cap_bps: u64_at(80),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Probe {
        Probe {
            kind: Kind::Reply,
            scheduler: Some(Scheduler::Weighted),
            configured: true,
            path_key: 3,
            priority: 7,
            weight: 300,
            held_us: 12,
            epoch: 0x1122_3344_5566_7788,
            seq: 42,
            ts_us: 123_456,
            echo_epoch: 9,
            echo_seq: 41,
            rx_packets: 1000,
            rx_bytes: 1_400_000,
            rate_cap_bps: 100_000_000,
        }
    }

    fn pair() -> (ProbeKeys, ProbeKeys) {
        let a = StaticSecret::from([1u8; 32]);
        let b = StaticSecret::from([2u8; 32]);
        let ka = ProbeKeys::derive(&a, &PublicKey::from(&b)).unwrap();
        let kb = ProbeKeys::derive(&b, &PublicKey::from(&a)).unwrap();
        (ka, kb)
    }

    #[test]
    fn both_ends_derive_matching_directional_keys() {
        let (ka, kb) = pair();
        assert_eq!(ka.send, kb.recv);
        assert_eq!(ka.recv, kb.send);
        assert_ne!(ka.send, ka.recv);
    }

    #[test]
    fn round_trips_and_starts_with_the_probe_type() {
        let (ka, kb) = pair();
        let wire = ka.seal(&sample());
        assert!(is_probe(&wire));
        assert_eq!(wire.len(), PROBE_LEN);
        assert_eq!(kb.open(&wire), Ok(sample()));
    }

    #[test]
    fn any_flipped_bit_is_rejected() {
        let (ka, kb) = pair();
        let wire = ka.seal(&sample());
        for byte in 4..wire.len() {
            for bit in 0..8 {
                let mut w = wire;
                w[byte] ^= 1 << bit;
                assert!(kb.open(&w).is_err(), "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn reflected_and_third_party_messages_are_rejected() {
        let (ka, kb) = pair();
        let wire = ka.seal(&sample());
        // Reflected back to its sender.
        assert_eq!(ka.open(&wire), Err(ProbeError::Mac));
        // A third party that knows only public keys.
        let c = StaticSecret::from([3u8; 32]);
        let kc = ProbeKeys::derive(&c, &PublicKey::from(&StaticSecret::from([2u8; 32]))).unwrap();
        assert_eq!(kb.open(&kc.seal(&sample())), Err(ProbeError::Mac));
    }

    #[test]
    fn padding_is_covered_by_the_mac() {
        let (ka, kb) = pair();
        let wire = ka.seal(&sample());
        let mut padded = wire[..HEADER_LEN].to_vec();
        padded.extend_from_slice(&[0u8; 300]);
        let mut m = ProbeKeys::mac(&ka.send);
        m.update(&padded);
        padded.extend_from_slice(&m.finalize().into_bytes());
        assert_eq!(kb.open(&padded), Ok(sample()));
        let n = padded.len();
        padded[n - MAC_LEN - 1] ^= 1;
        assert_eq!(kb.open(&padded), Err(ProbeError::Mac));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let (_, kb) = pair();
        assert_eq!(kb.open(&[]), Err(ProbeError::NotAProbe));
        assert_eq!(kb.open(&[4, 0, 0, 0, 1]), Err(ProbeError::NotAProbe));
        assert_eq!(kb.open(&PROBE_TYPE), Err(ProbeError::Length(4)));
        assert_eq!(
            kb.open(&[0x62; MAX_PROBE_LEN + 1][..]),
            Err(ProbeError::NotAProbe)
        );
        let mut big = vec![0u8; MAX_PROBE_LEN + 1];
        big[0] = 0x62;
        assert_eq!(kb.open(&big), Err(ProbeError::Length(MAX_PROBE_LEN + 1)));
    }

    #[test]
    fn a_low_order_peer_key_is_refused() {
        let a = StaticSecret::from([1u8; 32]);
        assert_eq!(
            ProbeKeys::derive(&a, &PublicKey::from([0u8; 32])).unwrap_err(),
            KeyError::LowOrder
        );
    }
}
