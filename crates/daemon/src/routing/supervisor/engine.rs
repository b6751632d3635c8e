//! What the reconciler calls to have its routing daemon: tell the supervisor which one
//! ([`supervise_engine`]), and stop one an earlier braid left ([`stop_stale_engines`]).

use super::super::decide::{engine_dir, wanted_engine};
use super::super::{babel, bird};
use super::Supervisor;
use super::link_costs::observe_costs;
use super::process::stop_stale;
use crate::backend::LinkBackend;
use crate::reconciler::Reconciler;
use std::time::Instant;

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
