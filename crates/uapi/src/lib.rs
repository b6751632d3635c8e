//! WireGuard's cross-platform userspace API, the text protocol that `wg` speaks to
//! `/var/run/wireguard/<ifname>.sock`: `get=1` and `set=1` requests, each ended by a blank
//! line, answered with `key=value` lines and `errno=N`. This crate parses requests and
//! formats replies; the socket lives in the data plane. Keys are lowercase hex.

use ipnet::IpNet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

/// errno values the protocol uses in replies: negated, as wireguard-go sends them and as
/// `wg` reads them (`errno=-22`).
pub mod errno {
    /// Bad request syntax or value.
    pub const EINVAL: i32 = -22;
    /// A request the device understands but does not allow (braid's links have one fixed peer).
    pub const EPERM: i32 = -1;
    /// A key this implementation does not support.
    pub const EPROTO: i32 = -71;
}

/// Why a request could not be parsed; [`ParseError::errno`] gives the reply's `errno=`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The request had no lines before its blank line.
    #[error("empty request")]
    Empty,
    /// The first line was neither `get=1` nor `set=1`.
    #[error("unknown operation `{0}`; expected get=1 or set=1")]
    UnknownOperation(String),
    /// A line without `=`.
    #[error("line `{0}` is not key=value")]
    NotKeyValue(String),
    /// A known key with a value that does not parse (hex key, number, address or prefix).
    #[error("bad value for {key}: `{value}`")]
    BadValue {
        /// The key as sent.
        key: String,
        /// The value as sent.
        value: String,
    },
    /// A key outside the protocol's set (or one braid does not implement); answered with `EPROTO`.
    #[error("unknown key `{0}`")]
    UnknownKey(String),
    /// A peer-level key (e.g. `endpoint`) before any `public_key=` line opened a peer.
    #[error("`{0}` must follow a public_key line")]
    OutsidePeer(String),
}

impl ParseError {
    /// The errno a device answers this error with.
    pub fn errno(&self) -> i32 {
        match self {
            Self::UnknownKey(_) => errno::EPROTO,
            _ => errno::EINVAL,
        }
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `get=1`: report the device and its peers ([`DeviceInfo`]).
    Get,
    /// `set=1`: change the device and its peers.
    Set(SetDevice),
}

/// The device-level part of a `set=1` request, then its peers in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetDevice {
    /// `private_key=`: the device's new X25519 private key (32 bytes, sent as 64 hex digits).
    pub private_key: Option<[u8; 32]>,
    /// `listen_port=`: the UDP port to listen on; 0 picks one.
    pub listen_port: Option<u16>,
    /// `fwmark=`: the mark on outgoing packets; 0 removes it.
    pub fwmark: Option<u32>,
    /// `replace_peers=true`: remove every peer not listed in this request.
    pub replace_peers: bool,
    /// The `public_key=` sections of the request, in order.
    pub peers: Vec<SetPeer>,
}

/// One `public_key=` section of a `set=1` request: the peer to add, change or remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetPeer {
    /// `public_key=`: which peer (X25519 public key, 32 bytes).
    pub public_key: [u8; 32],
    /// `remove=true`: remove this peer.
    pub remove: bool,
    /// `update_only=true`: change the peer only if it exists; never add it.
    pub update_only: bool,
    /// `preshared_key=`: the optional symmetric key mixed into handshakes (32 bytes; all zero removes it).
    pub preshared_key: Option<[u8; 32]>,
    /// `endpoint=`: where to send the peer's packets.
    pub endpoint: Option<SocketAddr>,
    /// `persistent_keepalive_interval=`: seconds between keepalives; 0 turns them off.
    pub persistent_keepalive: Option<u16>,
    /// `replace_allowed_ips=true`: drop the peer's allowed IPs before adding this request's.
    pub replace_allowed_ips: bool,
    /// `allowed_ip=` lines: prefixes whose packets go to (and may come from) this peer.
    pub allowed_ips: Vec<IpNet>,
}

fn hex_key(key: &str, value: &str) -> Result<[u8; 32], ParseError> {
    let bad = || ParseError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
    };
    if value.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(value.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok(out)
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ParseError> {
    value.parse().map_err(|_| ParseError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
    })
}

fn flag(key: &str, value: &str) -> Result<bool, ParseError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ParseError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
        }),
    }
}

