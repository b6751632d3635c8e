//! braid's link engine: everything one WireGuard link decides, as a sans-IO state machine.
//!
//! One [`Engine`] per link holds the WireGuard session (boringtun's `noise::Tunn`), the
//! bond when the link runs over several paths (braid-bond: scheduler, probes, reorder
//! buffer), the timers and their back-off, endpoint learning and the counters. It never
//! reads a clock, touches a socket or starts a thread: the I/O shell (braid-link's reactor)
//! passes `now` and bytes in and polls what comes out, in the shape of quinn-proto.
//!
//! Inputs:
//! - [`Engine::handle_datagram`]`(now, socket, from, datagram, out)`: a UDP datagram. A
//!   data packet that may go to the TUN now is decrypted into `out`
//!   ([`Incoming::Packet`]); anything else leaves work in the queues below.
//! - [`Engine::send_packet`]`(now, packet, out)`: an IP packet from the TUN, encrypted into
//!   `out`, with the route(s) it leaves on ([`Outgoing::Data`]).
//! - [`Engine::handle_timeout`]`(now)`: when [`Engine::poll_timeout`] is due.
//! - [`Engine::set_endpoint`], [`Engine::set_keepalive`], [`Engine::set_path_up`],
//!   [`Engine::set_wall`]: commands.
//!
//! Outputs, polled after every input: [`Engine::poll_transmit`] (handshakes, probes,
//! keepalives, packets released by a new session, each with its route),
//! [`Engine::poll_packet`] (packets the reorder buffer lets go, for the TUN),
//! [`Engine::poll_event`] (state changes, rate-limited), [`Engine::poll_timeout`] (the next
//! deadline) and [`Engine::stats`].
//!
//! A single-path link is a link without a bond: the same engine, the same calls.
//!
//! Rules it keeps (WireGuard paper, sections 5 and 6; kernel WireGuard's behaviour): no
//! state changes on an unauthenticated datagram. Liveness refreshes and the far side of a
//! bond follows the peer only after a datagram authenticates: a data packet that
//! decrypts, an initiation that the handshake accepts (it answers with a response), or a
//! response that completes the handshake. The endpoint moves on a data packet or a
//! response only: an initiation may be a replay (a restarted engine has forgotten the
//! newest timestamp it took), so it is answered where it came from and the endpoint
//! follows on the data message that confirms the session. A cookie reply (the answer
//! under load) is not authentication, and goes back to the sender.

mod bonding;
mod clock;
mod events;
mod random;
mod receive;
mod route;
mod send;
mod stats;
mod ticks;

pub use bonding::MAX_SLOTS;
pub use events::{Event, Rejection};
pub use route::{Route, Routes, Socket, Transmit};
pub use stats::Stats;

use boringtun::noise::Tunn;
use boringtun::noise::rate_limiter::RateLimiter;
use braid_bond::{Bond, PathSpec, Scheduler};
use clock::Clock;
use events::Gate;
use random::Random;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use ticks::Ticks;

/// Most queued transmits, packets or events kept before the oldest are dropped (the shell
/// drains them after every call; this only bounds memory if it does not).
const MAX_QUEUED: usize = 4096;

/// Handshake messages a link takes per second before it answers with cookie replies
/// (boringtun's per-peer limit; WireGuard paper, section 5.3).
const HANDSHAKE_RATE_LIMIT: u64 = 10;

