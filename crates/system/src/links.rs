//! Interfaces braid makes besides TUN devices: kernel WireGuard devices and the VRF that
//! isolates the overlay, and the settings they share (MTU, group, controller, addresses).

use crate::SystemError;
use crate::groups::Netlink;
use netlink_packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute};
use rtnetlink::{LinkUnspec, LinkVrf, LinkWireguard};
use std::os::fd::AsRawFd;

fn nl(what: String) -> impl FnOnce(rtnetlink::Error) -> SystemError {
    move |source| SystemError::Netlink { what, source }
}

/// Table ids tried for a new VRF, lowest first; the first no other VRF uses is taken.
pub const VRF_TABLE_FIRST: u32 = 1000;
/// The last table id tried for a new VRF.
pub const VRF_TABLE_LAST: u32 = 1999;

/// A VRF device and its routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vrf {
    /// The VRF device's interface index.
    pub index: u32,
    /// The routing table the VRF owns.
    pub table: u32,
}

/// How an interface should be: what [`Netlink::apply_settings`] sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The MTU in bytes.
    pub mtu: u32,
    /// The interface group.
    pub group: u32,
    /// The VRF to enslave to; `None` for none.
    pub controller: Option<u32>,
}

impl Netlink {
    /// Creates a WireGuard device (down, no configuration) and returns its index. The
    /// device's UDP sockets will live in this connection's namespace for its whole life,
    /// even when the device moves to another.
    pub async fn add_wireguard(&self, name: &str) -> Result<u32, SystemError> {
        let message = LinkWireguard::new(name).build();
        self.handle()
            .link()
            .add(message)
            .execute()
            .await
            .map_err(nl(format!("creating WireGuard device {name}")))?;
        self.link_by_name(name)
            .await?
            .map(|l| l.index)
            .ok_or_else(|| {
                SystemError::State(format!("WireGuard device {name} vanished after creation"))
            })
    }

    /// Moves an interface into the named namespace (`/run/netns/<name>`).
    pub async fn move_to_netns(&self, index: u32, netns: &str) -> Result<(), SystemError> {
        let file = std::fs::File::open(format!("/run/netns/{netns}")).map_err(|source| {
            SystemError::Netns {
                name: netns.to_string(),
                source,
            }
        })?;
        let message = LinkUnspec::new_with_index(index)
            .setns_by_fd(file.as_raw_fd())
            .build();
        self.handle()
            .link()
            .set(message)
            .execute()
            .await
            .map_err(nl(format!(
                "moving interface {index} into namespace {netns}"
            )))
    }

    /// Sets MTU, group and VRF of an interface where they differ from `settings`; returns
    /// whether the VRF changed (which cycles the interface and drops its IPv6 addresses).
    pub async fn apply_settings(
        &self,
        name: &str,
        settings: &Settings,
    ) -> Result<bool, SystemError> {
        let link = self
            .link_by_name(name)
            .await?
            .ok_or_else(|| SystemError::State(format!("interface {name} is missing")))?;
        let mut builder = LinkUnspec::new_with_index(link.index);
        let mut changed = false;
        if link.mtu != settings.mtu {
            builder = builder.mtu(settings.mtu);
            changed = true;
        }
        if link.group != settings.group {
            builder = builder.link_group(settings.group);
            changed = true;
        }
        let controller_changed = link.controller != settings.controller;
        if controller_changed {
            builder = match settings.controller {
                Some(vrf) => builder.controller(vrf),
                None => builder.nocontroller(),
            };
            changed = true;
        }
        if changed {
            self.handle()
                .link()
                .set(builder.build())
                .execute()
                .await
                .map_err(nl(format!("setting MTU, group and VRF of {name}")))?;
        }
        Ok(controller_changed)
    }

    /// Enslaves an interface to a VRF (or frees it with `None`) unless it already is.
    /// Returns whether it changed: the move cycles the interface, which drops its IPv6
    /// addresses, so the caller adds them again.
    pub async fn set_controller(
        &self,
        name: &str,
        controller: Option<u32>,
    ) -> Result<bool, SystemError> {
        let Some(link) = self.link_by_name(name).await? else {
            return Ok(false);
        };
        self.set_controller_of(&link, controller).await
    }

    /// As [`Netlink::set_controller`], for an interface from a listing already made (one
    /// dump for many interfaces instead of one each).
    pub async fn set_controller_of(
        &self,
        link: &crate::LinkInfo,
        controller: Option<u32>,
    ) -> Result<bool, SystemError> {
        let name = &link.name;
        if link.controller == controller {
            return Ok(false);
        }
        let builder = LinkUnspec::new_with_index(link.index);
        let message = match controller {
            Some(vrf) => builder.controller(vrf),
            None => builder.nocontroller(),
        }
        .build();
        self.handle()
            .link()
            .set(message)
            .execute()
            .await
            .map_err(nl(match controller {
                Some(vrf) => format!("enslaving {name} to the VRF (interface {vrf})"),
                None => format!("taking {name} out of its VRF"),
            }))?;
        Ok(true)
    }

