//! Fuzz targets for every parser braid runs on input from outside the process: config
//! and registry files (JSON with comments), the control socket request, UAPI requests,
//! the bond's probe and WireGuard data headers, and the link engine's datagram input.
//!
//! Each target takes arbitrary bytes and must return without panicking; a panic (index
//! out of range, arithmetic overflow in these debug builds, `unwrap` on input) is the bug
//! the fuzzer looks for. Where a parser can also write what it read, the target checks the
//! round trip. `src/bin/*.rs` wrap each target for AFL (`cargo afl`); `run.sh` runs them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A fuzz target: any bytes in, a panic on a bug.
pub type Target = fn(&[u8]);

/// The targets by name, as `run.sh` and `replay` call them.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("registry", registry),
    ("control", control),
    ("uapi", uapi),
    ("probe", probe),
    ("engine", engine),
];

/// A node config file (`braid_model::Config::parse`, docs/config.md), and the problems
/// it reports written out as a user sees them.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = braid_model::jsonc::strip(text);
    match braid_model::Config::parse("fuzz.json", text) {
        Ok((_, problems)) | Err(problems) => {
            let _ = problems.to_string();
        }
    }
}

/// A registry file (`braid_model::Registry::parse`, docs/registry.md).
pub fn registry(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match braid_model::Registry::parse("fuzz-registry.json", text) {
        Ok((_, problems)) | Err(problems) => {
            let _ = problems.to_string();
        }
    }
}

/// One control socket request line (`braid_daemon::control::parse_request`): any bytes;
/// a request that parses must serialise and parse back to itself.
pub fn control(data: &[u8]) {
    if let Ok(request) = braid_daemon::control::parse_request(data) {
        let line = serde_json::to_vec(&request).expect("a request serialises");
        let again = braid_daemon::control::parse_request(&line).expect("its own output parses");
        assert_eq!(request, again, "control request round trip");
    }
}

/// One UAPI request (`braid_uapi::parse_request`, the `wg` configuration protocol).
pub fn uapi(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = braid_uapi::parse_request(text);
    }
}

/// The probe key of [`probe`]: both directions the same, so a probe this side seals it
/// also opens.
const PROBE_KEY: [u8; 32] = [7; 32];

/// The bond's wire formats: `is_probe`, `wg::data_header` and `ProbeKeys::open` on the raw
/// bytes; then the bytes as the body of a probe with a valid MAC (so the decoder behind
/// the MAC check is reached), and a probe that decodes must seal and open to itself.
pub fn probe(data: &[u8]) {
    use braid_bond::probe::{MAC_LEN, MAX_PROBE_LEN, PROBE_TYPE};
    let _ = braid_bond::is_probe(data);
    let _ = braid_bond::wg::data_header(data);
    let keys = braid_bond::ProbeKeys::from_raw(PROBE_KEY, PROBE_KEY);
    let _ = keys.open(data);
    if data.len() + PROBE_TYPE.len() + MAC_LEN > MAX_PROBE_LEN {
        return;
    }
    let mut msg = PROBE_TYPE.to_vec();
    msg.extend_from_slice(data);
    let tag = mac(&PROBE_KEY, &msg);
    msg.extend_from_slice(&tag);
    if let Ok(p) = keys.open(&msg) {
        let sealed = keys.seal(&p);
        assert_eq!(keys.open(&sealed).ok(), Some(p), "probe round trip");
    }
}

/// The probe MAC (crates/bond/src/probe.rs): keyed BLAKE2s with a 16-byte output.
fn mac(key: &[u8; 32], body: &[u8]) -> [u8; 16] {
    use blake2::Blake2sMac;
    use blake2::digest::consts::U16;
    use blake2::digest::{FixedOutput, KeyInit, Update};
    let mut m = <Blake2sMac<U16> as KeyInit>::new(key.into());
    m.update(body);
    m.finalize_fixed().into()
}

/// A key pair from a seed byte (clamped as X25519 wants).
pub fn key(seed: u8) -> ([u8; 32], [u8; 32]) {
    let mut private = [seed; 32];
    private[0] &= 248;
    private[31] = (private[31] & 127) | 64;
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(private));
    (private, public.to_bytes())
}

/// Where datagrams come from: the peer's endpoint, another address, an IPv6 one.
const FROM: [&str; 3] = [
    "192.0.2.2:51820",
    "198.51.100.7:4000",
    "[2001:db8::2]:51820",
];

/// The engine of node 1 for its link to node 2 (`key(1)`, `key(2)`): `flags` bit 0 makes
/// it a bond of two paths, bit 1 gives it the peer's endpoint.
pub fn engine_config(flags: u8) -> braid_engine::EngineConfig {
    let path = braid_bond::PathSpec {
        weight: None,
        priority: 0,
        rate_cap_bps: None,
    };
    braid_engine::EngineConfig {
        private_key: key(1).0,
        peer_public_key: key(2).1,
        keepalive: Some(25),
        endpoint: (flags & 2 != 0).then(|| FROM[0].parse().expect("a literal address")),
        paths: if flags & 1 != 0 {
            vec![path, path]
        } else {
            Vec::new()
        },
        scheduler: braid_bond::Scheduler::Flow,
        mtu: 1420,
        wall: Duration::from_secs(1_790_000_000),
        seed: 17,
    }
}

/// The link engine's network input (`Engine::handle_datagram`). The input is a flag byte
/// (see [`engine_config`]) and then records of `socket, from, delay, len (u16 LE), bytes`:
/// each record's datagram arrives on a socket the engine has (the main one or one of its
/// paths), from one of [`FROM`], `delay` × 50 ms after the one before, into an `out`
/// buffer exactly as long as the datagram (the least the engine's contract allows, and
/// what the link's worker gives). Timers run when due; everything queued is drained.
pub fn engine(data: &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let config = engine_config(flags);
    let paths = config.paths.len();
    let mut now = Instant::now();
    let mut engine = braid_engine::Engine::new(config, now);
    drain(&mut engine);
    while let [socket, from, delay, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        rest = next;
        let socket = match usize::from(*socket) % (paths + 1) {
            0 => braid_engine::Socket::Main,
            i => braid_engine::Socket::Path((i - 1) as u8),
        };
        let from: SocketAddr = FROM[usize::from(*from) % FROM.len()]
            .parse()
            .expect("a literal address");
        now += Duration::from_millis(50 * u64::from(*delay));
        if engine.poll_timeout() <= now {
            engine.handle_timeout(now);
        }
        let mut out = vec![0u8; datagram.len()];
        let _ = engine.handle_datagram(now, socket, from, datagram, &mut out);
        drain(&mut engine);
    }
}

fn drain(engine: &mut braid_engine::Engine) {
    while engine.poll_transmit().is_some() {}
    while engine.poll_packet().is_some() {}
    while engine.poll_event().is_some() {}
}
