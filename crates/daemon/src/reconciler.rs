//! The reconcile step: load config and registry, diff the plan against the running links,
//! apply the difference through the backend. An invalid input changes nothing.
//!
//! [`Reconciler`] holds the daemon's state, every part private: the backend and the links
//! it runs, the inputs in use, the [`ReloadRecord`], the [`RoutingState`] and the
//! [`UplinkState`]. Others read them through accessors; the decisions that read them
//! (what to retry, the routing's health, which path states changed) are functions of that
//! state, tested below without root. A reload or retry is split into [`Work`] decided
//! from the state, link steps done one at a time ([`Reconciler::step`]) and a finish, so
//! that the run loop can do the link steps off the async runtime and answer status
//! requests between them (see `run`).

use crate::backend::{BackendError, LinkBackend, LinkSetup};
use crate::load::{self, Loaded};
use crate::registry_file::RegistryState;
use crate::routing::supervisor::{EngineHealth, Supervisor};
use braid_model::Problems;
use braid_plan::reconcile::{Change, Diff, diff};
use braid_plan::routes::RoutePlan;
use braid_plan::{LinkPlan, Plan};
use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What a reload did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    /// Links brought up.
    pub added: Vec<String>,
    /// Links changed in place.
    pub updated: Vec<String>,
    /// Links removed.
    pub removed: Vec<String>,
    /// How many links were already as planned.
    pub unchanged: usize,
    /// Links that failed to come up or change, with why; the others still applied.
    pub failed: Vec<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} added, {} updated, {} removed, {} unchanged",
            self.added.len(),
            self.updated.len(),
            self.removed.len(),
            self.unchanged
        )?;
        for failure in &self.failed {
            write!(f, "\nfailed: {failure}")?;
        }
        Ok(())
    }
}

impl Summary {
    /// The failures joined by "; ", as `last_error` shows them; `None` when none failed.
    fn failures(&self) -> Option<String> {
        (!self.failed.is_empty()).then(|| self.failed.join("; "))
    }
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config or registry has problems (each with its file, field and fix).
    #[error("invalid input; the running network is unchanged:\n{0}")]
    Invalid(Problems),
}

/// When the daemon reloaded and how it went (the status document's `node`: `loaded_at`,
/// `last_reload_at`, `last_reload_ok`, `last_error`). Changed only by the reconciler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadRecord {
    /// When the inputs in use were loaded; `None` before the first successful reload.
    pub loaded_at: Option<SystemTime>,
    /// When the last reload was attempted.
    pub last_reload_at: Option<SystemTime>,
    /// Whether the last reload's input was valid.
    pub last_reload_ok: bool,
    /// Why the last reload failed or left links down (or the last retry did); `None`
    /// when it did not.
    pub last_error: Option<String>,
}

impl ReloadRecord {
    /// A reload began at `now`.
    fn attempted(&mut self, now: SystemTime) {
        self.last_reload_at = Some(now);
    }

    /// The reload's input was refused: the running network stays, with `why`.
    fn refused(&mut self, why: String) {
        self.last_reload_ok = false;
        self.last_error = Some(why);
    }

    /// The reload's input was valid; its links are being applied.
    fn accepted(&mut self) {
        self.last_reload_ok = true;
    }

    /// The reload's links were applied at `now`, as `summary` says.
    fn applied(&mut self, now: SystemTime, summary: &Summary) {
        self.loaded_at = Some(now);
        self.last_error = summary.failures();
    }

    /// Links that had failed were tried again, as `summary` says.
    fn retried(&mut self, summary: &Summary) {
        self.last_error = summary.failures();
    }
}

/// braid's routes and the routing daemon: what was installed last, why it was not all,
/// and the supervisor of babeld or BIRD.
#[derive(Default)]
pub struct RoutingState {
    routes: Vec<RoutePlan>,
    error: Option<String>,
    engine: Option<Supervisor>,
}

impl RoutingState {
    /// The routes braid installed last (the status document's `routing.routes`).
    pub fn routes(&self) -> &[RoutePlan] {
        &self.routes
    }

    /// Why braid's routes or rules could not all be set up last time; `None` when they were.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The supervisor of the routing daemon (babeld or BIRD), once one was wanted.
    pub fn engine(&self) -> Option<&Supervisor> {
        self.engine.as_ref()
    }

    /// The routing daemon's supervisor, to give its link costs a look at the links' loss.
    pub fn engine_mut(&mut self) -> Option<&mut Supervisor> {
        self.engine.as_mut()
    }

