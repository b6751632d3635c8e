//! The link's UDP socket: bound to the listen port, marked with the fwmark, non-blocking,
//! and allowed to leave in fragments (see [`allow_fragmentation`]).

use crate::{LinkConfig, LinkError};
use braid_model::extensions::PathConfig;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// The link's own socket, on its listen port. A link with exactly one configured path
/// binds it to that path's interface or source address (plain WireGuard on the wire).
pub(crate) fn bind(config: &LinkConfig) -> Result<UdpSocket, LinkError> {
    match config.paths.as_slice() {
        [only] => bind_on(config, only, config.listen_port),
        _ => bind_on(config, &PathConfig::default(), config.listen_port),
    }
}

/// The socket of one configured path: bound to its interface (SO_BINDTODEVICE) and/or
/// source address, on a port the kernel picks (the peer learns it).
pub(crate) fn bind_path(config: &LinkConfig, path: &PathConfig) -> Result<UdpSocket, LinkError> {
    bind_on(config, path, 0)
}

/// A path's name in logs, errors and status.
pub(crate) fn path_label(path: &PathConfig) -> String {
    match (&path.interface, path.source) {
        (Some(i), Some(s)) => format!("{i}/{s}"),
        (Some(i), None) => i.clone(),
        (None, Some(s)) => s.to_string(),
        (None, None) => "default".into(),
    }
}

fn bind_on(config: &LinkConfig, path: &PathConfig, port: u16) -> Result<UdpSocket, LinkError> {
    let label = path_label(path);
    let io = |what: &str| {
        let link = config.name.clone();
        let what = if label == "default" {
            what.to_string()
        } else {
            format!("path {label}: {what}")
        };
        move |source| LinkError::Io { link, what, source }
    };
    let (domain, addr) = match (config.ipv6, path.source) {
        (_, Some(IpAddr::V6(ip))) => (Domain::IPV6, SocketAddr::from((ip, port))),
        (_, Some(IpAddr::V4(ip))) => (Domain::IPV4, SocketAddr::from((ip, port))),
        (true, None) => (
            Domain::IPV6,
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
        ),
        (false, None) => (
            Domain::IPV4,
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        ),
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
        .map_err(io("creating its UDP socket"))?;
    if domain == Domain::IPV6 && path.source.is_none() {
        socket
            .set_only_v6(false)
            .map_err(io("making its UDP socket dual-stack"))?;
    }
    if let Some(interface) = &path.interface {
        socket
            .bind_device(Some(interface.as_bytes()))
            .map_err(io(&format!(
                "binding its UDP socket to interface {interface}"
            )))?;
    }
    if config.fwmark != 0 {
        socket
            .set_mark(config.fwmark)
            .map_err(io("setting SO_MARK on its UDP socket"))?;
    }
    // Room for bursts: the default buffers drop packets at a few hundred Mbit/s.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into()).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse && port != 0 {
            LinkError::PortInUse {
                link: config.name.clone(),
                port,
            }
        } else {
            LinkError::Io {
                link: config.name.clone(),
                what: format!("binding UDP {addr}"),
                source,
            }
        }
    })?;
    socket
        .set_nonblocking(true)
        .map_err(io("making its UDP socket non-blocking"))?;
    Ok(socket.into())
}

/// Lets the kernel fragment the socket's datagrams at the source when they are larger than
/// the path MTU, undoing quinn-udp's setup (`UdpSocketState::new` sets IP_PMTUDISC_PROBE and
/// IPV6_DONTFRAG for QUIC, which does its own path MTU discovery: with them a datagram above
/// the device MTU fails with EMSGSIZE and is lost). Call it after quinn-udp's setup.
///
/// - IPv4 (and IPv4-mapped destinations of a dual-stack socket): `IP_PMTUDISC_DONT`, so the
///   DF bit is clear, as kernel WireGuard sends (`udp_tunnel_xmit_skb` with `df = 0`): the
///   kernel fragments to the route's MTU, and a smaller hop further on fragments again
///   instead of dropping the datagram and relying on an ICMP "fragmentation needed" that
///   firewalls often filter (the classic PMTUD black hole). `IP_PMTUDISC_WANT` (the kernel
///   default, what wireguard-go runs with) sets DF on datagrams that fit the known path MTU,
///   and such a hop would black-hole them.
/// - IPv6: `IPV6_PMTUDISC_WANT` and `IPV6_DONTFRAG` 0, the kernel defaults that kernel
///   WireGuard and wireguard-go send with: routers never fragment IPv6, the source fragments
///   to the path MTU it knows (the device's, lowered by ICMPv6 Packet Too Big).
///
/// Measured on Linux 6.18 (a veth of MTU 1300): with these options a 1452-byte datagram
/// leaves in two fragments; with quinn-udp's it fails with EMSGSIZE. UDP GSO refuses
/// segments above the path MTU whatever these options say; `crate::send` handles that.
pub(crate) fn allow_fragmentation(socket: &UdpSocket) -> std::io::Result<()> {
    let ipv6 = socket.local_addr()?.is_ipv6();
    let fd = socket.as_raw_fd();
    if ipv6 {
        set_int(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_WANT,
        )?;
        set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 0)?;
    }
    // On a dual-stack IPv6 socket this governs the IPv4-mapped destinations.
    set_int(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DONT,
    )
}

/// `setsockopt` with an `int` value.
pub(crate) fn set_int(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: `value` lives across the call and its size is passed; `fd` is an open socket
    // borrowed by the caller.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
