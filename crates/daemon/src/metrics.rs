//! The Prometheus exposition of a status document. Names carry their units; counters end in
//! `_total`; links are labelled `link`, `peer` and `family`. docs/metrics.md lists them all.

use crate::status::Status;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Per-path gauges of multi-path links, one family per number (docs/metrics.md).
#[derive(Default)]
struct PathFamilies {
    up: Family<Labels, Gauge>,
    rtt: Family<Labels, FloatGauge>,
    jitter: Family<Labels, FloatGauge>,
    send_delay: Family<Labels, FloatGauge>,
    loss: Family<Labels, FloatGauge>,
    send_loss: Family<Labels, FloatGauge>,
    delivery: Family<Labels, FloatGauge>,
    sent: Family<Labels, FloatGauge>,
    rate: Family<Labels, FloatGauge>,
    capacity: Family<Labels, FloatGauge>,
    share: Family<Labels, FloatGauge>,
    tx_bytes: Family<Labels, Counter>,
    rx_bytes: Family<Labels, Counter>,
}

impl PathFamilies {
    /// Adds one path's numbers, labelled `link`, `peer`, `path` (its name: the uplink, or
    /// the peer's address for a learned path) and `origin`.
    fn add(&self, link: &crate::status::LinkStatus, path: &braid_bond::PathStatus) {
        let l = labels(&[
            ("link", &link.name),
            ("peer", &link.peer),
            ("path", &path.name),
            ("origin", path.origin),
        ]);
        let seconds = |ms: f64| ms / 1e3;
        self.up
            .get_or_create(&l)
            .set(i64::from(path.state == braid_bond::PathState::Up));
        if let Some(rtt) = path.rtt_ms {
            self.rtt.get_or_create(&l).set(seconds(rtt));
            self.jitter.get_or_create(&l).set(seconds(path.jitter_ms));
        }
        if let Some(delay) = path.send_delay_ms {
            self.send_delay.get_or_create(&l).set(seconds(delay));
        }
        if path.loss_samples > 0 {
            self.loss.get_or_create(&l).set(path.loss);
        }
        self.send_loss.get_or_create(&l).set(path.send_loss);
        self.delivery.get_or_create(&l).set(path.delivery_rate_bps);
        self.sent.get_or_create(&l).set(path.sent_bps);
        self.rate.get_or_create(&l).set(path.rate_bps);
        if let Some(c) = path.capacity_bps {
            self.capacity.get_or_create(&l).set(c);
        }
        self.share.get_or_create(&l).set(path.share);
        self.tx_bytes
            .get_or_create(&l)
            .inc_by(path.counters.tx_bytes);
        self.rx_bytes
            .get_or_create(&l)
            .inc_by(path.counters.rx_bytes);
    }

    fn register(self, registry: &mut Registry) {
        let families: [(&str, &str, Family<Labels, FloatGauge>); 10] = [
            (
                "path_rtt_seconds",
                "Smoothed round-trip time of the path's probes (absent before the first answer)",
                self.rtt,
            ),
            (
                "path_jitter_seconds",
                "Jitter of the path's probe round trips",
                self.jitter,
            ),
            (
                "path_send_delay_seconds",
                "One-way delay toward the peer above the fastest path's (base delays)",
                self.send_delay,
            ),
            (
                "path_loss_ratio",
                "Share of the path's recent probes without an answer, counted from its first answer",
                self.loss,
            ),
            (
                "path_send_loss_ratio",
                "One-way random loss toward the peer, from the peer's received counters",
                self.send_loss,
            ),
            (
                "path_delivery_rate_bits_per_second",
                "Rate the peer reports receiving on the path",
                self.delivery,
            ),
            (
                "path_sent_rate_bits_per_second",
                "Rate this side sent on the path over the last probe interval",
                self.sent,
            ),
            (
                "path_rate_estimate_bits_per_second",
                "The rate the scheduler expects the path to drain its queue at",
                self.rate,
            ),
            (
                "path_capacity_bits_per_second",
                "Measured capacity of the path (absent until measured)",
                self.capacity,
            ),
            (
                "path_traffic_share_ratio",
                "The path's share of what the link sent over the last probe interval",
                self.share,
            ),
        ];
        registry.register(
            "path_up",
            "1 when the path answers its probes and carries traffic",
            self.up,
        );
        for (name, help, family) in families {
            registry.register(name, help, family);
        }
        registry.register(
            "path_transmit_bytes",
            "Bytes sent on the path",
            self.tx_bytes,
        );
        registry.register(
            "path_receive_bytes",
            "Bytes received on the path",
            self.rx_bytes,
        );
    }
}

