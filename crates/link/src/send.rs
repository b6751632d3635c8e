//! Sending batches of encrypted datagrams whatever the underlay's MTU: the one place that
//! decides what happens when the kernel refuses a UDP GSO send.
//!
//! braid's sockets let the kernel fragment at the source ([`crate::udp::allow_fragmentation`]),
//! so a single datagram larger than the path MTU leaves in fragments. A GSO send cannot:
//! Linux refuses one whose segment plus IP and UDP headers exceeds the path MTU, and then
//! nothing of the batch leaves (`udp_send_skb`: EMSGSIZE, measured on 6.18; EINVAL on older
//! kernels, before the change to `hlen + min(datalen, gso_size) > fragsize` that stable
//! series back to 5.4 took). It refuses any GSO send with EIO when the device cannot
//! checksum, and EINVAL has other causes on old kernels.
//!
//! A single datagram goes the same way, as a GSO send of one segment: the kernel's check
//! refuses it when it is larger than the path MTU, before anything is sent, which a plain
//! send would not tell (it would fragment it silently).
//!
//! When that happens the batch leaves one datagram per message in one `sendmmsg` (the kernel
//! fragments those above the MTU), the refusal is remembered per destination so that later
//! batches of that segment size or more go the same way at once (GSO is tried again after
//! [`RETRY_GSO_AFTER`], in case the path changed), and the kernel is asked for the path MTU:
//! the first datagram is tried once more with DF set and `IP_RECVERR` on, which fails locally
//! with EMSGSIZE and queues the MTU on the socket's error queue (`ip_local_error`,
//! `ipv6_local_error`), so the link can count fragmented datagrams and advise a link MTU.
//!
//! While the report is fresh, [`UdpState::fitting_packet`] tells the TUN reader how large
//! an inner packet may be for its datagram to fit, and TCP bursts are cut to that
//! (`crate::reseg`), so that a TCP stream stops needing fragments at all.
//!
//! quinn-udp still sets the socket up and receives (GRO), but its send is not used for GSO
//! batches: on EINVAL or EIO it turns GSO off for the socket's lifetime.

use crate::counters::{Counters, add};
use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// How long a destination's GSO refusal holds before batches of that size try GSO again.
pub(crate) const RETRY_GSO_AFTER: Duration = Duration::from_secs(10);
/// The fragmentation warning of one socket repeats at most this often (unless the path MTU
/// it reports changes).
const WARN_EVERY: Duration = Duration::from_secs(600);
/// Destinations whose refusals are remembered per socket (the oldest is forgotten).
const REMEMBERED: usize = 16;
/// Bytes WireGuard adds to a packet: a 16-byte data header and a 16-byte AEAD tag.
const WIREGUARD_OVERHEAD: usize = 32;
/// The least MTU of a link: IPv6 needs 1280 (RFC 8200, section 5).
const MIN_LINK_MTU: usize = 1280;
/// Datagrams per `sendmmsg` (the GSO queue holds at most 64).
const MMSG_BATCH: usize = 64;

/// A link socket's batched-I/O state: quinn-udp's (GSO/GRO support, receiving), plus what
/// the kernel refused to send with GSO, per destination. Used by one link thread at a time.
pub(crate) struct UdpState {
    quinn: quinn_udp::UdpSocketState,
    /// The link's name and the path's label, for logs.
    link: String,
    path: Option<String>,
    refusals: RefCell<Vec<Refusal>>,
    /// When fragmentation was last logged, and the path MTU it named.
    warned: Cell<Option<(Instant, Option<usize>)>>,
}

/// GSO refused for `segment`-byte segments (and so for larger ones) toward `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal {
    to: IpAddr,
    segment: usize,
    /// The path MTU (IP bytes) the kernel reported; `None` when the refusal was not about
    /// size (EIO, or the datagram fit when sent on its own).
    mtu: Option<usize>,
    at: Instant,
}

impl Refusal {
    /// Whether GSO sends of `segment`-byte segments are refused too: as large as the
    /// refused ones, or above the reported path MTU.
    fn refuses(&self, segment: usize) -> bool {
        segment >= self.segment
            || self
                .mtu
                .is_some_and(|mtu| segment + header_len(self.to) > mtu)
    }
}

