//! A deterministic two-engine network on virtual time (in the manner of quinn's test
//! `Pair` and smoltcp's fault-injecting devices).
//!
//! Two engines, `a` and `b`, each with a main socket address and, for a bonded side, one
//! source address per configured path. Every datagram crosses a [`Wire`] chosen by its
//! source address: seeded delay, jitter, loss and duplication. Time only moves when the
//! simulator jumps to the next delivery or engine deadline.

#![allow(dead_code)]

use braid_engine::{Engine, EngineConfig, Incoming, Outgoing, Socket};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub(crate) const MTU: usize = 1420;

/// One direction of one path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wire {
    pub delay: Duration,
    /// Each datagram gets an extra uniform delay in `0..=jitter` (so it may overtake).
    pub jitter: Duration,
    pub loss: f64,
    pub duplicate: f64,
    /// Cut: everything is lost.
    pub down: bool,
}

impl Wire {
    pub(crate) fn delay_ms(ms: u64) -> Self {
        Self {
            delay: Duration::from_millis(ms),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            down: false,
        }
    }
}

/// A seeded SplitMix64 for the network's dice.
pub(crate) struct Dice(pub u64);

impl Dice {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Which engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Side {
    A,
    B,
}

/// A node: its engine (None while "down") and its socket addresses.
pub(crate) struct Node {
    pub engine: Option<Engine>,
    pub main: SocketAddr,
    pub paths: Vec<SocketAddr>,
    /// IP packets its TUN received: the ids (see [`packet`]) in arrival order.
    pub delivered: Vec<u64>,
    pub delivered_at: Vec<(Instant, u64)>,
    pub events: Vec<(Instant, braid_engine::Event)>,
}

impl Node {
    pub(crate) fn engine(&mut self) -> &mut Engine {
        self.engine.as_mut().expect("the node is running")
    }

    fn address(&self, socket: Socket) -> SocketAddr {
        match socket {
            Socket::Main => self.main,
            Socket::Path(i) => self.paths[usize::from(i)],
        }
    }

    fn socket_for(&self, addr: SocketAddr) -> Option<Socket> {
        if addr == self.main {
            return Some(Socket::Main);
        }
        self.paths
            .iter()
            .position(|p| *p == addr)
            .map(|i| Socket::Path(i as u8))
    }
}

struct InFlight {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    payload: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The two engines and the network between them.
pub(crate) struct Pair {
    pub start: Instant,
    pub now: Instant,
    pub a: Node,
    pub b: Node,
    /// Impairment by source address (default: [`Pair::default_wire`]).
    pub wires: HashMap<SocketAddr, Wire>,
    pub default_wire: Wire,
    pub dice: Dice,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// Every datagram that left either side: (time, from, to, bytes), for replays.
    pub sent: Vec<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    /// Datagrams from outsiders (attackers), delivered like any other.
    pub outsiders: Vec<SocketAddr>,
    /// What outsiders received back.
    pub to_outsiders: Vec<(SocketAddr, Vec<u8>)>,
}

pub(crate) fn key(seed: u8) -> ([u8; 32], [u8; 32]) {
    let mut private = [seed; 32];
    private[0] &= 248;
    private[31] = (private[31] & 127) | 64;
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(private));
    (private, public.to_bytes())
}

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a literal address")
}

/// A config for a link from `own` to `peer`.
pub(crate) fn config(own: u8, peer: u8, endpoint: Option<SocketAddr>, seed: u64) -> EngineConfig {
    EngineConfig {
        private_key: key(own).0,
        peer_public_key: key(peer).1,
        keepalive: None,
        endpoint,
        paths: Vec::new(),
        scheduler: braid_engine_scheduler(),
        mtu: MTU,
        wall: Duration::from_secs(1_790_000_000),
        seed,
    }
}

/// `a` knows `b`'s address and starts the handshake; `b` learns `a`'s.
pub(crate) fn plain_pair(seed: u64) -> Pair {
    let a = config(1, 2, Some(addr("192.0.2.2:51002")), seed);
    let b = config(2, 1, None, seed + 1);
    Pair::new(a, b, seed)
}

/// `a` bonds two configured paths (sources 198.51.100.1 and .2) to `b`, which follows.
pub(crate) fn bonded_pair(seed: u64, scheduler: braid_bond::Scheduler) -> Pair {
    let mut a = config(1, 2, Some(addr("192.0.2.2:51002")), seed);
    a.paths = vec![braid_bond::PathSpec::default(); 2];
    a.scheduler = scheduler;
    let b = config(2, 1, None, seed + 1);
    Pair::new(a, b, seed)
}

