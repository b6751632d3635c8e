//! Status of a bonded link, as it appears in `braid status` JSON.

use crate::arrival::Excluded;
use crate::path::{Counters, DownReason, PathId, PathState};
use crate::prober::ProbeCounters;
use crate::reorder::ReorderCounters;
use crate::scheduler::Scheduler;
use std::net::SocketAddr;
use std::sync::Mutex;

/// One path of a bonded link (docs/status-json.md, `bond.paths`; docs/metrics.md).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PathStatus {
    /// This side's number for the path (0, 1, … in configured order).
    pub id: PathId,
    /// What people call the path: its uplink (interface or source) for a configured path,
    /// the peer's address for a learned one. The bond knows only `pathN` and the address;
    /// the link names configured paths after their uplinks.
    #[serde(default)] // added since version 1 of the document (docs/status-json.md)
    pub name: String,
    /// The identity both ends use for this path (the configured side's id).
    pub key: u32,
    /// "configured" or "learned".
    #[serde(deserialize_with = "static_word")]
    pub origin: Word,
    /// The peer's address, for a learned path.
    pub peer: Option<SocketAddr>,
    /// Whether the path is probing, up or down.
    pub state: PathState,
    /// Why the path is down; `None` unless it is.
    pub down_reason: Option<DownReason>,
    /// Smoothed round-trip time from probes (RFC 6298 SRTT), ms.
    pub rtt_ms: Option<f64>,
    /// Smallest round-trip time of the last 10 s, ms.
    pub min_rtt_ms: Option<f64>,
    /// Round-trip jitter (RFC 3550 style), ms.
    #[serde(deserialize_with = "number_or_nan")]
    pub jitter_ms: f64,
    /// Probe loss over the last 128 probes since the path's first answer, 0..=1 (0 before
    /// any answer: see `loss_samples`).
    #[serde(deserialize_with = "number_or_nan")]
    pub loss: f64,
    /// How many probe outcomes `loss` rests on (0: no probe answered yet).
    #[serde(default)] // added since version 1 of the document (docs/status-json.md)
    pub loss_samples: u32,
    /// Data loss from the peer's received counters (smoothed), 0..=1.
    #[serde(deserialize_with = "number_or_nan")]
    pub data_loss: f64,
    /// What the peer received from this path, bit/s, over the last sample.
    #[serde(deserialize_with = "number_or_nan")]
    pub delivery_rate_bps: f64,
    /// What this side sent on the path over the last probe interval, bit/s.
    #[serde(deserialize_with = "number_or_nan")]
    #[serde(default)] // added since version 1 of the document (docs/status-json.md)
    pub sent_bps: f64,
    /// This path's share of what the link sent over the last probe interval, 0..=1 (0 for a
    /// path that is down).
    #[serde(deserialize_with = "number_or_nan")]
    #[serde(default)] // added since version 1 of the document (docs/status-json.md)
    pub share: f64,
    /// The path's capacity once a sample found its bottleneck (a queue or heavy loss),
    /// bit/s; `None` before: a path that never carried enough to fill it has no measured
    /// capacity.
    pub capacity_bps: Option<f64>,
    /// At least this, bit/s: the largest delivery rate seen recently with the probing
    /// gain, never below 128 kbit/s (the weighted scheduler's weight when none is set);
    /// the capacity once measured. `None` before any traffic.
    pub capacity_lower_bound_bps: Option<f64>,
    /// The rate `earliest-arrival` drains the path's queue at, bit/s: the capacity, else
    /// the slowest measured path's (10 Mbit/s if none), capped at the rate cap.
    #[serde(deserialize_with = "number_or_nan")]
    pub rate_bps: f64,
    /// Bytes sent and not yet drained at `rate_bps`, as time (ms).
    #[serde(deserialize_with = "number_or_nan")]
    pub queue_ms: f64,
    /// One-way delay toward the peer above the fastest path's (base delays over 10 s), ms.
    pub send_delay_ms: Option<f64>,
    /// Jitter of the one-way delay toward the peer (RFC 3550 style), ms.
    #[serde(deserialize_with = "number_or_nan")]
    pub send_jitter_ms: f64,
    /// One-way delay from the peer above the fastest path's, ms.
    pub receive_delay_ms: Option<f64>,
    /// One-way loss toward the peer over about the last 4000 packets, 0..=1.
    #[serde(deserialize_with = "number_or_nan")]
    pub send_loss: f64,
    /// How much later than on the best path a 1400-byte packet sent now would arrive on
    /// this one, as `earliest-arrival` expects (queue, rate and delay), ms; live paths.
    pub arrival_ms: Option<f64>,
    /// `earliest-arrival` sends each packet twice on this path (it is lossy).
    pub repeating: bool,
    /// Why `earliest-arrival` leaves this live path out while a better one is up.
    pub excluded: Option<Excluded>,
    /// The configured weight for the weighted scheduler; `None`: measured.
    pub weight: Option<u32>,
    /// The configured priority for the backup scheduler; lower is preferred.
    pub priority: u32,
    /// The configured rate cap (`rate_mbit`), bit/s.
    pub rate_cap_bps: Option<u64>,
    /// Packets and bytes sent and received on the path (flattened into the object).
    #[serde(flatten)]
    pub counters: Counters,
    /// Milliseconds since the last probe answer.
    pub last_probe_answer_ms_ago: Option<f64>,
    /// Milliseconds since the last probe request sent.
    pub last_probe_sent_ms_ago: Option<f64>,
}

