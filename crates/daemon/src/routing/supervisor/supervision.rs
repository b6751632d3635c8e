//! The supervision thread and its state machine: each look ([`Supervision::step`]) stops a
//! daemon no longer wanted, notices one that exited, starts the wanted one (after the
//! [`Backoff`]), waits for its control socket and keeps it in step with braid.

use super::backoff::Backoff;
use super::health::EngineHealth;
use super::process::terminate;
use super::running::{Running, start};
use super::verify::RouteCheck;
use super::wanted::Wanted;
use super::{Request, lock};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a routing daemon may take to open its control socket before it counts as
/// failed (and is killed and started again).
pub const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the supervision thread looks while a daemon starts or waits for a restart.
const FAST_POLL: Duration = Duration::from_millis(50);
/// How often it looks while the daemon runs (exit, and applying braid's state again after
/// an error).
const SLOW_POLL: Duration = Duration::from_millis(250);
/// After a failed attempt to bring the daemon in step with braid, the next try.
const APPLY_RETRY: Duration = Duration::from_secs(1);

/// The supervision thread's state.
pub(super) struct Supervision {
    /// Where the health is published for [`super::Supervisor::health`].
    shared: Arc<Mutex<EngineHealth>>,
    wanted: Option<Wanted>,
    running: Option<Running>,
    backoff: Backoff,
    restarts: u32,
    error: Option<String>,
    /// The daemon's routes compared with the kernel's.
    routes: RouteCheck,
}

impl Supervision {
    pub(super) fn new(shared: Arc<Mutex<EngineHealth>>) -> Self {
        Self {
            shared,
            wanted: None,
            running: None,
            backoff: Backoff::default(),
            restarts: 0,
            error: None,
            routes: RouteCheck::default(),
        }
    }

    /// The thread's loop: takes the main loop's requests, or, when none came within the
    /// poll interval, looks again; ends (the daemon stopped) on [`Request::Stop`] or when
    /// the handle is gone. The wait is the channel's timed receive: a request wakes it at
    /// once.
    pub(super) fn run(mut self, requests: Receiver<Request>) {
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
                running
                    .last_log_line()
                    .map(|l| format!(", its log ({}) ends: {l}", running.log.display()))
                    .unwrap_or_default()
            );
            tracing::error!("{message}");
            self.error = Some(message);
            self.running = None;
            self.routes.forget();
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
        if running.ready {
            return true;
        }
        if std::os::unix::net::UnixStream::connect(&running.ctl).is_ok() {
            running.ready = true;
            tracing::info!(
                program = running.program,
                pid = running.child.id(),
                after_ms = now.duration_since(running.started).as_millis() as u64,
                "routing daemon ready"
            );
            return true;
        }
        if now.duration_since(running.started) > START_TIMEOUT {
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
        } else if self.error.is_none() {
            self.error = Some(format!("{} is starting", running.program));
        }
        false
    }

    /// Brings the ready daemon in step with braid (babeld: interfaces; BIRD: configuration),
    /// retrying after [`APPLY_RETRY`] on error, and compares its routes with the kernel's
    /// (see [`RouteCheck`]).
    fn keep_in_step(&mut self, wanted: &Wanted, now: Instant) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        if running.retry_at.is_some_and(|t| now < t) {
            return;
        }
        match running.apply(wanted) {
            Ok(()) => {
                running.in_step = true;
                running.retry_at = None;
                self.error = None;
                self.backoff.running(running.started, now);
                if self.routes.due(now) {
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

    /// Compares the daemon's routes with the kernel's, and starts babeld again when that
    /// says so (see `RouteCheck::verify`).
    fn verify(&mut self, wanted: &Wanted, now: Instant) {
        let Some(running) = self.running.as_ref() else {
            return;
        };
        if self.routes.verify(running, wanted, now) {
            self.restarts = self.restarts.saturating_add(1);
            self.stop_running(
                "routes it believes installed are not in the kernel and nothing holds their \
                 place; starting it again to install them",
            );
        }
    }

    /// Stops the running daemon (if any) and waits for it: SIGTERM, then SIGKILL after
    /// [`super::STOP_GRACE`].
    fn stop_running(&mut self, why: &str) {
        self.routes.reset();
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

    /// Shares the health as of now (for [`super::Supervisor::health`]).
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
                missing_routes: self.routes.missing().to_vec(),
            },
        };
        *lock(&self.shared) = health;
    }
}
