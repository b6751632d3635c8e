//! Combinations of valid fields that this build cannot run. One place decides them, so that
//! `braid check`, `braid run` (at start and at every reload) and `braid up` agree: a config
//! that `check` calls valid is one that `run` accepts.

use crate::config::Config;
use crate::extensions::{Backend, RoutingMode};
use crate::problem::{Problem, Problems, Severity};
use crate::read::index_path;

/// The index of the first transport that bonds several paths (`paths` or `wan`), which only
/// the userspace backend carries.
pub fn first_multipath(config: &Config) -> Option<usize> {
    config
        .transports
        .iter()
        .position(|t| !t.paths.is_empty() || t.wan_auto)
}

/// Every combination in `config` that `braid run` refuses; `file` names the config in the
/// problems. Empty when the config can run (the kernel backend still needs a kernel with
/// WireGuard, which only the machine that runs it can tell).
pub fn unsupported(config: &Config, file: &str) -> Problems {
    let mut problems = Vec::new();
    let mut error = |path: String, message: String, fix: &str| {
        problems.push(Problem {
            severity: Severity::Error,
            file: file.to_string(),
            path,
            message,
            fix: fix.to_string(),
        })
    };
    if !config.vrf.is_empty()
        && matches!(config.routing.mode, RoutingMode::Babel | RoutingMode::Bird)
    {
        error(
            "vrf".into(),
            format!(
                "\"{}\" with routing.mode \"{}\" is not supported yet (the routing engine would run outside the VRF and see none of its routes)",
                config.vrf,
                config.routing.mode.name()
            ),
            "use routing mode \"static\" or \"none\" with a VRF, or remove \"vrf\"",
        );
    }
    if config.backend == Backend::Kernel
        && let Some(i) = first_multipath(config)
    {
        error(
            index_path("transport", i),
            "multi-path links (\"paths\", \"wan\") need the userspace backend, and \"backend\" is \"kernel\"".into(),
            "set \"backend\": \"userspace\" (or \"auto\"), or remove the paths",
        );
    }
    Problems(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "KOfdX54OtHAOMqSn2rytCDHSFNe8prw43O8A98z21Xg=";

    fn config(vrf: &str, extra: &str, transport_extra: &str) -> Config {
        let text = format!(
            r#"{{"registry": "r.json", "private_key": "{KEY}", "vrf": "{vrf}", "stale_group": 1,
               "active_group": 2, "address_plan": {{"ipv6": "2001:db8:5e::/48"}}, {extra}
               "transport": [{{"address_family": "ip4", "address": "", "send_port": 40001,
               "mtu": 1420, "prefix": "brd4x", "fwmark": 0, "random_port": false {transport_extra}}}]}}"#
        );
        Config::parse("node.json", &text).unwrap().0
    }

    #[test]
    fn a_vrf_with_a_routing_engine_is_refused() {
        for mode in ["babel", "bird"] {
            let c = config(
                "brdvrf",
                &format!(r#""routing": {{"mode": "{mode}"}},"#),
                "",
            );
            let text = unsupported(&c, "node.json").to_string();
            assert!(
                text.contains(&format!(
                    "error: node.json: vrf: \"brdvrf\" with routing.mode \"{mode}\" is not supported yet"
                )) && text.contains("fix: use routing mode \"static\""),
                "{text}"
            );
        }
        for (vrf, mode) in [("", "babel"), ("brdvrf", "static")] {
            let c = config(vrf, &format!(r#""routing": {{"mode": "{mode}"}},"#), "");
            assert!(unsupported(&c, "node.json").0.is_empty());
        }
    }

    #[test]
    fn multi_path_transports_on_the_kernel_backend_are_refused() {
        let paths = r#", "paths": [{"interface": "wan0"}]"#;
        let text = unsupported(&config("", r#""backend": "kernel","#, paths), "node.json");
        assert!(
            text.to_string()
                .contains("node.json: transport[0]: multi-path links (\"paths\", \"wan\") need the userspace backend"),
            "{text}"
        );
        for backend in ["userspace", "auto"] {
            let c = config("", &format!(r#""backend": "{backend}","#), paths);
            assert!(unsupported(&c, "node.json").0.is_empty());
        }
        let c = config("", r#""backend": "kernel","#, "");
        assert!(unsupported(&c, "node.json").0.is_empty());
    }
}
