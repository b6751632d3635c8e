//! Writes the seed inputs that need keys or a live engine (`seeds/engine`, `seeds/probe`);
//! the text seeds under `seeds/` are written by hand. Run from `fuzz/` by `run.sh seeds`.
//! Deterministic apart from the handshake's ephemeral key, so rerunning it changes only
//! the initiation's bytes.
use braid_bond::probe::{Kind, Probe};
use std::time::Instant;

/// One record of the engine target's input: socket, from, delay, length, bytes.
fn record(socket: u8, from: u8, delay: u8, datagram: &[u8]) -> Vec<u8> {
    let mut r = vec![socket, from, delay];
    r.extend_from_slice(&(datagram.len() as u16).to_le_bytes());
    r.extend_from_slice(datagram);
    r
}

fn write(dir: &str, name: &str, data: &[u8]) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {dir}: {e}"));
    let path = format!("{dir}/{name}");
    std::fs::write(&path, data).unwrap_or_else(|e| panic!("writing {path}: {e}"));
}

fn main() {
    // Node 2's engine towards node 1 gives a real handshake initiation for node 1's.
    let mut peer_config = braid_fuzz::engine_config(2);
    peer_config.private_key = braid_fuzz::key(2).0;
    peer_config.peer_public_key = braid_fuzz::key(1).1;
    let mut peer = braid_engine::Engine::new(peer_config, Instant::now());
    let initiation = peer
        .poll_transmit()
        .expect("an engine with an endpoint initiates at once")
        .payload;

    // The seed is only worth having if node 1's engine answers it with a response.
    let mut own = braid_engine::Engine::new(braid_fuzz::engine_config(2), Instant::now());
    while own.poll_transmit().is_some() {}
    let from = "192.0.2.2:51820".parse().expect("a literal address");
    let mut out = vec![0u8; initiation.len()];
    let _ = own.handle_datagram(
        Instant::now(),
        braid_engine::Socket::Main,
        from,
        &initiation,
        &mut out,
    );
    let answered =
        std::iter::from_fn(|| own.poll_transmit()).any(|t| t.payload.first() == Some(&2));
    assert!(
        answered,
        "node 1 does not answer the seed initiation with a response"
    );

    let probe = Probe {
        kind: Kind::Request,
        scheduler: Some(braid_bond::Scheduler::Flow),
        configured: true,
        path_key: 1,
        priority: 0,
        weight: 1,
        held_us: 0,
        epoch: 5,
        seq: 1,
        ts_us: 1_000,
        echo_epoch: 0,
        echo_seq: 0,
        rx_packets: 0,
        rx_bytes: 0,
        rate_cap_bps: 0,
    };
    // A probe node 2 would send node 1 (so node 1's engine authenticates it).
    let keys = braid_bond::ProbeKeys::derive(
        &x25519_dalek::StaticSecret::from(braid_fuzz::key(2).0),
        &x25519_dalek::PublicKey::from(braid_fuzz::key(1).1),
    )
    .expect("the test keys are not low-order");
    let sealed = keys.seal(&probe);

    for flags in [0u8, 1, 2, 3] {
        let mut input = vec![flags];
        input.extend(record(0, 0, 0, &initiation));
        input.extend(record(1, 1, 1, &sealed));
        input.extend(record(0, 0, 120, &initiation));
        write("seeds/engine", &format!("initiation-{flags}"), &input);
    }
    let mut types = vec![3u8];
    for (kind, len) in [(1u8, 148usize), (2, 92), (3, 64), (4, 32), (4, 80)] {
        let mut m = vec![0u8; len];
        m[0] = kind;
        types.extend(record(kind, kind, kind, &m));
    }
    write("seeds/engine", "message-shapes", &types);

    // The probe target's MAC'd body starts after the type bytes.
    let own = braid_bond::ProbeKeys::from_raw([7; 32], [7; 32]).seal(&probe);
    write("seeds/probe", "request-body", &own[4..own.len() - 16]);
    write("seeds/probe", "request-sealed", &sealed);
    let mut data = vec![4u8, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0];
    data.resize(48, 0);
    write("seeds/probe", "data-header", &data);
}
