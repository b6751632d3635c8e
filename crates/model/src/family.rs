//! The address family of a transport or endpoint: `ip4` or `ip6`, as ranet spells them.

use std::fmt;
use std::net::IpAddr;

/// An underlay address family (`address_family` in configs and registries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum AddressFamily {
    /// IPv4 (`ip4`).
    #[serde(rename = "ip4")]
    Ip4,
    /// IPv6 (`ip6`).
    #[serde(rename = "ip6")]
    Ip6,
}

impl AddressFamily {
    /// The names accepted, in the order of the variants.
    pub const NAMES: [&'static str; 2] = ["ip4", "ip6"];

    /// The family named `name`; `None` for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ip4" => Some(Self::Ip4),
            "ip6" => Some(Self::Ip6),
            _ => None,
        }
    }

    /// The family's name: `ip4` or `ip6`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ip4 => "ip4",
            Self::Ip6 => "ip6",
        }
    }

    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::Ip4,
            IpAddr::V6(_) => Self::Ip6,
        }
    }
}

impl fmt::Display for AddressFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
