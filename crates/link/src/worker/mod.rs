//! The link's I/O shell around its engine: reads the TUN device and the UDP sockets in
//! batches, hands bytes and `now` to the [`Engine`], and moves what it returns (encrypted
//! datagrams per route, decrypted packets, handshakes, probes) out through GSO queues and
//! coalesced TUN writes. Every decision (sessions, paths, endpoints, timers) is the
//! engine's; this module reads the clock once per event and does the system calls.

mod log;
mod uapi_requests;

use crate::LinkConfig;
use crate::buffer::PacketBuffer;
use crate::counters::Counters;
use crate::output::{Output, PathPort, UdpPort};
use crate::tun_batch::{TunReader, TunWriter};
use braid_engine::{Engine, EngineConfig, Incoming, Outgoing, Socket};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime};
use tun_rs::SyncDevice;

/// Reads (TUN reads or UDP receives) per readable fd before looking at the other one again.
const BATCH: usize = 64;
/// How often a bonded link publishes its bond's status for `braid status`.
const PUBLISH_BOND: Duration = Duration::from_millis(500);

/// What became ready for a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Tun,
    Network,
    Wake,
    /// The socket of configured path `n` (multi-path links).
    Path(u8),
}

/// Packet buffers a reactor lends to the link it is serving: the receive buffer (room for a
/// GRO batch) and room for handshake messages. Mapped lazily: untouched pages cost nothing.
pub(crate) struct Scratch {
    src: PacketBuffer,
    dst: PacketBuffer,
}

impl Scratch {
    pub(crate) fn new() -> std::io::Result<Self> {
        Ok(Self {
            src: PacketBuffer::new(65536 + 256)?,
            dst: PacketBuffer::new(65536 + 256)?,
        })
    }
}

pub(crate) enum Command {
    SetEndpoint(Option<SocketAddr>),
    SetKeepalive(Option<u16>),
    /// A key rotation: this side's new private key.
    SetPrivateKey([u8; 32]),
    /// An uplink went down or came back (netlink): its paths are out at once, or probed
    /// again.
    PathState {
        interface: String,
        up: bool,
    },
    /// The configured paths changed (reload, uplink added or taken out): slot `i`'s path
    /// (`None`: taken out), the sockets of the slots past the current ones, the scheduler.
    /// The reply says whether the engine took it.
    SetPaths {
        specs: Vec<Option<braid_bond::PathSpec>>,
        ports: Vec<PathPort>,
        scheduler: braid_bond::Scheduler,
        reply: std::sync::mpsc::SyncSender<bool>,
    },
    /// A UAPI request (`wg show`, `wg set`), read and parsed on the UAPI thread; answered
    /// from the link's state (`uapi_requests.rs`).
    Uapi {
        request: braid_uapi::Request,
        reply: crate::uapi::Reply,
    },
}

pub(crate) struct Worker {
    name: String,
    /// The namespace of the link's TUN device (`None`: this process's).
    netns: Option<String>,
    /// The peer's public key in base64, for log lines.
    peer: String,
    tun: SyncDevice,
    engine: Engine,
    private_key: [u8; 32],
    peer_public_key: [u8; 32],
    fwmark: u32,
    out: Output,
    /// The GSO queue the last data packet went to (encrypted straight into its tail).
    hot_queue: Option<usize>,
    /// A packet on its way from one GSO queue to others (kept to reuse its allocation:
    /// a round-robin bond moves every packet).
    moving: Vec<u8>,
    /// TUN reads split into packets (TSO), and decrypted packets coalesced for writing.
    reader: TunReader,
    writer: TunWriter,
    wake: Arc<crate::wake::Wake>,
    published_bond: Option<Instant>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    commands: Receiver<Command>,
    /// Sockets of paths added while running, for the reactor to watch.
    new_fds: Vec<(RawFd, Event)>,
    /// braid's fast liveness (single-path links; a bond has its own probes and reports
    /// `Dead`/`Alive`), and room to seal its keepalives.
    liveness: Option<crate::liveness::Liveness>,
    keepalive_buf: Vec<u8>,
    /// The carrier follows the link's state (braid's liveness is configured): for a bond,
    /// its `Dead` and `Alive` events.
    carrier_follows: bool,
}

