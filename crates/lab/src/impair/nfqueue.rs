//! The kernel's NFQUEUE over netlink (nfnetlink_queue, `linux/netfilter/nfnetlink_queue.h`),
//! just what the forwarder needs: bind queues, receive packet ids and lengths, send
//! verdicts in batches (several netlink messages in one datagram).
//!
//! Each queue copies at most [`COPY_RANGE`] bytes of a packet; its full length comes in
//! `NFQA_CAP_LEN`. Without `NFQA_CFG_F_GSO` the kernel cuts GSO packets into wire-sized
//! segments before queueing them.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_PACKET: u8 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_PAYLOAD: u16 = 10;
const NFQA_CAP_LEN: u16 = 13;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
/// Bytes of each packet copied to userspace (only its length is used).
pub(super) const COPY_RANGE: u32 = 64;
/// The receive buffer asked for: packets waiting for the forwarder wait here.
const RCVBUF: i32 = 64 << 20;
/// Verdicts are sent when this many bytes of them are waiting.
const VERDICT_BATCH: usize = 32 * 1024;

/// The verdict `NF_DROP`.
pub(super) const DROP: u32 = 0;
/// The verdict `NF_ACCEPT`.
pub(super) const ACCEPT: u32 = 1;

/// A queued packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Packet {
    /// The queue it came from.
    pub queue: u16,
    /// The kernel's id for the verdict.
    pub id: u32,
    /// Its length in bytes (IP header on).
    pub len: usize,
}

/// What one netlink message was.
#[derive(Debug, PartialEq, Eq)]
enum Message {
    Packet(Packet),
    /// An acknowledgement (`error` 0) or an error for the request with `seq`.
    Ack {
        seq: u32,
        error: i32,
    },
    Other,
}

/// A netlink socket bound to NFQUEUE queues.
pub(super) struct NfQueue {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
    verdicts: Vec<u8>,
    /// Packets that came while waiting for an acknowledgement.
    early: Vec<Packet>,
    /// Errors the kernel reported for verdicts, and receive overruns.
    pub errors: u64,
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn put_attr(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// One nfnetlink message of queue subsystem type `kind` for `queue`, with `attrs`.
fn message(kind: u16, flags: u16, seq: u32, queue: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut out = vec![0u8; NLMSG_HDRLEN];
    out.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
    out.extend_from_slice(&queue.to_be_bytes());
    for (t, data) in attrs {
        put_attr(&mut out, *t, data);
    }
    let len = out.len() as u32;
    out[0..4].copy_from_slice(&len.to_ne_bytes());
    out[4..6].copy_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | kind).to_ne_bytes());
    out[6..8].copy_from_slice(&flags.to_ne_bytes());
    out[8..12].copy_from_slice(&seq.to_ne_bytes());
    out
}

