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
//!
//! The parts, one idea a file:
//! - this file: the handle the main loop holds ([`Supervisor`]);
//! - `wanted`: what the main loop asks for ([`Wanted`]); `health`: what it reads back
//!   ([`EngineHealth`]);
//! - `supervision`: the thread and its state machine (start, wait for the control socket,
//!   keep in step, notice an exit); `backoff`: the restart pacing ([`Backoff`]);
//! - `running`: starting a routing daemon and telling it braid's state;
//! - `verify`: comparing the routes it selected with the kernel's table;
//! - `process`: spawning, stopping and recognising the daemon's process; `pidfd`: waiting
//!   for a process to exit without polling;
//! - `engine` and `link_costs`: what the reconciler calls.

mod backoff;
mod engine;
mod health;
mod link_costs;
mod pidfd;
mod process;
mod running;
mod supervision;
mod verify;
mod wanted;

pub use backoff::Backoff;
pub use engine::{stop_stale_engines, supervise_engine};
pub use health::EngineHealth;
pub use link_costs::follow_costs;
pub use process::{STOP_GRACE, started_by_braid, stop_stale};
pub use supervision::START_TIMEOUT;
pub use verify::{RESYNC_INTERVAL, VERIFY_INTERVAL, describe, missing_routes};
pub use wanted::Wanted;

use super::cost::LinkCosts;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use supervision::Supervision;

/// What the main loop tells the supervision thread.
enum Request {
    /// This routing daemon now (`None`: none).
    Want(Box<Option<Wanted>>),
    /// Stop the routing daemon and end the thread.
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

/// The shared health, even when a panicking holder poisoned the lock (its value is whole:
/// it is only ever replaced).
fn lock(health: &Mutex<EngineHealth>) -> MutexGuard<'_, EngineHealth> {
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