pub(crate) fn braid_engine_scheduler() -> braid_bond::Scheduler {
    braid_bond::Scheduler::Flow
}

/// An IPv4/UDP packet from 10.0.0.1 to 10.0.0.2 of `len` bytes carrying `id`; `flow`
/// picks the source port (so the flow scheduler may spread flows).
pub(crate) fn packet(id: u64, len: usize, flow: u16) -> Vec<u8> {
    let len = len.max(28 + 8);
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 0, 0, 1]);
    p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    p[20..22].copy_from_slice(&(10000 + flow).to_be_bytes());
    p[22..24].copy_from_slice(&9u16.to_be_bytes());
    p[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    p[28..36].copy_from_slice(&id.to_be_bytes());
    p
}

pub(crate) fn packet_id(p: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(p.get(28..36)?.try_into().ok()?))
}

impl Pair {
    /// `a` at 192.0.2.1:51001, `b` at 192.0.2.2:51002, 10 ms each way, no loss.
    pub(crate) fn new(a: EngineConfig, b: EngineConfig, seed: u64) -> Self {
        let start = Instant::now();
        let a_paths: Vec<SocketAddr> = (0..a.paths.len())
            .map(|i| addr(&format!("198.51.100.{}:51001", i + 1)))
            .collect();
        let b_paths: Vec<SocketAddr> = (0..b.paths.len())
            .map(|i| addr(&format!("203.0.113.{}:51002", i + 1)))
            .collect();
        let mut pair = Self {
            start,
            now: start,
            a: Node {
                engine: None,
                main: addr("192.0.2.1:51001"),
                paths: a_paths,
                delivered: Vec::new(),
                delivered_at: Vec::new(),
                events: Vec::new(),
            },
            b: Node {
                engine: None,
                main: addr("192.0.2.2:51002"),
                paths: b_paths,
                delivered: Vec::new(),
                delivered_at: Vec::new(),
                events: Vec::new(),
            },
            wires: HashMap::new(),
            default_wire: Wire::delay_ms(10),
            dice: Dice(seed),
            in_flight: BinaryHeap::new(),
            seq: 0,
            sent: Vec::new(),
            outsiders: Vec::new(),
            to_outsiders: Vec::new(),
        };
        pair.a.engine = Some(Engine::new(a, start));
        pair.b.engine = Some(Engine::new(b, start));
        pair.flush(Side::A);
        pair.flush(Side::B);
        pair
    }