/// The engine's configuration for a link.
fn engine_config(config: &LinkConfig) -> EngineConfig {
    let mut seed = [0u8; 8];
    if getrandom::fill(&mut seed).is_err() {
        // Distinct enough across restarts when the system has no randomness to give.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        seed = (nanos ^ u64::from(std::process::id())).to_le_bytes();
    }
    EngineConfig {
        private_key: config.private_key,
        peer_public_key: config.peer_public_key,
        keepalive: config.keepalive,
        endpoint: config.endpoint,
        paths: if config.paths.len() >= 2 {
            config
                .paths
                .iter()
                .map(braid_bond::PathSpec::from)
                .collect()
        } else {
            Vec::new()
        },
        scheduler: config.scheduler,
        mtu: config.mtu as usize,
        wall: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
        seed: u64::from_le_bytes(seed),
    }
}

/// The peer's address as people write it (IPv4-mapped IPv6 back to IPv4).
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// A wall-clock reading from the engine (time since the Unix epoch).
fn system_time(since_epoch: Option<Duration>) -> Option<SystemTime> {
    since_epoch.and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d))
}

impl Worker {
    #[allow(clippy::too_many_arguments)] // the worker owns everything its link holds
    pub(crate) fn new(
        config: &LinkConfig,
        tun: SyncDevice,
        socket: UdpSocket,
        paths: Vec<PathPort>,
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
        commands: Receiver<Command>,
        wake: Arc<crate::wake::Wake>,
    ) -> std::io::Result<Self> {
        let udp = crate::send::UdpState::new(&socket, &config.name, None)?;
        let main = UdpPort {
            socket,
            udp,
            ipv6: config.ipv6,
        };
        if config.liveness.is_some() {
            // The one carrier thread of the process starts with the first link that may
            // need it, not at its first death: what a daemon holds is settled at start.
            crate::device::start_carrier_thread()?;
        }
        let engine = Engine::new(engine_config(config), Instant::now());
        let worker = Self {
            name: config.name.clone(),
            netns: config.netns.clone(),
            peer: log::key_b64(&config.peer_public_key),
            tun,
            engine,
            private_key: config.private_key,
            peer_public_key: config.peer_public_key,
            fwmark: config.fwmark,
            out: Output::new(main, paths),
            hot_queue: None,
            moving: Vec::new(),
            reader: TunReader::new(config.mtu),
            writer: TunWriter::new(config.mtu),
            wake,
            published_bond: None,
            counters,
            stop,
            commands,
            new_fds: Vec::new(),
            liveness: config
                .liveness
                .filter(|_| config.paths.len() < 2)
                .map(crate::liveness::Liveness::new),
            keepalive_buf: vec![0; 256],
            carrier_follows: config.liveness.is_some(),
        };
        worker.publish(Instant::now());
        Ok(worker)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The descriptors the reactor watches for this link.
    pub(crate) fn fds(&self) -> Vec<(RawFd, Event)> {
        let mut fds = vec![
            (self.tun.as_raw_fd(), Event::Tun),
            (self.out.main.socket.as_raw_fd(), Event::Network),
            (self.wake.fd(), Event::Wake),
        ];
        for (i, path) in self.out.paths.iter().enumerate() {
            fds.push((path.port.socket.as_raw_fd(), Event::Path(i as u8)));
        }
        fds
    }

    /// Sends what the engine queued when it was made (its first handshake); returns when
    /// its timers are first due.
    pub(crate) fn start(&mut self, _scratch: &mut Scratch) -> Instant {
        let now = Instant::now();
        self.drain(now);
        self.engine.poll_timeout()
    }

    /// Handles one readiness event; false when the link has been asked to stop.
    pub(crate) fn on_event(&mut self, event: Event, scratch: &mut Scratch) -> bool {
        match event {
            Event::Tun => {
                if !self.handle_tun(&mut scratch.dst) {
                    // The device is gone: stop (its descriptors would report an error on
                    // every turn of the reactor) and let the owner make the link again.
                    self.counters.device_gone.store(true, Ordering::Relaxed);
                    return false;
                }
            }
            Event::Network => self.handle_network(Socket::Main, &mut scratch.src, &mut scratch.dst),
            Event::Path(i) => {
                self.handle_network(Socket::Path(i), &mut scratch.src, &mut scratch.dst)
            }
            Event::Wake => {
                self.wake.drain();
                if self.stop.load(Ordering::Relaxed) {
                    return false;
                }
                self.apply_commands();
            }
        }
        true
    }

    /// Runs the engine's timers; returns when they are next due.
    pub(crate) fn on_timer(&mut self, _scratch: &mut Scratch) -> Instant {
        // boringtun logs its timers' decisions (HANDSHAKE(REKEY_TIMEOUT), ...) itself: the
        // span puts the link and its peer on those lines.
        let span = tracing::info_span!("link", link = %self.name, peer = %self.peer);
        let _entered = span.enter();
        let now = Instant::now();
        // The engine's handshake timestamps follow a wall clock corrected after the start.
        if let Ok(wall) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            self.engine.set_wall(now, wall);
        }
        self.engine.handle_timeout(now);
        self.drain(now);
        self.next_timeout()
    }

