//! The status document served by `braid status --json` (docs/status-json.md).

use crate::backend::{LinkBackend, LinkStats};
use crate::reconciler::Reconciler;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// WireGuard drops a session this long after its handshake (REJECT_AFTER_TIME).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(180);

/// The status document's schema version (`version`); it grows when a field changes
/// meaning or goes away, not when one is added.
pub const STATUS_SCHEMA_VERSION: u32 = 1;

/// The status document (docs/status-json.md): one typed value from the links to the
/// JSON, the metrics and the page.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// [`STATUS_SCHEMA_VERSION`].
    pub version: u32,
    /// This node.
    pub node: NodeStatus,
    /// Every planned link, running or not.
    pub links: Vec<LinkStatus>,
    /// braid's routes and the routing daemon.
    pub routing: RoutingStatus,
    /// The registry's source, version and fetcher.
    pub registry: RegistryStatus,
    /// Every other node of the registry, and how this node reaches it.
    pub mesh: Vec<MeshNode>,
}

/// Another node of the registry as this node sees it (docs/status-json.md, `mesh`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MeshNode {
    /// Its registry name, or the first 8 characters of its key (as `links[].peer`).
    pub name: String,
    /// Its public key (base64).
    pub public_key: String,
    /// Its overlay address (with an address plan), which `via` is looked up for.
    pub address6: Option<std::net::Ipv6Addr>,
    /// Whether this node has a link to it.
    pub linked: bool,
    /// The link the kernel's route to `address6` leaves by, and the node at its far end
    /// (the node itself when direct, a neighbour when relayed); null when the kernel has
    /// no route to it over a link, or its routes could not be read.
    pub via_link: Option<String>,
    /// The node at the far end of `via_link`.
    pub via: Option<String>,
    /// An exit node (its `exit_preference`), if it is one.
    pub exit_preference: Option<u32>,
}

/// Where the registry comes from, the running version, refusals and the fetcher.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryStatus {
    /// The config's `registry`: a path, or a file:// or https:// URL.
    pub source: Option<String>,
    /// The file the running registry was read from: the path, or a URL source's cache.
    pub file: Option<String>,
    /// The key ID that signed the running registry, and its version (the signature's
    /// timestamp, Unix seconds); `None` when the config trusts no signing key.
    pub signed_by: Option<String>,
    /// The running registry's signed version (the signature's timestamp, Unix seconds).
    pub signed_version: Option<u64>,
    /// Refusals and the fetcher's state (flattened into this object).
    #[serde(flatten)]
    pub state: crate::registry_file::RegistryState,
}

/// Routes braid installed itself, and the health of the routing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RoutingStatus {
    /// The config's routing mode.
    #[serde(deserialize_with = "braid_bond::status::static_word")]
    pub mode: braid_bond::status::Word,
    /// False when the node network or braid's routes could not be set up, or the routing
    /// daemon is not running and in step; `problems` says why.
    pub healthy: bool,
    /// The problems joined by "; " (`None` when healthy).
    pub error: Option<String>,
    /// Every current problem, one sentence each.
    pub problems: Vec<String>,
    /// The routing daemon (babeld, BIRD), in routing modes `babel` and `bird`.
    pub engine: Option<crate::routing::supervisor::EngineHealth>,
    /// Routes braid installed (routing mode `static`), as in the plan.
    pub routes: Vec<braid_plan::routes::RoutePlan>,
    /// Where each family's default route leaves, as the kernel holds it (null when the
    /// kernel's routes could not be read).
    pub exits: Option<Exits>,
    /// Why the kernel's routes could not be read, if so.
    pub kernel_error: Option<String>,
}

/// The exit in use per family (docs/status-json.md, `routing.exits`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Exits {
    /// The IPv4 default route, or null when there is none.
    pub ip4: Option<Exit>,
    /// The IPv6 default route, or null when there is none.
    pub ip6: Option<Exit>,
}

/// One default route: over one of braid's links (an exit node), or the node's own uplink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// The interface it leaves by.
    pub dev: String,
    /// The next hop, if the route has one.
    pub via: Option<std::net::IpAddr>,
    /// A source-specific default's source prefix (babeld's IPv6 defaults), else null.
    pub from: Option<String>,
    /// The link's name when `dev` is one of braid's links (then `peer` is the exit node).
    pub link: Option<String>,
    /// The node at the far end of that link.
    pub peer: Option<String>,
    /// The routing table of the route.
    pub table: u32,
    /// The route's metric.
    pub metric: u32,
}

