//! The link's UDP socket: bound to the listen port, marked with the fwmark, non-blocking.

use crate::{LinkConfig, LinkError};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

pub fn bind(config: &LinkConfig) -> Result<UdpSocket, LinkError> {
    let io = |what: &str| {
        let link = config.name.clone();
        let what = what.to_string();
        move |source| LinkError::Io { link, what, source }
    };
    let (domain, addr) = if config.ipv6 {
        (
            Domain::IPV6,
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, config.listen_port)),
        )
    } else {
        (
            Domain::IPV4,
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, config.listen_port)),
        )
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
        .map_err(io("creating its UDP socket"))?;
    if config.ipv6 {
        socket
            .set_only_v6(false)
            .map_err(io("making its UDP socket dual-stack"))?;
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
        if source.kind() == std::io::ErrorKind::AddrInUse {
            LinkError::PortInUse {
                link: config.name.clone(),
                port: config.listen_port,
            }
        } else {
            LinkError::Io {
                link: config.name.clone(),
                what: format!("binding UDP port {}", config.listen_port),
                source,
            }
        }
    })?;
    socket
        .set_nonblocking(true)
        .map_err(io("making its UDP socket non-blocking"))?;
    Ok(socket.into())
}
