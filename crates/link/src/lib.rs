//! One userspace WireGuard link: a TUN device and UDP sockets around braid's link engine
//! (`braid-engine`: the WireGuard session, the bond, timers, endpoint learning; sans-IO).
//! This crate is the engine's I/O shell. Links are carried by a few reactor
//! threads (one per core, see `reactor`), each serving many links with epoll and a timer
//! heap; a link's state belongs to one reactor at a time, so it needs no lock.
//!
//! The packet path is batched: TUN offloads (`tun_batch`: TSO reads split here, GRO-coalesced
//! writes) and UDP GSO/GRO (`gso`, quinn-udp), so a 64 KiB TCP burst costs a few system
//! calls instead of ~45 per direction.
//!
//! The links' UAPI sockets (`wg show`, `wg set`) are served by one thread of their own
//! (`uapi`), which reads and parses each request under a deadline and a size cap and only
//! then hands it to the link: a client can never hold a reactor.

mod buffer;
mod counters;
mod device;
mod gso;
mod liveness;
mod output;
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
pub use liveness::LivenessConfig;

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
    /// The TUN interface MTU in bytes.
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
    /// This side's X25519 private key (32 bytes).
    pub private_key: [u8; 32],
    /// The peer's X25519 public key (32 bytes).
    pub peer_public_key: [u8; 32],
    /// Persistent keepalive interval in seconds (`wg`'s `persistent-keepalive`); `None`: off.
    pub keepalive: Option<u16>,
    /// Addresses put on the interface (the node's link-local /64, its 169.254 /16).
    pub link_local6: Option<Ipv6Net>,
    /// The node's IPv4 link address (`169.254.<hi>.<lo>/16`), the same on every link.
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
    /// How a bonded link spreads packets over its paths (braid-bond's schedulers).
    pub scheduler: Scheduler,
    /// braid's fast liveness (keepalives, and the carrier off when the peer falls
    /// silent); `None`: off. Single-path links only: a bond probes its paths itself.
    pub liveness: Option<LivenessConfig>,
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

