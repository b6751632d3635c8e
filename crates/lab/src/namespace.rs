//! The lab's network namespaces: their names, creating one node, and removing a lab's
//! namespaces (with the veths and processes inside them).

use crate::LabError;
use crate::command::{in_netns, ip, namespaces};

/// The prefix of every namespace braid creates.
pub const BRAID_PREFIX: &str = "brd-";

/// The prefix of every namespace of the lab `name`: `brd-<name>-`.
pub fn namespace_prefix(name: &str) -> String {
    format!("{BRAID_PREFIX}{name}-")
}

/// The namespace of node `i` (1-based) of the lab `name`: `brd-<name>-n<i>`.
pub fn namespace_name(name: &str, i: usize) -> String {
    format!("{}n{i}", namespace_prefix(name))
}

/// Kernel settings of every node: forwarding on (for routing tests), duplicate address
/// detection off (addresses work at once), reverse-path filtering off (routed tests send
/// asymmetric traffic).
const SYSCTLS: &[&str] = &[
    "net.ipv4.ip_forward=1",
    "net.ipv6.conf.all.forwarding=1",
    "net.ipv6.conf.default.forwarding=1",
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
];

/// Creates the namespace `ns` with loopback up and the lab's sysctls. Interfaces made
/// afterwards inherit the `default` settings.
pub(crate) fn create(ns: &str) -> Result<(), LabError> {
    ip(&["netns", "add", ns])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    let mut args = vec!["-q", "-w"];
    args.extend_from_slice(SYSCTLS);
    in_netns(ns, "sysctl", &args)?;
    Ok(())
}

/// Removes the namespaces of the lab `name` (every namespace named `brd-<name>-*`), or of
/// every braid lab when `None` (`brd-*`), after killing the processes still inside them.
/// Deleting a namespace destroys its veths. Nothing else is touched. Used after a run
/// that was killed before its [`crate::Lab`] could drop.
pub fn cleanup(name: Option<&str>) -> Result<(), LabError> {
    let prefix = name.map_or_else(|| BRAID_PREFIX.to_string(), namespace_prefix);
    let mut first_error = None;
    for ns in namespaces()?
        .into_iter()
        .filter(|ns| ns.starts_with(&prefix))
    {
        tracing::info!(namespace = %ns, "lab: removing namespace");
        kill_processes_in(&ns);
        if let Err(e) = ip(&["netns", "del", &ns]) {
            tracing::warn!(namespace = %ns, "lab: {e}");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Ends the processes still running in a lab namespace (a killed run's daemons), by PID.
fn kill_processes_in(ns: &str) {
    let Ok(out) = ip(&["netns", "pids", ns]) else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter(|&p| p > 1)
    {
        tracing::info!(namespace = %ns, pid, "lab: killing leftover process");
        // SAFETY: kill has no memory-safety preconditions; the PID is one that
        // `ip netns pids` reports inside a braid lab namespace.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}
