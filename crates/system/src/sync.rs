//! Synchronous netlink sockets: one request, then read until its answer is complete. For
//! what must answer from synchronous code (a link's counters for `braid status`) without a
//! runtime. A socket belongs to the network namespace of the thread that opened it.

use crate::SystemError;
use netlink_packet_core::{
    NLM_F_DUMP, NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_sys::{Socket, SocketAddr};
use std::time::Duration;

/// How long to wait for the kernel's answer before giving up (it answers at once; this
/// only keeps a lost answer from hanging the daemon).
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SystemError {
    let what = what.into();
    move |source| SystemError::Genl { what, source }
}

/// A netlink socket of `protocol`, bound, connected to the kernel, with a receive timeout.
pub(crate) fn open(protocol: isize) -> std::io::Result<Socket> {
    let mut socket = Socket::new(protocol)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    set_receive_timeout(&socket, RECEIVE_TIMEOUT)?;
    Ok(socket)
}

fn set_receive_timeout(socket: &Socket, timeout: Duration) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(5),
        tv_usec: 0,
    };
    // SAFETY: setsockopt on a valid descriptor with a timeval of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sends one request and collects the answers until the dump ends or the request is
/// acknowledged (set `NLM_F_ACK` on requests that are not dumps). An error from the kernel
/// comes back as its errno.
pub(crate) fn exchange<M>(
    socket: &Socket,
    sequence: u32,
    message: M,
    flags: u16,
) -> std::io::Result<Vec<M>>
where
    M: NetlinkSerializable + NetlinkDeserializable + std::fmt::Debug,
{
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = sequence;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    message.finalize();
    let mut buffer = vec![0; message.buffer_len()];
    message.serialize(&mut buffer);
    socket.send(&buffer, 0)?;
    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let mut out = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full()?;
        let mut offset = 0;
        while offset + 16 <= data.len() {
            let reply = NetlinkMessage::<M>::deserialize(&data[offset..])
                .map_err(|e| std::io::Error::other(format!("bad netlink answer: {e}")))?;
            let length = reply.header.length as usize;
            if length == 0 {
                return Err(std::io::Error::other("bad netlink answer: length 0"));
            }
            offset += (length + 3) & !3;
            if reply.header.sequence_number != sequence {
                continue; // an answer to an earlier, abandoned request
            }
            match reply.payload {
                NetlinkPayload::InnerMessage(m) => out.push(m),
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                NetlinkPayload::Error(_) if !dump => return Ok(out),
                _ => {}
            }
        }
    }
}

/// An interface's packet and byte counters, as `ip -s link` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets received and dropped (no buffer, or a driver's drop).
    pub rx_dropped: u64,
    /// Packets to send that were dropped.
    pub tx_dropped: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Send errors.
    pub tx_errors: u64,
}

/// A synchronous route-netlink socket for reading interface counters.
pub struct RouteSocket {
    socket: Socket,
    sequence: u32,
}

impl RouteSocket {
    /// Opens a socket in the named namespace (the caller's when `None`).
    pub fn connect_in(netns: Option<&str>) -> Result<Self, SystemError> {
        let connect = || {
            open(netlink_sys::protocols::NETLINK_ROUTE)
                .map(|socket| Self {
                    socket,
                    sequence: 0,
                })
                .map_err(io_err("opening a route netlink socket"))
        };
        match netns {
            None => connect(),
            Some(ns) => crate::netns::run_in(ns, connect)?,
        }
    }

    /// The counters of the interface named `name`; `None` when there is no such interface.
    pub fn counters(&mut self, name: &str) -> Result<Option<Counters>, SystemError> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.into()));
        let replies = match exchange(
            &self.socket,
            self.sequence,
            RouteNetlinkMessage::GetLink(message),
            netlink_packet_core::NLM_F_REQUEST | netlink_packet_core::NLM_F_ACK,
        ) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
            other => other.map_err(io_err(format!("reading the counters of {name}")))?,
        };
        Ok(replies.iter().find_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => link.attributes.iter().find_map(|a| match a {
                LinkAttribute::Stats64(s) => Some(Counters {
                    rx_packets: s.rx_packets,
                    tx_packets: s.tx_packets,
                    rx_bytes: s.rx_bytes,
                    tx_bytes: s.tx_bytes,
                    rx_dropped: s.rx_dropped,
                    tx_dropped: s.tx_dropped,
                    rx_errors: s.rx_errors,
                    tx_errors: s.tx_errors,
                }),
                _ => None,
            }),
            _ => None,
        }))
    }
}
