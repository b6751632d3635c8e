//! braid's optional extensions to ranet's config: backend, address plan, routing, exit,
//! status listener and multi-path transports. Each is documented in docs/config.md.

use crate::family::AddressFamily;
use crate::problem::Collector;
use crate::read::{self, field_path};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};

/// Which WireGuard implementation carries the links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Kernel WireGuard when the module is available, else userspace.
    Auto,
    /// braid's userspace data plane (braid-link over a TUN device).
    Userspace,
    /// The kernel's WireGuard, configured over generic netlink.
    Kernel,
}

impl Backend {
    /// The names `backend` accepts, in the order of the variants.
    pub const NAMES: &'static [&'static str] = &["auto", "userspace", "kernel"];
    /// The variant named `name` in the config; `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "auto" => Some(Self::Auto),
            "userspace" => Some(Self::Userspace),
            "kernel" => Some(Self::Kernel),
            _ => None,
        }
    }
}

/// The network's address allocation, shared by every node (see docs/address-plan.md).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AddressPlanConfig {
    /// The network's IPv6 allocation, /64 or shorter; each node gets one /64 of it.
    pub ipv6: Ipv6Net,
    /// The IPv4 pool each node's /24 comes from; `None` turns IPv4 off.
    pub ipv4_pool: Option<Ipv4Net>,
    /// The bridge for the node's workloads, holding its ::1 and .254 addresses.
    pub bridge: String,
}

/// `address_plan.bridge` when unset.
pub const DEFAULT_BRIDGE: &str = "braid0";

/// `address_plan.ipv4_pool` when unset.
pub const DEFAULT_IPV4_POOL: &str = "10.0.0.0/8";

/// Reads `address_plan` at `path`; every problem goes to `c` (with its field path and
/// fix), and `None` comes back when there was one.
pub fn read_address_plan(
    c: &mut Collector,
    path: &str,
    value: &Value,
) -> Option<AddressPlanConfig> {
    let map = read::object(c, path, value, &["ipv6", "ipv4_pool", "bridge"])?;
    let bridge = read::optional(
        c,
        map,
        path,
        "bridge",
        DEFAULT_BRIDGE.to_string(),
        |c, p, v| read_named_interface(c, p, v, &BRIDGE),
    );
    let ipv6_path = field_path(path, "ipv6");
    let ipv6 = read::field(
        c,
        map,
        path,
        "ipv6",
        Some("add \"ipv6\": the network's IPv6 allocation, e.g. \"2001:db8:5e::/48\""),
    )
    .and_then(|v| read_allocation(c, &ipv6_path, v));
    let pool_path = field_path(path, "ipv4_pool");
    let ipv4_pool = match map.get("ipv4_pool") {
        None => DEFAULT_IPV4_POOL.parse().ok().map(Some),
        Some(Value::Null) => Some(None),
        Some(v) => read_ipv4_pool(c, &pool_path, v),
    };
    Some(AddressPlanConfig {
        ipv6: ipv6?,
        ipv4_pool: ipv4_pool?,
        bridge: bridge?,
    })
}

/// How problems word an interface name braid must be told (`address_plan.bridge`,
/// `exit.upstream_interface`).
struct NamedInterface {
    /// What it is, in problems: "bridge", "upstream interface".
    what: &'static str,
    /// The fix when it is not a string.
    string_fix: &'static str,
    /// The problem when it is empty: message and fix.
    empty: (&'static str, &'static str),
}

const BRIDGE: NamedInterface = NamedInterface {
    what: "bridge",
    string_fix: "write the bridge name as a string",
    empty: (
        "the bridge name is empty",
        "name the node's bridge, e.g. \"braid0\"",
    ),
};

const UPSTREAM: NamedInterface = NamedInterface {
    what: "upstream interface",
    string_fix: "write the interface name as a string",
    empty: (
        "the upstream interface is empty",
        "name the interface toward the upstream router, e.g. \"eth0\"",
    ),
};

/// The interface name at `path`: a string, not empty, and a name Linux accepts.
fn read_named_interface(
    c: &mut Collector,
    path: &str,
    value: &Value,
    named: &NamedInterface,
) -> Option<String> {
    let name = read::string(c, path, value, named.string_fix)?;
    if name.is_empty() {
        c.error(path, named.empty.0, named.empty.1);
    }
    crate::config::check_ifname(c, path, &name, named.what);
    Some(name)
}

