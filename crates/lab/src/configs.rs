//! Generating each lab node's config and the shared registry, in ranet's format with
//! braid's extensions.

use crate::Lab;
use crate::LabError;
use crate::underlay::node_addrs;
use crate::wans::{wan_iface, wans_of};
use braid_model::PrivateKey;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// What the generated configs contain. Build it with `..ConfigOptions::default()` so new
/// options can be added later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigOptions {
    /// Give every node an ip4 transport (`198.18.0.<i>`, prefix `brd4x`).
    pub ip4: bool,
    /// Give every node an ip6 transport (`2001:db8::<i>`, prefix `brd6x`).
    pub ip6: bool,
    /// Send ports are `base_port + 2*i` (ip4) and `base_port + 2*i + 1` (ip6).
    pub base_port: u16,
    /// MTU of every transport.
    pub mtu: u32,
    /// Nodes (1-based) that publish no address: they dial the others.
    pub behind_nat: Vec<usize>,
    /// Routing mode written into every config ("none", "static", "babel", "bird").
    pub routing: String,
    /// Persistent keepalive in seconds; 0 leaves the key out of the configs, so braid's
    /// default applies (25 s on links that carry a default route, none on others).
    pub keepalive: u16,
    /// Each node's control socket directory; `<dir>/n<i>/braid.sock` when `None`.
    pub control_dir: Option<PathBuf>,
    /// Uplinks per node, the last value repeating, as in [`crate::LabSpec::with_wans`]:
    /// every transport of a node with more than one gets
    /// `"paths": [{"interface": "wan0"}, {"interface": "wan1"}, ...]`. Empty: the lab's
    /// own uplinks ([`Lab::write_configs`]), none for [`write_configs`].
    pub wans: Vec<usize>,
    /// The `scheduler` of those transports ("flow", "round-robin", "weighted",
    /// "redundant", "backup"); `None` leaves braid's default.
    pub scheduler: Option<String>,
    /// Babel's (and BIRD's Babel) hello interval in seconds, `routing.hello_interval`;
    /// `None` leaves braid's default. A short one finds a lost neighbour sooner.
    pub hello_interval: Option<u16>,
    /// The node (1-based) that is the exit: its config gets [`crate::exit_config`] (the
    /// lab's upstream, [`Lab::add_upstream`]) and the registry its `exit_preference` 100.
    pub exit: Option<usize>,
}

impl Default for ConfigOptions {
    fn default() -> Self {
        Self {
            ip4: true,
            ip6: true,
            base_port: 40000,
            mtu: 1420,
            behind_nat: Vec::new(),
            routing: "none".into(),
            keepalive: 0,
            control_dir: None,
            wans: Vec::new(),
            scheduler: None,
            hello_interval: None,
            exit: None,
        }
    }
}

/// The files of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFiles {
    /// The node's index (1-based).
    pub index: usize,
    /// `<dir>/n<i>/config.json`, absolute.
    pub config: PathBuf,
    /// The node's public key, base64 (as in the registry).
    pub public_key: String,
}

/// The lab network's IPv6 allocation (documentation range), the config's
/// `address_plan.ipv6`.
pub const LAB_ALLOCATION: &str = "2001:db8:bd00::/48";
/// The lab network's IPv4 pool, the config's `address_plan.ipv4_pool`.
pub const LAB_IPV4_POOL: &str = "10.0.0.0/8";

fn write_json(path: &Path, value: &Value) -> Result<(), LabError> {
    write_json_with_mode(path, value, 0o644)
}

fn write_json_with_mode(path: &Path, value: &Value, mode: u32) -> Result<(), LabError> {
    let error = |source| LabError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut text = serde_json::to_string_pretty(value).map_err(|e| error(e.into()))?;
    text.push('\n');
    write_with_mode(path, &text, mode)
}

/// Writes `text` to `path` with permissions `mode` (also when the file existed), so a
/// config, which holds a private key, is never readable by other users (0600).
fn write_with_mode(path: &Path, text: &str, mode: u32) -> Result<(), LabError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| LabError::Write {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let error = |source| LabError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(error)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(error)?;
    file.write_all(text.as_bytes()).map_err(error)
}

impl Lab {
    /// Writes the configs of this lab's nodes; see [`write_configs`]. Nodes with more
    /// than one uplink get a path per uplink unless `options.wans` says otherwise.
    pub fn write_configs(
        &self,
        dir: &Path,
        options: &ConfigOptions,
    ) -> Result<Vec<NodeFiles>, LabError> {
        if options.wans.is_empty() && self.has_wans() {
            let options = ConfigOptions {
                wans: self.wans_spec().to_vec(),
                ..options.clone()
            };
            return write_configs(self.name(), self.nodes(), dir, &options);
        }
        write_configs(self.name(), self.nodes(), dir, options)
    }
}