    /// Whether the routes are to be applied again on the next retry tick: the last attempt
    /// could not set up everything.
    pub fn needs_retry(&self) -> bool {
        self.error.is_some()
    }

    /// The routing's problems now (empty when healthy): see [`routing_problems`].
    pub fn problems(&self) -> Vec<String> {
        let health = self.engine.as_ref().map(Supervisor::health);
        routing_problems(self.error(), health.as_ref())
    }

    /// Records an attempt to install the routes: what is installed now and what failed.
    /// Returns the failures to log: all of them when they differ from the last attempt's,
    /// none when they are the same (a route that keeps failing is logged once, not on
    /// every retry tick).
    pub fn installed(&mut self, routes: Vec<RoutePlan>, failed: &[String]) -> Vec<String> {
        self.routes = routes;
        let error = (!failed.is_empty()).then(|| failed.join("; "));
        let news = error.is_some() && error != self.error;
        self.error = error;
        if news { failed.to_vec() } else { Vec::new() }
    }

    /// Records an attempt that failed as a whole (the node network could not be set up).
    pub fn failed(&mut self, why: String) {
        self.error = Some(why);
    }
}

/// The routing's problems, one sentence each (empty when healthy): setting up the node
/// network and routes (`error`), and the routing daemon's (`engine`: not ready, routes
/// it selected that the kernel lacks).
pub fn routing_problems(error: Option<&str>, engine: Option<&EngineHealth>) -> Vec<String> {
    let mut out: Vec<String> = error.map(str::to_string).into_iter().collect();
    if let Some(health) = engine {
        out.extend(health.error.clone());
        out.extend(health.missing_routes.iter().cloned());
    }
    out
}

/// The uplinks as the daemon last saw them (see `uplinks`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UplinkState {
    auto: Vec<String>,
    paths_down: BTreeSet<String>,
}

impl UplinkState {
    /// The uplinks found for transports with `wan: "auto"` (one path each).
    pub fn auto(&self) -> &[String] {
        &self.auto
    }

    /// Path interfaces last reported down to the backend.
    pub fn paths_down(&self) -> &BTreeSet<String> {
        &self.paths_down
    }
}

/// The path interfaces of `wanted` whose state differs between `before` and `after` (the
/// sets of those down), each with whether it is up now, in name order.
pub fn path_changes(
    wanted: &BTreeSet<String>,
    before: &BTreeSet<String>,
    after: &BTreeSet<String>,
) -> Vec<(String, bool)> {
    wanted
        .iter()
        .filter(|name| before.contains(*name) != after.contains(*name))
        .map(|name| (name.clone(), !after.contains(name)))
        .collect()
}

/// The links to try again: the planned links that are not running as planned (they failed
/// to come up or change), never a removal; `None` when there are none.
pub fn retry_steps(running: &[LinkPlan], planned: &[LinkPlan]) -> Option<Diff> {
    let steps = diff(running, planned);
    (!steps.add.is_empty() || !steps.update.is_empty()).then_some(Diff {
        remove: Vec::new(),
        ..steps
    })
}

/// What a [`Work`] ends as: a reload makes its inputs the ones in use; a retry keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkKind {
    Reload,
    Retry,
}

/// One link's change.
#[derive(Debug)]
enum Step {
    Remove(String),
    Update(LinkPlan, Vec<Change>),
    Add(LinkPlan),
}

/// The link changes of a reload or a retry, decided from the state
/// ([`Reconciler::begin_reload`], [`Reconciler::begin_retry`]), done one link at a time
/// ([`Reconciler::step`]), and ended by [`Reconciler::finish`].
pub struct Work {
    kind: WorkKind,
    loaded: Arc<Loaded>,
    steps: VecDeque<Step>,
    summary: Summary,
}

impl Work {
    fn new(kind: WorkKind, loaded: Arc<Loaded>, steps: Diff) -> Self {
        let summary = Summary {
            unchanged: steps.unchanged.len(),
            ..Summary::default()
        };
        let steps = (steps.remove.into_iter().map(Step::Remove))
            .chain(steps.update.into_iter().map(|(l, c)| Step::Update(l, c)))
            .chain(steps.add.into_iter().map(Step::Add))
            .collect();
        Self {
            kind,
            loaded,
            steps,
            summary,
        }
    }

    /// How many link changes are left.
    pub fn remaining(&self) -> usize {
        self.steps.len()
    }
}

