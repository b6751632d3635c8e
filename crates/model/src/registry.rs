//! The registry: ranet's JSON array of nodes, plus optional braid extensions per node
//! (`name`, `index`, `exit_preference`, `lan_subnets`). See docs/registry.md.

use crate::config::{INDEX_FIX, read_remarks};
use crate::family::AddressFamily;
use crate::host::Host;
use crate::keys::PublicKey;
use crate::problem::{Collector, Problems};
use crate::read::{self, field_path, index_path};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// A registry (docs/registry.md): every node of the mesh, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Registry {
    /// The nodes, in file order.
    pub nodes: Vec<Node>,
}

/// One registry entry: a node's key, endpoints and braid's extensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The node's X25519 public key (its identity).
    pub public_key: PublicKey,
    /// A human name (braid extension), used in status output and the lab.
    pub name: Option<String>,
    /// The node's index in the address plan (braid extension); derived from the key if absent.
    pub index: Option<u64>,
    /// Present when the node is an exit; lower is preferred (braid extension).
    pub exit_preference: Option<u32>,
    /// Prefixes of LANs behind the node, routed to it and NATed by exits like its own
    /// block (braid extension; see `extensions::read_lan_subnets`).
    pub lan_subnets: Vec<ipnet::IpNet>,
    /// Where the node can be reached, one per transport it has.
    pub endpoints: Vec<Endpoint>,
    /// Free-form fields for humans.
    pub remarks: BTreeMap<String, Value>,
}

/// One way to reach a node: family, address and send port.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// The node's send port for this family: others listen on it for this node.
    pub send_port: u16,
    /// `ip4` or `ip6`.
    pub address_family: AddressFamily,
    /// `None` when the node cannot be dialled (behind NAT): it dials the others.
    pub address: Option<Host>,
}

impl Node {
    /// The name for humans: `name` if set, else the short key.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.public_key.short())
    }
}

const NODE_FIELDS: &[&str] = &[
    "public_key",
    "name",
    "index",
    "exit_preference",
    "lan_subnets",
    "endpoints",
    "remarks",
];
const ENDPOINT_FIELDS: &[&str] = &["send_port", "address_family", "address"];

impl Registry {
    /// Parses and validates a registry file's text. `file` names the file in problems.
    pub fn parse(file: &str, text: &str) -> Result<(Self, Problems), Problems> {
        let mut c = Collector::new(file);
        let registry =
            read::parse_document(&mut c, text).and_then(|doc| read_registry(&mut c, &doc));
        match registry {
            Some(registry) if !c.has_errors() => Ok((registry, c.into_problems())),
            _ => Err(c.into_problems()),
        }
    }

    /// The node with public key `key`.
    pub fn find(&self, key: &PublicKey) -> Option<&Node> {
        self.nodes.iter().find(|n| n.public_key == *key)
    }
}

fn read_registry(c: &mut Collector, doc: &Value) -> Option<Registry> {
    let items = read::array(
        c,
        "",
        doc,
        "the registry is a JSON array of nodes: [ { \"public_key\": ..., \"endpoints\": [...] } ]",
    )?;
    let nodes: Vec<Option<Node>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| read_node(c, &index_path("", i), item))
        .collect();
    check_unique(c, &nodes);
    nodes
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .map(|nodes| Registry { nodes })
}

fn read_node(c: &mut Collector, path: &str, value: &Value) -> Option<Node> {
    let map = read::object(c, path, value, NODE_FIELDS)?;
    let public_key = read_public_key(c, map, path);
    let name = read::optional(c, map, path, "name", None, |c, p, v| {
        read::string(c, p, v, "write the name as a string").map(Some)
    });
    let index = read::optional(c, map, path, "index", None, |c, p, v| {
        read::integer(c, p, v, 1, u64::MAX, INDEX_FIX).map(Some)
    });
    let exit_preference = read::optional(c, map, path, "exit_preference", None, |c, p, v| {
        let fix = "use a whole number; the exit with the lowest preference is used first";
        read::integer(c, p, v, 0, u32::MAX as u64, fix).map(|n| Some(n as u32))
    });
    let lan_subnets = read::optional(
        c,
        map,
        path,
        "lan_subnets",
        Vec::new(),
        crate::extensions::read_lan_subnets,
    );
    let endpoints = read_endpoints(c, map, path);
    let remarks = read_remarks(c, map, path);
    let endpoints = endpoints?.into_iter().collect::<Option<Vec<_>>>();
    if let Some(endpoints) = &endpoints {
        check_endpoint_pairs(c, &field_path(path, "endpoints"), endpoints);
    }
    Some(Node {
        public_key: public_key?,
        name: name?,
        index: index?,
        exit_preference: exit_preference?,
        lan_subnets: lan_subnets?,
        endpoints: endpoints?,
        remarks: remarks?,
    })
}

