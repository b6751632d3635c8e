//! Tests of the exposition: every metric documented, the status document documented and
//! read back as written, paths labelled by name. [`status`] is also the HTTP listener's.

use super::*;
use crate::status::{
    Exit, Exits, LinkStatus, NodeStatus, RegistryStatus, RoutingStatus, STATUS_SCHEMA_VERSION,
};
use braid_bond::{BondStatus, PathId, PathState, PathStatus, ReorderStatus, Scheduler};

fn path(id: u32, name: &str, state: PathState, loss_samples: u32) -> PathStatus {
    PathStatus {
        id: PathId(id),
        name: name.into(),
        key: id,
        origin: "configured",
        peer: None,
        state,
        down_reason: None,
        rtt_ms: Some(20.0),
        min_rtt_ms: Some(18.0),
        jitter_ms: 1.0,
        loss: 0.5,
        loss_samples,
        data_loss: 0.0,
        delivery_rate_bps: 1e6,
        sent_bps: 3e6,
        share: 0.75,
        capacity_bps: None,
        capacity_lower_bound_bps: None,
        rate_bps: 10e6,
        queue_ms: 0.0,
        send_delay_ms: Some(12.0),
        send_jitter_ms: 0.5,
        receive_delay_ms: Some(0.0),
        send_loss: 0.01,
        arrival_ms: Some(0.0),
        repeating: false,
        excluded: None,
        weight: None,
        priority: 0,
        rate_cap_bps: None,
        counters: braid_bond::Counters::default(),
        last_probe_answer_ms_ago: Some(10.0),
        last_probe_sent_ms_ago: Some(5.0),
    }
}

/// A status with one bonded link (two paths) and an IPv4 exit; also used by the HTTP
/// listener's tests.
pub(crate) fn status() -> Status {
    Status {
        version: STATUS_SCHEMA_VERSION,
        node: NodeStatus {
            public_key: "key".into(),
            name: Some("n1".into()),
            backend: "userspace",
            config: "/c".into(),
            uptime_seconds: 1,
            last_reload_ok: true,
            ..Default::default()
        },
        links: vec![LinkStatus {
            name: "brd4x40004".into(),
            peer: "n2".into(),
            peer_public_key: "k2".into(),
            family: "ip4".into(),
            state: "up",
            routes: Some(3),
            route_metric: Some(1024),
            stats: crate::backend::LinkStats {
                bond: Some(bond()),
                ..Default::default()
            },
            ..Default::default()
        }],
        routing: RoutingStatus {
            mode: "static",
            healthy: true,
            exits: Some(Exits {
                ip4: Some(Exit {
                    dev: "brd4x40004".into(),
                    via: None,
                    from: None,
                    link: Some("brd4x40004".into()),
                    peer: Some("n2".into()),
                    table: 98,
                    metric: 512,
                }),
                ip6: None,
            }),
            ..Default::default()
        },
        registry: RegistryStatus::default(),
        mesh: Vec::new(),
    }
}

/// A bonded link's status: round-robin over two paths, wan0 up and wan1 probing.
fn bond() -> BondStatus {
    BondStatus {
        scheduler: Scheduler::RoundRobin,
        scheduler_source: "configured",
        peer_probes: true,
        reorder: ReorderStatus {
            enabled: true,
            wait_ms: 25.0,
            observed_ms: 10.0,
            ..Default::default()
        },
        probes: Default::default(),
        paths: vec![
            path(0, "wan0", PathState::Up, 100),
            path(1, "wan1", PathState::Probing, 0),
        ],
    }
}

/// Metric names in docs/metrics.md's table, and in a rendering where every family has
/// samples: the two lists must be the same.
#[test]
fn every_metric_is_documented_and_every_documented_metric_exists() {
    let mut status = full_status();
    status.registry.state.fetch = Some(crate::fetch::FetchState {
        results: [("changed".to_string(), 1)].into(),
        ..Default::default()
    });
    status.links[0].stats.underlay_mtu = Some(1500);
    status.links[0].stats.keepalive_loss = Some(0.05);
    status.links[0].routing_cost = Some(crate::routing::cost::RoutingCost {
        rxcost: 1024,
        reason: crate::routing::cost::CostReason::Lossy,
        loss: Some(0.05),
    });
    if let Some(bond) = status.links[0].stats.bond.as_mut() {
        bond.paths[0].capacity_bps = Some(1e6);
    }
    let text = render_with_listener(&status, &crate::http::ListenerStats::default());
    let rendered: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            // OpenMetrics names a counter family without its samples' `_total`.
            Some(if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            })
        })
        .collect();
    let docs = include_str!("../../../../docs/metrics.md");
    let documented: std::collections::BTreeSet<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("| `braid_"))
        .filter_map(|l| l.split('`').next())
        .map(|name| format!("braid_{name}"))
        .collect();
    let undocumented: Vec<_> = rendered.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&rendered).collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "served but not in docs/metrics.md: {undocumented:?}; documented but never served: {missing:?}"
    );
    // The table is one table: a blank line inside it split it in two on GitHub.
    let table: Vec<&str> = docs
        .lines()
        .skip_while(|l| !l.starts_with("| metric |"))
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert_eq!(
        table.len(),
        documented.len() + 2,
        "the metrics table is broken up"
    );
}