/// `address_plan.ipv6` at `path`: an IPv6 network of /64 or shorter.
fn read_allocation(c: &mut Collector, path: &str, value: &Value) -> Option<Ipv6Net> {
    let text = read::string(
        c,
        path,
        value,
        "write the allocation as a string like \"2001:db8:5e::/48\"",
    )?;
    read_network(
        c,
        path,
        &text,
        "IPv6",
        64,
        "use the network's allocation: a /64 or a shorter prefix such as /48",
        "write it as address/length, e.g. \"2001:db8:5e::/48\"",
    )
}

/// `address_plan.ipv4_pool` at `path`: an IPv4 network of /24 or shorter, or `off`
/// (`Some(None)`).
fn read_ipv4_pool(c: &mut Collector, path: &str, value: &Value) -> Option<Option<Ipv4Net>> {
    let text = read::string(
        c,
        path,
        value,
        "write the pool as a string like \"10.0.0.0/8\", or \"off\"",
    )?;
    if text == "off" {
        return Some(None);
    }
    read_network(
        c,
        path,
        &text,
        "IPv4",
        24,
        "use a /24 or shorter pool, e.g. \"10.0.0.0/8\"",
        "write it as address/length, e.g. \"10.0.0.0/8\", or \"off\"",
    )
    .map(Some)
}

/// `text` (at `path`) as a network of `family` ("IPv6", "IPv4") that leaves each node a
/// whole /`node_len`: no longer than that, no host bits. `longer_fix` and `syntax_fix` are
/// the fixes for a longer prefix and for text that is no prefix of the family.
fn read_network<N>(
    c: &mut Collector,
    path: &str,
    text: &str,
    family: &str,
    node_len: u8,
    longer_fix: &str,
    syntax_fix: &str,
) -> Option<N>
where
    N: std::str::FromStr + Copy + Into<IpNet>,
{
    let Ok(net) = text.parse::<N>() else {
        c.error(
            path,
            format!("`{text}` is not an {family} prefix"),
            syntax_fix,
        );
        return None;
    };
    let ip: IpNet = net.into();
    if ip.prefix_len() > node_len {
        c.error(
            path,
            format!("{ip} is longer than /{node_len}; each node needs a whole /{node_len}"),
            longer_fix,
        );
        return None;
    }
    if ip.network() != ip.addr() {
        c.error(
            path,
            format!("{ip} has host bits set"),
            format!("write the network address: {}", ip.trunc()),
        );
        return None;
    }
    Some(net)
}

/// How routes between nodes are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutingMode {
    /// Links only; the operator runs their own routing.
    None,
    /// Each peer's prefixes over the link to that peer, default route to the exit.
    Static,
    /// babeld, driven live over its control socket.
    Babel,
    /// BIRD 2's babel protocol, configured and reloaded by braid.
    Bird,
}

impl RoutingMode {
    /// The names `routing.mode` accepts, in the order of the variants.
    pub const NAMES: &'static [&'static str] = &["none", "static", "babel", "bird"];
    /// The variant named `name` in the config; `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "static" => Some(Self::Static),
            "babel" => Some(Self::Babel),
            "bird" => Some(Self::Bird),
            _ => None,
        }
    }
    /// The mode's name in the config.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// The `routing` object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoutingConfig {
    /// How routes are made (`mode`).
    pub mode: RoutingMode,
    /// Babel hello interval in seconds.
    pub hello_interval: u16,
    /// How often each userspace link sends a keepalive to prove it is alive, in
    /// milliseconds; 0 turns braid's fast liveness off. Used in modes `static`, `babel`
    /// and `bird` (see docs/routing.md, "Link liveness").
    pub liveness_interval_ms: u32,
    /// How long a link that was up may stay silent before braid declares it dead (its
    /// interface loses carrier and the routing engine routes around it), in milliseconds.
    pub dead_after_ms: u32,
}

/// The default of `routing.hello_interval` (s): babeld's default is 4 s, but a Babel
/// neighbour whose link came back is used again only after its IHU, sent every third hello
/// (braid's links hello faster than this, see docs/routing.md, "Link liveness"; measured
/// with braid's liveness and links at the hello interval: 3.5-5 s at 1 s, 17 s at 4 s).
pub const DEFAULT_HELLO_INTERVAL: u16 = 1;
/// The default of `routing.liveness_interval_ms`: 5 keepalives a second per link.
pub const DEFAULT_LIVENESS_INTERVAL_MS: u32 = 200;
/// The default of `routing.dead_after_ms`: three keepalives missed, and 100 ms of slack.
pub const DEFAULT_DEAD_AFTER_MS: u32 = 700;

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            mode: RoutingMode::None,
            hello_interval: DEFAULT_HELLO_INTERVAL,
            liveness_interval_ms: DEFAULT_LIVENESS_INTERVAL_MS,
            dead_after_ms: DEFAULT_DEAD_AFTER_MS,
        }
    }
}

