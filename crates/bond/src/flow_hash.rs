//! The flow scheduler's hash: a symmetric hash of an IP packet's 5-tuple, and
//! rendezvous (highest-random-weight) selection of a path for it.
//!
//! *Symmetric*: the two endpoints (address, port) are put in a fixed order before
//! hashing, so a flow and its reply hash the same on both ends of a link.
//! *Ports*: TCP, UDP, UDP-Lite, SCTP and DCCP (unfragmented). Other protocols and
//! fragments hash by addresses and protocol only, so all fragments of a datagram stay
//! together. IPv6 extension headers (hop-by-hop, routing, destination options,
//! fragment, AH) are walked. Anything that does not parse hashes to the seed alone: it
//! all goes one way, which is safe.
//! *Rendezvous*: each path gets a score from (flow hash, path key); the highest wins.
//! Removing a path moves only the flows that were on it; adding one moves about 1/N.

const TCP: u8 = 6;
const UDP: u8 = 17;
const DCCP: u8 = 33;
const SCTP: u8 = 132;
const UDPLITE: u8 = 136;

const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AH: u8 = 51;
const DEST_OPTS: u8 = 60;

/// How many IPv6 extension headers are walked before giving up on ports.
const MAX_EXT_HEADERS: usize = 8;

/// A flow's identity with its endpoints in canonical order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    /// The IP protocol number (6 TCP, 17 UDP, ...).
    pub protocol: u8,
    /// (address as 16 bytes, IPv4 mapped, port or 0), lower endpoint first.
    pub lo: ([u8; 16], u16),
    /// The higher endpoint, in the same form.
    pub hi: ([u8; 16], u16),
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, TCP | UDP | DCCP | SCTP | UDPLITE)
}

fn ports(l4: &[u8]) -> Option<(u16, u16)> {
    Some((
        u16::from_be_bytes([*l4.first()?, *l4.get(1)?]),
        u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]),
    ))
}

fn mapped_v4(a: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[10] = 0xff;
    out[11] = 0xff;
    out[12..16].copy_from_slice(&a[..4]);
    out
}

impl FlowKey {
    /// Parses an IPv4 or IPv6 packet; `None` when it is neither or too short.
    pub fn parse(packet: &[u8]) -> Option<Self> {
        let version = packet.first()? >> 4;
        let (proto, src, dst, l4) = match version {
            4 => {
                let ihl = usize::from(packet[0] & 0x0f) * 4;
                if ihl < 20 || packet.len() < ihl {
                    return None;
                }
                let frag = u16::from_be_bytes([packet[6], packet[7]]);
                let fragmented = frag & 0x3fff != 0;
                let proto = packet[9];
                let l4 = if fragmented {
                    None
                } else {
                    Some(&packet[ihl..])
                };
                (
                    proto,
                    mapped_v4(&packet[12..16]),
                    mapped_v4(&packet[16..20]),
                    l4,
                )
            }
            6 => {
                if packet.len() < 40 {
                    return None;
                }
                let mut src = [0u8; 16];
                let mut dst = [0u8; 16];
                src.copy_from_slice(&packet[8..24]);
                dst.copy_from_slice(&packet[24..40]);
                let (proto, l4) = walk_v6(packet[6], &packet[40..]);
                (proto, src, dst, l4)
            }
            _ => return None,
        };
        let (sp, dp) = match l4 {
            Some(l4) if has_ports(proto) => ports(l4).unwrap_or((0, 0)),
            _ => (0, 0),
        };
        let a = (src, sp);
        let b = (dst, dp);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        Some(Self {
            protocol: proto,
            lo,
            hi,
        })
    }

    /// The keyed hash of this flow.
    pub fn hash(&self, seed: u64) -> u64 {
        let mut h = mix(seed ^ u64::from(self.protocol));
        for (addr, port) in [self.lo, self.hi] {
            h = mix(h ^ u64::from_le_bytes(word(&addr, 0)));
            h = mix(h ^ u64::from_le_bytes(word(&addr, 8)));
            h = mix(h ^ u64::from(port));
        }
        h
    }
}

fn word(a: &[u8; 16], at: usize) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&a[at..at + 8]);
    w
}

/// Follows IPv6 extension headers; returns the upper-layer protocol and, unless the
/// packet is a fragment or the chain is cut short, its payload.
fn walk_v6(mut next: u8, mut rest: &[u8]) -> (u8, Option<&[u8]>) {
    for _ in 0..MAX_EXT_HEADERS {
        let len = match next {
            HOP_BY_HOP | ROUTING | DEST_OPTS => match rest.get(1) {
                Some(&l) => (usize::from(l) + 1) * 8,
                None => return (next, None),
            },
            AH => match rest.get(1) {
                Some(&l) => (usize::from(l) + 2) * 4,
                None => return (next, None),
            },
            FRAGMENT => {
                let (Some(&nh), Some(&b2), Some(&b3)) = (rest.first(), rest.get(2), rest.get(3))
                else {
                    return (next, None);
                };
                // Offset or more-fragments set: not every fragment has the ports.
                if u16::from_be_bytes([b2, b3]) & 0xfff9 != 0 {
                    return (nh, None);
                }
                8
            }
            _ => return (next, Some(rest)),
        };
        let (Some(&nh), Some(after)) = (rest.first(), rest.get(len..)) else {
            return (next, None);
        };
        next = nh;
        rest = after;
    }
    (next, None)
}

/// The flow hash of a packet: [`FlowKey::hash`], or the mixed seed when it does not parse.
pub fn flow_hash(packet: &[u8], seed: u64) -> u64 {
    match FlowKey::parse(packet) {
        Some(k) => k.hash(seed),
        None => mix(seed),
    }
}

