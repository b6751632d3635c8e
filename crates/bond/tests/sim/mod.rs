//! A deterministic network simulator for two bonded endpoints.
//!
//! Side A has configured paths 0..N (one "socket" each); side B has one address and
//! learns A's paths from the source address of authenticated traffic, like a server.
//! Each path is two directions with a rate (a FIFO queue with tail drop), a delay, a
//! jitter (which never reorders within a direction), random loss, and cut intervals.
//! WireGuard is stood in for by its framing only (type 4, receiver index, counter,
//! plaintext, 16-byte tag): the bond never looks inside the encryption; a second copy of
//! a counter is dropped before the bond sees it, as boringtun's replay window does.
//! The two bonds' clocks are offset (B's started 137 ms earlier), as two machines' are.
//! Applications: constant-rate UDP streams, TCP bulk flows (`tcp.rs`) and pings.
//! Time is virtual; the only randomness is a seeded generator.

#![allow(dead_code)]

pub(crate) mod tcp;

use braid_bond::window::Window;
use braid_bond::{Bond, BondConfig, Event, PathId, PathSpec, ProbeKeys, Verdict, is_probe, wg};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// xorshift64*: small, seeded, good enough for loss and jitter draws.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkSpec {
    /// Bits per second; 0 = unlimited.
    pub rate_bps: u64,
    pub delay: Duration,
    /// Extra delay, uniform in [0, jitter).
    pub jitter: Duration,
    pub loss: f64,
    /// Tail drop when the queue would exceed this much waiting time.
    pub queue: Duration,
}

impl LinkSpec {
    pub(crate) fn new(rate_mbit: u64, delay_ms: u64) -> Self {
        Self {
            rate_bps: rate_mbit * 1_000_000,
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::ZERO,
            loss: 0.0,
            queue: Duration::from_millis(50),
        }
    }
    pub(crate) fn loss(mut self, l: f64) -> Self {
        self.loss = l;
        self
    }
    pub(crate) fn jitter_ms(mut self, j: u64) -> Self {
        self.jitter = Duration::from_millis(j);
        self
    }
    pub(crate) fn queue_ms(mut self, q: u64) -> Self {
        self.queue = Duration::from_millis(q);
        self
    }
}

#[derive(Debug)]
struct Dir {
    spec: LinkSpec,
    free_at: Instant,
    last_arrival: Instant,
    sent: u64,
    dropped: u64,
}

pub(crate) struct SimPath {
    /// A to B, B to A.
    dirs: [Dir; 2],
    /// Both directions are cut during these intervals (relative to the start).
    cuts: Vec<(Duration, Duration)>,
    /// A's address as B sees it on this path.
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Side {
    A,
    B,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// A datagram arrives at `to` over sim path `path`.
    Arrive {
        to: Side,
        path: usize,
        bytes: Vec<u8>,
    },
    /// The application at `from` sends an IP packet.
    App { from: Side, packet: Vec<u8> },
    /// TCP flow `flow`'s sender asked to be called (pacing, RTO).
    Tcp { flow: usize },
}

/// One application packet as received.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivery {
    pub at: Instant,
    pub id: u64,
    pub sport: u16,
    /// The sim path its datagram arrived on.
    pub path: usize,
}

pub(crate) struct Endpoint {
    pub bond: Bond,
    session: u32,
    counter: u64,
    /// The peer's counters seen (boringtun's replay window).
    replay: Window<16>,
    /// Second copies dropped by it.
    pub replayed: u64,
    /// TCP and ping packets delivered, for the sim to hand to their flows.
    inbox: Vec<Vec<u8>>,
    pub delivered: Vec<Delivery>,
    pub events: Vec<(Instant, Event)>,
    /// Datagrams sent per sim path (data only).
    pub data_sent: Vec<u64>,
    /// Data bytes sent per sim path.
    pub data_bytes: Vec<u64>,
}

/// A datagram as sent: (time, side, sim path, bytes).
pub(crate) type Recorded = (Instant, Side, usize, Vec<u8>);

pub(crate) struct Sim {
    pub t0: Instant,
    pub now: Instant,
    pub rng: Rng,
    seq: u64,
    heap: BinaryHeap<Reverse<(Instant, u64, Ev)>>,
    pub paths: Vec<SimPath>,
    pub a: Endpoint,
    pub b: Endpoint,
    /// Every datagram sent by a side: (time, side, path, bytes), when recording.
    pub record: Option<Vec<Recorded>>,
    /// Extra datagrams to inject at B: (time, sim path, bytes).
    pub inject: Vec<(Instant, usize, Vec<u8>)>,
    /// TCP flows from A to B.
    pub tcp: Vec<TcpFlow>,
    /// Ping round trips: (sent, answered) of pings from A, echoed by B.
    pub pings: Vec<(Instant, Instant)>,
}

