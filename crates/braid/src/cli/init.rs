//! `braid init`: writes a new node's config and private key file from a few flags and
//! prints the node's registry entry. Nothing is written unless the whole config validates,
//! and nothing that exists is overwritten.

use anyhow::{Context, Result, anyhow, bail};
use braid_model::{AddressFamily, Config, KeyFile, PrivateKey};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The first send port `--send-port auto` hands out in an empty mesh.
pub(crate) const FIRST_SEND_PORT: u16 = 40001;

/// Keepalive given to a transport without a public address (behind NAT), in seconds.
pub(crate) const NAT_KEEPALIVE: u16 = 25;

#[derive(clap::Args)]
pub(crate) struct InitArgs {
    /// Where to write the new config (refused if it exists).
    #[arg(short, long, value_name = "CONFIG")]
    pub config: PathBuf,
    /// The registry: a path (relative to the config's directory), file:// or https:// URL.
    #[arg(long, value_name = "SOURCE")]
    pub registry: String,
    /// Where to write the private key (0600, refused if it exists) [default: private.key
    /// beside the config].
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// This node's public address per transport: an IP literal, or FAMILY=ADDRESS
    /// (ip4=node.example.net); FAMILY= alone for a transport behind NAT. Once per family.
    #[arg(long = "address", value_name = "[FAMILY=]ADDRESS", required = true)]
    pub addresses: Vec<String>,
    /// The send port of each --address, in order, or `auto`: the lowest ports no node of
    /// the registry uses [default: auto].
    #[arg(long = "send-port", value_name = "PORT|auto")]
    pub send_ports: Vec<String>,
    /// A public key trusted to sign the registry (registry_keys); repeatable.
    #[arg(long = "registry-key", value_name = "KEY")]
    pub registry_keys: Vec<String>,
    /// CA certificates (PEM) an https:// registry must chain to (registry_ca_file)
    /// [default: the system's roots].
    #[arg(long, value_name = "PATH")]
    pub registry_ca_file: Option<String>,
    /// Interface name prefix; transports get PREFIX4x and PREFIX6x.
    #[arg(long, default_value = "brd", value_name = "PREFIX")]
    pub prefix: String,
    /// The network's IPv6 allocation (address_plan.ipv6), e.g. 2001:db8:5e::/48.
    #[arg(long, value_name = "PREFIX")]
    pub address_plan: Option<String>,
    /// The IPv4 pool of the address plan [default: 10.0.0.0/8 when --address-plan is set].
    #[arg(long, value_name = "PREFIX", requires = "address_plan")]
    pub ipv4_pool: Option<String>,
    /// Routing mode [default: static with --address-plan, else none].
    #[arg(long, value_name = "MODE", value_parser = ["none", "static", "babel", "bird"])]
    pub routing: Option<String>,
    /// This node's name in the registry.
    #[arg(long)]
    pub name: Option<String>,
    /// This node's index in the address plan [default: derived from its key].
    #[arg(long)]
    pub index: Option<u64>,
}

pub(crate) fn run(args: &InitArgs) -> Result<bool> {
    let key_file = args.key_file.clone().unwrap_or_else(|| {
        args.config
            .parent()
            .unwrap_or(Path::new("."))
            .join("private.key")
    });
    for (path, what) in [(&args.config, "config"), (&key_file, "private key file")] {
        if path.symlink_metadata().is_ok() {
            bail!(
                "{}: the {what} exists; braid init does not overwrite it: choose another path, or move it away first",
                path.display()
            );
        }
    }
    let endpoints = parse_addresses(&args.addresses)?;
    let ports = send_ports(args, &endpoints)?;
    let key = new_key()?;
    let doc = config_document(args, &key_file, &endpoints, &ports)?;
    let text = format!(
        "// braid config written by `braid init`; every field: docs/config.md\n{}\n",
        serde_json::to_string_pretty(&doc)?
    );
    // Validate exactly what will be written, the new key standing in for the file.
    let absolute_key = std::path::absolute(&key_file)?;
    let reader = |_: &str| KeyFile::Read {
        path: absolute_key.display().to_string(),
        text: key.to_base64(),
        mode: 0o600,
    };
    let config = match Config::parse_with(&args.config.display().to_string(), &text, &reader) {
        Ok((config, _)) => config,
        Err(problems) => {
            eprintln!("{problems}");
            bail!("nothing written: the flags make an invalid config");
        }
    };
    write_new(
        &key_file,
        format!("{}\n", key.to_base64()).as_bytes(),
        0o600,
    )?;
    if let Err(e) = write_new(&args.config, text.as_bytes(), 0o644) {
        let _ = std::fs::remove_file(&key_file);
        return Err(e);
    }
    eprintln!(
        "wrote {} and {} (mode 0600); this node's registry entry follows. Add it to the registry \
         (`braid registry add-node`), sign it if the mesh uses signatures, then `braid run -c {}`.",
        args.config.display(),
        key_file.display(),
        args.config.display()
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&super::meta::entry(&config))?
    );
    Ok(true)
}

