//! Reading a TCP burst from the TUN device in segments that fit the underlay.
//!
//! With TUN offloads the kernel hands braid a TCP burst of up to 64 KiB (TSO) and braid cuts
//! it into segments of the inner TCP's MSS (`tun_batch`). When the underlay is narrower than
//! the link ([`crate::send`] learned its MTU from the kernel), each of those segments becomes
//! a datagram the kernel must fragment, and fragments cost: measured on the lab's veth pair,
//! one TCP stream over a 1300-byte underlay moved a fifth of what it moves over 1500, and about
//! as much as over 1500 once its segments fit (BENCHMARKS.md). A lower link MTU cannot fit
//! them on underlays below 1340 bytes (IPv4; 1360 for IPv6), as a link carrying IPv6 needs
//! an MTU of at least 1280.
//!
//! So the burst is cut smaller instead: the virtio header's segment size is lowered so that
//! each segment, encrypted, fits the path MTU, and tun-rs's `gso_split` (the split its
//! `recv_multiple` does, ported from wireguard-go) cuts the burst with sequence numbers, IPv4
//! IDs, flags and checksums as the kernel's TSO would. Segments shorter than the MSS are
//! ordinary TCP: the receiver accepts any size up to the MSS it announced (RFC 9293, section
//! 3.7.1). Everything else is read as `recv_multiple` reads it: packets that came whole are
//! left whole (the kernel fragments those above the MTU), and UDP bursts (USO) keep the
//! datagram size their application chose.

use std::io;
use tun_rs::{
    SyncDevice, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_LEN,
    VirtioNetHdr, gso_split,
};

/// `virtio_net_hdr.gso_type` of a packet that is not a burst (linux/virtio_net.h).
const GSO_NONE: u8 = 0;
/// `virtio_net_hdr.gso_type` bit: the TCP burst carries ECN (CWR on its first segment).
const GSO_ECN: u8 = 0x80;
/// `virtio_net_hdr.flags`: the transport checksum is partial (`csum_start`, `csum_offset`).
const F_NEEDS_CSUM: u8 = 1;
/// Segments are never cut below this much payload: IPv4's least MSS (RFC 9293, 3.7.1).
const MIN_SEGMENT: usize = 536;

/// Reads once from `tun` (a device with offloads) into `raw` and splits what came into
/// `bufs`, as `SyncDevice::recv_multiple` does, except that a TCP burst is cut into segments
/// of at most `max_packet` IP bytes. Returns how many packets are in `bufs` (their lengths in
/// `sizes`).
pub(crate) fn read_fitting(
    tun: &SyncDevice,
    raw: &mut [u8],
    bufs: &mut [&mut [u8]],
    sizes: &mut [usize],
    max_packet: usize,
) -> io::Result<usize> {
    let len = tun.recv(raw)?;
    split_fitting(
        raw.get_mut(..len).unwrap_or_default(),
        bufs,
        sizes,
        max_packet,
    )
}