/// One TCP bulk flow from A to B.
pub(crate) struct TcpFlow {
    pub sport: u16,
    pub sender: tcp::Sender,
    pub receiver: tcp::Receiver,
    wake: Option<Instant>,
    /// Stop sending new data after this.
    pub until: Instant,
}

/// The UDP port pings use.
pub(crate) const PING_PORT: u16 = 7;

pub(crate) fn keys() -> (ProbeKeys, ProbeKeys) {
    use x25519_dalek::{PublicKey, StaticSecret};
    let a = StaticSecret::from([0x11; 32]);
    let b = StaticSecret::from([0x22; 32]);
    (
        ProbeKeys::derive(&a, &PublicKey::from(&b)).unwrap(),
        ProbeKeys::derive(&b, &PublicKey::from(&a)).unwrap(),
    )
}

impl Sim {
    /// A with `links.len()` configured paths (specs in order), B learning them.
    pub(crate) fn new(
        a_cfg: BondConfig,
        b_cfg: BondConfig,
        links: &[(PathSpec, LinkSpec, LinkSpec)],
        seed: u64,
    ) -> Self {
        let t0 = Instant::now();
        let (ka, kb) = keys();
        let mut a = Bond::new(a_cfg, ka, 0xa11c_e000 ^ seed, t0);
        // B's clock started earlier: one-way delays carry an offset, as between machines.
        let b_start = t0.checked_sub(Duration::from_millis(137)).unwrap_or(t0);
        let b = Bond::new(b_cfg, kb, 0xb0b0_0000 ^ seed, b_start);
        let mut paths = Vec::new();
        for (i, (spec, ab, ba)) in links.iter().enumerate() {
            let id = a.add_path(*spec, t0).unwrap();
            assert_eq!(id, PathId(i as u32));
            let dir = |s: LinkSpec| Dir {
                spec: s,
                free_at: t0,
                last_arrival: t0,
                sent: 0,
                dropped: 0,
            };
            paths.push(SimPath {
                dirs: [dir(*ab), dir(*ba)],
                cuts: Vec::new(),
                addr: format!("198.51.100.{}:40000", i + 1).parse().unwrap(),
            });
        }
        let n = paths.len();
        let ep = |bond| Endpoint {
            bond,
            session: 0,
            counter: 0,
            replay: Window::default(),
            replayed: 0,
            inbox: Vec::new(),
            delivered: Vec::new(),
            events: Vec::new(),
            data_sent: vec![0; n],
            data_bytes: vec![0; n],
        };
        let mut a = ep(a);
        let mut b = ep(b);
        a.session = 0x0a0a;
        b.session = 0x0b0b;
        Self {
            t0,
            now: t0,
            rng: Rng::new(seed),
            seq: 0,
            heap: BinaryHeap::new(),
            paths,
            a,
            b,
            record: None,
            inject: Vec::new(),
            tcp: Vec::new(),
            pings: Vec::new(),
        }
    }

    /// Starts a TCP bulk flow from A to B on `sport` at `start`, sending until `until`.
    /// Returns its index in [`Sim::tcp`].
    pub(crate) fn tcp_flow(&mut self, sport: u16, start: Instant, until: Instant) -> usize {
        let i = self.tcp.len();
        self.tcp.push(TcpFlow {
            sport,
            sender: tcp::Sender::new(start),
            receiver: tcp::Receiver::default(),
            wake: Some(start),
            until,
        });
        self.push(start, Ev::Tcp { flow: i });
        i
    }

    /// Schedules pings from A every `every` in `[start, end)`; B answers each at once.
    pub(crate) fn ping(&mut self, every: Duration, (start, end): (Instant, Instant)) {
        let mut t = start;
        while t < end {
            let mut p = udp_packet(Side::A, PING_PORT, 0, 64);
            let us = (t - self.t0).as_micros() as u64;
            p[28..36].copy_from_slice(&us.to_le_bytes());
            self.app(t, Side::A, p);
            t += every;
        }
    }

    pub(crate) fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Cuts path `i` in both directions from `from` to `to` (ms after the start).
    pub(crate) fn cut(&mut self, i: usize, from_ms: u64, to_ms: u64) {
        self.paths[i]
            .cuts
            .push((Duration::from_millis(from_ms), Duration::from_millis(to_ms)));
    }

    fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, ev)));
    }

    /// Schedules an application packet.
    pub(crate) fn app(&mut self, at: Instant, from: Side, packet: Vec<u8>) {
        self.push(at, Ev::App { from, packet });
    }

    /// Schedules a constant-rate stream of UDP packets of `size` bytes from `from`,
    /// `every` apart between `start` and `end`, ids from 0. Returns how many.
    pub(crate) fn stream(
        &mut self,
        from: Side,
        sport: u16,
        size: usize,
        every: Duration,
        (start, end): (Instant, Instant),
    ) -> u64 {
        let mut t = start;
        let mut id = 0;
        while t < end {
            let pkt = udp_packet(from, sport, id, size);
            self.app(t, from, pkt);
            id += 1;
            t += every;
        }
        id
    }

    fn ep(&mut self, s: Side) -> &mut Endpoint {
        match s {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    fn cut_now(&self, i: usize) -> bool {
        let t = self.now - self.t0;
        self.paths[i].cuts.iter().any(|(f, e)| t >= *f && t < *e)
    }

    /// Puts a datagram on sim path `i` from `from`.
    fn transmit(&mut self, from: Side, i: usize, bytes: Vec<u8>) {
        if let Some(r) = self.record.as_mut() {
            r.push((self.now, from, i, bytes.clone()));
        }
        let cut = self.cut_now(i);
        let d = match from {
            Side::A => 0,
            Side::B => 1,
        };
        let lost = self.rng.unit() < self.paths[i].dirs[d].spec.loss;
        let jitter_draw = self.rng.unit();
        let now = self.now;
        let dir = &mut self.paths[i].dirs[d];
        dir.sent += 1;
        if cut || lost {
            dir.dropped += 1;
            return;
        }
        let start = dir.free_at.max(now);
        if start - now > dir.spec.queue {
            dir.dropped += 1;
            return;
        }
        let ser = if dir.spec.rate_bps == 0 {
            Duration::ZERO
        } else {
            // UDP + IP headers on the underlay: 28 bytes.
            Duration::from_secs_f64((bytes.len() + 28) as f64 * 8.0 / dir.spec.rate_bps as f64)
        };
        dir.free_at = start + ser;
        let arrive = (dir.free_at + dir.spec.delay + dir.spec.jitter.mul_f64(jitter_draw))
            .max(dir.last_arrival);
        dir.last_arrival = arrive;
        let to = match from {
            Side::A => Side::B,
            Side::B => Side::A,
        };
        self.push(arrive, Ev::Arrive { to, path: i, bytes });
    }

    fn sim_path_of(&self, from: Side, id: PathId, to: Option<SocketAddr>) -> Option<usize> {
        match from {
            Side::A => Some(id.0 as usize),
            Side::B => {
                let addr = to.or_else(|| self.b.bond.path_addr(id))?;
                self.paths.iter().position(|p| p.addr == addr)
            }
        }
    }

    fn app_send(&mut self, from: Side, packet: Vec<u8>) {
        let now = self.now;
        let ep = self.ep(from);
        let picks = ep.bond.pick(&packet, now);
        let counter = ep.counter;
        ep.counter += 1;
        let mut msg = Vec::with_capacity(packet.len() + 32);
        msg.extend_from_slice(&[4, 0, 0, 0]);
        // The receiver index is the *peer's* index for the session; one per direction.
        msg.extend_from_slice(&ep.session.to_le_bytes());
        msg.extend_from_slice(&counter.to_le_bytes());
        msg.extend_from_slice(&packet);
        msg.extend_from_slice(&[0u8; 16]);
        let ids: Vec<PathId> = picks.to_vec();
        for id in ids {
            if let Some(i) = self.sim_path_of(from, id, None) {
                let ep = self.ep(from);
                ep.data_sent[i] += 1;
                ep.data_bytes[i] += msg.len() as u64;
                self.transmit(from, i, msg.clone());
            }
        }
    }

    fn arrive(&mut self, to: Side, i: usize, bytes: Vec<u8>) {
        let now = self.now;
        let addr = self.paths[i].addr;
        if is_probe(&bytes) {
            match to {
                Side::A => {
                    let _ = self.a.bond.handle_probe(PathId(i as u32), &bytes, now);
                }
                Side::B => {
                    let _ = self.b.bond.handle_probe_from(addr, &bytes, now);
                }
            }
            self.flush(to);
            return;
        }
        let Some((session, counter)) = wg::data_header(&bytes) else {
            return;
        };
        let ep = self.ep(to);
        // boringtun drops a counter it has seen (a repeated packet's second copy) before
        // the bond hears of it.
        if ep.replay.check_and_mark(counter).is_err() {
            ep.replayed += 1;
            return;
        }
        // "Decryption" succeeded: the packet is authentic.
        let id = match to {
            Side::A => PathId(i as u32),
            Side::B => match ep.bond.learn_path(addr, now) {
                Ok(id) => id,
                Err(_) => return,
            },
        };
        ep.bond.on_authenticated(id, bytes.len(), now);
        let plain = &bytes[16..bytes.len() - 16];
        if ep.bond.push_received(session, counter, plain, now) == Verdict::Deliver {
            record_delivery(ep, now, plain, i);
        }
        self.flush(to);
    }

    /// Drains a side's probes, released packets and events.
    fn flush(&mut self, s: Side) {
        let now = self.now;
        loop {
            let ep = self.ep(s);
            let Some(tx) = ep.bond.poll_transmit() else {
                break;
            };
            if let Some(i) = self.sim_path_of(s, tx.path, tx.to) {
                self.transmit(s, i, tx.payload.to_vec());
            }
        }
        let ep = self.ep(s);
        while let Some(r) = ep.bond.pop_received() {
            // Released packets are recorded on path usize::MAX: their path is unknown here.
            record_delivery(ep, now, &r.packet, usize::MAX);
        }
        while let Some(e) = ep.bond.poll_event() {
            ep.events.push((now, e));
        }
    }

    /// Runs until `end` (absolute).
    pub(crate) fn run_until(&mut self, end: Instant) {
        let mut spins = 0u32;
        let mut last = self.now;
        loop {
            let ev_t = self.heap.peek().map(|Reverse((t, _, _))| *t);
            let inj_t = self.inject.iter().map(|(t, _, _)| *t).min();
            let ta = self.a.bond.poll_timeout();
            let tb = self.b.bond.poll_timeout();
            let Some(next) = [ev_t, inj_t, ta, tb].into_iter().flatten().min() else {
                self.now = end;
                return;
            };
            if next > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(next);
            if self.now == last {
                spins += 1;
                assert!(spins < 100_000, "no progress at {:?}", self.now - self.t0);
            } else {
                spins = 0;
                last = self.now;
            }
            let now = self.now;
            if ta.is_some_and(|t| t <= now) {
                self.a.bond.handle_timeout(now);
                self.flush(Side::A);
            }
            if tb.is_some_and(|t| t <= now) {
                self.b.bond.handle_timeout(now);
                self.flush(Side::B);
            }
            if let Some(k) = self.inject.iter().position(|(t, _, _)| *t <= now) {
                let (_, i, bytes) = self.inject.remove(k);
                self.arrive(Side::B, i, bytes);
            }
            if ev_t.is_some_and(|t| t <= now)
                && let Some(Reverse((_, _, ev))) = self.heap.pop()
            {
                match ev {
                    Ev::Arrive { to, path, bytes } => self.arrive(to, path, bytes),
                    Ev::App { from, packet } => self.app_send(from, packet),
                    Ev::Tcp { flow } => self.tcp_wake(flow),
                }
            }
            self.apps(Side::A);
            self.apps(Side::B);
        }
    }

    pub(crate) fn dropped(&self, i: usize, from: Side) -> (u64, u64) {
        let d = &self.paths[i].dirs[from as usize];
        (d.sent, d.dropped)
    }
}

fn record_delivery(ep: &mut Endpoint, now: Instant, plain: &[u8], path: usize) {
    let port = |o: usize| u16::from_be_bytes([plain[o], plain[o + 1]]);
    if plain.len() >= 36 && (plain[9] == 6 || (port(20) == PING_PORT || port(22) == PING_PORT)) {
        ep.inbox.push(plain.to_vec());
        return;
    }
    if plain.len() >= 36 {
        // The flow's port: the one that is not 443.
        let sp = u16::from_be_bytes([plain[20], plain[21]]);
        let dp = u16::from_be_bytes([plain[22], plain[23]]);
        let sport = if sp == 443 { dp } else { sp };
        let mut id = [0u8; 8];
        id.copy_from_slice(&plain[28..36]);
        ep.delivered.push(Delivery {
            at: now,
            id: u64::from_le_bytes(id),
            sport,
            path,
        });
    }
}

/// An IPv4 UDP packet of `size` bytes from the side's address, carrying `id`.
pub(crate) fn udp_packet(from: Side, sport: u16, id: u64, size: usize) -> Vec<u8> {
    let size = size.max(36);
    let (src, dst) = match from {
        Side::A => ([192, 0, 2, 1], [203, 0, 113, 1]),
        Side::B => ([203, 0, 113, 1], [192, 0, 2, 1]),
    };
    let (sp, dp) = match from {
        Side::A => (sport, 443u16),
        Side::B => (443u16, sport),
    };
    let mut p = vec![0u8; size];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(size as u16).to_be_bytes());
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p[20..22].copy_from_slice(&sp.to_be_bytes());
    p[22..24].copy_from_slice(&dp.to_be_bytes());
    p[28..36].copy_from_slice(&id.to_le_bytes());
    p
}

