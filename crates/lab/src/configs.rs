//! Generating each lab node's config and the shared registry, in ranet's format with
//! braid's extensions.

use crate::LabError;
use crate::lab::{Lab, node_addrs};
use braid_model::PrivateKey;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// What the generated configs contain.
#[derive(Debug, Clone)]
pub struct ConfigOptions {
    pub ip4: bool,
    pub ip6: bool,
    /// Send ports are `base_port + 2*i` (ip4) and `base_port + 2*i + 1` (ip6).
    pub base_port: u16,
    pub mtu: u32,
    /// Nodes (1-based) that publish no address: they dial the others.
    pub behind_nat: Vec<usize>,
    /// Routing mode written into every config ("none", "static", "babel", "bird").
    pub routing: String,
    /// Persistent keepalive in seconds (0 for none).
    pub keepalive: u16,
    /// Each node's control socket directory; `<dir>/n<i>/braid.sock` when `None`.
    pub control_dir: Option<PathBuf>,
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
        }
    }
}

/// The files of one node.
#[derive(Debug, Clone)]
pub struct NodeFiles {
    pub index: usize,
    pub config: PathBuf,
    pub public_key: String,
}

/// The lab's address allocation (documentation ranges).
pub const LAB_ALLOCATION: &str = "2001:db8:bd00::/48";
pub const LAB_IPV4_POOL: &str = "10.0.0.0/8";

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| LabError::Write {
            path: dir.display().to_string(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| LabError::Write {
        path: path.display().to_string(),
        source,
    })
}

impl Lab {
    /// Writes `<dir>/registry.json` and `<dir>/n<i>/config.json` for every node, with fresh
    /// keys. `dir` must be absolute (configs name the registry by absolute path).
    pub fn write_configs(
        &self,
        dir: &Path,
        options: &ConfigOptions,
    ) -> Result<Vec<NodeFiles>, LabError> {
        let registry_path = dir.join("registry.json");
        let mut registry = Vec::new();
        let mut files = Vec::new();
        for i in 1..=self.nodes() {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| LabError::Random(e.to_string()))?;
            let key = PrivateKey::from_random_bytes(seed);
            let public = key.public_key().to_base64();
            let addrs = node_addrs(i);
            let nat = options.behind_nat.contains(&i);
            let port4 = options.base_port + 2 * i as u16;
            let port6 = port4 + 1;
            let mut transports = Vec::new();
            let mut endpoints = Vec::new();
            let address = |a: String| if nat { String::new() } else { a };
            if options.ip4 {
                transports.push(json!({"address_family": "ip4", "address": address(addrs.v4.to_string()), "send_port": port4, "mtu": options.mtu, "prefix": "brd4x", "fwmark": 0, "random_port": false, "keepalive": options.keepalive}));
                endpoints.push(json!({"send_port": port4, "address_family": "ip4", "address": address(addrs.v4.to_string())}));
            }
            if options.ip6 {
                transports.push(json!({"address_family": "ip6", "address": address(addrs.v6.to_string()), "send_port": port6, "mtu": options.mtu, "prefix": "brd6x", "fwmark": 0, "random_port": false, "keepalive": options.keepalive}));
                endpoints.push(json!({"send_port": port6, "address_family": "ip6", "address": address(addrs.v6.to_string())}));
            }
            let node_dir = dir.join(format!("n{i}"));
            let control = options.control_dir.as_ref().map_or_else(
                || node_dir.join("braid.sock"),
                |d| d.join(format!("n{i}.sock")),
            );
            let config: Value = json!({
                "registry": registry_path.display().to_string(),
                "private_key": key.to_base64(),
                "vrf": "",
                "stale_group": 1,
                "active_group": 2,
                "transport": transports,
                "remarks": {"lab": self.name(), "node": format!("n{i}")},
                "backend": "userspace",
                "address_plan": {"ipv6": LAB_ALLOCATION, "ipv4_pool": LAB_IPV4_POOL},
                "routing": {"mode": options.routing},
                "status": {"listen": "off"},
                "control_socket": control.display().to_string(),
            });
            registry.push(json!({"public_key": public, "name": format!("n{i}"), "index": i, "endpoints": endpoints, "remarks": {}}));
            let config_path = node_dir.join("config.json");
            write(
                &config_path,
                &serde_json::to_string_pretty(&config).unwrap_or_default(),
            )?;
            files.push(NodeFiles {
                index: i,
                config: config_path,
                public_key: public,
            });
        }
        write(
            &registry_path,
            &serde_json::to_string_pretty(&Value::Array(registry)).unwrap_or_default(),
        )?;
        Ok(files)
    }
}