/// What one link is: keys, peer, paths. Everything random comes from `seed`.
#[derive(Clone)]
pub struct EngineConfig {
    /// This side's X25519 private key (32 bytes).
    pub private_key: [u8; 32],
    /// The peer's X25519 public key (32 bytes).
    pub peer_public_key: [u8; 32],
    /// Persistent keepalive interval in seconds (`wg`'s `persistent-keepalive`).
    pub keepalive: Option<u16>,
    /// Where the peer is; `None` until it dials in.
    pub endpoint: Option<SocketAddr>,
    /// Configured underlay paths, in the order of their sockets ([`Socket::Path`]`(i)`
    /// carries `paths[i]`). Two or more make a bond; fewer, a plain link.
    pub paths: Vec<PathSpec>,
    /// How a bonded link spreads packets over its paths (braid-bond's schedulers).
    pub scheduler: Scheduler,
    /// The link MTU in bytes (sizes the engine's buffer for queued packets).
    pub mtu: usize,
    /// Wall-clock time (since the Unix epoch) at the `now` given to [`Engine::new`].
    pub wall: Duration,
    /// Randomness for session indexes and probe epochs (fresh for each instance).
    pub seed: u64,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("endpoint", &self.endpoint)
            .field("paths", &self.paths.len())
            .finish_non_exhaustive()
    }
}

/// What became of a datagram from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A decrypted IP packet of this many bytes at the start of `out`: write it to the TUN.
    Packet(usize),
    /// Nothing for the TUN now (a handshake, a probe, a buffered or dropped packet).
    Nothing,
}

/// What became of an IP packet from the TUN.
#[derive(Debug, Clone, Copy)]
#[allow(clippy::large_enum_variant)] // returned on the stack once per packet: boxing would allocate
pub enum Outgoing {
    /// An encrypted data message of this many bytes at the start of `out`: send it on
    /// every route.
    Data {
        /// Length of the message in bytes.
        len: usize,
        /// The sockets and addresses to send it on.
        routes: Routes,
    },
    /// No session yet: the packet waits inside the engine until the handshake completes
    /// (a handshake initiation may be waiting in [`Engine::poll_transmit`]).
    Pending,
    /// Nowhere to send it (no endpoint, no usable path); counted.
    Dropped,
}

/// One link's state machine. See the crate documentation.
pub struct Engine {
    clock: Clock,
    random: Random,
    tunn: Tunn,
    /// The handshake rate limit of every `Tunn` this engine makes. The engine opens its
    /// one-second windows itself (on each handshake message), so they do not depend on
    /// how often the timers run.
    rate_limiter: Arc<RateLimiter>,
    private_key: [u8; 32],
    peer_public_key: [u8; 32],
    /// The bond's probe keys, derived once (`None` for a low-order peer key).
    probe_keys: Option<braid_bond::ProbeKeys>,
    keepalive: Option<u16>,
    endpoint: Option<SocketAddr>,
    mtu: usize,
    /// Configured paths (this side owns a socket each, slot `i` is `Socket::Path(i)`), if
    /// they make a bond.
    configured: Vec<bonding::Slot>,
    scheduler: Scheduler,
    /// The bond: made at start on the side with configured paths, or when the peer's
    /// first probe authenticates on the far side.
    bond: Option<Bond>,
    /// Whether a path of the bond was up when last looked at.
    bond_up: bool,
    /// All paths of the bond are down since then: the handshake is retried every second.
    dead_since: Option<Instant>,
    last_dead_retry: Option<Instant>,
    ticks: Ticks,
    last_rx: Option<Instant>,
    /// When the last handshake completed. boringtun stamps it with the time its timers
    /// last ran, up to a minute stale on a link whose peer had not answered (ticks.rs).
    handshake_at: Option<Instant>,
    stats: Stats,
    endpoint_gate: Gate,
    rejection_gate: Gate,
    /// Room for control messages and packets a new session releases.
    buffer: Vec<u8>,
    transmits: VecDeque<Transmit>,
    packets: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
}

