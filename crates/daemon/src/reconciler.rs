//! The reconcile step: load config and registry, diff the plan against the running links,
//! apply the difference through the backend. An invalid input changes nothing.

use crate::backend::{BackendError, LinkBackend, LinkSetup};
use crate::load::{self, Loaded};
use braid_model::Problems;
use braid_plan::reconcile::{Diff, diff};
use braid_plan::{LinkPlan, Plan};
use std::path::{Path, PathBuf};
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

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config or registry has problems (each with its file, field and fix).
    #[error("invalid input; the running network is unchanged:\n{0}")]
    Invalid(Problems),
}

/// The daemon's view of what it runs.
pub struct Reconciler<B: LinkBackend> {
    config_path: PathBuf,
    backend: B,
    /// The inputs of the last successful reload; `None` before the first.
    current: Option<Loaded>,
    /// The links the backend runs now, each as it was last applied. A link that failed
    /// to come up is not here, so the next reload tries it again.
    running: Vec<LinkPlan>,
    /// When the inputs in use were loaded.
    pub loaded_at: Option<SystemTime>,
    /// Why the last reload failed or left links down; `None` when it did not.
    pub last_error: Option<String>,
    /// When the last reload was attempted, and whether its input was valid.
    pub last_reload_at: Option<SystemTime>,
    /// Whether the last reload's input was valid.
    pub last_reload_ok: bool,
    /// The routes braid installed last, and the error of the last attempt, if any.
    pub routes: Vec<braid_plan::routes::RoutePlan>,
    /// Why braid's routes or rules could not all be set up last time; `None` when they were.
    pub routing_error: Option<String>,
    /// The supervisor of the routing daemon (babeld or BIRD), once one was wanted.
    pub engine: Option<crate::routing::supervisor::Supervisor>,
    /// The uplinks found now, for transports with `wan: "auto"` (see `uplinks`).
    pub uplinks: Vec<String>,
    /// Path interfaces last reported down to the backend.
    pub paths_down: std::collections::BTreeSet<String>,
    /// Registry refusals and the fetcher's state, shared with the fetcher.
    pub registry: std::sync::Arc<std::sync::Mutex<crate::registry_file::RegistryState>>,
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
            loaded_at: None,
            last_error: None,
            last_reload_at: None,
            last_reload_ok: false,
            routes: Vec::new(),
            routing_error: None,
            engine: None,
            uplinks: Vec::new(),
            paths_down: std::collections::BTreeSet::new(),
            registry: Default::default(),
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

    /// The link backend, to change (paths' states).
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
        self.current.as_ref()
    }

    /// Re-reads the inputs and brings the links in line. Invalid input: nothing changes.
    pub fn reload(&mut self) -> Result<Summary, ReloadError> {
        self.last_reload_at = Some(SystemTime::now());
        let loaded = {
            // The fetcher writes a URL source's cache (registry, then signature) under this
            // lock: never read one half of a new copy.
            let _cache = self.registry.lock().unwrap_or_else(|p| p.into_inner());
            load::load_with_uplinks(&self.config_path, &self.uplinks)
        };
        let loaded = loaded.and_then(|l| {
            // A signed registry older than the running one is refused (a rollback).
            match crate::registry_file::rollback(self.current.as_ref(), &l) {
                Some(refusal) => Err(Problems(vec![refusal])),
                None => Ok(l),
            }
        });
        let loaded = match loaded {
            Ok(loaded) => {
                self.last_reload_ok = true;
                loaded
            }
            Err(problems) => {
                self.registry
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .note_refusals(&problems, crate::registry_file::unix_now());
                self.last_reload_ok = false;
                self.last_error = Some(problems.to_string());
                return Err(ReloadError::Invalid(problems));
            }
        };
        let steps = diff(&self.running, &loaded.plan.links);
        let summary = self.apply(&loaded, &steps);
        self.current = Some(loaded);
        self.loaded_at = Some(SystemTime::now());
        self.last_error = (!summary.failed.is_empty()).then(|| summary.failed.join("; "));
        Ok(summary)
    }

    /// Tries again the links of the current plan that failed to come up; `None` when
    /// there is nothing to retry.
    /// Makes again the links whose interface disappeared (an admin's `ip link del`,
    /// another tool's cleanup): reconciles against what exists, not against memory.
    pub fn recreate_missing(&mut self) -> Option<Summary> {
        let missing = self.backend.missing();
        if missing.is_empty() {
            return None;
        }
        for name in &missing {
            tracing::warn!(link = %name, "the link's interface disappeared: making it again");
            if let Err(e) = self.backend.remove(name) {
                tracing::warn!("{e}");
            }
            self.running.retain(|l| &l.name != name);
        }
        self.retry_failed()
    }

    /// Tries again the planned links that are not running (they failed to come up or
    /// change); `None` when no link is to be added or changed.
    pub fn retry_failed(&mut self) -> Option<Summary> {
        let loaded = self.current.take()?;
        let steps = diff(&self.running, &loaded.plan.links);
        let summary = (!steps.add.is_empty() || !steps.update.is_empty()).then(|| {
            self.apply(
                &loaded,
                &Diff {
                    remove: Vec::new(),
                    ..steps
                },
            )
        });
        if let Some(s) = &summary {
            self.last_error = (!s.failed.is_empty()).then(|| s.failed.join("; "));
        }
        self.current = Some(loaded);
        summary
    }

    fn apply(&mut self, loaded: &Loaded, steps: &Diff) -> Summary {
        let mut summary = Summary {
            unchanged: steps.unchanged.len(),
            ..Summary::default()
        };
        let failed = |summary: &mut Summary, e: BackendError| {
            tracing::error!("{e}");
            summary.failed.push(e.to_string());
        };
        for name in &steps.remove {
            match self.backend.remove(name) {
                Ok(()) => summary.removed.push(name.clone()),
                Err(e) => failed(&mut summary, e),
            }
            // Whether or not removal worked, the link is no longer wanted; the group
            // accounting deletes what is left of it.
            self.running.retain(|l| &l.name != name);
        }
        let setup = |link| setup_for(loaded, link);
        for (link, changes) in &steps.update {
            match self.backend.update(setup(link), changes) {
                Ok(()) => {
                    summary.updated.push(link.name.clone());
                    self.running.retain(|l| l.name != link.name);
                    self.running.push(link.clone());
                }
                Err(e) => failed(&mut summary, e),
            }
        }
        for link in &steps.add {
            if self.backend.adopt(setup(link)) {
                summary.unchanged += 1;
                self.running.push(link.clone());
                continue;
            }
            match self.backend.add(setup(link)) {
                Ok(()) => {
                    summary.added.push(link.name.clone());
                    self.running.push(link.clone());
                }
                Err(e) => failed(&mut summary, e),
            }
        }
        summary
    }

    /// The running links whose DNS endpoint is due to be resolved again: every one when
    /// `all`, else those without a live session at `now` (the peer may have moved). The
    /// look-up itself is the caller's, off the async runtime (see `run`); its answer comes
    /// back through [`Reconciler::resolved`].
    pub fn due_for_resolve(&self, all: bool, now: SystemTime) -> Vec<LinkPlan> {
        self.running
            .iter()
            .filter(|link| {
                let named = link
                    .endpoint
                    .as_ref()
                    .is_some_and(|e| matches!(e.host, braid_model::Host::Name(_)));
                named
                    && (all
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
