//! The policy rules that let the mesh's routes and the host's own routes coexist.
//!
//! braid keeps every route it wants, its own (`proto 98`) and its routing daemon's
//! (`proto babel`, `proto bird`), in a table of its own ([`crate::routes::MESH_TABLE`]),
//! never in the main table. Three kinds of rule, tagged `proto 98`, route traffic there
//! (see docs/routing.md, "Mesh routes and the host's own routes"):
//!
//! - `lookup <mesh> suppress_prefixlength 0` ([`MESH_RULE_PRIORITY`]): every mesh route
//!   except default routes, for all traffic (the host reaches the other nodes' networks);
//! - `from <allocation or pool> lookup <mesh>` and `iif <bridge> lookup <mesh>`
//!   ([`SOURCE_RULE_PRIORITY`]): traffic from the mesh's own addresses and from the
//!   workloads on the bridge also takes the mesh's default route (toward an exit).
//!
//! Other traffic of the host falls through to the main table: its own default route stays
//! in charge of it, and braid's default routes never compete with the host's (this is the
//! pattern of the source-specific IPv6 default route, and of `wg-quick`'s
//! `suppress_prefixlength 0` rule).

use crate::SystemError;
use crate::groups::Netlink;
use crate::routes::RTPROT_BRAID;
use futures_util::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::RouteProtocol;
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use std::collections::BTreeSet;

/// Priority of the rule that gives all traffic the mesh's specific routes: after braid's
/// path rules (5210), before the main table's rule (32766).
pub const MESH_RULE_PRIORITY: u32 = 5300;
/// Priority of the rules that give the mesh's own sources the mesh's default route.
pub const SOURCE_RULE_PRIORITY: u32 = 5301;

/// One of braid's mesh rules (each also names its address family).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MeshRule {
    /// `lookup <mesh> suppress_prefixlength 0`, for IPv6 when `v6`.
    Routes {
        /// IPv6 (else IPv4).
        v6: bool,
    },
    /// `from <prefix> lookup <mesh>`.
    From(IpNet),
    /// `iif <interface> lookup <mesh>`, for IPv6 when `v6`.
    Iif {
        /// The interface packets come in on.
        interface: String,
        /// IPv6 (else IPv4).
        v6: bool,
    },
}

impl MeshRule {
    fn priority(&self) -> u32 {
        match self {
            Self::Routes { .. } => MESH_RULE_PRIORITY,
            _ => SOURCE_RULE_PRIORITY,
        }
    }
}

impl std::fmt::Display for MeshRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let family = |v6: bool| if v6 { "-6" } else { "-4" };
        match self {
            Self::Routes { v6 } => write!(
                f,
                "ip {} rule pref {MESH_RULE_PRIORITY} lookup mesh suppress_prefixlength 0",
                family(*v6)
            ),
            Self::From(net) => write!(
                f,
                "ip {} rule pref {SOURCE_RULE_PRIORITY} from {net} lookup mesh",
                family(net.addr().is_ipv6())
            ),
            Self::Iif { interface, v6 } => write!(
                f,
                "ip {} rule pref {SOURCE_RULE_PRIORITY} iif {interface} lookup mesh",
                family(*v6)
            ),
        }
    }
}

/// The mesh rules a node needs (pure): the specific-routes rule for both families, and
/// for the mesh's sources (`sources`: the IPv6 allocation, the IPv4 pool) and the bridge
/// the default-route rules.
pub fn desired(sources: &[IpNet], bridge: Option<&str>) -> BTreeSet<MeshRule> {
    let mut rules = BTreeSet::new();
    for v6 in [false, true] {
        rules.insert(MeshRule::Routes { v6 });
        if let Some(interface) = bridge {
            rules.insert(MeshRule::Iif {
                interface: interface.to_string(),
                v6,
            });
        }
    }
    rules.extend(sources.iter().map(|s| MeshRule::From(s.trunc())));
    rules
}

fn nl(what: String) -> impl FnOnce(rtnetlink::Error) -> SystemError {
    move |source| SystemError::Netlink { what, source }
}

/// The mesh rule a message describes, if it is one (`None` for another shape).
fn rule_of(message: &RuleMessage) -> Option<MeshRule> {
    let v6 = message.header.family == AddressFamily::Inet6;
    let (mut source, mut iif, mut suppress) = (None, None, None);
    for attribute in &message.attributes {
        match attribute {
            RuleAttribute::Source(ip) => source = Some(*ip),
            RuleAttribute::Iifname(name) => iif = Some(name.clone()),
            // The kernel reports -1 (u32::MAX) for a rule without one (iproute2 hides it):
            // not a suppress rule. Read as one, braid's other rules looked foreign and were
            // deleted and added again at every reload, a gap for the mesh's traffic.
            RuleAttribute::SuppressPrefixLen(len) if *len != u32::MAX => suppress = Some(*len),
            _ => {}
        }
    }
    match (source, iif, suppress) {
        (None, None, Some(0)) => Some(MeshRule::Routes { v6 }),
        (Some(ip), None, None) => IpNet::new(ip, message.header.src_len)
            .ok()
            .map(MeshRule::From),
        (None, Some(interface), None) => Some(MeshRule::Iif { interface, v6 }),
        _ => None,
    }
}

fn table_of(message: &RuleMessage) -> u32 {
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(message.header.table))
}

fn priority_of(message: &RuleMessage) -> u32 {
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0)
}

fn is_braids(message: &RuleMessage) -> bool {
    message
        .attributes
        .contains(&RuleAttribute::Protocol(RouteProtocol::Other(RTPROT_BRAID)))
}