/// The daemon's state: the backend and the links it runs, the inputs in use, and what the
/// reloads, the routing and the uplinks did last. Every part is private; see the module's
/// documentation.
pub struct Reconciler<B: LinkBackend> {
    config_path: PathBuf,
    backend: B,
    /// The inputs of the last successful reload; `None` before the first.
    current: Option<Arc<Loaded>>,
    /// The links the backend runs now, each as it was last applied. A link that failed
    /// to come up is not here, so the next reload tries it again.
    running: Vec<LinkPlan>,
    record: ReloadRecord,
    routing: RoutingState,
    uplinks: UplinkState,
    /// Registry refusals and the fetcher's state, shared with the fetcher.
    registry: Arc<Mutex<RegistryState>>,
    /// Running links with a DNS endpoint that had no answer since they were made or their
    /// endpoint changed: due for a look-up even while their session is up (a link whose
    /// endpoint became a name keeps a session, but sends to no address or the old one).
    unresolved: BTreeSet<String>,
}

impl<B: LinkBackend> Reconciler<B> {
    /// A reconciler for the config at `config_path` over `backend`; nothing is loaded or
    /// run until [`Reconciler::reload`].
    pub fn new(config_path: &Path, backend: B) -> Self {
        Self {
            config_path: config_path.to_path_buf(),
            backend,
            current: None,
            running: Vec::new(),
            record: ReloadRecord::default(),
            routing: RoutingState::default(),
            uplinks: UplinkState::default(),
            registry: Arc::default(),
            unresolved: BTreeSet::new(),
        }
    }

    /// The config file this reconciler reads.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The link backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The link backend, to change directly (tests; the daemon changes links through
    /// [`Reconciler::step`] and the path states through [`Reconciler::set_paths_down`]).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The running links' plans.
    pub fn running_links(&self) -> impl Iterator<Item = &LinkPlan> {
        self.running.iter()
    }

    /// Names of the links the backend runs.
    pub fn running(&self) -> impl Iterator<Item = &str> {
        self.running.iter().map(|l| l.name.as_str())
    }

    /// The plan in use; `None` before the first successful reload.
    pub fn plan(&self) -> Option<&Plan> {
        self.current.as_ref().map(|l| &l.plan)
    }

    /// The inputs in use (config, registry, plan); `None` before the first successful reload.
    pub fn loaded(&self) -> Option<&Loaded> {
        self.current.as_deref()
    }

    /// The inputs in use, shared (to use without the daemon's lock); `None` before the
    /// first successful reload.
    pub fn loaded_shared(&self) -> Option<Arc<Loaded>> {
        self.current.clone()
    }

    /// When the daemon reloaded and how it went.
    pub fn reload_record(&self) -> &ReloadRecord {
        &self.record
    }

    /// braid's routes and the routing daemon.
    pub fn routing(&self) -> &RoutingState {
        &self.routing
    }

    /// braid's routes and the routing daemon, to record an attempt to install the routes.
    pub fn routing_mut(&mut self) -> &mut RoutingState {
        &mut self.routing
    }

    /// Keeps `engine` as the routing daemon's supervisor (the first time one is wanted).
    pub fn set_engine(&mut self, engine: Supervisor) {
        self.routing.engine = Some(engine);
    }

    /// Hands over the routing daemon's supervisor, to stop it (shutdown).
    pub fn take_engine(&mut self) -> Option<Supervisor> {
        self.routing.engine.take()
    }

    /// The uplinks as last seen.
    pub fn uplinks(&self) -> &UplinkState {
        &self.uplinks
    }

    /// Keeps the uplinks found for `wan: "auto"`; the next reload gives them a path each.
    pub fn set_auto_uplinks(&mut self, uplinks: Vec<String>) {
        self.uplinks.auto = uplinks;
    }

    /// The path interfaces of `wanted` in `down` are down, the others up: tells the
    /// backend about each that changed ([`path_changes`]) and keeps `down`.
    pub fn set_paths_down(&mut self, wanted: &BTreeSet<String>, down: BTreeSet<String>) {
        for (name, up) in path_changes(wanted, &self.uplinks.paths_down, &down) {
            tracing::info!(interface = %name, up, "path interface");
            self.backend.set_path_state(&name, up);
        }
        self.uplinks.paths_down = down;
    }

    /// Registry refusals and the fetcher's state, shared with the fetcher (which writes a
    /// URL source's cache under this lock).
    pub fn registry(&self) -> &Arc<Mutex<RegistryState>> {
        &self.registry
    }