/// A 64-bit finalizer (the xor-shift-multiply construction): every input bit affects
/// every output bit.
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 32;
    x = x.wrapping_mul(0xd6e8_feb8_6659_fd93);
    x ^= x >> 32;
    x = x.wrapping_mul(0xd6e8_feb8_6659_fd93);
    x ^= x >> 32;
    x
}

/// The rendezvous score of a path for a flow. With `weight` the choice is weighted:
/// score = weight / -ln(u) with u uniform in (0, 1] from the hash, so a path wins a
/// share of flows proportional to its weight.
pub fn rendezvous_score(flow: u64, path_key: u32, weight: f64) -> f64 {
    let h = mix(flow ^ mix(u64::from(path_key).wrapping_add(0x9e37_79b9_7f4a_7c15)));
    // 53 random bits, shifted into (0, 1].
    let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let l = -u.ln();
    if l <= 0.0 { f64::INFINITY } else { weight / l }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn v4_udp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[9] = UDP;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&sp.to_be_bytes());
        p[22..24].copy_from_slice(&dp.to_be_bytes());
        p
    }

    fn v6(src: u16, dst: u16, next: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[6] = next;
        p[8..10].copy_from_slice(&[0x20, 0x01]);
        p[22..24].copy_from_slice(&src.to_be_bytes());
        p[24..26].copy_from_slice(&[0x20, 0x01]);
        p[38..40].copy_from_slice(&dst.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn both_directions_hash_the_same() {
        let a = v4_udp([192, 0, 2, 1], 5000, [198, 51, 100, 7], 53);
        let b = v4_udp([198, 51, 100, 7], 53, [192, 0, 2, 1], 5000);
        assert_eq!(flow_hash(&a, 7), flow_hash(&b, 7));
        let c = v4_udp([192, 0, 2, 1], 5001, [198, 51, 100, 7], 53);
        assert_ne!(flow_hash(&a, 7), flow_hash(&c, 7));
        // The seed changes the mapping.
        assert_ne!(flow_hash(&a, 7), flow_hash(&a, 8));
    }

    #[test]
    fn ipv6_with_extension_headers_finds_the_ports() {
        let tcp = [0x13, 0x88, 0x00, 0x50, 0, 0, 0, 0];
        let plain = v6(1, 2, TCP, &tcp);
        // Hop-by-hop (8 bytes) then TCP.
        let mut ext = vec![TCP, 0, 0, 0, 0, 0, 0, 0];
        ext.extend_from_slice(&tcp);
        let with_ext = v6(1, 2, HOP_BY_HOP, &ext);
        let kp = FlowKey::parse(&plain).unwrap();
        let ke = FlowKey::parse(&with_ext).unwrap();
        assert_eq!(kp, ke);
        assert_eq!(kp.protocol, TCP);
        assert!(kp.lo.1 == 5000 || kp.hi.1 == 5000);
        let reply = v6(2, 1, TCP, &[0x00, 0x50, 0x13, 0x88, 0, 0, 0, 0]);
        assert_eq!(flow_hash(&plain, 1), flow_hash(&reply, 1));
    }

    #[test]
    fn fragments_hash_by_addresses_only() {
        let mut first = v4_udp([192, 0, 2, 1], 5000, [198, 51, 100, 7], 53);
        first[6] = 0x20; // more fragments
        let mut later = v4_udp([192, 0, 2, 1], 0, [198, 51, 100, 7], 0);
        later[7] = 0x10; // offset, no ports in it
        later[20..24].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(flow_hash(&first, 3), flow_hash(&later, 3));
    }

    #[test]
    fn garbage_and_truncated_packets_do_not_panic() {
        for p in [
            &[][..],
            &[0x45][..],
            &[0x4f, 0, 0, 0][..],
            &[0x60; 39][..],
            &[0x12, 0x34][..],
        ] {
            let _ = flow_hash(p, 1);
        }
        // IPv6 with a truncated extension header.
        let p = v6(1, 2, ROUTING, &[TCP]);
        assert_eq!(FlowKey::parse(&p).map(|k| k.lo.1), Some(0));
    }

    #[test]
    fn rendezvous_moves_few_flows_when_a_path_is_added() {
        let pick = |flow: u64, keys: &[u32]| {
            *keys
                .iter()
                .max_by(|a, b| {
                    rendezvous_score(flow, **a, 1.0).total_cmp(&rendezvous_score(flow, **b, 1.0))
                })
                .unwrap()
        };
        let mut counts = [0usize; 4];
        let mut moved = 0;
        let n = 20_000;
        for i in 0..n {
            let f = mix(i);
            let before = pick(f, &[0, 1, 2]);
            let after = pick(f, &[0, 1, 2, 3]);
            counts[after as usize] += 1;
            if before != after {
                assert_eq!(after, 3, "a flow moved between old paths");
                moved += 1;
            }
        }
        // About a quarter move, and all of them to the new path.
        assert!((4_500..5_500).contains(&moved), "{moved}");
        for c in counts {
            assert!((4_500..5_500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn weighted_rendezvous_shares_flows_by_weight() {
        let mut on_heavy = 0;
        let n = 20_000;
        for i in 0..n {
            let f = mix(i ^ 0xabc);
            if rendezvous_score(f, 0, 3.0) > rendezvous_score(f, 1, 1.0) {
                on_heavy += 1;
            }
        }
        assert!((14_500..15_500).contains(&on_heavy), "{on_heavy}");
    }
}
