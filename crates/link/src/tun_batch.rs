//! Batched TUN I/O with offloads (`IFF_VNET_HDR`, TSO/USO): one `read` yields up to 64 KiB
//! that the kernel did not segment, split here into MTU-sized packets ([`TunReader`]); the
//! packets decrypted from one batch of datagrams are coalesced back into large TCP/UDP
//! segments and written with few `write` calls ([`TunWriter`], GRO on write).
//!
//! Both work the same on a device without offloads (one packet per call): tun-rs then reads
//! one packet and writes each packet on its own. Buffers are allocated on first use, so an
//! idle link holds none.

use crate::buffer::PacketBuffer;
use std::io;
use tun_rs::{GROTable, IDEAL_BATCH_SIZE, SyncDevice, VIRTIO_NET_HDR_LEN};

/// The largest packet GRO builds on write (an IP packet's limit).
const COALESCED_MAX: usize = 65535;

/// Room for one packet of a batch: the MTU, rounded up, with space to spare.
fn segment_room(mtu: u32) -> usize {
    (mtu.max(1500) as usize + 64).next_multiple_of(64)
}

/// Reads from the TUN device and splits what the kernel hands over into packets.
///
/// Its buffers are mapped on the first read and only the pages packets touch become
/// resident: a link that only ever sees a few small packets (a router solicitation) holds
/// two pages, not the 270 KiB a full batch can use.
pub(crate) struct TunReader {
    room: usize,
    /// The raw read (virtio header plus up to 64 KiB), then the packets split from it,
    /// `room` bytes apart.
    buffers: Option<(PacketBuffer, PacketBuffer)>,
    sizes: [usize; IDEAL_BATCH_SIZE],
}

impl TunReader {
    pub(crate) fn new(mtu: u32) -> Self {
        Self {
            room: segment_room(mtu),
            buffers: None,
            sizes: [0; IDEAL_BATCH_SIZE],
        }
    }

    /// Reads once: the number of packets now available through [`TunReader::packet`].
    /// With `max_packet` (the underlay is narrower than the link, see `reseg`), a TCP burst
    /// is cut into segments of at most that many bytes.
    pub(crate) fn read(
        &mut self,
        tun: &SyncDevice,
        max_packet: Option<usize>,
    ) -> io::Result<usize> {
        if self.buffers.is_none() {
            self.buffers = Some((
                PacketBuffer::new(VIRTIO_NET_HDR_LEN + 65535)?,
                PacketBuffer::new(self.room * IDEAL_BATCH_SIZE)?,
            ));
        }
        let Some((raw, segments)) = self.buffers.as_mut() else {
            return Ok(0);
        };
        let mut chunks = segments.chunks_mut(self.room);
        let mut bufs: [&mut [u8]; IDEAL_BATCH_SIZE] =
            std::array::from_fn(|_| chunks.next().unwrap_or_default());
        match max_packet {
            Some(max) if tun.tcp_gso() => {
                crate::reseg::read_fitting(tun, raw, &mut bufs, &mut self.sizes, max)
            }
            _ => tun.recv_multiple(raw, &mut bufs, &mut self.sizes, 0),
        }
    }

    pub(crate) fn packet(&self, i: usize) -> &[u8] {
        match &self.buffers {
            Some((_, segments)) => &segments[i * self.room..i * self.room + self.sizes[i]],
            None => &[],
        }
    }
}

/// Collects decrypted packets and writes them to the TUN device in one coalesced batch.
pub(crate) struct TunWriter {
    room: usize,
    /// Each buffer holds a virtio header's room, then one packet; coalescing grows the first
    /// packet of a flow in place.
    buffers: Vec<Vec<u8>>,
    count: usize,
    gro: Option<Box<GROTable>>,
}

impl TunWriter {
    pub(crate) fn new(mtu: u32) -> Self {
        Self {
            room: segment_room(mtu),
            buffers: Vec::new(),
            count: 0,
            gro: None,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.count == IDEAL_BATCH_SIZE
    }

    /// The space for the next packet (at least `len` bytes); [`TunWriter::commit`] keeps it.
    pub(crate) fn slot(&mut self, len: usize) -> &mut [u8] {
        if self.buffers.len() <= self.count {
            // tun-rs coalesces a flow into its first packet's buffer only when that buffer
            // can hold a whole 64 KiB segment (it never reallocates): reserve it. The
            // memory is touched only as far as packets fill it.
            self.buffers
                .push(Vec::with_capacity(2 * VIRTIO_NET_HDR_LEN + COALESCED_MAX));
        }
        let buffer = &mut self.buffers[self.count];
        buffer.clear();
        buffer.resize(VIRTIO_NET_HDR_LEN + len.max(self.room), 0);
        &mut buffer[VIRTIO_NET_HDR_LEN..]
    }

    /// Keeps the first `len` bytes of the last slot as a packet to write.
    pub(crate) fn commit(&mut self, len: usize) {
        self.buffers[self.count].truncate(VIRTIO_NET_HDR_LEN + len);
        self.count += 1;
    }

    /// Writes the collected packets; returns how many there were.
    pub(crate) fn flush(&mut self, tun: &SyncDevice) -> io::Result<usize> {
        let count = std::mem::take(&mut self.count);
        if count == 0 {
            return Ok(0);
        }
        let gro = self.gro.get_or_insert_with(Box::default);
        tun.send_multiple(gro, &mut self.buffers[..count], VIRTIO_NET_HDR_LEN)?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_room_covers_the_mtu() {
        assert_eq!(segment_room(1420), 1600);
        assert!(segment_room(9000) >= 9000);
        assert_eq!(segment_room(1280), 1600);
    }

    #[test]
    fn writer_slots_keep_what_was_committed() {
        let mut w = TunWriter::new(1420);
        let slot = w.slot(100);
        assert!(slot.len() >= 100);
        slot[..3].copy_from_slice(&[0x45, 0, 1]);
        w.commit(3);
        assert_eq!(w.count, 1);
        assert_eq!(&w.buffers[0][VIRTIO_NET_HDR_LEN..], &[0x45, 0, 1]);
        assert!(!w.is_full());
    }
}
