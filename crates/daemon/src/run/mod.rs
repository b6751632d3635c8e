//! `braid run`: the foreground daemon. It reconciles at start, on SIGHUP and on
//! `braid reload`, retries links that failed, serves the control socket, and on SIGTERM,
//! SIGINT or `braid down` removes everything it made (SIGTERM and SIGINT keep the node's
//! bridge, so that workloads stay attached across a restart).
//!
//! Its parts: the run loop ([`run`]) takes the events (signals, timers, uplink changes, a
//! new registry, `reload` and `down` on the control socket) one at a time and is the one
//! writer of the daemon's state ([`Reconciler`], behind a fair async lock). What blocks
//! (reading the inputs, the backend's link changes, removing every link, reading the
//! links' state, which the kernel backend asks the kernel for) runs on the reconciler's
//! own thread (`Worker`), a reload's link changes one link at a time; the status requests
//! (`status` on the control socket, HTTP `/status` and `/metrics`) are answered by their
//! own tasks (`serve_status`), which build the document on tokio's blocking pool and take
//! the lock between two links: a reload of hundreds of links does not hold status up
//! (`tests/responsive.rs`). Routes are decided under the lock and installed without it
//! (`apply_routes`).

use crate::backend::LinkBackend;
use crate::control::{self, Reply, Request};
use crate::reconciler::{Reconciler, ReloadError, Summary, Work};
use crate::status;
use crate::status::Status;
use braid_system::Netlink;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::signal::unix::{SignalKind, signal};

mod groups;
mod listeners;
mod lookups;
mod worker;

use groups::account;
pub use groups::{account_groups, delete_groups};
use listeners::{Listeners, listen, status_reply};
use lookups::{Busy, Lookup, Resolved, resolve_endpoints};
use worker::{Bound, Shared, Worker, off_loop};

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
    /// The reconciler's thread could not be started.
    #[error("starting the reconciler's thread: {0}")]
    Thread(std::io::Error),
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

/// Does `work`'s link changes on the reconciler's thread, taking the lock for one link at
/// a time (tokio's lock is fair: a waiting status request goes before the next link), then
/// ends it ([`Reconciler::finish`]).
async fn reconcile<B: LinkBackend + 'static>(d: &Shared<B>, mut work: Work) -> Summary {
    let state = d.state.clone();
    d.worker
        .run(move || {
            while state.blocking_lock().step(&mut work) {}
            state.blocking_lock().finish(work)
        })
        .await
}

/// Tries again the planned links that are not running; `None` when there are none.
async fn retry_links<B: LinkBackend + 'static>(d: &Shared<B>) -> Option<Summary> {
    let work = d.lock().await.begin_retry()?;
    Some(reconcile(d, work).await)
}

/// Makes again the links whose interface disappeared; `None` when none did.
async fn recreate_missing<B: LinkBackend + 'static>(d: &Shared<B>) -> Option<Summary> {
    if !off_loop(d, Reconciler::forget_missing).await {
        return None;
    }
    retry_links(d).await
}

async fn reload<B: LinkBackend + 'static>(d: &Shared<B>) -> Reply {
    match off_loop(d, Reconciler::begin_reload).await {
        Ok(work) => {
            let summary = reconcile(d, work).await;
            tracing::info!(%summary, "reloaded");
            let unapplied = match (d.bound.get(), d.lock().await.loaded()) {
                (Some(bound), Some(now)) => needs_restart(bound, &now.config),
                _ => Vec::new(),
            };
            for setting in &unapplied {
                tracing::warn!("{setting}");
            }
            if let Err(e) = account(d).await {
                tracing::error!("interface group accounting: {e}");
            }
            apply_routing(d).await;
            let message = std::iter::once(summary.to_string())
                .chain(unapplied)
                .collect::<Vec<_>>()
                .join("; ");
            if summary.failed.is_empty() {
                Reply::ok(message)
            } else {
                Reply::error(message)
            }
        }
        Err(e) => {
            tracing::error!("reload rejected: {e}");
            Reply::error(e.to_string())
        }
    }
}

