//! Shaping a pair's underlay: a tbf rate limit (tc) and random loss or a cut (nftables).
//!
//! Each node has one nftables table, `inet braid_lab`. Its `postrouting` and `prerouting`
//! chains jump, per veth, to `to_u<j>` and `from_u<j>`; those per-peer chains hold the
//! pair's rules and are rewritten whole (flush, then add) on every change, so loss and
//! cuts compose and re-applying the same state changes nothing. Hooking postrouting and
//! prerouting (not output and input) makes the rules apply to forwarded traffic too.

use crate::LabError;
use crate::command::{nft_script, run};
use crate::underlay::iface;

/// The name of the nftables table (family `inet`) in every node.
pub const NFT_TABLE: &str = "braid_lab";

/// How the underlay between two nodes behaves; the default is an unshaped veth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkShape {
    /// Rate limit in Mbit/s, a tbf qdisc on both ends.
    pub rate_mbit: Option<u32>,
    /// Random loss in percent (100 or more drops everything), applied by the sending end
    /// (nftables `numgen random`), so both directions lose this share.
    pub loss_percent: Option<u8>,
}

/// The state of one pair, as both of its ends apply it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PairState {
    pub shape: LinkShape,
    /// All traffic between the two nodes is dropped.
    pub cut: bool,
}

fn out_chain(peer: usize) -> String {
    format!("to_{}", iface(peer))
}

fn in_chain(peer: usize) -> String {
    format!("from_{}", iface(peer))
}

/// The script that creates node `me`'s table, with its per-peer chains (empty).
pub(crate) fn table_script(me: usize, nodes: usize) -> String {
    let peers: Vec<usize> = (1..=nodes).filter(|&p| p != me).collect();
    let mut script = format!("table inet {NFT_TABLE} {{\n");
    for &p in &peers {
        script.push_str(&format!("  chain {} {{\n  }}\n", out_chain(p)));
        script.push_str(&format!("  chain {} {{\n  }}\n", in_chain(p)));
    }
    let vmap = |chain: fn(usize) -> String| {
        peers
            .iter()
            .map(|&p| format!("\"{}\" : jump {}", iface(p), chain(p)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (hook, key, chain) in [
        ("postrouting", "oifname", out_chain as fn(usize) -> String),
        ("prerouting", "iifname", in_chain),
    ] {
        script.push_str(&format!(
            "  chain {hook} {{\n    type filter hook {hook} priority 0; policy accept;\n"
        ));
        if !peers.is_empty() {
            script.push_str(&format!("    {key} vmap {{ {} }}\n", vmap(chain)));
        }
        script.push_str("  }\n");
    }
    script.push_str("}\n");
    script
}

/// The script that rewrites node `me`'s rules toward `peer` to match `state`.
pub(crate) fn rules_script(peer: usize, state: PairState) -> String {
    let (out, inn) = (out_chain(peer), in_chain(peer));
    let mut script =
        format!("flush chain inet {NFT_TABLE} {out}\nflush chain inet {NFT_TABLE} {inn}\n");
    if state.cut {
        script.push_str(&format!(
            "add rule inet {NFT_TABLE} {out} drop comment \"cut\"\n"
        ));
        script.push_str(&format!(
            "add rule inet {NFT_TABLE} {inn} drop comment \"cut\"\n"
        ));
    }
    match state.shape.loss_percent {
        None | Some(0) => {}
        Some(100..) => {
            script.push_str(&format!("add rule inet {NFT_TABLE} {out} drop comment \"loss 100%\"\n"));
        }
        Some(p) => script.push_str(&format!(
            "add rule inet {NFT_TABLE} {out} numgen random mod 100 < {p} drop comment \"loss {p}%\"\n"
        )),
    }
    script
}

/// tbf burst for `rate` Mbit/s: one millisecond of traffic, and at least one 64 KiB GSO
/// packet plus a frame, so large segments are not dropped outright.
pub(crate) fn burst_bytes(rate_mbit: u32) -> u64 {
    (u64::from(rate_mbit) * 125).max(65536 + 1514)
}

/// Moves node `me`'s end of the pair toward `peer` (namespace `ns`) from `old` to `new`.
pub(crate) fn apply(
    ns: &str,
    peer: usize,
    old: Option<PairState>,
    new: PairState,
) -> Result<(), LabError> {
    let dev = iface(peer);
    let old_rate = old.and_then(|o| o.shape.rate_mbit);
    match new.shape.rate_mbit {
        Some(rate) if old_rate != Some(rate) => {
            run(
                "tc",
                &[
                    "-n",
                    ns,
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
        None if old_rate.is_some() => {
            run("tc", &["-n", ns, "qdisc", "del", "dev", &dev, "root"])?;
        }
        _ => {}
    }
    if old != Some(new) {
        nft_script(ns, &rules_script(peer, new))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_dispatches_every_peer() {
        let script = table_script(2, 3);
        assert!(script.contains("oifname vmap { \"u1\" : jump to_u1, \"u3\" : jump to_u3 }"));
        assert!(script.contains("iifname vmap { \"u1\" : jump from_u1, \"u3\" : jump from_u3 }"));
        assert!(!script.contains("u2"));
    }

    #[test]
    fn a_single_node_has_hooks_and_no_map() {
        let script = table_script(1, 1);
        assert!(script.contains("hook postrouting") && !script.contains("vmap"));
    }

    #[test]
    fn rules_follow_the_state() {
        let clear = rules_script(3, PairState::default());
        assert!(clear.contains("flush chain inet braid_lab to_u3") && !clear.contains("add rule"));
        let lossy_cut = rules_script(
            3,
            PairState {
                shape: LinkShape {
                    rate_mbit: None,
                    loss_percent: Some(7),
                },
                cut: true,
            },
        );
        assert!(lossy_cut.contains("to_u3 drop comment \"cut\""));
        assert!(lossy_cut.contains("from_u3 drop comment \"cut\""));
        assert!(lossy_cut.contains("to_u3 numgen random mod 100 < 7 drop"));
        let all = rules_script(
            1,
            PairState {
                shape: LinkShape {
                    rate_mbit: None,
                    loss_percent: Some(200),
                },
                cut: false,
            },
        );
        assert!(all.contains("to_u1 drop comment \"loss 100%\""));
    }

    #[test]
    fn burst_holds_a_gso_packet() {
        assert_eq!(burst_bytes(1), 65536 + 1514);
        assert_eq!(burst_bytes(10_000), 1_250_000);
    }
}
