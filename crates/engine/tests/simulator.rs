//! Whole-link behaviour of two engines on virtual time: handshakes, rekeying, keepalives,
//! restarts, roaming, hostile datagrams, bonded paths dying and returning.

mod sim;

use braid_engine::{Event, Outgoing, Rejection};
use sim::{
    Pair, Side, Wire, addr, bonded_pair, braid_engine_scheduler, config, packet, plain_pair,
};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

fn handshakes(pair: &Pair, side: Side) -> usize {
    pair.events(side)
        .iter()
        .filter(|(_, e)| *e == Event::HandshakeCompleted)
        .count()
}

#[test]
fn the_side_with_the_endpoint_starts_the_handshake_and_data_flows_both_ways() {
    let mut pair = plain_pair(1);
    pair.run_for(50 * MS);
    assert!(pair.a.engine().has_session(pair.now));
    assert!(pair.b.engine().has_session(pair.now));
    // b learned a's address from the authenticated initiation.
    assert_eq!(pair.b.engine().endpoint(), Some(pair.a.main));
    pair.send(Side::A, &packet(1, 100, 1));
    pair.send(Side::B, &packet(2, 100, 1));
    pair.run_for(50 * MS);
    assert_eq!(pair.b.delivered, vec![1]);
    assert_eq!(pair.a.delivered, vec![2]);
}

#[test]
fn either_side_may_start_it() {
    let a = config(1, 2, None, 7);
    let b = config(2, 1, Some(addr("192.0.2.1:51001")), 8);
    let mut pair = Pair::new(a, b, 7);
    pair.run_for(50 * MS);
    assert_eq!(pair.a.engine().endpoint(), Some(pair.b.main));
    pair.send(Side::A, &packet(5, 100, 1));
    pair.run_for(50 * MS);
    assert_eq!(pair.b.delivered, vec![5]);
}

#[test]
fn a_packet_sent_before_the_session_waits_for_it_and_is_charged_to_no_path() {
    let mut pair = plain_pair(2);
    // Before any datagram crossed: the packet waits inside the engine.
    assert!(matches!(
        pair.send(Side::A, &packet(9, 100, 1)),
        Outgoing::Pending
    ));
    pair.run_for(50 * MS);
    assert_eq!(pair.b.delivered, vec![9]);
}

#[test]
fn sessions_rekey_after_rekey_after_time_without_losing_traffic() {
    let mut pair = plain_pair(3);
    pair.run_for(50 * MS);
    // 150 s of a packet every 100 ms each way: REKEY_AFTER_TIME is 120 s.
    for id in 0..1500 {
        pair.send(Side::A, &packet(id, 100, 1));
        pair.send(Side::B, &packet(id, 100, 1));
        pair.run_for(100 * MS);
    }
    assert!(
        handshakes(&pair, Side::A) >= 2,
        "a rekeyed: {:?}",
        pair.a.events
    );
    assert_eq!(
        pair.b.delivered.len(),
        1500,
        "no packet lost across the rekey"
    );
    assert_eq!(pair.a.delivered.len(), 1500);
}

#[test]
fn an_idle_link_with_a_keepalive_sends_one_every_interval() {
    let mut a = config(1, 2, Some(addr("192.0.2.2:51002")), 4);
    a.keepalive = Some(25);
    let b = config(2, 1, None, 5);
    let mut pair = Pair::new(a, b, 4);
    pair.run_for(Duration::from_secs(1));
    let before = pair.sent.len();
    pair.run_for(Duration::from_secs(100));
    let keepalives = pair.sent[before..]
        .iter()
        .filter(|(_, from, _, bytes)| *from == pair.a.main && bytes.len() == 32)
        .count();
    assert!(
        (3..=5).contains(&keepalives),
        "{keepalives} keepalives in 100 s"
    );
}