/// Parses one request: its lines without the terminating blank line.
pub fn parse_request(text: &str) -> Result<Request, ParseError> {
    let mut lines = text.lines().filter(|l| !l.is_empty());
    match lines.next() {
        None => Err(ParseError::Empty),
        Some("get=1") => Ok(Request::Get),
        Some("set=1") => parse_set(lines).map(Request::Set),
        Some(other) => Err(ParseError::UnknownOperation(other.to_string())),
    }
}

fn parse_set<'a>(lines: impl Iterator<Item = &'a str>) -> Result<SetDevice, ParseError> {
    let mut device = SetDevice::default();
    for line in lines {
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| ParseError::NotKeyValue(line.to_string()))?;
        if key == "public_key" {
            device.peers.push(SetPeer {
                public_key: hex_key(key, value)?,
                ..SetPeer::default()
            });
            continue;
        }
        if let Some(peer) = device.peers.last_mut() {
            match key {
                "remove" => peer.remove = flag(key, value)?,
                "update_only" => peer.update_only = flag(key, value)?,
                "preshared_key" => peer.preshared_key = Some(hex_key(key, value)?),
                "endpoint" => peer.endpoint = Some(parse_endpoint(value)?),
                "persistent_keepalive_interval" => {
                    peer.persistent_keepalive = Some(number(key, value)?)
                }
                "replace_allowed_ips" => peer.replace_allowed_ips = flag(key, value)?,
                "allowed_ip" => peer.allowed_ips.push(number(key, value)?),
                "protocol_version" if value == "1" => {}
                "protocol_version" => {
                    return Err(ParseError::BadValue {
                        key: key.into(),
                        value: value.into(),
                    });
                }
                _ => return Err(ParseError::UnknownKey(key.to_string())),
            }
            continue;
        }
        match key {
            "private_key" => device.private_key = Some(hex_key(key, value)?),
            "listen_port" => device.listen_port = Some(number(key, value)?),
            "fwmark" => device.fwmark = Some(number(key, value)?),
            "replace_peers" => device.replace_peers = flag(key, value)?,
            "remove"
            | "update_only"
            | "preshared_key"
            | "endpoint"
            | "persistent_keepalive_interval"
            | "replace_allowed_ips"
            | "allowed_ip" => {
                return Err(ParseError::OutsidePeer(key.to_string()));
            }
            _ => return Err(ParseError::UnknownKey(key.to_string())),
        }
    }
    Ok(device)
}

/// `endpoint=` takes `ip:port` or `[ipv6]:port`.
fn parse_endpoint(value: &str) -> Result<SocketAddr, ParseError> {
    number("endpoint", value)
}

/// What a `get=1` reply reports: one device with (for braid) one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device's X25519 private key (32 bytes; `private_key=` as hex).
    pub private_key: [u8; 32],
    /// The UDP port the device listens on (`listen_port=`).
    pub listen_port: u16,
    /// The mark on outgoing packets (`fwmark=`); 0 for none.
    pub fwmark: u32,
    /// The device's peers (for braid, one).
    pub peers: Vec<PeerInfo>,
}

/// One peer in a `get=1` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's X25519 public key (32 bytes; `public_key=` as hex).
    pub public_key: [u8; 32],
    /// The preshared key (32 bytes; all zero when none).
    pub preshared_key: [u8; 32],
    /// The peer's current endpoint, if known (`endpoint=`).
    pub endpoint: Option<SocketAddr>,
    /// Time since the UNIX epoch of the last handshake; `None` if never.
    pub last_handshake: Option<Duration>,
    /// Bytes received from the peer (`rx_bytes=`), counted as the device counts them.
    pub rx_bytes: u64,
    /// Bytes sent to the peer (`tx_bytes=`).
    pub tx_bytes: u64,
    /// Seconds between keepalives (`persistent_keepalive_interval=`); 0 when off.
    pub persistent_keepalive: u16,
    /// The peer's allowed IPs (`allowed_ip=` lines).
    pub allowed_ips: Vec<IpNet>,
}