    /// Descriptors of sockets added since last asked (paths added while running): the
    /// reactor watches them from now on. (Sockets of paths taken out stay open, unused.)
    pub(crate) fn take_new_fds(&mut self) -> Vec<(RawFd, Event)> {
        std::mem::take(&mut self.new_fds)
    }

    /// When the link wants its timer after an event (the engine may want it sooner).
    pub(crate) fn take_hurry(&mut self) -> Option<Instant> {
        Some(self.next_timeout())
    }

    /// The engine's next deadline, or the liveness's when sooner.
    fn next_timeout(&self) -> Instant {
        let engine = self.engine.poll_timeout();
        match self.liveness.as_ref().and_then(|l| l.due()) {
            Some(due) => engine.min(due),
            None => engine,
        }
    }

    /// Runs the liveness at `now`: a keepalive when due, the carrier when the link died or
    /// came back.
    fn check_liveness(&mut self, now: Instant) {
        let Some(liveness) = self.liveness.as_mut() else {
            return;
        };
        let stats = self.engine.stats();
        let actions = liveness.tick(now, stats.rx_packets);
        liveness.note_keepalives(now, stats.rx_keepalives);
        if actions.keepalive {
            // As often as keepalives go (5 per second by default), not per batch.
            let loss = liveness.loss(now);
            *self
                .counters
                .keepalive_loss
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = loss;
            // An empty data message; without a session the engine starts a handshake.
            if let Outgoing::Data { len, routes } =
                self.engine.send_packet(now, &[], &mut self.keepalive_buf)
            {
                for route in routes.iter() {
                    self.out
                        .queue(route, &self.keepalive_buf[..len], &self.counters);
                }
            }
        }
        if let Some(alive) = actions.changed {
            self.set_alive(alive);
        }
    }

    /// The link died or came back: its TUN device's carrier follows, which the routing
    /// engine (babeld, BIRD) and the kernel see at once.
    fn set_alive(&self, alive: bool) {
        self.counters.dead.store(!alive, Ordering::Relaxed);
        match crate::device::set_carrier(&self.tun, alive, &self.name, self.netns.as_deref()) {
            Ok(()) if alive => {
                tracing::info!(link = %self.name, peer = %self.peer, "link alive again: carrier on")
            }
            Ok(()) => {
                tracing::warn!(link = %self.name, peer = %self.peer, "link dead (peer silent): carrier off, routed around")
            }
            Err(e) => {
                tracing::warn!(link = %self.name, peer = %self.peer, alive, "setting the carrier of its TUN device: {e}")
            }
        }
    }

    fn apply_commands(&mut self) {
        let now = Instant::now();
        while let Ok(command) = self.commands.try_recv() {
            match command {
                // Answered at once; a `wg show` neither starts a handshake nor resets the
                // back-off of a link whose peer is silent.
                Command::Uapi { request, reply } => self.answer_uapi(request, reply),
                Command::SetEndpoint(endpoint) => self.engine.set_endpoint(now, endpoint),
                Command::SetKeepalive(keepalive) => self.engine.set_keepalive(now, keepalive),
                Command::SetPrivateKey(key) => {
                    self.private_key = key;
                    self.engine.set_private_key(now, key);
                    tracing::info!(link = %self.name, peer = %self.peer, "private key rotated");
                }
                Command::PathState { interface, up } => {
                    for index in self.out.paths_on(&interface) {
                        tracing::info!(link = %self.name, peer = %self.peer, path = %interface, up, "uplink state");
                        if up {
                            self.rebind(index, &interface);
                        }
                        self.engine.set_path_up(now, index, up);
                    }
                }
                Command::SetPaths {
                    specs,
                    ports,
                    scheduler,
                    reply,
                } => {
                    let done = self.set_paths(now, &specs, ports, scheduler);
                    let _ = reply.send(done);
                }
            }
        }
        self.drain(now);
    }

    /// An uplink came back, maybe as a new interface of the same name (a modem or PPP
    /// link made again): binds the path's socket to it again, or it would stay bound to
    /// the interface that is gone.
    fn rebind(&self, index: u8, interface: &str) {
        let Some(path) = self.out.paths.get(usize::from(index)) else {
            return;
        };
        if let Err(e) =
            socket2::SockRef::from(&path.port.socket).bind_device(Some(interface.as_bytes()))
        {
            tracing::warn!(link = %self.name, path = %interface, "cannot bind the path's socket to its interface again: {e}");
        }
    }

