//! Kernel WireGuard over generic netlink (the `wireguard` family): read a device's
//! configuration and counters, and configure it (private key, listen port, fwmark, peers).
//!
//! The socket is synchronous: one request, read until the answer is complete. It belongs to
//! the network namespace of the thread that opened it, for as long as it lives, so a
//! [`Genl`] opened in the overlay namespace keeps talking to that namespace's devices from
//! any thread.

use crate::SystemError;
use crate::sync::{self, io_err};
use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkSerializable,
};
use netlink_packet_generic::GenlMessage;
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_wireguard::{
    WireguardAddressFamily, WireguardAllowedIp, WireguardAllowedIpAttr, WireguardAttribute,
    WireguardCmd, WireguardDeviceFlags, WireguardMessage, WireguardPeer, WireguardPeerAttribute,
    WireguardPeerFlags,
};
use netlink_sys::{Socket, protocols::NETLINK_GENERIC};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime};

/// Length of a WireGuard (X25519) key in bytes.
pub const KEY_LEN: usize = 32;

/// What braid sets on a WireGuard device: its identity and its one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// The device's X25519 private key (WGDEVICE_A_PRIVATE_KEY).
    pub private_key: [u8; KEY_LEN],
    /// 0 lets the kernel choose.
    pub listen_port: u16,
    /// The mark on the device's own UDP packets (WGDEVICE_A_FWMARK); 0 for none.
    pub fwmark: u32,
    /// The device's one peer.
    pub peer: PeerConfig,
}

/// The peer of a link; its allowed IPs are always everything (0.0.0.0/0 and ::/0): the
/// routing table, not cryptokey routing, decides what goes over the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's X25519 public key.
    pub public_key: [u8; KEY_LEN],
    /// `None` leaves the endpoint as it is (unset, or learnt from the peer).
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive in seconds; 0 turns it off.
    pub keepalive: u16,
}

/// A WireGuard device as the kernel reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    /// The interface index.
    pub ifindex: u32,
    /// The private key, if one is set.
    pub private_key: Option<[u8; KEY_LEN]>,
    /// The public key of the private key, if one is set.
    pub public_key: Option<[u8; KEY_LEN]>,
    /// The UDP port it listens on.
    pub listen_port: u16,
    /// The mark on its UDP packets; 0 for none.
    pub fwmark: u32,
    /// Its peers, as the kernel lists them.
    pub peers: Vec<Peer>,
}

/// One peer of a WireGuard device as the kernel reports it (`wg show`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    /// The peer's X25519 public key.
    pub public_key: [u8; KEY_LEN],
    /// Where the peer is, configured or learnt; `None` if unknown.
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive in seconds; 0 when off.
    pub keepalive: u16,
    /// When the last handshake completed; `None` if never.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received from the peer (UDP payload).
    pub rx_bytes: u64,
    /// Bytes sent to the peer (UDP payload).
    pub tx_bytes: u64,
    /// The peer's allowed IPs.
    pub allowed_ips: Vec<IpNet>,
}

/// The allowed IPs braid gives every peer.
pub fn all_addresses() -> [IpNet; 2] {
    [
        IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).unwrap_or_default(),
        IpNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).unwrap_or_default(),
    ]
}

/// A generic-netlink socket with the `wireguard` family resolved.
pub struct Genl {
    socket: Socket,
    family: u16,
    sequence: u32,
}

impl Genl {
    /// Opens a socket in the calling thread's namespace and resolves the family. Without
    /// the WireGuard module: [`SystemError::NoWireGuard`].
    pub fn connect() -> Result<Self, SystemError> {
        let socket =
            sync::open(NETLINK_GENERIC).map_err(io_err("opening a generic netlink socket"))?;
        let mut genl = Self {
            socket,
            family: 0,
            sequence: 0,
        };
        genl.family = genl.resolve_family()?;
        Ok(genl)
    }

    /// Opens a socket in the named namespace (the caller's when `None`).
    pub fn connect_in(netns: Option<&str>) -> Result<Self, SystemError> {
        match netns {
            None => Self::connect(),
            Some(ns) => crate::netns::run_in(ns, Self::connect)?,
        }
    }

