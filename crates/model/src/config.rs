//! The node config: ranet's WireGuard-era config, unchanged, plus optional braid extensions.
//! See docs/config.md for every field.

use crate::extensions::{
    self, AddressPlanConfig, Backend, ExitConfig, PathConfig, RoutingConfig, Scheduler,
    StatusConfig,
};
use crate::family::AddressFamily;
use crate::host::Host;
use crate::keyfile::KeyFileReader;
use crate::keys::PrivateKey;
use crate::problem::{Collector, Problems};
use crate::read::{self, field_path, index_path};
use crate::source::{RegistryOptions, RegistrySource};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Linux limits interface names to 15 bytes (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;
/// Links carry IPv6, which needs at least 1280 bytes.
pub const MTU_MIN: u64 = 1280;
/// The largest `mtu` accepted (an IP packet's limit).
pub const MTU_MAX: u64 = 65535;
/// `mtu` when unset: 1500 less WireGuard's 80 bytes over IPv6 (wg-quick's default).
pub const DEFAULT_MTU: u32 = 1420;
/// `stale_group` when unset.
pub const DEFAULT_STALE_GROUP: u32 = 1;
/// `active_group` when unset.
pub const DEFAULT_ACTIVE_GROUP: u32 = 2;
/// `control_socket` when unset.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/braid/braid.sock";

/// A node's config file (docs/config.md), validated: ranet's fields and braid's extensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Path of the registry file, as written (relative paths are relative to the config file).
    pub registry: String,
    /// The same, classified: a path or a URL (`file://`, `https://`).
    pub registry_source: RegistrySource,
    /// Trusted signing keys, refresh period, CA file and cache of the registry.
    pub registry_options: RegistryOptions,
    /// This node's X25519 private key (`private_key` or `private_key_file`).
    pub private_key: PrivateKey,
    /// The file the private key was read from (`private_key_file`, as written); `None` when
    /// the key is inline (`private_key`).
    pub private_key_file: Option<String>,
    /// This node's name and index for its registry entry (`braid meta`); extensions.
    pub name: Option<String>,
    /// This node's index in the address plan (`index`).
    pub index: Option<u64>,
    /// VRF enslaving the links; empty for none.
    pub vrf: String,
    /// Interface group links move to before reconciling; what stays there is deleted.
    pub stale_group: u32,
    /// Interface group of live links; differs from `stale_group`.
    pub active_group: u32,
    /// The transports (`transport`): one underlay family, port and prefix each.
    pub transports: Vec<Transport>,
    /// Free-form fields for humans, copied into `braid meta`.
    pub remarks: BTreeMap<String, Value>,
    // braid extensions
    /// Which WireGuard carries the links (`backend`).
    pub backend: Backend,
    /// Network namespace holding the overlay (RAIT's isolation); `None` for the current one.
    pub netns: Option<String>,
    /// The network's address allocation (`address_plan`).
    pub address_plan: Option<AddressPlanConfig>,
    /// How routes are made (`routing`).
    pub routing: RoutingConfig,
    /// This node as an exit to the outside (`exit`); `None`: not an exit.
    pub exit: Option<ExitConfig>,
    /// The HTTP status and metrics listener (`status`).
    pub status: StatusConfig,
    /// Where `braid run` serves `reload`, `status` and `down` (absolute path).
    pub control_socket: String,
}

/// One `transport` entry: the links of one underlay address family.
#[derive(Debug, Clone, PartialEq)]
pub struct Transport {
    /// The underlay family (`address_family`: `ip4` or `ip6`).
    pub address_family: AddressFamily,
    /// Public address for inbound connections; `None` when empty (behind NAT).
    pub address: Option<Host>,
    /// This node's send port: the destination port of all it sends (unique in the mesh).
    pub send_port: u16,
    /// MTU of this transport's links in bytes ([`MTU_MIN`]..=[`MTU_MAX`]).
    pub mtu: u32,
    /// Interface name prefix: a link is named prefix + the peer's send port.
    pub prefix: String,
    /// Mark (SO_MARK) on the links' UDP packets; 0 for none.
    pub fwmark: u32,
    /// Listen on a random port instead of the peer's send port.
    pub random_port: bool,
    // braid extensions
    /// Persistent keepalive in seconds as the config sets it: `None` when the key is
    /// absent (braid chooses: 25 s on links that carry a default route, none on others;
    /// see `braid_plan::links::link_keepalive`), `Some(0)` off, even on those links,
    /// `Some(k)` every `k` seconds.
    pub keepalive: Option<u16>,
    /// Underlay paths (`paths`): two or more bond the transport's links.
    pub paths: Vec<PathConfig>,
    /// Find WAN uplinks automatically (ratbond's rule).
    pub wan_auto: bool,
    /// How a bonded link spreads packets over its paths (`scheduler`).
    pub scheduler: Scheduler,
}