/// Per-path metrics of multi-path links, and each link's reorder buffer.
fn register_paths(registry: &mut Registry, status: &Status) {
    let paths = PathFamilies::default();
    let reorder = Family::<Labels, Counter>::default();
    let wait = Family::<Labels, FloatGauge>::default();
    let observed = Family::<Labels, FloatGauge>::default();
    for link in &status.links {
        let Some(bond) = &link.stats.bond else {
            continue;
        };
        for path in &bond.paths {
            paths.add(link, path);
        }
        let r = &bond.reorder;
        let base = labels(&[("link", &link.name), ("peer", &link.peer)]);
        wait.get_or_create(&base).set(r.wait_ms / 1e3);
        observed.get_or_create(&base).set(r.observed_ms / 1e3);
        for (what, n) in [
            ("held", r.counters.held),
            ("released_after_wait", r.counters.released_after_wait),
            ("released_late", r.counters.released_late),
            ("dropped", r.counters.dropped),
            ("duplicates", r.counters.duplicates),
        ] {
            let mut l = base.clone();
            l.push(("what".into(), what.into()));
            reorder.get_or_create(&l).inc_by(n);
        }
    }
    paths.register(registry);
    registry.register(
        "reorder_packets",
        "Reorder buffer: packets held for an earlier one, released after waiting out a gap, released late (after their gap was skipped), dropped, duplicates discarded",
        reorder,
    );
    registry.register(
        "reorder_wait_seconds",
        "How long the link's reorder buffer waits for a missing packet now",
        wait,
    );
    registry.register(
        "reorder_observed_seconds",
        "The largest reordering the link's buffer saw recently (halving every 10 s)",
        observed,
    );
}

/// Each link's routes in the kernel and the exit in use per family.
fn register_routes_and_exits(registry: &mut Registry, status: &Status) {
    let routes = Family::<Labels, Gauge>::default();
    for link in &status.links {
        if let Some(n) = link.routes {
            let l = labels(&[
                ("link", &link.name),
                ("peer", &link.peer),
                ("family", &link.family),
            ]);
            routes
                .get_or_create(&l)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    registry.register(
        "link_routes",
        "Routes the kernel sends over the link (0: it carries none)",
        routes,
    );
    let exits = Family::<Labels, Gauge>::default();
    if let Some(e) = &status.routing.exits {
        for (family, exit) in [("ip4", &e.ip4), ("ip6", &e.ip6)] {
            let Some(exit) = exit else { continue };
            exits
                .get_or_create(&labels(&[
                    ("family", family),
                    ("dev", &exit.dev),
                    ("link", exit.link.as_deref().unwrap_or("")),
                    ("peer", exit.peer.as_deref().unwrap_or("")),
                ]))
                .set(1);
        }
    }
    registry.register(
        "exit_info",
        "Where each family's default route leaves: over a link to an exit node, or the node's own uplink (always 1)",
        exits,
    );
}

/// The registry's version, refusals and fetcher (docs/metrics.md, "Registry").
fn register_registry(registry: &mut Registry, status: &Status) {
    let r = &status.registry;
    let version = FloatGauge::default();
    version.set(r.signed_version.unwrap_or(0) as f64);
    registry.register(
        "registry_version_timestamp_seconds",
        "The running registry's version: its signature's timestamp (0: not signed)",
        version,
    );
    let refusals = Family::<Labels, Counter>::default();
    for (reason, n) in &r.state.refusals {
        refusals
            .get_or_create(&labels(&[("reason", reason)]))
            .inc_by(*n);
    }
    registry.register(
        "registry_refusals",
        "Registries refused (the running one kept), by reason",
        refusals,
    );
    let last = FloatGauge::default();
    last.set(r.state.last_refusal_at.unwrap_or(0) as f64);
    registry.register(
        "registry_last_refusal_timestamp_seconds",
        "Unix time of the last refused registry (0: none)",
        last,
    );
    let Some(fetch) = &r.state.fetch else { return };
    let results = Family::<Labels, Counter>::default();
    for (result, n) in &fetch.results {
        results
            .get_or_create(&labels(&[("result", result)]))
            .inc_by(*n);
    }
    registry.register(
        "registry_fetches",
        "Fetches of a registry URL, by result (changed, unchanged, not_modified, refused, failed)",
        results,
    );
    let success = Gauge::<i64>::default();
    success.set(i64::from(
        fetch.last_attempt_at.is_some() && fetch.consecutive_failures == 0,
    ));
    registry.register(
        "registry_fetch_success",
        "1 when the last fetch of the registry URL reached it and found a good or unchanged registry",
        success,
    );
    let last_ok = FloatGauge::default();
    last_ok.set(fetch.last_success_at.unwrap_or(0) as f64);
    registry.register(
        "registry_last_fetch_success_timestamp_seconds",
        "Unix time of the last successful fetch (0: none since start)",
        last_ok,
    );
}

/// Renders the status as Prometheus text (OpenMetrics-compatible exposition).
pub fn render(status: &Status) -> String {
    encode_registry(&registry_of(status))
}

/// As [`render`], plus the process's descriptors and the status listener's connections.
pub fn render_with_listener(status: &Status, listener: &crate::http::ListenerStats) -> String {
    let mut registry = registry_of(status);
    register_process(&mut registry, listener);
    encode_registry(&registry)
}

fn encode_registry(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, registry);
    out
}

/// Descriptors of the process and connections of the status listener.
fn register_process(registry: &mut Registry, listener: &crate::http::ListenerStats) {
    use std::sync::atomic::Ordering::Relaxed;
    let gauge = |n: u64| {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(n).unwrap_or(i64::MAX));
        g
    };
    let counter = |n: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(n);
        c
    };
    if let Some(open) = crate::fds::open() {
        registry.register(
            "process_open_fds",
            "File descriptors the daemon holds",
            gauge(open),
        );
    }
    if let Some(limit) = crate::fds::limit() {
        registry.register(
            "process_max_fds",
            "The daemon's limit on file descriptors (RLIMIT_NOFILE, soft)",
            gauge(limit),
        );
    }
    registry.register(
        "status_connections",
        "Connections open on the status listener",
        gauge(listener.open.load(Relaxed)),
    );
    registry.register(
        "status_connections_max",
        "The most connections the status listener holds at once",
        gauge(listener.cap.load(Relaxed)),
    );
    let closed = Family::<Labels, Counter>::default();
    for (reason, n) in [
        ("cap", listener.refused.load(Relaxed)),
        ("timeout", listener.timed_out.load(Relaxed)),
    ] {
        closed
            .get_or_create(&labels(&[("reason", reason)]))
            .inc_by(n);
    }
    registry.register(
        "status_connections_closed",
        "Status listener connections braid closed: at once because the cap was reached, or idle or open too long",
        closed,
    );
    registry.register(
        "status_accept_errors",
        "Failed accepts on the status listener (e.g. out of descriptors)",
        counter(listener.accept_errors.load(Relaxed)),
    );
}