/// Writes `<dir>/registry.json` and `<dir>/n<i>/config.json` for nodes 1..=`nodes` of the
/// lab `lab_name`, in ranet's WireGuard-era format with braid's extensions, with a fresh key
/// per node. Configs name the registry by its absolute path (a relative `dir` is resolved
/// against the current directory). Needs no namespaces, so it works without root.
pub fn write_configs(
    lab_name: &str,
    nodes: usize,
    dir: &Path,
    options: &ConfigOptions,
) -> Result<Vec<NodeFiles>, LabError> {
    let dir = &std::path::absolute(dir).map_err(|source| LabError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let registry_path = dir.join("registry.json");
    let mut registry = Vec::new();
    let mut files = Vec::new();
    for i in 1..=nodes {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| LabError::Random(e.to_string()))?;
        let key = PrivateKey::from_random_bytes(seed);
        let public = key.public_key().to_base64();
        let addrs = node_addrs(i);
        let nat = options.behind_nat.contains(&i);
        let port4 = u16::try_from(2 * i + 1)
            .ok()
            .and_then(|offset| options.base_port.checked_add(offset))
            .ok_or(LabError::PortRange {
                base_port: options.base_port,
                nodes,
            })?
            - 1;
        let port6 = port4 + 1;
        let mut transports: Vec<Value> = Vec::new();
        let mut endpoints = Vec::new();
        let address = |a: String| if nat { String::new() } else { a };
        if options.ip4 {
            transports.push(json!({"address_family": "ip4", "address": address(addrs.v4.to_string()), "send_port": port4, "mtu": options.mtu, "prefix": "brd4x", "fwmark": 0, "random_port": false}));
            endpoints.push(json!({"send_port": port4, "address_family": "ip4", "address": address(addrs.v4.to_string())}));
        }
        if options.ip6 {
            transports.push(json!({"address_family": "ip6", "address": address(addrs.v6.to_string()), "send_port": port6, "mtu": options.mtu, "prefix": "brd6x", "fwmark": 0, "random_port": false}));
            endpoints.push(json!({"send_port": port6, "address_family": "ip6", "address": address(addrs.v6.to_string())}));
        }
        if options.keepalive > 0 {
            for t in &mut transports {
                t["keepalive"] = json!(options.keepalive);
            }
        }
        let uplinks = wans_of(&options.wans, i);
        if uplinks > 1 {
            let paths: Vec<Value> = (0..uplinks)
                .map(|k| json!({"interface": wan_iface(k)}))
                .collect();
            for t in &mut transports {
                t["paths"] = Value::Array(paths.clone());
                if let Some(scheduler) = &options.scheduler {
                    t["scheduler"] = json!(scheduler);
                }
            }
        }
        let node_dir = dir.join(format!("n{i}"));
        let control = options.control_dir.as_ref().map_or_else(
            || node_dir.join("braid.sock"),
            |d| d.join(format!("n{i}.sock")),
        );
        let mut config: Value = json!({
            "registry": registry_path.display().to_string(),
            "private_key": key.to_base64(),
            "vrf": "",
            "stale_group": 1,
            "active_group": 2,
            "transport": transports,
            "remarks": {"lab": lab_name, "node": format!("n{i}")},
            "backend": "userspace",
            "address_plan": {"ipv6": LAB_ALLOCATION, "ipv4_pool": LAB_IPV4_POOL},
            "routing": {"mode": options.routing},
            "status": {"listen": "127.0.0.1:8091"},
            "control_socket": control.display().to_string(),
        });
        let mut entry = json!({"public_key": public, "name": format!("n{i}"), "index": i, "endpoints": endpoints, "remarks": {}});
        if let Some(hello) = options.hello_interval {
            config["routing"]["hello_interval"] = json!(hello);
        }
        if options.exit == Some(i) {
            config["exit"] = crate::exit_config();
            entry["exit_preference"] = json!(100);
        }
        registry.push(entry);
        let config_path = node_dir.join("config.json");
        // The config holds the node's private key: 0600, as `braid check` expects.
        write_json_with_mode(&config_path, &config, 0o600)?;
        files.push(NodeFiles {
            index: i,
            config: config_path,
            public_key: public,
        });
    }
    write_json(&registry_path, &Value::Array(registry))?;
    Ok(files)
}
