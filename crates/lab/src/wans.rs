//! The multi-WAN underlay (`--wans`): every node reaches the others through a hub
//! namespace, the "internet", over one veth per uplink, the way a router with several
//! WAN links reaches a server.
//!
//! - The hub is `brd-<lab>-hub`. Node `i`'s uplink `k` is the veth `wan<k>` in the node
//!   and `n<i>w<k>` in the hub, with `198.18.<k>.<i>/32` and `2001:db8:<k>::<i>/128` on
//!   the node side and the gateway `198.18.<k>.254` / `fe80::fe` on the hub side.
//!   The hub routes each node address to its veth and forwards; it answers ARP for what it
//!   routes (proxy ARP), so a socket bound to an uplink with no route of its own still
//!   gets out (the kernel's on-link fallback).
//! - On node `i`, uplink 0 carries the main table's underlay routes (`198.18.0.0/15` and
//!   `2001:db8::/44` via the uplink-0 gateway); there is no default route in
//!   main, so a mesh exit can provide it. Every uplink `k` has a default route in its own
//!   table `100 + k` (`default via 198.18.<k>.254 dev wan<k> onlink`, and IPv6 alike), as
//!   in ratbond's environment: policy routing (`ip rule add oif wan<k> lookup 100+k`) and
//!   `wan: auto` use those tables. The lab adds no rules itself.
//! - The hub also holds "a host on the internet", [`INTERNET_V4`] and [`INTERNET_V6`] on
//!   its loopback, reachable through an exit.
//! - Each uplink is shaped on its own, in both directions: a tbf rate on both veth ends,
//!   random loss and cuts in the hub's nftables table `inet braid_lab` (chains
//!   `loss_n<i>w<k>` and `cut_n<i>w<k>`, entered from prerouting for traffic from the
//!   node and from postrouting for traffic to it). Every change rewrites only its own
//!   chain or qdisc, so it needs no memory of earlier changes: `braid lab wan` applies
//!   them from another process.
//! - An uplink can instead be impaired per direction by the forwarder ([`crate::impair`]):
//!   the hub's iptables `mangle` table (iptables-legacy; this kernel's nftables has no
//!   `queue`) sends traffic from the node (PREROUTING `-i n<i>w<k>`) to NFQUEUE
//!   [`impair_queue`]`(i, k, true)` and traffic to it (POSTROUTING `-o n<i>w<k>`) to
//!   `impair_queue(i, k, false)`. An uplink is shaped by the kernel or by the forwarder,
//!   never both: setting one clears the other.

use crate::LabError;
use crate::command::{ip_batch, nft_script, run, run_unchecked, run_with_input};
use crate::namespace::{self, namespace_prefix};
use crate::shaping::{LinkShape, NFT_TABLE, burst_bytes};
use crate::underlay::NodeAddrs;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The most uplinks a node may have.
pub const MAX_WANS: usize = 8;
/// Uplink `k`'s routing table on every node is `TABLE_BASE + k`.
pub const TABLE_BASE: u32 = 100;
/// "A host on the internet": an address on the hub's loopback.
pub const INTERNET_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// "A host on the internet", IPv6.
pub const INTERNET_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);

/// The hub namespace of the lab `name`: `brd-<name>-hub`.
pub fn hub_name(lab: &str) -> String {
    format!("{}hub", namespace_prefix(lab))
}

/// The node-side name of uplink `k`: `wan<k>`.
pub fn wan_iface(k: usize) -> String {
    format!("wan{k}")
}

/// The hub-side name of node `i`'s uplink `k`: `n<i>w<k>`.
pub fn hub_iface(i: usize, k: usize) -> String {
    format!("n{i}w{k}")
}

/// The routing table of uplink `k` on every node: `100 + k`.
pub fn wan_table(k: usize) -> u32 {
    TABLE_BASE + k as u32
}

/// Node `i`'s addresses on uplink `k`: `198.18.<k>.<i>` and `2001:db8:<k>::<i>`. Uplink 0
/// has the node's ordinary underlay addresses ([`crate::node_addrs`]).
pub fn wan_addrs(i: usize, k: usize) -> NodeAddrs {
    let low = u8::try_from(i).unwrap_or(u8::MAX);
    let k8 = u8::try_from(k).unwrap_or(u8::MAX);
    NodeAddrs {
        v4: Ipv4Addr::new(198, 18, k8, low),
        v6: Ipv6Addr::new(0x2001, 0xdb8, u16::from(k8), 0, 0, 0, 0, u16::from(low)),
    }
}