fn registry_of(status: &Status) -> Registry {
    let mut registry = Registry::with_prefix("braid");
    register_node(&mut registry, status);
    register_links(&mut registry, status);
    register_routes_and_exits(&mut registry, status);
    register_paths(&mut registry, status);
    register_registry(&mut registry, status);
    register_routing(&mut registry, status);
    registry
}

/// This node: its identity and input versions, uptime, and how the last reload went.
fn register_node(registry: &mut Registry, status: &Status) {
    let node = &status.node;
    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&labels(&[
        ("public_key", &node.public_key),
        ("name", node.name.as_deref().unwrap_or("")),
        ("backend", node.backend),
        (
            "config_version",
            node.config_version.as_deref().unwrap_or(""),
        ),
        (
            "registry_version",
            node.registry_version.as_deref().unwrap_or(""),
        ),
    ]))
    .set(1);
    registry.register(
        "node_info",
        "This node: key, name, backend and input versions (always 1)",
        info,
    );

    let uptime = FloatGauge::default();
    uptime.set(node.uptime_seconds as f64);
    registry.register("uptime_seconds", "Seconds since braid run started", uptime);

    let loaded = FloatGauge::default();
    loaded.set(node.loaded_at.unwrap_or(0) as f64);
    registry.register(
        "config_loaded_timestamp_seconds",
        "Unix time of the last successful reload",
        loaded,
    );

    let reload_ok = Gauge::<i64>::default();
    reload_ok.set(i64::from(node.last_reload_ok));
    registry.register(
        "last_reload_success",
        "1 when the last reload's input was valid, else 0",
        reload_ok,
    );

    let failing = Gauge::<i64>::default();
    failing.set(i64::from(node.last_error.is_some()));
    registry.register(
        "last_reload_error",
        "1 when the last reload failed or left links down, else 0",
        failing,
    );
}