/// This node (docs/status-json.md, `node`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeStatus {
    /// Its public key (base64).
    pub public_key: String,
    /// Its name in the registry, if it has one.
    pub name: Option<String>,
    /// The node's address plan: link-local address, and with an address plan its index,
    /// /64, ::1, /24, gateway and link address (as in `braid plan --json`).
    pub link_local6: Option<std::net::Ipv6Addr>,
    /// The node's addresses, with an address plan.
    pub addresses: Option<braid_plan::NodeAddresses>,
    /// The link backend: `userspace` or `kernel`.
    #[serde(deserialize_with = "braid_bond::status::static_word")]
    pub backend: braid_bond::status::Word,
    /// The config file's path.
    pub config: String,
    /// The registry file's path (a URL source's cache), once loaded.
    pub registry: Option<String>,
    /// Versions of the running inputs: the first 16 hex digits of each file's SHA-256.
    pub config_version: Option<String>,
    /// The running registry's version, as `config_version`.
    pub registry_version: Option<String>,
    /// Seconds since `braid run` started.
    pub uptime_seconds: u64,
    /// Unix time of the last successful reload.
    pub loaded_at: Option<u64>,
    /// Unix time of the last reload attempt, and whether its input was valid.
    pub last_reload_at: Option<u64>,
    /// Whether the last reload's input was valid.
    pub last_reload_ok: bool,
    /// The last reload's error, if it failed or some links did not come up.
    pub last_error: Option<String>,
}

/// One planned link (docs/status-json.md, `links[]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkStatus {
    /// The link's interface name.
    pub name: String,
    /// The peer's registry name, or the first 8 characters of its key.
    pub peer: String,
    /// The peer's public key (base64).
    pub peer_public_key: String,
    /// The underlay's address family: `ip4` or `ip6`.
    pub family: String,
    /// `up` (a handshake within 180 s), `connecting` (none yet), `stale` (older), or
    /// `failed` (the link is planned but did not come up; see last_error).
    #[serde(deserialize_with = "braid_bond::status::static_word")]
    pub state: braid_bond::status::Word,
    /// The endpoint as the registry gives it (an address or a DNS name, with the port);
    /// null when the peer has none (it connects to us).
    pub planned_endpoint: Option<String>,
    /// Routes the kernel sends over this link (any table, but not the link's own address
    /// prefixes): more than 0 means the link is carrying routes. Null when the kernel's
    /// routes could not be read.
    pub routes: Option<usize>,
    /// The lowest kernel metric among those routes (the routing daemon's or braid's
    /// choice: the link's cost as the kernel sees it).
    pub route_metric: Option<u32>,
    /// The Babel cost braid gives babeld or BIRD for this link from its measured loss,
    /// and why (`routing::cost`); null in modes `none` and `static`.
    pub routing_cost: Option<crate::routing::cost::RoutingCost>,
    /// The link's counters and state (flattened into this object; for a link that is not
    /// running, zeros with the planned endpoint and listen port).
    #[serde(flatten)]
    pub stats: LinkStats,
}

fn unix(t: SystemTime) -> Option<u64> {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// The state of a link, decided here only: `failed` (planned, not running), `connecting`
/// (no handshake yet), `up` or `stale`. With a persistent keepalive of `k` seconds the peer
/// sends at least every `k` s, so a link is up while a datagram arrived within three
/// keepalive intervals (plus 2 s of slack) and stale after; without one, it is up while its
/// session is (a handshake within REJECT_AFTER_TIME, 180 s; WireGuard paper, section 6).
pub fn link_state(
    stats: Option<&LinkStats>,
    keepalive: Option<u16>,
    now: SystemTime,
) -> &'static str {
    let Some(s) = stats else { return "failed" };
    let age = |t: SystemTime| now.duration_since(t).unwrap_or_default();
    match (s.last_handshake, keepalive) {
        (None, _) => "connecting",
        (Some(_), Some(k)) if k > 0 => {
            let window = Duration::from_secs(3 * u64::from(k) + 2);
            if s.last_rx.is_some_and(|t| age(t) <= window) {
                "up"
            } else {
                "stale"
            }
        }
        (Some(t), _) if age(t) <= SESSION_LIFETIME => "up",
        (Some(_), _) => "stale",
    }
}

/// The overlay's namespace, where the kernel view is read (`None`: this one).
pub fn netns<B: LinkBackend>(r: &Reconciler<B>) -> Option<String> {
    r.loaded().and_then(|l| l.config.netns.clone())
}

/// Builds the status document at `now`, without the kernel's view (routes per link and
/// exits; [`crate::kernel_view::fill`] adds it).
pub fn status<B: LinkBackend>(r: &Reconciler<B>, started: SystemTime, now: SystemTime) -> Status {
    Status {
        version: STATUS_SCHEMA_VERSION,
        node: node_status(r, started, now),
        links: link_statuses(r, now),
        routing: routing_status(r),
        registry: registry_status(r),
        mesh: mesh_nodes(r),
    }
}