/// The receive side's reorder buffer, shared by all paths of a link.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ReorderStatus {
    /// Whether packets are put back in order (the peer spreads one flow over paths).
    pub enabled: bool,
    /// How long a gap is waited for now, ms (from the paths' delay spread).
    #[serde(deserialize_with = "number_or_nan")]
    pub wait_ms: f64,
    /// The largest reordering the buffer saw recently (halving every 10 s), ms: how
    /// long filled gaps were waited for and how late packets after a skipped gap came.
    #[serde(deserialize_with = "number_or_nan")]
    pub observed_ms: f64,
    /// Packets waiting now.
    pub buffered: usize,
    /// The buffer's counters (flattened into the object).
    #[serde(flatten)]
    pub counters: ReorderCounters,
}

/// A bonded link's scheduler, reorder buffer, probes and paths.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BondStatus {
    /// The scheduler in use for sending.
    pub scheduler: Scheduler,
    /// "configured", "peer" (the far side follows the configured side) or "default".
    #[serde(deserialize_with = "static_word")]
    pub scheduler_source: Word,
    /// Whether the peer answers probes (false: plain WireGuard, one path at a time).
    pub peer_probes: bool,
    /// The reorder buffer.
    pub reorder: ReorderStatus,
    /// Probes sent, accepted and refused.
    pub probes: ProbeCounters,
    /// Every path, configured ones first.
    pub paths: Vec<PathStatus>,
}

/// One of the status document's fixed words (a state, an origin, a source), as braid
/// writes it. A type alias, not `&'static str` spelled out, because serde's derive takes a
/// field spelled `&str` for one borrowed from the input, which would tie the whole document
/// to `'static` input; such fields are read with [`static_word`] instead.
pub type Word = &'static str;

/// Deserializes one of the status document's fixed words (`origin`, `scheduler_source`, a
/// link's `state`, ...) into the `&'static str` its field holds when braid builds the
/// document. Each word is kept once for the process (read again, it is the same one), so
/// `braid status --watch` does not grow; a document from another braid version may bring
/// words this build does not know: at most [`MAX_WORDS`] distinct words of at most
/// [`MAX_WORD_LEN`] bytes are kept, beyond them a word reads as `"?"`.
pub fn static_word<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let word: String = serde::Deserialize::deserialize(d)?;
    Ok(intern(word))
}

/// As [`static_word`], for an optional word (null or absent: `None`; give the field
/// `#[serde(default)]`).
pub fn static_word_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<&'static str>, D::Error> {
    let word: Option<String> = serde::Deserialize::deserialize(d)?;
    Ok(word.map(intern))
}

/// The most distinct words [`static_word`] keeps for the process.
pub const MAX_WORDS: usize = 256;
/// The longest word [`static_word`] keeps, bytes.
pub const MAX_WORD_LEN: usize = 64;

fn intern(word: String) -> &'static str {
    static WORDS: Mutex<std::collections::BTreeSet<&'static str>> =
        Mutex::new(std::collections::BTreeSet::new());
    let mut words = WORDS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = words.get(word.as_str()) {
        return known;
    }
    if words.len() >= MAX_WORDS || word.len() > MAX_WORD_LEN {
        return "?";
    }
    let kept: &'static str = Box::leak(word.into_boxed_str());
    words.insert(kept);
    kept
}

/// Deserializes a number that serde_json wrote as `null` because it was not finite (NaN
/// or an infinity): null reads as NaN, so a document reads back as it was written.
pub fn number_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let n: Option<f64> = serde::Deserialize::deserialize(d)?;
    Ok(n.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_kept_once_and_bounded() {
        let read = |json: &str| static_word(&mut serde_json::Deserializer::from_str(json)).unwrap();
        let first = read("\"configured-test\"");
        assert_eq!(first, "configured-test");
        assert!(std::ptr::eq(first, read("\"configured-test\"")));
        let long = format!("\"{}\"", "x".repeat(MAX_WORD_LEN + 1));
        assert_eq!(read(&long), "?");
    }

    #[test]
    fn a_number_written_as_null_reads_as_nan() {
        let n = number_or_nan(&mut serde_json::Deserializer::from_str("null")).unwrap();
        assert!(n.is_nan());
        let n = number_or_nan(&mut serde_json::Deserializer::from_str("0.25")).unwrap();
        assert_eq!(n, 0.25);
    }
}
