//! The link's thread: moves packets between the TUN device and the UDP socket through the
//! WireGuard state machine, ticks its timers, counts, and follows a roaming peer.

mod bond;
mod uapi_requests;

use crate::LinkConfig;
use crate::buffer::PacketBuffer;
use crate::counters::{Counters, add};
use crate::gso::GsoQueue;
use crate::multipath::{Main, Multipath, socket_addr_for};
use crate::tun_batch::{TunReader, TunWriter};
use crate::uapi::UapiSocket;
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::{Tunn, TunnResult};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime};
use tun_rs::SyncDevice;

/// boringtun expects its timers to be ticked this often.
const TIMER_TICK: Duration = Duration::from_millis(250);
/// A link that moved no packet for this long ticks its timers at [`IDLE_TICK`]: boringtun's
/// timers (handshake retries, keepalives) then fire up to a second late, which an idle link
/// does not notice, and a mesh of a thousand idle links sleeps.
const IDLE_AFTER: Duration = Duration::from_secs(10);
const IDLE_TICK: Duration = Duration::from_secs(1);
/// An idle link without a session (its peer has not answered) ticks slower still: its only
/// timer work is boringtun's handshake retry, and traffic or the peer dialling in wakes the
/// link at once anyway. The tick doubles from 5 s to 60 s while the peer stays silent, so a
/// node with a thousand absent peers does not spend a core on handshake retries
/// (each costs three X25519 operations).
const UNANSWERED_TICK: Duration = Duration::from_secs(5);
const UNANSWERED_TICK_MAX: Duration = Duration::from_secs(60);
/// Reads (TUN reads or UDP receives) per readable fd before looking at the other one again.
const BATCH: usize = 64;

/// What became ready for a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Tun,
    Network,
    Wake,
    Uapi,
    /// The socket of configured path `n` (multi-path links).
    Path(u8),
}

/// Where a datagram came in: the link's own socket, or a configured path's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Main,
    Path(u8),
}

/// Packet buffers a reactor lends to the link it is serving: the receive buffer (room for a
/// GRO batch) and room for handshake messages. Mapped lazily: untouched pages cost nothing.
pub struct Scratch {
    src: PacketBuffer,
    dst: PacketBuffer,
}

impl Scratch {
    pub fn new() -> std::io::Result<Self> {
        Ok(Scratch {
            src: PacketBuffer::new(65536 + 256)?,
            dst: PacketBuffer::new(65536 + 256)?,
        })
    }
}

pub enum Command {
    SetEndpoint(Option<SocketAddr>),
    SetKeepalive(Option<u16>),
    /// An uplink went down or came back (netlink): its paths are out at once, or probed
    /// again.
    PathState {
        interface: String,
        up: bool,
    },
}

pub struct Worker {
    name: String,
    tun: SyncDevice,
    socket: UdpSocket,
    ipv6_socket: bool,
    tunn: Tunn,
    private_key: [u8; 32],
    peer_public_key: [u8; 32],
    endpoint: Option<SocketAddr>,
    keepalive: Option<u16>,
    fwmark: u32,
    uapi: Option<UapiSocket>,
    /// Batched UDP I/O: GSO on send, GRO on receive (quinn-udp).
    udp: crate::send::UdpState,
    /// Encrypted packets waiting to leave in one GSO send.
    gso: GsoQueue,
    /// TUN reads split into packets (TSO), and decrypted packets coalesced for writing.
    reader: TunReader,
    writer: TunWriter,
    wake: Arc<crate::wake::Wake>,
    /// When a packet last went through, to slow the timers of idle links.
    last_activity: Instant,
    /// The current tick of a link whose peer has not answered (backs off).
    unanswered_tick: Duration,
    /// The tick last chosen; a link on a slow tick that comes alive asks the reactor for
    /// an early one (`hurry`).
    tick: Duration,
    hurry: bool,
    /// When an authenticated datagram last arrived; published with each timer tick.
    last_rx: Option<Instant>,
    /// When boringtun's timers are next due (the link's timer also serves the bond).
    tunn_due: Instant,
    /// Paths, scheduler, probes and reordering: configured (this side owns a socket per
    /// path), or made when the peer's first probe arrives (the far side of a bond).
    multipath: Option<Box<Multipath>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    commands: Receiver<Command>,
}

