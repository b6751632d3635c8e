//! The link's UDP socket: bound to the listen port, marked with the fwmark, non-blocking.

use crate::{LinkConfig, LinkError};
use braid_model::extensions::PathConfig;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// The link's own socket, on its listen port. A link with exactly one configured path
/// binds it to that path's interface or source address (plain WireGuard on the wire).
pub fn bind(config: &LinkConfig) -> Result<UdpSocket, LinkError> {
    match config.paths.as_slice() {
        [only] => bind_on(config, only, config.listen_port),
        _ => bind_on(config, &PathConfig::default(), config.listen_port),
    }
}

/// The socket of one configured path: bound to its interface (SO_BINDTODEVICE) and/or
/// source address, on a port the kernel picks (the peer learns it).
pub fn bind_path(config: &LinkConfig, path: &PathConfig) -> Result<UdpSocket, LinkError> {
    bind_on(config, path, 0)
}

/// A path's name in logs, errors and status.
pub fn path_label(path: &PathConfig) -> String {
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
