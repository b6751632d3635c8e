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
    let files = Files {
        config: config_file,
        registry: registry_file,
    };
    let mut out = Vec::new();
    let own_key = config.private_key.public_key();
    let own = registry.nodes.iter().position(|n| n.public_key == own_key);
    match own {
        None => out.push(files.config_problem(
            Severity::Warning,
            "private_key".into(),
            format!(
                "this node's public key {own_key} is not in {registry_file}; peers will not create links toward it"
            ),
            "add this node's entry to the registry (`braid meta -c CONFIG` prints it)".into(),
        )),
        Some(i) => check_own_entry(&mut out, files, config, registry, i),
    }
    check_ifname_lengths(&mut out, files, config, registry, own);
    // Report each overlong prefix once per transport, with the longest name.
    dedup_by_path(&mut out);
    Problems(out)
}

/// The two files checked against each other, as the user named them.
#[derive(Clone, Copy)]
struct Files<'a> {
    config: &'a str,
    registry: &'a str,
}

impl Files<'_> {
    fn config_problem(
        &self,
        severity: Severity,
        path: String,
        message: String,
        fix: String,
    ) -> Problem {
        problem(severity, self.config, path, message, fix)
    }

    fn registry_problem(&self, path: String, message: String, fix: String) -> Problem {
        problem(Severity::Warning, self.registry, path, message, fix)
    }
}

fn problem(severity: Severity, file: &str, path: String, message: String, fix: String) -> Problem {
    Problem {
        severity,
        file: file.to_string(),
        path,
        message,
        fix,
    }
}

/// This node's registry entry (`registry.nodes[i]`) against its config: an endpoint per
/// transport, and an `exit_preference` when the config makes it an exit.
fn check_own_entry(
    out: &mut Vec<Problem>,
    files: Files<'_>,
    config: &Config,
    registry: &Registry,
    i: usize,
) {
    let node = &registry.nodes[i];
    for (t, transport) in config.transports.iter().enumerate() {
        let listed = node.endpoints.iter().any(|e| {
            e.address_family == transport.address_family && e.send_port == transport.send_port
        });
        if !listed {
            out.push(files.registry_problem(
                field_path(&index_path("", i), "endpoints"),
                format!("this node's entry has no {} endpoint with send port {} (config transport[{t}])", transport.address_family, transport.send_port),
                "make the registry entry match the config (`braid meta -c CONFIG` prints the entry)".into(),
            ));
        }
    }
    if config.exit.is_some() && node.exit_preference.is_none() {
        out.push(files.registry_problem(
            field_path(&index_path("", i), "exit_preference"),
            "the config makes this node an exit, but its registry entry has no exit_preference, so other nodes will not send default traffic here".into(),
            "add \"exit_preference\": 100 to this node's registry entry".into(),
        ));
    }
}

/// Every interface name this node would make (a transport's prefix + a peer's send port)
/// fits Linux's limit; `own` is this node's entry, which gets no link.
fn check_ifname_lengths(
    out: &mut Vec<Problem>,
    files: Files<'_>,
    config: &Config,
    registry: &Registry,
    own: Option<usize>,
) {
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
                let port_len = endpoint.send_port.to_string().len();
                let name_len = transport.prefix.len() + port_len;
                if name_len > IFNAME_MAX {
                    out.push(files.config_problem(
                        Severity::Error,
                        field_path(&index_path("transport", t), "prefix"),
                        format!(
                            "interface name `{}{}` (toward {} [{i}]) is {name_len} bytes; Linux allows at most {IFNAME_MAX}",
                            transport.prefix, endpoint.send_port, files.registry
                        ),
                        format!(
                            "shorten the prefix to at most {} bytes",
                            IFNAME_MAX.saturating_sub(port_len)
                        ),
                    ));
                }
            }
        }
    }
}

fn dedup_by_path(problems: &mut Vec<Problem>) {
    let mut seen = std::collections::HashSet::new();
    problems
        .retain(|p| p.severity != Severity::Error || seen.insert((p.file.clone(), p.path.clone())));
}