    /// Re-reads the inputs and brings the links in line. Invalid input: nothing changes.
    /// [`Reconciler::begin_reload`], every [`Reconciler::step`] and [`Reconciler::finish`]
    /// in one call.
    pub fn reload(&mut self) -> Result<Summary, ReloadError> {
        let work = self.begin_reload()?;
        Ok(self.finish(work))
    }

    /// Reads the inputs once and decides the link changes of a reload; invalid input (or a
    /// signed registry older than the running one) changes nothing and is an error.
    pub fn begin_reload(&mut self) -> Result<Work, ReloadError> {
        self.record.attempted(SystemTime::now());
        let loaded = {
            // The fetcher writes a URL source's cache (registry, then signature) under this
            // lock: never read one half of a new copy.
            let _cache = self.registry.lock().unwrap_or_else(|p| p.into_inner());
            load::load_with_uplinks(&self.config_path, &self.uplinks.auto)
        };
        let loaded = loaded.and_then(|l| {
            // A signed registry older than the running one is refused (a rollback).
            match crate::registry_file::rollback(self.loaded(), &l) {
                Some(refusal) => Err(Problems(vec![refusal])),
                None => Ok(l),
            }
        });
        match loaded {
            Ok(loaded) => {
                self.record.accepted();
                let steps = diff(&self.running, &loaded.plan.links);
                Ok(Work::new(WorkKind::Reload, Arc::new(loaded), steps))
            }
            Err(problems) => {
                self.registry
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .note_refusals(&problems, crate::registry_file::unix_now());
                self.record.refused(problems.to_string());
                Err(ReloadError::Invalid(problems))
            }
        }
    }

    /// The planned links that are not running, to try again ([`retry_steps`]); `None` when
    /// there is nothing to retry.
    pub fn begin_retry(&self) -> Option<Work> {
        let loaded = self.current.clone()?;
        let steps = retry_steps(&self.running, &loaded.plan.links)?;
        Some(Work::new(WorkKind::Retry, loaded, steps))
    }

    /// Does `work`'s next link change; false when none was left.
    pub fn step(&mut self, work: &mut Work) -> bool {
        let Some(step) = work.steps.pop_front() else {
            return false;
        };
        self.apply(&work.loaded, step, &mut work.summary);
        true
    }

    /// Ends `work` (its remaining steps done first): a reload's inputs become the ones in
    /// use; the record says what failed.
    pub fn finish(&mut self, mut work: Work) -> Summary {
        while self.step(&mut work) {}
        match work.kind {
            WorkKind::Reload => {
                self.current = Some(work.loaded);
                self.record.applied(SystemTime::now(), &work.summary);
            }
            WorkKind::Retry => self.record.retried(&work.summary),
        }
        work.summary
    }

    /// Makes again the links whose interface disappeared (an admin's `ip link del`,
    /// another tool's cleanup): reconciles against what exists, not against memory.
    /// `None` when none disappeared.
    pub fn recreate_missing(&mut self) -> Option<Summary> {
        if !self.forget_missing() {
            return None;
        }
        self.retry_failed()
    }

    /// Removes what is left of the links whose interface disappeared and forgets them, so
    /// that the next retry ([`Reconciler::begin_retry`]) makes them again; false when none
    /// disappeared.
    pub fn forget_missing(&mut self) -> bool {
        let missing = self.backend.missing();
        for name in &missing {
            tracing::warn!(link = %name, "the link's interface disappeared: making it again");
            if let Err(e) = self.backend.remove(name) {
                tracing::warn!("{e}");
            }
            self.running.retain(|l| &l.name != name);
        }
        !missing.is_empty()
    }

    /// Tries again the planned links that are not running (they failed to come up or
    /// change); `None` when no link is to be added or changed.
    pub fn retry_failed(&mut self) -> Option<Summary> {
        let work = self.begin_retry()?;
        Some(self.finish(work))
    }