impl RoutingConfig {
    /// braid's fast link liveness as (keepalive interval, dead after), when on: in the
    /// routing modes where braid acts on it, with a non-zero interval.
    pub fn liveness(&self) -> Option<(std::time::Duration, std::time::Duration)> {
        let on = matches!(
            self.mode,
            RoutingMode::Static | RoutingMode::Babel | RoutingMode::Bird
        );
        (on && self.liveness_interval_ms > 0).then(|| {
            (
                std::time::Duration::from_millis(u64::from(self.liveness_interval_ms)),
                std::time::Duration::from_millis(u64::from(self.dead_after_ms)),
            )
        })
    }
}

/// Reads `routing` at `path`; problems go to `c`, `None` when there was one.
pub fn read_routing(c: &mut Collector, path: &str, value: &Value) -> Option<RoutingConfig> {
    let map = read::object(
        c,
        path,
        value,
        &[
            "mode",
            "hello_interval",
            "liveness_interval_ms",
            "dead_after_ms",
        ],
    )?;
    let default = RoutingConfig::default();
    let mode = read::optional(c, map, path, "mode", default.mode, |c, p, v| {
        read::choice(c, p, v, RoutingMode::NAMES).and_then(RoutingMode::from_name)
    });
    let hello_interval = read::optional_integer(
        c,
        map,
        path,
        "hello_interval",
        default.hello_interval,
        1..=600,
        "use seconds in 1..=600 (braid's default is 1, babeld's 4)",
    );
    let interval = read::optional_integer(
        c,
        map,
        path,
        "liveness_interval_ms",
        default.liveness_interval_ms,
        0..=60_000,
        "use milliseconds in 0..=60000 (0 turns braid's link liveness off; default 200)",
    );
    let dead_after = read::optional_integer(
        c,
        map,
        path,
        "dead_after_ms",
        default.dead_after_ms,
        50..=600_000,
        "use milliseconds in 50..=600000 (default 700)",
    );
    if let (Some(interval), Some(dead_after)) = (interval, dead_after) {
        check_dead_after(c, path, interval, dead_after);
    }
    Some(RoutingConfig {
        mode: mode?,
        hello_interval: hello_interval?,
        liveness_interval_ms: interval?,
        dead_after_ms: dead_after?,
    })
}

/// `routing.dead_after_ms` must cover two keepalives (when liveness is on), or one lost
/// keepalive would declare the link dead.
fn check_dead_after(c: &mut Collector, path: &str, interval: u32, dead_after: u32) {
    let (i, d) = (interval, dead_after);
    if i > 0 && d < 2 * i {
        c.error(
            &field_path(path, "dead_after_ms"),
            format!(
                "{d} ms is less than two keepalives ({i} ms each, liveness_interval_ms): one lost keepalive would declare the link dead"
            ),
            format!("use at least {} ms, or a shorter liveness_interval_ms", 2 * i),
        );
    }
}

/// This node is an exit: it has an upstream and holds the default route.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExitConfig {
    /// The interface toward the upstream router.
    pub upstream_interface: String,
    /// The upstream router's IPv6 address (link-local or global).
    pub gateway6: Option<IpAddr>,
    /// The upstream router's IPv4 address.
    pub gateway4: Option<IpAddr>,
    /// Masquerade IPv4 from the pool to the upstream (default true).
    pub masquerade: bool,
    /// The `exit_preference` `braid meta` and `braid init` put in this node's registry
    /// entry (lower is preferred); `DEFAULT_EXIT_PREFERENCE` when not set.
    pub preference: u32,
}

/// The exit preference an exit advertises when its config names none.
pub const DEFAULT_EXIT_PREFERENCE: u32 = 100;

