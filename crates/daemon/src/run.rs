//! `braid run`: the foreground daemon. It reconciles at start, on SIGHUP and on
//! `braid reload`, retries links that failed, serves the control socket, and on SIGTERM,
//! SIGINT or `braid down` removes everything it made (SIGTERM and SIGINT keep the node's
//! bridge, so that workloads stay attached across a restart).

use crate::backend::LinkBackend;
use crate::control::{self, Reply, Request};
use crate::reconciler::{Reconciler, ReloadError};
use crate::status;
use braid_system::Netlink;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::signal::unix::{SignalKind, signal};

/// How often links that failed to come up are tried again, and DNS endpoints of links
/// without a session are resolved again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// Every DNS endpoint is resolved again this often, live or not.
/// Every link's DNS endpoint is resolved again this often (retry ticks: 135 s, as
/// wireguard-tools' reresolve-dns does); a link that is not up is resolved on every tick.
pub const RE_RESOLVE_ALL_EVERY: u32 = 27;

/// Why the daemon could not start (or stopped early).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The first inputs are invalid.
    #[error(transparent)]
    Reload(#[from] ReloadError),
    /// The control socket could not be bound.
    #[error("control socket {path}: {source}")]
    Control {
        /// The socket's path (the config's `control_socket`).
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// A signal handler (SIGHUP, SIGTERM, SIGINT) could not be installed.
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
    /// Interface group accounting at start failed.
    #[error(transparent)]
    System(#[from] braid_system::SystemError),
    #[error(
        "status listener {addr} (config status.listen): {source}; choose another address or \"off\""
    )]
    /// The status listener could not be bound.
    Status {
        /// The address (the config's `status.listen`).
        addr: std::net::SocketAddr,
        /// The system's error.
        source: std::io::Error,
    },
}

/// Group accounting as ranet does it: every active interface becomes stale, the links braid
/// runs become active again, and what is still stale is deleted.
pub async fn account_groups<B: LinkBackend>(
    r: &Reconciler<B>,
) -> Result<(), braid_system::SystemError> {
    let Some(loaded) = r.loaded() else {
        return Ok(());
    };
    let config = &loaded.config;
    let nl = Netlink::connect_in(config.netns.as_deref())?;
    // One listing, then only the changes: an unchanged mesh costs one netlink dump. The
    // result is ranet's (stale everything, re-activate what runs, delete the stale group)
    // without touching the links that stay.
    let extra = crate::routing::extra_interfaces(r);
    let running: std::collections::HashSet<&str> = r
        .running()
        .chain(extra.iter().map(String::as_str))
        .collect();
    for link in nl.links().await? {
        // The VRF counts as braid's only when braid made it (it is in the active group).
        let own_vrf =
            !config.vrf.is_empty() && link.name == config.vrf && link.group == config.active_group;
        let wanted = running.contains(link.name.as_str()) || own_vrf;
        if link.group == config.active_group && !wanted {
            nl.set_group(link.index, config.stale_group).await?;
        } else if wanted && link.group != config.active_group {
            nl.set_group(link.index, config.active_group).await?;
        }
    }
    nl.delete_group(config.stale_group).await
}

/// Deletes both of braid's interface groups (for `down`, also after a crash).
pub async fn delete_groups(
    netns: Option<&str>,
    active: u32,
    stale: u32,
) -> Result<(), braid_system::SystemError> {
    let nl = Netlink::connect_in(netns)?;
    nl.delete_group(active).await?;
    nl.delete_group(stale).await
}

async fn reload<B: LinkBackend>(r: &mut Reconciler<B>) -> Reply {
    match r.reload() {
        Ok(summary) => {
            tracing::info!(%summary, "reloaded");
            if let Err(e) = account_groups(r).await {
                tracing::error!("interface group accounting: {e}");
            }
            apply_routing(r).await;
            if summary.failed.is_empty() {
                Reply::ok(summary.to_string())
            } else {
                Reply::error(summary.to_string())
            }
        }
        Err(e) => {
            tracing::error!("reload rejected: {e}");
            Reply::error(e.to_string())
        }
    }
}