const CONFIG_FIELDS: &[&str] = &[
    "registry",
    "registry_keys",
    "registry_refresh",
    "registry_max_age",
    "registry_ca_file",
    "registry_cache",
    "private_key",
    "private_key_file",
    "name",
    "index",
    "vrf",
    "stale_group",
    "active_group",
    "transport",
    "remarks",
    "backend",
    "netns",
    "address_plan",
    "routing",
    "exit",
    "status",
    "control_socket",
];

const TRANSPORT_FIELDS: &[&str] = &[
    "address_family",
    "address",
    "send_port",
    "mtu",
    "prefix",
    "fwmark",
    "random_port",
    "keepalive",
    "paths",
    "wan",
    "scheduler",
];

/// The fix for an out-of-range `index` (the config's and the registry's).
pub(crate) const INDEX_FIX: &str = "use a whole number from 1; it picks the node's /64 and /24 (index 0 is reserved for the upstream segment)";

const PORT_FIX: &str =
    "use a port in 1..=65535 that no other node of the mesh uses as its send port";

impl Config {
    /// Parses and validates a config file's text. `file` names the file in problems.
    /// On success returns the config and any warnings.
    /// A `private_key_file` is an error here (nothing is read from disk); use
    /// [`Config::parse_with`] to allow one.
    pub fn parse(file: &str, text: &str) -> Result<(Self, Problems), Problems> {
        Self::parse_with(file, text, &crate::keyfile::no_files)
    }

    /// As [`Config::parse`], with `key_files` reading the file `private_key_file` names
    /// (called with the path as written; the caller resolves relative paths).
    pub fn parse_with(
        file: &str,
        text: &str,
        key_files: KeyFileReader<'_>,
    ) -> Result<(Self, Problems), Problems> {
        let mut c = Collector::new(file);
        let config =
            read::parse_document(&mut c, text).and_then(|doc| read_config(&mut c, &doc, key_files));
        match config {
            Some(config) if !c.has_errors() => Ok((config, c.into_problems())),
            _ => Err(c.into_problems()),
        }
    }
}

fn group(c: &mut Collector, map: &Map<String, Value>, key: &str, default: u32) -> Option<u32> {
    let fix = "use a nonzero interface group number that nothing else on the host uses";
    read::optional_integer(c, map, "", key, default, 1..=u32::MAX, fix)
}

fn read_config(c: &mut Collector, doc: &Value, key_files: KeyFileReader<'_>) -> Option<Config> {
    let map = read::object(c, "", doc, CONFIG_FIELDS)?;
    let registry = read_registry(c, map);
    let private_key = crate::keyfile::read_private_key(c, map, key_files);
    let name = read::optional(c, map, "", "name", None, |c, p, v| {
        read::string(c, p, v, "write this node's name as a string").map(Some)
    });
    let index = read::optional(c, map, "", "index", None, |c, p, v| {
        read::integer(c, p, v, 1, u64::MAX, INDEX_FIX).map(Some)
    });
    let vrf = read_vrf(c, map);
    let groups = read_groups(c, map);
    let transports = read_transports(c, map);
    let remarks = read_remarks(c, map, "");
    let backend = read::optional(c, map, "", "backend", Backend::Auto, |c, p, v| {
        read::choice(c, p, v, Backend::NAMES).and_then(Backend::from_name)
    });
    let netns = read_netns(c, map, vrf.as_deref());
    let sections = read_sections(c, map);

    let (registry, registry_source, registry_options) = registry?;
    let (private_key, private_key_file) = private_key?;
    let (stale_group, active_group) = groups?;
    let sections = sections?;
    Some(Config {
        registry,
        registry_source,
        registry_options,
        private_key,
        private_key_file,
        name: name?,
        index: index?,
        vrf: vrf?,
        stale_group,
        active_group,
        transports: transports?,
        remarks: remarks?,
        backend: backend?,
        netns: netns?,
        address_plan: sections.address_plan,
        routing: sections.routing,
        exit: sections.exit,
        status: sections.status,
        control_socket: sections.control_socket,
    })
}