/// [`read_fitting`] on what one read brought: a virtio header, then the packet or burst.
fn split_fitting(
    read: &mut [u8],
    bufs: &mut [&mut [u8]],
    sizes: &mut [usize],
    max_packet: usize,
) -> io::Result<usize> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    if read.len() <= VIRTIO_NET_HDR_LEN {
        return Err(invalid("TUN read shorter than its virtio header"));
    }
    let (head, packet) = read.split_at_mut(VIRTIO_NET_HDR_LEN);
    let mut hdr = VirtioNetHdr::decode(head)?;
    let (csum_start, csum_at) = (
        usize::from(hdr.csum_start),
        usize::from(hdr.csum_start) + usize::from(hdr.csum_offset),
    );
    if hdr.gso_type == GSO_NONE {
        if hdr.flags & F_NEEDS_CSUM != 0 {
            if csum_at + 2 > packet.len() {
                return Err(invalid("checksum field past the packet"));
            }
            complete_checksum(packet, csum_start, csum_at);
        }
        let (Some(out), Some(size)) = (bufs.first_mut(), sizes.first_mut()) else {
            return Err(invalid("no buffer to read into"));
        };
        let out = out
            .get_mut(..packet.len())
            .ok_or_else(|| invalid("packet larger than its buffer"))?;
        out.copy_from_slice(packet);
        *size = packet.len();
        return Ok(1);
    }
    let is_v6 = match packet.first().map(|b| b >> 4) {
        Some(4) => false,
        Some(6) => true,
        _ => return Err(invalid("burst is neither IPv4 nor IPv6")),
    };
    let tcp =
        [VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6].contains(&(hdr.gso_type & !GSO_ECN));
    // As tun-rs (after wireguard-go): the header length from the transport header, not
    // from the kernel's hdr_len (which may cover the whole first packet when forwarding).
    let transport_len = if tcp {
        let offset = packet
            .get(csum_start + 12)
            .ok_or_else(|| invalid("TCP header past the packet"))?;
        usize::from(offset >> 4) * 4
    } else {
        8
    };
    if tcp && !(20..=60).contains(&transport_len) {
        return Err(invalid("TCP header length out of range"));
    }
    let hdr_len = csum_start + transport_len;
    if hdr_len > packet.len() || csum_at + 2 > packet.len() {
        return Err(invalid("burst shorter than its headers"));
    }
    hdr.hdr_len = u16::try_from(hdr_len).map_err(|_| invalid("header length overflow"))?;
    if tcp {
        hdr.gso_size = fitting_segment(hdr.gso_size, hdr_len, max_packet);
    }
    gso_split(packet, hdr, bufs, sizes, 0, is_v6)
}

/// The segment size for a TCP burst: `mss`, or less so that a segment (headers
/// `hdr_len` bytes) is at most `max_packet` bytes, never below [`MIN_SEGMENT`].
fn fitting_segment(mss: u16, hdr_len: usize, max_packet: usize) -> u16 {
    let room = max_packet.saturating_sub(hdr_len).max(MIN_SEGMENT);
    mss.min(u16::try_from(room).unwrap_or(u16::MAX))
}