    /// Applies a change of paths (see [`Command::SetPaths`]); false if the engine cannot
    /// make it in place (then nothing changed and the new sockets close).
    fn set_paths(
        &mut self,
        now: Instant,
        specs: &[Option<braid_bond::PathSpec>],
        ports: Vec<PathPort>,
        scheduler: braid_bond::Scheduler,
    ) -> bool {
        let before = self.out.paths.len();
        if before + ports.len() != specs.len() || !self.engine.set_paths(now, specs, scheduler) {
            return false;
        }
        for (i, path) in self.out.paths.iter_mut().enumerate() {
            if specs.get(i).is_some_and(Option::is_none) && path.interface.is_some() {
                // Taken out: no uplink event reaches it any more.
                path.interface = None;
                path.label = format!("{} (removed)", path.label);
            }
        }
        for (k, port) in ports.into_iter().enumerate() {
            self.new_fds.push((
                port.port.socket.as_raw_fd(),
                Event::Path((before + k) as u8),
            ));
            self.out.paths.push(port);
        }
        tracing::info!(link = %self.name, peer = %self.peer, paths = ?self.out.paths.iter().map(|p| p.label.as_str()).collect::<Vec<_>>(), ?scheduler, "paths changed in place");
        true
    }

    /// Moves everything the engine queued out: data first (its GSO queues), then
    /// handshakes and probes, packets released for the TUN, events; publishes counters.
    fn drain(&mut self, now: Instant) {
        self.check_liveness(now);
        self.out.flush_all(&self.counters);
        while let Some(t) = self.engine.poll_transmit() {
            self.out.send_now(t.route, &t.payload, &self.counters);
        }
        let mut released = false;
        while let Some(packet) = self.engine.poll_packet() {
            self.write_tun(&packet);
            released = true;
        }
        if released {
            self.flush_tun();
        }
        while let Some(event) = self.engine.poll_event() {
            log::event(&self.name, &self.peer, &self.out, &self.engine, event);
            // A bond whose paths are all gone, or one that answers again.
            match event {
                braid_engine::Event::Dead if self.carrier_follows => self.set_alive(false),
                braid_engine::Event::Alive if self.carrier_follows => self.set_alive(true),
                _ => {}
            }
        }
        self.publish(now);
        self.publish_bond(now);
    }

    /// Publishes the bond's status (twice a second), configured paths by name (their
    /// interface or source), learned ones by address.
    fn publish_bond(&mut self, now: Instant) {
        if self
            .published_bond
            .is_some_and(|t| now.duration_since(t) < PUBLISH_BOND)
        {
            return;
        }
        let Some(mut status) = self.engine.bond_status(now) else {
            return;
        };
        self.published_bond = Some(now);
        for path in &mut status.paths {
            if path.peer.is_none() {
                path.name = log::path_label(
                    &self.out,
                    self.engine.path_slot(path.id),
                    u64::from(path.id.0),
                );
            }
        }
        *self.counters.bond.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
    }

    /// Publishes the engine's counters and state for `braid status` and `wg show`.
    fn publish(&self, now: Instant) {
        self.counters.publish(
            self.engine.stats(),
            self.engine.endpoint(),
            system_time(self.engine.last_handshake(now)),
            system_time(self.engine.last_rx(now)),
        );
    }

    fn write_tun(&mut self, packet: &[u8]) {
        if self.writer.is_full() {
            self.flush_tun();
        }
        let len = packet.len();
        self.writer.slot(len)[..len].copy_from_slice(packet);
        self.writer.commit(len);
    }

    fn flush_tun(&mut self) {
        if let Err(e) = self.writer.flush(&self.tun) {
            tracing::debug!(link = %self.name, "writing the TUN device: {e}");
        }
    }

