//! Reconciliation: what to do to turn the running links into the planned ones. Links whose
//! settings are unchanged are not touched; changed links are updated in place, field by
//! field, where the backend can ([`in_place_userspace`], [`kernel_update`]); the rest are
//! added or removed.

use crate::links::LinkPlan;
use std::collections::BTreeMap;

/// One setting of a link that changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The interface MTU.
    Mtu,
    /// The firewall mark on the link's UDP packets.
    Fwmark,
    /// The interface group.
    Group,
    /// The UDP listen port.
    ListenPort,
    /// The peer's endpoint (address or port).
    Endpoint,
    /// The persistent-keepalive interval.
    Keepalive,
    /// The peer behind the link changed keys: a new session is needed.
    PeerKey,
    /// This node's own key changed (a key rotation): applied in place, like
    /// `wg set private-key`, with a new handshake.
    LocalKey,
    /// The underlay paths or the scheduler changed. Applied to a running bonded link in
    /// place (paths added, taken out or re-weighted; see [`in_place_userspace`]).
    Paths,
    /// The addresses on the link's interface (the node's or the peer's index or key
    /// changed, or the address plan did): the link is made again, so that no old address
    /// stays on it.
    Addresses,
}

/// Whether braid's userspace links take `change` in place, without making the link again
/// (its interface, routes, session and running streams stay): a new endpoint, keepalive
/// or own key, and new paths or scheduler on a link that runs bonded (the link may still
/// refuse those: it was made without a bond, or no path is left). MTU, mark, group, port
/// the peer's key and the link's addresses make the link again.
pub fn in_place_userspace(change: Change) -> bool {
    matches!(
        change,
        Change::Endpoint | Change::Keepalive | Change::LocalKey | Change::Paths
    )
}

/// How kernel WireGuard takes a set of changes to a running device (see [`kernel_update`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelUpdate {
    /// A peer update alone (`WG_CMD_SET_DEVICE` on the one peer, like `wg set peer`): the
    /// session stays.
    Peer,
    /// The device brought in line where it is (rtnetlink for MTU, group and VRF; generic
    /// netlink for key, port, mark and the peer, replaced when its key changed): same
    /// interface index.
    Device,
    /// The device deleted and created again: its addresses changed, and adding the new ones
    /// in place would leave the old ones on it.
    Recreate,
}

/// How kernel WireGuard applies `changes`: the strongest step any one of them needs
/// (endpoint and keepalive: [`KernelUpdate::Peer`]; addresses: [`KernelUpdate::Recreate`];
/// everything else: [`KernelUpdate::Device`]). No change at all: [`KernelUpdate::Peer`].
pub fn kernel_update(changes: &[Change]) -> KernelUpdate {
    changes
        .iter()
        .map(|change| match change {
            Change::Endpoint | Change::Keepalive => KernelUpdate::Peer,
            Change::Addresses => KernelUpdate::Recreate,
            Change::Mtu
            | Change::Fwmark
            | Change::Group
            | Change::ListenPort
            | Change::PeerKey
            | Change::LocalKey
            | Change::Paths => KernelUpdate::Device,
        })
        .max()
        .unwrap_or(KernelUpdate::Peer)
}

/// The steps from `running` to `desired`, each list sorted by link name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Diff {
    /// Links to create, with their settings.
    pub add: Vec<LinkPlan>,
    /// The new settings of each changed link, with what changed.
    pub update: Vec<(LinkPlan, Vec<Change>)>,
    /// Names of links to remove.
    pub remove: Vec<String>,
    /// Names of links left alone.
    pub unchanged: Vec<String>,
}

impl Diff {
    /// True when nothing is to be added, updated or removed (unchanged links do not count).
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.update.is_empty() && self.remove.is_empty()
    }
}

/// What changed between two plans of the same link (same name).
pub fn changes(old: &LinkPlan, new: &LinkPlan) -> Vec<Change> {
    let mut out = Vec::new();
    let mut check = |changed: bool, change| {
        if changed {
            out.push(change);
        }
    };
    check(old.mtu != new.mtu, Change::Mtu);
    check(old.fwmark != new.fwmark, Change::Fwmark);
    check(old.group != new.group, Change::Group);
    check(old.listen_port != new.listen_port, Change::ListenPort);
    check(old.endpoint != new.endpoint, Change::Endpoint);
    check(old.keepalive != new.keepalive, Change::Keepalive);
    check(old.peer_public_key != new.peer_public_key, Change::PeerKey);
    check(
        old.local_public_key != new.local_public_key,
        Change::LocalKey,
    );
    check(
        old.paths != new.paths || old.scheduler != new.scheduler,
        Change::Paths,
    );
    check(old.addresses != new.addresses, Change::Addresses);
    out
}