/// One transport's family and address (empty: behind NAT).
#[derive(Debug, PartialEq)]
struct Endpoint {
    family: AddressFamily,
    address: String,
}

fn parse_addresses(addresses: &[String]) -> Result<Vec<Endpoint>> {
    let mut out: Vec<Endpoint> = Vec::new();
    for text in addresses {
        let endpoint = match text.split_once('=') {
            Some((family, address)) => {
                let family = match family {
                    "ip4" => AddressFamily::Ip4,
                    "ip6" => AddressFamily::Ip6,
                    other => bail!(
                        "--address {text}: unknown family `{other}`; write ip4=ADDRESS or ip6=ADDRESS"
                    ),
                };
                Endpoint {
                    family,
                    address: address.to_string(),
                }
            }
            None => {
                let ip: std::net::IpAddr = text.parse().map_err(|_| {
                    anyhow!("--address {text}: not an IP address; write a DNS name as ip4={text} or ip6={text}")
                })?;
                Endpoint {
                    family: AddressFamily::of(ip),
                    address: ip.to_string(),
                }
            }
        };
        if out.iter().any(|e| e.family == endpoint.family) {
            bail!(
                "--address {text}: a second {} transport; give one --address per family",
                endpoint.family
            );
        }
        out.push(endpoint);
    }
    Ok(out)
}

/// The send port of each endpoint: as given, or the lowest ports the registry leaves free.
fn send_ports(args: &InitArgs, endpoints: &[Endpoint]) -> Result<Vec<u16>> {
    let auto = args.send_ports.is_empty() || args.send_ports == ["auto"];
    if !auto {
        if args.send_ports.len() != endpoints.len() {
            bail!(
                "{} --send-port for {} --address; give one port per address, in order, or `--send-port auto`",
                args.send_ports.len(),
                endpoints.len()
            );
        }
        return args
            .send_ports
            .iter()
            .map(|p| match p.parse::<u16>() {
                Ok(port) if port > 0 => Ok(port),
                _ => Err(anyhow!(
                    "--send-port {p}: use a port in 1..=65535, or `auto`"
                )),
            })
            .collect();
    }
    let used = used_ports(args)?;
    Ok(pick_free_ports(&used, endpoints.len()))
}

/// Every send port the registry's nodes use (none when the registry does not exist yet).
fn used_ports(args: &InitArgs) -> Result<BTreeSet<u16>> {
    let config_dir = std::path::absolute(&args.config)?;
    let Some(text) = super::registry::read_source(
        &args.registry,
        &config_dir,
        args.registry_ca_file.as_deref(),
    )?
    else {
        eprintln!(
            "note: no registry at {} yet; send ports start at {FIRST_SEND_PORT}",
            args.registry
        );
        return Ok(BTreeSet::new());
    };
    let (registry, _) = braid_model::Registry::parse(&args.registry, &text).map_err(|p| {
        anyhow!("{p}\n--send-port auto needs a valid registry; fix it or give --send-port")
    })?;
    Ok(registry
        .nodes
        .iter()
        .flat_map(|n| n.endpoints.iter().map(|e| e.send_port))
        .collect())
}

