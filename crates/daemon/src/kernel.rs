//! The kernel backend: each link is a `wireguard` interface, created over rtnetlink and
//! configured over generic netlink. The kernel carries the packets; this process only
//! creates, changes, removes and reads the devices, so `braid up` can configure them and
//! exit.
//!
//! With an overlay namespace, the device is created in this process's namespace (where its
//! UDP socket stays, on the underlay) and then moved into the overlay namespace.

use crate::backend::{BackendError, LinkBackend, LinkSetup, LinkStats};
use braid_plan::LinkAddresses;
use braid_plan::reconcile::{Change, KernelUpdate, kernel_update};
use braid_system::links::Settings;
use braid_system::sync::RouteSocket;
use braid_system::wireguard::{self, DeviceConfig, Genl, PeerConfig};
use braid_system::{Netlink, SystemError};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::SystemTime;

/// Everything about one link that the kernel should hold: the plan's fields in the
/// kernel's shapes (rtnetlink settings, a generic netlink device).
#[derive(Debug, Clone)]
struct Desired {
    name: String,
    netns: Option<String>,
    vrf: Option<String>,
    settings: Settings,
    device: DeviceConfig,
    addresses: LinkAddresses,
}

fn desired(setup: &LinkSetup<'_>) -> Desired {
    let link = setup.link;
    Desired {
        name: link.name.clone(),
        netns: setup.netns.map(str::to_string),
        vrf: setup.vrf.map(str::to_string),
        settings: Settings {
            mtu: link.mtu,
            group: link.group,
            controller: None, // the VRF's index, filled in once it exists
        },
        device: DeviceConfig {
            private_key: setup.private_key.0,
            listen_port: link.listen_port,
            fwmark: link.fwmark,
            peer: PeerConfig {
                public_key: link.peer_public_key.0,
                endpoint: setup.endpoint,
                keepalive: link.keepalive.unwrap_or(0),
            },
        },
        addresses: link.addresses,
    }
}

fn error(name: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError {
        link: name.to_string(),
        message: e.to_string(),
    }
}

/// What `stats` remembers to tell when data last arrived: the kernel reports byte counters
/// but no receive time, so the time the counter was first seen higher stands in for it.
#[derive(Debug, Clone, Copy)]
struct RxSeen {
    bytes: u64,
    at: Option<SystemTime>,
}

/// One job for the netlink thread: runs an async netlink call on the thread's runtime.
type Job = Box<dyn FnOnce(&tokio::runtime::Runtime) + Send>;

/// A thread with a current-thread tokio runtime, started on first use and kept for the
/// backend's life, that runs the backend's rtnetlink calls. The backend's interface
/// ([`LinkBackend`]) is synchronous and is called from inside the daemon's async runtime,
/// which cannot be entered again from its own threads: the calls go to this one thread
/// instead of a new thread and runtime each. It ends when the backend is dropped.
struct NetlinkThread {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl NetlinkThread {
    fn start() -> Result<Self, SystemError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(netlink_thread_error)?;
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("braid-netlink".into())
            .spawn(move || {
                for job in rx {
                    job(&runtime);
                }
            })
            .map_err(netlink_thread_error)?;
        Ok(Self { jobs })
    }

