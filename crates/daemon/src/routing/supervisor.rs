//! The routing daemon (babeld or BIRD), supervised on a thread of its own.
//!
//! The daemon's main loop only says what it wants ([`Supervisor::want`], which never
//! blocks) and reads the health ([`Supervisor::health`]). The supervision thread starts the
//! routing daemon, waits for its control socket with non-blocking polls, keeps it in step
//! (babeld's interfaces, BIRD's configuration), notices when it exits and starts it again
//! after a backoff ([`Backoff`]); nothing of that waits in the main loop.
//!
//! A routing daemon braid starts does not outlive braid:
//! - it is spawned from the supervision thread with the parent-death signal set
//!   (`prctl(PR_SET_PDEATHSIG, SIGTERM)`, see prctl(2)). The kernel sends that signal when
//!   the *thread* that forked the child ends, not the process; the supervision thread
//!   lives until it has stopped the routing daemon itself, so the signal comes only when
//!   braid dies (a crash, `kill -9`);
//! - one that an earlier braid left running anyway (its pid file names a live process whose
//!   command line is that program with braid's config file for it) is stopped before a new
//!   one starts, and by `braid down` ([`stop_stale`]).

use super::babel;
use super::bird::{self, BirdInputs};
use super::cost::LinkCosts;
use super::decide::{engine_dir, wanted_engine};
use crate::backend::LinkBackend;
use crate::reconciler::Reconciler;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a routing daemon may take to open its control socket before it counts as
/// failed (and is killed and started again).
pub const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a routing daemon gets to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);
/// How often the supervision thread looks while a daemon starts or waits for a restart.
const FAST_POLL: Duration = Duration::from_millis(50);
/// How often it looks while the daemon runs (exit, and applying braid's state again after
/// an error).
const SLOW_POLL: Duration = Duration::from_millis(250);
/// After a failed attempt to bring the daemon in step with braid, the next try.
const APPLY_RETRY: Duration = Duration::from_secs(1);
/// How often the routes the daemon selected are compared with the kernel's table.
pub const VERIFY_INTERVAL: Duration = Duration::from_secs(2);
/// At most this often, babeld is started again to install routes it believes installed
/// but the kernel does not hold (see `Supervision::verify`).
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(60);

/// The routing daemon braid wants, and what it must be told. Computed by the main loop
/// from the loaded inputs (see `routing::wanted_engine`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// babeld (RFC 8966), told its interfaces over its local control socket (babeld(8)).
    Babel {
        /// Where its config, control socket, pid file, state and log live.
        dir: PathBuf,
        /// The overlay namespace babeld runs in, when the config has one.
        netns: Option<String>,
        /// babeld's config file (see `babel::config_text`); a change restarts babeld.
        config: String,
        /// Each link's babeld interface parameters (see `babel::interface_parameters`).
        link_parameters: String,
        /// The links babeld speaks on, told over its control socket (no restart).
        links: BTreeSet<String>,
        /// Links whose `rxcost` is not the one in `link_parameters` (lossy links, see
        /// `routing::cost`), with theirs: babeld gets them by removing the interface and
        /// adding it again (it keeps an existing interface's cost otherwise).
        rxcosts: BTreeMap<String, u16>,
    },
    /// BIRD 2 with its babel protocol, configured by file and `birdc configure`.
    Bird {
        /// Where its config, control socket, pid file and log live.
        dir: PathBuf,
        /// The overlay namespace BIRD runs in, when the config has one.
        netns: Option<String>,
        /// BIRD's configuration; a change is applied with `birdc configure`.
        inputs: BirdInputs,
    },
}

/// What, when it changes, needs the routing daemon started again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RestartKey {
    program: &'static str,
    dir: PathBuf,
    netns: Option<String>,
    config: Option<String>,
}

impl Wanted {
    /// The program's name (`babeld`, `bird`).
    pub fn program(&self) -> &'static str {
        match self {
            Self::Babel { .. } => babel::PROGRAM,
            Self::Bird { .. } => bird::PROGRAM,
        }
    }

    fn restart_key(&self) -> RestartKey {
        match self {
            Self::Babel {
                dir, netns, config, ..
            } => RestartKey {
                program: self.program(),
                dir: dir.clone(),
                netns: netns.clone(),
                config: Some(config.clone()),
            },
            Self::Bird { dir, netns, .. } => RestartKey {
                program: self.program(),
                dir: dir.clone(),
                netns: netns.clone(),
                config: None,
            },
        }
    }
}

