//! The UDP GSO queue: encrypted packets are written straight into one buffer, back to back,
//! and leave in one `sendmsg` with `UDP_SEGMENT`. The kernel cuts the buffer every
//! `segment` bytes, so every packet but the last must have the same length.

use crate::buffer::PacketBuffer;

/// The most one GSO send carries (under the 64 KiB limit of one UDP datagram with headers).
pub(crate) const MAX_BYTES: usize = 65000;
/// Room past [`MAX_BYTES`] for the packet that does not fit any more (it is moved out).
const SLACK: usize = 4096;

pub(crate) struct GsoQueue {
    buffer: PacketBuffer,
    len: usize,
    segment: usize,
    count: usize,
}

impl GsoQueue {
    pub(crate) fn new() -> std::io::Result<Self> {
        Ok(Self {
            buffer: PacketBuffer::new(MAX_BYTES + SLACK)?,
            len: 0,
            segment: 0,
            count: 0,
        })
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether a packet of `len` bytes may join the queue (else flush first).
    pub(crate) fn fits(&self, len: usize, max_segments: usize) -> bool {
        self.count == 0
            || (len <= self.segment && self.len + len <= MAX_BYTES && self.count < max_segments)
    }

    /// Whether a packet of up to `room` bytes can be written at the tail now: a segment
    /// is free and the bytes fit. Whether it can stay is [`GsoQueue::can_keep`] on its
    /// actual length.
    pub(crate) fn has_room(&self, room: usize, max_segments: usize) -> bool {
        self.count == 0 || (self.count < max_segments && self.len + room <= MAX_BYTES)
    }

    /// The free space after the queued packets, for the next packet to be written into.
    pub(crate) fn tail(&mut self) -> &mut [u8] {
        &mut self.buffer[self.len..]
    }

    /// Whether a packet of `len` bytes written at [`GsoQueue::tail`] can be kept as part of
    /// this queue (same size as the others, or shorter as the last one).
    pub(crate) fn can_keep(&self, len: usize) -> bool {
        self.count == 0 || (len <= self.segment && self.len + len <= MAX_BYTES)
    }

    /// Keeps the `len` bytes written at the tail; true when the queue must be sent now (a
    /// shorter packet ends it).
    pub(crate) fn commit(&mut self, len: usize) -> bool {
        if self.count == 0 {
            self.segment = len;
        }
        self.len += len;
        self.count += 1;
        len < self.segment
    }

    /// Empties the queue: the bytes, the segment size when there is more than one packet,
    /// and the number of packets.
    pub(crate) fn take(&mut self) -> Option<(&[u8], Option<usize>, usize)> {
        if self.count == 0 {
            return None;
        }
        let (len, count) = (self.len, self.count);
        self.len = 0;
        self.count = 0;
        Some((
            &self.buffer[..len],
            (count > 1).then_some(self.segment),
            count,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(q: &mut GsoQueue, len: usize, fill: u8) -> bool {
        q.tail()[..len].fill(fill);
        q.commit(len)
    }

    #[test]
    fn equal_packets_share_one_send_and_a_short_one_ends_it() {
        let mut q = GsoQueue::new().unwrap();
        assert!(q.take().is_none());
        assert!(!push(&mut q, 100, 1));
        assert!(q.fits(100, 64));
        assert!(!push(&mut q, 100, 2));
        assert!(!q.fits(101, 64), "a longer packet cannot follow");
        assert!(q.fits(40, 64));
        assert!(push(&mut q, 40, 3), "a shorter packet is the last");
        let (bytes, segment, count) = q.take().unwrap();
        assert_eq!((bytes.len(), segment, count), (240, Some(100), 3));
        assert_eq!((bytes[0], bytes[100], bytes[200]), (1, 2, 3));
        assert!(q.take().is_none());
    }

    #[test]
    fn a_single_packet_has_no_segment_size_and_limits_hold() {
        let mut q = GsoQueue::new().unwrap();
        push(&mut q, 1452, 0);
        assert!(!q.fits(1452, 1), "max segments reached");
        let (_, segment, count) = q.take().unwrap();
        assert_eq!((segment, count), (None, 1));
        for _ in 0..44 {
            push(&mut q, 1452, 0);
        }
        assert!(
            !q.fits(1452, 64),
            "{} bytes would pass MAX_BYTES",
            45 * 1452
        );
        assert!(!q.can_keep(1452));
        assert!(q.tail().len() >= 1452);
    }
}