/// Reads `exit` at `path`; problems go to `c`, `None` when there was one.
pub fn read_exit(c: &mut Collector, path: &str, value: &Value) -> Option<ExitConfig> {
    let map = read::object(
        c,
        path,
        value,
        &[
            "upstream_interface",
            "gateway6",
            "gateway4",
            "masquerade",
            "preference",
        ],
    )?;
    let ifpath = field_path(path, "upstream_interface");
    let upstream_interface = read::field(
        c,
        map,
        path,
        "upstream_interface",
        Some("add \"upstream_interface\": the interface toward the upstream router, e.g. \"eth0\""),
    )
    .and_then(|v| read_named_interface(c, &ifpath, v, &UPSTREAM));
    let gateway6 = read::optional(c, map, path, "gateway6", None, |c, p, v| {
        read_gateway(c, p, v, AddressFamily::Ip6).map(Some)
    });
    let gateway4 = read::optional(c, map, path, "gateway4", None, |c, p, v| {
        read_gateway(c, p, v, AddressFamily::Ip4).map(Some)
    });
    let masquerade = read::optional(c, map, path, "masquerade", true, read::boolean);
    let preference = read::optional_integer(
        c,
        map,
        path,
        "preference",
        DEFAULT_EXIT_PREFERENCE,
        0..=u32::MAX,
        "use a whole number; the exit with the lowest preference is used first",
    );
    if let (Some(None), Some(None)) = (&gateway6, &gateway4) {
        c.error(
            path,
            "an exit needs at least one upstream gateway",
            "add \"gateway6\" and/or \"gateway4\": the upstream router's addresses",
        );
    }
    Some(ExitConfig {
        upstream_interface: upstream_interface?,
        gateway6: gateway6?,
        gateway4: gateway4?,
        masquerade: masquerade?,
        preference: preference?,
    })
}

/// An exit's `gateway6` or `gateway4` at `path`: an address of `family`.
fn read_gateway(
    c: &mut Collector,
    path: &str,
    value: &Value,
    family: AddressFamily,
) -> Option<IpAddr> {
    let text = read::string(c, path, value, "write the gateway address as a string")?;
    match text.parse::<IpAddr>() {
        Ok(ip) if AddressFamily::of(ip) == family => Some(ip),
        _ => {
            c.error(
                path,
                format!("`{text}` is not an {family} address"),
                format!("write the upstream router's {family} address"),
            );
            None
        }
    }
}

/// Where the HTTP status and metrics listener listens.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatusConfig {
    /// `None` when turned off.
    pub listen: Option<SocketAddr>,
}

/// `status.listen` when unset.
pub const DEFAULT_STATUS_LISTEN: &str = "127.0.0.1:8091";

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_STATUS_LISTEN.parse().ok(),
        }
    }
}

/// Reads `status` at `path`; problems go to `c`, `None` when there was one.
pub fn read_status(c: &mut Collector, path: &str, value: &Value) -> Option<StatusConfig> {
    let map = read::object(c, path, value, &["listen"])?;
    let p = field_path(path, "listen");
    match read::field(c, map, path, "listen", None) {
        None => Some(StatusConfig::default()),
        Some(v) => read::string(c, &p, v, "write \"127.0.0.1:8091\" or \"off\"").and_then(|text| {
            if text == "off" {
                return Some(StatusConfig { listen: None });
            }
            match text.parse::<SocketAddr>() {
                Ok(addr) => Some(StatusConfig { listen: Some(addr) }),
                Err(_) => {
                    c.error(
                        &p,
                        format!("`{text}` is not an address:port"),
                        "write e.g. \"127.0.0.1:8091\" or \"[::1]:8091\", or \"off\"",
                    );
                    None
                }
            }
        }),
    }
}

/// How a multi-path link spreads packets over its paths (docs/bonding.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheduler {
    /// A flow (5-tuple hash) stays on one path.
    Flow,
    /// Packets in turn over the live paths.
    RoundRobin,
    /// Packets over the live paths in proportion to their weights (or measured capacity).
    Weighted,
    /// Every packet on every live path.
    Redundant,
    /// Everything on the live path of lowest priority.
    Backup,
    /// Each packet on the path where it is expected to arrive first (the default).
    EarliestArrival,
}

impl Scheduler {
    /// The names `scheduler` accepts.
    pub const NAMES: &'static [&'static str] = &[
        "earliest-arrival",
        "flow",
        "round-robin",
        "weighted",
        "redundant",
        "backup",
    ];
    /// The variant named `name` in the config; `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "earliest-arrival" => Some(Self::EarliestArrival),
            "flow" => Some(Self::Flow),
            "round-robin" => Some(Self::RoundRobin),
            "weighted" => Some(Self::Weighted),
            "redundant" => Some(Self::Redundant),
            "backup" => Some(Self::Backup),
            _ => None,
        }
    }
}

/// One underlay path of a transport: a local interface or a source address.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PathConfig {
    /// The local interface the path's socket is bound to (SO_BINDTODEVICE).
    pub interface: Option<String>,
    /// The local source address the path's socket is bound to.
    pub source: Option<IpAddr>,
    /// Share of traffic for the weighted scheduler; `None` means "measure it".
    pub weight: Option<u32>,
    /// Lower is preferred by the backup scheduler.
    pub priority: u32,
    /// Send at most this many Mbit/s on this path.
    pub rate_mbit: Option<u32>,
}

