//! The lab: a mesh of N nodes on one machine, each a network namespace, joined by veth
//! pairs (a full mesh, so every pair can be shaped, made lossy or cut on its own). Used by
//! `braid lab`, the integration tests and the benchmarks. With uplinks
//! ([`LabSpec::with_wans`]) the nodes instead reach each other through a hub namespace,
//! the "internet", over one veth per uplink, each shaped on its own (see [`wans`]), and
//! each direction of an uplink can behave like a real line (rate, delay, jitter, loss,
//! bursty loss, queue, outages) through the impairment forwarder (see [`impair`]).
//! `braid lab up`'s main job and the routing tests add workloads on the nodes' bridges
//! ([`workload`]), an exit's upstream router and internet host ([`exit`]), and measure how
//! long workload traffic stops when the underlay between two nodes is cut ([`failover`]).
//!
//! It drives `ip`, `tc` and `nft` (a failing command becomes a [`LabError`] naming it,
//! with its stderr). Everything it makes lives in namespaces named `brd-<lab>-n<i>`
//! (and `brd-<lab>-hub`); nothing is created in the caller's namespace. A [`Lab`] removes its namespaces and
//! processes when it drops, also while a test panics; [`cleanup`] removes what a killed
//! run left behind.
//!
//! ```no_run
//! use braid_lab::{Lab, LabSpec, LinkShape};
//! let lab = Lab::up(LabSpec::new("demo", 3))?;
//! assert!(lab.ping(1, &lab.addrs(2).v4.to_string()));
//! lab.shape(1, 3, LinkShape { rate_mbit: Some(100), loss_percent: Some(1) })?;
//! lab.cut(2, 3)?;
//! lab.down()?;
//!
//! // n1 with two uplinks (wan0, wan1), n2 with one, all through `brd-wdemo-hub`.
//! let lab = Lab::up(LabSpec::new("wdemo", 2).with_wans(&[2, 1]))?;
//! lab.shape_wan(1, 1, LinkShape { rate_mbit: Some(100), loss_percent: None })?;
//! lab.cut_wan(1, 0)?;
//! lab.restore_wan(1, 0)?;
//! # Ok::<(), braid_lab::LabError>(())
//! ```

mod children;
pub mod command;
pub mod configs;
mod error;
pub mod exit;
pub mod failover;
pub mod impair;
mod lab;
pub mod namespace;
pub mod shaping;
pub mod underlay;
pub mod wans;
pub mod workload;

pub use configs::{ConfigOptions, NodeFiles, write_configs};
pub use error::LabError;
pub use exit::{INTERNET_HOST, exit_config};
pub use failover::Failover;
pub use impair::{Impairer, Profile, WanImpairment, WanShape};
pub use lab::{Lab, LabSpec, MAX_NODES};
pub use namespace::{cleanup, namespace_name, namespace_prefix};
pub use shaping::LinkShape;
pub use underlay::{NodeAddrs, node_addrs};
pub use wans::{
    INTERNET_V4, INTERNET_V6, MAX_WANS, hub_name, impair_queue, parse_wans, wan_addrs, wan_gateway,
    wan_iface, wan_table,
};
pub use workload::{BRIDGE, Matrix, WorkloadAddrs, workload_addrs};

/// True when this process can build a lab: it runs as root and `ip netns` works.
pub fn available() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    root && command::ip(&["netns", "list"]).is_ok()
}

/// For tests: `true` when the lab can run; otherwise prints a loud `SKIPPED` line to
/// stderr and returns `false`.
pub fn available_or_skip(test: &str) -> bool {
    let ok = available();
    if !ok {
        eprintln!(
            "\n*** SKIPPED {test}: lab tests need root and network namespaces (iproute2 `ip netns`) ***\n"
        );
    }
    ok
}
