//! braid-bond: the pure core of multi-path bonding (see docs/bonding.md).
pub mod bond;
pub mod flow_hash;
pub mod loss;
pub mod path;
pub mod probe;
pub mod prober;
pub mod rate;
pub mod reorder;
pub mod rtt;
pub mod scheduler;
pub mod status;
pub mod wg;
pub mod window;

pub use bond::{Bond, BondConfig, BondError, Event, ReorderMode, Transmit};
pub use path::{Counters, DownReason, PathId, PathSpec, PathState};
pub use probe::{ProbeKeys, is_probe};
pub use prober::{ProbeCounters, ProbeDrop};
pub use reorder::{Released, ReorderConfig, Verdict};
pub use scheduler::{MAX_PATHS, Picks, Scheduler};
pub use status::{BondStatus, PathStatus, ReorderStatus};
