//! Workloads: a namespace per node standing for its containers and VMs, attached with a veth
//! pair to the node's bridge (which braid creates), addressed from the node's /64 and /24
//! of the lab's address plan, with default routes to the node.

use crate::command::ip;
use crate::lab::Lab;
use crate::{LabError, namespace_prefix};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The bridge braid makes on a node whose config has an address plan (docs/config.md).
pub const BRIDGE: &str = "braid0";

/// A workload's addresses: `<node /64>::100` and `10.<hi>.<lo>.100`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadAddrs {
    /// From the node's /64: `2001:db8:bd00:<i>::100`.
    pub v6: Ipv6Addr,
    /// From the node's /24: `10.<i / 256>.<i % 256>.100`.
    pub v4: Ipv4Addr,
}

/// Which workloads reach which: `v6[i-1][j-1]` / `v4[i-1][j-1]` is true when node i's
/// workload got an answer from node j's (the diagonal is true).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    /// Over IPv6.
    pub v6: Vec<Vec<bool>>,
    /// Over IPv4.
    pub v4: Vec<Vec<bool>>,
}

impl Matrix {
    /// True when every workload reached every other over both families.
    pub fn all(&self) -> bool {
        self.v6.iter().chain(&self.v4).flatten().all(|&ok| ok)
    }

    /// The matrix as text, one row per source workload: `ok` or `--` per family
    /// (`v6/v4`), `-` on the diagonal.
    pub fn render(&self) -> String {
        let n = self.v6.len();
        let mut out = format!("{:<6}", "from");
        for j in 1..=n {
            out.push_str(&format!("{:>8}", format!("w{j}")));
        }
        out.push('\n');
        let mark = |ok: bool| if ok { "ok" } else { "--" };
        for i in 0..n {
            out.push_str(&format!("{:<6}", format!("w{}", i + 1)));
            for j in 0..n {
                let cell = if i == j {
                    "-".to_string()
                } else {
                    format!("{}/{}", mark(self.v6[i][j]), mark(self.v4[i][j]))
                };
                out.push_str(&format!("{cell:>8}"));
            }
            out.push('\n');
        }
        out
    }
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

    /// Waits until node `i` has the bridge `bridge` (braid made its node network), up to
    /// `timeout`.
    pub fn wait_for_bridge(
        &self,
        i: usize,
        bridge: &str,
        timeout: std::time::Duration,
    ) -> Result<(), LabError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self
                .try_exec(i, "ip", &["link", "show", bridge])
                .is_ok_and(|o| o.status.success())
            {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(LabError::Topology(format!(
                    "n{i} has no bridge {bridge} after {} s: braid makes it when the config has an address plan; see n{i}'s braid.log",
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Pings every workload from every other, IPv6 and IPv4, all at once (one ping each,
    /// `timeout_s` seconds to answer).
    pub fn workload_matrix(&self, timeout_s: u32) -> Matrix {
        let n = self.nodes();
        let wait = timeout_s.max(1).to_string();
        let ping = |i: usize, to: String| {
            let ns = self.workload_ns(i);
            crate::command::run_unchecked(
                "ip",
                &[
                    "netns", "exec", &ns, "ping", "-n", "-c", "1", "-W", &wait, &to,
                ],
            )
            .is_ok_and(|o| o.status.success())
        };
        let mut v6 = vec![vec![true; n]; n];
        let mut v4 = vec![vec![true; n]; n];
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for i in 1..=n {
                for j in (1..=n).filter(|&j| j != i) {
                    let to = workload_addrs(j);
                    let (a, b) = (to.v6.to_string(), to.v4.to_string());
                    let ping = &ping;
                    handles.push((i, j, scope.spawn(move || (ping(i, a), ping(i, b)))));
                }
            }
            for (i, j, h) in handles {
                let (ok6, ok4) = h.join().unwrap_or((false, false));
                v6[i - 1][j - 1] = ok6;
                v4[i - 1][j - 1] = ok4;
            }
        });
        Matrix { v6, v4 }
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