/// The settings of `new` that differ from what the daemon bound at start, one sentence
/// each: the control socket and the status listener are bound once ([`listen`]). A reload
/// that changed them said nothing, and the daemon went on answering at the old address.
fn needs_restart(bound: &Bound, new: &braid_model::config::Config) -> Vec<String> {
    let listen = |a: Option<std::net::SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
    let mut out = Vec::new();
    if bound.listen != new.status.listen {
        out.push(format!(
            "status.listen {} takes effect when the daemon restarts; the listener stays at {} until then",
            listen(new.status.listen),
            listen(bound.listen)
        ));
    }
    if bound.control_socket != new.control_socket {
        out.push(format!(
            "control_socket {} takes effect when the daemon restarts; the daemon answers at {} until then",
            new.control_socket, bound.control_socket
        ));
    }
    out
}

/// Rescans the uplinks (see `uplinks`); reloads when `wan: "auto"` found a new set.
async fn follow_uplinks<B: LinkBackend + 'static>(d: &Shared<B>, known: &mut Vec<String>) {
    let found = crate::uplinks::rescan(&mut *d.lock().await, known).await;
    match found {
        Ok(found) if found.reload => {
            reload(d).await;
            // The new links' paths need their rules and states too.
            let again = crate::uplinks::rescan(&mut *d.lock().await, known).await;
            if let Err(e) = again {
                tracing::warn!("uplinks: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("uplinks: {e}"),
    }
}

/// Removes what braid made. `keep_bridge` (SIGTERM, SIGINT: a restart) keeps the node's
/// bridge and the workloads attached to it; `braid down` removes it too.
async fn shutdown<B: LinkBackend + 'static>(d: &Shared<B>, keep_bridge: bool) -> Reply {
    let (config, keep, engine) = {
        let mut r = d.lock().await;
        let keep = if keep_bridge {
            crate::routing::extra_interfaces(&r)
        } else {
            Vec::new()
        };
        (r.loaded().map(|l| l.config.clone()), keep, r.take_engine())
    };
    if let Some(engine) = engine {
        // Waits for the routing daemon to exit (up to `routing::supervisor::STOP_GRACE`): off the runtime.
        if let Err(e) = tokio::task::spawn_blocking(move || engine.stop()).await {
            tracing::error!("stopping the routing daemon: {e}");
        }
    }
    if let Some(config) = &config
        && let Err(e) = crate::routing::teardown(config).await
    {
        tracing::error!("removing routes and NAT: {e}");
    }
    let summary = off_loop(d, Reconciler::remove_all).await;
    if let Some(config) = &config
        && let Err(e) = crate::routing::delete_groups_keeping(
            config.netns.as_deref(),
            config.active_group,
            config.stale_group,
            &keep,
        )
        .await
    {
        tracing::error!("deleting interface groups: {e}");
    }
    tracing::info!(%summary, kept = ?keep, "down");
    Reply::ok(format!("down: {summary}"))
}

async fn apply_routing<B: LinkBackend + 'static>(d: &Shared<B>) {
    apply_routes(d).await;
    supervise_engines(d).await;
}

/// Keeps babeld or BIRD running and in step (and stopped in other modes), from the
/// supervisor's own thread: this never waits (but for the lock).
async fn supervise_engines<B: LinkBackend + 'static>(d: &Shared<B>) {
    crate::routing::supervise_engine(&mut *d.lock().await);
}