/// The hub's gateway addresses on uplink `k`: `198.18.<k>.254` and the link-local
/// `fe80::fe` (IPv6 checks an on-link gateway against the main table, where
/// `2001:db8::/44` leads to uplink 0, so a global gateway would do only for uplink 0).
pub fn wan_gateway(k: usize) -> NodeAddrs {
    let k8 = u8::try_from(k).unwrap_or(u8::MAX);
    NodeAddrs {
        v4: Ipv4Addr::new(198, 18, k8, 254),
        v6: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xfe),
    }
}

/// The first NFQUEUE number of the impairment forwarder in the hub.
pub const QUEUE_BASE: u16 = 1000;

/// The NFQUEUE number of node `i`'s uplink `k`, traffic from the node (`up`) or to it:
/// `1000 + 2 * ((i - 1) * 8 + k) + up`.
pub fn impair_queue(i: usize, k: usize, up: bool) -> u16 {
    let slot = (i.saturating_sub(1) * MAX_WANS + k) * 2 + usize::from(up);
    QUEUE_BASE.saturating_add(u16::try_from(slot).unwrap_or(u16::MAX - QUEUE_BASE))
}

/// Parses a `--wans` list: comma-separated uplink counts per node (`"2"`, `"2,1"`), each
/// 1..=[`MAX_WANS`]; the last one repeats for the remaining nodes.
pub fn parse_wans(text: &str) -> Result<Vec<usize>, LabError> {
    text.split(',')
        .map(|part| {
            let part = part.trim();
            match part.parse::<usize>() {
                Ok(n) if (1..=MAX_WANS).contains(&n) => Ok(n),
                _ => Err(LabError::Wans(format!(
                    "`{part}` in `{text}` is not an uplink count; write counts of 1..={MAX_WANS} separated by commas, e.g. `2` or `2,1`"
                ))),
            }
        })
        .collect()
}

/// How many uplinks node `i` (1-based) has under the list `wans` (the last value
/// repeats); 0 when the list is empty (no multi-WAN underlay).
pub fn wans_of(wans: &[usize], i: usize) -> usize {
    wans.get(i.saturating_sub(1))
        .or(wans.last())
        .copied()
        .unwrap_or(0)
}

/// Checks a `wans` list against the node count.
pub(crate) fn validate(wans: &[usize], nodes: usize) -> Result<(), LabError> {
    if let Some(bad) = wans.iter().find(|n| !(1..=MAX_WANS).contains(*n)) {
        return Err(LabError::Wans(format!(
            "{bad} uplinks: each node has 1..={MAX_WANS}"
        )));
    }
    if wans.len() > nodes {
        return Err(LabError::Wans(format!(
            "{} counts for {nodes} nodes; give at most one count per node (the last repeats)",
            wans.len()
        )));
    }
    Ok(())
}

fn cut_chain(i: usize, k: usize) -> String {
    format!("cut_{}", hub_iface(i, k))
}

fn loss_chain(i: usize, k: usize) -> String {
    format!("loss_{}", hub_iface(i, k))
}

/// The hub's nftables table: per uplink a chain (entered from prerouting by traffic from
/// the node and from postrouting by traffic to it) that jumps to its cut and loss chains.
pub(crate) fn hub_table_script(nodes: usize, wans: &[usize]) -> String {
    let mut script = format!("table inet {NFT_TABLE} {{\n");
    let mut veths = Vec::new();
    for i in 1..=nodes {
        for k in 0..wans_of(wans, i) {
            let dev = hub_iface(i, k);
            script.push_str(&format!("  chain {} {{\n  }}\n", cut_chain(i, k)));
            script.push_str(&format!("  chain {} {{\n  }}\n", loss_chain(i, k)));
            script.push_str(&format!(
                "  chain {dev} {{\n    jump {}\n    jump {}\n  }}\n",
                cut_chain(i, k),
                loss_chain(i, k)
            ));
            veths.push(dev);
        }
    }
    let map = veths
        .iter()
        .map(|d| format!("\"{d}\" : jump {d}"))
        .collect::<Vec<_>>()
        .join(", ");
    // Cuts between two nodes (`Lab::cut` in a lab with uplinks): every pair of their
    // uplink addresses, both ways, as elements of these sets.
    script.push_str(&format!(
        "  set {PAIR_CUT4} {{\n    type ipv4_addr . ipv4_addr\n  }}\n  set {PAIR_CUT6} {{\n    type ipv6_addr . ipv6_addr\n  }}\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n    ip saddr . ip daddr @{PAIR_CUT4} drop\n    ip6 saddr . ip6 daddr @{PAIR_CUT6} drop\n  }}\n"
    ));
    for (hook, key) in [("prerouting", "iifname"), ("postrouting", "oifname")] {
        script.push_str(&format!(
            "  chain {hook} {{\n    type filter hook {hook} priority 0; policy accept;\n    {key} vmap {{ {map} }}\n  }}\n"
        ));
    }
    script.push_str("}\n");
    script
}

