//! WAN uplinks and the policy rules that make a path's socket leave through its uplink.
//!
//! An uplink is found the way ratbond finds one: an interface with a default route in a
//! routing table other than main (and other than local and default). A socket bound to an
//! uplink (`SO_BINDTODEVICE`) then needs a rule `oif <uplink> lookup <table>` to use that
//! table; a socket bound to a source address needs `from <address> lookup <table>`. braid
//! tags its rules with its routing protocol number (98), so it can list, reconcile and
//! remove them without touching anyone else's (also after a crash, from `braid down`).

use crate::SystemError;
use crate::groups::Netlink;
use crate::routes::RTPROT_BRAID;
use futures_util::TryStreamExt;
use netlink_packet_route::route::{RouteAttribute, RouteProtocol};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::RouteMessageBuilder;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The priority of braid's path rules: before the main table's rule (32766).
pub const RULE_PRIORITY: u32 = 5210;

/// Tables that never make an interface an uplink (nor does braid's own, `routes::MESH_TABLE`).
const LOCAL_TABLE: u32 = 255;
const MAIN_TABLE: u32 = 254;
const DEFAULT_TABLE: u32 = 253;

/// An interface with a default route in a table of its own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Uplink {
    /// The interface name.
    pub name: String,
    /// The interface index.
    pub index: u32,
    /// The routing table holding its default route.
    pub table: u32,
    /// Administratively up.
    pub up: bool,
}

/// One policy rule for a path: traffic of a socket bound to `oif`, or from `source`,
/// looks up `table`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathRule {
    /// `oif <interface> lookup <table>`.
    Oif {
        /// The uplink's interface name.
        interface: String,
        /// The uplink's routing table.
        table: u32,
    },
    /// `from <source> lookup <table>`.
    From {
        /// The path's source address.
        source: IpAddr,
        /// The uplink's routing table.
        table: u32,
    },
}

fn nl(what: &str) -> impl FnOnce(rtnetlink::Error) -> SystemError + '_ {
    move |source| SystemError::Netlink {
        what: what.to_string(),
        source,
    }
}

fn rule_of(message: &RuleMessage) -> Option<PathRule> {
    let mut table = u32::from(message.header.table);
    let (mut oif, mut source) = (None, None);
    for attribute in &message.attributes {
        match attribute {
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::Oifname(name) => oif = Some(name.clone()),
            RuleAttribute::Source(ip) => source = Some(*ip),
            _ => {}
        }
    }
    match (oif, source) {
        (Some(interface), None) => Some(PathRule::Oif { interface, table }),
        (None, Some(source)) => Some(PathRule::From { source, table }),
        _ => None,
    }
}

fn is_braids(message: &RuleMessage) -> bool {
    message
        .attributes
        .contains(&RuleAttribute::Protocol(RouteProtocol::Other(RTPROT_BRAID)))
}

