//! The lab against the real kernel: namespaces, veths, addresses, shaping, cuts, configs,
//! and cleanup on drop, on panic and after a "killed" run.

use braid_lab::{
    ConfigOptions, Lab, LabSpec, LinkShape, cleanup, command::namespaces, namespace_prefix,
};

fn name(tag: &str) -> String {
    format!("{tag}{:x}", std::process::id() % 0xffff)
}

fn lab_namespaces(lab_name: &str) -> Vec<String> {
    namespaces()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&namespace_prefix(lab_name)))
        .collect()
}

#[test]
fn every_pair_pings_over_ipv4_and_ipv6() {
    if !braid_lab::available_or_skip("every_pair_pings_over_ipv4_and_ipv6") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&name("pg"), 3)).unwrap();
    for i in 1..=3 {
        for j in 1..=3 {
            if i != j {
                assert!(
                    lab.ping(i, &lab.addrs(j).v4.to_string()),
                    "n{i} -> n{j} over IPv4"
                );
                assert!(
                    lab.ping(i, &lab.addrs(j).v6.to_string()),
                    "n{i} -> n{j} over IPv6"
                );
            }
        }
    }
}

#[test]
fn a_panicking_test_leaves_no_namespace_or_veth() {
    if !braid_lab::available_or_skip("a_panicking_test_leaves_no_namespace_or_veth") {
        return;
    }
    let lab_name = name("pn");
    let inner = lab_name.clone();
    let result = std::panic::catch_unwind(move || {
        let _lab = Lab::up(LabSpec::new(&inner, 3)).unwrap();
        assert_eq!(lab_namespaces(&inner).len(), 3);
        panic!("a test failing in the middle of its lab");
    });
    assert!(result.is_err());
    assert!(
        lab_namespaces(&lab_name).is_empty(),
        "namespaces survived the panic"
    );
    // The veths lived only inside the namespaces; none leaked into the host.
    let host = std::process::Command::new("ip")
        .args(["-o", "link", "show", "type", "veth"])
        .output()
        .unwrap();
    let host = String::from_utf8_lossy(&host.stdout);
    assert!(
        !host
            .lines()
            .any(|l| l.contains(": u1@") || l.contains(": u2@") || l.contains(": u3@")),
        "{host}"
    );
}

#[test]
fn cleanup_removes_what_a_killed_run_left() {
    if !braid_lab::available_or_skip("cleanup_removes_what_a_killed_run_left") {
        return;
    }
    let lab_name = name("kl");
    let lab = Lab::up(LabSpec::new(&lab_name, 2)).unwrap();
    std::mem::forget(lab); // as if the process had been killed
    assert_eq!(lab_namespaces(&lab_name).len(), 2);
    cleanup(Some(&lab_name)).unwrap();
    assert!(lab_namespaces(&lab_name).is_empty());
}

#[test]
fn cut_blocks_a_pair_and_restore_brings_it_back() {
    if !braid_lab::available_or_skip("cut_blocks_a_pair_and_restore_brings_it_back") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&name("ct"), 3)).unwrap();
    let v4 = lab.addrs(3).v4.to_string();
    assert!(lab.ping(1, &v4));
    lab.cut(1, 3).unwrap();
    assert!(!lab.ping(1, &v4), "cut pair still pings");
    assert!(
        !lab.ping(3, &lab.addrs(1).v6.to_string()),
        "cut pair still pings back over IPv6"
    );
    assert!(
        lab.ping(1, &lab.addrs(2).v4.to_string()),
        "other pairs are not affected"
    );
    lab.restore(1, 3).unwrap();
    assert!(lab.ping(1, &v4));
}

#[test]
fn shaping_installs_tbf_and_loss_rules() {
    if !braid_lab::available_or_skip("shaping_installs_tbf_and_loss_rules") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&name("sh"), 2)).unwrap();
    lab.shape(
        1,
        2,
        LinkShape {
            rate_mbit: Some(50),
            loss_percent: Some(30),
        },
    )
    .unwrap();
    let qdisc = String::from_utf8_lossy(
        &lab.exec(1, "tc", &["qdisc", "show", "dev", "u2"])
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(qdisc.contains("tbf") && qdisc.contains("50Mbit"), "{qdisc}");
    let rules = String::from_utf8_lossy(
        &lab.exec(2, "nft", &["list", "table", "inet", "braid_lab"])
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(rules.contains("numgen random mod 100 < 30"), "{rules}");
    // 100% loss: nothing gets through; clearing the shape brings the pair back.
    lab.shape(
        1,
        2,
        LinkShape {
            rate_mbit: None,
            loss_percent: Some(100),
        },
    )
    .unwrap();
    assert!(!lab.ping(1, &lab.addrs(2).v4.to_string()));
    lab.shape(1, 2, LinkShape::default()).unwrap();
    assert!(lab.ping(1, &lab.addrs(2).v4.to_string()));
    let qdisc = String::from_utf8_lossy(
        &lab.exec(1, "tc", &["qdisc", "show", "dev", "u2"])
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(!qdisc.contains("tbf"), "{qdisc}");
}

#[test]
fn spawned_processes_end_with_the_lab() {
    if !braid_lab::available_or_skip("spawned_processes_end_with_the_lab") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&name("sp"), 1)).unwrap();
    let pid = lab
        .spawn(1, std::process::Command::new("sleep").arg("300"))
        .unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    lab.down().unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "sleep {pid} survived the lab"
    );
}

#[test]
fn generated_configs_are_valid_and_mirrored() {
    if !braid_lab::available_or_skip("generated_configs_are_valid_and_mirrored") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&name("cf"), 3)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(
            dir.path(),
            &ConfigOptions {
                behind_nat: vec![3],
                ..ConfigOptions::default()
            },
        )
        .unwrap();
    assert_eq!(files.len(), 3);
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
            assert_eq!(config.private_key.public_key().to_base64(), f.public_key);
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
    // n1 (ip4 send port 40002) toward n2 (40004) and back.
    let n1_to_n2 = plans[0]
        .links
        .iter()
        .find(|l| l.name == "brd4x40004")
        .unwrap();
    assert_eq!(
        n1_to_n2.endpoint.as_ref().unwrap().to_string(),
        "198.18.0.2:40002"
    );
    let n2_to_n1 = plans[1]
        .links
        .iter()
        .find(|l| l.name == "brd4x40002")
        .unwrap();
    assert_eq!(
        n2_to_n1.endpoint.as_ref().unwrap().to_string(),
        "198.18.0.1:40004"
    );
    // n3 is behind NAT: nobody dials it.
    assert!(
        plans[0]
            .links
            .iter()
            .find(|l| l.name == "brd6x40007")
            .unwrap()
            .endpoint
            .is_none()
    );
}

#[test]
fn bad_names_and_sizes_are_refused() {
    assert!(Lab::up(LabSpec::new("Bad Name", 2)).is_err());
    assert!(Lab::up(LabSpec::new("ok", 0)).is_err());
}
