//! Route verification: the routes the routing daemon selected, compared with braid's table
//! in the kernel ([`RouteCheck`]); a route missing there is named with what holds its place
//! ([`missing_routes`], [`describe`]).

use super::super::{babel, bird};
use super::running::Running;
use super::wanted::Wanted;
use braid_system::routes::{KernelRoute, MESH_TABLE};
use std::time::{Duration, Instant};

/// How often the routes the daemon selected are compared with the kernel's table.
pub const VERIFY_INTERVAL: Duration = Duration::from_secs(2);
/// At most this often, babeld is started again to install routes it believes installed
/// but the kernel does not hold (see `RouteCheck::verify`).
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(60);

/// The supervision thread's comparisons of the daemon's routes with the kernel's, over time.
#[derive(Default)]
pub(super) struct RouteCheck {
    /// A netlink connection to read the kernel's routes, in the daemon's namespace.
    kernel: Option<KernelView>,
    /// Routes found missing by the last check (confirmed when the next finds them too).
    suspects: Vec<String>,
    /// Routes found missing by the last two checks.
    missing: Vec<String>,
    last_verify: Option<Instant>,
    last_resync: Option<Instant>,
}

/// A current-thread runtime and a netlink connection for it, in `netns`.
struct KernelView {
    netns: Option<String>,
    runtime: tokio::runtime::Runtime,
    netlink: braid_system::Netlink,
}

impl RouteCheck {
    /// The routes found missing by the last two checks, each described (see [`describe`]).
    pub(super) fn missing(&self) -> &[String] {
        &self.missing
    }

    /// The daemon exited: what was found of its routes is forgotten.
    pub(super) fn forget(&mut self) {
        self.suspects.clear();
        self.missing.clear();
    }

    /// The daemon is being stopped: what was found is forgotten, and the next daemon is
    /// checked as soon as it is in step.
    pub(super) fn reset(&mut self) {
        self.forget();
        self.last_verify = None;
    }

    /// Whether a check is due at `now` (one every [`VERIFY_INTERVAL`]); if so, it counts as
    /// made.
    pub(super) fn due(&mut self, now: Instant) -> bool {
        let due = self
            .last_verify
            .is_none_or(|t| now.duration_since(t) >= VERIFY_INTERVAL);
        if due {
            self.last_verify = Some(now);
        }
        due
    }

    /// Compares the routes the daemon selected with braid's table in the kernel. A route
    /// missing in two checks in a row (a single check can race the daemon's own changes)
    /// is a problem in the health and an error in the log, naming what holds its place.
    /// babeld believes a route installed even when the kernel refused it (it ignores
    /// "File exists"), and never tries again; once nothing holds the place any more, it
    /// is to be started again (at most every [`RESYNC_INTERVAL`]) so that it installs the
    /// route: then this returns true. BIRD's kernel protocol re-synchronises by itself.
    pub(super) fn verify(&mut self, running: &Running, wanted: &Wanted, now: Instant) -> bool {
        let program = running.program;
        let Some((selected, protocol)) = selected_routes(running, wanted) else {
            return false;
        };
        let kernel = match self.kernel_routes(wanted.netns()) {
            Ok(kernel) => kernel,
            Err(e) => {
                tracing::warn!("reading braid's routing table: {e}");
                return false;
            }
        };
        let found = missing_routes(&selected, &kernel, protocol);
        let free_place = self.confirm(program, &found);
        let resync = free_place
            && program == babel::PROGRAM
            && self
                .last_resync
                .is_none_or(|t| now.duration_since(t) >= RESYNC_INTERVAL);
        if resync {
            self.last_resync = Some(now);
        }
        resync
    }

    /// Takes the routes this check `found` missing: those the last check found too are
    /// confirmed (logged once as errors); whether a confirmed one has nothing in its place.
    fn confirm(
        &mut self,
        program: &str,
        found: &[(babel::SelectedRoute, Option<KernelRoute>)],
    ) -> bool {
        let described: Vec<String> = found
            .iter()
            .map(|(route, holder)| describe(program, route, holder.as_ref()))
            .collect();
        let confirmed: Vec<String> = described
            .iter()
            .filter(|d| self.suspects.contains(d))
            .cloned()
            .collect();
        for problem in confirmed.iter().filter(|c| !self.missing.contains(c)) {
            tracing::error!("{problem}");
        }
        if !self.missing.is_empty() && confirmed.is_empty() {
            tracing::info!("every route {program} selected is in the kernel again");
        }
        let free_place = found
            .iter()
            .zip(&described)
            .any(|((_, holder), d)| holder.is_none() && confirmed.contains(d));
        self.suspects = described;
        self.missing = confirmed;
        free_place
    }

