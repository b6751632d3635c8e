//! Generated configs and registry: valid JSON in ranet's format, mirrored send ports, the
//! keys' public halves in the registry, and accepted by braid's model and plan. Needs no
//! root.

use braid_lab::{ConfigOptions, write_configs};
use braid_model::PrivateKey;
use serde_json::Value;
use std::path::Path;

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn configs_and_registry_are_ranet_json_with_mirrored_ports() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_configs("cfg", 3, dir.path(), &ConfigOptions::default()).unwrap();
    assert_eq!(files.len(), 3);
    let registry_path = dir.path().join("registry.json");
    let registry = read_json(&registry_path);
    let entries = registry.as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for f in &files {
        let i = f.index;
        assert_eq!(f.config, dir.path().join(format!("n{i}/config.json")));
        let config = read_json(&f.config);
        assert_eq!(
            config["registry"].as_str().unwrap(),
            registry_path.to_str().unwrap()
        );
        assert!(Path::new(config["registry"].as_str().unwrap()).is_absolute());
        for (key, value) in [
            ("vrf", Value::from("")),
            ("stale_group", Value::from(1)),
            ("active_group", Value::from(2)),
        ] {
            assert_eq!(config[key], value, "{key}");
        }
        assert_eq!(config["address_plan"]["ipv6"], "2001:db8:bd00::/48");
        assert_eq!(config["address_plan"]["ipv4_pool"], "10.0.0.0/8");
        assert!(config["remarks"].is_object());
        // The private key's public half is what the registry publishes.
        let key = PrivateKey::from_base64(config["private_key"].as_str().unwrap()).unwrap();
        let public = key.public_key().to_base64();
        assert_eq!(public, f.public_key);
        let entry = &entries[i - 1];
        assert_eq!(entry["public_key"], public.as_str());
        assert_eq!(entry["name"], format!("n{i}").as_str());
        assert_eq!(entry["index"], i);
        assert!(entry["remarks"].is_object());
        // Transports and endpoints mirror each other: same family, address, send port.
        let transports = config["transport"].as_array().unwrap();
        let endpoints = entry["endpoints"].as_array().unwrap();
        assert_eq!(transports.len(), 2);
        assert_eq!(endpoints.len(), 2);
        let expected = [
            ("ip4", format!("198.18.0.{i}"), 40000 + 2 * i, "brd4x"),
            ("ip6", format!("2001:db8::{i}"), 40001 + 2 * i, "brd6x"),
        ];
        for ((t, e), (family, address, port, prefix)) in
            transports.iter().zip(endpoints).zip(expected)
        {
            for v in [t, e] {
                assert_eq!(v["address_family"], family);
                assert_eq!(v["address"], address.as_str());
                assert_eq!(v["send_port"], port);
            }
            assert_eq!(t["prefix"], prefix);
            assert_eq!(t["mtu"], 1420);
            assert_eq!(t["fwmark"], 0);
            assert_eq!(t["random_port"], false);
        }
    }
    // Keys are fresh per node.
    let keys: std::collections::BTreeSet<_> = files.iter().map(|f| &f.public_key).collect();
    assert_eq!(keys.len(), 3);
}

#[test]
fn model_and_plan_accept_the_configs() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_configs(
        "cfg",
        3,
        dir.path(),
        &ConfigOptions {
            behind_nat: vec![3],
            ..ConfigOptions::default()
        },
    )
    .unwrap();
    let registry_text = std::fs::read_to_string(dir.path().join("registry.json")).unwrap();
    let (registry, _) = braid_model::Registry::parse("registry.json", &registry_text).unwrap();
    let plans: Vec<_> = files
        .iter()
        .map(|f| {
            let (config, warnings) = braid_model::Config::parse(
                "config.json",
                &std::fs::read_to_string(&f.config).unwrap(),
            )
            .unwrap();
            assert!(warnings.0.is_empty());
            let cross =
                braid_model::mesh::check(&config, "config.json", &registry, "registry.json");
            assert!(cross.0.is_empty(), "{cross}");
            braid_plan::plan(
                &config,
                &registry,
                braid_plan::Sources {
                    config: "config.json",
                    registry: "registry.json",
                },
            )
            .unwrap()
        })
        .collect();
    // n1 (ip4 send port 40002) toward n2 (40004) and back: each sends to the other's
    // address at its own send port.
    let link = |node: usize, name: &str| {
        plans[node - 1]
            .links
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("n{node} has no link {name}"))
            .clone()
    };
    assert_eq!(
        link(1, "brd4x40004").endpoint.unwrap().to_string(),
        "198.18.0.2:40002"
    );
    assert_eq!(
        link(2, "brd4x40002").endpoint.unwrap().to_string(),
        "198.18.0.1:40004"
    );
    // n3 is behind NAT: it publishes no address, so nobody dials it.
    assert!(link(1, "brd6x40007").endpoint.is_none());
}

#[test]
fn options_choose_families_and_ports() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_configs(
        "cfg",
        2,
        dir.path(),
        &ConfigOptions {
            ip4: false,
            base_port: 50000,
            mtu: 1380,
            ..ConfigOptions::default()
        },
    )
    .unwrap();
    let config = read_json(&files[1].config);
    let transports = config["transport"].as_array().unwrap();
    assert_eq!(transports.len(), 1);
    assert_eq!(transports[0]["address_family"], "ip6");
    assert_eq!(transports[0]["send_port"], 50005);
    assert_eq!(transports[0]["mtu"], 1380);
    // Ports that would pass 65535 are refused.
    let err = write_configs(
        "cfg",
        3,
        dir.path(),
        &ConfigOptions {
            base_port: 65530,
            ..ConfigOptions::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("65530"), "{err}");
}

/// Configs hold private keys: only their owner may read them (issue 17); the registry is
/// public.
#[test]
fn configs_are_written_0600_and_the_registry_0644() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let files = write_configs("cfg", 2, dir.path(), &ConfigOptions::default()).unwrap();
    for f in &files {
        assert_eq!(mode(&f.config), 0o600, "{}", f.config.display());
    }
    assert_eq!(mode(&dir.path().join("registry.json")), 0o644);
    // Written again over a world-readable file: 0600 again.
    std::fs::set_permissions(&files[0].config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let files = write_configs("cfg", 2, dir.path(), &ConfigOptions::default()).unwrap();
    assert_eq!(mode(&files[0].config), 0o600);
}