impl Netlink {
    /// The uplinks, sorted by name (an interface with default routes in several tables is
    /// listed once, with the lowest table).
    pub async fn uplinks(&self) -> Result<Vec<Uplink>, SystemError> {
        let links = self.links().await?;
        let mut found = BTreeSet::new();
        for query in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let mut stream = self.handle().route().get(query).execute();
            while let Some(message) = stream.try_next().await.map_err(nl("listing routes"))? {
                if message.header.destination_prefix_length != 0 {
                    continue;
                }
                let mut table = u32::from(message.header.table);
                let mut oif = None;
                for attribute in &message.attributes {
                    match attribute {
                        RouteAttribute::Table(t) => table = *t,
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        _ => {}
                    }
                }
                // braid's own table holds the mesh's default routes (over links), which
                // make no interface an uplink.
                if matches!(table, LOCAL_TABLE | MAIN_TABLE | DEFAULT_TABLE | 0)
                    || table == crate::routes::MESH_TABLE
                {
                    continue;
                }
                let Some(link) = oif.and_then(|i| links.iter().find(|l| l.index == i)) else {
                    continue;
                };
                found.insert((link.name.clone(), table, link.index, link.up));
            }
        }
        let mut out: Vec<Uplink> = Vec::new();
        for (name, table, index, up) in found {
            if out.last().is_some_and(|u| u.name == name) {
                continue; // the lowest table of this interface is listed already
            }
            out.push(Uplink {
                name,
                index,
                table,
                up,
            });
        }
        Ok(out)
    }

    /// braid's path rules, with the messages that delete them.
    pub async fn path_rules(&self) -> Result<Vec<(PathRule, RuleMessage)>, SystemError> {
        let mut out = Vec::new();
        for v6 in [false, true] {
            let request = self.handle().rule().get(if v6 {
                rtnetlink::IpVersion::V6
            } else {
                rtnetlink::IpVersion::V4
            });
            let mut stream = request.execute();
            while let Some(message) = stream.try_next().await.map_err(nl("listing rules"))? {
                if !is_braids(&message) {
                    continue;
                }
                // braid's mesh rules (crate::rules) are not path rules.
                if let Some(rule) = rule_of(&message)
                    .filter(|r| !matches!(r, PathRule::Oif { table, .. } | PathRule::From { table, .. } if *table == crate::routes::MESH_TABLE))
                {
                    out.push((rule, message));
                }
            }
        }
        Ok(out)
    }

    async fn add_path_rule(&self, rule: &PathRule) -> Result<(), SystemError> {
        let base = self
            .handle()
            .rule()
            .add()
            .priority(RULE_PRIORITY)
            .action(RuleAction::ToTable);
        let protocol = RuleAttribute::Protocol(RouteProtocol::Other(RTPROT_BRAID));
        let what = format!("adding the policy rule {rule:?}");
        match rule {
            PathRule::Oif { interface, table } => {
                for v6 in [false, true] {
                    if v6 {
                        let mut r = base.clone().v6().output_interface(interface.clone());
                        r = r.table_id(*table);
                        r.message_mut().attributes.push(protocol.clone());
                        r.execute().await.map_err(nl(&what))?;
                    } else {
                        let mut r = base.clone().v4().output_interface(interface.clone());
                        r = r.table_id(*table);
                        r.message_mut().attributes.push(protocol.clone());
                        r.execute().await.map_err(nl(&what))?;
                    }
                }
            }
            PathRule::From { source, table } => match source {
                IpAddr::V4(ip) => {
                    let mut r = base.v4().source_prefix(*ip, 32).table_id(*table);
                    r.message_mut().attributes.push(protocol);
                    r.execute().await.map_err(nl(&what))?;
                }
                IpAddr::V6(ip) => {
                    let mut r = base.v6().source_prefix(*ip, 128).table_id(*table);
                    r.message_mut().attributes.push(protocol);
                    r.execute().await.map_err(nl(&what))?;
                }
            },
        }
        Ok(())
    }

    /// Makes braid's path rules exactly `desired` (IPv4 and IPv6 for interface rules).
    /// Returns (added, removed) rule messages.
    pub async fn sync_path_rules(
        &self,
        desired: &BTreeSet<PathRule>,
    ) -> Result<(usize, usize), SystemError> {
        let existing = self.path_rules().await?;
        let have: BTreeSet<&PathRule> = existing.iter().map(|(r, _)| r).collect();
        let mut removed = 0;
        for (rule, message) in &existing {
            if !desired.contains(rule) {
                self.handle()
                    .rule()
                    .del(message.clone())
                    .execute()
                    .await
                    .map_err(nl("deleting a policy rule"))?;
                removed += 1;
            }
        }
        let mut added = 0;
        for rule in desired.iter().filter(|r| !have.contains(r)) {
            self.add_path_rule(rule).await?;
            added += 1;
        }
        Ok((added, removed))
    }
}

/// Wakes `notify` on every interface or route change in this namespace (what
/// `ip monitor link route` shows), from tasks on the caller's tokio runtime. Callers
/// rescan on a wake-up; a periodic rescan covers events lost to a full socket buffer.
pub fn monitor(notify: std::sync::Arc<tokio::sync::Notify>) -> Result<(), SystemError> {
    use rtnetlink::MulticastGroup;
    let (connection, _handle, mut messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
    ])
    .map_err(SystemError::Connect)?;
    tokio::spawn(connection);
    tokio::spawn(async move {
        use futures_util::StreamExt;
        while messages.next().await.is_some() {
            notify.notify_one();
        }
    });
    Ok(())
}
