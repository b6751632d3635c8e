//! braid's daemon: composition of the plan, the link backend and the system layer into a
//! reconcile loop, with reload on SIGHUP and on `braid reload`, and a control socket.

pub mod backend;
pub mod cleanup;
pub mod control;
pub mod fds;
pub mod fetch;
pub mod http;
pub mod instance;
pub mod kernel;
pub mod kernel_view;
pub mod liveness;
pub mod load;
pub mod metrics;
pub mod reconciler;
pub mod registry_file;
pub mod routing;
pub mod run;
pub mod status;
pub mod uplinks;
pub mod userspace;
pub mod vrf;
