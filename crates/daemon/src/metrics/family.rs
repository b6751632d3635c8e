//! What the metric files share: label sets, the three kinds of sample, and registering a
//! family from `(labels, value)` pairs or a single unlabelled value.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};
use std::sync::atomic::AtomicU64;

/// A series' labels, in the order they are exposed.
pub(super) type Labels = Vec<(String, String)>;
/// A gauge of `f64` (seconds, ratios, rates).
pub(super) type FloatGauge = Gauge<f64, AtomicU64>;

/// A family read from each row of a table: its name (after `braid_`), its help text, and
/// a row's value.
pub(super) type Spec<T, V> = (&'static str, &'static str, fn(&T) -> V);

/// Labels from `(name, value)` pairs.
pub(super) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `base` with one more label.
pub(super) fn with(base: &Labels, name: &str, value: &str) -> Labels {
    let mut l = base.clone();
    l.push((name.into(), value.into()));
    l
}

/// A kind of sample and the value it takes: a counter adds, a gauge is set.
pub(super) trait Sample: Default + Metric {
    /// The value of one sample.
    type Value;
    /// Records `value`.
    fn put(&self, value: Self::Value);
}

impl Sample for Counter {
    type Value = u64;
    fn put(&self, value: u64) {
        self.inc_by(value);
    }
}

impl Sample for Gauge {
    type Value = i64;
    fn put(&self, value: i64) {
        self.set(value);
    }
}

impl Sample for FloatGauge {
    type Value = f64;
    fn put(&self, value: f64) {
        self.set(value);
    }
}

/// Registers the family `name` (after `braid_`) with one sample per `(labels, value)`.
pub(super) fn series<M: Sample>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, M::Value)>,
) where
    Family<Labels, M>: Metric,
{
    let family = Family::<Labels, M>::default();
    for (labels, value) in samples {
        family.get_or_create(&labels).put(value);
    }
    registry.register(name, help, family);
}

/// Registers the unlabelled metric `name` (after `braid_`) with `value`.
pub(super) fn single<M: Sample>(registry: &mut Registry, name: &str, help: &str, value: M::Value) {
    let metric = M::default();
    metric.put(value);
    registry.register(name, help, metric);
}

/// A count as a gauge's value (saturating).
pub(super) fn int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}
