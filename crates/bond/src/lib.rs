//! braid-bond: the pure core of multi-path bonding (see docs/bonding.md).

pub mod flow_hash;
pub mod loss;
pub mod path;
pub mod probe;
pub(crate) mod prober;
pub mod rate;
pub mod reorder;
pub mod rtt;
pub mod scheduler;

pub use path::{Counters, DownReason, PathId, PathSpec, PathState};
pub use scheduler::{MAX_PATHS, Picks, Scheduler};