/// Finishes a partial transport checksum (`NEEDS_CSUM`): the field holds the pseudo-header
/// sum; the checksum covers the transport header and payload from `start`.
fn complete_checksum(packet: &mut [u8], start: usize, at: usize) {
    let initial = u16::from_be_bytes([packet[at], packet[at + 1]]);
    packet[at..at + 2].fill(0);
    let sum = !tun_rs::checksum(&packet[start..], u64::from(initial));
    packet[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A virtio header and an IPv4 TCP burst of `payload` bytes (MSS `mss`), as the kernel
    /// hands it over: partial checksum (pseudo-header sum in the field).
    fn ipv4_burst(payload: usize, mss: u16) -> Vec<u8> {
        let total = 20 + 20 + payload;
        let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip.extend([10, 0, 0, 1, 10, 0, 0, 2]);
        let ip_sum = !tun_rs::checksum(&ip, 0);
        ip[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        let mut tcp = vec![0u8; 20];
        tcp[..4].copy_from_slice(&[0x9c, 0x40, 0x14, 0x51]); // ports 40000 -> 5201
        tcp[4..8].copy_from_slice(&1000u32.to_be_bytes()); // sequence number
        tcp[12] = 5 << 4; // data offset: 20 bytes
        tcp[13] = 0x18; // PSH, ACK
        let mut packet = [ip, tcp, (0..payload).map(|i| i as u8).collect()].concat();
        // The pseudo-header sum, as the kernel leaves it for the device to finish.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&packet[12..20]);
        pseudo.extend([0, 6]);
        pseudo.extend(((20 + payload) as u16).to_be_bytes());
        let partial = tun_rs::checksum(&pseudo, 0);
        packet[36..38].copy_from_slice(&partial.to_be_bytes());
        let hdr = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: 40,
            gso_size: mss,
            csum_start: 20,
            csum_offset: 16,
        };
        let mut read = vec![0u8; VIRTIO_NET_HDR_LEN];
        hdr.encode(&mut read).unwrap();
        read.extend(packet);
        read
    }

    /// Whether an IPv4 TCP segment's header and TCP checksums verify.
    fn checksums_verify(segment: &[u8]) -> bool {
        let ip_ok = tun_rs::checksum(&segment[..20], 0) == 0xffff;
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&segment[12..20]);
        pseudo.extend([0, 6]);
        pseudo.extend(((segment.len() - 20) as u16).to_be_bytes());
        let tcp_ok =
            tun_rs::checksum(&segment[20..], u64::from(tun_rs::checksum(&pseudo, 0))) == 0xffff;
        ip_ok && tcp_ok
    }

    fn split(read: &mut [u8], max_packet: usize) -> Vec<Vec<u8>> {
        let mut storage = vec![vec![0u8; 2048]; 64];
        let mut bufs: Vec<&mut [u8]> = storage.iter_mut().map(|b| b.as_mut_slice()).collect();
        let mut sizes = vec![0usize; 64];
        let n = split_fitting(read, &mut bufs, &mut sizes, max_packet).unwrap();
        (0..n).map(|i| bufs[i][..sizes[i]].to_vec()).collect()
    }

    #[test]
    fn a_tcp_burst_is_cut_into_segments_that_fit_with_valid_headers() {
        let payload = 10 * 1380;
        let segments = split(&mut ipv4_burst(payload, 1380), 1232);
        // 1232 - 40 bytes of headers: 1192 bytes of payload a segment.
        assert_eq!(segments.len(), payload.div_ceil(1192));
        let mut seq = 1000u32;
        let mut data = Vec::new();
        for (i, s) in segments.iter().enumerate() {
            assert!(s.len() <= 1232, "segment {i}: {} bytes", s.len());
            assert!(checksums_verify(s), "segment {i}: checksums");
            assert_eq!(u32::from_be_bytes(s[24..28].try_into().unwrap()), seq);
            assert_eq!(u16::from_be_bytes([s[2], s[3]]) as usize, s.len());
            let last = i + 1 == segments.len();
            assert_eq!(s[33] & 0x08 != 0, last, "PSH only on the last segment");
            seq += (s.len() - 40) as u32;
            data.extend_from_slice(&s[40..]);
        }
        let sent: Vec<u8> = (0..payload).map(|i| i as u8).collect();
        assert_eq!(data, sent, "the payload, in order, once");
    }

    #[test]
    fn bursts_that_fit_keep_their_mss_and_the_floor_holds() {
        let segments = split(&mut ipv4_burst(3 * 1380, 1380), 1420);
        assert_eq!(segments.len(), 3);
        assert!(
            segments
                .iter()
                .all(|s| s.len() == 1420 && checksums_verify(s))
        );
        assert_eq!(fitting_segment(1380, 40, 300), MIN_SEGMENT as u16);
        assert_eq!(fitting_segment(1380, 52, 1232), 1180);
        assert_eq!(fitting_segment(500, 52, 1232), 500);
    }

    #[test]
    fn a_whole_packet_is_left_whole_with_its_checksum_finished() {
        let mut read = ipv4_burst(1380, 1380);
        read[1] = GSO_NONE; // gso_type: not a burst
        let segments = split(&mut read, 1232);
        assert_eq!(segments.len(), 1);
        assert_eq!(segments[0].len(), 1420, "not cut: the kernel fragments it");
        assert!(checksums_verify(&segments[0]));
    }

    #[test]
    fn malformed_reads_are_errors_not_panics() {
        let mut buffers = vec![vec![0u8; 2048]; 4];
        let mut bufs: Vec<&mut [u8]> = buffers.iter_mut().map(|b| b.as_mut_slice()).collect();
        let mut sizes = [0usize; 4];
        for len in [0, VIRTIO_NET_HDR_LEN, VIRTIO_NET_HDR_LEN + 30] {
            let mut read = ipv4_burst(100, 1380);
            read.truncate(len);
            assert!(split_fitting(&mut read, &mut bufs, &mut sizes, 1232).is_err());
        }
        let mut read = ipv4_burst(100, 1380);
        read[VIRTIO_NET_HDR_LEN + 32] = 0xf0; // TCP data offset 60 > what is there
        read.truncate(VIRTIO_NET_HDR_LEN + 60);
        assert!(split_fitting(&mut read, &mut bufs, &mut sizes, 1232).is_err());
    }
}
