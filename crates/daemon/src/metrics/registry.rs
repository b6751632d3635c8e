//! The registry: the running version, refusals, and a URL source's fetcher
//! (docs/metrics.md, "Registry").

use super::family::{FloatGauge, labels, series, single};
use crate::status::Status;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The registry's version, refusals and fetcher.
pub(super) fn register(registry: &mut Registry, status: &Status) {
    let r = &status.registry;
    single::<FloatGauge>(
        registry,
        "registry_version_timestamp_seconds",
        "The running registry's version: its signature's timestamp (0: not signed)",
        r.signed_version.unwrap_or(0) as f64,
    );
    series::<Counter>(
        registry,
        "registry_refusals",
        "Registries refused (the running one kept), by reason",
        r.state
            .refusals
            .iter()
            .map(|(reason, n)| (labels(&[("reason", reason)]), *n)),
    );
    single::<FloatGauge>(
        registry,
        "registry_last_refusal_timestamp_seconds",
        "Unix time of the last refused registry (0: none)",
        r.state.last_refusal_at.unwrap_or(0) as f64,
    );
    let Some(fetch) = &r.state.fetch else { return };
    series::<Counter>(
        registry,
        "registry_fetches",
        "Fetches of a registry URL, by result (changed, unchanged, not_modified, refused, failed)",
        fetch
            .results
            .iter()
            .map(|(result, n)| (labels(&[("result", result)]), *n)),
    );
    single::<Gauge>(
        registry,
        "registry_fetch_success",
        "1 when the last fetch of the registry URL reached it and found a good or unchanged registry",
        i64::from(fetch.last_attempt_at.is_some() && fetch.consecutive_failures == 0),
    );
    single::<FloatGauge>(
        registry,
        "registry_last_fetch_success_timestamp_seconds",
        "Unix time of the last successful fetch (0: none since start)",
        fetch.last_success_at.unwrap_or(0) as f64,
    );
}
