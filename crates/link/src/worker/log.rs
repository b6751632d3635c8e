//! The link's log lines: one per change of state the engine reports (never per packet),
//! each naming the link and its peer.

use crate::output::Output;
use base64::Engine as _;
use braid_engine::{Engine, Event, Rejection};

/// A public key as `wg` prints it.
pub(super) fn key_b64(key: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// A path's name: its interface or source for a configured path (the socket of `slot`),
/// else its number.
pub(super) fn path_label(out: &Output, slot: Option<u8>, id: u64) -> String {
    slot.and_then(|slot| out.paths.get(usize::from(slot)))
        .map_or_else(|| id.to_string(), |p| p.label.clone())
}

pub(super) fn event(link: &str, peer: &str, out: &Output, engine: &Engine, event: Event) {
    let label = |id: braid_bond::PathId| path_label(out, engine.path_slot(id), u64::from(id.0));
    let (link, peer) = (tracing::field::display(link), tracing::field::display(peer));
    use braid_bond::Event as Path;
    match event {
        Event::EndpointChanged {
            endpoint,
            suppressed,
        } => {
            tracing::info!(link, peer, %endpoint, earlier_changes_not_logged = suppressed, "peer endpoint")
        }
        Event::HandshakeCompleted => tracing::debug!(link, peer, "handshake completed"),
        Event::HandshakeRejected {
            from,
            reason,
            suppressed,
        } => {
            let why = match reason {
                Rejection::OldTimestamp => {
                    "its timestamp is not newer than the last one taken (a replay, or the peer restarted with its clock behind)"
                }
                Rejection::WrongKey => "it is not from this link's peer key",
                Rejection::Invalid => "it is malformed or does not verify",
            };
            tracing::warn!(link, peer, %from, earlier_refusals_not_logged = suppressed, "refused a handshake initiation: {why}")
        }
        Event::PeerBonds { from } => {
            tracing::info!(link, peer, %from, "the peer bonds paths: following")
        }
        Event::PeerUnbonded { from } => {
            tracing::info!(link, peer, %from, "the peer's paths changed: following anew")
        }
        Event::Dead => tracing::warn!(
            link,
            peer,
            "every path is down: retrying the handshake every second"
        ),
        Event::Alive => tracing::info!(link, peer, "a path answers again"),
        Event::Path(Path::PathUp(id)) => {
            tracing::info!(link, peer, path = %label(id), "path up")
        }
        Event::Path(Path::PathDown(id, reason)) => {
            tracing::warn!(link, peer, path = %label(id), ?reason, "path down")
        }
        Event::Path(Path::PathLearned(id, addr)) => {
            tracing::info!(link, peer, path = %id, %addr, "path learned")
        }
        Event::Path(Path::PathForgotten(id)) => {
            tracing::info!(link, peer, path = %id, "path forgotten")
        }
    }
}
