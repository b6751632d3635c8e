//! An exit's outside world: an upstream router namespace and an "internet" namespace beyond
//! it, the way an exit node's provider router and a host on the internet stand.
//!
//! ```text
//!   node <exit> --up0 ===== r0-- brd-<lab>-r --r1 ===== eth0-- brd-<lab>-i
//!     2001:db8:ff::2/64      2001:db8:ff::1   2001:db8:fe::1     2001:db8:fe::2
//!     198.51.100.2/24        198.51.100.1     192.0.2.1/24       192.0.2.2
//! ```
//!
//! The router forwards both families and sends the internet's traffic for the mesh back to
//! the exit only once it has the routes `braid routes --upstream` prints (applied with
//! [`Lab::route_back`]); the internet host sends everything to the router. These addresses
//! stay clear of the underlay (198.18.0.0/15, 2001:db8::/44) and of the address plan
//! (2001:db8:bd00::/48, 10.0.0.0/8), in a lab with uplinks as in the pair mesh. The two
//! namespaces carry the lab's prefix, so [`crate::cleanup`] removes them with the lab.

use crate::LabError;
use crate::command::{ip_batch, run};
use crate::lab::Lab;
use crate::namespace::{self, namespace_prefix};
use crate::underlay::NodeAddrs;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The exit's end of its upstream link, the interface `up0` (`2001:db8:ff::2/64`,
/// `198.51.100.2/24`).
pub const EXIT_UPSTREAM: NodeAddrs = NodeAddrs {
    v4: Ipv4Addr::new(198, 51, 100, 2),
    v6: Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 2),
};
/// The upstream router's address toward the exit: the exit's `gateway4` / `gateway6`.
pub const UPSTREAM_GATEWAY: NodeAddrs = NodeAddrs {
    v4: Ipv4Addr::new(198, 51, 100, 1),
    v6: Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1),
};
/// The upstream router's address toward the internet host.
pub const UPSTREAM_INTERNET_SIDE: NodeAddrs = NodeAddrs {
    v4: Ipv4Addr::new(192, 0, 2, 1),
    v6: Ipv6Addr::new(0x2001, 0xdb8, 0xfe, 0, 0, 0, 0, 1),
};
/// The host on the internet that workloads reach through the exit.
pub const INTERNET_HOST: NodeAddrs = NodeAddrs {
    v4: Ipv4Addr::new(192, 0, 2, 2),
    v6: Ipv6Addr::new(0x2001, 0xdb8, 0xfe, 0, 0, 0, 0, 2),
};
/// The exit's interface toward the upstream router.
pub const UPSTREAM_INTERFACE: &str = "up0";

/// The upstream router namespace of the lab `name`: `brd-<name>-r`.
pub fn router_name(lab: &str) -> String {
    format!("{}r", namespace_prefix(lab))
}

/// The internet namespace of the lab `name`: `brd-<name>-i`.
pub fn internet_name(lab: &str) -> String {
    format!("{}i", namespace_prefix(lab))
}

/// The `exit` section of the exit node's config (docs/config.md): upstream `up0`, the
/// router as gateway for both families; IPv4 is masqueraded (braid's default).
pub fn exit_config() -> serde_json::Value {
    serde_json::json!({
        "upstream_interface": UPSTREAM_INTERFACE,
        "gateway6": UPSTREAM_GATEWAY.v6.to_string(),
        "gateway4": UPSTREAM_GATEWAY.v4.to_string(),
    })
}

impl Lab {
    /// The upstream router namespace, `brd-<name>-r` (see [`crate::exit`]).
    pub fn router_ns(&self) -> String {
        router_name(self.name())
    }

    /// The internet namespace, `brd-<name>-i` (see [`crate::exit`]).
    pub fn internet_ns(&self) -> String {
        internet_name(self.name())
    }