    fn resolve_family(&mut self) -> Result<u16, SystemError> {
        let request = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName("wireguard".into())],
        });
        let replies = match self.request(request, NLM_F_REQUEST | NLM_F_ACK) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Err(SystemError::NoWireGuard);
            }
            other => other.map_err(io_err("resolving the wireguard generic netlink family"))?,
        };
        replies
            .iter()
            .flat_map(|m| m.payload.nlas.iter())
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or(SystemError::NoWireGuard)
    }

    fn request<F>(
        &mut self,
        message: GenlMessage<F>,
        flags: u16,
    ) -> std::io::Result<Vec<GenlMessage<F>>>
    where
        GenlMessage<F>: NetlinkSerializable + NetlinkDeserializable + std::fmt::Debug,
    {
        self.sequence = self.sequence.wrapping_add(1);
        sync::exchange(&self.socket, self.sequence, message, flags)
    }

    /// A message of the wireguard family, addressed with the family id the kernel gave it.
    fn message(&self, payload: WireguardMessage) -> GenlMessage<WireguardMessage> {
        let mut message = GenlMessage::from_payload(payload);
        message.set_resolved_family_id(self.family);
        message
    }

    /// The device named `ifname` with its peers and counters.
    pub fn device(&mut self, ifname: &str) -> Result<Device, SystemError> {
        let request = self.message(WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![WireguardAttribute::IfName(ifname.to_string())],
        });
        let replies = self
            .request(request, NLM_F_REQUEST | NLM_F_DUMP)
            .map_err(io_err(format!("reading WireGuard device {ifname}")))?;
        let mut device = Device::default();
        for reply in replies {
            for attribute in reply.payload.attributes {
                match attribute {
                    WireguardAttribute::IfIndex(i) => device.ifindex = i,
                    WireguardAttribute::PrivateKey(k) => {
                        device.private_key = (k != [0; KEY_LEN]).then_some(k);
                    }
                    WireguardAttribute::PublicKey(k) => {
                        device.public_key = (k != [0; KEY_LEN]).then_some(k);
                    }
                    WireguardAttribute::ListenPort(p) => device.listen_port = p,
                    WireguardAttribute::Fwmark(m) => device.fwmark = m,
                    WireguardAttribute::Peers(peers) => {
                        for peer in peers {
                            merge_peer(&mut device.peers, &peer);
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(device)
    }

    /// Configures the device fully: identity, port, mark and its one peer. With
    /// `replace_peers`, any other peer is removed (and the sessions with them end); without,
    /// the peer is updated in place and its session kept.
    pub fn configure(
        &mut self,
        ifname: &str,
        config: &DeviceConfig,
        replace_peers: bool,
    ) -> Result<(), SystemError> {
        let mut attributes = vec![
            WireguardAttribute::IfName(ifname.to_string()),
            WireguardAttribute::PrivateKey(config.private_key),
            WireguardAttribute::ListenPort(config.listen_port),
            WireguardAttribute::Fwmark(config.fwmark),
        ];
        if replace_peers {
            attributes.push(WireguardAttribute::Flags(
                WireguardDeviceFlags::ReplacePeers,
            ));
        }
        attributes.push(WireguardAttribute::Peers(vec![peer_message(
            &config.peer,
            false,
        )]));
        self.set(ifname, attributes)
    }

    /// Updates the endpoint and keepalive of an existing peer, keeping its session.
    pub fn update_peer(&mut self, ifname: &str, peer: &PeerConfig) -> Result<(), SystemError> {
        let attributes = vec![
            WireguardAttribute::IfName(ifname.to_string()),
            WireguardAttribute::Peers(vec![peer_message(peer, true)]),
        ];
        self.set(ifname, attributes)
    }

    fn set(
        &mut self,
        ifname: &str,
        attributes: Vec<WireguardAttribute>,
    ) -> Result<(), SystemError> {
        let request = self.message(WireguardMessage {
            cmd: WireguardCmd::SetDevice,
            attributes,
        });
        self.request(request, NLM_F_REQUEST | NLM_F_ACK)
            .map(|_| ())
            .map_err(io_err(format!("configuring WireGuard device {ifname}")))
    }
}

fn peer_message(peer: &PeerConfig, update_only: bool) -> WireguardPeer {
    let mut attributes = vec![WireguardPeerAttribute::PublicKey(peer.public_key)];
    if update_only {
        attributes.push(WireguardPeerAttribute::Flags(
            WireguardPeerFlags::UpdateOnly,
        ));
    } else {
        attributes.push(WireguardPeerAttribute::Flags(
            WireguardPeerFlags::ReplaceAllowedIps,
        ));
        attributes.push(WireguardPeerAttribute::AllowedIps(
            all_addresses().iter().map(allowed_ip).collect(),
        ));
    }
    if let Some(endpoint) = peer.endpoint {
        attributes.push(WireguardPeerAttribute::Endpoint(endpoint));
    }
    attributes.push(WireguardPeerAttribute::PersistentKeepalive(peer.keepalive));
    WireguardPeer(attributes)
}

fn allowed_ip(net: &IpNet) -> WireguardAllowedIp {
    let family = match net {
        IpNet::V4(_) => WireguardAddressFamily::Ipv4,
        IpNet::V6(_) => WireguardAddressFamily::Ipv6,
    };
    WireguardAllowedIp(vec![
        WireguardAllowedIpAttr::Family(family),
        WireguardAllowedIpAttr::IpAddr(net.addr()),
        WireguardAllowedIpAttr::Cidr(net.prefix_len()),
    ])
}

/// Adds what one message says about a peer (a large peer may span several messages).
fn merge_peer(peers: &mut Vec<Peer>, message: &WireguardPeer) {
    let Some(key) = message.iter().find_map(|a| match a {
        WireguardPeerAttribute::PublicKey(k) => Some(*k),
        _ => None,
    }) else {
        return;
    };
    let index = match peers.iter().position(|p| p.public_key == key) {
        Some(i) => i,
        None => {
            peers.push(Peer {
                public_key: key,
                ..Peer::default()
            });
            peers.len() - 1
        }
    };
    let peer = &mut peers[index];
    for attribute in message.iter() {
        match attribute {
            WireguardPeerAttribute::Endpoint(e) => peer.endpoint = Some(*e),
            WireguardPeerAttribute::PersistentKeepalive(k) => peer.keepalive = *k,
            WireguardPeerAttribute::LastHandshake(t) => {
                peer.last_handshake = (t.seconds > 0 || t.nano_seconds > 0).then(|| {
                    SystemTime::UNIX_EPOCH
                        + Duration::new(
                            u64::try_from(t.seconds).unwrap_or(0),
                            u32::try_from(t.nano_seconds).unwrap_or(0),
                        )
                });
            }
            WireguardPeerAttribute::RxBytes(b) => peer.rx_bytes = *b,
            WireguardPeerAttribute::TxBytes(b) => peer.tx_bytes = *b,
            WireguardPeerAttribute::AllowedIps(ips) => {
                for ip in ips {
                    let address = ip.iter().find_map(|a| match a {
                        WireguardAllowedIpAttr::IpAddr(a) => Some(*a),
                        _ => None,
                    });
                    let cidr = ip.iter().find_map(|a| match a {
                        WireguardAllowedIpAttr::Cidr(c) => Some(*c),
                        _ => None,
                    });
                    if let Some(net) = address.zip(cidr).and_then(|(a, c)| IpNet::new(a, c).ok()) {
                        peer.allowed_ips.push(net);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether this kernel can run WireGuard devices: the generic netlink family is there
/// (the module is loaded or built in), or the module loads on demand when a device of kind
/// `wireguard` is created (tried with a throwaway device, deleted at once).
pub async fn available(nl: &crate::Netlink) -> bool {
    if Genl::connect().is_ok() {
        return true;
    }
    let name = format!("brdprobe{}", std::process::id() % 100_000);
    match nl.add_wireguard(&name).await {
        Ok(_) => {
            let _ = nl.delete_link(&name).await;
            Genl::connect().is_ok()
        }
        Err(e) => {
            tracing::debug!("no kernel WireGuard: {e}");
            false
        }
    }
}