/// The routing daemon's health, as the status document shows it (`routing.engine`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EngineHealth {
    /// `babeld` or `bird`; `None` when routing needs no daemon.
    #[serde(deserialize_with = "braid_bond::status::static_word_opt")]
    pub program: Option<braid_bond::status::Word>,
    /// Its process ID while it runs.
    pub pid: Option<u32>,
    /// Its control socket answered and it has braid's current interfaces or configuration.
    pub ready: bool,
    /// How often it was started again after it exited or failed to start.
    pub restarts: u32,
    /// Why it is not ready, when it is not.
    pub error: Option<String>,
    /// Routes it selected that are not in the kernel (see `routing::engine_routes`).
    pub missing_routes: Vec<String>,
}

/// Restart pacing (pure): the first restart after a failure is immediate, further
/// consecutive ones wait 250 ms, 500 ms, 1 s, ... up to 10 s; a daemon that has run for
/// [`Backoff::STABLE`] resets the count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
    next: Option<Instant>,
}

impl Backoff {
    /// The longest wait before a restart.
    pub const MAX: Duration = Duration::from_secs(10);
    /// How long a daemon must run to count as stable: the failures are forgotten then.
    pub const STABLE: Duration = Duration::from_secs(30);

    /// The wait before the attempt that follows `failures` consecutive failures.
    pub fn delay(failures: u32) -> Duration {
        match failures {
            0 | 1 => Duration::ZERO,
            n => Duration::from_millis(250)
                .saturating_mul(1 << (n - 2).min(8))
                .min(Self::MAX),
        }
    }

    /// One more failure at `now`.
    pub fn failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.next = Some(now + Self::delay(self.failures));
    }

    /// Whether a start may be attempted at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next.is_none_or(|t| now >= t)
    }

    /// The daemon has been running since `since`: after [`Self::STABLE`], failures are
    /// forgotten.
    pub fn running(&mut self, since: Instant, now: Instant) {
        if now.duration_since(since) >= Self::STABLE {
            *self = Self::default();
        }
    }
}

enum Request {
    Want(Box<Option<Wanted>>),
    Stop,
}

/// The handle of the supervision thread. Dropping it (or [`Supervisor::stop`]) stops the
/// routing daemon and ends the thread.
pub struct Supervisor {
    requests: Sender<Request>,
    health: Arc<Mutex<EngineHealth>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The links' routing costs from their measured loss (see `routing::cost`).
    costs: LinkCosts,
}

