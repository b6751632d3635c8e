//! Workloads: a namespace per node standing for its containers and VMs, attached with a veth
//! pair to the node's bridge (which braid creates), addressed from the node's /64 and /24
//! of the lab's address plan, with default routes to the node.

use crate::command::ip;
use crate::lab::Lab;
use crate::{LabError, namespace_prefix};
use std::net::{Ipv4Addr, Ipv6Addr};

/// A workload's addresses: `<node /64>::100` and `10.<hi>.<lo>.100`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadAddrs {
    /// `<node /64>::100`.
    pub v6: Ipv6Addr,
    /// `10.<hi>.<lo>.100`.
    pub v4: Ipv4Addr,
}

/// The workload addresses of node `i` in the lab plan (2001:db8:bd00::/48, 10.0.0.0/8).
pub fn workload_addrs(i: usize) -> WorkloadAddrs {
    let i = i as u16;
    WorkloadAddrs {
        v6: Ipv6Addr::new(0x2001, 0xdb8, 0xbd00, i, 0, 0, 0, 0x100),
        v4: Ipv4Addr::new(10, (i >> 8) as u8, i as u8, 100),
    }
}

impl Lab {
    /// Namespace name of node `i`'s workload.
    pub fn workload_ns(&self, i: usize) -> String {
        format!("{}w{i}", namespace_prefix(self.name()))
    }

    /// Creates node `i`'s workload, attached to `bridge` in the node's namespace. The bridge
    /// must exist (braid makes it when the config has an address plan).
    pub fn add_workload(&self, i: usize, bridge: &str) -> Result<WorkloadAddrs, LabError> {
        let (node, wl) = (self.ns(i), self.workload_ns(i));
        let addrs = workload_addrs(i);
        let gw6 = Ipv6Addr::new(0x2001, 0xdb8, 0xbd00, i as u16, 0, 0, 0, 1);
        let gw4 = Ipv4Addr::new(10, (i >> 8) as u8, i as u8, 254);
        ip(&["netns", "add", &wl])?;
        ip(&["-n", &wl, "link", "set", "lo", "up"])?;
        ip(&[
            "link", "add", "wl0", "netns", &node, "type", "veth", "peer", "name", "eth0", "netns",
            &wl,
        ])?;
        ip(&["-n", &node, "link", "set", "wl0", "master", bridge, "up"])?;
        ip(&[
            "-n",
            &wl,
            "addr",
            "add",
            &format!("{}/64", addrs.v6),
            "dev",
            "eth0",
            "nodad",
        ])?;
        ip(&[
            "-n",
            &wl,
            "addr",
            "add",
            &format!("{}/24", addrs.v4),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &wl, "link", "set", "eth0", "up"])?;
        ip(&[
            "-n",
            &wl,
            "route",
            "add",
            "default",
            "via",
            &gw6.to_string(),
        ])?;
        ip(&[
            "-n",
            &wl,
            "route",
            "add",
            "default",
            "via",
            &gw4.to_string(),
        ])?;
        Ok(addrs)
    }

    /// True when node `from`'s workload can ping `to` within two seconds.
    pub fn workload_ping(&self, from: usize, to: &str) -> bool {
        ip(&[
            "netns",
            "exec",
            &self.workload_ns(from),
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            to,
        ])
        .is_ok()
    }
}