/// Builds the hub and the uplinks of every node (the nodes' namespaces exist).
pub(crate) fn build(
    lab: &str,
    nodes: usize,
    wans: &[usize],
    ns: impl Fn(usize) -> String,
) -> Result<(), LabError> {
    let hub = hub_name(lab);
    namespace::create(&hub)?;
    run(
        "ip",
        &[
            "netns",
            "exec",
            &hub,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.conf.all.proxy_arp=1",
        ],
    )?;
    let mut links = Vec::new();
    for i in 1..=nodes {
        for k in 0..wans_of(wans, i) {
            links.push(format!(
                "link add {} netns {} type veth peer name {} netns {hub}",
                wan_iface(k),
                ns(i),
                hub_iface(i, k)
            ));
        }
    }
    ip_batch(None, &links)?;
    let mut hub_lines = vec![
        format!("address add {INTERNET_V4}/32 dev lo"),
        format!("address add {INTERNET_V6}/128 dev lo"),
    ];
    for i in 1..=nodes {
        let mut lines = Vec::new();
        for k in 0..wans_of(wans, i) {
            let (dev, mine, gw, table) =
                (wan_iface(k), wan_addrs(i, k), wan_gateway(k), wan_table(k));
            lines.push(format!("link set {dev} up"));
            lines.push(format!("address add {}/32 dev {dev}", mine.v4));
            lines.push(format!("address add {}/128 dev {dev} nodad", mine.v6));
            lines.push(format!(
                "route add 0.0.0.0/0 via {} dev {dev} onlink table {table}",
                gw.v4
            ));
            lines.push(format!(
                "route add ::/0 via {} dev {dev} table {table}",
                gw.v6
            ));
            if k == 0 {
                lines.push(format!(
                    "route add 198.18.0.0/15 via {} dev {dev} onlink",
                    gw.v4
                ));
                lines.push(format!("route add 2001:db8::/44 via {} dev {dev}", gw.v6));
            }
            let hdev = hub_iface(i, k);
            hub_lines.push(format!("link set {hdev} up"));
            hub_lines.push(format!("address add {}/32 dev {hdev}", gw.v4));
            hub_lines.push(format!("address add {}/64 dev {hdev} nodad", gw.v6));
            hub_lines.push(format!("route add {}/32 dev {hdev}", mine.v4));
            hub_lines.push(format!("route add {}/128 dev {hdev}", mine.v6));
        }
        ip_batch(Some(&ns(i)), &lines)?;
    }
    ip_batch(Some(&hub), &hub_lines)?;
    nft_script(&hub, &hub_table_script(nodes, wans))
}

/// Sets the rate of node `i`'s uplink `k` (namespace `node_ns`) on both veth ends, or
/// removes it (`None`).
fn set_rate(
    lab: &str,
    node_ns: &str,
    i: usize,
    k: usize,
    rate: Option<u32>,
) -> Result<(), LabError> {
    let hub = hub_name(lab);
    for (ns, dev) in [(node_ns.to_string(), wan_iface(k)), (hub, hub_iface(i, k))] {
        match rate {
            Some(rate) => {
                run(
                    "tc",
                    &[
                        "-n",
                        &ns,
                        "qdisc",
                        "replace",
                        "dev",
                        &dev,
                        "root",
                        "tbf",
                        "rate",
                        &format!("{rate}mbit"),
                        "burst",
                        &burst_bytes(rate).to_string(),
                        "latency",
                        "20ms",
                    ],
                )?;
            }
            None => {
                let shown = run("tc", &["-n", &ns, "qdisc", "show", "dev", &dev, "root"])?;
                if String::from_utf8_lossy(&shown.stdout).contains("tbf") {
                    run("tc", &["-n", &ns, "qdisc", "del", "dev", &dev, "root"])?;
                }
            }
        }
    }
    Ok(())
}

