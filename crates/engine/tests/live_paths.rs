//! Paths added to and taken out of a running bonded link (an uplink that appears or leaves
//! the configuration), and a bonded link's liveness without keepalives: on the
//! deterministic two-engine simulator (`sim`).

mod sim;

use braid_bond::{PathSpec, PathState, Scheduler};
use sim::{Pair, Side, addr, bonded_pair};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

fn up_paths(pair: &Pair, side: Side) -> usize {
    let node = match side {
        Side::A => &pair.a,
        Side::B => &pair.b,
    };
    node.engine
        .as_ref()
        .and_then(|e| e.bond_status(pair.now))
        .map_or(0, |s| {
            s.paths.iter().filter(|p| p.state == PathState::Up).count()
        })
}

/// Datagrams sent from `from` in the simulated interval `[since, now]`.
fn sent_from(pair: &Pair, from: std::net::SocketAddr, since: std::time::Instant) -> usize {
    pair.sent
        .iter()
        .filter(|(t, src, _, _)| *t >= since && *src == from)
        .count()
}

fn handshakes(pair: &Pair) -> usize {
    pair.events(Side::A)
        .iter()
        .filter(|(_, e)| matches!(e, braid_engine::Event::HandshakeCompleted))
        .count()
}

#[test]
fn a_path_taken_out_and_one_added_change_the_running_link_without_losing_a_packet() {
    let mut pair = bonded_pair(60, Scheduler::RoundRobin);
    pair.run_for(Duration::from_secs(1));
    assert_eq!(up_paths(&pair, Side::A), 2);
    let sessions = handshakes(&pair);

    // Path 1 leaves the configuration while a stream runs.
    let next = pair.stream(Side::A, 0, MS, Duration::from_millis(500));
    let taken_out = pair.now;
    assert!(pair.a.engine().set_paths(
        taken_out,
        &[Some(PathSpec::default()), None],
        Scheduler::RoundRobin
    ));
    let next = pair.stream(Side::A, next, MS, Duration::from_secs(1));
    pair.run_for(Duration::from_millis(100));
    assert_eq!(pair.b.delivered.len() as u64, next, "no packet lost");
    assert_eq!(
        sent_from(&pair, pair.a.paths[1], taken_out + MS),
        0,
        "nothing more leaves on the path taken out"
    );
    assert_eq!(up_paths(&pair, Side::A), 1);

    // A new uplink: slot 2, its own socket (the shell opened it).
    pair.a.paths.push(addr("198.51.100.3:51001"));
    let added = pair.now;
    assert!(pair.a.engine().set_paths(
        added,
        &[Some(PathSpec::default()), None, Some(PathSpec::default())],
        Scheduler::RoundRobin
    ));
    let next = pair.stream(Side::A, next, MS, Duration::from_secs(1));
    pair.run_for(Duration::from_millis(100));
    assert_eq!(pair.b.delivered.len() as u64, next, "no packet lost");
    assert_eq!(up_paths(&pair, Side::A), 2, "the new path came up");
    assert!(
        sent_from(&pair, pair.a.paths[2], added) > 300,
        "the new path carries its share of the stream"
    );
    // The session went on: no new handshake was needed for any of it.
    assert_eq!(handshakes(&pair), sessions);
}

#[test]
fn a_slot_taken_out_is_never_given_back_and_a_bond_needs_a_path() {
    let mut pair = bonded_pair(61, Scheduler::RoundRobin);
    pair.run_for(Duration::from_secs(1));
    let now = pair.now;
    let engine = pair.a.engine();
    assert!(!engine.set_paths(now, &[None, None], Scheduler::RoundRobin));
    assert!(!engine.set_paths(now, &[Some(PathSpec::default())], Scheduler::RoundRobin));
    assert!(engine.set_paths(now, &[Some(PathSpec::default()), None], Scheduler::Flow));
    assert!(
        !engine.set_paths(
            now,
            &[Some(PathSpec::default()), Some(PathSpec::default())],
            Scheduler::Flow
        ),
        "a slot taken out keeps its meaning: a path back is a new slot"
    );
}

#[test]
fn a_plain_link_has_no_paths_to_change() {
    let mut pair = sim::plain_pair(62);
    pair.run_for(Duration::from_secs(1));
    let now = pair.now;
    assert!(!pair.a.engine().set_paths(
        now,
        &[Some(PathSpec::default()), Some(PathSpec::default())],
        Scheduler::Flow
    ));
}

#[test]
fn a_bonded_link_whose_peer_sends_no_keepalive_stays_alive_while_its_paths_answer() {
    // Neither side has a keepalive and nothing is sent: only probes cross.
    let mut pair = bonded_pair(63, Scheduler::Weighted);
    pair.send(Side::A, &sim::packet(1, 100, 1));
    pair.run_for(Duration::from_secs(60));
    let now = pair.now;
    let rx = pair.a.engine().last_rx(now).expect("something came back");
    // The engine's wall clock at `now` (the simulator's start plus elapsed time).
    let wall_now = Duration::from_secs(1_790_000_000) + (pair.now - pair.start);
    assert!(
        wall_now.saturating_sub(rx) < Duration::from_secs(1),
        "last sign of life {:?} ago",
        wall_now.saturating_sub(rx)
    );
    // A cut of every path, both ways: the last sign of life ages.
    let mut cut = pair.a.paths.clone();
    cut.push(pair.b.main);
    for p in cut {
        pair.wires.insert(
            p,
            sim::Wire {
                down: true,
                ..sim::Wire::delay_ms(10)
            },
        );
    }
    pair.run_for(Duration::from_secs(5));
    let now = pair.now;
    let rx = pair.a.engine().last_rx(now).expect("an old one");
    let wall_now = Duration::from_secs(1_790_000_000) + (pair.now - pair.start);
    assert!(wall_now.saturating_sub(rx) >= Duration::from_secs(4));
}