/// Rescans the uplinks (see `uplinks`); reloads when `wan: "auto"` found a new set.
async fn follow_uplinks<B: LinkBackend>(r: &mut Reconciler<B>, known: &mut Vec<String>) {
    match crate::uplinks::rescan(r, known).await {
        Ok(found) if found.reload => {
            reload(r).await;
            // The new links' paths need their rules and states too.
            if let Err(e) = crate::uplinks::rescan(r, known).await {
                tracing::warn!("uplinks: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("uplinks: {e}"),
    }
}

/// Removes what braid made. `keep_bridge` (SIGTERM, SIGINT: a restart) keeps the node's
/// bridge and the workloads attached to it; `braid down` removes it too.
async fn shutdown<B: LinkBackend>(r: &mut Reconciler<B>, keep_bridge: bool) -> Reply {
    let netns = r.loaded().and_then(|l| l.config.netns.clone());
    let groups = r
        .loaded()
        .map(|l| (l.config.active_group, l.config.stale_group));
    let keep = if keep_bridge {
        crate::routing::extra_interfaces(r)
    } else {
        Vec::new()
    };
    if let Some(engine) = r.engine.take() {
        // Waits for the routing daemon to exit (up to `routing::supervisor::STOP_GRACE`): off the runtime.
        if let Err(e) = tokio::task::spawn_blocking(move || engine.stop()).await {
            tracing::error!("stopping the routing daemon: {e}");
        }
    }
    if let Some(config) = r.loaded().map(|l| l.config.clone())
        && let Err(e) = crate::routing::teardown(&config).await
    {
        tracing::error!("removing routes and NAT: {e}");
    }
    let summary = r.remove_all();
    if let Some((active, stale)) = groups
        && let Err(e) =
            crate::routing::delete_groups_keeping(netns.as_deref(), active, stale, &keep).await
    {
        tracing::error!("deleting interface groups: {e}");
    }
    tracing::info!(%summary, kept = ?keep, "down");
    Reply::ok(format!("down: {summary}"))
}

async fn apply_routing<B: LinkBackend>(r: &mut Reconciler<B>) {
    apply_routes(r).await;
    supervise_engines(r);
}

/// Keeps babeld or BIRD running and in step (and stopped in other modes), from the
/// supervisor's own thread: this never waits.
fn supervise_engines<B: LinkBackend>(r: &mut Reconciler<B>) {
    crate::routing::supervise_engine(r);
}

async fn apply_routes<B: LinkBackend>(r: &mut Reconciler<B>) {
    match crate::routing::apply(r).await {
        Ok(outcome) => {
            if outcome.added + outcome.removed > 0 {
                tracing::info!(
                    added = outcome.added,
                    removed = outcome.removed,
                    installed = outcome.installed.len(),
                    "routes"
                );
            }
            r.routes = outcome.installed;
            let error = (!outcome.failed.is_empty()).then(|| outcome.failed.join("; "));
            if error.is_some() && error != r.routing_error {
                for failure in &outcome.failed {
                    tracing::error!("{failure}");
                }
            }
            r.routing_error = error;
        }
        Err(e) => {
            tracing::error!("node network and routes: {e}");
            r.routing_error = Some(e.to_string());
        }
    }
}

/// How often link states are compared with the last look, to log each change once and to
/// re-apply static routes when a link died or came back (braid's liveness, issue 13).
pub const STATE_WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// Logs one line per link whose state changed since the last call.
fn log_state_changes<B: LinkBackend>(r: &Reconciler<B>, last: &mut BTreeMap<String, &'static str>) {
    let now = SystemTime::now();
    let mut seen = BTreeMap::new();
    for plan in r.running_links() {
        let link = plan.name.as_str();
        let state = status::link_state(r.backend().stats(link).as_ref(), plan.keepalive, now);
        if last.get(link) != Some(&state) {
            tracing::info!(
                link,
                peer = %plan.peer,
                from = last.get(link).copied().unwrap_or("new"),
                to = state,
                "link state"
            );
        }
        seen.insert(link.to_string(), state);
    }
    *last = seen;
}

/// A DNS endpoint's fresh answer, for the link it was looked up for.
type Resolved = (braid_plan::LinkPlan, std::net::SocketAddr);

/// What the run loop keeps between events, beside the reconciler.
struct Loop {
    started: SystemTime,
    /// Asks the registry fetcher to fetch now (on reload).
    fetch_now: Arc<tokio::sync::Notify>,
    /// The uplinks found by the last rescan (see `uplinks::rescan`).
    uplinks_known: Vec<String>,
    /// Each running link's state at the last look (see [`log_state_changes`]).
    states: BTreeMap<String, &'static str>,
    /// The links that carried traffic at the last look (static routes follow them).
    alive: BTreeSet<String>,
    /// Retry ticks so far (every [`RE_RESOLVE_ALL_EVERY`]th resolves every DNS endpoint).
    ticks: u32,
    /// The DNS look-ups under way (one round at a time); answers come back on `resolved`.
    lookups: Option<tokio::task::JoinHandle<()>>,
    resolved: tokio::sync::mpsc::Sender<Resolved>,
}

/// The listeners that bring requests to the run loop, each served by its own tasks.
struct Listeners {
    /// The control socket's path (removed at exit).
    socket: PathBuf,
    control: tokio::sync::mpsc::Receiver<control::Incoming>,
    status: tokio::sync::mpsc::Receiver<crate::http::StatusRequest>,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Binds the control socket and, when the config has `status.listen`, the status listener.
async fn listen<B: LinkBackend>(r: &Reconciler<B>) -> Result<Listeners, RunError> {
    let socket: PathBuf = r
        .loaded()
        .map(|l| PathBuf::from(&l.config.control_socket))
        .unwrap_or_default();
    let listener = control::bind(&socket).map_err(|source| RunError::Control {
        path: socket.display().to_string(),
        source,
    })?;
    // Each client in its own task (read deadline, size limit); requests come to the loop.
    let (control_tx, control) = tokio::sync::mpsc::channel::<control::Incoming>(16);
    let mut tasks = vec![control::serve(listener, control_tx)];
    let (status_tx, status) = tokio::sync::mpsc::channel::<crate::http::StatusRequest>(64);
    if let Some(addr) = r.loaded().and_then(|l| l.config.status.listen) {
        let task = crate::http::serve(addr, status_tx)
            .await
            .map_err(|source| RunError::Status { addr, source })?;
        tasks.push(task);
    }
    Ok(Listeners {
        socket,
        control,
        status,
        _tasks: tasks,
    })
}

/// Runs the daemon until SIGTERM, SIGINT or `braid down`. `ready` is called once, when the
/// first reconcile is done and the routes, control socket and status listener are up.
pub async fn run<B: LinkBackend>(
    config_path: PathBuf,
    backend: B,
    ready: impl FnOnce(&crate::reconciler::Summary),
) -> Result<(), RunError> {
    // The CLI restores SIGPIPE's default action (for `braid plan | head`); the daemon must
    // not die when the other end of one of its sockets goes away in the middle of a write
    // (a status client, babeld's control socket): an EPIPE error is enough.
    // SAFETY: setting a signal's disposition to SIG_IGN has no memory-safety preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let started = SystemTime::now();
    let mut r = Reconciler::new(&config_path, backend);
    // A registry URL: fetched now (before the first reconcile) and on its period.
    let fetch_now = Arc::new(tokio::sync::Notify::new());
    let (fetched_tx, mut fetched_rx) = tokio::sync::mpsc::channel::<()>(1);
    let _fetcher = crate::fetch::start(
        &config_path,
        r.registry.clone(),
        fetch_now.clone(),
        fetched_tx,
    )
    .await;
    let summary = r.reload()?;
    tracing::info!(%summary, "started");
    account_groups(&r).await?;
    apply_routing(&mut r).await;
    // Uplinks: followed over netlink, rescanned on every change and every retry tick.
    let uplink_events = Arc::new(tokio::sync::Notify::new());
    if let Err(e) = braid_system::uplinks::monitor(uplink_events.clone()) {
        tracing::warn!(
            "cannot follow interface and route changes (rescanning every {RETRY_INTERVAL:?}): {e}"
        );
    }
    let (resolved, mut resolved_rx) = tokio::sync::mpsc::channel::<Resolved>(64);
    let mut s = Loop {
        started,
        fetch_now,
        uplinks_known: Vec::new(),
        states: BTreeMap::new(),
        alive: BTreeSet::new(),
        ticks: 0,
        lookups: None,
        resolved,
    };
    follow_uplinks(&mut r, &mut s.uplinks_known).await;
    let mut listeners = listen(&r).await?;
    let mut hup = signal(SignalKind::hangup()).map_err(RunError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signal)?;
    let mut watch = tokio::time::interval(STATE_WATCH_INTERVAL);
    let mut retry = tokio::time::interval(RETRY_INTERVAL);
    ready(&summary);
    loop {
        tokio::select! {
            _ = hup.recv() => {
                s.fetch_now.notify_one();
                reload(&mut r).await;
                follow_uplinks(&mut r, &mut s.uplinks_known).await;
            }
            _ = uplink_events.notified() => on_uplink_event(&mut r, &mut s, &uplink_events).await,
            Some(reply) = listeners.status.recv() => on_status_request(&r, &s, reply),
            _ = watch.tick() => on_watch(&mut r, &mut s).await,
            Some(()) = fetched_rx.recv() => {
                // A new registry version was fetched and kept: the same reconcile as reload.
                reload(&mut r).await;
                follow_uplinks(&mut r, &mut s.uplinks_known).await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = retry.tick() => on_retry(&mut r, &mut s).await,
            Some((link, addr)) = resolved_rx.recv() => r.resolved(&link, addr),
            Some(incoming) = listeners.control.recv() => {
                if on_control(&mut r, &s, incoming).await {
                    remove_socket(&listeners.socket);
                    return Ok(());
                }
            }
        }
    }
    shutdown(&mut r, true).await;
    remove_socket(&listeners.socket);
    Ok(())
}

/// Interfaces or routes changed: rescans the uplinks and makes again a link whose own
/// interface was deleted under it.
async fn on_uplink_event<B: LinkBackend>(
    r: &mut Reconciler<B>,
    s: &mut Loop,
    uplink_events: &tokio::sync::Notify,
) {
    // A burst of changes (a link coming up brings several) is one rescan.
    tokio::time::sleep(Duration::from_millis(20)).await;
    follow_uplinks(r, &mut s.uplinks_known).await;
    if let Some(summary) = r.recreate_missing() {
        tracing::info!(%summary, "links made again");
        apply_routing(r).await;
    }
    // Events that came during the rescan are covered by it: drop their wake-up (the next
    // change, or the retry tick, rescans again).
    let _ = tokio::time::timeout(Duration::ZERO, uplink_events.notified()).await;
}

/// A status request from the HTTP listener: the document is made here, the kernel's view
/// is read off the loop, and the reply waits for it.
fn on_status_request<B: LinkBackend>(
    r: &Reconciler<B>,
    s: &Loop,
    reply: crate::http::StatusRequest,
) {
    let doc = status::status(r, s.started, SystemTime::now());
    let netns = status::netns(r);
    tokio::spawn(async move {
        let _ = reply.send(crate::kernel_view::fill(doc, netns).await);
    });
}

/// Every [`STATE_WATCH_INTERVAL`]: logs link state changes, and re-applies the static
/// routes when the set of links that carry traffic changed (default routes follow the
/// exits' liveness).
async fn on_watch<B: LinkBackend>(r: &mut Reconciler<B>, s: &mut Loop) {
    log_state_changes(r, &mut s.states);
    let now = SystemTime::now();
    let live: BTreeSet<String> = r
        .loaded()
        .map(|l| {
            l.plan
                .links
                .iter()
                .filter(|link| crate::liveness::carries(r, link, now))
                .map(|link| link.name.clone())
                .collect()
        })
        .unwrap_or_default();
    if live != s.alive {
        s.alive = live;
        apply_routes(r).await;
    }
}

/// Every [`RETRY_INTERVAL`]: makes missing links again, retries failed links and routes,
/// keeps the routing daemon in step, rescans the uplinks, and starts a round of DNS
/// look-ups for the endpoints that are due.
async fn on_retry<B: LinkBackend>(r: &mut Reconciler<B>, s: &mut Loop) {
    if let Some(summary) = r.recreate_missing() {
        tracing::info!(%summary, "links made again");
        apply_routing(r).await;
    }
    if let Some(summary) = r.retry_failed() {
        tracing::info!(%summary, "retried failed links");
        apply_routing(r).await;
    } else {
        supervise_engines(r);
        if r.routing_error.is_some() {
            // A route or rule that could not be set up: try again.
            apply_routes(r).await;
        }
    }
    follow_uplinks(r, &mut s.uplinks_known).await;
    s.ticks = s.ticks.wrapping_add(1);
    let all = s.ticks.is_multiple_of(RE_RESOLVE_ALL_EVERY);
    let due = r.due_for_resolve(all, SystemTime::now());
    if !due.is_empty()
        && s.lookups
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished)
    {
        s.lookups = Some(tokio::spawn(resolve_endpoints(due, s.resolved.clone())));
    }
}

/// A request on the control socket; true when the daemon is to exit (`braid down`, after
/// the client had its reply).
async fn on_control<B: LinkBackend>(
    r: &mut Reconciler<B>,
    s: &Loop,
    incoming: control::Incoming,
) -> bool {
    let (reply, stop) = match incoming.request {
        Request::Reload => {
            s.fetch_now.notify_one();
            (reload(r).await, false)
        }
        Request::Status => {
            let doc = status::status(r, s.started, SystemTime::now());
            let doc = crate::kernel_view::fill(doc, status::netns(r)).await;
            let mut reply = Reply::ok("status");
            reply.status = serde_json::to_value(doc).ok();
            (reply, false)
        }
        Request::Down => (shutdown(r, false).await, true),
    };
    let _ = incoming.reply.send(reply);
    if stop {
        // Let the client have its reply before the process exits.
        let _ = tokio::time::timeout(control::WRITE_TIMEOUT, incoming.written).await;
    }
    stop
}

/// Looks up the DNS endpoints of `links` (off the loop, see
/// [`crate::userspace::resolve_async`]) and sends each answer to the loop, which points the
/// link at it ([`Reconciler::resolved`]).
async fn resolve_endpoints(
    links: Vec<braid_plan::LinkPlan>,
    answers: tokio::sync::mpsc::Sender<Resolved>,
) {
    for link in links {
        let Some(endpoint) = &link.endpoint else {
            continue;
        };
        if let Some(addr) = crate::userspace::resolve_async(endpoint, link.family).await
            && answers.send((link, addr)).await.is_err()
        {
            return;
        }
    }
}

fn remove_socket(path: &Path) {
    let _ = std::fs::remove_file(path);
}