impl std::ops::Deref for UdpState {
    type Target = quinn_udp::UdpSocketState;
    fn deref(&self) -> &Self::Target {
        &self.quinn
    }
}

impl UdpState {
    /// quinn-udp's setup of `socket` (non-blocking, GRO, packet info), then fragmentation
    /// allowed again ([`crate::udp::allow_fragmentation`]). `link` and `path` name the
    /// socket in logs.
    pub(crate) fn new(socket: &UdpSocket, link: &str, path: Option<&str>) -> io::Result<Self> {
        let quinn = quinn_udp::UdpSocketState::new(socket.into())?;
        crate::udp::allow_fragmentation(socket)?;
        Ok(Self {
            quinn,
            link: link.to_string(),
            path: path.map(str::to_string),
            refusals: RefCell::new(Vec::new()),
            warned: Cell::new(None),
        })
    }

    /// What is remembered toward `to` (IPv4-mapped addresses are IPv4), fresh or not.
    fn refusal(&self, to: IpAddr) -> Option<Refusal> {
        let to = to.to_canonical();
        self.refusals.borrow().iter().find(|r| r.to == to).copied()
    }

    /// The largest inner packet whose encrypted datagram fits the underlay toward `to`
    /// without fragments, while the kernel's report that the underlay is narrower is fresh
    /// (younger than [`RETRY_GSO_AFTER`]); `None` when no datagram toward `to` was too large.
    /// Rounded down to 16 bytes, WireGuard's padding unit. `crate::reseg` cuts TCP bursts to
    /// it.
    pub(crate) fn fitting_packet(&self, to: SocketAddr) -> Option<usize> {
        let refusal = self.refusal(to.ip())?;
        let mtu = refusal.mtu?;
        if refusal.at.elapsed() >= RETRY_GSO_AFTER {
            return None;
        }
        let room = mtu.saturating_sub(header_len(refusal.to) + WIREGUARD_OVERHEAD);
        Some(room / 16 * 16)
    }

    fn remember(&self, refusal: Refusal) {
        let mut all = self.refusals.borrow_mut();
        all.retain(|r| r.to != refusal.to);
        if all.len() >= REMEMBERED {
            all.remove(0);
        }
        all.push(refusal);
    }

    fn forget(&self, to: IpAddr) {
        let to = to.to_canonical();
        self.refusals.borrow_mut().retain(|r| r.to != to);
    }

    /// Logs, at most every [`WARN_EVERY`] per socket or when the reported MTU changes, that
    /// datagrams toward `to` are larger than the path MTU, with the link MTU that fits.
    fn warn(&self, refusal: &Refusal, datagram: usize, now: Instant, errno: i32) {
        let last = self.warned.get();
        if last.is_some_and(|(at, mtu)| mtu == refusal.mtu && now - at < WARN_EVERY) {
            return;
        }
        self.warned.set(Some((now, refusal.mtu)));
        let (link, path, to) = (&self.link, self.path.as_deref(), refusal.to);
        let Some(mtu) = refusal.mtu else {
            tracing::warn!(
                link, path, %to, datagram, errno,
                "the kernel refused a UDP GSO send ({}): sending these datagrams one by one",
                io::Error::from_raw_os_error(errno)
            );
            return;
        };
        let overhead = header_len(to) + WIREGUARD_OVERHEAD;
        let advised = mtu.saturating_sub(overhead);
        let fix = if advised >= MIN_LINK_MTU {
            format!("a link MTU of {advised} or less avoids it")
        } else {
            format!(
                "no link MTU avoids it for full-size packets: {advised} is below {MIN_LINK_MTU}, the least a link carrying IPv6 may have"
            )
        };
        tracing::warn!(
            link, path, %to, datagram, underlay_mtu = mtu, advised_link_mtu = advised,
            "encrypted datagrams are larger than the underlay's MTU toward the peer ({mtu} - {overhead} bytes of IP, UDP and WireGuard headers = {advised}): the kernel sends them in fragments (slower, and lost where fragments are dropped); {fix}"
        );
    }
}