    /// Every route in braid's table, read in the daemon's namespace.
    fn kernel_routes(&mut self, netns: Option<&str>) -> Result<Vec<KernelRoute>, String> {
        if self
            .kernel
            .as_ref()
            .is_none_or(|k| k.netns.as_deref() != netns)
        {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let ns = netns.map(str::to_string);
            let netlink = runtime
                .block_on(async move { braid_system::Netlink::connect_in(ns.as_deref()) })
                .map_err(|e| e.to_string())?;
            self.kernel = Some(KernelView {
                netns: netns.map(str::to_string),
                runtime,
                netlink,
            });
        }
        let Some(view) = self.kernel.as_ref() else {
            return Err("no netlink connection".into());
        };
        let result = view
            .runtime
            .block_on(view.netlink.routes_in_table(MESH_TABLE));
        result.map_err(|e| {
            self.kernel = None;
            e.to_string()
        })
    }
}

/// The routes the running daemon selected, and the kernel protocol number its routes
/// carry; `None` (logged) when they cannot be read.
fn selected_routes(running: &Running, wanted: &Wanted) -> Option<(Vec<babel::SelectedRoute>, u8)> {
    let (selected, protocol) = match wanted {
        Wanted::Babel { .. } => (
            babel::installed_routes(&running.ctl).map_err(|e| e.to_string()),
            braid_system::routes::RTPROT_BABEL,
        ),
        Wanted::Bird { dir, .. } => (
            bird::exported_routes(&bird::Files::in_dir(dir)).map_err(|e| e.to_string()),
            braid_system::routes::RTPROT_BIRD,
        ),
    };
    match selected {
        Ok(selected) => Some((selected, protocol)),
        Err(e) => {
            tracing::warn!("reading the routes {} selected: {e}", running.program);
            None
        }
    }
}

/// The routes of `selected` that `kernel` (braid's table) does not hold as routes of
/// `protocol`, each with the route that holds its place (same destination and source),
/// if any (pure).
pub fn missing_routes(
    selected: &[babel::SelectedRoute],
    kernel: &[KernelRoute],
    protocol: u8,
) -> Vec<(babel::SelectedRoute, Option<KernelRoute>)> {
    let same = |s: &babel::SelectedRoute, k: &KernelRoute| {
        k.destination.trunc() == s.destination && k.source.map(|n| n.trunc()) == s.source
    };
    selected
        .iter()
        .filter(|s| !kernel.iter().any(|k| same(s, k) && k.protocol == protocol))
        .map(|s| (s.clone(), kernel.iter().find(|k| same(s, k)).cloned()))
        .collect()
}

/// One sentence on a missing route: what holds its place and what to do.
pub fn describe(
    program: &str,
    route: &babel::SelectedRoute,
    holder: Option<&KernelRoute>,
) -> String {
    let table = MESH_TABLE;
    match holder {
        Some(h) => format!(
            "{program}'s route {route} is not in the kernel (table {table}): a route of {} \
             holds its place{}; braid does not replace routes it did not make: remove that \
             one (ip route del {}{} table {table} proto {})",
            braid_system::routes::protocol_name(h.protocol),
            h.gateway.map(|g| format!(" (via {g})")).unwrap_or_default(),
            h.destination,
            h.source.map(|s| format!(" from {s}")).unwrap_or_default(),
            h.protocol
        ),
        None => format!(
            "{program}'s route {route} is not in the kernel (table {table}): the kernel did \
             not take it; see {program}'s log"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selected_route_held_by_another_protocol_is_missing_and_named() {
        let selected = |d: &str, s: Option<&str>| babel::SelectedRoute {
            destination: d.parse().unwrap(),
            source: s.map(|s| s.parse().unwrap()),
            via: "via fe80::1 dev brd4x1".into(),
        };
        let kernel = |d: &str, s: Option<&str>, protocol| KernelRoute {
            destination: d.parse().unwrap(),
            source: s.map(|s| s.parse().unwrap()),
            protocol,
            table: 98,
            metric: 0,
            gateway: Some("192.0.2.99".parse().unwrap()),
            oif: 3,
        };
        let chosen = [
            selected("0.0.0.0/0", None),
            selected("::/0", Some("2001:db8:bd00::/48")),
            selected("10.0.2.0/24", None),
        ];
        let table = [
            kernel("0.0.0.0/0", None, 4),
            kernel("::/0", Some("2001:db8:bd00::/48"), 42),
        ];
        let missing = missing_routes(&chosen, &table, 42);
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert_eq!(missing[0].1.as_ref().map(|h| h.protocol), Some(4));
        assert!(missing[1].1.is_none());
        let text = describe("babeld", &missing[0].0, missing[0].1.as_ref());
        assert!(
            text.contains("0.0.0.0/0 via fe80::1 dev brd4x1 is not in the kernel (table 98)")
                && text.contains("proto static (4)")
                && text.contains("ip route del 0.0.0.0/0 table 98 proto 4"),
            "{text}"
        );
        assert!(describe("babeld", &missing[1].0, None).contains("the kernel did not take it"));
    }
}
