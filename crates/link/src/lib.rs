//! One userspace WireGuard link: a TUN device and a UDP socket around boringtun's
//! `noise::Tunn` (the Noise state machine, one peer). Links are carried by a few reactor
//! threads (one per core, see `reactor`), each serving many links with epoll and a timer
//! heap; a link's state belongs to one reactor at a time, so it needs no lock.
//!
//! The packet path is batched: TUN offloads (`tun_batch`: TSO reads split here, GRO-coalesced
//! writes) and UDP GSO/GRO (`gso`, quinn-udp), so a 64 KiB TCP burst costs a few system
//! calls instead of ~45 per direction.

mod buffer;
mod counters;
mod device;
mod gso;
mod multipath;
mod reactor;
mod reseg;
mod send;
mod tun_batch;
mod uapi;
mod udp;
mod wake;
mod worker;

pub use uapi::DEFAULT_DIR as UAPI_DIR;

pub use counters::{Counters, Snapshot};

use braid_model::extensions::{PathConfig, Scheduler};

use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Everything one link needs.
#[derive(Clone)]
pub struct LinkConfig {
    /// TUN interface name (at most 15 bytes).
    pub name: String,
    pub mtu: u32,
    /// Interface group (braid's active group).
    pub group: u32,
    /// UDP port to listen on; 0 for a random one.
    pub listen_port: u16,
    /// Listen on IPv6 (dual-stack) rather than IPv4 only.
    pub ipv6: bool,
    /// Where to send; `None` until the peer dials in.
    pub endpoint: Option<SocketAddr>,
    /// SO_MARK on the UDP socket; 0 for none.
    pub fwmark: u32,
    pub private_key: [u8; 32],
    pub peer_public_key: [u8; 32],
    pub keepalive: Option<u16>,
    /// Addresses put on the interface (the node's link-local /64, its 169.254 /16).
    pub link_local6: Option<Ipv6Net>,
    pub link4: Option<Ipv4Net>,
    /// The peer's IPv4 link address: with it, `link4` is put on the interface as a
    /// point-to-point address (local/32 peer peer/32), so the peer's address routes over
    /// this link even though every link of the node carries the same `link4`.
    pub peer_link4: Option<Ipv4Addr>,
    /// Directory of the link's UAPI socket (`<dir>/<name>.sock`, for `wg`); `None` for none.
    pub uapi_dir: Option<std::path::PathBuf>,
    /// Network namespace for the TUN device (the overlay); the socket stays in the
    /// caller's namespace. `None`: the caller's namespace.
    pub netns: Option<String>,
    /// Underlay paths: none for the default route, one to bind the link's socket to an
    /// interface or source address, two or more to bond them (a socket each, probed,
    /// scheduled by `scheduler`).
    pub paths: Vec<PathConfig>,
    pub scheduler: Scheduler,
}

impl std::fmt::Debug for LinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkConfig")
            .field("name", &self.name)
            .field("listen_port", &self.listen_port)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("link {link}: UDP port {port} is already in use")]
    PortInUse { link: String, port: u16 },
    #[error("link {link}: {what}: {source}")]
    Io {
        link: String,
        what: String,
        source: std::io::Error,
    },
    #[error("link {link}: {source}")]
    System {
        link: String,
        source: braid_system::SystemError,
    },
}

/// A running link. Dropping it stops the thread and removes the TUN device.
pub struct Link {
    name: String,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    control: std::sync::mpsc::Sender<worker::Command>,
    /// Wakes the link's reactor for a command or a stop.
    wake: Arc<wake::Wake>,
    /// The link's state comes back here when its reactor lets it go.
    stopped: Option<std::sync::mpsc::Receiver<Box<worker::Worker>>>,
}