/// `registry` (as written and classified) and the `registry_*` options, checked together.
fn read_registry(
    c: &mut Collector,
    map: &Map<String, Value>,
) -> Option<(String, RegistrySource, RegistryOptions)> {
    let registry = read::field(
        c,
        map,
        "",
        "registry",
        Some(
            "add \"registry\": \"/etc/braid/registry.json\" (the path of the shared registry file)",
        ),
    )
    .and_then(|v| read::string(c, "registry", v, "write the registry path as a string"));
    let source = registry.as_deref().and_then(|text| {
        RegistrySource::parse(text)
            .map_err(|e| c.error("registry", e.to_string(), e.fix()))
            .ok()
    });
    let options = crate::source::read_options(c, map);
    check_registry_options(c, map, source.as_ref(), options.as_ref());
    Some((registry?, source?, options?))
}

/// The `registry_*` options that do not fit the source: URL-only options on a path, an age
/// limit without signing keys, and (a warning) a URL nobody signs.
fn check_registry_options(
    c: &mut Collector,
    map: &Map<String, Value>,
    source: Option<&RegistrySource>,
    options: Option<&RegistryOptions>,
) {
    if let (Some(source), Some(options)) = (source, options)
        && !source.is_url()
    {
        for (key, set) in [
            ("registry_refresh", map.contains_key("registry_refresh")),
            ("registry_ca_file", options.ca_file.is_some()),
            ("registry_cache", options.cache.is_some()),
        ] {
            if set {
                c.warn(
                    key,
                    format!("`{key}` applies to a registry URL, and `registry` is a path"),
                    "remove it, or make `registry` a file:// or https:// URL",
                );
            }
        }
    }
    if let Some(options) = options
        && options.max_age.is_some()
        && options.keys.is_empty()
    {
        c.error(
            "registry_max_age",
            "registry_max_age needs signed registries (the age is the signature's timestamp), and registry_keys is empty",
            "list the signing keys in registry_keys, or remove registry_max_age",
        );
    }
    if let (Some(source), Some(options)) = (source, options)
        && source.is_url()
        && options.keys.is_empty()
    {
        c.warn(
            "registry_keys",
            format!("the registry comes from {source} and no signing key is trusted: whoever can change that file (or its server) controls this mesh"),
            "sign the registry (`braid registry keygen`, `braid registry sign`) and list the public key in registry_keys",
        );
    }
}

/// `vrf`: an interface name, or empty for none.
fn read_vrf(c: &mut Collector, map: &Map<String, Value>) -> Option<String> {
    let vrf = read::optional(c, map, "", "vrf", String::new(), |c, p, v| {
        read::string(c, p, v, "write the VRF name as a string, or \"\" for none")
    });
    if let Some(name) = &vrf {
        check_ifname(c, "vrf", name, "VRF");
    }
    vrf
}

/// `stale_group` and `active_group`, which must differ.
fn read_groups(c: &mut Collector, map: &Map<String, Value>) -> Option<(u32, u32)> {
    let stale_group = group(c, map, "stale_group", DEFAULT_STALE_GROUP);
    let active_group = group(c, map, "active_group", DEFAULT_ACTIVE_GROUP);
    if let (Some(s), Some(a)) = (stale_group, active_group)
        && s == a
    {
        c.error(
            "active_group",
            format!("stale_group and active_group are both {s}"),
            "give them two different nonzero values (ranet uses 1 and 2)",
        );
    }
    Some((stale_group?, active_group?))
}

/// The `transport` list: at least one entry, each read, and no two that collide.
fn read_transports(c: &mut Collector, map: &Map<String, Value>) -> Option<Vec<Transport>> {
    let transports = read::field(
        c,
        map,
        "",
        "transport",
        Some("add a \"transport\" list with at least one transport"),
    )
    .and_then(|v| read::array(c, "transport", v, "write transport as a list: [ { ... } ]"))
    .map(|items| {
        if items.is_empty() {
            c.error(
                "transport",
                "the transport list is empty",
                "add at least one transport (address_family, send_port, prefix, ...)",
            );
        }
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| read_transport(c, &index_path("transport", i), item))
            .collect::<Vec<_>>()
    });
    if let Some(transports) = &transports {
        check_transport_pairs(c, transports);
    }
    transports
}