#[test]
fn a_peer_restarting_with_the_same_key_is_back_after_one_handshake_round_trip() {
    let a = config(1, 2, None, 10);
    let b_config = config(2, 1, Some(addr("192.0.2.1:51001")), 11);
    let mut pair = Pair::new(a, b_config.clone(), 10);
    pair.run_for(Duration::from_secs(2));
    pair.send(Side::B, &packet(1, 100, 1));
    pair.run_for(50 * MS);
    assert_eq!(pair.a.delivered, vec![1]);
    // b restarts (a new instance, a new ephemeral session) while a's session is current.
    pair.stop(Side::B);
    pair.run_for(Duration::from_secs(3));
    let mut restarted = b_config;
    restarted.seed = 99;
    pair.restart(Side::B, restarted);
    let started = pair.now;
    pair.send(Side::B, &packet(2, 100, 1));
    // One handshake round trip (20 ms), then the packet's own way (10 ms): the new
    // instance's initiation replaces the old session at once, nothing waits for a timer.
    pair.run_for(40 * MS);
    assert_eq!(pair.a.delivered, vec![1, 2]);
    assert!(pair.a.delivered_at.last().unwrap().0 - started <= 31 * MS);
}

#[test]
fn a_restart_is_accepted_however_soon_it_comes() {
    // Timestamps are on the standard TAI64 base, so the new instance's initiation is
    // newer than the old one's even a millisecond later (see tai64.rs for the bytes).
    let a = config(1, 2, None, 12);
    let b_config = config(2, 1, Some(addr("192.0.2.1:51001")), 13);
    let mut pair = Pair::new(a, b_config.clone(), 12);
    pair.run_for(30 * MS);
    pair.stop(Side::B);
    pair.run_for(MS);
    pair.restart(Side::B, b_config);
    pair.run_for(30 * MS);
    assert_eq!(handshakes(&pair, Side::A), 2);
    assert_eq!(pair.a.engine().stats().rejected_handshakes, 0);
}

#[test]
fn an_authenticated_peer_roams_and_the_endpoint_follows() {
    let mut pair = plain_pair(14);
    pair.run_for(50 * MS);
    assert_eq!(pair.a.engine().endpoint(), Some(pair.b.main));
    // b moves to another address and sends data from there.
    pair.b.main = addr("192.0.2.77:51002");
    pair.send(Side::B, &packet(1, 100, 1));
    pair.run_for(50 * MS);
    assert_eq!(pair.a.delivered, vec![1]);
    assert_eq!(pair.a.engine().endpoint(), Some(addr("192.0.2.77:51002")));
    assert!(pair.a.events.iter().any(|(_, e)| matches!(
        e,
        Event::EndpointChanged { endpoint, .. } if *endpoint == addr("192.0.2.77:51002")
    )));
    pair.send(Side::A, &packet(2, 100, 1));
    pair.run_for(50 * MS);
    assert_eq!(pair.b.delivered, vec![2]);
}

/// 30 well-formed initiations in one second from one address, each from a fresh random
/// key that is not the link's peer, with a valid MAC1 for `to`'s key.
fn hijack_attempt(
    pair: &mut Pair,
    victim_key: [u8; 32],
    from: std::net::SocketAddr,
    to: std::net::SocketAddr,
) {
    pair.outsiders.push(from);
    for i in 0..30u8 {
        let attacker = x25519_dalek::StaticSecret::from([i.wrapping_add(100); 32]);
        let mut tunn = boringtun::noise::Tunn::new(
            attacker,
            x25519_dalek::PublicKey::from(victim_key),
            None,
            None,
            u32::from(i),
            None,
        );
        let mut buf = vec![0u8; 256];
        if let boringtun::noise::TunnResult::WriteToNetwork(p) =
            tunn.format_handshake_initiation(&mut buf, false)
        {
            let p = p.to_vec();
            pair.transmit(from, to, p);
        }
        pair.run_for(30 * MS);
    }
}