/// Brings braid's routes in line: decided on the reconciler's thread (it reads the links'
/// state, which blocks with the kernel backend), installed without the lock (netlink, and
/// the sysctls and `nft` on the blocking pool: see `routing::install`), recorded under it.
/// The run loop is the state's one writer, so nothing changes it in between.
async fn apply_routes<B: LinkBackend + 'static>(d: &Shared<B>) {
    let wanted = off_loop(d, |r| crate::routing::wanted(r)).await;
    let result = match &wanted {
        Some(wanted) => crate::routing::install(wanted).await,
        None => Ok(crate::routing::Outcome::default()),
    };
    let mut r = d.lock().await;
    match result {
        Ok(outcome) => {
            if outcome.added + outcome.removed > 0 {
                tracing::info!(
                    added = outcome.added,
                    removed = outcome.removed,
                    installed = outcome.installed.len(),
                    "routes"
                );
            }
            for failure in r
                .routing_mut()
                .installed(outcome.installed, &outcome.failed)
            {
                tracing::error!("{failure}");
            }
        }
        Err(e) => {
            tracing::error!("node network and routes: {e}");
            r.routing_mut().failed(e.to_string());
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

/// What the run loop keeps between events, beside the reconciler.
struct Loop {
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
    /// The links whose DNS look-up is queued or under way (a link is in one round at a
    /// time); answers come back on `resolved`.
    lookups: Busy,
    resolved: tokio::sync::mpsc::Sender<Resolved>,
}

/// Runs the daemon until SIGTERM, SIGINT or `braid down`. `ready` is called once, when the
/// first reconcile is done and the routes, control socket and status listener are up.
pub async fn run<B: LinkBackend + 'static>(
    config_path: PathBuf,
    backend: B,
    ready: impl FnOnce(&Summary),
) -> Result<(), RunError> {
    // The CLI restores SIGPIPE's default action (for `braid plan | head`); the daemon must
    // not die when the other end of one of its sockets goes away in the middle of a write
    // (a status client, babeld's control socket): an EPIPE error is enough.
    // SAFETY: setting a signal's disposition to SIG_IGN has no memory-safety preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let started = SystemTime::now();
    let r = Reconciler::new(&config_path, backend);
    // A registry URL: fetched now (before the first reconcile) and on its period.
    let fetch_now = Arc::new(tokio::sync::Notify::new());
    let (fetched_tx, fetched) = tokio::sync::mpsc::channel::<()>(1);
    let _fetcher = crate::fetch::start(
        &config_path,
        r.registry().clone(),
        fetch_now.clone(),
        fetched_tx,
    )
    .await;
    let d = Shared {
        state: Arc::new(tokio::sync::Mutex::new(r)),
        worker: Arc::new(Worker::start().map_err(RunError::Thread)?),
        bound: Arc::default(),
    };
    let summary = first_reconcile(&d).await?;
    let (resolved, resolved_rx) = tokio::sync::mpsc::channel::<Resolved>(64);
    let mut s = Loop {
        fetch_now,
        uplinks_known: Vec::new(),
        states: BTreeMap::new(),
        alive: BTreeSet::new(),
        ticks: 0,
        lookups: Busy::default(),
        resolved,
    };
    let events = Events::start(fetched, resolved_rx)?;
    follow_uplinks(&d, &mut s.uplinks_known).await;
    let mut listeners = listen(&d, started).await?;
    ready(&summary);
    let exit = serve(&d, &mut s, events, &mut listeners, started).await;
    if exit == Exit::Signal {
        shutdown(&d, true).await;
    }
    remove_socket(&listeners.socket);
    Ok(())
}

/// The first reconcile at start: links, interface groups and routes.
async fn first_reconcile<B: LinkBackend + 'static>(d: &Shared<B>) -> Result<Summary, RunError> {
    let work = off_loop(d, Reconciler::begin_reload).await?;
    let summary = reconcile(d, work).await;
    tracing::info!(%summary, "started");
    account(d).await?;
    apply_routing(d).await;
    Ok(summary)
}

/// What the run loop waits for, besides the control socket.
struct Events {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    /// The link-state watch ([`STATE_WATCH_INTERVAL`]).
    watch: tokio::time::Interval,
    /// The retry tick ([`RETRY_INTERVAL`]).
    retry: tokio::time::Interval,
    /// A new registry version was fetched and kept.
    fetched: tokio::sync::mpsc::Receiver<()>,
    /// Answers of the DNS look-ups.
    resolved: tokio::sync::mpsc::Receiver<Resolved>,
    /// Interfaces or routes changed (netlink), for the uplinks.
    uplinks: Arc<tokio::sync::Notify>,
}

impl Events {
    fn start(
        fetched: tokio::sync::mpsc::Receiver<()>,
        resolved: tokio::sync::mpsc::Receiver<Resolved>,
    ) -> Result<Self, RunError> {
        // Uplinks: followed over netlink, rescanned on every change and every retry tick.
        let uplinks = Arc::new(tokio::sync::Notify::new());
        if let Err(e) = braid_system::uplinks::monitor(uplinks.clone()) {
            tracing::warn!(
                "cannot follow interface and route changes (rescanning every {RETRY_INTERVAL:?}): {e}"
            );
        }
        let signal = |kind| signal(kind).map_err(RunError::Signal);
        Ok(Self {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            watch: tokio::time::interval(STATE_WATCH_INTERVAL),
            retry: tokio::time::interval(RETRY_INTERVAL),
            fetched,
            resolved,
            uplinks,
        })
    }
}