fn hex(key: &[u8; 32]) -> String {
    key.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Formats the reply to `get=1`, ending with `errno=0` and the blank line.
pub fn format_get(device: &DeviceInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "private_key={}", hex(&device.private_key));
    let _ = writeln!(out, "listen_port={}", device.listen_port);
    if device.fwmark != 0 {
        let _ = writeln!(out, "fwmark={}", device.fwmark);
    }
    for peer in &device.peers {
        let _ = writeln!(out, "public_key={}", hex(&peer.public_key));
        let _ = writeln!(out, "preshared_key={}", hex(&peer.preshared_key));
        let _ = writeln!(out, "protocol_version=1");
        if let Some(endpoint) = peer.endpoint {
            let _ = writeln!(out, "endpoint={endpoint}");
        }
        let handshake = peer.last_handshake.unwrap_or_default();
        let _ = writeln!(out, "last_handshake_time_sec={}", handshake.as_secs());
        let _ = writeln!(out, "last_handshake_time_nsec={}", handshake.subsec_nanos());
        let _ = writeln!(out, "tx_bytes={}", peer.tx_bytes);
        let _ = writeln!(out, "rx_bytes={}", peer.rx_bytes);
        let _ = writeln!(
            out,
            "persistent_keepalive_interval={}",
            peer.persistent_keepalive
        );
        for ip in &peer.allowed_ips {
            let _ = writeln!(out, "allowed_ip={ip}");
        }
    }
    out.push_str("errno=0\n\n");
    out
}

/// Formats the reply to `set=1` (or to a request that failed).
pub fn format_errno(errno: i32) -> String {
    format!("errno={errno}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a";

    #[test]
    fn get_is_recognised() {
        assert_eq!(parse_request("get=1\n"), Ok(Request::Get));
    }

    #[test]
    fn set_with_device_and_peer_fields() {
        let text = format!(
            "set=1\nprivate_key={KEY}\nlisten_port=51820\nfwmark=54\nreplace_peers=true\npublic_key={KEY}\nendpoint=[2001:db8::1]:51820\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=0.0.0.0/0\nallowed_ip=::/0\n"
        );
        let Ok(Request::Set(set)) = parse_request(&text) else {
            panic!()
        };
        assert_eq!(set.listen_port, Some(51820));
        assert_eq!(set.fwmark, Some(54));
        assert!(set.replace_peers);
        assert_eq!(set.private_key.unwrap()[0], 0xe8);
        let peer = &set.peers[0];
        assert_eq!(peer.endpoint, Some("[2001:db8::1]:51820".parse().unwrap()));
        assert_eq!(peer.persistent_keepalive, Some(25));
        assert_eq!(peer.allowed_ips.len(), 2);
    }

    #[test]
    fn bad_requests_have_errnos() {
        assert_eq!(parse_request(""), Err(ParseError::Empty));
        assert!(matches!(
            parse_request("frob=1"),
            Err(ParseError::UnknownOperation(_))
        ));
        assert!(matches!(
            parse_request("set=1\nlisten_port=99999"),
            Err(ParseError::BadValue { .. })
        ));
        assert!(matches!(
            parse_request("set=1\nprivate_key=zz"),
            Err(ParseError::BadValue { .. })
        ));
        assert!(matches!(
            parse_request("set=1\nendpoint=192.0.2.1:1"),
            Err(ParseError::OutsidePeer(_))
        ));
        let unknown = parse_request("set=1\nfrobnicate=1").unwrap_err();
        assert_eq!(unknown.errno(), errno::EPROTO);
        assert!(matches!(
            parse_request("set=1\nnoequals"),
            Err(ParseError::NotKeyValue(_))
        ));
    }

    #[test]
    fn get_reply_has_what_wg_show_reads() {
        let device = DeviceInfo {
            private_key: [1; 32],
            listen_port: 50102,
            fwmark: 54,
            peers: vec![PeerInfo {
                public_key: [2; 32],
                endpoint: Some("192.0.2.2:50104".parse().unwrap()),
                last_handshake: Some(Duration::new(1_700_000_000, 5)),
                rx_bytes: 10,
                tx_bytes: 20,
                allowed_ips: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
                ..PeerInfo::default()
            }],
        };
        let text = format_get(&device);
        for line in [
            "listen_port=50102\n",
            "fwmark=54\n",
            "endpoint=192.0.2.2:50104\n",
            "last_handshake_time_sec=1700000000\n",
            "last_handshake_time_nsec=5\n",
            "rx_bytes=10\n",
            "tx_bytes=20\n",
            "allowed_ip=::/0\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(text.ends_with("errno=0\n\n"));
        assert!(text.starts_with(&format!("private_key={}\n", "01".repeat(32))));
    }
}