    pub(crate) fn node(&mut self, side: Side) -> &mut Node {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Restarts a side at `now` with a new engine (same or other config).
    pub(crate) fn restart(&mut self, side: Side, mut config: EngineConfig) {
        config.wall = Duration::from_secs(1_790_000_000) + (self.now - self.start);
        let now = self.now;
        self.node(side).engine = Some(Engine::new(config, now));
        self.flush(side);
    }

    /// Stops a side (datagrams to it are lost until it restarts).
    pub(crate) fn stop(&mut self, side: Side) {
        self.node(side).engine = None;
    }

    /// Puts a datagram on the wire from `from` to `to`.
    pub(crate) fn transmit(&mut self, from: SocketAddr, to: SocketAddr, payload: Vec<u8>) {
        self.sent.push((self.now, from, to, payload.clone()));
        let wire = *self.wires.get(&from).unwrap_or(&self.default_wire);
        if wire.down || self.dice.unit() < wire.loss {
            return;
        }
        let copies = if self.dice.unit() < wire.duplicate {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if wire.jitter.is_zero() {
                Duration::ZERO
            } else {
                wire.jitter.mul_f64(self.dice.unit())
            };
            self.seq += 1;
            self.in_flight.push(Reverse(InFlight {
                at: self.now + wire.delay + jitter,
                seq: self.seq,
                from,
                to,
                payload: payload.clone(),
            }));
        }
    }

    /// Sends everything the side's engine has queued, and takes its released packets and
    /// events.
    pub(crate) fn flush(&mut self, side: Side) {
        let now = self.now;
        let node = self.node(side);
        let Some(engine) = node.engine.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = engine.poll_transmit() {
            out.push(t);
        }
        let mut packets = Vec::new();
        while let Some(p) = engine.poll_packet() {
            packets.push(p);
        }
        let mut events = Vec::new();
        while let Some(e) = engine.poll_event() {
            events.push((now, e));
        }
        for p in packets {
            if let Some(id) = packet_id(&p) {
                node.delivered.push(id);
                node.delivered_at.push((now, id));
            }
        }
        node.events.extend(events);
        let sources: Vec<SocketAddr> = out.iter().map(|t| node.address(t.route.socket)).collect();
        for (t, from) in out.into_iter().zip(sources) {
            self.transmit(from, t.route.to, t.payload);
        }
    }

    /// The TUN of `side` hands the engine an IP packet.
    pub(crate) fn send(&mut self, side: Side, packet: &[u8]) -> Outgoing {
        let now = self.now;
        let node = self.node(side);
        let mut out = vec![0u8; packet.len() + 64];
        let Some(engine) = node.engine.as_mut() else {
            return Outgoing::Dropped;
        };
        let result = engine.send_packet(now, packet, &mut out);
        let mut sends = Vec::new();
        if let Outgoing::Data { len, routes } = result {
            for r in routes.iter() {
                sends.push((node.address(r.socket), r.to, out[..len].to_vec()));
            }
        }
        for (from, to, payload) in sends {
            self.transmit(from, to, payload);
        }
        self.flush(side);
        result
    }

    fn deliver(&mut self, d: InFlight) {
        let now = self.now;
        let side = if self.a.socket_for(d.to).is_some() {
            Side::A
        } else if self.b.socket_for(d.to).is_some() {
            Side::B
        } else {
            if self.outsiders.contains(&d.to) {
                self.to_outsiders.push((d.to, d.payload));
            }
            return;
        };
        let node = self.node(side);
        let socket = node.socket_for(d.to).expect("checked above");
        let Some(engine) = node.engine.as_mut() else {
            return;
        };
        let mut out = vec![0u8; d.payload.len().max(MTU + 64)];
        if let Incoming::Packet(len) =
            engine.handle_datagram(now, socket, d.from, &d.payload, &mut out)
            && let Some(id) = packet_id(&out[..len])
        {
            node.delivered.push(id);
            node.delivered_at.push((now, id));
        }
        self.flush(side);
    }

    /// Runs the network and both engines' timers until `until`.
    pub(crate) fn run_until(&mut self, until: Instant) {
        loop {
            let mut next = until;
            for side in [Side::A, Side::B] {
                if let Some(e) = self.node(side).engine.as_ref() {
                    next = next.min(e.poll_timeout());
                }
            }
            if let Some(Reverse(d)) = self.in_flight.peek() {
                next = next.min(d.at);
            }
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if let Some(Reverse(d)) = self.in_flight.peek()
                && d.at <= self.now
            {
                let Some(Reverse(d)) = self.in_flight.pop() else {
                    unreachable!()
                };
                self.deliver(d);
                continue;
            }
            let now = self.now;
            let mut fired = false;
            for side in [Side::A, Side::B] {
                if let Some(e) = self.node(side).engine.as_mut()
                    && e.poll_timeout() <= now
                {
                    e.handle_timeout(now);
                    fired = true;
                    self.flush(side);
                }
            }
            if !fired && next >= until {
                break;
            }
        }
        self.now = self.now.max(until);
    }

    pub(crate) fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Sends one packet with `id` every `every` from `side` for `total`, running the
    /// network in between.
    pub(crate) fn stream(
        &mut self,
        side: Side,
        first_id: u64,
        every: Duration,
        total: Duration,
    ) -> u64 {
        let end = self.now + total;
        let mut id = first_id;
        while self.now < end {
            self.send(side, &packet(id, 200, 1));
            id += 1;
            let next = self.now + every;
            self.run_until(next);
        }
        id
    }

    /// The first datagram sent from `from` whose WireGuard type is `kind`.
    pub(crate) fn first_sent(&self, from: SocketAddr, kind: u8) -> Option<Vec<u8>> {
        self.sent
            .iter()
            .find(|(_, src, _, bytes)| *src == from && bytes.first() == Some(&kind))
            .map(|(_, _, _, bytes)| bytes.clone())
    }

    pub(crate) fn events(&self, side: Side) -> &[(Instant, braid_engine::Event)] {
        match side {
            Side::A => &self.a.events,
            Side::B => &self.b.events,
        }
    }
}