    fn apply(&mut self, loaded: &Loaded, step: Step, summary: &mut Summary) {
        let mut failed = |e: BackendError| {
            tracing::error!("{e}");
            summary.failed.push(e.to_string());
        };
        match step {
            Step::Remove(name) => {
                match self.backend.remove(&name) {
                    Ok(()) => summary.removed.push(name.clone()),
                    Err(e) => failed(e),
                }
                // Whether or not removal worked, the link is no longer wanted; the group
                // accounting deletes what is left of it.
                self.running.retain(|l| l.name != name);
            }
            Step::Update(link, changes) => {
                match self.backend.update(setup_for(loaded, &link), &changes) {
                    Ok(()) => {
                        summary.updated.push(link.name.clone());
                        if changes.contains(&Change::Endpoint) {
                            self.note_endpoint(&link);
                        }
                        self.running.retain(|l| l.name != link.name);
                        self.running.push(link);
                    }
                    Err(e) => failed(e),
                }
            }
            Step::Add(link) => {
                if self.backend.adopt(setup_for(loaded, &link)) {
                    summary.unchanged += 1;
                    self.note_endpoint(&link);
                    self.running.push(link);
                    return;
                }
                match self.backend.add(setup_for(loaded, &link)) {
                    Ok(()) => {
                        summary.added.push(link.name.clone());
                        self.note_endpoint(&link);
                        self.running.push(link);
                    }
                    Err(e) => failed(e),
                }
            }
        }
    }

    /// Notes that `link` was just made or its endpoint changed: a DNS name is due for a
    /// look-up until one answers ([`Reconciler::resolved`]).
    fn note_endpoint(&mut self, link: &LinkPlan) {
        if named_endpoint(link) {
            self.unresolved.insert(link.name.clone());
        } else {
            self.unresolved.remove(&link.name);
        }
    }

    /// The running links whose DNS endpoint is due to be resolved again: every one when
    /// `all`, else those not resolved since they were made or their endpoint changed, and
    /// those without a live session at `now` (the peer may have moved). The look-up itself
    /// is the caller's, off the async runtime (see `run`); its answer comes back through
    /// [`Reconciler::resolved`].
    pub fn due_for_resolve(&self, all: bool, now: SystemTime) -> Vec<LinkPlan> {
        self.running
            .iter()
            .filter(|link| {
                named_endpoint(link)
                    && (all
                        || self.unresolved.contains(&link.name)
                        || !crate::routing::link_alive(
                            link,
                            self.backend.stats(&link.name).as_ref(),
                            now,
                        ))
            })
            .cloned()
            .collect()
    }

    /// Points a running link at `addr`, a fresh answer for its DNS endpoint (looked up for
    /// `asked`, one of [`Reconciler::due_for_resolve`]'s links). Ignored when the link is
    /// gone or its endpoint changed while the look-up ran (a reload came in between).
    pub fn resolved(&mut self, asked: &LinkPlan, addr: std::net::SocketAddr) {
        if let Some(link) = self
            .running
            .iter()
            .find(|l| l.name == asked.name && l.endpoint == asked.endpoint)
        {
            self.backend.set_resolved(link, addr);
            self.unresolved.remove(&asked.name);
        }
    }

    /// Removes every link (for `down` and shutdown).
    pub fn remove_all(&mut self) -> Summary {
        let mut summary = Summary::default();
        let names: Vec<String> = std::mem::take(&mut self.running)
            .into_iter()
            .map(|l| l.name)
            .collect();
        for (name, result) in names.iter().zip(self.backend.remove_all(&names)) {
            match result {
                Ok(()) => summary.removed.push(name.clone()),
                Err(e) => summary.failed.push(e.to_string()),
            }
        }
        self.current = None;
        summary
    }
}

/// Whether `link`'s endpoint is a DNS name (looked up by the run loop, not the backend).
fn named_endpoint(link: &LinkPlan) -> bool {
    link.endpoint
        .as_ref()
        .is_some_and(|e| matches!(e.host, braid_model::Host::Name(_)))
}

