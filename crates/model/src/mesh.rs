//! Checks that need both files: the config against the registry it names.

use crate::config::{Config, IFNAME_MAX};
use crate::problem::{Problem, Problems, Severity};
use crate::read::{field_path, index_path};
use crate::registry::Registry;

/// Problems between a config (`config_file`) and its registry (`registry_file`).
pub fn check(
    config: &Config,
    config_file: &str,
    registry: &Registry,
    registry_file: &str,
) -> Problems {
    let mut out = Vec::new();
    let mut push = |severity, file: &str, path: String, message: String, fix: String| {
        out.push(Problem {
            severity,
            file: file.to_string(),
            path,
            message,
            fix,
        });
    };
    let own_key = config.private_key.public_key();
    let own = registry.nodes.iter().position(|n| n.public_key == own_key);
    match own {
        None => push(
            Severity::Warning,
            config_file,
            "private_key".into(),
            format!(
                "this node's public key {own_key} is not in {registry_file}; peers will not create links toward it"
            ),
            "add this node's entry to the registry (`braid meta -c CONFIG` prints it)".into(),
        ),
        Some(i) => {
            let node = &registry.nodes[i];
            for (t, transport) in config.transports.iter().enumerate() {
                let listed = node.endpoints.iter().any(|e| {
                    e.address_family == transport.address_family
                        && e.send_port == transport.send_port
                });
                if !listed {
                    push(
                        Severity::Warning,
                        registry_file,
                        field_path(&index_path("", i), "endpoints"),
                        format!("this node's entry has no {} endpoint with send port {} (config transport[{t}])", transport.address_family, transport.send_port),
                        "make the registry entry match the config (`braid meta -c CONFIG` prints the entry)".into(),
                    );
                }
            }
            if config.exit.is_some() && node.exit_preference.is_none() {
                push(
                    Severity::Warning,
                    registry_file,
                    field_path(&index_path("", i), "exit_preference"),
                    "the config makes this node an exit, but its registry entry has no exit_preference, so other nodes will not send default traffic here".into(),
                    "add \"exit_preference\": 100 to this node's registry entry".into(),
                );
            }
        }
    }
    for (t, transport) in config.transports.iter().enumerate() {
        for (i, node) in registry.nodes.iter().enumerate() {
            if Some(i) == own {
                continue;
            }
            for endpoint in node
                .endpoints
                .iter()
                .filter(|e| e.address_family == transport.address_family)
            {
                let name_len = transport.prefix.len() + endpoint.send_port.to_string().len();
                if name_len > IFNAME_MAX {
                    push(
                        Severity::Error,
                        config_file,
                        field_path(&index_path("transport", t), "prefix"),
                        format!(
                            "interface name `{}{}` (toward {} [{i}]) is {name_len} bytes; Linux allows at most {IFNAME_MAX}",
                            transport.prefix, endpoint.send_port, registry_file
                        ),
                        format!(
                            "shorten the prefix to at most {} bytes",
                            IFNAME_MAX.saturating_sub(endpoint.send_port.to_string().len())
                        ),
                    );
                }
            }
        }
    }
    // Report each overlong prefix once per transport, with the longest name.
    dedup_by_path(&mut out);
    Problems(out)
}

fn dedup_by_path(problems: &mut Vec<Problem>) {
    let mut seen = std::collections::HashSet::new();
    problems
        .retain(|p| p.severity != Severity::Error || seen.insert((p.file.clone(), p.path.clone())));
}