/// Why a link could not be started; each names the link (its interface name).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The listen port is taken by another socket.
    #[error("link {link}: UDP port {port} is already in use")]
    PortInUse {
        /// The link's interface name.
        link: String,
        /// The UDP port asked for.
        port: u16,
    },
    /// A system call on the link's socket, TUN device or UAPI socket failed.
    #[error("link {link}: {what}: {source}")]
    Io {
        /// The link's interface name.
        link: String,
        /// What was being done (e.g. "creating its wake-up eventfd").
        what: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// A netlink operation (addresses, group, namespace) failed.
    #[error("link {link}: {source}")]
    System {
        /// The link's interface name.
        link: String,
        /// braid-system's error.
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
    /// Its UAPI socket, while served (dropping it removes the socket file).
    uapi: Option<uapi::Served>,
    /// What it was made with, to open the sockets of paths added later.
    config: LinkConfig,
    /// The paths of its sockets, slot by slot (`None`: taken out); empty without a bond.
    slots: Vec<Option<PathConfig>>,
}

impl Link {
    /// Creates the TUN device and the socket, and starts the link's thread.
    pub fn start(config: LinkConfig) -> Result<Self, LinkError> {
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
        // Served by the process's UAPI thread, never by the link's reactor.
        let uapi = match uapi {
            None => None,
            Some(socket) => {
                let target = uapi::Target {
                    name: config.name.clone(),
                    control: control.clone(),
                    wake: wake.clone(),
                };
                Some(uapi::serve(socket, target).map_err(|source| LinkError::Io {
                    link: config.name.clone(),
                    what: "starting the UAPI thread".into(),
                    source,
                })?)
            }
        };
        let name = config.name.clone();
        let paths = path_ports(&config)?;
        let slots = if paths.is_empty() {
            Vec::new()
        } else {
            config.paths.iter().cloned().map(Some).collect()
        };
        let worker = worker::Worker::new(
            &config,
            tun,
            socket,
            paths,
            counters.clone(),
            stop.clone(),
            commands,
            wake.clone(),
        )
        .map_err(|source| LinkError::Io {
            link: name.clone(),
            what: "setting up batched UDP I/O".into(),
            source,
        })?;
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
        Ok(Self {
            name,
            counters,
            stop,
            control,
            wake,
            stopped: Some(stopped),
            uapi,
            config,
            slots,
        })
    }

    /// The link's interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the link's TUN device went away under it (it then stopped; make it again).
    pub fn device_gone(&self) -> bool {
        self.counters.device_gone.load(Ordering::Relaxed)
    }

    /// Whether braid's liveness declared the link dead (its carrier is off): it was up
    /// and its peer fell silent, or all paths of its bond are gone.
    pub fn dead(&self) -> bool {
        self.counters.dead.load(Ordering::Relaxed)
    }

    /// The link's counters and state now.
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

    /// Rotates this side's private key in place (like `wg set private-key`): a new
    /// handshake under the new key starts at once.
    pub fn set_private_key(&self, private_key: [u8; 32]) {
        let _ = self
            .control
            .send(worker::Command::SetPrivateKey(private_key));
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
        // No new UAPI clients; the socket file goes before the link does.
        self.uapi.take();
        self.stop.store(true, Ordering::Relaxed);
        self.wake.wake();
        if let Some(stopped) = self.stopped.take() {
            // Closing the TUN device (with the worker) removes the interface.
            drop(stopped.recv());
        }
    }
}

/// Two paths or more: a socket per path (the engine bonds them).
fn path_ports(config: &LinkConfig) -> Result<Vec<output::PathPort>, LinkError> {
    if config.paths.len() < 2 {
        return Ok(Vec::new());
    }
    config.paths.iter().map(|p| path_port(config, p)).collect()
}

/// A configured path's socket, bound to its interface or source.
fn path_port(config: &LinkConfig, path: &PathConfig) -> Result<output::PathPort, LinkError> {
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
    Ok(output::PathPort {
        port: output::UdpPort { socket, udp, ipv6 },
        label,
        interface: path.interface.clone(),
    })
}

/// Whether two configured paths are the same path (the same interface and source): a
/// changed weight, priority or cap keeps the path and its measurements.
fn same_path(a: &PathConfig, b: &PathConfig) -> bool {
    a.interface == b.interface && a.source == b.source
}

/// How long a change of paths waits for the link's reactor to take it.
const SET_PATHS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl Link {
    /// Changes the paths and scheduler of a running bonded link in place: kept paths
    /// (same interface and source) keep their socket, state and measurements, paths no
    /// longer wanted are taken out of the bond, new ones get a socket and are probed at
    /// once. The session, the TUN device and its routes stay, so running streams go on.
    /// `Ok(false)`: this link cannot change so (it was made without a bond, or `paths`
    /// has fewer than one path, or too many sockets were used); make it again.
    pub fn set_paths(
        &mut self,
        paths: &[PathConfig],
        scheduler: Scheduler,
    ) -> Result<bool, LinkError> {
        if self.slots.is_empty() || paths.is_empty() {
            return Ok(false);
        }
        let mut slots: Vec<Option<PathConfig>> = vec![None; self.slots.len()];
        let mut added = Vec::new();
        for path in paths {
            let kept = self
                .slots
                .iter()
                .position(|s| s.as_ref().is_some_and(|s| same_path(s, path)));
            match kept {
                Some(i) if slots[i].is_none() => slots[i] = Some(path.clone()),
                _ => added.push(path.clone()),
            }
        }
        if slots.len() + added.len() > braid_engine::MAX_SLOTS {
            return Ok(false);
        }
        let ports = added
            .iter()
            .map(|p| path_port(&self.config, p))
            .collect::<Result<Vec<_>, _>>()?;
        slots.extend(added.into_iter().map(Some));
        let specs = slots
            .iter()
            .map(|s| s.as_ref().map(braid_bond::PathSpec::from))
            .collect();
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let _ = self.control.send(worker::Command::SetPaths {
            specs,
            ports,
            scheduler,
            reply,
        });
        self.wake.wake();
        let done = answer.recv_timeout(SET_PATHS_TIMEOUT).unwrap_or(false);
        if done {
            self.slots = slots;
            self.config.paths = paths.to_vec();
            self.config.scheduler = scheduler;
        }
        Ok(done)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shutdown();
    }
}