    /// Turns off the kernel's own IPv6 link-local address on an interface: braid gives
    /// each link only the planned one.
    pub async fn no_auto_link_local(&self, index: u32) -> Result<(), SystemError> {
        let message = LinkUnspec::new_with_index(index)
            .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
            )]))
            .build();
        self.handle()
            .link()
            .set(message)
            .execute()
            .await
            .map_err(nl(format!(
                "turning off automatic IPv6 addresses on interface {index}"
            )))
    }

    /// Sets interface `index` up (IFF_UP). Errors: [`SystemError::Netlink`].
    pub async fn set_up(&self, index: u32) -> Result<(), SystemError> {
        let message = LinkUnspec::new_with_index(index).up().build();
        self.handle()
            .link()
            .set(message)
            .execute()
            .await
            .map_err(nl(format!("bringing interface {index} up")))
    }

    /// Brings a link up with multicast on (as TUN devices have it): babeld's hellos are
    /// link-local multicast.
    pub async fn set_up_multicast(&self, index: u32) -> Result<(), SystemError> {
        let message = LinkUnspec::new_with_index(index)
            .up()
            .multicast(true)
            .build();
        self.handle()
            .link()
            .set(message)
            .execute()
            .await
            .map_err(nl(format!("bringing interface {index} up")))
    }

    /// The VRF named `name`, created (up, in `group`) with a free table if missing. A VRF
    /// that exists keeps its table and group.
    pub async fn ensure_vrf(&self, name: &str, group: u32) -> Result<Vrf, SystemError> {
        let links = self.links().await?;
        if let Some(link) = links.iter().find(|l| l.name == name) {
            return match (link.kind.as_deref(), link.vrf_table) {
                (Some("vrf"), Some(table)) => {
                    if !link.up {
                        self.set_up(link.index).await?;
                    }
                    Ok(Vrf {
                        index: link.index,
                        table,
                    })
                }
                _ => Err(SystemError::State(format!(
                    "interface {name} exists and is not a VRF; rename it or choose another \"vrf\" name"
                ))),
            };
        }
        let used: Vec<u32> = links.iter().filter_map(|l| l.vrf_table).collect();
        let table = (VRF_TABLE_FIRST..=VRF_TABLE_LAST)
            .find(|t| !used.contains(t))
            .ok_or_else(|| {
                SystemError::State(format!(
                    "no free routing table for VRF {name} in {VRF_TABLE_FIRST}..={VRF_TABLE_LAST}"
                ))
            })?;
        let message = LinkVrf::new(name, table).build();
        self.handle()
            .link()
            .add(message)
            .execute()
            .await
            .map_err(nl(format!(
                "creating VRF {name} (table {table}); is the vrf module available?"
            )))?;
        let index = self
            .link_by_name(name)
            .await?
            .map(|l| l.index)
            .ok_or_else(|| SystemError::State(format!("VRF {name} vanished after creation")))?;
        let message = LinkUnspec::new_with_index(index)
            .link_group(group)
            .up()
            .build();
        self.handle()
            .link()
            .set(message)
            .execute()
            .await
            .map_err(nl(format!("bringing VRF {name} up")))?;
        tracing::info!(vrf = name, table, "created the VRF");
        Ok(Vrf { index, table })
    }

    /// Every address on an interface, link-local ones and the far ends of point-to-point
    /// ones included.
    pub async fn addresses(&self, index: u32) -> Result<Vec<std::net::IpAddr>, SystemError> {
        use futures_util::TryStreamExt;
        let mut stream = self
            .handle()
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut out = Vec::new();
        while let Some(message) = stream
            .try_next()
            .await
            .map_err(nl(format!("listing the addresses of interface {index}")))?
        {
            // A point-to-point address has the local end in IFA_LOCAL and the far end in
            // IFA_ADDRESS; an ordinary one the same address in both.
            for attribute in &message.attributes {
                use netlink_packet_route::address::AddressAttribute;
                if let AddressAttribute::Local(ip) | AddressAttribute::Address(ip) = attribute
                    && !out.contains(ip)
                {
                    out.push(*ip);
                }
            }
        }
        Ok(out)
    }

    /// The VRF named `name`, if it exists.
    pub async fn vrf(&self, name: &str) -> Result<Option<Vrf>, SystemError> {
        Ok(self.link_by_name(name).await?.and_then(|l| {
            l.vrf_table.map(|table| Vrf {
                index: l.index,
                table,
            })
        }))
    }
}
