//! Interface-group accounting over rtnetlink.

use crate::SystemError;
use futures_util::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{
    InfoData, InfoVrf, LinkAttribute, LinkFlags, LinkInfo as Info, LinkMessage,
};
use rtnetlink::{Handle, LinkUnspec};
use std::net::{IpAddr, Ipv4Addr};

/// An interface as netlink reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// The kernel's interface index.
    pub index: u32,
    /// The interface name (at most 15 bytes).
    pub name: String,
    /// The interface group (`ip link set group`); 0 is the default group.
    pub group: u32,
    /// The MTU in bytes.
    pub mtu: u32,
    /// Whether the interface is administratively up (IFF_UP).
    pub up: bool,
    /// The link kind (`wireguard`, `vrf`, `tun`, ...), when the kernel reports one.
    pub kind: Option<String>,
    /// The index of the interface's controller (its VRF or bridge), if any.
    pub controller: Option<u32>,
    /// For a VRF: its routing table.
    pub vrf_table: Option<u32>,
}

/// A route-netlink connection in the calling thread's network namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> SystemError {
    let what = what.into();
    move |source| SystemError::Netlink { what, source }
}

/// ENODEV: "no such device", what deleting an empty group answers.
fn is_no_device(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::ENODEV)
}

impl Netlink {
    /// Opens a connection; its socket belongs to the namespace of the calling thread, and
    /// its driver runs on the current tokio runtime.
    pub fn connect() -> Result<Self, SystemError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(SystemError::Connect)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Opens a connection whose socket belongs to the named namespace (or the calling
    /// thread's when `None`). For another namespace, a dedicated thread enters it and drives
    /// the connection on its own runtime until the last handle is dropped; the handle works
    /// from any runtime.
    pub fn connect_in(netns: Option<&str>) -> Result<Self, SystemError> {
        let Some(name) = netns else {
            return Self::connect();
        };
        let name = name.to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Err(e) = crate::netns::enter(&name) {
                let _ = tx.send(Err(e));
                return;
            }
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(source) => {
                    let _ = tx.send(Err(SystemError::Netns { name, source }));
                    return;
                }
            };
            runtime.block_on(async move {
                match rtnetlink::new_connection() {
                    Ok((connection, handle, _)) => {
                        let _ = tx.send(Ok(handle));
                        connection.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(SystemError::Connect(e)));
                    }
                }
            });
        });
        let handle = rx.recv().map_err(|_| {
            SystemError::Connect(std::io::Error::other("the netlink thread ended"))
        })??;
        Ok(Self { handle })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Creates a bridge (if missing) in `group`, up, and returns its index. An existing
    /// bridge of that name is adopted as it is, with its ports (the workloads attached to
    /// it stay attached across a restart of braid); an interface of that name that is not
    /// a bridge is an error.
    pub async fn ensure_bridge(&self, name: &str, group: u32) -> Result<u32, SystemError> {
        match self.link_by_name(name).await? {
            Some(existing) if existing.kind.as_deref().is_some_and(|k| k != "bridge") => {
                return Err(SystemError::State(format!(
                    "interface {name} exists and is a {}, not a bridge; remove it, or name \
                     another bridge in the config's address_plan.bridge",
                    existing.kind.unwrap_or_default()
                )));
            }
            Some(_) => {}
            None => {
                let message = rtnetlink::LinkBridge::new(name).build();
                match self.handle.link().add(message).execute().await {
                    Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => {}
                    other => other.map_err(nl(format!("creating bridge {name}")))?,
                }
                tracing::info!(bridge = name, "created the node's bridge");
            }
        }
        let link = self
            .link_by_name(name)
            .await?
            .ok_or_else(|| SystemError::Netlink {
                what: format!("bridge {name} vanished after creation"),
                source: rtnetlink::Error::RequestFailed,
            })?;
        if link.group != group || !link.up {
            let message = LinkUnspec::new_with_index(link.index)
                .link_group(group)
                .up()
                .build();
            self.handle
                .link()
                .set(message)
                .execute()
                .await
                .map_err(nl(format!("bringing bridge {name} up")))?;
        }
        Ok(link.index)
    }

    /// Adds an address to an interface; an address already there is fine.
    pub async fn add_address(
        &self,
        index: u32,
        address: IpAddr,
        prefix_len: u8,
    ) -> Result<(), SystemError> {
        match self
            .handle
            .address()
            .add(index, address, prefix_len)
            .execute()
            .await
        {
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => Ok(()),
            other => other.map_err(nl(format!(
                "adding {address}/{prefix_len} to interface {index}"
            ))),
        }
    }

    /// Removes `address` (whatever its prefix length) from the interface `index`; nothing
    /// when it is not there.
    pub async fn remove_address(&self, index: u32, address: IpAddr) -> Result<(), SystemError> {
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let what = || format!("removing {address} from interface {index}");
        while let Some(message) = stream.try_next().await.map_err(nl(what()))? {
            let holds = message.attributes.iter().any(|a| {
                matches!(a, AddressAttribute::Local(ip) | AddressAttribute::Address(ip) if *ip == address)
            });
            if holds {
                return self
                    .handle
                    .address()
                    .del(message)
                    .execute()
                    .await
                    .map_err(nl(what()));
            }
        }
        Ok(())
    }

    /// The addresses on an interface that are not link-local.
    pub async fn global_addresses(&self, index: u32) -> Result<Vec<IpAddr>, SystemError> {
        let mut out = self.addresses(index).await?;
        out.retain(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_link_local(),
            IpAddr::V6(v6) => !v6.is_unicast_link_local(),
        });
        Ok(out)
    }

    /// Every interface of the namespace.
    pub async fn links(&self) -> Result<Vec<LinkInfo>, SystemError> {
        let mut stream = self.handle.link().get().execute();
        let mut out = Vec::new();
        while let Some(message) = stream.try_next().await.map_err(nl("listing interfaces"))? {
            out.push(info(&message));
        }
        Ok(out)
    }

    /// The interfaces in `group`.
    pub async fn links_in_group(&self, group: u32) -> Result<Vec<LinkInfo>, SystemError> {
        Ok(self
            .links()
            .await?
            .into_iter()
            .filter(|l| l.group == group)
            .collect())
    }

    /// One interface by name: a single request, not a listing (a node with a thousand
    /// links asks this once per link). `None` when there is no such interface.
    pub async fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>, SystemError> {
        let mut stream = self.handle.link().get().match_name(name).execute();
        match stream.try_next().await {
            Ok(message) => Ok(message.map(|m| info(&m))),
            Err(rtnetlink::Error::NetlinkError(e))
                if e.raw_code() == -libc::ENODEV || e.raw_code() == -libc::EINVAL =>
            {
                Ok(None)
            }
            Err(source) => Err(SystemError::Netlink {
                what: format!("looking up interface {name}"),
                source,
            }),
        }
    }

    /// Puts interface `index` in interface group `group` (IFLA_GROUP). Errors: [`SystemError::Netlink`].
    pub async fn set_group(&self, index: u32, group: u32) -> Result<(), SystemError> {
        let message = LinkUnspec::new_with_index(index).link_group(group).build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(nl(format!("setting group {group} on interface {index}")))
    }

    /// Moves every interface of `active` into `stale`; returns how many moved.
    pub async fn mark_stale(&self, active: u32, stale: u32) -> Result<usize, SystemError> {
        let links = self.links_in_group(active).await?;
        for link in &links {
            self.set_group(link.index, stale).await?;
        }
        Ok(links.len())
    }

    /// Deletes every interface of `group` in one request (RTM_DELLINK with index 0 and
    /// IFLA_GROUP). An empty group is not an error.
    pub async fn delete_group(&self, group: u32) -> Result<(), SystemError> {
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::Group(group));
        match self.handle.link().del_with_message(message).execute().await {
            Err(e) if is_no_device(&e) => Ok(()),
            other => other.map_err(nl(format!("deleting interface group {group}"))),
        }
    }

    /// Adds a point-to-point IPv4 address: `local` on the interface with `peer` as the far
    /// end, so the kernel routes `peer/32` over this interface.
    pub async fn add_peer_address_v4(
        &self,
        index: u32,
        local: Ipv4Addr,
        peer: Ipv4Addr,
    ) -> Result<(), SystemError> {
        let mut request = self.handle.address().add(index, IpAddr::V4(local), 32);
        for attribute in &mut request.message_mut().attributes {
            if let AddressAttribute::Address(address) = attribute {
                *address = IpAddr::V4(peer);
            }
        }
        match request.execute().await {
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => Ok(()),
            other => other.map_err(nl(format!(
                "adding {local} peer {peer} to interface {index}"
            ))),
        }
    }

    /// Deletes one interface by name, if it exists.
    pub async fn delete_link(&self, name: &str) -> Result<bool, SystemError> {
        match self.link_by_name(name).await? {
            None => Ok(false),
            Some(link) => {
                self.handle
                    .link()
                    .del(link.index)
                    .execute()
                    .await
                    .map_err(nl(format!("deleting interface {name}")))?;
                Ok(true)
            }
        }
    }
}

fn info(message: &LinkMessage) -> LinkInfo {
    let mut out = LinkInfo {
        index: message.header.index,
        name: String::new(),
        group: 0,
        mtu: 0,
        up: message.header.flags.contains(LinkFlags::Up),
        kind: None,
        controller: None,
        vrf_table: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => out.name = name.clone(),
            LinkAttribute::Group(group) => out.group = *group,
            LinkAttribute::Mtu(mtu) => out.mtu = *mtu,
            LinkAttribute::Controller(index) => out.controller = Some(*index),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        Info::Kind(kind) => out.kind = Some(kind.to_string()),
                        Info::Data(InfoData::Vrf(data)) => {
                            out.vrf_table = data.iter().find_map(|d| match d {
                                InfoVrf::TableId(t) => Some(*t),
                                _ => None,
                            });
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    out
}