/// The verdict message for packet `id` of `queue`.
fn verdict_message(queue: u16, id: u32, verdict: u32) -> Vec<u8> {
    let mut hdr = [0u8; 8];
    hdr[0..4].copy_from_slice(&verdict.to_be_bytes());
    hdr[4..8].copy_from_slice(&id.to_be_bytes());
    message(
        NFQNL_MSG_VERDICT,
        libc::NLM_F_REQUEST as u16,
        0,
        queue,
        &[(NFQA_VERDICT_HDR, &hdr)],
    )
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses the netlink messages of one datagram; malformed ones end the parse.
fn parse(datagram: &[u8], out: &mut Vec<Message>) {
    let mut at = 0;
    while at + NLMSG_HDRLEN <= datagram.len() {
        let (Some(len), Some(kind), Some(seq)) = (
            u32_at(datagram, at),
            u16_at(datagram, at + 4),
            u32_at(datagram, at + 8),
        ) else {
            return;
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || at + len > datagram.len() {
            return;
        }
        let msg = &datagram[at..at + len];
        out.push(if kind == NLMSG_ERROR {
            let error = u32_at(msg, NLMSG_HDRLEN).map_or(0, |e| e as i32);
            let seq = u32_at(msg, NLMSG_HDRLEN + 4 + 8).unwrap_or(seq);
            Message::Ack { seq, error }
        } else if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
            parse_packet(msg).map_or(Message::Other, Message::Packet)
        } else {
            Message::Other
        });
        at += (len + 3) & !3;
    }
}

fn parse_packet(msg: &[u8]) -> Option<Packet> {
    let queue = u16::from_be_bytes(
        msg.get(NLMSG_HDRLEN + 2..NLMSG_HDRLEN + 4)?
            .try_into()
            .ok()?,
    );
    let (mut id, mut payload, mut cap) = (None, 0usize, None);
    let mut at = NLMSG_HDRLEN + NFGENMSG_LEN;
    while at + 4 <= msg.len() {
        let len = u16_at(msg, at)? as usize;
        let kind = u16_at(msg, at + 2)? & NLA_TYPE_MASK;
        if len < 4 || at + len > msg.len() {
            break;
        }
        match kind {
            NFQA_PACKET_HDR => id = be32_at(msg, at + 4),
            NFQA_PAYLOAD => payload = len - 4,
            NFQA_CAP_LEN => cap = be32_at(msg, at + 4).map(|c| c as usize),
            _ => {}
        }
        at += (len + 3) & !3;
    }
    Some(Packet {
        queue,
        id: id?,
        len: cap.unwrap_or(payload),
    })
}

impl NfQueue {
    /// A netlink socket for NFQUEUE in the current network namespace.
    pub(super) fn open() -> io::Result<Self> {
        // SAFETY: plain socket creation; the result is checked.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_NETFILTER,
            )
        })?;
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; all zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: a valid address of the stated size.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        })?;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: setsockopt with an int of the stated size.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&RCVBUF as *const i32).cast(),
                    4,
                )
            };
            if rc == 0 {
                break;
            }
        }
        Ok(Self {
            fd,
            seq: 1,
            buf: vec![0u8; 1 << 16],
            verdicts: Vec::with_capacity(VERDICT_BATCH + 64),
            early: Vec::new(),
            errors: 0,
        })
    }

    /// The descriptor, to poll.
    pub(super) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn send(&self, data: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: sending from a valid buffer of the given length.
            let rc =
                unsafe { libc::send(self.fd.as_raw_fd(), data.as_ptr().cast(), data.len(), 0) };
            if rc >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    wait_fd(
                        self.fd.as_raw_fd(),
                        libc::POLLOUT,
                        Duration::from_millis(100),
                    );
                }
                _ => return Err(err),
            }
        }
    }

    /// Sends a config request and waits for its acknowledgement (packets that come
    /// meanwhile are kept for [`NfQueue::receive`]).
    fn request(&mut self, queue: u16, attrs: &[(u16, &[u8])]) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
        self.send(&message(NFQNL_MSG_CONFIG, flags, seq, queue, attrs))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut messages = Vec::new();
        loop {
            messages.clear();
            if !self.read_once(&mut messages)? {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no answer from nfnetlink_queue",
                    ));
                }
                wait_fd(self.fd.as_raw_fd(), libc::POLLIN, left);
                continue;
            }
            let mut done = None;
            for m in messages.drain(..) {
                match m {
                    Message::Packet(p) => self.early.push(p),
                    Message::Ack { seq: s, error } if s == seq => done = Some(error),
                    Message::Ack { error, .. } if error != 0 => self.errors += 1,
                    _ => {}
                }
            }
            if let Some(error) = done {
                return if error == 0 {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(-error))
                };
            }
        }
    }

    /// Binds queue `queue` to this socket, copying [`COPY_RANGE`] bytes of each packet,
    /// with room for `maxlen` packets in the kernel.
    pub(super) fn bind(&mut self, queue: u16, maxlen: u32) -> io::Result<()> {
        let cmd = [NFQNL_CFG_CMD_BIND, 0, 0, 0];
        self.request(queue, &[(NFQA_CFG_CMD, &cmd)])?;
        let mut params = [0u8; 5];
        params[0..4].copy_from_slice(&COPY_RANGE.to_be_bytes());
        params[4] = NFQNL_COPY_PACKET;
        self.request(
            queue,
            &[
                (NFQA_CFG_PARAMS, &params),
                (NFQA_CFG_QUEUE_MAXLEN, &maxlen.to_be_bytes()),
            ],
        )
    }

    /// Reads one datagram if one is waiting; false when none is.
    fn read_once(&mut self, out: &mut Vec<Message>) -> io::Result<bool> {
        // SAFETY: receiving into our own buffer of its length.
        let rc = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EAGAIN) => Ok(false),
                Some(libc::EINTR) => Ok(true),
                // The kernel could not queue a packet to us (it dropped it): count it.
                Some(libc::ENOBUFS) => {
                    self.errors += 1;
                    Ok(true)
                }
                _ => Err(err),
            };
        }
        parse(&self.buf[..rc as usize], out);
        Ok(true)
    }

    /// Receives up to `max` waiting packets into `out` without blocking.
    pub(super) fn receive(&mut self, out: &mut Vec<Packet>, max: usize) -> io::Result<()> {
        out.append(&mut self.early);
        let mut messages = Vec::new();
        while out.len() < max {
            messages.clear();
            if !self.read_once(&mut messages)? {
                break;
            }
            for m in messages.drain(..) {
                match m {
                    Message::Packet(p) => out.push(p),
                    Message::Ack { error, .. } if error != 0 => self.errors += 1,
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Adds a verdict to the batch; sends the batch when it is full.
    pub(super) fn verdict(&mut self, queue: u16, id: u32, verdict: u32) -> io::Result<()> {
        self.verdicts
            .extend_from_slice(&verdict_message(queue, id, verdict));
        if self.verdicts.len() >= VERDICT_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the waiting verdicts.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        if self.verdicts.is_empty() {
            return Ok(());
        }
        let result = self.send(&self.verdicts);
        self.verdicts.clear();
        result
    }
}

/// Waits until `fd` is ready for `events` or `timeout` passes.
fn wait_fd(fd: RawFd, events: libc::c_short, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms.max(1)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_is_one_aligned_message() {
        let m = verdict_message(1003, 77, ACCEPT);
        assert_eq!(m.len(), 32);
        assert_eq!(u32_at(&m, 0), Some(32));
        assert_eq!(u16_at(&m, 4), Some((3 << 8) | 1));
        assert_eq!(&m[18..20], &1003u16.to_be_bytes());
        assert_eq!(u16_at(&m, 20), Some(12));
        assert_eq!(u16_at(&m, 22), Some(NFQA_VERDICT_HDR));
        assert_eq!(be32_at(&m, 24), Some(ACCEPT));
        assert_eq!(be32_at(&m, 28), Some(77));
    }

    #[test]
    fn packets_and_acks_parse() {
        // A packet message as the kernel sends it: header, packet header (id 9), a cut
        // payload and its full length.
        let mut hdr = [0u8; 7];
        hdr[0..4].copy_from_slice(&9u32.to_be_bytes());
        let mut msg = message(
            NFQNL_MSG_PACKET,
            0,
            0,
            1001,
            &[
                (NFQA_PACKET_HDR, &hdr),
                (NFQA_PAYLOAD, &[0x45; 64]),
                (NFQA_CAP_LEN, &1500u32.to_be_bytes()),
            ],
        );
        // An acknowledgement of request 5 with EBUSY.
        let mut ack = vec![0u8; NLMSG_HDRLEN];
        ack.extend_from_slice(&(-libc::EBUSY).to_ne_bytes());
        let mut inner = vec![0u8; NLMSG_HDRLEN];
        inner[8..12].copy_from_slice(&5u32.to_ne_bytes());
        ack.extend_from_slice(&inner);
        let len = ack.len() as u32;
        ack[0..4].copy_from_slice(&len.to_ne_bytes());
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        msg.extend_from_slice(&ack);
        let mut out = Vec::new();
        parse(&msg, &mut out);
        assert_eq!(
            out,
            vec![
                Message::Packet(Packet {
                    queue: 1001,
                    id: 9,
                    len: 1500
                }),
                Message::Ack {
                    seq: 5,
                    error: -libc::EBUSY
                }
            ]
        );
        // Truncated input ends the parse without a panic.
        for cut in 0..msg.len() {
            let mut out = Vec::new();
            parse(&msg[..cut], &mut out);
            assert!(out.len() <= 2);
        }
    }
}