/// Reads one `paths` entry at `path` (its address family checked against `family`);
/// problems go to `c`, `None` when there was one.
pub fn read_path(
    c: &mut Collector,
    path: &str,
    value: &Value,
    family: Option<AddressFamily>,
) -> Option<PathConfig> {
    let map = read::object(
        c,
        path,
        value,
        &["interface", "source", "weight", "priority", "rate_mbit"],
    )?;
    let interface = read::optional(c, map, path, "interface", None, |c, p, v| {
        let name = read::string(c, p, v, "write the interface name as a string")?;
        crate::config::check_ifname(c, p, &name, "path interface");
        Some(Some(name))
    });
    let source = read::optional(c, map, path, "source", None, |c, p, v| {
        read_source(c, p, v, family).map(Some)
    });
    if let (Some(None), Some(None)) = (&interface, &source) {
        c.error(
            path,
            "a path needs an interface or a source address",
            "add \"interface\": \"wan0\" or \"source\": \"192.0.2.10\"",
        );
    }
    let weight = read::optional(c, map, path, "weight", None, |c, p, v| {
        let fix = "use a weight in 1..=1000000, or leave it out to weigh by measured capacity";
        read::integer(c, p, v, 1, 1_000_000, fix).map(|n| Some(n as u32))
    });
    let fix = "use a whole number; lower is preferred";
    let priority = read::optional_integer(c, map, path, "priority", 0, 0..=u32::MAX, fix);
    let rate_mbit = read::optional(c, map, path, "rate_mbit", None, |c, p, v| {
        let fix = "use Mbit/s in 1..=1000000, or leave it out for no cap";
        read::integer(c, p, v, 1, 1_000_000, fix).map(|n| Some(n as u32))
    });
    Some(PathConfig {
        interface: interface?,
        source: source?,
        weight: weight?,
        priority: priority?,
        rate_mbit: rate_mbit?,
    })
}

/// A path's `source` at `path`: a local address of the transport's `family` (any family
/// while the transport's is unknown).
fn read_source(
    c: &mut Collector,
    path: &str,
    value: &Value,
    family: Option<AddressFamily>,
) -> Option<IpAddr> {
    let text = read::string(c, path, value, "write the source address as a string")?;
    match text.parse::<IpAddr>() {
        Ok(ip) if family.is_none_or(|f| f == AddressFamily::of(ip)) => Some(ip),
        Ok(ip) => {
            c.error(
                path,
                format!("{ip} is not an address of this transport's family"),
                "use a source address of the transport's address family",
            );
            None
        }
        Err(_) => {
            c.error(
                path,
                format!("`{text}` is not an IP address"),
                "write a local IP address such as \"192.0.2.10\"",
            );
            None
        }
    }
}

/// Reads a node's `lan_subnets` (registry extension): the prefixes of the LANs behind the
/// node that use the mesh with their own addresses (a home or office network that keeps
/// its numbering). Each is an IPv4 or IPv6 prefix without host bits, not a default route;
/// the node's peers route them over their links to the node, and an exit with
/// `masquerade` translates their IPv4 like the pool's. See docs/registry.md.
pub fn read_lan_subnets(c: &mut Collector, path: &str, value: &Value) -> Option<Vec<IpNet>> {
    let items = read::array(
        c,
        path,
        value,
        "write the LAN subnets as a list of prefixes, e.g. [\"192.0.2.0/24\"]",
    )?;
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let item_path = read::index_path(path, i);
        let Some(text) = read::string(
            c,
            &item_path,
            item,
            "write the subnet as a string like \"192.0.2.0/24\"",
        ) else {
            ok = false;
            continue;
        };
        match text.parse::<IpNet>() {
            Ok(net) if net.prefix_len() == 0 => {
                ok = false;
                c.error(
                    &item_path,
                    format!("{net} is a default route, not a LAN"),
                    "list the LAN's own prefix, e.g. \"192.0.2.0/24\"; default routes come from exits",
                );
            }
            Ok(net) if net.network() != net.addr() => {
                ok = false;
                c.error(
                    &item_path,
                    format!("{net} has host bits set"),
                    format!("write the network address: {}", net.trunc()),
                );
            }
            Ok(net) if out.contains(&net) => {
                ok = false;
                c.error(
                    &item_path,
                    format!("{net} is listed twice"),
                    "list each LAN subnet once",
                );
            }
            Ok(net) => out.push(net),
            Err(_) => {
                ok = false;
                c.error(
                    &item_path,
                    format!("`{text}` is not an IP prefix"),
                    "write it as address/length, e.g. \"192.0.2.0/24\" or \"2001:db8:1::/48\"",
                );
            }
        }
    }
    ok.then_some(out)
}