fn lock(health: &Mutex<EngineHealth>) -> std::sync::MutexGuard<'_, EngineHealth> {
    health
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Supervisor {
    /// Starts the supervision thread (it starts nothing until told what is wanted).
    pub fn start() -> std::io::Result<Self> {
        let (requests, rx) = std::sync::mpsc::channel();
        let health = Arc::new(Mutex::new(EngineHealth::default()));
        let shared = health.clone();
        let thread = std::thread::Builder::new()
            .name("braid-routing".into())
            .spawn(move || Supervision::new(shared).run(rx))?;
        Ok(Self {
            requests,
            health,
            thread: Some(thread),
            costs: LinkCosts::default(),
        })
    }

    /// Says what is wanted now; never blocks. `None`: no routing daemon (one running is
    /// stopped).
    pub fn want(&self, wanted: Option<Wanted>) {
        {
            // A new program is not ready until the thread says so.
            let mut health = lock(&self.health);
            let program = wanted.as_ref().map(Wanted::program);
            if health.program != program {
                *health = EngineHealth {
                    program,
                    restarts: health.restarts,
                    error: program.map(|p| format!("{p} is starting")),
                    ..EngineHealth::default()
                };
            }
        }
        let _ = self.requests.send(Request::Want(Box::new(wanted)));
    }

    /// The links' routing costs, as braid decided them from their loss.
    pub fn costs(&self) -> &LinkCosts {
        &self.costs
    }

    /// The health as of the supervision thread's last look.
    pub fn health(&self) -> EngineHealth {
        lock(&self.health).clone()
    }

    /// Stops the routing daemon (SIGTERM, SIGKILL after [`STOP_GRACE`]) and the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.requests.send(Request::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A routing daemon the supervision thread started.
struct Running {
    key: RestartKey,
    program: &'static str,
    child: Child,
    ctl: PathBuf,
    log: PathBuf,
    started: Instant,
    /// The control socket answered.
    ready: bool,
    /// braid's state was applied (babeld: interfaces; BIRD: configuration).
    in_step: bool,
    /// babeld: the interfaces it was told about, with the parameters it was told.
    interfaces: BTreeMap<String, String>,
    /// BIRD: the inputs of the configuration it runs.
    inputs: Option<BirdInputs>,
    /// After a failed apply: not before this.
    retry_at: Option<Instant>,
}

/// The supervision thread's state.
struct Supervision {
    shared: Arc<Mutex<EngineHealth>>,
    wanted: Option<Wanted>,
    running: Option<Running>,
    backoff: Backoff,
    restarts: u32,
    error: Option<String>,
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

impl Supervision {
    fn new(shared: Arc<Mutex<EngineHealth>>) -> Self {
        Self {
            shared,
            wanted: None,
            running: None,
            backoff: Backoff::default(),
            restarts: 0,
            error: None,
            kernel: None,
            suspects: Vec::new(),
            missing: Vec::new(),
            last_verify: None,
            last_resync: None,
        }
    }

    fn run(mut self, requests: Receiver<Request>) {
        loop {
            let ready = self.running.as_ref().is_some_and(|r| r.in_step);
            let wait = if ready { SLOW_POLL } else { FAST_POLL };
            match requests.recv_timeout(wait) {
                Ok(Request::Want(wanted)) => self.wanted = *wanted,
                Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    self.stop_running("braid is stopping");
                    self.wanted = None;
                    self.publish();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.step(Instant::now());
            self.publish();
        }
    }

    /// One look: stops a daemon no longer wanted as it runs, notices one that exited,
    /// starts the wanted one (after the backoff), waits for its control socket, and keeps
    /// it in step with braid.
    fn step(&mut self, now: Instant) {
        self.stop_if_unwanted();
        self.notice_exit(now);
        let Some(wanted) = self.wanted.clone() else {
            return;
        };
        if self.ensure_started(&wanted, now) && self.await_ready(now) {
            self.keep_in_step(&wanted, now);
        }
    }

    /// Stops the running daemon when another one (or another configuration, directory or
    /// namespace) is wanted, or none.
    fn stop_if_unwanted(&mut self) {
        let wanted_key = self.wanted.as_ref().map(Wanted::restart_key);
        if let Some(running) = &self.running
            && Some(&running.key) != wanted_key.as_ref()
        {
            let why = if wanted_key.is_some() {
                "its configuration changed"
            } else {
                "routing no longer needs it"
            };
            self.stop_running(why);
            self.backoff = Backoff::default();
            self.error = None;
        }
    }

    /// Notices that the running daemon exited: the error names its last log line, and the
    /// restart waits for the backoff.
    fn notice_exit(&mut self, now: Instant) {
        if let Some(running) = &mut self.running
            && let Ok(Some(status)) = running.child.try_wait()
        {
            let message = format!(
                "{} (pid {}) exited ({status}){}; starting it again",
                running.program,
                running.child.id(),
                last_line(&running.log)
                    .map(|l| format!(", its log ({}) ends: {l}", running.log.display()))
                    .unwrap_or_default()
            );
            tracing::error!("{message}");
            self.error = Some(message);
            self.running = None;
            self.suspects.clear();
            self.missing.clear();
            self.restarts = self.restarts.saturating_add(1);
            self.backoff.failed(now);
            // Shown at once, not only at the end of this step (a start can take a while).
            self.publish();
        }
    }

    /// Starts the wanted daemon unless it runs or the backoff says not yet; whether it runs.
    fn ensure_started(&mut self, wanted: &Wanted, now: Instant) -> bool {
        if self.running.is_none() {
            if !self.backoff.due(now) {
                return false;
            }
            match start(wanted, now) {
                Ok(running) => {
                    self.running = Some(running);
                    self.publish();
                }
                Err(e) => {
                    let message = format!("starting {}: {e}", wanted.program());
                    tracing::error!("{message}");
                    self.error = Some(message);
                    self.backoff.failed(now);
                    return false;
                }
            }
        }
        true
    }

    /// Whether the running daemon's control socket answers; one that has not opened it
    /// within [`START_TIMEOUT`] is stopped (and started again after the backoff).
    fn await_ready(&mut self, now: Instant) -> bool {
        let Some(running) = self.running.as_mut() else {
            return false;
        };
        if !running.ready {
            if std::os::unix::net::UnixStream::connect(&running.ctl).is_ok() {
                running.ready = true;
                tracing::info!(
                    program = running.program,
                    pid = running.child.id(),
                    after_ms = now.duration_since(running.started).as_millis() as u64,
                    "routing daemon ready"
                );
            } else if now.duration_since(running.started) > START_TIMEOUT {
                let message = format!(
                    "{} did not open its control socket {} within {START_TIMEOUT:?}; see {}",
                    running.program,
                    running.ctl.display(),
                    running.log.display()
                );
                tracing::error!("{message}");
                self.stop_running("it did not start");
                self.error = Some(message);
                self.restarts = self.restarts.saturating_add(1);
                self.backoff.failed(now);
                return false;
            } else {
                if self.error.is_none() {
                    self.error = Some(format!("{} is starting", running.program));
                }
                return false;
            }
        }
        true
    }

    /// Brings the ready daemon in step with braid (babeld: interfaces; BIRD: configuration),
    /// retrying after [`APPLY_RETRY`] on error, and compares its routes with the kernel's
    /// every [`VERIFY_INTERVAL`].
    fn keep_in_step(&mut self, wanted: &Wanted, now: Instant) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        if running.retry_at.is_some_and(|t| now < t) {
            return;
        }
        match apply(running, wanted) {
            Ok(()) => {
                running.in_step = true;
                running.retry_at = None;
                self.error = None;
                self.backoff.running(running.started, now);
                if self
                    .last_verify
                    .is_none_or(|t| now.duration_since(t) >= VERIFY_INTERVAL)
                {
                    self.last_verify = Some(now);
                    self.verify(wanted, now);
                }
            }
            Err(e) => {
                if self.error.as_deref() != Some(e.as_str()) {
                    tracing::error!("{e}");
                }
                running.in_step = false;
                running.retry_at = Some(now + APPLY_RETRY);
                self.error = Some(e);
            }
        }
    }

    /// Compares the routes the daemon selected with braid's table in the kernel. A route
    /// missing in two checks in a row (a single check can race the daemon's own changes)
    /// is a problem in the health and an error in the log, naming what holds its place.
    /// babeld believes a route installed even when the kernel refused it (it ignores
    /// "File exists"), and never tries again; once nothing holds the place any more, it
    /// is started again (at most every [`RESYNC_INTERVAL`]) so that it installs the route.
    /// BIRD's kernel protocol re-synchronises by itself.
    fn verify(&mut self, wanted: &Wanted, now: Instant) {
        let Some(running) = self.running.as_ref() else {
            return;
        };
        let program = running.program;
        let (selected, protocol, netns) = match wanted {
            Wanted::Babel { netns, .. } => (
                babel::installed_routes(&running.ctl).map_err(|e| e.to_string()),
                braid_system::routes::RTPROT_BABEL,
                netns,
            ),
            Wanted::Bird { dir, netns, .. } => (
                bird::exported_routes(&bird::Files::in_dir(dir)).map_err(|e| e.to_string()),
                braid_system::routes::RTPROT_BIRD,
                netns,
            ),
        };
        let selected = match selected {
            Ok(selected) => selected,
            Err(e) => {
                tracing::warn!("reading the routes {program} selected: {e}");
                return;
            }
        };
        let kernel = match self.kernel_routes(netns) {
            Ok(kernel) => kernel,
            Err(e) => {
                tracing::warn!("reading braid's routing table: {e}");
                return;
            }
        };
        let found = missing_routes(&selected, &kernel, protocol);
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
        if free_place
            && program == babel::PROGRAM
            && self
                .last_resync
                .is_none_or(|t| now.duration_since(t) >= RESYNC_INTERVAL)
        {
            self.last_resync = Some(now);
            self.restarts = self.restarts.saturating_add(1);
            self.stop_running(
                "routes it believes installed are not in the kernel and nothing holds their \
                 place; starting it again to install them",
            );
        }
    }

    /// Every route in braid's table, read in the daemon's namespace.
    fn kernel_routes(
        &mut self,
        netns: &Option<String>,
    ) -> Result<Vec<braid_system::routes::KernelRoute>, String> {
        if self.kernel.as_ref().is_none_or(|k| &k.netns != netns) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let ns = netns.clone();
            let netlink = runtime
                .block_on(async move { braid_system::Netlink::connect_in(ns.as_deref()) })
                .map_err(|e| e.to_string())?;
            self.kernel = Some(KernelView {
                netns: netns.clone(),
                runtime,
                netlink,
            });
        }
        let Some(view) = self.kernel.as_ref() else {
            return Err("no netlink connection".into());
        };
        let result = view.runtime.block_on(
            view.netlink
                .routes_in_table(braid_system::routes::MESH_TABLE),
        );
        result.map_err(|e| {
            self.kernel = None;
            e.to_string()
        })
    }

    /// Stops the running daemon (if any) and waits for it: SIGTERM, then SIGKILL after
    /// [`STOP_GRACE`].
    fn stop_running(&mut self, why: &str) {
        self.suspects.clear();
        self.missing.clear();
        self.last_verify = None;
        let Some(mut running) = self.running.take() else {
            return;
        };
        tracing::info!(
            program = running.program,
            pid = running.child.id(),
            "stopping the routing daemon: {why}"
        );
        terminate(&mut running.child);
    }

    fn publish(&self) {
        let health = match &self.wanted {
            None => EngineHealth {
                restarts: self.restarts,
                ..EngineHealth::default()
            },
            Some(wanted) => EngineHealth {
                program: Some(wanted.program()),
                pid: self.running.as_ref().map(|r| r.child.id()),
                ready: self.running.as_ref().is_some_and(|r| r.in_step) && self.error.is_none(),
                restarts: self.restarts,
                error: self.error.clone(),
                missing_routes: self.missing.clone(),
            },
        };
        *lock(&self.shared) = health;
    }
}

/// SIGTERM, up to [`STOP_GRACE`] for the child to exit, then SIGKILL; reaps it.
fn terminate(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id())
        && matches!(child.try_wait(), Ok(None))
    {
        // SAFETY: kill on the PID of a child this process started and has not reaped, so
        // the PID cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if matches!(child.try_wait(), Ok(None)) {
        tracing::warn!(
            pid = child.id(),
            "the routing daemon ignored SIGTERM; killing it"
        );
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Writes the daemon's config and starts it (after stopping one an earlier braid left).
fn start(wanted: &Wanted, now: Instant) -> Result<Running, String> {
    let io = |what: &str, path: &Path| {
        let what = format!("{what} {}", path.display());
        move |e: std::io::Error| format!("{what}: {e}")
    };
    let (program, dir, netns) = match wanted {
        Wanted::Babel { dir, netns, .. } => (babel::PROGRAM, dir, netns),
        Wanted::Bird { dir, netns, .. } => (bird::PROGRAM, dir, netns),
    };
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let (conf, ctl, pid, log) = match wanted {
        Wanted::Babel { .. } => {
            let f = babel::Files::in_dir(dir);
            (f.conf, f.ctl, f.pid, f.log)
        }
        Wanted::Bird { .. } => {
            let f = bird::Files::in_dir(dir);
            (f.conf, f.ctl, f.pid, f.log)
        }
    };
    match stop_stale(&pid, program, &conf) {
        Ok(Some(stale)) => tracing::warn!(
            pid = stale,
            "stopped the {program} an earlier braid left running"
        ),
        Ok(None) => {}
        Err(e) => return Err(format!("looking for an earlier {program}: {e}")),
    }
    let _ = std::fs::remove_file(&ctl);
    let text = match wanted {
        Wanted::Babel { config, .. } => config.clone(),
        Wanted::Bird { inputs, .. } => bird::config_text(inputs),
    };
    std::fs::write(&conf, text).map_err(io("writing", &conf))?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(io("opening", &log))?;
    let command = match wanted {
        Wanted::Babel { .. } => babel::command(&babel::Files::in_dir(dir), out),
        Wanted::Bird { .. } => bird::command(&bird::Files::in_dir(dir), out),
    }
    .map_err(io("opening", &log))?;
    let child = spawn_tied(command, netns.as_deref()).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("{program} is not installed (install Debian's package {program})")
        }
        _ => e.to_string(),
    })?;
    tracing::info!(program, pid = child.id(), "routing daemon started");
    Ok(Running {
        key: wanted.restart_key(),
        program,
        child,
        ctl,
        log,
        started: now,
        ready: false,
        in_step: false,
        interfaces: BTreeMap::new(),
        inputs: match wanted {
            Wanted::Bird { inputs, .. } => Some(inputs.clone()),
            Wanted::Babel { .. } => None,
        },
        retry_at: None,
    })
}