/// Compares running links with the desired ones, by interface name.
pub fn diff(running: &[LinkPlan], desired: &[LinkPlan]) -> Diff {
    let running: BTreeMap<&str, &LinkPlan> = running.iter().map(|l| (l.name.as_str(), l)).collect();
    let desired_names: BTreeMap<&str, &LinkPlan> =
        desired.iter().map(|l| (l.name.as_str(), l)).collect();
    let mut out = Diff::default();
    for (name, new) in &desired_names {
        match running.get(name) {
            None => out.add.push((*new).clone()),
            Some(old) => {
                let changed = changes(old, new);
                if changed.is_empty() {
                    out.unchanged.push(name.to_string());
                } else {
                    out.update.push(((*new).clone(), changed));
                }
            }
        }
    }
    out.remove = running
        .keys()
        .filter(|n| !desired_names.contains_key(*n))
        .map(|n| n.to_string())
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_model::{AddressFamily, PublicKey};

    fn link(name: &str, port: u16) -> LinkPlan {
        LinkPlan {
            name: name.into(),
            family: AddressFamily::Ip4,
            listen_port: port,
            endpoint: None,
            mtu: 1420,
            fwmark: 0,
            group: 2,
            peer_public_key: PublicKey([port as u8; 32]),
            local_public_key: PublicKey([0; 32]),
            peer: name.into(),
            keepalive: None,
            transport: 0,
            paths: Vec::new(),
            scheduler: braid_model::extensions::Scheduler::Flow,
            addresses: crate::LinkAddresses {
                link_local6: "fe80::1/64".parse().unwrap(),
                link4: None,
                peer_link4: None,
            },
        }
    }

    #[test]
    fn new_paths_or_scheduler_are_a_change() {
        let mut new = link("a1", 1);
        new.paths.push(braid_model::extensions::PathConfig {
            interface: Some("wan1".into()),
            source: None,
            weight: None,
            priority: 0,
            rate_mbit: None,
        });
        assert_eq!(changes(&link("a1", 1), &new), vec![Change::Paths]);
        let mut new = link("a1", 1);
        new.scheduler = braid_model::extensions::Scheduler::Redundant;
        assert_eq!(changes(&link("a1", 1), &new), vec![Change::Paths]);
    }

    #[test]
    fn a_new_own_key_is_a_change_of_every_link() {
        let mut new = link("a1", 1);
        new.local_public_key = PublicKey([9; 32]);
        assert_eq!(changes(&link("a1", 1), &new), vec![Change::LocalKey]);
    }

    #[test]
    fn same_inputs_change_nothing() {
        let links = vec![link("a1", 1), link("a2", 2)];
        let d = diff(&links, &links);
        assert!(d.is_empty());
        assert_eq!(d.unchanged, vec!["a1", "a2"]);
    }

    #[test]
    fn adds_removes_and_updates_in_place() {
        let running = vec![link("a1", 1), link("a2", 2), link("a3", 3)];
        let mut changed = link("a2", 2);
        changed.mtu = 1380;
        changed.keepalive = Some(25);
        let desired = vec![link("a1", 1), changed, link("a4", 4)];
        let d = diff(&running, &desired);
        assert_eq!(
            d.add.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            vec!["a4"]
        );
        assert_eq!(d.remove, vec!["a3"]);
        assert_eq!(d.unchanged, vec!["a1"]);
        assert_eq!(d.update.len(), 1);
        assert_eq!(d.update[0].1, vec![Change::Mtu, Change::Keepalive]);
    }

    #[test]
    fn paths_and_scheduler_are_taken_in_place_and_the_device_settings_are_not() {
        for change in [
            Change::Endpoint,
            Change::Keepalive,
            Change::LocalKey,
            Change::Paths,
        ] {
            assert!(in_place_userspace(change), "{change:?}");
        }
        for change in [
            Change::Mtu,
            Change::Fwmark,
            Change::Group,
            Change::ListenPort,
            Change::PeerKey,
            Change::Addresses,
        ] {
            assert!(!in_place_userspace(change), "{change:?}");
        }
    }

    #[test]
    fn new_addresses_are_a_change() {
        let mut new = link("a1", 1);
        new.addresses.link_local6 = "fe80::7/64".parse().unwrap();
        assert_eq!(changes(&link("a1", 1), &new), vec![Change::Addresses]);
        let mut new = link("a1", 1);
        new.addresses.peer_link4 = Some("169.254.0.2".parse().unwrap());
        assert_eq!(changes(&link("a1", 1), &new), vec![Change::Addresses]);
    }

    #[test]
    fn the_kernel_takes_peer_changes_as_a_peer_update_and_recreates_for_addresses() {
        assert_eq!(kernel_update(&[]), KernelUpdate::Peer);
        assert_eq!(
            kernel_update(&[Change::Endpoint, Change::Keepalive]),
            KernelUpdate::Peer
        );
        for change in [
            Change::Mtu,
            Change::Fwmark,
            Change::Group,
            Change::ListenPort,
            Change::PeerKey,
            Change::LocalKey,
            Change::Paths,
        ] {
            assert_eq!(kernel_update(&[change]), KernelUpdate::Device, "{change:?}");
            assert_eq!(
                kernel_update(&[Change::Endpoint, change]),
                KernelUpdate::Device,
                "{change:?}"
            );
        }
        assert_eq!(
            kernel_update(&[Change::Mtu, Change::Addresses, Change::Endpoint]),
            KernelUpdate::Recreate
        );
    }

    #[test]
    fn a_new_peer_key_is_a_change() {
        let mut new = link("a1", 1);
        new.peer_public_key = PublicKey([9; 32]);
        assert_eq!(changes(&link("a1", 1), &new), vec![Change::PeerKey]);
    }
}