/// Shapes node `i`'s uplink `k` in both directions: rate on both veth ends, loss in the
/// hub. `LinkShape::default()` clears both; a cut stays.
pub(crate) fn shape(
    lab: &str,
    node_ns: &str,
    i: usize,
    k: usize,
    shape: LinkShape,
) -> Result<(), LabError> {
    set_rate(lab, node_ns, i, k, shape.rate_mbit)?;
    let chain = loss_chain(i, k);
    let mut script = format!("flush chain inet {NFT_TABLE} {chain}\n");
    match shape.loss_percent {
        None | Some(0) => {}
        Some(100..) => script.push_str(&format!(
            "add rule inet {NFT_TABLE} {chain} drop comment \"loss 100%\"\n"
        )),
        Some(p) => script.push_str(&format!(
            "add rule inet {NFT_TABLE} {chain} numgen random mod 100 < {p} drop comment \"loss {p}%\"\n"
        )),
    }
    nft_script(&hub_name(lab), &script)
}

/// The iptables-restore script (table `mangle`, `--noflush`) that turns the rules listed
/// by `iptables -t mangle -S` (`current`) into the queue rules of the hub veth `dev`:
/// `-i dev` in PREROUTING to queue `up`, `-o dev` in POSTROUTING to queue `down` (none
/// when `None`). `None` when nothing changes.
pub(crate) fn queue_rules_script(
    current: &str,
    dev: &str,
    down: Option<u16>,
    up: Option<u16>,
) -> Option<String> {
    let wanted: Vec<String> = [
        up.map(|q| format!("-A PREROUTING -i {dev} -j NFQUEUE --queue-num {q}")),
        down.map(|q| format!("-A POSTROUTING -o {dev} -j NFQUEUE --queue-num {q}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let ours = |line: &&str| {
        line.contains("NFQUEUE")
            && ((line.starts_with("-A PREROUTING ") && line.contains(&format!(" -i {dev} ")))
                || (line.starts_with("-A POSTROUTING ") && line.contains(&format!(" -o {dev} "))))
    };
    let existing: Vec<&str> = current.lines().map(str::trim).filter(ours).collect();
    if existing.len() == wanted.len() && existing.iter().all(|l| wanted.iter().any(|w| w == l)) {
        return None;
    }
    let mut script = String::from("*mangle\n");
    for line in existing {
        script.push_str(&line.replacen("-A ", "-D ", 1));
        script.push('\n');
    }
    for line in wanted {
        script.push_str(&line);
        script.push('\n');
    }
    script.push_str("COMMIT\n");
    Some(script)
}

/// Sets the queue rules of node `i`'s uplink `k` in the hub, IPv4 and IPv6 (see
/// [`queue_rules_script`]). With both `None` and no iptables installed, nothing is to do.
pub(crate) fn set_queue_rules(
    lab: &str,
    i: usize,
    k: usize,
    down: Option<u16>,
    up: Option<u16>,
) -> Result<(), LabError> {
    let (hub, dev) = (hub_name(lab), hub_iface(i, k));
    for tool in ["iptables-legacy", "ip6tables-legacy"] {
        let listed = run_unchecked("ip", &["netns", "exec", &hub, tool, "-t", "mangle", "-S"]);
        let current = match listed {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).to_string(),
            _ if down.is_none() && up.is_none() => return Ok(()),
            Ok(out) => {
                return Err(LabError::Command {
                    command: format!("ip netns exec {hub} {tool} -t mangle -S"),
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            Err(e) => {
                return Err(LabError::Impair(format!(
                    "{e}: the impairment needs iptables (Debian package `iptables`, scripts/deps.sh)"
                )));
            }
        };
        if let Some(script) = queue_rules_script(&current, &dev, down, up) {
            let restore = format!("{tool}-restore");
            run_with_input(
                "ip",
                &["netns", "exec", &hub, &restore, "--noflush"],
                &script,
            )?;
        }
    }
    Ok(())
}

/// Cuts (`true`) or restores node `i`'s uplink `k`, both directions, in the hub.
pub(crate) fn set_cut(lab: &str, i: usize, k: usize, cut: bool) -> Result<(), LabError> {
    let chain = cut_chain(i, k);
    let mut script = format!("flush chain inet {NFT_TABLE} {chain}\n");
    if cut {
        script.push_str(&format!(
            "add rule inet {NFT_TABLE} {chain} drop comment \"cut\"\n"
        ));
    }
    nft_script(&hub_name(lab), &script)
}

/// The hub's set of cut IPv4 address pairs (source . destination).
const PAIR_CUT4: &str = "pair_cut4";
/// The hub's set of cut IPv6 address pairs (source . destination).
const PAIR_CUT6: &str = "pair_cut6";

/// The nft script that cuts (`true`) or restores all traffic between nodes `i` and `j`
/// in the hub: every pair of their uplink addresses, both ways, added to or removed from
/// the hub's pair-cut sets. A restore first adds the elements, so it never fails on a
/// pair that was not cut. Uplinks are left alone: each node still reaches the others.
pub(crate) fn pair_cut_script(wans: &[usize], i: usize, j: usize, cut: bool) -> String {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for k in 0..wans_of(wans, i) {
        for l in 0..wans_of(wans, j) {
            let (a, b) = (wan_addrs(i, k), wan_addrs(j, l));
            v4.push(format!("{} . {}", a.v4, b.v4));
            v4.push(format!("{} . {}", b.v4, a.v4));
            v6.push(format!("{} . {}", a.v6, b.v6));
            v6.push(format!("{} . {}", b.v6, a.v6));
        }
    }
    let elements = |verb: &str| {
        format!(
            "{verb} element inet {NFT_TABLE} {PAIR_CUT4} {{ {} }}\n{verb} element inet {NFT_TABLE} {PAIR_CUT6} {{ {} }}\n",
            v4.join(", "),
            v6.join(", ")
        )
    };
    if cut {
        elements("add")
    } else {
        elements("add") + &elements("delete")
    }
}

/// Cuts (`true`) or restores all traffic between nodes `i` and `j` in the hub (see
/// [`pair_cut_script`]).
pub(crate) fn set_pair_cut(
    lab: &str,
    wans: &[usize],
    i: usize,
    j: usize,
    cut: bool,
) -> Result<(), LabError> {
    nft_script(&hub_name(lab), &pair_cut_script(wans, i, j, cut))
}

/// Takes node `i`'s uplink `k` down (`ip link set wan<k> down`, which also removes its
/// routes) or brings it up again with its table's default route: the netlink events a
/// real uplink going away and coming back makes.
pub(crate) fn set_link(node_ns: &str, k: usize, up: bool) -> Result<(), LabError> {
    let dev = wan_iface(k);
    if !up {
        return ip_batch(Some(node_ns), &[format!("link set {dev} down")]);
    }
    let (gw, table) = (wan_gateway(k), wan_table(k));
    let mut lines = vec![
        format!("link set {dev} up"),
        format!(
            "route replace 0.0.0.0/0 via {} dev {dev} onlink table {table}",
            gw.v4
        ),
        format!("route replace ::/0 via {} dev {dev} table {table}", gw.v6),
    ];
    if k == 0 {
        lines.push(format!(
            "route replace 198.18.0.0/15 via {} dev {dev} onlink",
            gw.v4
        ));
        lines.push(format!(
            "route replace 2001:db8::/44 via {} dev {dev}",
            gw.v6
        ));
    }
    ip_batch(Some(node_ns), &lines)
}

/// How many uplinks (`wan0`, `wan1`, ... without a gap) the node namespace `ns` has.
pub(crate) fn count_uplinks(ns: &str) -> Result<usize, LabError> {
    let out = run("ip", &["-n", ns, "-o", "link", "show"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    Ok((0..)
        .take_while(|k| names.contains(&wan_iface(*k).as_str()))
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_count_repeats() {
        let wans = parse_wans("2,1").unwrap();
        assert_eq!(wans, vec![2, 1]);
        assert_eq!(
            (1..=4).map(|i| wans_of(&wans, i)).collect::<Vec<_>>(),
            vec![2, 1, 1, 1]
        );
        assert_eq!(wans_of(&parse_wans("3").unwrap(), 7), 3);
        assert_eq!(wans_of(&[], 1), 0);
    }

    #[test]
    fn bad_lists_name_the_fix() {
        for bad in ["", "0", "2,,1", "x", "9", "-1"] {
            let err = parse_wans(bad).unwrap_err().to_string();
            assert!(err.contains("e.g. `2` or `2,1`"), "{bad}: {err}");
        }
        assert!(validate(&[2, 1, 1], 2).is_err());
        assert!(validate(&[2, 1], 2).is_ok());
    }

    #[test]
    fn addresses_follow_the_uplink_and_node() {
        assert_eq!(wan_addrs(3, 1).v4, Ipv4Addr::new(198, 18, 1, 3));
        assert_eq!(wan_addrs(3, 1).v6.to_string(), "2001:db8:1::3");
        assert_eq!(wan_addrs(3, 0), crate::node_addrs(3));
        assert_eq!(wan_gateway(2).v4, Ipv4Addr::new(198, 18, 2, 254));
        assert_eq!(wan_gateway(2).v6.to_string(), "fe80::fe");
        assert_eq!(wan_table(1), 101);
        assert_eq!(
            (wan_iface(1), hub_iface(2, 1)),
            ("wan1".into(), "n2w1".into())
        );
    }

    #[test]
    fn queue_numbers_are_distinct_per_uplink_and_direction() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 1..=crate::MAX_NODES {
            for k in 0..MAX_WANS {
                for up in [false, true] {
                    assert!(seen.insert(impair_queue(i, k, up)), "n{i}w{k} {up}");
                }
            }
        }
        assert_eq!(impair_queue(1, 0, false), 1000);
        assert_eq!(impair_queue(1, 0, true), 1001);
        assert_eq!(impair_queue(2, 1, true), 1019);
    }

    #[test]
    fn queue_rules_replace_only_their_own_uplink() {
        let current = "-P PREROUTING ACCEPT\n-A PREROUTING -i n1w0 -j NFQUEUE --queue-num 1001\n-A PREROUTING -i n1w01 -j NFQUEUE --queue-num 9\n-A POSTROUTING -o n2w0 -j NFQUEUE --queue-num 1016\n";
        let script = queue_rules_script(current, "n1w0", Some(1000), None).unwrap();
        assert_eq!(
            script,
            "*mangle\n-D PREROUTING -i n1w0 -j NFQUEUE --queue-num 1001\n-A POSTROUTING -o n1w0 -j NFQUEUE --queue-num 1000\nCOMMIT\n"
        );
        let same = "-A PREROUTING -i n1w0 -j NFQUEUE --queue-num 1001\n";
        assert_eq!(queue_rules_script(same, "n1w0", None, Some(1001)), None);
        assert_eq!(queue_rules_script("", "n1w0", None, None), None);
        let cleared = queue_rules_script(current, "n2w0", None, None).unwrap();
        assert!(cleared.contains("-D POSTROUTING -o n2w0") && !cleared.contains("-A "));
    }

    #[test]
    fn a_pair_cut_covers_every_uplink_pair_both_ways() {
        let script = pair_cut_script(&[2, 1], 1, 2, true);
        for pair in [
            "198.18.0.1 . 198.18.0.2",
            "198.18.0.2 . 198.18.0.1",
            "198.18.1.1 . 198.18.0.2",
            "198.18.0.2 . 198.18.1.1",
            "2001:db8:1::1 . 2001:db8::2",
        ] {
            assert!(script.contains(pair), "{pair}: {script}");
        }
        assert!(!script.contains("delete"));
        let restore = pair_cut_script(&[2, 1], 1, 2, false);
        assert!(restore.find("add element") < restore.find("delete element"));
        assert!(hub_table_script(2, &[2, 1]).contains("ip saddr . ip daddr @pair_cut4 drop"));
    }

    #[test]
    fn the_hub_table_dispatches_every_uplink_both_ways() {
        let script = hub_table_script(2, &[2, 1]);
        for dev in ["n1w0", "n1w1", "n2w0"] {
            assert!(
                script.contains(&format!(
                    "chain {dev} {{\n    jump cut_{dev}\n    jump loss_{dev}"
                )),
                "{script}"
            );
        }
        assert!(!script.contains("n2w1"));
        assert!(script.contains(
            "iifname vmap { \"n1w0\" : jump n1w0, \"n1w1\" : jump n1w1, \"n2w0\" : jump n2w0 }"
        ));
        assert!(script.contains("oifname vmap { \"n1w0\" : jump n1w0"));
    }
}