/// This node: identity, addresses, inputs and their versions, reloads.
fn node_status<B: LinkBackend>(
    r: &Reconciler<B>,
    started: SystemTime,
    now: SystemTime,
) -> NodeStatus {
    let plan = r.plan();
    NodeStatus {
        public_key: plan
            .map(|p| p.node.public_key.to_base64())
            .unwrap_or_default(),
        name: plan.and_then(|p| p.node.name.clone()),
        link_local6: plan.map(|p| p.node.link_local6),
        addresses: plan.and_then(|p| p.node.addresses.clone()),
        backend: r.backend().name(),
        config: r.config_path().display().to_string(),
        registry: r.loaded().map(|l| l.registry_path.display().to_string()),
        config_version: r.loaded().map(|l| l.config_hash.clone()),
        registry_version: r.loaded().map(|l| l.registry_hash.clone()),
        last_reload_at: r.reload_record().last_reload_at.and_then(unix),
        last_reload_ok: r.reload_record().last_reload_ok,
        uptime_seconds: now.duration_since(started).unwrap_or_default().as_secs(),
        loaded_at: r.reload_record().loaded_at.and_then(unix),
        last_error: r.reload_record().last_error.clone(),
    }
}

/// Every planned link, with its backend's counters (zeros for one that is not running).
fn link_statuses<B: LinkBackend>(r: &Reconciler<B>, now: SystemTime) -> Vec<LinkStatus> {
    r.plan()
        .map(|p| {
            p.links
                .iter()
                .map(|l| {
                    let stats = r.backend().stats(&l.name);
                    LinkStatus {
                        name: l.name.clone(),
                        peer: l.peer.clone(),
                        peer_public_key: l.peer_public_key.to_base64(),
                        family: l.family.to_string(),
                        // Dead by braid's liveness (carrier off, routed around): not `up`,
                        // however recent its handshake (it was shown `up` for minutes).
                        state: if r.backend().dead(&l.name) {
                            "stale"
                        } else {
                            link_state(stats.as_ref(), l.keepalive, now)
                        },
                        planned_endpoint: l.endpoint.as_ref().map(|e| e.to_string()),
                        routes: None,
                        route_metric: None,
                        routing_cost: crate::routing::link_cost(r, &l.name),
                        stats: stats.unwrap_or_else(|| LinkStats {
                            endpoint: l.endpoint.as_ref().and_then(|e| e.to_string().parse().ok()),
                            listen_port: l.listen_port,
                            ..LinkStats::default()
                        }),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// braid's routes and the routing's health; the kernel's view is filled in later
/// (`kernel_view::fill`).
fn routing_status<B: LinkBackend>(r: &Reconciler<B>) -> RoutingStatus {
    let problems = crate::routing::problems(r);
    RoutingStatus {
        mode: r.loaded().map_or("none", |l| l.config.routing.mode.name()),
        healthy: problems.is_empty(),
        error: (!problems.is_empty()).then(|| problems.join("; ")),
        engine: r
            .routing()
            .engine()
            .map(|e| e.health())
            .filter(|h| h.program.is_some()),
        problems,
        routes: r.routing().routes().to_vec(),
        exits: None,
        kernel_error: None,
    }
}

/// The registry's source, the running version and its signature, refusals and fetcher.
fn registry_status<B: LinkBackend>(r: &Reconciler<B>) -> RegistryStatus {
    RegistryStatus {
        source: r.loaded().map(|l| l.config.registry.clone()),
        file: r.loaded().map(|l| l.registry_path.display().to_string()),
        signed_by: r
            .loaded()
            .and_then(|l| l.signed.as_ref().map(|s| s.key_id.clone())),
        signed_version: r
            .loaded()
            .and_then(|l| l.signed.as_ref().map(|s| s.timestamp)),
        state: r
            .registry()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    }
}

/// Every other node of the registry; the kernel's `via` is filled in later.
fn mesh_nodes<B: LinkBackend>(r: &Reconciler<B>) -> Vec<MeshNode> {
    r.plan()
        .map(|p| {
            p.peers
                .iter()
                .map(|n| {
                    let name = n.name.clone().unwrap_or_else(|| n.public_key.short());
                    MeshNode {
                        linked: p.links.iter().any(|l| l.peer_public_key == n.public_key),
                        name,
                        public_key: n.public_key.to_base64(),
                        address6: n.addresses.as_ref().map(|a| a.address6),
                        via_link: None,
                        via: None,
                        exit_preference: n.exit_preference,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_the_handshake_age() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |secs_ago| LinkStats {
            last_handshake: Some(now - Duration::from_secs(secs_ago)),
            ..LinkStats::default()
        };
        assert_eq!(link_state(None, None, now), "failed");
        assert_eq!(
            link_state(Some(&LinkStats::default()), None, now),
            "connecting"
        );
        assert_eq!(link_state(Some(&at(5)), None, now), "up");
        assert_eq!(link_state(Some(&at(181)), None, now), "stale");
    }

    #[test]
    fn with_a_keepalive_three_missed_ones_make_a_link_stale() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let heard = |secs_ago| LinkStats {
            last_handshake: Some(now - Duration::from_secs(30)),
            last_rx: Some(now - Duration::from_secs(secs_ago)),
            ..LinkStats::default()
        };
        // keepalive 5 s: up while heard within 17 s, stale after (not 180 s).
        assert_eq!(link_state(Some(&heard(10)), Some(5), now), "up");
        assert_eq!(link_state(Some(&heard(18)), Some(5), now), "stale");
        assert_eq!(link_state(Some(&heard(18)), None, now), "up");
    }
}