    /// Runs `f`'s future on the thread and waits for its result; a panic in it is raised
    /// again here (as `braid_system::netns::block_on` does).
    fn block_on<T, F>(&self, f: impl FnOnce() -> F + Send + 'static) -> Result<T, SystemError>
    where
        T: Send + 'static,
        F: Future<Output = T>,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let job: Job = Box::new(move |runtime| {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(f())));
            let _ = tx.send(result);
        });
        let gone = || netlink_thread_error(std::io::Error::other("the netlink thread ended"));
        self.jobs.send(job).map_err(|_| gone())?;
        match rx.recv().map_err(|_| gone())? {
            Ok(value) => Ok(value),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

fn netlink_thread_error(source: std::io::Error) -> SystemError {
    SystemError::Netns {
        name: "(current)".into(),
        source,
    }
}

/// The kernel backend: every link a `wireguard` interface of the kernel (see the module's
/// documentation). Needs a kernel with WireGuard ([`available`]).
#[derive(Default)]
pub struct KernelBackend {
    /// The links this backend runs, each with its overlay namespace.
    links: BTreeMap<String, Option<String>>,
    /// The thread that runs the rtnetlink calls, started on first use.
    netlink: std::sync::OnceLock<NetlinkThread>,
    /// One generic netlink socket per namespace, opened on first use.
    genl: Mutex<HashMap<Option<String>, Genl>>,
    /// One route netlink socket per namespace, for interface counters.
    route: Mutex<HashMap<Option<String>, RouteSocket>>,
    rx: Mutex<HashMap<String, RxSeen>>,
}

impl KernelBackend {
    /// A backend that runs no link yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs an async rtnetlink call on the backend's netlink thread ([`NetlinkThread`]).
    fn block_on<T, F>(&self, f: impl FnOnce() -> F + Send + 'static) -> Result<T, SystemError>
    where
        T: Send + 'static,
        F: Future<Output = T>,
    {
        if self.netlink.get().is_none() {
            let _ = self.netlink.set(NetlinkThread::start()?);
        }
        match self.netlink.get() {
            Some(thread) => thread.block_on(f),
            None => Err(netlink_thread_error(std::io::Error::other(
                "the netlink thread did not start",
            ))),
        }
    }

    fn with_genl<T>(
        &self,
        netns: Option<&str>,
        f: impl FnOnce(&mut Genl) -> Result<T, SystemError>,
    ) -> Result<T, SystemError> {
        let mut sockets = self.genl.lock().unwrap_or_else(|p| p.into_inner());
        let key = netns.map(str::to_string);
        let genl = match sockets.entry(key.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(Genl::connect_in(netns)?),
        };
        let result = f(genl);
        if result.is_err() {
            // A broken socket is opened again next time.
            sockets.remove(&key);
        }
        result
    }

    fn with_route<T>(
        &self,
        netns: Option<&str>,
        f: impl FnOnce(&mut RouteSocket) -> Result<T, SystemError>,
    ) -> Result<T, SystemError> {
        let mut sockets = self.route.lock().unwrap_or_else(|p| p.into_inner());
        let key = netns.map(str::to_string);
        let socket = match sockets.entry(key.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(RouteSocket::connect_in(netns)?)
            }
        };
        let result = f(socket);
        if result.is_err() {
            sockets.remove(&key);
        }
        result
    }

    /// Creates the device if missing and brings every setting in line, in place: an
    /// existing device keeps its index, and its session when the peer stays the same.
    fn ensure(&self, desired: &Desired) -> Result<(), SystemError> {
        let d = desired.clone();
        self.block_on(move || async move { ensure_interface(d).await })??;
        let name = desired.name.as_str();
        self.with_genl(desired.netns.as_deref(), |genl| {
            let current = genl.device(name)?;
            // Another peer (or none yet): replace, which ends any old session. The same
            // peer: update in place.
            let same_peer = current.peers.len() == 1
                && current.peers[0].public_key == desired.device.peer.public_key;
            genl.configure(name, &desired.device, !same_peer)
        })
    }

    /// How the device differs from the desired one: `None` when it matches exactly.
    fn difference(&self, desired: &Desired) -> Result<Option<String>, SystemError> {
        let d = desired.clone();
        let interface = self.block_on(move || async move { interface_difference(&d).await })??;
        if interface.is_some() {
            return Ok(interface);
        }
        let device = self.with_genl(desired.netns.as_deref(), |genl| genl.device(&desired.name))?;
        let want = &desired.device;
        let mut all = wireguard::all_addresses().to_vec();
        all.sort();
        let peer = match device.peers.as_slice() {
            [peer] => peer,
            peers => return Ok(Some(format!("{} peers", peers.len()))),
        };
        let mut ips = peer.allowed_ips.clone();
        ips.sort();
        let differences = [
            (device.private_key != Some(want.private_key), "private key"),
            (
                want.listen_port != 0 && device.listen_port != want.listen_port,
                "listen port",
            ),
            (device.fwmark != want.fwmark, "fwmark"),
            (peer.public_key != want.peer.public_key, "peer key"),
            (peer.keepalive != want.peer.keepalive, "keepalive"),
            (
                want.peer.endpoint.is_some() && peer.endpoint != want.peer.endpoint,
                "endpoint",
            ),
            (ips != all, "allowed IPs"),
        ];
        Ok(differences
            .iter()
            .find(|(differs, _)| *differs)
            .map(|(_, what)| what.to_string()))
    }
}

async fn overlay_netlink(netns: Option<&str>) -> Result<Netlink, SystemError> {
    Netlink::connect_in(netns)
}

/// The rtnetlink part of [`KernelBackend::ensure`]: device, VRF, MTU, group, addresses, up.
async fn ensure_interface(d: Desired) -> Result<(), SystemError> {
    let overlay = overlay_netlink(d.netns.as_deref()).await?;
    if let Some(ns) = &d.netns {
        braid_system::netns::ensure(ns)?;
    }
    match overlay.link_by_name(&d.name).await? {
        Some(link) if link.kind.as_deref() == Some("wireguard") => {}
        Some(link) if link.group == d.settings.group => {
            // braid's own interface of another kind (a TUN left by the userspace backend).
            overlay.delete_link(&d.name).await?;
            create(&d).await?;
        }
        Some(link) => {
            return Err(SystemError::State(format!(
                "interface {} exists, is a {} device and not braid's (group {}); remove it or change the transport's prefix",
                d.name,
                link.kind.as_deref().unwrap_or("(unknown)"),
                link.group
            )));
        }
        None => create(&d).await?,
    }
    let index = overlay
        .link_by_name(&d.name)
        .await?
        .map(|l| l.index)
        .ok_or_else(|| SystemError::State(format!("WireGuard device {} vanished", d.name)))?;
    let mut settings = d.settings.clone();
    if let Some(vrf) = &d.vrf {
        settings.controller = Some(overlay.ensure_vrf(vrf, d.settings.group).await?.index);
    }
    overlay.apply_settings(&d.name, &settings).await?;
    // Addresses after the VRF: enslaving cycles the device, which drops IPv6 addresses.
    add_addresses(&overlay, index, &d.addresses).await?;
    overlay.set_up_multicast(index).await
}

/// Creates the device in this namespace (its sockets stay here) and moves it to the
/// overlay namespace, if any.
async fn create(d: &Desired) -> Result<(), SystemError> {
    let here = Netlink::connect()?;
    let index = here.add_wireguard(&d.name).await?;
    here.no_auto_link_local(index).await?;
    if let Some(ns) = &d.netns {
        here.move_to_netns(index, ns).await?;
        tracing::debug!(link = %d.name, netns = %ns, "moved into the overlay namespace");
    }
    Ok(())
}

/// The link's addresses as the plan gives them: the node's IPv6 link-local /64 and its IPv4
/// link address, point to point toward the peer's when the peer has one.
pub async fn add_addresses(
    nl: &Netlink,
    index: u32,
    addresses: &LinkAddresses,
) -> Result<(), SystemError> {
    let local6 = addresses.link_local6;
    nl.add_address(index, IpAddr::V6(local6.addr()), local6.prefix_len())
        .await?;
    match (addresses.link4, addresses.peer_link4) {
        (Some(local), Some(peer)) => nl.add_peer_address_v4(index, local.addr(), peer).await,
        (Some(net), None) => {
            nl.add_address(index, IpAddr::V4(net.addr()), net.prefix_len())
                .await
        }
        _ => Ok(()),
    }
}

/// The rtnetlink part of [`KernelBackend::difference`].
async fn interface_difference(d: &Desired) -> Result<Option<String>, SystemError> {
    let overlay = overlay_netlink(d.netns.as_deref()).await?;
    let Some(link) = overlay.link_by_name(&d.name).await? else {
        return Ok(Some("missing".into()));
    };
    let controller = match &d.vrf {
        None => None,
        Some(vrf) => match overlay.vrf(vrf).await? {
            Some(v) => Some(v.index),
            None => return Ok(Some(format!("VRF {vrf} missing"))),
        },
    };
    let present = overlay.addresses(link.index).await?;
    let a = &d.addresses;
    let wanted: Vec<IpAddr> = std::iter::once(IpAddr::V6(a.link_local6.addr()))
        .chain(a.link4.map(|n| IpAddr::V4(n.addr())))
        .chain(a.peer_link4.map(IpAddr::V4))
        .collect();
    let differences = [
        (link.kind.as_deref() != Some("wireguard"), "kind"),
        (link.mtu != d.settings.mtu, "MTU"),
        (link.group != d.settings.group, "group"),
        (link.controller != controller, "VRF"),
        (!link.up, "down"),
        (!wanted.iter().all(|a| present.contains(a)), "addresses"),
    ];
    Ok(differences
        .iter()
        .find(|(differs, _)| *differs)
        .map(|(_, what)| what.to_string()))
}

impl LinkBackend for KernelBackend {
    fn name(&self) -> &'static str {
        "kernel"
    }

    fn adopt(&mut self, setup: LinkSetup<'_>) -> bool {
        let d = desired(&setup);
        match self.difference(&d) {
            Ok(None) => {
                tracing::info!(link = %d.name, "link already up as planned; left as it is");
                self.links.insert(d.name, d.netns);
                true
            }
            Ok(Some(difference)) => {
                tracing::debug!(link = %d.name, %difference, "the running device differs from the plan");
                false
            }
            Err(e) => {
                tracing::debug!(link = %d.name, "cannot compare with the running device: {e}");
                false
            }
        }
    }

    fn add(&mut self, setup: LinkSetup<'_>) -> Result<(), BackendError> {
        let d = desired(&setup);
        self.ensure(&d).map_err(|e| error(&d.name, e))?;
        tracing::info!(link = %d.name, peer = %setup.link.peer, "link up (kernel WireGuard)");
        self.links.insert(d.name, d.netns);
        Ok(())
    }

    fn update(&mut self, setup: LinkSetup<'_>, changes: &[Change]) -> Result<(), BackendError> {
        let d = desired(&setup);
        let running = self.links.contains_key(&d.name);
        let step = kernel_update(changes);
        match step {
            KernelUpdate::Peer if running => self
                .with_genl(d.netns.as_deref(), |genl| {
                    genl.update_peer(&d.name, &d.device.peer)
                })
                .map_err(|e| error(&d.name, e))?,
            KernelUpdate::Recreate if running => {
                self.remove(&d.name)?;
                self.ensure(&d).map_err(|e| error(&d.name, e))?;
            }
            _ => self.ensure(&d).map_err(|e| error(&d.name, e))?,
        }
        if step == KernelUpdate::Recreate {
            tracing::info!(link = %d.name, ?changes, "link recreated");
        } else {
            tracing::info!(link = %d.name, ?changes, "link updated in place");
        }
        self.links.insert(d.name, d.netns);
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<(), BackendError> {
        let netns = self.links.remove(name).flatten();
        self.rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let owned = name.to_string();
        self.block_on(move || async move {
            Netlink::connect_in(netns.as_deref())?
                .delete_link(&owned)
                .await
        })
        .and_then(|r| r)
        .map_err(|e| error(name, e))?;
        tracing::info!(link = %name, "link removed");
        Ok(())
    }

    fn stats(&self, name: &str) -> Option<LinkStats> {
        let netns = self.links.get(name)?;
        let device = self
            .with_genl(netns.as_deref(), |genl| genl.device(name))
            .inspect_err(|e| tracing::debug!(link = %name, "reading the device: {e}"))
            .ok()?;
        let peer = device.peers.first().cloned().unwrap_or_default();
        let last_rx = {
            let mut rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
            let seen = rx
                .entry(name.to_string())
                .or_insert(RxSeen { bytes: 0, at: None });
            if peer.rx_bytes > seen.bytes {
                *seen = RxSeen {
                    bytes: peer.rx_bytes,
                    at: Some(SystemTime::now()),
                };
            }
            seen.at
        };
        let counters = self
            .with_route(netns.as_deref(), |route| route.counters(name))
            .inspect_err(|e| tracing::debug!(link = %name, "reading the counters: {e}"))
            .ok()
            .flatten()
            .unwrap_or_default();
        Some(LinkStats {
            endpoint: peer.endpoint,
            listen_port: device.listen_port,
            last_handshake: peer.last_handshake,
            last_rx,
            rx_bytes: peer.rx_bytes,
            tx_bytes: peer.tx_bytes,
            // Packets through the interface, and what the kernel counted as errors on it:
            // datagrams that failed to decrypt or were malformed, packets it could not
            // send (no endpoint or session).
            rx_packets: counters.rx_packets,
            tx_packets: counters.tx_packets,
            dropped_bad_packet: counters.rx_errors + counters.rx_dropped,
            dropped_no_route: counters.tx_errors + counters.tx_dropped,
            ..LinkStats::default()
        })
    }

    /// The links whose WireGuard device was deleted under the daemon (an admin's `ip link
    /// del`, another tool's cleanup), asked of the kernel in each link's namespace; the
    /// reconciler makes them again (`Reconciler::recreate_missing`, as for the userspace
    /// backend).
    fn missing(&mut self) -> Vec<String> {
        gone(&self.links, |name, netns| {
            self.with_route(netns, |route| route.counters(name))
                .map(|counters| counters.is_some())
        })
    }

    fn set_resolved(&mut self, plan: &braid_plan::LinkPlan, addr: std::net::SocketAddr) {
        let (Some(netns), Some(endpoint)) = (self.links.get(&plan.name), &plan.endpoint) else {
            return;
        };
        let peer = PeerConfig {
            public_key: plan.peer_public_key.0,
            endpoint: Some(addr),
            keepalive: plan.keepalive.unwrap_or(0),
        };
        let result = self.with_genl(netns.as_deref(), |genl| {
            let current = genl.device(&plan.name)?;
            if current.peers.first().and_then(|p| p.endpoint) == Some(addr) {
                return Ok(false);
            }
            genl.update_peer(&plan.name, &peer).map(|()| true)
        });
        match result {
            Ok(true) => {
                tracing::info!(link = %plan.name, host = %endpoint.host, %addr, "endpoint re-resolved");
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(link = %plan.name, "re-resolving the endpoint: {e}"),
        }
    }
}

/// The links of `links` (name and overlay namespace) whose interface `exists` says is not
/// there. A failed look-up (a netlink error, the namespace unreadable for a moment) counts
/// as present: making a link again that is there would end its session for nothing, and the
/// next check asks again.
fn gone(
    links: &BTreeMap<String, Option<String>>,
    mut exists: impl FnMut(&str, Option<&str>) -> Result<bool, SystemError>,
) -> Vec<String> {
    links
        .iter()
        .filter(|(name, netns)| match exists(name, netns.as_deref()) {
            Ok(present) => !present,
            Err(e) => {
                tracing::debug!(link = %name, "cannot tell whether the device exists: {e}");
                false
            }
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Whether this machine can run the kernel backend (see
/// [`braid_system::wireguard::available`]).
pub fn available() -> bool {
    braid_system::netns::block_on(|| async {
        match Netlink::connect() {
            Ok(nl) => wireguard::available(&nl).await,
            Err(_) => false,
        }
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_devices_known_to_be_gone_are_missing() {
        let links: BTreeMap<String, Option<String>> = [
            ("brd4x1".to_string(), None),
            ("brd4x2".to_string(), Some("overlay".to_string())),
            ("brd4x3".to_string(), None),
            ("brd4x4".to_string(), Some("overlay".to_string())),
        ]
        .into_iter()
        .collect();
        let mut asked = Vec::new();
        let gone = gone(&links, |name, netns| {
            asked.push((name.to_string(), netns.map(str::to_string)));
            match name {
                "brd4x2" | "brd4x4" => Ok(name == "brd4x4"),
                "brd4x3" => Err(SystemError::State("netlink busy".into())),
                _ => Ok(true),
            }
        });
        // Deleted: brd4x2. Unknown (the look-up failed): brd4x3 stays, asked again later.
        assert_eq!(gone, vec!["brd4x2".to_string()]);
        // Each link is looked up in its own namespace.
        assert!(asked.contains(&("brd4x2".to_string(), Some("overlay".to_string()))));
        assert!(asked.contains(&("brd4x1".to_string(), None)));
        assert_eq!(asked.len(), 4);
    }
}