/// The planned links by state, and each link's series ([`LinkFamilies`]).
fn register_links(registry: &mut Registry, status: &Status) {
    let by_state = Family::<Labels, Gauge>::default();
    for state in ["up", "connecting", "stale", "failed"] {
        by_state
            .get_or_create(&labels(&[("state", state)]))
            .set(status.links.iter().filter(|l| l.state == state).count() as i64);
    }
    registry.register("links", "Planned links by state", by_state);
    let families = LinkFamilies::default();
    for link in &status.links {
        families.add(link);
    }
    families.register(registry);
}

/// The per-link metric families, one series per link (labels `link`, `peer`, `family`).
#[derive(Default)]
struct LinkFamilies {
    up: Family<Labels, Gauge>,
    handshake: Family<Labels, FloatGauge>,
    rx_bytes: Family<Labels, Counter>,
    tx_bytes: Family<Labels, Counter>,
    rx_packets: Family<Labels, Counter>,
    tx_packets: Family<Labels, Counter>,
    dropped: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    cookies: Family<Labels, Counter>,
    fragmented: Family<Labels, Counter>,
    gso_fallbacks: Family<Labels, Counter>,
    underlay_mtu: Family<Labels, Gauge>,
    keepalive_loss: Family<Labels, FloatGauge>,
    routing_cost: Family<Labels, Gauge>,
}

impl LinkFamilies {
    /// Adds one link's series.
    fn add(&self, link: &crate::status::LinkStatus) {
        let base = labels(&[
            ("link", &link.name),
            ("peer", &link.peer),
            ("family", &link.family),
        ]);
        self.up
            .get_or_create(&base)
            .set(i64::from(link.state == "up"));
        let last = link
            .stats
            .last_handshake
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        self.handshake.get_or_create(&base).set(last);
        self.rx_bytes
            .get_or_create(&base)
            .inc_by(link.stats.rx_bytes);
        self.tx_bytes
            .get_or_create(&base)
            .inc_by(link.stats.tx_bytes);
        self.rx_packets
            .get_or_create(&base)
            .inc_by(link.stats.rx_packets);
        self.tx_packets
            .get_or_create(&base)
            .inc_by(link.stats.tx_packets);
        for (reason, n) in [
            ("bad_packet", link.stats.dropped_bad_packet),
            ("unknown_key", link.stats.dropped_unknown_key),
            ("replay", link.stats.dropped_replay),
            ("no_route", link.stats.dropped_no_route),
        ] {
            let mut l = base.clone();
            l.push(("reason".into(), reason.into()));
            self.dropped.get_or_create(&l).inc_by(n);
        }
        self.rejected
            .get_or_create(&base)
            .inc_by(link.stats.rejected_handshakes);
        self.cookies
            .get_or_create(&base)
            .inc_by(link.stats.cookie_replies);
        self.fragmented
            .get_or_create(&base)
            .inc_by(link.stats.tx_fragmented);
        self.gso_fallbacks
            .get_or_create(&base)
            .inc_by(link.stats.tx_gso_fallbacks);
        if let Some(loss) = link.stats.keepalive_loss {
            self.keepalive_loss.get_or_create(&base).set(loss);
        }
        if let Some(mtu) = link.stats.underlay_mtu {
            self.underlay_mtu.get_or_create(&base).set(i64::from(mtu));
        }
        if let Some(cost) = link.routing_cost {
            let mut l = base.clone();
            l.push(("reason".into(), cost.reason.name().into()));
            self.routing_cost
                .get_or_create(&l)
                .set(i64::from(cost.rxcost));
        }
    }

    /// Registers every family, in the order the metrics are exposed.
    fn register(self, registry: &mut Registry) {
        registry.register(
            "link_up",
            "1 when the link had a handshake within 180 s",
            self.up,
        );
        registry.register(
            "link_last_handshake_timestamp_seconds",
            "Unix time of the link's last handshake (0: never)",
            self.handshake,
        );
        registry.register(
            "link_receive_bytes",
            "Bytes of WireGuard datagrams received on the link",
            self.rx_bytes,
        );
        registry.register(
            "link_transmit_bytes",
            "Bytes of WireGuard datagrams sent on the link",
            self.tx_bytes,
        );
        registry.register(
            "link_receive_packets",
            "WireGuard datagrams received on the link",
            self.rx_packets,
        );
        registry.register(
            "link_transmit_packets",
            "WireGuard datagrams sent on the link",
            self.tx_packets,
        );
        registry.register(
            "link_dropped_packets",
            "Packets dropped on the link, by reason",
            self.dropped,
        );
        registry.register(
            "link_rejected_handshakes",
            "Handshake initiations the link refused (replayed or older timestamps, another key, invalid)",
            self.rejected,
        );
        registry.register(
            "link_cookie_replies",
            "Handshakes answered with a cookie reply because the link was under load",
            self.cookies,
        );
        registry.register(
            "link_fragmented_datagrams",
            "Datagrams sent above the underlay's path MTU, fragmented by the kernel",
            self.fragmented,
        );
        registry.register(
            "link_gso_fallbacks",
            "Batches sent one datagram per message because the kernel refused UDP GSO for them",
            self.gso_fallbacks,
        );
        registry.register(
            "link_underlay_mtu_bytes",
            "The underlay's path MTU toward the peer, once the kernel reported one",
            self.underlay_mtu,
        );
        registry.register(
            "link_keepalive_loss_ratio",
            "Share of the peer's liveness keepalives lost over the last 10 s (loss toward this node)",
            self.keepalive_loss,
        );
        registry.register(
            "link_routing_cost",
            "The Babel rxcost braid gives babeld or BIRD for the link from its measured loss (label reason: clean, lossy, unmeasured)",
            self.routing_cost,
        );
    }
}