/// IP and UDP header bytes toward `to` (an IPv4-mapped address travels as IPv4).
fn header_len(to: IpAddr) -> usize {
    match to.to_canonical() {
        IpAddr::V4(_) => 20 + 8,
        IpAddr::V6(_) => 40 + 8,
    }
}

/// What one [`send_batch`] did, for the link's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Datagrams and bytes handed to the kernel.
    pub datagrams: u64,
    pub bytes: u64,
    /// Datagrams of the batch the kernel did not take (its send buffer filled up while they
    /// went one by one).
    pub dropped: u64,
    /// Datagrams larger than the path MTU the kernel reported: sent in fragments.
    pub fragmented: u64,
    /// The batch left one datagram per message because the kernel refuses GSO for its
    /// segment size toward the destination.
    pub unbatched: bool,
    /// The path MTU toward the destination, when the kernel reported one.
    pub underlay_mtu: Option<usize>,
}

impl Sent {
    /// Adds this send to the link's counters.
    pub(crate) fn count(&self, counters: &Counters) {
        add(&counters.tx_packets, self.datagrams);
        add(&counters.tx_bytes, self.bytes);
        add(&counters.dropped_no_route, self.dropped);
        add(&counters.tx_fragmented, self.fragmented);
        add(&counters.tx_gso_fallbacks, u64::from(self.unbatched));
        if let Some(mtu) = self.underlay_mtu {
            counters
                .underlay_mtu
                .store(mtu as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Sends `transmit`: a GSO batch of `segment_size`-byte datagrams (the last may be
/// shorter), or one datagram, which goes as a batch of one: the kernel's GSO check then
/// tells, without sending anything, whether it is larger than the path MTU (a plain send
/// would fragment it without a word). When the kernel refuses the GSO send (EMSGSIZE,
/// EINVAL or EIO) the datagrams leave one by one and the refusal is remembered for the
/// destination (see the module's documentation). `transmit.ecn` and `transmit.src_ip` are
/// not supported (braid sets neither).
///
/// Errors: the first datagram could not be sent at all (`WouldBlock` when the send buffer is
/// full); nothing of the batch left.
pub(crate) fn send_batch(
    udp: &UdpState,
    socket: &UdpSocket,
    transmit: &quinn_udp::Transmit<'_>,
) -> io::Result<Sent> {
    debug_assert!(transmit.ecn.is_none() && transmit.src_ip.is_none());
    let (contents, to) = (transmit.contents, transmit.destination);
    let segment = match transmit.segment_size {
        Some(s) if s > 0 && s < contents.len() => s,
        _ => contents.len(),
    };
    let now = Instant::now();
    let known = udp
        .refusal(to.ip())
        .filter(|r| now.duration_since(r.at) < RETRY_GSO_AFTER);
    // Without GSO in the kernel (quinn-udp found no UDP_SEGMENT) there is nothing to ask.
    if known.is_some_and(|r| r.refuses(segment)) || udp.max_gso_segments() <= 1 {
        let n = send_each(socket, to, contents, segment)?;
        return Ok(sent_each(contents, segment, n, known));
    }
    let e = match send_gso(socket.as_raw_fd(), to, contents, segment) {
        Ok(()) => {
            if udp.refusal(to.ip()).is_some_and(|r| r.refuses(segment)) {
                udp.forget(to.ip()); // the path takes these segments (again)
            }
            return Ok(Sent {
                datagrams: contents.len().div_ceil(segment) as u64,
                bytes: contents.len() as u64,
                underlay_mtu: known.and_then(|r| r.mtu),
                ..Sent::default()
            });
        }
        Err(e) => e,
    };
    let errno = e.raw_os_error().unwrap_or(0);
    if ![libc::EMSGSIZE, libc::EINVAL, libc::EIO].contains(&errno) {
        return Err(e);
    }
    // Refused: learn why from the first datagram, then send them all one by one.
    let first = &contents[..segment];
    let (mtu, first_sent) = if errno == libc::EIO {
        (None, false)
    } else {
        path_mtu(socket, to, first)
    };
    let refusal = Refusal {
        to: to.ip().to_canonical(),
        segment: known.map_or(segment, |r| r.segment.min(segment)),
        mtu,
        at: now,
    };
    udp.remember(refusal);
    udp.warn(&refusal, segment, now, errno);
    tracing::debug!(link = %udp.link, %to, segment, ?mtu, "GSO send refused: {e}");
    let skip = if first_sent { segment } else { 0 };
    let n = match send_each(socket, to, &contents[skip..], segment) {
        Ok(n) => n,
        Err(_) if first_sent => 0,
        Err(e) => return Err(e),
    };
    Ok(sent_each(
        contents,
        segment,
        n + usize::from(first_sent),
        Some(refusal),
    ))
}

/// What sending the first `n` datagrams of `contents` one by one amounts to (a batch of
/// several is a GSO fallback).
fn sent_each(contents: &[u8], segment: usize, n: usize, refusal: Option<Refusal>) -> Sent {
    let mtu = refusal.and_then(|r| r.mtu);
    let header = refusal.map_or(0, |r| header_len(r.to));
    let mut sent = Sent {
        unbatched: contents.len() > segment,
        underlay_mtu: mtu,
        dropped: contents.len().div_ceil(segment).saturating_sub(n) as u64,
        ..Sent::default()
    };
    for datagram in contents.chunks(segment).take(n) {
        sent.datagrams += 1;
        sent.bytes += datagram.len() as u64;
        if mtu.is_some_and(|mtu| datagram.len() + header > mtu) {
            sent.fragmented += 1;
        }
    }
    sent
}

/// One `sendmsg` with `UDP_SEGMENT`: the kernel cuts `contents` every `segment` bytes.
fn send_gso(fd: RawFd, to: SocketAddr, contents: &[u8], segment: usize) -> io::Result<()> {
    let addr = socket2::SockAddr::from(to);
    let mut iov = libc::iovec {
        iov_base: contents.as_ptr() as *mut libc::c_void,
        iov_len: contents.len(),
    };
    // Room for one cmsghdr with a u16, aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call, the
    // control buffer is large enough for CMSG_SPACE(2) (checked) and aligned for cmsghdr,
    // and sendmsg only reads the buffers it is given.
    unsafe {
        let space = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
        assert!(space <= size_of_val(&control));
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = addr.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = addr.len();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment as u16);
        loop {
            if libc::sendmsg(fd, &msg, 0) >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Sends `contents` cut every `segment` bytes as separate datagrams, [`MMSG_BATCH`] per
/// `sendmmsg`; returns how many left. An error before any left is returned; after some
/// left, the rest are given up (the caller counts them dropped).
fn send_each(
    socket: &UdpSocket,
    to: SocketAddr,
    contents: &[u8],
    segment: usize,
) -> io::Result<usize> {
    let addr = socket2::SockAddr::from(to);
    let datagrams: Vec<&[u8]> = contents.chunks(segment).collect();
    let mut sent = 0;
    while sent < datagrams.len() {
        let chunk = &datagrams[sent..datagrams.len().min(sent + MMSG_BATCH)];
        let mut iovs: Vec<libc::iovec> = chunk
            .iter()
            .map(|d| libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain data; each points at one iovec of `iovs` and at `addr`,
        // which outlive the call; sendmmsg only reads them (and writes msg_len).
        let n = unsafe {
            let mut msgs: Vec<libc::mmsghdr> = iovs
                .iter_mut()
                .map(|iov| {
                    let mut m: libc::mmsghdr = std::mem::zeroed();
                    m.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
                    m.msg_hdr.msg_namelen = addr.len();
                    m.msg_hdr.msg_iov = iov;
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
            libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), msgs.len() as _, 0)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                _ if sent == 0 => return Err(e),
                _ => break,
            }
        }
        if n == 0 {
            break;
        }
        sent += n as usize;
    }
    Ok(sent)
}

/// The path MTU toward `to`, asked of the kernel by sending `datagram` with DF set and
/// `IP_RECVERR` on: a datagram above the MTU fails locally with EMSGSIZE and the error queue
/// carries the MTU (`ee_info`). Returns the MTU if so, and whether `datagram` left instead
/// (it fit: the refusal was not about size). The socket's options are restored after.
fn path_mtu(socket: &UdpSocket, to: SocketAddr, datagram: &[u8]) -> (Option<usize>, bool) {
    let fd = socket.as_raw_fd();
    let ipv6 = to.is_ipv6();
    let strict = set_strict(fd, ipv6);
    let result = match strict {
        Ok(()) => match socket.send_to(datagram, to) {
            Ok(_) => (None, true),
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => (local_mtu_error(fd), false),
            Err(_) => (None, false),
        },
        Err(_) => (None, false),
    };
    // Back to fragmenting; RECVERR off also empties the error queue.
    let restored = crate::udp::allow_fragmentation(socket).and_then(|()| set_recverr(fd, ipv6, 0));
    if let Err(e) = restored {
        tracing::warn!(%to, "restoring the socket's fragmentation options: {e}");
    }
    result
}

/// DF on (`IP_PMTUDISC_DO`; for IPv6 `IPV6_PMTUDISC_DO`) and local errors queued.
fn set_strict(fd: RawFd, ipv6: bool) -> io::Result<()> {
    use crate::udp::set_int;
    set_recverr(fd, ipv6, 1)?;
    set_int(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DO,
    )?;
    if ipv6 {
        set_int(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )?;
    }
    Ok(())
}

fn set_recverr(fd: RawFd, ipv6: bool, on: libc::c_int) -> io::Result<()> {
    use crate::udp::set_int;
    set_int(fd, libc::IPPROTO_IP, libc::IP_RECVERR, on)?;
    if ipv6 {
        set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, on)?;
    }
    Ok(())
}

/// Reads the socket's error queue for a local EMSGSIZE and returns the MTU it reports.
fn local_mtu_error(fd: RawFd) -> Option<usize> {
    for _ in 0..4 {
        let mut data = [0u8; 64];
        let mut control = [0u64; 64];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: the buffers outlive the call and their sizes are passed; the cmsg walk
        // stays within msg_controllen as the kernel set it, and sock_extended_err is read
        // unaligned from a control message of the matching level and type.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of_val(&control) as _;
            if libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) < 0 {
                return None;
            }
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
                if (level == libc::IPPROTO_IP && kind == libc::IP_RECVERR)
                    || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_RECVERR)
                {
                    let err = std::ptr::read_unaligned(
                        libc::CMSG_DATA(cmsg).cast::<libc::sock_extended_err>(),
                    );
                    if err.ee_errno == libc::EMSGSIZE as u32
                        && err.ee_origin == libc::SO_EE_ORIGIN_LOCAL
                        && err.ee_info > 0
                    {
                        return Some(err.ee_info as usize);
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(to: &str, mtu: Option<usize>) -> Refusal {
        Refusal {
            to: to.parse().unwrap(),
            segment: 1452,
            mtu,
            at: Instant::now(),
        }
    }

    #[test]
    fn datagrams_above_the_reported_mtu_count_as_fragmented() {
        let contents = [0u8; 3 * 1452 + 100];
        // 1452 + 28 > 1300; 100 + 28 fits.
        let sent = sent_each(&contents, 1452, 4, Some(refusal("198.18.0.2", Some(1300))));
        assert_eq!(
            sent,
            Sent {
                datagrams: 4,
                bytes: contents.len() as u64,
                dropped: 0,
                fragmented: 3,
                unbatched: true,
                underlay_mtu: Some(1300),
            }
        );
        // IPv6 carries 20 more header bytes: 1452 + 48 > 1480 but 1452 + 28 = 1480 fits IPv4.
        let v6 = sent_each(
            &contents[..1452],
            1452,
            1,
            Some(refusal("2001:db8::2", Some(1480))),
        );
        assert_eq!(
            (v6.fragmented, v6.unbatched),
            (1, false),
            "one datagram is no batch"
        );
        let v4 = sent_each(
            &contents[..1452],
            1452,
            1,
            Some(refusal("::ffff:198.18.0.2", Some(1480))),
        );
        assert_eq!(v4.fragmented, 0, "an IPv4-mapped peer travels as IPv4");
    }

    #[test]
    fn a_partly_sent_batch_counts_the_rest_dropped_and_unknown_mtus_count_nothing() {
        let contents = [0u8; 5 * 1000];
        let sent = sent_each(&contents, 1000, 2, Some(refusal("198.18.0.2", None)));
        assert_eq!((sent.datagrams, sent.dropped, sent.fragmented), (2, 3, 0));
        assert_eq!(sent_each(&contents[..10], 10, 1, None).fragmented, 0);
    }

    /// Real sockets over a veth pair of MTU 1300 (root, namespaces): GSO batches and single
    /// datagrams above the MTU leave in fragments and arrive whole; smaller ones still go
    /// with GSO.
    #[test]
    fn datagrams_above_the_underlay_mtu_leave_in_fragments_and_arrive_whole() {
        let test = "datagrams_above_the_underlay_mtu_leave_in_fragments_and_arrive_whole";
        if !braid_lab::available_or_skip(test) {
            return;
        }
        let name = format!("us{:x}", std::process::id() % 0xffff);
        let lab = braid_lab::Lab::up(braid_lab::LabSpec::new(&name, 2)).unwrap();
        lab.exec(1, "ip", &["link", "set", "u2", "mtu", "1300"])
            .unwrap();
        lab.exec(2, "ip", &["link", "set", "u1", "mtu", "1300"])
            .unwrap();
        for (from, to) in [("198.18.0.1", "198.18.0.2"), ("2001:db8::1", "2001:db8::2")] {
            let to_ip: IpAddr = to.parse().unwrap();
            let receiver =
                braid_system::netns::run_in(&lab.ns(2), move || UdpSocket::bind((to_ip, 0)))
                    .unwrap()
                    .unwrap();
            receiver
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let dest = SocketAddr::new(to_ip, receiver.local_addr().unwrap().port());
            let from: IpAddr = from.parse().unwrap();
            let sent = braid_system::netns::run_in(&lab.ns(1), move || {
                let socket = UdpSocket::bind((from, 0))?;
                let udp = UdpState::new(&socket, "test", None)?;
                let send = |bytes: &[u8], segment: usize| {
                    let transmit = quinn_udp::Transmit {
                        destination: dest,
                        ecn: None,
                        contents: bytes,
                        segment_size: Some(segment),
                        src_ip: None,
                    };
                    send_batch(&udp, &socket, &transmit)
                };
                let big = vec![7u8; 4 * 1452];
                let small = vec![8u8; 4 * 1000];
                // A plain send (handshakes, probes) fragments too: the socket allows it.
                socket.send_to(&big[..1452], dest)?;
                Ok::<_, io::Error>([
                    send(&big, 1452)?,         // refused: learns the MTU
                    send(&big, 1452)?,         // known: one by one at once
                    send(&small, 1000)?,       // fits: GSO
                    send(&big[..1452], 1452)?, // a single datagram above the MTU
                ])
            })
            .unwrap()
            .unwrap();
            let mtu = Some(1300);
            assert_eq!(
                sent[0],
                Sent {
                    datagrams: 4,
                    bytes: 4 * 1452,
                    dropped: 0,
                    fragmented: 4,
                    unbatched: true,
                    underlay_mtu: mtu,
                },
                "{to}"
            );
            assert_eq!(sent[1], sent[0], "{to}");
            assert_eq!(
                (sent[2].datagrams, sent[2].fragmented, sent[2].unbatched),
                (4, 0, false),
                "{to}"
            );
            assert_eq!(
                (sent[3].datagrams, sent[3].fragmented, sent[3].unbatched),
                (1, 1, false),
                "{to}"
            );
            let mut sizes = Vec::new();
            let mut buf = [0u8; 2048];
            while let Ok(n) = receiver.recv(&mut buf) {
                sizes.push(n);
                if sizes.len() == 14 {
                    break;
                }
            }
            let mut expected = vec![1452; 9];
            expected.extend([1000; 4]);
            expected.push(1452);
            assert_eq!(sizes, expected, "{to}: what arrived");
        }
    }

    #[test]
    fn the_link_mtu_advice_subtracts_ip_udp_and_wireguard_headers() {
        let v4: IpAddr = "198.18.0.2".parse().unwrap();
        let v6: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(1300 - header_len(v4) - WIREGUARD_OVERHEAD, 1240);
        assert_eq!(1300 - header_len(v6) - WIREGUARD_OVERHEAD, 1220);
    }
}
