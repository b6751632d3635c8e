//! Endpoint addresses: an IP literal or a DNS name, as the registry and config allow.

use crate::family::AddressFamily;
use crate::problem::Collector;
use crate::read::{self, field_path};
use serde_json::{Map, Value};
use std::net::IpAddr;

/// Where a node can be dialled. DNS names are resolved by the I/O layers, never here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(untagged)]
pub enum Host {
    /// An IP address.
    Ip(IpAddr),
    /// A DNS name, resolved when dialling.
    Name(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// Parses an address field: empty means "none" (a node others cannot dial).
/// Returns a message and a fix when the text is neither an IP of `family` nor a DNS name.
pub fn parse_host(
    text: &str,
    family: Option<AddressFamily>,
) -> Result<Option<Host>, (String, String)> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        if let Some(family) = family
            && AddressFamily::of(ip) != family
        {
            return Err((
                format!(
                    "`{text}` is an {} address but the address family is {family}",
                    AddressFamily::of(ip)
                ),
                format!(
                    "give an {family} address here, or change address_family to {}",
                    AddressFamily::of(ip)
                ),
            ));
        }
        return Ok(Some(Host::Ip(ip)));
    }
    if is_dns_name(text) {
        return Ok(Some(Host::Name(text.trim_end_matches('.').to_string())));
    }
    Err((
        format!("`{text}` is neither an IP address nor a DNS name"),
        "write a bare IP literal (no port, no brackets) or a host name such as node1.example.net; leave it empty for a node behind NAT".to_string(),
    ))
}

fn is_dns_name(text: &str) -> bool {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    // A name made only of digits and dots is a malformed IPv4 literal, not a host name.
    labels_ok && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Reads the required `address_family` field of a transport or endpoint.
pub fn read_family(
    c: &mut Collector,
    map: &Map<String, Value>,
    path: &str,
) -> Option<AddressFamily> {
    read::field(
        c,
        map,
        path,
        "address_family",
        Some("add \"address_family\": \"ip4\" or \"ip6\""),
    )
    .and_then(|v| {
        read::choice(
            c,
            &field_path(path, "address_family"),
            v,
            &AddressFamily::NAMES,
        )
    })
    .and_then(AddressFamily::from_name)
}

/// Reads the optional `address` field of a transport or endpoint: `Some(None)` when it is
/// missing or empty, `None` (with the problem recorded) when it is bad.
pub fn read_address(
    c: &mut Collector,
    map: &Map<String, Value>,
    path: &str,
    family: Option<AddressFamily>,
) -> Option<Option<Host>> {
    let at = field_path(path, "address");
    match read::field(c, map, path, "address", None) {
        None => Some(None),
        Some(v) => read::string(
            c,
            &at,
            v,
            "write the address as a string, or \"\" when others cannot dial this node",
        )
        .and_then(|text| match parse_host(&text, family) {
            Ok(host) => Some(host),
            Err((message, fix)) => {
                c.error(&at, message, fix);
                None
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_literals_names_and_empty() {
        assert_eq!(parse_host("", None), Ok(None));
        assert!(matches!(
            parse_host("192.0.2.1", Some(AddressFamily::Ip4)),
            Ok(Some(Host::Ip(_)))
        ));
        assert!(matches!(
            parse_host("2001:db8::1", Some(AddressFamily::Ip6)),
            Ok(Some(Host::Ip(_)))
        ));
        assert_eq!(
            parse_host("example.com", Some(AddressFamily::Ip6)),
            Ok(Some(Host::Name("example.com".into())))
        );
    }

    #[test]
    fn rejects_ports_spaces_wrong_family_and_bad_ipv4() {
        assert!(parse_host("192.0.2.1:80", None).is_err());
        assert!(parse_host("exa mple.com", None).is_err());
        assert!(parse_host("2001:db8::1", Some(AddressFamily::Ip4)).is_err());
        assert!(parse_host("192.0.2.300", None).is_err());
        assert!(parse_host("-bad.example", None).is_err());
    }
}