/// A new WireGuard state machine. Its session index base is random, as WireGuard's are:
/// a link made again (new paths, a new keepalive) must not take the handshake answers
/// meant for the instance before it.
fn new_tunn(private_key: [u8; 32], peer: [u8; 32], keepalive: Option<u16>) -> Tunn {
    let mut random = [0u8; 4];
    let derived = u32::from_le_bytes([
        private_key[1] ^ peer[1],
        private_key[2] ^ peer[2],
        private_key[3] ^ peer[3],
        0,
    ]);
    let index = match getrandom::fill(&mut random) {
        Ok(()) => u32::from_le_bytes(random),
        Err(_) => derived ^ std::process::id(),
    } >> 8;
    Tunn::new(
        x25519_dalek::StaticSecret::from(private_key),
        x25519_dalek::PublicKey::from(peer),
        None,
        keepalive,
        index,
        None,
    )
}

/// The peer's address as people write it (IPv4-mapped IPv6 back to IPv4).
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl Worker {
    #[allow(clippy::too_many_arguments)] // the worker owns everything its link holds
    pub fn new(
        config: &LinkConfig,
        tun: SyncDevice,
        socket: UdpSocket,
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
        commands: Receiver<Command>,
        uapi: Option<UapiSocket>,
        wake: Arc<crate::wake::Wake>,
    ) -> std::io::Result<Self> {
        *counters.endpoint.lock().unwrap_or_else(|p| p.into_inner()) = config.endpoint;
        let udp = crate::send::UdpState::new(&socket, &config.name, None)?;
        Ok(Worker {
            udp,
            gso: GsoQueue::new()?,
            reader: TunReader::new(config.mtu),
            writer: TunWriter::new(config.mtu),
            name: config.name.clone(),
            tun,
            socket,
            ipv6_socket: config.ipv6,
            tunn: new_tunn(config.private_key, config.peer_public_key, config.keepalive),
            private_key: config.private_key,
            peer_public_key: config.peer_public_key,
            endpoint: config.endpoint,
            keepalive: config.keepalive,
            fwmark: config.fwmark,
            uapi,
            wake,
            last_activity: Instant::now(),
            unanswered_tick: UNANSWERED_TICK,
            tick: TIMER_TICK,
            hurry: false,
            last_rx: None,
            tunn_due: Instant::now(),
            multipath: None,
            counters,
            stop,
            commands,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Makes this a multi-path link (before it is handed to a reactor).
    pub fn set_multipath(&mut self, multipath: Multipath) {
        self.multipath = Some(Box::new(multipath));
    }

    /// The descriptors the reactor watches for this link.
    pub fn fds(&self) -> Vec<(RawFd, Event)> {
        let mut fds = vec![
            (self.tun.as_raw_fd(), Event::Tun),
            (self.socket.as_raw_fd(), Event::Network),
            (self.wake.fd(), Event::Wake),
        ];
        if let Some(uapi) = &self.uapi {
            fds.push((uapi.listener().as_raw_fd(), Event::Uapi));
        }
        if let Some(mp) = &self.multipath {
            for (i, path) in mp.sockets.iter().enumerate() {
                fds.push((path.socket.as_raw_fd(), Event::Path(i as u8)));
            }
        }
        fds
    }

    /// Starts the handshake at once when the peer's address is known; returns when the
    /// timers are first due.
    pub fn start(&mut self, scratch: &mut Scratch) -> Instant {
        if self.endpoint.is_some()
            && let TunnResult::WriteToNetwork(p) = self
                .tunn
                .format_handshake_initiation(&mut scratch.dst, false)
        {
            let p = p.to_vec();
            self.send(&p);
        }
        Instant::now()
    }

    /// Handles one readiness event; false when the link has been asked to stop.
    pub fn on_event(&mut self, event: Event, scratch: &mut Scratch) -> bool {
        match event {
            Event::Tun => self.handle_tun(&mut scratch.dst),
            Event::Network => self.handle_network(Source::Main, &mut scratch.src, &mut scratch.dst),
            Event::Path(i) => {
                self.handle_network(Source::Path(i), &mut scratch.src, &mut scratch.dst)
            }
            Event::Uapi => self.handle_uapi(),
            Event::Wake => {
                self.wake.drain();
                if self.stop.load(Ordering::Relaxed) {
                    return false;
                }
                if self.apply_commands() {
                    // A new endpoint (or a new session after a keepalive change): try now.
                    if let TunnResult::WriteToNetwork(p) = self
                        .tunn
                        .format_handshake_initiation(&mut scratch.dst, false)
                    {
                        let p = p.to_vec();
                        self.send(&p);
                    }
                }
            }
        }
        true
    }

    /// Ticks the WireGuard timers; returns when they are next due.
    ///
    /// A link carrying traffic ticks every 250 ms (boringtun's granularity), an idle one
    /// every second. A link without a session (its peer has not answered) ticks at 5 s,
    /// doubling to 60 s: its only timer work is boringtun's handshake retry, which costs
    /// three X25519 operations, and a node with a thousand absent peers would otherwise
    /// spend a core on them. The peer dialling in, or an answer, is handled at once and
    /// brings the fast tick back (see [`Worker::take_hurry`]).
    pub fn on_timer(&mut self, scratch: &mut Scratch) -> Instant {
        let now = Instant::now();
        if now >= self.tunn_due {
            self.tunn_due = self.tick_tunn(&mut scratch.dst);
        }
        self.bond_timers(now);
        self.bond_due()
            .map_or(self.tunn_due, |due| due.min(self.tunn_due))
    }

    /// Ticks boringtun's timers; returns when they are next due.
    fn tick_tunn(&mut self, dst: &mut [u8]) -> Instant {
        self.tick(dst);
        let idle = self.last_activity.elapsed() > IDLE_AFTER;
        self.tick = match (self.tunn.time_since_last_handshake(), idle) {
            (Some(_), false) => TIMER_TICK,
            (Some(_), true) => IDLE_TICK,
            (None, _) => self.unanswered_tick,
        };
        self.unanswered_tick = match self.tunn.time_since_last_handshake() {
            None => (self.tick * 2).min(UNANSWERED_TICK_MAX),
            Some(_) => UNANSWERED_TICK,
        };
        self.hurry = false;
        Instant::now() + self.tick
    }

    /// When the link wants its timer after an event, if that may be sooner than before:
    /// it came alive while on a slow tick, or its bond has something due.
    pub fn take_hurry(&mut self) -> Option<Instant> {
        if std::mem::take(&mut self.hurry) {
            self.tunn_due = self.tunn_due.min(Instant::now() + TIMER_TICK);
        }
        let bond = self.bond_due();
        Some(bond.map_or(self.tunn_due, |b| b.min(self.tunn_due)))
    }

    /// Traffic from the TUN: an idle link with a session speeds its timers up (one whose
    /// peer has not answered waits for the peer: see `handle_datagram`).
    fn note_tun_activity(&mut self) {
        self.last_activity = Instant::now();
        if self.tick > TIMER_TICK && self.tunn.time_since_last_handshake().is_some() {
            self.hurry = true;
        }
    }

    /// Applies pending commands; true when the link should start a handshake now.
    fn apply_commands(&mut self) -> bool {
        let mut handshake = false;
        self.unanswered_tick = UNANSWERED_TICK;
        while let Ok(command) = self.commands.try_recv() {
            if let Command::PathState { interface, up } = &command {
                self.set_path_state(interface, *up);
                continue;
            }
            handshake |=
                self.endpoint.is_some() || matches!(command, Command::SetEndpoint(Some(_)));
            match command {
                Command::PathState { .. } => {}
                Command::SetEndpoint(endpoint) => {
                    self.endpoint = endpoint;
                    *self
                        .counters
                        .endpoint
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = endpoint;
                }
                Command::SetKeepalive(keepalive) => {
                    self.keepalive = keepalive;
                    self.tunn = new_tunn(self.private_key, self.peer_public_key, keepalive)
                }
            }
        }
        handshake && self.endpoint.is_some()
    }

    /// Sends one datagram now, after whatever is queued for a GSO send. Multi-path links
    /// send it on the bond's control path.
    fn send(&mut self, packet: &[u8]) {
        self.flush();
        if let Some(mp) = self.multipath.as_mut()
            && let Some(path) = mp.bond.pick_control()
        {
            let main = Main {
                socket: &self.socket,
                udp: &self.udp,
                ipv6: self.ipv6_socket,
                endpoint: self.endpoint,
            };
            mp.bond.record_sent(path, packet.len(), Instant::now());
            mp.send_one(path, packet, &main, &self.counters);
            return;
        }
        let Some(endpoint) = self.endpoint else {
            add(&self.counters.dropped_no_route, 1);
            return;
        };
        match self
            .socket
            .send_to(packet, socket_addr_for(self.ipv6_socket, endpoint))
        {
            Ok(_) => {
                add(&self.counters.tx_packets, 1);
                add(&self.counters.tx_bytes, packet.len() as u64);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => add(&self.counters.dropped_no_route, 1),
            Err(e) => {
                add(&self.counters.dropped_no_route, 1);
                tracing::debug!(link = %self.name, %endpoint, "send: {e}");
            }
        }
    }

    /// Encrypts a packet from the TUN straight into the GSO queue (sending what is queued
    /// first when it cannot join).
    fn encapsulate_queued(&mut self, plaintext: &[u8]) {
        // Room for the largest a data message can be: 16 header bytes, the plaintext
        // (padded to 16 by the spec; boringtun does not pad), a 16-byte tag. Whether it
        // joins the queued packets is decided on its actual length, below.
        let room = 32 + plaintext.len().next_multiple_of(16);
        let max = self.udp.max_gso_segments().clamp(1, 64);
        if !self.gso.has_room(room, max) {
            self.flush();
        }
        let tail = self.gso.tail();
        let start = tail.as_ptr();
        let len = match self.tunn.encapsulate(plaintext, tail) {
            TunnResult::WriteToNetwork(packet) if packet.as_ptr() == start => packet.len(),
            // Not where the queue expects it (or not a data packet): send it on its own.
            TunnResult::WriteToNetwork(packet) => {
                let packet = packet.to_vec();
                self.send(&packet);
                return;
            }
            TunnResult::Err(e) => {
                tracing::debug!(link = %self.name, "encapsulate: {e:?}");
                return;
            }
            _ => return,
        };
        if !self.gso.can_keep(len) {
            // Longer than the queued packets: they leave, it starts the next send.
            let packet = self.gso.tail()[..len].to_vec();
            self.flush();
            self.gso.tail()[..len].copy_from_slice(&packet);
        }
        if self.gso.commit(len) {
            self.flush();
        }
    }

    /// Sends the queued packets in one system call (UDP GSO), per path on multi-path links.
    fn flush(&mut self) {
        if let Some(mp) = self.multipath.as_mut() {
            let main = Main {
                socket: &self.socket,
                udp: &self.udp,
                ipv6: self.ipv6_socket,
                endpoint: self.endpoint,
            };
            mp.flush_all(&main, &self.counters);
        }
        let Some((contents, segment_size, count)) = self.gso.take() else {
            return;
        };
        let count = count as u64;
        let Some(endpoint) = self.endpoint else {
            add(&self.counters.dropped_no_route, count);
            return;
        };
        let transmit = quinn_udp::Transmit {
            destination: socket_addr_for(self.ipv6_socket, endpoint),
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        match crate::send::send_batch(&self.udp, &self.socket, &transmit) {
            Ok(sent) => sent.count(&self.counters),
            Err(e) => {
                add(&self.counters.dropped_no_route, count);
                tracing::debug!(link = %self.name, %endpoint, "send: {e}");
            }
        }
    }

    fn handle_tun(&mut self, dst: &mut [u8]) {
        let mut reader = std::mem::replace(&mut self.reader, TunReader::new(0));
        for _ in 0..BATCH {
            let fitting = self.endpoint.and_then(|e| self.udp.fitting_packet(e));
            let packets = match reader.read(&self.tun, fitting) {
                Ok(n) => {
                    self.note_tun_activity();
                    n
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(link = %self.name, "reading the TUN device: {e}");
                    break;
                }
            };
            if self.multipath.is_some() {
                for i in 0..packets {
                    self.encapsulate_multipath(reader.packet(i), dst);
                }
            } else {
                for i in 0..packets {
                    self.encapsulate_queued(reader.packet(i));
                }
            }
        }
        self.reader = reader;
        self.flush();
    }

    fn handle_network(&mut self, source: Source, src: &mut [u8], dst: &mut [u8]) {
        for _ in 0..BATCH {
            // One receive may hold several datagrams coalesced by UDP GRO, `stride` apart.
            let mut meta = [quinn_udp::RecvMeta::default()];
            let received = {
                let mut bufs = [std::io::IoSliceMut::new(src)];
                let (socket, udp) = match (source, self.multipath.as_ref()) {
                    (Source::Path(i), Some(mp)) => match mp.sockets.get(usize::from(i)) {
                        Some(p) => (&p.socket, &p.udp),
                        None => return,
                    },
                    (Source::Path(_), None) => return,
                    (Source::Main, _) => (&self.socket, &self.udp),
                };
                udp.recv(socket.into(), &mut bufs, &mut meta)
            };
            match received {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(link = %self.name, "receiving: {e}");
                    break;
                }
            }
            let meta = meta[0];
            let from = canonical(meta.addr);
            let stride = if meta.stride == 0 {
                meta.len
            } else {
                meta.stride
            };
            for datagram in src[..meta.len].chunks(stride.max(1)) {
                self.handle_datagram(datagram, from, source, dst);
            }
            // What one receive brought (a GRO batch: mostly one flow) reaches the TUN now,
            // coalesced: holding it for more receives only adds latency.
            self.flush_tun();
        }
        // Handshake responses and packets released by a new session go out now, and the
        // decrypted packets reach the TUN, coalesced.
        self.flush();
        self.flush_tun();
    }

    fn flush_tun(&mut self) {
        flush_tun(&mut self.writer, &self.tun, &self.name);
    }

    fn handle_datagram(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        source: Source,
        dst: &mut [u8],
    ) {
        if braid_bond::is_probe(datagram) {
            self.handle_probe(datagram, from, source);
            return;
        }
        // Data messages decrypt straight into the TUN batch; anything else (handshakes,
        // cookies) into `dst`.
        let is_data = datagram.first() == Some(&4);
        let header = braid_bond::wg::data_header(datagram);
        let out: &mut [u8] = if is_data {
            if self.writer.is_full() {
                self.flush_tun();
            }
            self.writer.slot(datagram.len())
        } else {
            dst
        };
        let start = out.as_ptr();
        let result = self.tunn.decapsulate(Some(from.ip()), datagram, out);
        if let TunnResult::Err(e) = &result {
            self.count_drop(e);
            return;
        }
        self.last_rx = Some(Instant::now());
        // As note_activity(true); field by field, `result` borrows the TUN batch.
        self.last_activity = Instant::now();
        self.hurry |= self.tick > TIMER_TICK;
        add(&self.counters.rx_packets, 1);
        add(&self.counters.rx_bytes, datagram.len() as u64);
        // Authenticated: the peer is at `from` now (roaming, or a peer that dialled in).
        // On a configured path's socket the peer's address is the endpoint already.
        if source == Source::Main && self.endpoint != Some(from) {
            tracing::info!(link = %self.name, endpoint = %from, "peer endpoint");
            self.endpoint = Some(from);
            *self
                .counters
                .endpoint
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(from);
        }
        // A handshake initiation from an address the far side's bond does not know: the
        // peer started over (new path sockets, or no paths any more). Follow it anew: the
        // answer goes where the initiation came from, and the peer's next probes make a
        // new bond.
        if datagram.first() == Some(&1)
            && source == Source::Main
            && self
                .multipath
                .as_ref()
                .is_some_and(|mp| mp.sockets.is_empty() && mp.bond.path_by_addr(from).is_none())
        {
            tracing::info!(link = %self.name, peer = %from, "the peer's paths changed: following anew");
            self.multipath = None;
            *self.counters.bond.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        match result {
            TunnResult::WriteToNetwork(packet) => {
                let packet = packet.to_vec();
                self.send(&packet);
                // Send the packets queued while the handshake was in progress.
                while let TunnResult::WriteToNetwork(packet) = self.tunn.decapsulate(None, &[], dst)
                {
                    let packet = packet.to_vec();
                    self.send(&packet);
                }
            }
            TunnResult::WriteToTunnelV4(packet, _) | TunnResult::WriteToTunnelV6(packet, _) => {
                let len = packet.len();
                if let Some(mp) = self.multipath.as_mut() {
                    let now = Instant::now();
                    let path = match source {
                        Source::Path(i) => Some(braid_bond::PathId(u32::from(i))),
                        Source::Main => mp.bond.learn_path(from, now).ok(),
                    };
                    if let Some(path) = path {
                        mp.bond.on_authenticated(path, datagram.len(), now);
                    }
                    if let Some((index, counter)) = header {
                        match mp.bond.push_received(index, counter, packet, now) {
                            braid_bond::Verdict::Deliver => {}
                            braid_bond::Verdict::Buffered => {
                                self.drain_reordered();
                                return;
                            }
                            braid_bond::Verdict::Duplicate | braid_bond::Verdict::Dropped => {
                                add(&self.counters.dropped_replay, 1);
                                return;
                            }
                        }
                    }
                }
                if !(is_data && packet.as_ptr() == start) {
                    // Decrypted elsewhere: copy it into the batch (every TUN write carries
                    // the batch's virtio header).
                    let packet = packet.to_vec();
                    if self.writer.is_full() {
                        self.flush_tun();
                    }
                    self.writer.slot(len)[..len].copy_from_slice(&packet);
                }
                self.writer.commit(len);
                self.drain_reordered();
            }
            _ => {}
        }
        if !is_data {
            self.note_handshake();
        }
    }

    fn count_drop(&self, e: &WireGuardError) {
        use WireGuardError::*;
        let counter = match e {
            WrongKey | WrongIndex | NoCurrentSession => &self.counters.dropped_unknown_key,
            DuplicateCounter | InvalidCounter | WrongTai64nTimestamp => {
                &self.counters.dropped_replay
            }
            _ => &self.counters.dropped_bad_packet,
        };
        add(counter, 1);
        tracing::trace!(link = %self.name, "dropped a datagram: {e:?}");
    }

    /// Publishes when the last authenticated datagram arrived (coarse: once per tick).
    fn note_rx(&self) {
        if let Some(at) = self.last_rx {
            let at = SystemTime::now().checked_sub(at.elapsed());
            *self
                .counters
                .last_rx
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = at;
        }
    }

    fn note_handshake(&self) {
        if let Some(age) = self.tunn.time_since_last_handshake() {
            let at = SystemTime::now().checked_sub(age);
            *self
                .counters
                .last_handshake
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = at;
        }
    }

    fn tick(&mut self, dst: &mut [u8]) {
        match self.tunn.update_timers(dst) {
            TunnResult::WriteToNetwork(packet) => {
                let packet = packet.to_vec();
                self.send(&packet);
            }
            TunnResult::Err(WireGuardError::ConnectionExpired) => {}
            TunnResult::Err(e) => tracing::trace!(link = %self.name, "timers: {e:?}"),
            _ => {}
        }
        self.note_rx();
        self.note_handshake();
    }
}

fn flush_tun(writer: &mut TunWriter, tun: &SyncDevice, name: &str) {
    if let Err(e) = writer.flush(tun) {
        tracing::debug!(link = %name, "writing the TUN device: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