/// Sends a new rule (NLM_F_CREATE | NLM_F_EXCL) tagged `proto 98`, with
/// `suppress_prefixlength 0` when `suppress`; one that exists already is fine.
async fn send<T>(
    mut request: rtnetlink::RuleAddRequest<T>,
    suppress: bool,
    what: String,
) -> Result<(), SystemError> {
    let attributes = &mut request.message_mut().attributes;
    attributes.push(RuleAttribute::Protocol(RouteProtocol::Other(RTPROT_BRAID)));
    if suppress {
        attributes.push(RuleAttribute::SuppressPrefixLen(0));
    }
    match request.execute().await {
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => Ok(()),
        other => other.map_err(nl(what)),
    }
}

impl Netlink {
    /// braid's rules that look up `table` (its mesh rules), with the messages that delete
    /// them; a rule of braid's into that table that is no [`MeshRule`] (or not at its
    /// priority) comes as `None`, to be removed.
    pub async fn mesh_rules(
        &self,
        table: u32,
    ) -> Result<Vec<(Option<MeshRule>, RuleMessage)>, SystemError> {
        let mut out = Vec::new();
        for version in [rtnetlink::IpVersion::V4, rtnetlink::IpVersion::V6] {
            let mut stream = self.handle().rule().get(version).execute();
            while let Some(message) = stream
                .try_next()
                .await
                .map_err(nl("listing policy rules".into()))?
            {
                if !is_braids(&message) || table_of(&message) != table {
                    continue;
                }
                let rule = rule_of(&message).filter(|r| r.priority() == priority_of(&message));
                out.push((rule, message));
            }
        }
        Ok(out)
    }

    async fn add_mesh_rule(&self, table: u32, rule: &MeshRule) -> Result<(), SystemError> {
        let base = self
            .handle()
            .rule()
            .add()
            .priority(rule.priority())
            .table_id(table)
            .action(RuleAction::ToTable);
        let what = format!("adding the policy rule `{rule}`");
        match rule {
            MeshRule::Routes { v6: false } => send(base.v4(), true, what).await,
            MeshRule::Routes { v6: true } => send(base.v6(), true, what).await,
            MeshRule::From(IpNet::V4(net)) => {
                send(
                    base.v4().source_prefix(net.addr(), net.prefix_len()),
                    false,
                    what,
                )
                .await
            }
            MeshRule::From(IpNet::V6(net)) => {
                send(
                    base.v6().source_prefix(net.addr(), net.prefix_len()),
                    false,
                    what,
                )
                .await
            }
            MeshRule::Iif { interface, v6 } => {
                let base = base.input_interface(interface.clone());
                if *v6 {
                    send(base.v6(), false, what).await
                } else {
                    send(base.v4(), false, what).await
                }
            }
        }
    }

    /// Makes braid's rules into `table` exactly `desired`. Returns (added, removed).
    pub async fn sync_mesh_rules(
        &self,
        table: u32,
        desired: &BTreeSet<MeshRule>,
    ) -> Result<(usize, usize), SystemError> {
        let existing = self.mesh_rules(table).await?;
        let mut removed = 0;
        for (rule, message) in &existing {
            if rule.as_ref().is_none_or(|r| !desired.contains(r)) {
                self.handle()
                    .rule()
                    .del(message.clone())
                    .execute()
                    .await
                    .map_err(nl(format!(
                        "deleting the policy rule {}",
                        rule.as_ref()
                            .map_or("(malformed)".into(), |r| r.to_string())
                    )))?;
                removed += 1;
            }
        }
        let have: BTreeSet<&MeshRule> = existing.iter().filter_map(|(r, _)| r.as_ref()).collect();
        let mut added = 0;
        for rule in desired.iter().filter(|r| !have.contains(r)) {
            self.add_mesh_rule(table, rule).await?;
            added += 1;
        }
        Ok((added, removed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_rules_cover_both_families_the_sources_and_the_bridge() {
        let rules = desired(
            &[
                "2001:db8:bd00::/48".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
            ],
            Some("braid0"),
        );
        let text: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(rules.len(), 6, "{text:?}");
        assert!(
            text.contains(&"ip -4 rule pref 5300 lookup mesh suppress_prefixlength 0".to_string())
        );
        assert!(text.contains(&"ip -6 rule pref 5301 from 2001:db8:bd00::/48 lookup mesh".into()));
        assert!(text.contains(&"ip -4 rule pref 5301 from 10.0.0.0/8 lookup mesh".into()));
        assert!(text.contains(&"ip -6 rule pref 5301 iif braid0 lookup mesh".into()));
        assert_eq!(desired(&[], None).len(), 2);
    }

    #[test]
    fn a_rule_the_kernel_reports_with_suppress_prefixlength_minus_one_is_read() {
        // What the kernel sends back for `ip rule add pref 5301 from 10.0.0.0/8 lookup 98`.
        let mut message = RuleMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.src_len = 8;
        message.attributes = vec![
            RuleAttribute::Table(98),
            RuleAttribute::SuppressPrefixLen(u32::MAX),
            RuleAttribute::Priority(SOURCE_RULE_PRIORITY),
            RuleAttribute::Source("10.0.0.0".parse().unwrap()),
        ];
        assert_eq!(
            rule_of(&message),
            Some(MeshRule::From("10.0.0.0/8".parse().unwrap()))
        );
        message.attributes[1] = RuleAttribute::SuppressPrefixLen(0);
        assert_eq!(rule_of(&message), None);
    }
}
