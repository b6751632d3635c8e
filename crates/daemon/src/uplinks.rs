//! Uplinks and the paths over them, kept in step with the kernel: on every interface or route
//! change (netlink) and every few seconds, the daemon rescans the uplinks and
//! - gives transports with `wan: "auto"` one path per uplink seen up since the start (a
//!   reload, which adds the path to the running link in place, when a new one appears),
//! - installs the policy rules the paths need (`oif <uplink> lookup <its table>` for a
//!   path bound to an uplink, `from <source> lookup <table>` for a path bound to an
//!   uplink's address), and removes the ones no longer needed,
//! - tells the links when a path's interface goes down, disappears or loses its default
//!   route (out at once) and when it comes back (probed again).

use crate::backend::LinkBackend;
use crate::reconciler::Reconciler;
use braid_plan::LinkPlan;
use braid_system::Netlink;
use braid_system::uplinks::{PathRule, Uplink};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The policy rules the links' paths need (pure).
pub fn desired_rules(
    links: &[LinkPlan],
    uplinks: &[Uplink],
    addresses: &BTreeMap<String, Vec<IpAddr>>,
) -> BTreeSet<PathRule> {
    let mut rules = BTreeSet::new();
    for path in links.iter().flat_map(|l| &l.paths) {
        if let Some(interface) = &path.interface
            && let Some(uplink) = uplinks.iter().find(|u| &u.name == interface)
        {
            rules.insert(PathRule::Oif {
                interface: interface.clone(),
                table: uplink.table,
            });
        }
        if let Some(source) = path.source
            && let Some(uplink) = uplinks
                .iter()
                .find(|u| addresses.get(&u.name).is_some_and(|a| a.contains(&source)))
        {
            rules.insert(PathRule::From {
                source,
                table: uplink.table,
            });
        }
    }
    rules
}

/// The interfaces the links' paths name.
pub fn path_interfaces(links: &[LinkPlan]) -> BTreeSet<String> {
    links
        .iter()
        .flat_map(|l| &l.paths)
        .filter_map(|p| p.interface.clone())
        .collect()
}

/// Which path interfaces are down now: missing, administratively down, or an uplink that
/// was and no longer has its default route (pure).
pub fn down_interfaces(
    wanted: &BTreeSet<String>,
    present_up: &BTreeMap<String, bool>,
    uplinks_before: &[String],
    uplinks_now: &[Uplink],
) -> BTreeSet<String> {
    wanted
        .iter()
        .filter(|name| {
            let up = present_up.get(*name).copied().unwrap_or(false);
            let lost_route =
                uplinks_before.contains(name) && !uplinks_now.iter().any(|u| &u.name == *name);
            !up || lost_route
        })
        .cloned()
        .collect()
}

/// The uplinks that transports with `wan: "auto"` have a path over: every uplink seen up
/// since the daemon started, sorted (pure). An uplink that goes away keeps its path, taken
/// out of use at once (see [`down_interfaces`]) and probed again when it is back: a WAN
/// that fails and returns changes no link (no reload, no new socket, the bond keeps its
/// measurements), and a bond never shrinks to one path and back. A new uplink is a new
/// path, added to the running link in place.
pub fn wan_auto_paths(known: &[String], live: &[String]) -> Vec<String> {
    let all: BTreeSet<&String> = known.iter().chain(live).collect();
    all.into_iter().cloned().collect()
}

/// What a rescan found that the caller must act on.
#[derive(Debug, Default)]
pub struct Rescan {
    /// The `wan: "auto"` uplinks changed: the caller reloads.
    pub reload: bool,
}

/// Rescans the uplinks and applies rules and path states; see the module docs.
pub async fn rescan<B: LinkBackend>(
    r: &mut Reconciler<B>,
    known: &mut Vec<String>,
) -> Result<Rescan, braid_system::SystemError> {
    let Some(loaded) = r.loaded() else {
        return Ok(Rescan::default());
    };
    let wan_auto = loaded.config.transports.iter().any(|t| t.wan_auto);
    // Most meshes have no paths: nothing to follow, and no dumps of a thousand interfaces
    // every time one of braid's own links appears.
    let has_paths = loaded.config.transports.iter().any(|t| !t.paths.is_empty());
    if !wan_auto && !has_paths && known.is_empty() && r.uplinks().paths_down().is_empty() {
        return Ok(Rescan::default());
    }
    let links = loaded.plan.links.clone();
    let nl = Netlink::connect()?;
    let uplinks = nl.uplinks().await?;
    let mut out = Rescan::default();
    let live: Vec<String> = uplinks
        .iter()
        .filter(|u| u.up)
        .map(|u| u.name.clone())
        .collect();
    let paths = wan_auto_paths(r.uplinks().auto(), &live);
    if wan_auto && paths != r.uplinks().auto() {
        tracing::info!(uplinks = ?live, paths = ?paths, "new uplink (wan: auto)");
        r.set_auto_uplinks(paths);
        out.reload = true;
    }
    let mut addresses = BTreeMap::new();
    if links
        .iter()
        .flat_map(|l| &l.paths)
        .any(|p| p.source.is_some())
    {
        for uplink in &uplinks {
            addresses.insert(uplink.name.clone(), nl.addresses(uplink.index).await?);
        }
    }
    let rules = desired_rules(&links, &uplinks, &addresses);
    let (added, removed) = nl.sync_path_rules(&rules).await?;
    if added + removed > 0 {
        tracing::info!(added, removed, "path policy rules");
    }
    let wanted = path_interfaces(&links);
    if !wanted.is_empty() {
        let present: BTreeMap<String, bool> = nl
            .links()
            .await?
            .into_iter()
            .map(|l| (l.name, l.up))
            .collect();
        let down = down_interfaces(&wanted, &present, known, &uplinks);
        r.set_paths_down(&wanted, down);
    }
    *known = uplinks.iter().map(|u| u.name.clone()).collect();
    Ok(out)
}