impl Engine {
    /// A link at `now`; it sends a handshake initiation at once when the endpoint is known
    /// (or, bonded, on its best path).
    pub fn new(config: EngineConfig, now: Instant) -> Self {
        let clock = Clock::new(now, config.wall);
        let mut random = Random::new(config.seed);
        let rate_limiter = new_rate_limiter(&clock, now, &config);
        let tunn = new_tunn(&clock, now, &config, &rate_limiter, &mut random);
        let mut engine = Self {
            clock,
            tunn,
            rate_limiter,
            private_key: config.private_key,
            peer_public_key: config.peer_public_key,
            probe_keys: bonding::keys(config.private_key, config.peer_public_key),
            keepalive: config.keepalive,
            endpoint: config.endpoint,
            mtu: config.mtu.max(1280),
            configured: Vec::new(),
            scheduler: config.scheduler,
            bond: None,
            bond_up: false,
            dead_since: None,
            last_dead_retry: None,
            ticks: Ticks::new(now),
            last_rx: None,
            handshake_at: None,
            stats: Stats::default(),
            endpoint_gate: Gate::new(Duration::from_secs(1)),
            rejection_gate: Gate::new(Duration::from_secs(10)),
            buffer: Vec::new(),
            transmits: VecDeque::new(),
            packets: VecDeque::new(),
            events: VecDeque::new(),
            random,
        };
        if config.paths.len() >= 2 {
            engine.configured = config
                .paths
                .iter()
                .map(|&spec| bonding::Slot {
                    spec,
                    id: Some(braid_bond::PathId(0)),
                })
                .collect();
            engine.make_active_bond(now);
        }
        engine.initiate(now, false);
        engine
    }

    // ---- queries ----

