//! The userspace backend: each link is a `braid_link::Link` (TUN + UDP + boringtun) in this
//! process.

use crate::backend::{BackendError, LinkBackend, LinkSetup, LinkStats};
use braid_link::{Link, LinkConfig};
use braid_model::{AddressFamily, Host};
use braid_plan::RemoteEndpoint;
use braid_plan::reconcile::Change;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The userspace backend: every link a `braid_link::Link` (a TUN device and UDP sockets
/// carried by braid's reactor threads) in this process.
#[derive(Default)]
pub struct UserspaceBackend {
    links: BTreeMap<String, Link>,
}

impl UserspaceBackend {
    /// A backend that runs no link yet.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Resolves a planned endpoint to an address of the link's family without blocking the
/// async runtime: `tokio::net::lookup_host` runs the system resolver (getaddrinfo(3)) on
/// tokio's blocking pool. A DNS name that does not resolve (yet) gives `None`, with a
/// warning: the link waits for the peer to dial in. The only DNS look-up of the daemon;
/// backends never resolve (see [`crate::backend::LinkSetup::endpoint`]).
pub async fn resolve_async(endpoint: &RemoteEndpoint, family: AddressFamily) -> Option<SocketAddr> {
    match &endpoint.host {
        Host::Ip(ip) => Some(SocketAddr::new(*ip, endpoint.port)),
        Host::Name(name) => match tokio::net::lookup_host((name.as_str(), endpoint.port)).await {
            Ok(mut addrs) => addrs.find(|a| AddressFamily::of(a.ip()) == family),
            Err(e) => {
                tracing::warn!(%name, "cannot resolve the peer's address: {e}");
                None
            }
        },
    }
}

/// The link's configuration: the plan's fields, one to one.
fn link_config(setup: &LinkSetup<'_>) -> LinkConfig {
    let link = setup.link;
    LinkConfig {
        name: link.name.clone(),
        mtu: link.mtu,
        group: link.group,
        listen_port: link.listen_port,
        ipv6: link.family == AddressFamily::Ip6,
        endpoint: setup.endpoint,
        fwmark: link.fwmark,
        private_key: setup.private_key.0,
        peer_public_key: link.peer_public_key.0,
        keepalive: link.keepalive,
        link_local6: Some(link.addresses.link_local6),
        link4: link.addresses.link4,
        peer_link4: link.addresses.peer_link4,
        netns: setup.netns.map(str::to_string),
        uapi_dir: Some(braid_link::UAPI_DIR.into()),
        paths: link.paths.clone(),
        scheduler: link.scheduler,
        liveness: crate::liveness::link_liveness(setup.liveness),
    }
}

fn error(name: &str, e: impl std::fmt::Display) -> BackendError {
    // braid_link errors already start with "link NAME: "; keep one prefix.
    let message = e.to_string();
    let message = message
        .strip_prefix(&format!("link {name}: "))
        .map(str::to_string)
        .unwrap_or(message);
    BackendError {
        link: name.to_string(),
        message,
    }
}

impl UserspaceBackend {
    /// Changes a running bonded link's paths and scheduler in place (uplinks added or
    /// taken out, weights, the scheduler): the TUN device, its routes, the session and
    /// running streams stay. False when the link cannot (it runs without a bond, or has no
    /// path left): it is made again.
    fn paths_in_place(&mut self, setup: &LinkSetup<'_>) -> bool {
        let plan = setup.link;
        let Some(link) = self.links.get_mut(&plan.name) else {
            return false;
        };
        match link.set_paths(&plan.paths, plan.scheduler) {
            Ok(done) => {
                if done {
                    tracing::info!(link = %plan.name, paths = plan.paths.len(), scheduler = ?plan.scheduler, "paths changed in place");
                }
                done
            }
            Err(e) => {
                tracing::warn!(link = %plan.name, "cannot change the paths in place ({e}); making the link again");
                false
            }
        }
    }
}

impl LinkBackend for UserspaceBackend {
    fn name(&self) -> &'static str {
        "userspace"
    }

    fn add(&mut self, setup: LinkSetup<'_>) -> Result<(), BackendError> {
        let name = setup.link.name.clone();
        if let Some(ns) = setup.netns {
            braid_system::netns::ensure(ns).map_err(|e| error(&name, e))?;
        }
        let link = Link::start(link_config(&setup)).map_err(|e| error(&name, e))?;
        tracing::info!(link = %name, peer = %setup.link.peer, "link up");
        self.links.insert(name, link);
        Ok(())
    }

    fn update(&mut self, setup: LinkSetup<'_>, changes: &[Change]) -> Result<(), BackendError> {
        let name = setup.link.name.clone();
        let in_place = changes
            .iter()
            .all(|c| braid_plan::reconcile::in_place_userspace(*c))
            && (!changes.contains(&Change::Paths) || self.paths_in_place(&setup));
        match self.links.get(&name) {
            Some(link) if in_place => {
                if changes.contains(&Change::LocalKey) {
                    link.set_private_key(setup.private_key.0);
                }
                if changes.contains(&Change::Endpoint) {
                    link.set_endpoint(setup.endpoint);
                }
                if changes.contains(&Change::Keepalive) {
                    link.set_keepalive(setup.link.keepalive);
                }
                tracing::info!(link = %name, ?changes, "link updated in place");
                Ok(())
            }
            _ => {
                // MTU, mark, group, port, peer or addresses changed: the link is made again.
                let mut setup = setup;
                if let Some(old) = self.links.remove(&name) {
                    // A DNS endpoint keeps the address its last look-up gave (as kernel
                    // WireGuard keeps a device's endpoint), instead of none until the next.
                    if setup.endpoint.is_none()
                        && !changes.contains(&Change::Endpoint)
                        && setup.link.endpoint.is_some()
                    {
                        setup.endpoint = old.stats().endpoint;
                    }
                    old.stop();
                }
                tracing::info!(link = %name, ?changes, "link recreated");
                self.add(setup)
            }
        }
    }

    fn remove(&mut self, name: &str) -> Result<(), BackendError> {
        if let Some(link) = self.links.remove(name) {
            link.stop();
            tracing::info!(link = %name, "link removed");
        }
        Ok(())
    }

    fn set_path_state(&mut self, interface: &str, up: bool) {
        for link in self.links.values() {
            link.set_path_state(interface, up);
        }
    }

    fn set_resolved(&mut self, plan: &braid_plan::LinkPlan, addr: SocketAddr) {
        let (Some(link), Some(endpoint)) = (self.links.get(&plan.name), &plan.endpoint) else {
            return;
        };
        if link.stats().endpoint != Some(addr) {
            tracing::info!(link = %plan.name, host = %endpoint.host, %addr, "endpoint re-resolved");
            link.set_endpoint(Some(addr));
        }
    }

    fn remove_all(&mut self, names: &[String]) -> Vec<Result<(), BackendError>> {
        let links: Vec<Link> = names
            .iter()
            .filter_map(|name| self.links.remove(name))
            .collect();
        for link in &links {
            link.request_stop();
        }
        // Closing a TUN device waits for the kernel to unregister it: close them from
        // several threads at once.
        let mut links = links;
        let per_thread = links.len().div_ceil(16).max(1);
        std::thread::scope(|scope| {
            while !links.is_empty() {
                let chunk: Vec<Link> = links.drain(..per_thread.min(links.len())).collect();
                scope.spawn(move || drop(chunk));
            }
        });
        tracing::info!(links = names.len(), "links removed");
        names.iter().map(|_| Ok(())).collect()
    }

    fn missing(&mut self) -> Vec<String> {
        self.links
            .iter()
            .filter(|(_, link)| link.device_gone())
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn dead(&self, name: &str) -> bool {
        self.links.get(name).is_some_and(Link::dead)
    }

    fn stats(&self, name: &str) -> Option<LinkStats> {
        Some(self.links.get(name)?.stats())
    }
}