/// Removes braid's path rules (down, and after a crash).
pub async fn remove_rules() -> Result<(), braid_system::SystemError> {
    Netlink::connect()?
        .sync_path_rules(&BTreeSet::new())
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_model::extensions::PathConfig;

    fn uplink(name: &str, table: u32) -> Uplink {
        Uplink {
            name: name.into(),
            index: table,
            table,
            up: true,
        }
    }

    fn link_with(paths: Vec<PathConfig>) -> LinkPlan {
        LinkPlan {
            name: "wg1".into(),
            family: braid_model::AddressFamily::Ip4,
            listen_port: 1,
            endpoint: None,
            mtu: 1420,
            fwmark: 0,
            group: 2,
            peer_public_key: braid_model::PublicKey([1; 32]),
            local_public_key: braid_model::PublicKey([2; 32]),
            peer: "p".into(),
            keepalive: None,
            transport: 0,
            paths,
            scheduler: braid_model::extensions::Scheduler::Flow,
            addresses: braid_plan::LinkAddresses {
                link_local6: "fe80::2/64".parse().unwrap(),
                link4: None,
                peer_link4: None,
            },
        }
    }

    #[test]
    fn rules_follow_paths_that_name_uplinks() {
        let paths = vec![
            PathConfig {
                interface: Some("wan0".into()),
                ..Default::default()
            },
            PathConfig {
                interface: Some("eth9".into()), // not an uplink: no rule
                ..Default::default()
            },
            PathConfig {
                source: Some("198.18.1.1".parse().unwrap()),
                ..Default::default()
            },
        ];
        let uplinks = [uplink("wan0", 100), uplink("wan1", 101)];
        let mut addresses = BTreeMap::new();
        addresses.insert("wan1".to_string(), vec!["198.18.1.1".parse().unwrap()]);
        let rules = desired_rules(&[link_with(paths)], &uplinks, &addresses);
        let want: BTreeSet<PathRule> = [
            PathRule::Oif {
                interface: "wan0".into(),
                table: 100,
            },
            PathRule::From {
                source: "198.18.1.1".parse().unwrap(),
                table: 101,
            },
        ]
        .into();
        assert_eq!(rules, want);
        assert!(desired_rules(&[link_with(vec![])], &uplinks, &addresses).is_empty());
    }

    #[test]
    fn wan_auto_keeps_the_paths_of_uplinks_that_went_away() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            wan_auto_paths(&[], &s(&["wan1", "wan0"])),
            s(&["wan0", "wan1"])
        );
        // wan1 fails: its path stays (down), nothing to reload.
        assert_eq!(
            wan_auto_paths(&s(&["wan0", "wan1"]), &s(&["wan0"])),
            s(&["wan0", "wan1"])
        );
        assert_eq!(
            wan_auto_paths(&s(&["wan0", "wan1"]), &[]),
            s(&["wan0", "wan1"])
        );
        // A third uplink appears: one more path.
        assert_eq!(
            wan_auto_paths(&s(&["wan0", "wan1"]), &s(&["wan2"])),
            s(&["wan0", "wan1", "wan2"])
        );
    }

    #[test]
    fn a_path_is_down_when_its_interface_is_down_gone_or_lost_its_route() {
        let wanted: BTreeSet<String> = ["wan0", "wan1", "wan2", "wan3"].map(String::from).into();
        let present: BTreeMap<String, bool> = [
            ("wan0".to_string(), true),
            ("wan1".to_string(), false),
            ("wan3".to_string(), true),
        ]
        .into();
        let before = vec!["wan0".to_string(), "wan3".to_string()];
        let now = [uplink("wan0", 100)];
        let down = down_interfaces(&wanted, &present, &before, &now);
        let want: BTreeSet<String> = ["wan1", "wan2", "wan3"].map(String::from).into();
        assert_eq!(
            down, want,
            "wan1 down, wan2 gone, wan3 lost its default route"
        );
    }
}