    /// Where the peer is (configured, or where it last authenticated from).
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.endpoint
    }

    /// The persistent-keepalive interval in seconds, if on.
    pub fn keepalive(&self) -> Option<u16> {
        self.keepalive
    }

    /// The link's counters since it started.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Wall-clock time (since the Unix epoch) of the current session's handshake.
    pub fn last_handshake(&self, now: Instant) -> Option<Duration> {
        if !self.has_session(now) {
            return None;
        }
        let at = self.handshake_at?;
        self.clock
            .wall(now)
            .checked_sub(now.saturating_duration_since(at))
    }

    /// Wall-clock time (since the Unix epoch) of the last authenticated datagram, or of
    /// the last probe answer of a bonded link (authenticated with the probe keys) if newer:
    /// the peer answers probes whatever its keepalive, so a bonded link whose peer sends
    /// no keepalives is still seen alive while a path works.
    pub fn last_rx(&self, now: Instant) -> Option<Duration> {
        let answer = self.bond.as_ref().and_then(Bond::last_answer);
        let at = self.last_rx.max(answer)?;
        self.clock
            .wall(now)
            .checked_sub(now.saturating_duration_since(at))
    }

    /// Whether a session exists (a handshake completed and has not expired).
    pub fn has_session(&self, now: Instant) -> bool {
        self.clock
            .run(now, || self.tunn.time_since_last_handshake())
            .is_some()
    }

    /// The bond's status, if the link bonds paths.
    pub fn bond_status(&self, now: Instant) -> Option<braid_bond::BondStatus> {
        Some(self.bond.as_ref()?.status(now))
    }

    /// Whether the link is bonded, and with configured paths (this side's sockets).
    pub fn bonded(&self) -> (bool, bool) {
        (self.bond.is_some(), !self.configured.is_empty())
    }

    // ---- outputs ----

    /// The next datagram to send (handshake, keepalive, probe, or data a new session
    /// released), oldest first; `None` when drained. Call after every input until `None`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next decrypted IP packet for the TUN that a bonded link's reorder buffer released,
    /// in order; write each to the TUN. The queue is bounded: the oldest is dropped first.
    pub fn poll_packet(&mut self) -> Option<Vec<u8>> {
        self.packets.pop_front()
    }

    /// The next [`Event`] to log or act on, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Instant {
        let mut due = self.ticks.due();
        if let Some(bond) = &self.bond
            && let Some(at) = bond.poll_timeout()
        {
            due = due.min(at);
        }
        if let Some(at) = self.dead_retry_due() {
            due = due.min(at);
        }
        due
    }

    // ---- commands ----

    /// Points the link at a new endpoint (config change, re-resolved name, `wg set`) and
    /// starts a handshake there at once.
    pub fn set_endpoint(&mut self, now: Instant, endpoint: Option<SocketAddr>) {
        self.endpoint = endpoint;
        self.ticks.reset(now);
        self.initiate(now, true);
    }

    /// The wall clock (time since the Unix epoch) read `wall` at `now`; the shell passes
    /// it now and then (each timer run). Handshake timestamps follow a clock corrected
    /// forward after the start (NTP on a machine without a real-time clock, time asleep),
    /// as kernel WireGuard's and wireguard-go's do; a clock set back is not followed.
    pub fn set_wall(&mut self, now: Instant, wall: Duration) {
        self.clock.follow_wall(now, wall);
    }

    /// Changes the persistent keepalive: a new session is negotiated.
    pub fn set_keepalive(&mut self, now: Instant, keepalive: Option<u16>) {
        self.keepalive = keepalive;
        let config = self.tunn_config();
        self.tunn = new_tunn(
            &self.clock,
            now,
            &config,
            &self.rate_limiter,
            &mut self.random,
        );
        self.ticks.reset(now);
        self.initiate(now, false);
    }

    /// Rotates this side's private key (`wg set private-key`): a new session under the new
    /// key is negotiated at once; a bond starts over with probe keys derived from it.
    pub fn set_private_key(&mut self, now: Instant, private_key: [u8; 32]) {
        if private_key == self.private_key {
            return;
        }
        self.private_key = private_key;
        let config = self.tunn_config();
        // MAC1 and cookies are keyed by this side's public key: a new limiter for the new key.
        self.rate_limiter = new_rate_limiter(&self.clock, now, &config);
        self.probe_keys = bonding::keys(private_key, self.peer_public_key);
        self.tunn = new_tunn(
            &self.clock,
            now,
            &config,
            &self.rate_limiter,
            &mut self.random,
        );
        if self.configured.is_empty() {
            self.bond = None;
        } else {
            self.make_active_bond(now);
        }
        self.bond_up = false;
        self.dead_since = None;
        self.ticks.reset(now);
        self.initiate(now, false);
    }

    // ---- internals shared by the modules ----

    fn tunn_config(&self) -> EngineConfig {
        EngineConfig {
            private_key: self.private_key,
            peer_public_key: self.peer_public_key,
            keepalive: self.keepalive,
            endpoint: self.endpoint,
            paths: Vec::new(),
            scheduler: self.scheduler,
            mtu: self.mtu,
            wall: Duration::ZERO,
            seed: 0,
        }
    }

    /// The engine's scratch buffer, sized for any packet of the link.
    fn take_buffer(&mut self) -> Vec<u8> {
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.resize(self.mtu + 256, 0);
        buffer
    }

    fn event(&mut self, event: Event) {
        if self.events.len() >= MAX_QUEUED {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn push_transmit(&mut self, transmit: Transmit) {
        if self.transmits.len() >= MAX_QUEUED {
            self.transmits.pop_front();
        }
        self.transmits.push_back(transmit);
    }

    fn push_packet(&mut self, packet: Vec<u8>) {
        if self.packets.len() >= MAX_QUEUED {
            self.packets.pop_front();
        }
        self.packets.push_back(packet);
    }
}

/// A WireGuard state machine with a fresh random session index base: a link made again
/// (a new keepalive) must not take the handshake answers meant for the instance before it.
fn new_tunn(
    clock: &Clock,
    now: Instant,
    config: &EngineConfig,
    rate_limiter: &Arc<RateLimiter>,
    random: &mut Random,
) -> Tunn {
    let index = random.session_index();
    clock.run(now, || {
        Tunn::new(
            x25519_dalek::StaticSecret::from(config.private_key),
            x25519_dalek::PublicKey::from(config.peer_public_key),
            None,
            config.keepalive,
            index,
            Some(Arc::clone(rate_limiter)),
        )
    })
}

/// The handshake rate limiter for this side's key (it checks MAC1 against it).
fn new_rate_limiter(clock: &Clock, now: Instant, config: &EngineConfig) -> Arc<RateLimiter> {
    let secret = x25519_dalek::StaticSecret::from(config.private_key);
    let public = x25519_dalek::PublicKey::from(&secret);
    clock.run(now, || {
        Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT))
    })
}