#[test]
fn thirty_forged_initiations_neither_move_the_endpoint_nor_break_the_link() {
    let mut pair = plain_pair(15);
    pair.run_for(50 * MS);
    let attacker = addr("198.18.0.200:40004");
    let victim = sim::key(1).1;
    let a_main = pair.a.main;
    hijack_attempt(&mut pair, victim, attacker, a_main);
    let stats = *pair.a.engine().stats();
    assert_eq!(pair.a.engine().endpoint(), Some(pair.b.main), "{stats:?}");
    assert!(
        stats.rejected_handshakes + stats.cookie_replies >= 30,
        "{stats:?}"
    );
    // The link still carries traffic both ways, at once.
    pair.send(Side::A, &packet(1, 100, 1));
    pair.send(Side::B, &packet(2, 100, 1));
    pair.run_for(50 * MS);
    assert_eq!(pair.b.delivered, vec![1]);
    assert_eq!(pair.a.delivered, vec![2]);
    // Refusals are reported, at most one every 10 s.
    let reports = pair
        .a
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::HandshakeRejected { .. }))
        .count();
    assert!(reports <= 1, "{reports} reports");
}

#[test]
fn forged_initiations_before_the_peer_ever_answered_do_not_take_the_link() {
    // b has no endpoint: the first authenticated datagram decides, and a forged one never
    // authenticates.
    let a = config(1, 2, None, 16);
    let b = config(2, 1, None, 17);
    let mut pair = Pair::new(a, b, 16);
    let a_main = pair.a.main;
    hijack_attempt(&mut pair, sim::key(1).1, addr("198.18.0.201:40004"), a_main);
    assert_eq!(pair.a.engine().endpoint(), None);
    assert!(
        pair.to_outsiders.iter().all(|(_, p)| p[0] == 3),
        "only cookie replies go out"
    );
}

#[test]
fn replayed_and_garbage_datagrams_change_nothing() {
    let mut pair = plain_pair(18);
    pair.run_for(50 * MS);
    for id in 0..20 {
        pair.send(Side::B, &packet(id, 100, 1));
    }
    pair.run_for(50 * MS);
    assert_eq!(pair.a.delivered.len(), 20);
    let endpoint = pair.a.engine().endpoint();
    // Replay everything b ever sent, from an attacker's address, and some garbage.
    let attacker = addr("198.18.0.9:1");
    let a_main = pair.a.main;
    let b_main = pair.b.main;
    let replays: Vec<Vec<u8>> = pair
        .sent
        .iter()
        .filter(|(_, from, _, _)| *from == b_main)
        .map(|(_, _, _, bytes)| bytes.clone())
        .collect();
    for bytes in &replays {
        pair.transmit(attacker, a_main, bytes.clone());
    }
    let mut dice = sim::Dice(5);
    for len in [0usize, 1, 3, 4, 31, 32, 47, 148, 1500] {
        let garbage: Vec<u8> = (0..len).map(|_| dice.next_u64() as u8).collect();
        pair.transmit(attacker, a_main, garbage.clone());
        let mut typed = garbage;
        if !typed.is_empty() {
            typed[0] = 4;
            pair.transmit(attacker, a_main, typed);
        }
    }
    pair.run_for(50 * MS);
    assert_eq!(pair.a.delivered.len(), 20, "no replayed packet delivered");
    assert_eq!(pair.a.engine().endpoint(), endpoint);
    let stats = pair.a.engine().stats();
    assert!(stats.dropped_replay >= 20, "{stats:?}");
    assert!(
        stats.dropped_bad_packet + stats.dropped_unknown_key >= 9,
        "{stats:?}"
    );
    pair.send(Side::B, &packet(100, 100, 1));
    pair.run_for(50 * MS);
    assert_eq!(pair.a.delivered.last(), Some(&100));
}