/// Why the run loop ended.
#[derive(Debug, PartialEq, Eq)]
enum Exit {
    /// SIGTERM or SIGINT: a restart; links and routes are removed, the bridge kept.
    Signal,
    /// `braid down`: everything is removed already.
    Down,
}

/// The run loop: one event at a time, the only writer of the daemon's state.
async fn serve<B: LinkBackend + 'static>(
    d: &Shared<B>,
    s: &mut Loop,
    mut e: Events,
    listeners: &mut Listeners,
    started: SystemTime,
) -> Exit {
    loop {
        tokio::select! {
            _ = e.hup.recv() => {
                s.fetch_now.notify_one();
                reload_and_follow(d, s).await;
            }
            _ = e.uplinks.notified() => on_uplink_event(d, s, &e.uplinks).await,
            _ = e.watch.tick() => on_watch(d, s).await,
            Some(()) = e.fetched.recv() => {
                // A new registry version was fetched and kept: the same reconcile as reload.
                reload_and_follow(d, s).await;
            }
            _ = e.term.recv() => return Exit::Signal,
            _ = e.int.recv() => return Exit::Signal,
            _ = e.retry.tick() => on_retry(d, s).await,
            Some((link, addr)) = e.resolved.recv() => {
                off_loop(d, move |r| r.resolved(&link, addr)).await;
            }
            Some(incoming) = listeners.control.recv() => {
                if on_control(d, s, started, incoming).await {
                    return Exit::Down;
                }
            }
        }
    }
}

/// Interfaces or routes changed: rescans the uplinks and makes again a link whose own
/// interface was deleted under it.
async fn on_uplink_event<B: LinkBackend + 'static>(
    d: &Shared<B>,
    s: &mut Loop,
    uplink_events: &tokio::sync::Notify,
) {
    // A burst of changes (a link coming up brings several) is one rescan.
    tokio::time::sleep(Duration::from_millis(20)).await;
    follow_uplinks(d, &mut s.uplinks_known).await;
    if let Some(summary) = recreate_missing(d).await {
        tracing::info!(%summary, "links made again");
        apply_routing(d).await;
        start_lookups(d, s, false).await;
    }
    // Events that came during the rescan are covered by it: drop their wake-up (the next
    // change, or the retry tick, rescans again).
    let _ = tokio::time::timeout(Duration::ZERO, uplink_events.notified()).await;
}