impl Link {
    /// Creates the TUN device and the socket, and starts the link's thread.
    pub fn start(config: LinkConfig) -> Result<Link, LinkError> {
        let uapi =
            match &config.uapi_dir {
                None => None,
                Some(dir) => Some(uapi::UapiSocket::bind(dir, &config.name).map_err(|source| {
                    LinkError::Io {
                        link: config.name.clone(),
                        what: format!("opening its UAPI socket in {}", dir.display()),
                        source,
                    }
                })?),
            };
        let socket = udp::bind(&config)?;
        let tun = device::create(&config)?;
        let counters = Arc::new(Counters::default());
        if let Ok(addr) = socket.local_addr() {
            counters
                .listen_port
                .store(u64::from(addr.port()), Ordering::Relaxed);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (control, commands) = std::sync::mpsc::channel();
        let wake = Arc::new(wake::Wake::new().map_err(|source| LinkError::Io {
            link: config.name.clone(),
            what: "creating its wake-up eventfd".into(),
            source,
        })?);
        let name = config.name.clone();
        let multipath = multipath_for(&config)?;
        let mut worker = worker::Worker::new(
            &config,
            tun,
            socket,
            counters.clone(),
            stop.clone(),
            commands,
            uapi,
            wake.clone(),
        )
        .map_err(|source| LinkError::Io {
            link: name.clone(),
            what: "setting up batched UDP I/O".into(),
            source,
        })?;
        if let Some(multipath) = multipath {
            worker.set_multipath(multipath);
        }
        let (stopped_tx, stopped) = std::sync::mpsc::sync_channel(1);
        reactor::submit(reactor::Job {
            worker: Box::new(worker),
            stopped: stopped_tx,
        })
        .map_err(|source| LinkError::Io {
            link: name.clone(),
            what: "handing it to a link thread".into(),
            source,
        })?;
        Ok(Link {
            name,
            counters,
            stop,
            control,
            wake,
            stopped: Some(stopped),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stats(&self) -> Snapshot {
        self.counters.snapshot()
    }

    /// Points the link at a new endpoint (config change or re-resolved DNS name).
    pub fn set_endpoint(&self, endpoint: Option<SocketAddr>) {
        let _ = self.control.send(worker::Command::SetEndpoint(endpoint));
        self.wake.wake();
    }

    /// Changes the persistent keepalive (a new session is negotiated).
    pub fn set_keepalive(&self, keepalive: Option<u16>) {
        let _ = self.control.send(worker::Command::SetKeepalive(keepalive));
        self.wake.wake();
    }

    /// An uplink went down or came back: the link's paths on it are out at once, or
    /// probed again (they come up after answering).
    pub fn set_path_state(&self, interface: &str, up: bool) {
        let _ = self.control.send(worker::Command::PathState {
            interface: interface.to_string(),
            up,
        });
        self.wake.wake();
    }

    /// Asks the link's reactor to let it go without waiting; dropping the link then waits
    /// and closes its devices. Stopping many links this way, then dropping them from
    /// several threads, closes their devices in parallel.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.wake();
    }

    /// Stops the link and removes its TUN device.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.wake();
        if let Some(stopped) = self.stopped.take() {
            // Closing the TUN device (with the worker) removes the interface.
            drop(stopped.recv());
        }
    }
}

/// Two paths or more: a socket per path and a bond over them.
fn multipath_for(config: &LinkConfig) -> Result<Option<multipath::Multipath>, LinkError> {
    if config.paths.len() < 2 {
        return Ok(None);
    }
    let keys = braid_bond::ProbeKeys::derive(
        &x25519_dalek::StaticSecret::from(config.private_key),
        &x25519_dalek::PublicKey::from(config.peer_public_key),
    )
    .map_err(|e| LinkError::Io {
        link: config.name.clone(),
        what: "deriving its path-probe keys".into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
    })?;
    let mut paths = Vec::new();
    for path in &config.paths {
        let socket = udp::bind_path(config, path)?;
        let label = udp::path_label(path);
        let udp = send::UdpState::new(&socket, &config.name, Some(&label)).map_err(|source| {
            LinkError::Io {
                link: config.name.clone(),
                what: format!("path {label}: setting up batched UDP I/O"),
                source,
            }
        })?;
        let ipv6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
        let socket = multipath::PathSocket {
            interface: path.interface.clone(),
            label: udp::path_label(path),
            socket,
            udp,
            ipv6,
        };
        paths.push((socket, braid_bond::PathSpec::from(path)));
    }
    Ok(Some(multipath::Multipath::active(
        keys,
        config.scheduler,
        paths,
        std::time::Instant::now(),
    )))
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shutdown();
    }
}