/// The backend's setup of `link`: the plan's link, the endpoint it can use without a DNS
/// look-up (a name is resolved by the run loop and handed over later), and the config's
/// key, isolation and liveness.
fn setup_for<'a>(loaded: &'a Loaded, link: &'a LinkPlan) -> LinkSetup<'a> {
    LinkSetup {
        link,
        endpoint: link
            .endpoint
            .as_ref()
            .and_then(braid_plan::RemoteEndpoint::socket_addr),
        private_key: &loaded.config.private_key,
        netns: loaded.config.netns.as_deref(),
        vrf: Some(loaded.config.vrf.as_str()).filter(|v| !v.is_empty()),
        liveness: loaded.config.routing.liveness(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn failed(links: &[&str]) -> Summary {
        Summary {
            failed: links
                .iter()
                .map(|l| format!("link {l}: port in use"))
                .collect(),
            ..Summary::default()
        }
    }

    #[test]
    fn a_refused_reload_keeps_the_time_of_the_inputs_in_use() {
        let mut record = ReloadRecord::default();
        record.attempted(at(10));
        record.accepted();
        record.applied(at(11), &Summary::default());
        record.attempted(at(20));
        record.refused("registry.json: bad key".into());
        assert_eq!(record.loaded_at, Some(at(11)));
        assert_eq!(record.last_reload_at, Some(at(20)));
        assert!(!record.last_reload_ok);
        assert_eq!(record.last_error.as_deref(), Some("registry.json: bad key"));
    }

    #[test]
    fn links_that_failed_are_the_error_until_a_retry_brings_them_up() {
        let mut record = ReloadRecord::default();
        record.attempted(at(10));
        record.accepted();
        record.applied(at(11), &failed(&["brd1", "brd2"]));
        assert!(record.last_reload_ok);
        assert_eq!(
            record.last_error.as_deref(),
            Some("link brd1: port in use; link brd2: port in use")
        );
        record.retried(&failed(&["brd2"]));
        assert_eq!(record.last_error.as_deref(), Some("link brd2: port in use"));
        record.retried(&Summary::default());
        assert_eq!(record.last_error, None);
        assert_eq!(record.loaded_at, Some(at(11)));
    }

    #[test]
    fn a_route_that_keeps_failing_is_logged_once_and_retried_until_it_goes_in() {
        let mut routing = RoutingState::default();
        let why = vec!["route 2001:db8::/64 via brd1: no such device".to_string()];
        assert_eq!(routing.installed(Vec::new(), &why), why);
        assert!(routing.needs_retry());
        assert!(routing.installed(Vec::new(), &why).is_empty());
        assert_eq!(routing.problems(), why);
        assert!(routing.installed(Vec::new(), &[]).is_empty());
        assert!(!routing.needs_retry());
        assert!(routing.problems().is_empty());
        routing.failed("bridge braid0: permission denied".into());
        assert!(routing.needs_retry());
    }

    #[test]
    fn the_routing_daemon_s_problems_count_in_the_health() {
        let engine = EngineHealth {
            program: Some("babeld"),
            error: Some("babeld: control socket does not answer".into()),
            missing_routes: vec!["fd00::/64 via brd2".into()],
            ..EngineHealth::default()
        };
        assert_eq!(
            routing_problems(Some("rules: EPERM"), Some(&engine)),
            [
                "rules: EPERM",
                "babeld: control socket does not answer",
                "fd00::/64 via brd2"
            ]
        );
        let ready = EngineHealth {
            program: Some("babeld"),
            ready: true,
            ..EngineHealth::default()
        };
        assert!(routing_problems(None, Some(&ready)).is_empty());
        assert!(routing_problems(None, None).is_empty());
    }

    #[test]
    fn only_path_interfaces_whose_state_changed_are_told_to_the_backend() {
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        let wanted = set(&["wan0", "wan1", "wan2"]);
        assert_eq!(
            path_changes(&wanted, &set(&["wan0"]), &set(&["wan1"])),
            [("wan0".to_string(), true), ("wan1".to_string(), false)]
        );
        assert!(path_changes(&wanted, &set(&["wan2"]), &set(&["wan2"])).is_empty());
        // An interface no path names any more is not told about.
        assert!(path_changes(&wanted, &set(&["old"]), &set(&[])).is_empty());
    }

    #[test]
    fn a_retry_adds_what_is_not_running_and_never_removes() {
        let config =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/three-nodes/alpha.json");
        let Ok(loaded) = load::load(&config) else {
            panic!("the example {} does not load", config.display());
        };
        let planned = &loaded.plan.links;
        assert!(planned.len() >= 2, "the example plans links to two peers");
        assert!(retry_steps(planned, planned).is_none());
        let steps = retry_steps(&planned[1..], planned).expect("one link to add");
        assert_eq!(steps.add.len(), 1);
        assert_eq!(steps.add[0].name, planned[0].name);
        // A running link the plan no longer has is a reload's to remove, not a retry's.
        let steps = retry_steps(planned, &planned[1..]);
        assert!(steps.is_none());
        let mut moved = planned[0].clone();
        moved.keepalive = Some(moved.keepalive.unwrap_or(0) + 7);
        let running = [vec![moved], planned[1..].to_vec()].concat();
        let steps = retry_steps(&running, planned).expect("one link to change");
        assert_eq!(steps.update.len(), 1);
        assert!(steps.remove.is_empty());
    }
}