    /// Reads a batch from the TUN device; false when the device is gone.
    fn handle_tun(&mut self, dst: &mut [u8]) -> bool {
        let mut reader = std::mem::replace(&mut self.reader, TunReader::new(0));
        let now = Instant::now();
        let mut alive = true;
        for _ in 0..BATCH {
            // A narrower underlay (see `reseg`): TCP bursts are cut to fit it.
            let fitting = self
                .engine
                .endpoint()
                .and_then(|e| self.out.main.udp.fitting_packet(e));
            let packets = match reader.read(&self.tun, fitting) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    // EBADFD: the interface was deleted under the open descriptor.
                    alive = !matches!(
                        e.raw_os_error(),
                        Some(libc::EBADFD | libc::ENODEV | libc::EIO)
                    );
                    tracing::warn!(link = %self.name, peer = %self.peer, "reading the TUN device: {e}{}", if alive { "" } else { " (the interface is gone)" });
                    break;
                }
            };
            for i in 0..packets {
                self.encapsulate(now, reader.packet(i), dst);
            }
        }
        self.reader = reader;
        self.drain(now);
        alive
    }

    /// Encrypts a packet from the TUN straight into the GSO queue it most likely joins
    /// (the last one used); if the engine routes it elsewhere, or on several paths, it is
    /// copied into those queues.
    fn encapsulate(&mut self, now: Instant, plaintext: &[u8], dst: &mut [u8]) {
        // Room for the largest a data message can be: 16 header bytes, the plaintext
        // padded to 16, a 16-byte tag.
        let room = 32 + plaintext.len().next_multiple_of(16);
        let hot = self.hot_queue;
        let result = match hot {
            Some(i) => {
                let tail = self.out.tail(i, room, &self.counters);
                self.engine.send_packet(now, plaintext, tail)
            }
            None => self.engine.send_packet(now, plaintext, dst),
        };
        let Outgoing::Data { len, routes } = result else {
            return;
        };
        let mut routes_iter = routes.iter();
        if let (Some(i), Some(first), 1) = (hot, routes_iter.next(), routes.len())
            && self.out.route_of(i) == first
        {
            self.out.commit_tail(i, len, &self.counters);
            return;
        }
        self.moving.clear();
        match hot {
            Some(i) => self.moving.extend_from_slice(&self.out.written(i)[..len]),
            None => self.moving.extend_from_slice(&dst[..len]),
        }
        for route in routes.iter() {
            self.out.queue(route, &self.moving, &self.counters);
        }
        self.hot_queue = routes
            .iter()
            .next()
            .and_then(|route| self.out.queue_index(route));
    }

    fn handle_network(&mut self, socket: Socket, src: &mut [u8], dst: &mut [u8]) {
        let span = tracing::info_span!("link", link = %self.name, peer = %self.peer);
        let _entered = span.enter();
        for _ in 0..BATCH {
            // One receive may hold several datagrams coalesced by UDP GRO, `stride` apart.
            let mut meta = [quinn_udp::RecvMeta::default()];
            let received = {
                let mut bufs = [std::io::IoSliceMut::new(src)];
                let Some(port) = self.out.port(socket) else {
                    return;
                };
                port.udp.recv((&port.socket).into(), &mut bufs, &mut meta)
            };
            match received {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(link = %self.name, "receiving: {e}");
                    break;
                }
            }
            let now = Instant::now();
            let meta = meta[0];
            let from = canonical(meta.addr);
            let stride = if meta.stride == 0 {
                meta.len
            } else {
                meta.stride
            };
            for datagram in src[..meta.len].chunks(stride.max(1)) {
                self.handle_datagram(now, socket, from, datagram, dst);
            }
            // What one receive brought (a GRO batch: mostly one flow) reaches the TUN now,
            // coalesced: holding it for more receives only adds latency.
            self.flush_tun();
        }
        self.drain(Instant::now());
    }

    /// One datagram: data messages decrypt straight into the TUN batch, anything else
    /// (handshakes, cookies, probes) into `dst`.
    fn handle_datagram(
        &mut self,
        now: Instant,
        socket: Socket,
        from: SocketAddr,
        datagram: &[u8],
        dst: &mut [u8],
    ) {
        if datagram.first() != Some(&4) {
            self.engine
                .handle_datagram(now, socket, from, datagram, dst);
            return;
        }
        if self.writer.is_full() {
            self.flush_tun();
        }
        let slot = self.writer.slot(datagram.len());
        if let Incoming::Packet(len) = self
            .engine
            .handle_datagram(now, socket, from, datagram, slot)
        {
            self.writer.commit(len);
        }
        // Packets the reorder buffer lets go follow the one just delivered.
        while let Some(packet) = self.engine.poll_packet() {
            self.write_tun(&packet);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::socket_addr_for;
    use std::net::IpAddr;

    #[test]
    fn ipv4_peers_are_mapped_on_dual_stack_sockets_and_back() {
        let v4: SocketAddr = "192.0.2.1:51820".parse().unwrap();
        let mapped = socket_addr_for(true, v4);
        assert_eq!(mapped.to_string(), "[::ffff:192.0.2.1]:51820");
        assert_eq!(canonical(mapped), v4);
        assert_eq!(socket_addr_for(false, v4), v4);
        let v6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        assert_eq!(socket_addr_for(true, v6), v6);
        assert!(matches!(canonical(v6).ip(), IpAddr::V6(_)));
    }
}