/// [`status`] with every optional part filled in.
fn full_status() -> Status {
    let mut status = status();
    status
        .registry
        .state
        .refusals
        .insert("bad_signature".into(), 1);
    status.registry.state.fetch = Some(crate::fetch::FetchState::default());
    status.mesh.push(crate::status::MeshNode {
        name: "n2".into(),
        public_key: "k2".into(),
        address6: None,
        linked: true,
        via_link: None,
        via: None,
        exit_preference: None,
    });
    status.routing.engine = Some(crate::routing::supervisor::EngineHealth {
        program: Some("babeld"),
        ..Default::default()
    });
    status.routing.routes.push(braid_plan::routes::RoutePlan {
        destination: "2001:db8:bd00:2::/64".parse().unwrap(),
        via: "fe80::2".parse().unwrap(),
        dev: "brd4x40004".into(),
        metric: 1024,
    });
    status
}

/// The document reads back as it was written: what the CLI reads is what the daemon
/// wrote, field for field.
#[test]
fn the_status_document_reads_back_as_written() {
    let mut status = full_status();
    status.node.last_error = Some("brd4x40006: no endpoint".into());
    status.links[0].stats.last_handshake =
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000));
    if let Some(bond) = status.links[0].stats.bond.as_mut() {
        bond.paths[1].share = f64::NAN;
    }
    let json = serde_json::to_value(&status).unwrap();
    let back: Status = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), json);
    assert_eq!(back.links[0].state, "up");
    assert_eq!(
        back.links[0].stats.last_handshake,
        status.links[0].stats.last_handshake
    );
}

/// Every field name of the status document (with every optional part filled in) is
/// named in docs/status-json.md (routes as in plan-json.md).
#[test]
fn every_status_field_is_documented() {
    fn names(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    out.insert(k.clone());
                    names(v, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| names(v, out)),
            _ => {}
        }
    }
    let status = full_status();
    let mut fields = std::collections::BTreeSet::new();
    names(&serde_json::to_value(&status).unwrap(), &mut fields);
    // Refusal reasons and fetch results are values (keys of a count map), not fields.
    fields.remove("bad_signature");
    let docs = include_str!("../../../../docs/status-json.md");
    let missing: Vec<_> = fields
        .iter()
        .filter(|f| !docs.contains(&format!("`{f}`")) && !docs.contains(&format!("\"{f}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/status-json.md: {missing:?}"
    );
}

#[test]
fn paths_are_labelled_by_name_with_their_numbers() {
    let text = render(&status());
    let has = |line: &str| text.lines().any(|l| l == line);
    let wan0 = r#"{link="brd4x40004",peer="n2",path="wan0",origin="configured"}"#;
    assert!(has(&format!("braid_path_up{wan0} 1")), "{text}");
    assert!(
        has(&format!("braid_path_traffic_share_ratio{wan0} 0.75")),
        "{text}"
    );
    assert!(
        has(&format!("braid_path_send_delay_seconds{wan0} 0.012")),
        "{text}"
    );
    assert!(has(&format!("braid_path_loss_ratio{wan0} 0.5")), "{text}");
    assert!(
        has(&format!(
            "braid_path_rate_estimate_bits_per_second{wan0} 10000000.0"
        )),
        "{text}"
    );
    // No probe answered yet on wan1: no loss to show.
    assert!(!text.contains(r#"braid_path_loss_ratio{link="brd4x40004",peer="n2",path="wan1""#));
    assert!(!text.contains(r#"path="0""#) && !text.contains(r#"path="1""#));
    assert!(
        has(r#"braid_reorder_wait_seconds{link="brd4x40004",peer="n2"} 0.025"#),
        "{text}"
    );
    assert!(
        has(r#"braid_link_routes{link="brd4x40004",peer="n2",family="ip4"} 3"#),
        "{text}"
    );
    assert!(
        has(r#"braid_exit_info{family="ip4",dev="brd4x40004",link="brd4x40004",peer="n2"} 1"#),
        "{text}"
    );
}