/// `netns`: a plain namespace name, or empty for none; not together with a `vrf`.
fn read_netns(
    c: &mut Collector,
    map: &Map<String, Value>,
    vrf: Option<&str>,
) -> Option<Option<String>> {
    let netns = read::optional(c, map, "", "netns", None, |c, p, v| {
        read::string(c, p, v, "write the namespace name as a string")
            .map(|s| (!s.is_empty()).then_some(s))
    });
    if let Some(Some(ns)) = &netns {
        if ns.contains('/') || ns == "." || ns == ".." {
            c.error(
                "netns",
                format!("`{ns}` is not a usable namespace name"),
                "use a plain name such as \"braid\" (it becomes /run/netns/<name>)",
            );
        }
        if vrf.is_some_and(|v| !v.is_empty()) {
            c.error(
                "netns",
                "both vrf and netns are set; the overlay is isolated one way or the other",
                "remove one of the two fields",
            );
        }
    }
    netns
}

/// braid's optional sections of the config, read.
struct Sections {
    address_plan: Option<AddressPlanConfig>,
    routing: RoutingConfig,
    exit: Option<ExitConfig>,
    status: StatusConfig,
    control_socket: String,
}

/// `address_plan`, `routing`, `exit`, `status` and `control_socket`; a routing mode that
/// needs the address plan is checked for one.
fn read_sections(c: &mut Collector, map: &Map<String, Value>) -> Option<Sections> {
    let address_plan = read::optional(c, map, "", "address_plan", None, |c, p, v| {
        extensions::read_address_plan(c, p, v).map(Some)
    });
    let routing = read::optional(
        c,
        map,
        "",
        "routing",
        RoutingConfig::default(),
        extensions::read_routing,
    );
    let exit = read::optional(c, map, "", "exit", None, |c, p, v| {
        extensions::read_exit(c, p, v).map(Some)
    });
    let status = read::optional(
        c,
        map,
        "",
        "status",
        StatusConfig::default(),
        extensions::read_status,
    );
    let control_socket = read_control_socket(c, map);
    if let (Some(routing), Some(None)) = (&routing, &address_plan)
        && routing.mode != extensions::RoutingMode::None
    {
        c.error(
            "routing.mode",
            format!("routing mode `{}` needs the address plan, which is not configured", routing.mode.name()),
            "add \"address_plan\": { \"ipv6\": \"<network allocation, e.g. 2001:db8:5e::/48>\" }, or set routing.mode to \"none\"",
        );
    }
    Some(Sections {
        address_plan: address_plan?,
        routing: routing?,
        exit: exit?,
        status: status?,
        control_socket: control_socket?,
    })
}

/// `control_socket`: an absolute path.
fn read_control_socket(c: &mut Collector, map: &Map<String, Value>) -> Option<String> {
    let default = DEFAULT_CONTROL_SOCKET.to_string();
    read::optional(c, map, "", "control_socket", default, |c, p, v| {
        let s = read::string(c, p, v, "write a path such as /run/braid/braid.sock")?;
        if s.starts_with('/') {
            return Some(s);
        }
        c.error(
            "control_socket",
            format!("`{s}` is not an absolute path"),
            "use an absolute path such as /run/braid/braid.sock",
        );
        None
    })
}