/// The routes braid installed itself, by family, and whether routing is healthy.
fn register_routing(registry: &mut Registry, status: &Status) {
    let routes = Family::<Labels, Gauge>::default();
    for (family, v6) in [("ip4", false), ("ip6", true)] {
        let count = status
            .routing
            .routes
            .iter()
            .filter(|r| r.destination.addr().is_ipv6() == v6)
            .count();
        routes
            .get_or_create(&labels(&[("family", family)]))
            .set(count as i64);
    }
    registry.register(
        "routes",
        "Routes braid installed itself (routing mode static), by family",
        routes,
    );
    let healthy = Gauge::<i64>::default();
    healthy.set(i64::from(status.routing.healthy));
    registry.register(
        "routing_healthy",
        "1 when the node network and braid's routes were last set up without error",
        healthy,
    );
}

#[cfg(test)]
pub(crate) mod tests {
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
        let bond = BondStatus {
            scheduler: Scheduler::RoundRobin,
            scheduler_source: "configured",
            peer_probes: true,
            reorder: ReorderStatus {
                enabled: true,
                wait_ms: 25.0,
                observed_ms: 10.0,
                buffered: 0,
                counters: Default::default(),
            },
            probes: Default::default(),
            paths: vec![
                path(0, "wan0", PathState::Up, 100),
                path(1, "wan1", PathState::Probing, 0),
            ],
        };
        Status {
            version: STATUS_SCHEMA_VERSION,
            node: NodeStatus {
                public_key: "key".into(),
                name: Some("n1".into()),
                link_local6: None,
                addresses: None,
                backend: "userspace",
                config: "/c".into(),
                registry: None,
                config_version: None,
                registry_version: None,
                uptime_seconds: 1,
                loaded_at: None,
                last_reload_at: None,
                last_reload_ok: true,
                last_error: None,
            },
            links: vec![LinkStatus {
                name: "brd4x40004".into(),
                peer: "n2".into(),
                peer_public_key: "k2".into(),
                family: "ip4".into(),
                state: "up",
                planned_endpoint: None,
                routes: Some(3),
                route_metric: Some(1024),
                routing_cost: None,
                stats: crate::backend::LinkStats {
                    bond: Some(bond),
                    ..Default::default()
                },
            }],
            routing: RoutingStatus {
                mode: "static",
                healthy: true,
                error: None,
                problems: Vec::new(),
                engine: None,
                routes: Vec::new(),
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
                kernel_error: None,
            },
            registry: RegistryStatus {
                source: None,
                file: None,
                signed_by: None,
                signed_version: None,
                state: Default::default(),
            },
            mesh: Vec::new(),
        }
    }

    /// Metric names in docs/metrics.md's table, and in a rendering where every family has
    /// samples: the two lists must be the same.
    #[test]
    fn every_metric_is_documented_and_every_documented_metric_exists() {
        let mut status = status();
        status
            .registry
            .state
            .refusals
            .insert("bad_signature".into(), 1);
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
        let docs = include_str!("../../../docs/metrics.md");
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
        status.routing.engine = Some(crate::routing::supervisor::EngineHealth::default());
        status.routing.routes.push(braid_plan::routes::RoutePlan {
            destination: "2001:db8:bd00:2::/64".parse().unwrap(),
            via: "fe80::2".parse().unwrap(),
            dev: "brd4x40004".into(),
            metric: 1024,
        });
        let mut fields = std::collections::BTreeSet::new();
        names(&serde_json::to_value(&status).unwrap(), &mut fields);
        // Refusal reasons and fetch results are values (keys of a count map), not fields.
        fields.remove("bad_signature");
        let docs = include_str!("../../../docs/status-json.md");
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
}