/// The `count` lowest ports from [`FIRST_SEND_PORT`] that are not in `used`.
pub(crate) fn pick_free_ports(used: &BTreeSet<u16>, count: usize) -> Vec<u16> {
    (FIRST_SEND_PORT..=u16::MAX)
        .filter(|p| !used.contains(p))
        .take(count)
        .collect()
}

fn new_key() -> Result<PrivateKey> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow!("reading random bytes from the operating system: {e}"))?;
    Ok(PrivateKey::from_random_bytes(bytes))
}

fn config_document(
    args: &InitArgs,
    key_file: &Path,
    endpoints: &[Endpoint],
    ports: &[u16],
) -> Result<Value> {
    let transports: Vec<Value> = endpoints
        .iter()
        .zip(ports)
        .map(|(e, port)| {
            let family = e.family.to_string();
            let mut t = json!({
                "address_family": family,
                "address": e.address,
                "send_port": port,
                "mtu": braid_model::config::DEFAULT_MTU,
                "prefix": format!("{}{}x", args.prefix, &family[2..]),
                "fwmark": 0,
                "random_port": false,
            });
            if e.address.is_empty() {
                t["keepalive"] = json!(NAT_KEEPALIVE);
            }
            t
        })
        .collect();
    let key_file = std::path::absolute(key_file)
        .with_context(|| format!("resolving {}", key_file.display()))?;
    let mut doc = json!({
        "registry": args.registry,
        "private_key_file": key_file.display().to_string(),
        "vrf": "",
        "stale_group": braid_model::config::DEFAULT_STALE_GROUP,
        "active_group": braid_model::config::DEFAULT_ACTIVE_GROUP,
        "transport": transports,
        "remarks": {},
    });
    if !args.registry_keys.is_empty() {
        doc["registry_keys"] = json!(args.registry_keys);
    }
    if let Some(ca) = &args.registry_ca_file {
        let ca = std::path::absolute(ca).with_context(|| format!("resolving {ca}"))?;
        doc["registry_ca_file"] = json!(ca.display().to_string());
    }
    if let Some(name) = &args.name {
        doc["name"] = json!(name);
    }
    if let Some(index) = args.index {
        doc["index"] = json!(index);
    }
    if let Some(plan) = &args.address_plan {
        doc["address_plan"] = json!({ "ipv6": plan });
        if let Some(pool) = &args.ipv4_pool {
            doc["address_plan"]["ipv4_pool"] = json!(pool);
        }
    }
    let mode = args.routing.clone().unwrap_or_else(|| {
        if args.address_plan.is_some() {
            "static".into()
        } else {
            "none".into()
        }
    });
    doc["routing"] = json!({ "mode": mode });
    Ok(doc)
}

/// Creates `path` with `mode`, refusing to replace anything (O_EXCL), and writes `bytes`.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_skip_the_used_ones() {
        let used: BTreeSet<u16> = [40001, 40002, 40004].into();
        assert_eq!(pick_free_ports(&used, 2), vec![40003, 40005]);
        assert_eq!(pick_free_ports(&BTreeSet::new(), 1), vec![40001]);
    }

    #[test]
    fn addresses_give_their_family() {
        let parsed = parse_addresses(&[
            "192.0.2.1".into(),
            "ip6=".into(), // behind NAT
        ])
        .unwrap();
        assert_eq!(
            parsed,
            vec![
                Endpoint {
                    family: AddressFamily::Ip4,
                    address: "192.0.2.1".into()
                },
                Endpoint {
                    family: AddressFamily::Ip6,
                    address: String::new()
                }
            ]
        );
        let e = parse_addresses(&["node.example.net".into()]).unwrap_err();
        assert!(e.to_string().contains("ip4=node.example.net"), "{e}");
        let e = parse_addresses(&["192.0.2.1".into(), "ip4=x.example".into()]).unwrap_err();
        assert!(e.to_string().contains("one --address per family"), "{e}");
    }
}