#[test]
fn a_refused_initiation_is_counted_and_reported_with_its_sender() {
    let mut pair = plain_pair(19);
    pair.run_for(50 * MS);
    let b_main = pair.b.main;
    let a_main = pair.a.main;
    let initiation = pair.first_sent(a_main, 1).expect("a sent an initiation");
    // b sees a's first initiation again: a replay.
    pair.transmit(a_main, b_main, initiation);
    pair.run_for(50 * MS);
    assert_eq!(pair.b.engine().stats().rejected_handshakes, 1);
    assert!(pair.b.events.iter().any(|(_, e)| matches!(
        e,
        Event::HandshakeRejected { reason: Rejection::OldTimestamp, from, .. } if *from == a_main
    )));
}

#[test]
fn lossy_jittery_duplicating_wires_deliver_no_packet_twice() {
    let mut pair = plain_pair(20);
    pair.default_wire = Wire {
        delay: 10 * MS,
        jitter: 8 * MS,
        loss: 0.05,
        duplicate: 0.1,
        down: false,
    };
    pair.run_for(Duration::from_secs(1));
    pair.stream(Side::A, 0, MS, Duration::from_secs(2));
    pair.run_for(Duration::from_secs(1));
    let mut seen = std::collections::HashSet::new();
    for id in &pair.b.delivered {
        assert!(seen.insert(*id), "packet {id} delivered twice");
    }
    assert!(
        pair.b.delivered.len() > 1700,
        "{} of 2000",
        pair.b.delivered.len()
    );
}

#[test]
fn duplicated_probe_replies_are_not_counted_as_bad_packets() {
    // Every datagram arrives twice: the second copy of each probe reply answers nothing
    // the side still waits for. That is a healthy path's late traffic, not an attack, so
    // it must not raise `dropped_bad_packet` (which operators alert on).
    let mut pair = bonded_pair(21, braid_engine_scheduler());
    pair.default_wire = Wire {
        duplicate: 1.0,
        ..Wire::delay_ms(5)
    };
    pair.run_for(Duration::from_secs(5));
    for side in [Side::A, Side::B] {
        let stats = *pair.node(side).engine().stats();
        assert_eq!(stats.dropped_bad_packet, 0, "{side:?}: {stats:?}");
        assert!(stats.dropped_replay > 0, "{side:?}: {stats:?}");
        // Accepted probes count as received, as sent ones count as sent (an idle bonded
        // link showed 110 received against 4295 sent).
        assert!(stats.rx_packets > 20, "{side:?}: {stats:?}");
    }
}

// ---- bonded links ----

fn paths_up(pair: &Pair, side: Side) -> usize {
    let node = match side {
        Side::A => &pair.a,
        Side::B => &pair.b,
    };
    node.engine
        .as_ref()
        .and_then(|e| e.bond_status(pair.now))
        .map_or(0, |s| {
            s.paths
                .iter()
                .filter(|p| p.state == braid_bond::PathState::Up)
                .count()
        })
}

#[test]
fn a_bonded_link_carries_data_within_one_round_trip_of_both_ends_running() {
    let mut pair = bonded_pair(30, braid_bond::Scheduler::RoundRobin);
    pair.send(Side::A, &packet(1, 100, 1));
    // The handshake's round trip (20 ms) and the packet's way (10 ms).
    pair.run_for(31 * MS);
    assert_eq!(pair.b.delivered, vec![1]);
    pair.run_for(Duration::from_secs(1));
    assert_eq!(paths_up(&pair, Side::A), 2);
    assert_eq!(paths_up(&pair, Side::B), 2, "b learned both paths");
}

#[test]
fn the_far_side_of_a_bond_does_not_take_path_changes_for_roaming() {
    let mut pair = bonded_pair(31, braid_bond::Scheduler::RoundRobin);
    pair.run_for(Duration::from_secs(1));
    let endpoint = pair.b.engine().endpoint();
    let started = pair.now;
    pair.stream(Side::A, 0, MS, Duration::from_secs(2));
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.b.delivered.len(), 2000);
    assert_eq!(pair.b.engine().endpoint(), endpoint);
    let roams = pair
        .b
        .events
        .iter()
        .filter(|(t, e)| *t >= started && matches!(e, Event::EndpointChanged { .. }))
        .count();
    assert_eq!(roams, 0, "{:?}", pair.b.events);
    // Both paths carried data: the far side answered on each.
    let status = pair.a.engine().bond_status(pair.now).unwrap();
    assert!(
        status.paths.iter().all(|p| p.counters.tx_packets > 500),
        "{status:?}"
    );
}