/// The links braid routes over now (mode `static`; see [`crate::liveness::carries`]).
fn carrying<B: LinkBackend>(r: &Reconciler<B>, now: SystemTime) -> BTreeSet<String> {
    r.loaded()
        .map(|l| {
            l.plan
                .links
                .iter()
                .filter(|link| crate::liveness::carries(r, link, now))
                .map(|link| link.name.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Every [`STATE_WATCH_INTERVAL`]: logs link state changes, and re-applies the static
/// routes when the set of links that carry traffic changed (default routes follow the
/// exits' liveness).
async fn on_watch<B: LinkBackend + 'static>(d: &Shared<B>, s: &mut Loop) {
    // The links' state and loss are read from the backend (netlink round trips with the
    // kernel backend): on the reconciler's thread, idle while the loop is here.
    let mut states = std::mem::take(&mut s.states);
    let (states, live) = off_loop(d, move |r| {
        log_state_changes(r, &mut states);
        crate::routing::follow_costs(r);
        (states, carrying(r, SystemTime::now()))
    })
    .await;
    s.states = states;
    if live != s.alive {
        s.alive = live;
        apply_routes(d).await;
    }
}

/// Every [`RETRY_INTERVAL`]: makes missing links again, retries failed links and routes,
/// keeps the routing daemon in step, rescans the uplinks, and starts a round of DNS
/// look-ups for the endpoints that are due.
async fn on_retry<B: LinkBackend + 'static>(d: &Shared<B>, s: &mut Loop) {
    if let Some(summary) = recreate_missing(d).await {
        tracing::info!(%summary, "links made again");
        apply_routing(d).await;
    }
    if let Some(summary) = retry_links(d).await {
        tracing::info!(%summary, "retried failed links");
        apply_routing(d).await;
    } else {
        supervise_engines(d).await;
        let routes_failed = d.lock().await.routing().needs_retry();
        if routes_failed {
            // A route or rule that could not be set up: try again.
            apply_routes(d).await;
        }
    }
    follow_uplinks(d, &mut s.uplinks_known).await;
    s.ticks = s.ticks.wrapping_add(1);
    start_lookups(d, s, s.ticks.is_multiple_of(RE_RESOLVE_ALL_EVERY)).await;
}

/// Starts a round of DNS look-ups for the running links' named endpoints that are due
/// (every one when `all`, else those not resolved since they were made or changed and
/// those without a session; see [`Reconciler::due_for_resolve`]) and not already in a
/// round. Links come up without an address for a named endpoint (the backends never look
/// up names), so this also runs right after each reload: a new or remade link is pointed
/// within a look-up, not at the next retry tick, even while a round for names whose server
/// does not answer still waits (it held up the next round for its timeouts before).
async fn start_lookups<B: LinkBackend + 'static>(d: &Shared<B>, s: &mut Loop, all: bool) {
    // Reads the links' state (see `on_watch`): on the reconciler's thread.
    let due = off_loop(d, move |r| r.due_for_resolve(all, SystemTime::now())).await;
    let fresh: Vec<Lookup> = {
        let mut busy = s
            .lookups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        due.into_iter()
            .filter(|link| busy.insert(link.name.clone()))
            .map(|link| Lookup {
                link,
                busy: s.lookups.clone(),
            })
            .collect()
    };
    if !fresh.is_empty() {
        tokio::spawn(resolve_endpoints(fresh, s.resolved.clone()));
    }
}

/// A reload (SIGHUP, a fetched registry, `braid reload`), then the uplinks and the DNS
/// endpoints of the links it made.
async fn reload_and_follow<B: LinkBackend + 'static>(d: &Shared<B>, s: &mut Loop) -> Reply {
    let reply = reload(d).await;
    follow_uplinks(d, &mut s.uplinks_known).await;
    start_lookups(d, s, false).await;
    reply
}

/// A request on the control socket that changes something (`status` is answered by
/// [`serve_status`]); true when the daemon is to exit (`braid down`, after the client had
/// its reply).
async fn on_control<B: LinkBackend + 'static>(
    d: &Shared<B>,
    s: &mut Loop,
    started: SystemTime,
    incoming: control::Incoming,
) -> bool {
    let (reply, stop) = match incoming.request {
        Request::Reload => {
            s.fetch_now.notify_one();
            (reload_and_follow(d, s).await, false)
        }
        Request::Status => (status_reply(d, started).await, false),
        Request::Down => (shutdown(d, false).await, true),
    };
    let _ = incoming.reply.send(reply);
    if stop {
        // Let the client have its reply before the process exits.
        let _ = tokio::time::timeout(control::WRITE_TIMEOUT, incoming.written).await;
    }
    stop
}

fn remove_socket(path: &Path) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_says_which_settings_wait_for_a_restart() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/three-nodes");
        let (running, _) = crate::load::config(&dir.join("alpha.json")).unwrap();
        let bound = Bound {
            listen: running.status.listen,
            control_socket: running.control_socket.clone(),
        };
        assert!(needs_restart(&bound, &running).is_empty());
        let mut new = running.clone();
        new.status.listen = Some("127.0.0.1:8092".parse().unwrap());
        new.control_socket = "/run/braid/other.sock".into();
        let said = needs_restart(&bound, &new);
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(
            said[0]
                .starts_with("status.listen 127.0.0.1:8092 takes effect when the daemon restarts"),
            "{said:?}"
        );
        assert!(
            said[1].contains("control_socket /run/braid/other.sock"),
            "{said:?}"
        );
        new.status.listen = None;
        assert!(needs_restart(&bound, &new)[0].starts_with("status.listen off "));
        // Back to what was bound: nothing to say (compared with the start, not the last
        // reload: the listener never moved).
        assert!(needs_restart(&bound, &running).is_empty());
    }
}