    /// Builds node `exit`'s outside world (see [`crate::exit`]): the router and internet
    /// namespaces, the exit's `up0` and the router's and the host's addresses and routes.
    /// The router has no route back to the mesh until [`Lab::route_back`].
    pub fn add_upstream(&self, exit: usize) -> Result<(), LabError> {
        if !(1..=self.nodes()).contains(&exit) {
            return Err(LabError::BadNode {
                node: exit,
                nodes: self.nodes(),
            });
        }
        let (node, router, internet) = (self.ns(exit), self.router_ns(), self.internet_ns());
        namespace::create(&router)?;
        namespace::create(&internet)?;
        ip_batch(
            None,
            &[
                format!(
                    "link add {UPSTREAM_INTERFACE} netns {node} type veth peer name r0 netns {router}"
                ),
                format!("link add r1 netns {router} type veth peer name eth0 netns {internet}"),
            ],
        )?;
        let side = |dev: &str, a: NodeAddrs| {
            vec![
                format!("address add {}/64 dev {dev} nodad", a.v6),
                format!("address add {}/24 dev {dev}", a.v4),
                format!("link set {dev} up"),
            ]
        };
        ip_batch(Some(&node), &side(UPSTREAM_INTERFACE, EXIT_UPSTREAM))?;
        let mut lines = side("r0", UPSTREAM_GATEWAY);
        lines.extend(side("r1", UPSTREAM_INTERNET_SIDE));
        ip_batch(Some(&router), &lines)?;
        let mut lines = side("eth0", INTERNET_HOST);
        lines.push(format!(
            "route add default via {}",
            UPSTREAM_INTERNET_SIDE.v4
        ));
        lines.push(format!(
            "route add default via {}",
            UPSTREAM_INTERNET_SIDE.v6
        ));
        ip_batch(Some(&internet), &lines)
    }

    /// Applies `braid routes --upstream`'s output (`ip -6 route replace DEST via ADDR`
    /// lines) in the upstream router. Any other line is refused: the text comes from
    /// another program, and only route commands belong in the router.
    pub fn route_back(&self, routes: &str) -> Result<usize, LabError> {
        let mut lines = Vec::new();
        for line in routes.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [
                    "ip",
                    family @ ("-4" | "-6"),
                    "route",
                    "replace",
                    dest,
                    "via",
                    via,
                ] => {
                    lines.push(format!("{family} route replace {dest} via {via}"));
                }
                _ => {
                    return Err(LabError::Topology(format!(
                        "`{line}` is not an upstream route (`ip -6 route replace DEST via ADDR`, as `braid routes --upstream` prints)"
                    )));
                }
            }
        }
        let router = self.router_ns();
        for line in &lines {
            let mut all = vec!["-n", router.as_str()];
            all.extend(line.split_whitespace());
            run("ip", &all)?;
        }
        Ok(lines.len())
    }

    /// True when the internet host answers a ping from node `from`'s workload.
    pub fn workload_reaches_internet(&self, from: usize, v6: bool) -> bool {
        let host = if v6 {
            INTERNET_HOST.v6.to_string()
        } else {
            INTERNET_HOST.v4.to_string()
        };
        self.workload_ping(from, &host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outside_stays_clear_of_the_underlay_and_the_plan() {
        for a in [
            EXIT_UPSTREAM,
            UPSTREAM_GATEWAY,
            UPSTREAM_INTERNET_SIDE,
            INTERNET_HOST,
        ] {
            // 2001:db8::/44 (uplinks) and 2001:db8:bd00::/48 (plan)
            let third = a.v6.segments()[2];
            assert!(third > 0xf && third != 0xbd00, "{a:?}");
            assert_ne!(a.v4.octets()[..2], [198, 18]);
            assert_ne!(a.v4.octets()[0], 10);
        }
        assert_eq!(router_name("lab"), "brd-lab-r");
        assert_eq!(internet_name("lab"), "brd-lab-i");
        assert_eq!(exit_config()["gateway6"], "2001:db8:ff::1");
    }
}