#[test]
fn a_bonded_path_dies_and_returns_and_traffic_moves_with_it() {
    let mut pair = bonded_pair(32, braid_bond::Scheduler::RoundRobin);
    pair.run_for(Duration::from_secs(1));
    let path0 = pair.a.paths[0];
    pair.wires.insert(
        path0,
        Wire {
            down: true,
            ..Wire::delay_ms(10)
        },
    );
    let before = pair.b.delivered.len();
    pair.stream(Side::A, 0, 10 * MS, Duration::from_secs(2));
    pair.run_for(Duration::from_secs(1));
    let delivered = pair.b.delivered.len() - before;
    // Half of what is sent in the first failover window (250 ms + a probe interval) may
    // be lost on the dead path; after that, nothing.
    assert!(delivered >= 200 - 20, "{delivered} of 200 delivered");
    assert_eq!(paths_up(&pair, Side::A), 1);
    pair.wires.remove(&path0);
    pair.run_for(Duration::from_secs(1));
    assert_eq!(
        paths_up(&pair, Side::A),
        2,
        "the path is back within a second"
    );
}

#[test]
fn a_bond_whose_peer_restarted_is_back_within_a_second_of_it_answering() {
    // b (a server with no endpoint for a) restarts; a's old session is useless to it.
    let mut pair = bonded_pair(33, braid_bond::Scheduler::RoundRobin);
    pair.run_for(Duration::from_secs(1));
    pair.stop(Side::B);
    pair.stream(Side::A, 0, 10 * MS, Duration::from_secs(3));
    assert!(pair.a.events.iter().any(|(_, e)| *e == Event::Dead));
    let b = config(2, 1, None, 77);
    pair.restart(Side::B, b);
    let restarted = pair.now;
    let before = pair.b.delivered.len();
    pair.stream(Side::A, 10_000, 10 * MS, Duration::from_secs(2));
    let first = pair.b.delivered_at.get(before).map(|(t, _)| *t - restarted);
    assert!(
        first.is_some_and(|d| d <= Duration::from_millis(1100)),
        "first packet after {first:?}"
    );
}

#[test]
fn bytes_are_charged_to_a_path_only_for_data_that_was_sent() {
    let mut pair = bonded_pair(34, braid_bond::Scheduler::RoundRobin);
    // Before the session: the packets wait, no path is charged for them.
    for id in 0..5 {
        assert!(matches!(
            pair.send(Side::A, &packet(id, 1000, 1)),
            Outgoing::Pending
        ));
    }
    let status = pair.a.engine().bond_status(pair.now).unwrap();
    let charged: u64 = status.paths.iter().map(|p| p.counters.tx_bytes).sum();
    assert!(
        charged < 1000,
        "{charged} bytes charged before any data was sent"
    );
    pair.run_for(50 * MS);
    assert_eq!(pair.b.delivered.len(), 5);
}

#[test]
fn a_key_rotation_is_applied_in_place_and_the_link_carries_on() {
    let mut pair = plain_pair(40);
    pair.run_for(50 * MS);
    // a gets a new key; b is told the new public key (its link is made again).
    let now = pair.now;
    pair.a.engine().set_private_key(now, sim::key(11).0);
    pair.flush(Side::A);
    let b = config(2, 11, None, 41);
    pair.restart(Side::B, b);
    pair.run_for(100 * MS);
    pair.send(Side::A, &packet(1, 100, 1));
    pair.send(Side::B, &packet(2, 100, 1));
    pair.run_for(50 * MS);
    assert_eq!(pair.b.delivered, vec![1]);
    assert_eq!(pair.a.delivered, vec![2]);
}