/// A node's `public_key`: required, base64 of 32 bytes.
fn read_public_key(c: &mut Collector, map: &Map<String, Value>, path: &str) -> Option<PublicKey> {
    let key_path = field_path(path, "public_key");
    let text = read::field(
        c,
        map,
        path,
        "public_key",
        Some("add the node's \"public_key\" (base64, from `braid pubkey` or `wg pubkey`)"),
    )
    .and_then(|v| read::string(c, &key_path, v, "write the key as a base64 string"))?;
    match PublicKey::from_base64(&text) {
        Ok(key) => Some(key),
        Err(e) => {
            c.error(
                &key_path,
                format!("the public key {e}"),
                "copy the node's key from `braid meta` or `wg pubkey`",
            );
            None
        }
    }
}

/// A node's `endpoints` (required): each entry read, `None` where one is bad.
fn read_endpoints(
    c: &mut Collector,
    map: &Map<String, Value>,
    path: &str,
) -> Option<Vec<Option<Endpoint>>> {
    let endpoints_path = field_path(path, "endpoints");
    let v = read::field(
        c,
        map,
        path,
        "endpoints",
        Some(
            "add \"endpoints\": [ { \"send_port\": ..., \"address_family\": \"ip4\", \"address\": \"...\" } ]",
        ),
    )?;
    let items = read::array(c, &endpoints_path, v, "write endpoints as a list")?;
    let endpoints = items
        .iter()
        .enumerate()
        .map(|(i, item)| read_endpoint(c, &index_path(&endpoints_path, i), item))
        .collect();
    Some(endpoints)
}

/// Two endpoints of one node (at `endpoints_path`) with the same family and send port.
fn check_endpoint_pairs(c: &mut Collector, endpoints_path: &str, endpoints: &[Endpoint]) {
    for (i, a) in endpoints.iter().enumerate() {
        for (j, b) in endpoints.iter().enumerate().skip(i + 1) {
            if a.address_family == b.address_family && a.send_port == b.send_port {
                c.error(
                    &field_path(&index_path(endpoints_path, j), "send_port"),
                    format!(
                        "endpoints[{i}] and endpoints[{j}] are both {} with send port {}",
                        a.address_family, a.send_port
                    ),
                    "list each transport once, or give the second its own send port",
                );
            }
        }
    }
}

fn read_endpoint(c: &mut Collector, path: &str, value: &Value) -> Option<Endpoint> {
    let map = read::object(c, path, value, ENDPOINT_FIELDS)?;
    let send_port = read::field(
        c,
        map,
        path,
        "send_port",
        Some("add the node's \"send_port\" for this transport"),
    )
    .and_then(|v| {
        read::integer(
            c,
            &field_path(path, "send_port"),
            v,
            1,
            65535,
            "use a port in 1..=65535 that no other node uses",
        )
    })
    .map(|n| n as u16);
    let family = crate::host::read_family(c, map, path);
    let address = crate::host::read_address(c, map, path, family);
    Some(Endpoint {
        send_port: send_port?,
        address_family: family?,
        address: address?,
    })
}

/// Public keys, send ports and indexes must each be unique across the mesh.
fn check_unique(c: &mut Collector, nodes: &[Option<Node>]) {
    let mut keys: HashMap<PublicKey, usize> = HashMap::new();
    let mut ports: HashMap<u16, usize> = HashMap::new();
    let mut indexes: HashMap<u64, usize> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let Some(node) = node else { continue };
        if let Some(first) = keys.insert(node.public_key, i).filter(|first| *first != i) {
            keys.insert(node.public_key, first);
            c.error(
                &field_path(&index_path("", i), "public_key"),
                format!("public key {} is also used by node [{first}]", node.public_key.short()),
                "each node needs its own key pair: generate one with `braid keygen`, or remove the duplicate entry",
            );
        }
        for (j, endpoint) in node.endpoints.iter().enumerate() {
            match ports.get(&endpoint.send_port) {
                Some(first) if *first != i => c.error(
                    &field_path(&index_path(&field_path(&index_path("", i), "endpoints"), j), "send_port"),
                    format!("send port {} is also used by node [{first}]; send ports must be unique across the whole mesh", endpoint.send_port),
                    "give this node's transport a send port no other node uses",
                ),
                Some(_) => {}
                None => {
                    ports.insert(endpoint.send_port, i);
                }
            }
        }
        if let Some(index) = node.index {
            match indexes.get(&index) {
                Some(first) => c.error(
                    &field_path(&index_path("", i), "index"),
                    format!("index {index} is also used by node [{first}]"),
                    "give each node its own index (or remove it to derive one from the key)",
                ),
                None => {
                    indexes.insert(index, i);
                }
            }
        }
    }
}