pub(crate) fn read_remarks(
    c: &mut Collector,
    map: &Map<String, Value>,
    path: &str,
) -> Option<BTreeMap<String, Value>> {
    match read::field(c, map, path, "remarks", None) {
        None => Some(BTreeMap::new()),
        Some(Value::Object(m)) => Some(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        Some(_) => {
            c.error(
                &field_path(path, "remarks"),
                "remarks must be an object of free-form fields",
                "write remarks as { \"key\": \"value\", ... }",
            );
            None
        }
    }
}

/// Checks a name that becomes a Linux interface name.
pub(crate) fn check_ifname(c: &mut Collector, path: &str, name: &str, what: &str) {
    if name.len() > IFNAME_MAX {
        c.error(
            path,
            format!(
                "{what} name `{name}` is {} bytes; Linux allows at most {IFNAME_MAX}",
                name.len()
            ),
            "use a shorter name",
        );
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        c.error(path, format!("{what} name `{name}` contains a character Linux refuses in interface names ('/', ':' or whitespace)"), "use letters, digits, '-' and '_' only");
    }
}

fn read_transport(c: &mut Collector, path: &str, value: &Value) -> Option<Transport> {
    let map = read::object(c, path, value, TRANSPORT_FIELDS)?;
    let family = crate::host::read_family(c, map, path);
    let address = crate::host::read_address(c, map, path, family);
    let send_port = read::field(
        c,
        map,
        path,
        "send_port",
        Some("add \"send_port\": a port unique across the whole mesh"),
    )
    .and_then(|v| read::integer(c, &field_path(path, "send_port"), v, 1, 65535, PORT_FIX))
    .map(|n| n as u16);
    let mtu = read::optional(c, map, path, "mtu", DEFAULT_MTU, |c, p, v| {
        read::integer(c, p, v, MTU_MIN, MTU_MAX, "use an MTU in 1280..=65535 (1420 suits most underlays; links carry IPv6, which needs 1280)").map(|n| n as u32)
    });
    let prefix = read_prefix(c, map, path);
    let fix = "use a mark in 0..=4294967295 (0 for none)";
    let fwmark = read::optional_integer(c, map, path, "fwmark", 0, 0..=u32::MAX, fix);
    let random_port = read::optional(c, map, path, "random_port", false, read::boolean);
    let keepalive = read::optional(c, map, path, "keepalive", None, |c, p, v| {
        let fix = "use seconds in 0..=65535 (0 disables; 25 suits NAT)";
        read::integer(c, p, v, 0, 65535, fix).map(|n| Some(n as u16))
    });
    let (paths, wan_auto, scheduler) = read_bonding(c, map, path, family)?;
    Some(Transport {
        address_family: family?,
        address: address?,
        send_port: send_port?,
        mtu: mtu?,
        prefix: prefix?,
        fwmark: fwmark?,
        random_port: random_port?,
        keepalive: keepalive?,
        paths,
        wan_auto,
        scheduler,
    })
}

/// A transport's `prefix`: required, non-empty, and short enough for interface names.
fn read_prefix(c: &mut Collector, map: &Map<String, Value>, path: &str) -> Option<String> {
    let prefix_path = field_path(path, "prefix");
    let prefix = read::field(
        c,
        map,
        path,
        "prefix",
        Some("add \"prefix\": a short interface name prefix such as \"braid4x\""),
    )
    .and_then(|v| read::string(c, &prefix_path, v, "write the prefix as a string"));
    if let Some(p) = &prefix {
        if p.is_empty() {
            c.error(&prefix_path, "the interface name prefix is empty", "set a short prefix such as \"braid4x\"; interface names are prefix + the peer's send port");
        } else {
            check_ifname(c, &prefix_path, p, "interface prefix");
        }
    }
    prefix
}

/// A transport's multi-path fields: `paths`, `wan` (true for `auto`) and `scheduler`;
/// `wan: auto` and listed paths exclude each other.
fn read_bonding(
    c: &mut Collector,
    map: &Map<String, Value>,
    path: &str,
    family: Option<AddressFamily>,
) -> Option<(Vec<PathConfig>, bool, Scheduler)> {
    let paths = read::optional(c, map, path, "paths", Vec::new(), |c, p, v| {
        let fix = "write paths as a list: [ { \"interface\": \"wan0\" } ]";
        let items = read::array(c, p, v, fix)?;
        Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| extensions::read_path(c, &index_path(p, i), item, family))
                .collect(),
        )
    });
    let wan_auto = read::optional(c, map, path, "wan", false, |c, p, v| {
        read::choice(c, p, v, &["auto", "manual"]).map(|w| w == "auto")
    });
    let scheduler = read::optional(
        c,
        map,
        path,
        "scheduler",
        Scheduler::EarliestArrival,
        |c, p, v| read::choice(c, p, v, Scheduler::NAMES).and_then(Scheduler::from_name),
    );
    if let (Some(true), Some(paths)) = (wan_auto, &paths)
        && !paths.is_empty()
    {
        c.error(
            &field_path(path, "wan"),
            "\"wan\": \"auto\" finds the paths itself, but paths are also listed",
            "remove either \"wan\" or \"paths\"",
        );
    }
    Some((paths?, wan_auto?, scheduler?))
}

fn check_transport_pairs(c: &mut Collector, transports: &[Transport]) {
    for (i, a) in transports.iter().enumerate() {
        for (j, b) in transports.iter().enumerate().skip(i + 1) {
            if a.address_family == b.address_family && a.send_port == b.send_port {
                c.error(
                    &field_path(&index_path("transport", j), "send_port"),
                    format!(
                        "transport[{i}] and transport[{j}] are both {} with send port {}",
                        a.address_family, a.send_port
                    ),
                    "give each transport of the same family its own send port",
                );
            }
            if a.prefix == b.prefix && !a.prefix.is_empty() {
                c.error(
                    &field_path(&index_path("transport", j), "prefix"),
                    format!("transport[{i}] and transport[{j}] share the prefix `{}`; their interfaces would collide", a.prefix),
                    "give each transport its own prefix (ranet uses e.g. ranet4x and ranet6x)",
                );
            }
        }
    }
}