/// A TCP packet (IPv4, ports, then our own fields at offset 40: kind 1 data with sequence
/// and send time, kind 2 ACK with cumulative ACK, echoed send time and SACKs).
fn tcp_packet(from: Side, sport: u16, size: usize, fields: &[u64]) -> Vec<u8> {
    let mut p = udp_packet(from, sport, 0, size.max(40 + 8 * fields.len()));
    p[9] = 6;
    for (k, f) in fields.iter().enumerate() {
        p[40 + 8 * k..48 + 8 * k].copy_from_slice(&f.to_le_bytes());
    }
    p
}

fn field(p: &[u8], k: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p[40 + 8 * k..48 + 8 * k]);
    u64::from_le_bytes(b)
}

impl Sim {
    fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.t0).as_micros() as u64
    }

    fn at_us(&self, us: u64) -> Instant {
        self.t0 + Duration::from_micros(us)
    }

    /// Sends what a TCP sender wants and schedules its next wake-up.
    fn tcp_out(&mut self, flow: usize, out: tcp::Out) {
        let sport = self.tcp[flow].sport;
        for (seq, xmit) in out.packets {
            let pkt = tcp_packet(Side::A, sport, tcp::PACKET, &[1, seq, self.us(xmit)]);
            self.app_send(Side::A, pkt);
        }
        let f = &mut self.tcp[flow];
        if let Some(w) = out.wake
            && f.wake.is_none_or(|old| old <= self.now || w < old)
        {
            f.wake = Some(w);
            self.push(w, Ev::Tcp { flow });
        }
    }

    fn tcp_wake(&mut self, flow: usize) {
        let now = self.now;
        let f = &mut self.tcp[flow];
        if f.wake.is_some_and(|w| w > now) {
            return;
        }
        f.wake = None;
        if now >= f.until {
            return;
        }
        let out = f.sender.send(now);
        self.tcp_out(flow, out);
    }

    /// Hands delivered TCP and ping packets to their flows.
    fn apps(&mut self, side: Side) {
        let inbox = std::mem::take(&mut self.ep(side).inbox);
        for p in inbox {
            let dport = u16::from_be_bytes([p[22], p[23]]);
            let sport = u16::from_be_bytes([p[20], p[21]]);
            if p[9] != 6 {
                // A ping: B echoes it, A records the round trip.
                match side {
                    Side::B => {
                        let mut echo = udp_packet(Side::B, PING_PORT, 0, 64);
                        echo[28..36].copy_from_slice(&p[28..36]);
                        self.app_send(Side::B, echo);
                    }
                    Side::A => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&p[28..36]);
                        let sent = self.at_us(u64::from_le_bytes(b));
                        self.pings.push((sent, self.now));
                    }
                }
                continue;
            }
            let port = if side == Side::B { sport } else { dport };
            let Some(flow) = self.tcp.iter().position(|f| f.sport == port) else {
                continue;
            };
            match (side, field(&p, 0)) {
                (Side::B, 1) => {
                    let xmit = self.at_us(field(&p, 2));
                    let (cum, sacks, echo) = self.tcp[flow].receiver.on_data(field(&p, 1), xmit);
                    let mut fields = vec![2, cum, self.us(echo)];
                    fields.extend(sacks);
                    let ack = tcp_packet(Side::B, port, tcp::ACK, &fields);
                    self.app_send(Side::B, ack);
                }
                (Side::A, 2) => {
                    let cum = field(&p, 1);
                    let echo = self.at_us(field(&p, 2));
                    let n = (p.len() - 40) / 8;
                    let sacks: Vec<u64> = (3..n).map(|k| field(&p, k)).collect();
                    let now = self.now;
                    let f = &mut self.tcp[flow];
                    if now >= f.until {
                        continue;
                    }
                    let out = f.sender.on_ack(cum, &sacks, echo, now);
                    self.tcp_out(flow, out);
                }
                _ => {}
            }
        }
    }
}