/// Brings the running daemon in step with `wanted` (babeld's interfaces; BIRD's config).
fn apply(running: &mut Running, wanted: &Wanted) -> Result<(), String> {
    match wanted {
        Wanted::Babel {
            links,
            link_parameters,
            rxcosts,
            ..
        } => {
            let want = babel::link_interfaces(links, link_parameters, rxcosts);
            let changes = babel::sync_interfaces(&running.ctl, &mut running.interfaces, &want)
                .map_err(|e| e.to_string())?;
            if changes.added + changes.removed + changes.readded > 0 {
                tracing::info!(
                    added = changes.added,
                    removed = changes.removed,
                    readded = changes.readded,
                    "babeld interfaces"
                );
            }
        }
        Wanted::Bird { dir, inputs, .. } => {
            if running.inputs.as_ref() != Some(inputs) {
                bird::configure(&bird::Files::in_dir(dir), inputs).map_err(|e| e.to_string())?;
                tracing::info!("bird reconfigured");
                running.inputs = Some(inputs.clone());
            }
        }
    }
    Ok(())
}

/// The routes of `selected` that `kernel` (braid's table) does not hold as routes of
/// `protocol`, each with the route that holds its place (same destination and source),
/// if any (pure).
pub fn missing_routes(
    selected: &[babel::SelectedRoute],
    kernel: &[braid_system::routes::KernelRoute],
    protocol: u8,
) -> Vec<(
    babel::SelectedRoute,
    Option<braid_system::routes::KernelRoute>,
)> {
    let same = |s: &babel::SelectedRoute, k: &braid_system::routes::KernelRoute| {
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
    holder: Option<&braid_system::routes::KernelRoute>,
) -> String {
    let table = braid_system::routes::MESH_TABLE;
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

/// Spawns `command` tied to this thread's life (the parent-death signal SIGTERM), inside
/// the network namespace `netns` when given (`setns` in the child, before exec).
fn spawn_tied(mut command: Command, netns: Option<&str>) -> std::io::Result<Child> {
    let namespace = match netns {
        Some(name) => Some(
            std::fs::File::open(format!("/run/netns/{name}")).map_err(|e| {
                std::io::Error::new(e.kind(), format!("network namespace {name}: {e}"))
            })?,
        ),
        None => None,
    };
    let fd = namespace.as_ref().map(|f| f.as_raw_fd());
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (setns, prctl, getppid); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if let Some(fd) = fd
                && libc::setns(fd, libc::CLONE_NEWNET) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // braid died between fork and prctl: the signal will not come; do not start.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    command.spawn()
}

/// True when `cmdline` (a process's `/proc/<pid>/cmdline`: arguments separated by NUL) is
/// `program` run with the config file `conf`, which is how braid starts its routing
/// daemons. A zombie's cmdline is empty: not a running daemon.
pub fn started_by_braid(cmdline: &[u8], program: &str, conf: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let mut args = cmdline.split(|b| *b == 0).map(std::ffi::OsStr::from_bytes);
    let Some(first) = args.next() else {
        return false;
    };
    let named = Path::new(first)
        .file_name()
        .is_some_and(|name| name.as_bytes() == program.as_bytes());
    named && args.any(|a| Path::new(a) == conf)
}

fn running_as(pid: i32, program: &str, conf: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| started_by_braid(&cmdline, program, conf))
}

/// Stops a routing daemon an earlier braid left running: the process named by `pid_file`,
/// if `/proc/<pid>/cmdline` shows `program` with the config `conf` (SIGTERM, SIGKILL after
/// [`STOP_GRACE`]). A pid file that names no such process is stale and removed (babeld
/// refuses to start over one). Returns the PID it stopped. Blocks up to about 4 s; the
/// supervision thread and `braid down` call it, never the main loop.
pub fn stop_stale(pid_file: &Path, program: &str, conf: &Path) -> std::io::Result<Option<i32>> {
    let text = match std::fs::read_to_string(pid_file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        other => other?,
    };
    let pid = text.trim().parse::<i32>().ok().filter(|p| *p > 1);
    let Some(pid) = pid.filter(|p| running_as(*p, program, conf)) else {
        remove_if_present(pid_file)?;
        return Ok(None);
    };
    // SAFETY: kill on a PID whose command line was just checked to be braid's daemon.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline && running_as(pid, program, conf) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if running_as(pid, program, conf) {
        // SAFETY: as above, checked again just now.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && running_as(pid, program, conf) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    remove_if_present(pid_file)?;
    Ok(Some(pid))
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The last non-empty line of a log file (its last 4 KiB), for error messages.
fn last_line(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    String::from_utf8_lossy(&bytes)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// Tells the routing daemon's supervisor (started on first need) what is wanted now: the
/// daemon of the routing mode with braid's running links, or none. Never blocks; the
/// supervisor starts, restarts and updates the daemon on its own thread (see [`Supervisor`]).
pub fn supervise_engine<B: LinkBackend>(r: &mut Reconciler<B>) {
    let _ = observe_costs(r, Instant::now());
    let wanted = wanted_engine(r);
    if wanted.is_none() && r.routing().engine().is_none() {
        return;
    }
    if r.routing().engine().is_none() {
        match Supervisor::start() {
            Ok(supervisor) => r.set_engine(supervisor),
            Err(e) => {
                tracing::error!("starting the routing daemon's supervision thread: {e}");
                return;
            }
        }
    }
    if let Some(engine) = r.routing().engine() {
        engine.want(wanted);
    }
}

/// Gives the links' routing costs a look at their loss now (see `routing::cost`), and logs
/// each link whose cost changed.
/// True when one changed (the routing daemon is then to be told: [`supervise_engine`]).
fn observe_costs<B: LinkBackend>(r: &mut Reconciler<B>, now: Instant) -> bool {
    let Some(engine) = r.routing().engine() else {
        return false;
    };
    let before = engine.costs.rxcosts();
    let looks: Vec<(String, Option<f64>)> = r
        .running()
        .map(|name| {
            let loss = r.backend().stats(name).and_then(|s| s.keepalive_loss);
            (name.to_string(), loss)
        })
        .collect();
    let Some(engine) = r.routing_mut().engine_mut() else {
        return false;
    };
    let changed = engine
        .costs
        .observe(now, looks.iter().map(|(n, l)| (n.as_str(), *l)));
    if changed {
        let after = engine.costs.rxcosts();
        for (link, _) in &looks {
            if before.get(link) != after.get(link) {
                let cost = engine.costs.cost(link);
                tracing::info!(
                    link = %link,
                    rxcost = cost.rxcost,
                    loss_percent = cost.loss.map(|l| format!("{:.1}", 100.0 * l)),
                    "link {}: routing cost changed",
                    cost.reason.name()
                );
            }
        }
    }
    changed
}

/// Gives the links' routing costs a look at their loss (at most one sample a second per
/// link, see `cost::SAMPLE_EVERY`), and tells the routing daemon at once when a cost
/// changed. Called on the daemon's link-state watch (every 250 ms), so a lossy link is
/// penalised within a second of the decision, not at the next retry tick.
pub fn follow_costs<B: LinkBackend>(r: &mut Reconciler<B>) {
    if observe_costs(r, Instant::now()) {
        supervise_engine(r);
    }
}

/// Stops routing daemons an earlier braid left running for this config (after a crash),
/// found by their pid files and command lines (see [`stop_stale`]).
pub fn stop_stale_engines(config: &braid_model::Config) {
    let babel = babel::Files::in_dir(&engine_dir(config, "babeld"));
    let bird = bird::Files::in_dir(&engine_dir(config, "bird"));
    for (program, pid, conf) in [
        (babel::PROGRAM, &babel.pid, &babel.conf),
        (bird::PROGRAM, &bird.pid, &bird.conf),
    ] {
        match stop_stale(pid, program, conf) {
            Ok(Some(stale)) => {
                tracing::warn!(
                    pid = stale,
                    "stopped the {program} an earlier braid left running"
                )
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("looking for an earlier {program} ({}): {e}", pid.display()),
        }
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
        let kernel = |d: &str, s: Option<&str>, protocol| braid_system::routes::KernelRoute {
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

    #[test]
    fn backoff_restarts_at_once_then_doubles_up_to_ten_seconds() {
        assert_eq!(Backoff::delay(1), Duration::ZERO);
        assert_eq!(Backoff::delay(2), Duration::from_millis(250));
        assert_eq!(Backoff::delay(3), Duration::from_millis(500));
        assert_eq!(Backoff::delay(30), Backoff::MAX);
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(b.due(t0));
        b.failed(t0);
        assert!(b.due(t0), "the first restart is immediate");
        b.failed(t0);
        assert!(!b.due(t0) && b.due(t0 + Duration::from_millis(250)));
        b.running(t0, t0 + Backoff::STABLE);
        assert_eq!(b, Backoff::default());
    }

    #[test]
    fn recognises_only_braids_daemon_by_program_and_config() {
        let conf = Path::new("/run/braid/babeld/babeld.conf");
        let ours = b"babeld\0-c\0/run/braid/babeld/babeld.conf\0-I\0/run/braid/babeld/babeld.pid\0";
        assert!(started_by_braid(ours, "babeld", conf));
        let full_path = b"/usr/sbin/babeld\0-c\0/run/braid/babeld/babeld.conf\0";
        assert!(started_by_braid(full_path, "babeld", conf));
        // Another babeld, another program with braid's path, a zombie.
        assert!(!started_by_braid(
            b"babeld\0-c\0/etc/babeld.conf\0",
            "babeld",
            conf
        ));
        assert!(!started_by_braid(
            b"vi\0/run/braid/babeld/babeld.conf\0",
            "babeld",
            conf
        ));
        assert!(!started_by_braid(b"", "babeld", conf));
    }

    #[test]
    fn a_stale_pid_file_is_removed_and_a_foreign_process_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("babeld.pid");
        let conf = dir.path().join("babeld.conf");
        // This test process is alive but is not babeld with that config.
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(stop_stale(&pid_file, "babeld", &conf).unwrap(), None);
        assert!(!pid_file.exists());
        std::fs::write(&pid_file, "garbage").unwrap();
        assert_eq!(stop_stale(&pid_file, "babeld", &conf).unwrap(), None);
        assert!(!pid_file.exists());
        assert_eq!(stop_stale(&pid_file, "babeld", &conf).unwrap(), None);
    }

    #[test]
    fn a_stale_daemon_is_stopped() {
        // A stand-in for a daemon an earlier braid left: `tail -f <braid's config path>`
        // with its argv[0] set to `babeld` (bash's exec -a).
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("babeld.conf");
        std::fs::write(&conf, "").unwrap();
        let pid_file = dir.path().join("babeld.pid");
        let mut child = Command::new("bash")
            .arg("-c")
            .arg("exec -a babeld tail -f \"$0\"")
            .arg(&conf)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !running_as(pid, "babeld", &conf) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::write(&pid_file, pid.to_string()).unwrap();
        // It is our child: reap it concurrently so it does not linger as a zombie.
        let reaper = std::thread::spawn(move || child.wait());
        assert_eq!(stop_stale(&pid_file, "babeld", &conf).unwrap(), Some(pid));
        assert!(!pid_file.exists());
        assert!(!reaper.join().unwrap().unwrap().success());
    }
}
