//! Hostile and unlucky conditions the engine must survive, found in review: handshakes
//! under load (cookie replies), replayed messages from other addresses, stale probes, a
//! peer of a bond that moves, buffers of the documented size, and datagrams of every type
//! and length. Each test names the promise it checks.

mod sim;

use braid_engine::{Engine, Event, Incoming, Outgoing, Socket};
use sim::{Pair, Side, addr, config, packet, plain_pair};
use std::net::SocketAddr;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

/// a bonds two configured paths to b, which follows (round robin).
fn bonded_pair(seed: u64) -> Pair {
    sim::bonded_pair(seed, braid_bond::Scheduler::RoundRobin)
}

/// A well-formed handshake initiation to `victim_public` (valid MAC1, so it counts
/// against the rate limit) from a key that is not the link's peer.
fn forged_initiation(victim_public: [u8; 32], seed: u8) -> Vec<u8> {
    let attacker = x25519_dalek::StaticSecret::from([seed.wrapping_add(100); 32]);
    let mut tunn = boringtun::noise::Tunn::new(
        attacker,
        x25519_dalek::PublicKey::from(victim_public),
        None,
        None,
        u32::from(seed),
        None,
    );
    let mut buf = vec![0u8; 256];
    match tunn.format_handshake_initiation(&mut buf, false) {
        boringtun::noise::TunnResult::WriteToNetwork(p) => p.to_vec(),
        other => panic!("no initiation: {other:?}"),
    }
}

/// Sends `bytes` from `from` to `to` every `every` for `total`, running the network.
fn flood(
    pair: &mut Pair,
    from: SocketAddr,
    to: SocketAddr,
    bytes: &[u8],
    every: Duration,
    total: Duration,
) {
    let end = pair.now + total;
    while pair.now < end {
        pair.transmit(from, to, bytes.to_vec());
        pair.run_for(every);
    }
}

fn has_session(pair: &mut Pair, side: Side) -> bool {
    let now = pair.now;
    pair.node(side).engine().has_session(now)
}

/// The wall-clock time the simulator's engines were given at `pair.now`.
fn wall_now(pair: &Pair) -> Duration {
    Duration::from_secs(1_790_000_000) + (pair.now - pair.start)
}

// ---- handshakes under load ----

#[test]
fn under_load_a_peer_dialling_a_link_without_an_endpoint_gets_its_cookie_and_gets_in() {
    // b waits for a (no endpoint); an attacker who knows b's public key keeps b's link over
    // its handshake rate limit. a's initiation is answered with a cookie reply, which must
    // go back to where the initiation came from (WireGuard paper, section 5.4.7): a then
    // retries with a valid MAC2 and gets in. Sent to b's endpoint instead (none here),
    // the cookie is lost and a never gets in while the flood lasts.
    let a = config(1, 2, None, 40);
    let b = config(2, 1, None, 41);
    let mut pair = Pair::new(a, b, 40);
    let attacker = addr("198.18.0.200:40004");
    pair.outsiders.push(attacker);
    let forged = forged_initiation(sim::key(2).1, 1);
    let b_main = pair.b.main;
    flood(&mut pair, attacker, b_main, &forged, 10 * MS, 100 * MS);
    let now = pair.now;
    pair.a.engine().set_endpoint(now, Some(b_main));
    pair.flush(Side::A);
    flood(&mut pair, attacker, b_main, &forged, 10 * MS, 12 * S);
    let stats = *pair.b.engine().stats();
    assert!(stats.cookie_replies > 0, "b was under load: {stats:?}");
    assert!(
        has_session(&mut pair, Side::A),
        "a got in despite the flood: {stats:?}"
    );
}

#[test]
fn under_load_a_peer_that_moved_gets_its_cookie_at_its_new_address() {
    // a and b had a session; a restarts behind a new address (a new NAT mapping) while an
    // attacker keeps b over its rate limit. b's cookie reply must go to a's new address,
    // not to the endpoint b last knew.
    let mut pair = plain_pair(42);
    pair.run_for(100 * MS);
    assert_eq!(pair.b.engine().endpoint(), Some(pair.a.main));
    let attacker = addr("198.18.0.201:40004");
    pair.outsiders.push(attacker);
    let forged = forged_initiation(sim::key(2).1, 2);
    let b_main = pair.b.main;
    flood(&mut pair, attacker, b_main, &forged, 10 * MS, 100 * MS);
    pair.a.main = addr("192.0.2.101:51001");
    let mut restarted = config(1, 2, Some(b_main), 43);
    restarted.seed = 4343;
    pair.restart(Side::A, restarted);
    flood(&mut pair, attacker, b_main, &forged, 10 * MS, 12 * S);
    let stats = *pair.b.engine().stats();
    assert!(stats.cookie_replies > 0, "b was under load: {stats:?}");
    assert!(has_session(&mut pair, Side::A), "a got in: {stats:?}");
    assert_eq!(pair.b.engine().endpoint(), Some(pair.a.main));
}

#[test]
fn the_handshake_rate_limit_is_per_second_even_on_a_link_that_ticks_slowly() {
    // boringtun allows 10 handshake messages a second per link before it asks for
    // cookies, and forgets the count when its timers run. A link whose peer has not
    // answered runs them every 60 s (ticks.rs): 11 forged initiations then hold it
    // "under load" for up to a minute, and a's first initiation two seconds later is
    // answered with a cookie instead of a response (a gets in only on its retry, 5 s on).
    let a = config(1, 2, None, 44);
    let b = config(2, 1, None, 45);
    let mut pair = Pair::new(a, b, 44);
    pair.run_for(136 * S);
    let attacker = addr("198.18.0.202:40004");
    pair.outsiders.push(attacker);
    let forged = forged_initiation(sim::key(2).1, 3);
    let b_main = pair.b.main;
    for _ in 0..11 {
        pair.transmit(attacker, b_main, forged.clone());
    }
    pair.run_for(2 * S);
    let cookies_before = pair.b.engine().stats().cookie_replies;
    let now = pair.now;
    pair.a.engine().set_endpoint(now, Some(b_main));
    pair.flush(Side::A);
    pair.run_for(100 * MS);
    let stats = *pair.b.engine().stats();
    assert_eq!(
        stats.cookie_replies, cookies_before,
        "two seconds after 11 initiations the link is not under load: {stats:?}"
    );
    assert!(has_session(&mut pair, Side::A), "a is in at once");
}

// ---- replays from other addresses ----

#[test]
fn a_replayed_initiation_from_another_address_after_a_restart_does_not_move_the_endpoint() {
    // b restarts and so forgets the newest timestamp it took from a. An attacker replays
    // a's old initiation from its own address: boringtun takes it (the stamp is newer than
    // nothing) and answers. Answering is harmless (only a can use the session); moving the
    // endpoint to the attacker is not: b's traffic would go there until a happens to send.
    // The endpoint moves on the first data message of the new session (a always confirms
    // a handshake with a keepalive), or on a data message that decrypts.
    let mut pair = plain_pair(46);
    pair.run_for(100 * MS);
    let a_main = pair.a.main;
    let b_main = pair.b.main;
    let initiation = pair.first_sent(a_main, 1).expect("a sent an initiation");
    pair.stop(Side::B);
    pair.run_for(S);
    pair.restart(Side::B, config(2, 1, None, 47));
    let attacker = addr("198.18.0.203:40004");
    pair.outsiders.push(attacker);
    pair.transmit(attacker, b_main, initiation);
    pair.run_for(100 * MS);
    assert_ne!(pair.b.engine().endpoint(), Some(attacker));
    assert!(
        !pair.b.events.iter().any(
            |(_, e)| matches!(e, Event::EndpointChanged { endpoint, .. } if *endpoint == attacker)
        ),
        "{:?}",
        pair.b.events
    );
}

#[test]
fn a_peer_that_dials_in_from_a_new_address_is_answered_there_and_followed_after_its_keepalive() {
    // The other half of the rule above: an initiation from a new address is answered at
    // that address, and the endpoint follows once the session is confirmed.
    let mut pair = plain_pair(48);
    pair.run_for(100 * MS);
    pair.a.main = addr("192.0.2.102:51001");
    let b_main = pair.b.main;
    let mut restarted = config(1, 2, Some(b_main), 49);
    restarted.seed = 4949;
    pair.restart(Side::A, restarted);
    pair.run_for(100 * MS);
    assert!(has_session(&mut pair, Side::A));
    assert_eq!(pair.b.engine().endpoint(), Some(pair.a.main));
    pair.send(Side::B, &packet(1, 100, 1));
    pair.run_for(50 * MS);
    assert_eq!(pair.a.delivered, vec![1]);
}

#[test]
fn thirty_forged_initiations_to_the_far_side_of_a_bond_keep_its_bond_and_endpoint() {
    let mut pair = bonded_pair(50);
    pair.run_for(S);
    assert!(pair.b.engine().bonded().0);
    let endpoint = pair.b.engine().endpoint();
    let attacker = addr("198.18.0.204:40004");
    pair.outsiders.push(attacker);
    let b_main = pair.b.main;
    for i in 0..30 {
        let forged = forged_initiation(sim::key(2).1, 10 + i);
        pair.transmit(attacker, b_main, forged);
        pair.run_for(30 * MS);
    }
    assert!(pair.b.engine().bonded().0, "b still follows a's bond");
    assert_eq!(pair.b.engine().endpoint(), endpoint);
    assert!(
        !pair
            .b
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::PeerUnbonded { .. }))
    );
    let before = pair.b.delivered.len();
    pair.stream(Side::A, 0, 10 * MS, S);
    pair.run_for(100 * MS);
    assert_eq!(pair.b.delivered.len() - before, 100);
}

#[test]
#[ignore = "braid-bond takes any probe that opens as 'the peer speaks bond', and the engine \
            follows on a probe of an unconfirmed epoch: fixing it needs the follow to wait for \
            the peer's epoch to be confirmed (a reply to this side's own request)"]
fn a_replayed_probe_does_not_turn_a_plain_link_into_a_bond() {
    // Capture a probe a sent while its link was bonded.
    let mut bonded = bonded_pair(51);
    bonded.run_for(S);
    let paths = bonded.a.paths.clone();
    let probe = bonded
        .sent
        .iter()
        .find(|(_, from, _, bytes)| paths.contains(from) && braid_bond::is_probe(bytes))
        .map(|(_, _, _, bytes)| bytes.clone())
        .expect("a probed");
    // Later the same two keys run a plain link. The old probe, replayed from a's address
    // (UDP sources are easy to forge; endpoints are published), must change nothing.
    let mut pair = plain_pair(52);
    pair.run_for(S);
    let (a_main, b_main) = (pair.a.main, pair.b.main);
    pair.transmit(a_main, b_main, probe);
    pair.run_for(S);
    assert!(
        !pair.b.engine().bonded().0,
        "b follows a bond that does not exist"
    );
    assert!(!pair.a.engine().bonded().0, "a follows b's answer");
}

// ---- bonds ----

#[test]
fn the_configured_side_of_a_bond_follows_a_peer_that_moved() {
    // a bonds two uplinks to b. b's address changes (a VPS gets a new address, or b sits
    // behind a NAT that rebinds): b's authenticated traffic now comes from the new address
    // on a's path sockets. a must send there, as any WireGuard peer follows an
    // authenticated peer; the far side's "paths are not roaming" rule does not apply to
    // the side whose paths are its own sockets.
    let mut pair = bonded_pair(53);
    pair.run_for(S);
    pair.b.main = addr("192.0.2.99:51002");
    pair.send(Side::B, &packet(1, 100, 1));
    pair.run_for(50 * MS);
    assert_eq!(pair.a.delivered, vec![1]);
    assert_eq!(pair.a.engine().endpoint(), Some(pair.b.main));
    pair.stream(Side::A, 10, 10 * MS, S);
    pair.run_for(100 * MS);
    assert!(
        pair.b.delivered.len() >= 99,
        "{} of 100",
        pair.b.delivered.len()
    );
}

#[test]
fn a_dead_bond_retries_once_a_second_and_then_backs_off() {
    let mut pair = bonded_pair(54);
    pair.run_for(S);
    pair.stop(Side::B);
    let stopped = pair.now;
    let a_sources: Vec<SocketAddr> = pair.a.paths.iter().copied().chain([pair.a.main]).collect();
    pair.run_for(600 * S);
    let initiations = |from: Duration, to: Duration| {
        pair.sent
            .iter()
            .filter(|(t, src, _, bytes)| {
                *t >= stopped + from
                    && *t < stopped + to
                    && a_sources.contains(src)
                    && bytes[0] == 1
            })
            .count()
    };
    let fast = initiations(Duration::ZERO, 125 * S);
    let late = initiations(300 * S, 600 * S);
    assert!(fast <= 130, "{fast} initiations in the first 125 s");
    assert!(late <= 10, "{late} initiations in the last 300 s");
    assert!(pair.a.events.iter().any(|(_, e)| *e == Event::Dead));
}

#[test]
fn a_dead_bond_does_not_probe_at_full_rate_forever() {
    // Measured: 24,124 datagrams in 10 minutes from a bond of two paths whose peer is gone
    // (40 probes a second, about 33 kbit/s or 360 MB a day on a metered uplink). The
    // handshake retry (once a second) is what brings a restarted peer back; probing a
    // path that has been down for minutes once a second would still notice its return
    // within a second or two.
    let mut pair = bonded_pair(60);
    pair.run_for(S);
    pair.stop(Side::B);
    let stopped = pair.now;
    let a_sources: Vec<SocketAddr> = pair.a.paths.iter().copied().chain([pair.a.main]).collect();
    pair.run_for(600 * S);
    let late = pair
        .sent
        .iter()
        .filter(|(t, src, _, _)| *t >= stopped + 300 * S && a_sources.contains(src))
        .count();
    assert!(
        late <= 2 * 300,
        "{late} datagrams in the last 300 s of a dead bond"
    );
}

// ---- contracts ----

#[test]
fn a_packet_with_the_documented_out_buffer_starts_a_handshake() {
    // send_packet's `out` needs "room for the packet plus 32 bytes rounded up to 16". With
    // no handshake in progress (here: the last one gave up after 90 s), boringtun writes
    // the initiation into `out`; 148 bytes do not fit the 80 a 40-byte packet gets, and
    // the packet must not be reported dropped while no initiation goes out.
    let mut pair = plain_pair(55);
    pair.stop(Side::B);
    pair.run_for(200 * S);
    while pair.a.engine().poll_transmit().is_some() {}
    let small = packet(1, 40, 1);
    let mut out = vec![0u8; 32 + small.len().next_multiple_of(16)];
    let now = pair.now;
    let result = pair.a.engine().send_packet(now, &small, &mut out);
    assert!(matches!(result, Outgoing::Pending), "{result:?}");
    let initiation = std::iter::from_fn(|| pair.a.engine().poll_transmit())
        .any(|t| t.payload.first() == Some(&1));
    assert!(initiation, "a handshake initiation is on its way");
}

#[test]
fn latest_handshake_is_when_it_happened_even_after_a_long_silence() {
    // `wg show`'s "latest handshake": boringtun stamps session events with the time its
    // timers last ran, and a link whose peer has not answered runs them once a minute.
    let a = config(1, 2, None, 56);
    let b = config(2, 1, None, 57);
    let mut pair = Pair::new(a, b, 56);
    pair.run_for(100 * S);
    let b_main = pair.b.main;
    let now = pair.now;
    pair.a.engine().set_endpoint(now, Some(b_main));
    pair.flush(Side::A);
    pair.run_for(100 * MS);
    let wall = wall_now(&pair);
    for side in [Side::A, Side::B] {
        let now = pair.now;
        let at = pair
            .node(side)
            .engine()
            .last_handshake(now)
            .expect("a session");
        let age = wall.saturating_sub(at);
        assert!(
            age < S,
            "{side:?}: latest handshake {age:?} ago, 100 ms after it happened"
        );
    }
}

// ---- hostile bytes ----

/// Datagrams of every WireGuard type and the probe type, with lengths around every
/// message size, random contents.
fn hostile_datagrams(seed: u64) -> Vec<Vec<u8>> {
    let mut dice = sim::Dice(seed);
    let mut out = Vec::new();
    let lengths = [
        0usize, 1, 2, 3, 4, 5, 15, 16, 17, 31, 32, 33, 63, 64, 65, 91, 92, 93, 103, 104, 105, 147,
        148, 149, 200, 1419, 1420, 1452, 1500, 1501, 2000, 9000,
    ];
    let heads: [&[u8]; 7] = [
        &[1, 0, 0, 0],
        &[2, 0, 0, 0],
        &[3, 0, 0, 0],
        &[4, 0, 0, 0],
        &braid_bond::probe::PROBE_TYPE,
        &[0x62, 0, 0, 1],
        &[0xff, 0xff, 0xff, 0xff],
    ];
    for len in lengths {
        for head in heads {
            let mut d: Vec<u8> = (0..len).map(|_| dice.next_u64() as u8).collect();
            let n = head.len().min(len);
            d[..n].copy_from_slice(&head[..n]);
            out.push(d);
        }
    }
    out
}

#[test]
fn hostile_datagrams_on_every_socket_from_every_address_change_nothing_and_never_panic() {
    let mut pair = bonded_pair(58);
    pair.run_for(S);
    let a_endpoint = pair.a.engine().endpoint();
    let b_endpoint = pair.b.engine().endpoint();
    let sources = [
        addr("198.18.0.205:40004"),
        pair.b.main,
        pair.a.paths[0],
        pair.a.main,
    ];
    let targets: Vec<SocketAddr> = [pair.a.main, pair.b.main]
        .into_iter()
        .chain(pair.a.paths.iter().copied())
        .collect();
    let datagrams = hostile_datagrams(7);
    for from in sources {
        for to in &targets {
            for d in &datagrams {
                pair.transmit(from, *to, d.clone());
            }
            pair.run_for(MS);
        }
    }
    pair.run_for(100 * MS);
    assert_eq!(pair.a.engine().endpoint(), a_endpoint);
    assert_eq!(pair.b.engine().endpoint(), b_endpoint);
    assert!(pair.b.engine().bonded().0);
    let before = pair.b.delivered.len();
    pair.stream(Side::A, 0, 10 * MS, S);
    pair.run_for(100 * MS);
    assert_eq!(pair.b.delivered.len() - before, 100);
}

#[test]
fn a_plain_engine_takes_hostile_bytes_into_a_buffer_of_the_datagrams_length() {
    // The documented contract of handle_datagram: `out` holds the datagram's length.
    let mut engine = Engine::new(
        config(1, 2, Some(addr("192.0.2.2:51002")), 59),
        std::time::Instant::now(),
    );
    let now = std::time::Instant::now();
    for d in hostile_datagrams(9) {
        let mut out = vec![0u8; d.len()];
        let r = engine.handle_datagram(now, Socket::Main, addr("198.18.0.206:1"), &d, &mut out);
        assert_eq!(r, Incoming::Nothing);
        let r = engine.handle_datagram(now, Socket::Path(3), addr("198.18.0.206:1"), &d, &mut out);
        assert_eq!(r, Incoming::Nothing);
    }
    assert_eq!(engine.endpoint(), Some(addr("192.0.2.2:51002")));
}

#[test]
fn a_packet_the_responder_queued_before_the_handshake_leaves_once_the_session_is_confirmed() {
    // b waits for a (no endpoint) and has a packet for it. When a dials in, b answers;
    // b may send on the new session once a's first data message confirms it, and then the
    // waiting packet must leave, not wait for the next handshake.
    let a = config(1, 2, None, 61);
    let b = config(2, 1, None, 62);
    let mut pair = Pair::new(a, b, 61);
    pair.run_for(S);
    assert!(matches!(
        pair.send(Side::B, &packet(7, 100, 1)),
        Outgoing::Pending | Outgoing::Dropped
    ));
    let b_main = pair.b.main;
    let now = pair.now;
    pair.a.engine().set_endpoint(now, Some(b_main));
    pair.flush(Side::A);
    pair.run_for(200 * MS);
    assert_eq!(pair.a.delivered, vec![7]);
}

// ---- clocks ----

#[test]
fn a_node_that_started_with_its_clock_behind_is_taken_once_the_clock_is_corrected() {
    // A router without a real-time clock restarts after a power cut with the time it last
    // saved (here an hour behind) and corrects it by NTP a few seconds later. Its peer
    // remembers the newer timestamps of its previous run and refuses the new ones until
    // they pass them (WireGuard paper, section 5.1). Kernel WireGuard and wireguard-go
    // read the clock for every initiation, so they are taken as soon as NTP corrects it;
    // the engine must follow a corrected clock forward too (never back: its own stamps
    // must keep growing).
    let a = config(1, 2, None, 63);
    let b = config(2, 1, Some(addr("192.0.2.1:51001")), 64);
    let mut pair = Pair::new(a, b, 63);
    pair.run_for(10 * S);
    assert!(has_session(&mut pair, Side::A));
    pair.stop(Side::B);
    pair.run_for(S);
    let behind = wall_now(&pair) - Duration::from_secs(3600);
    let mut restarted = config(2, 1, Some(addr("192.0.2.1:51001")), 65);
    restarted.wall = behind;
    let now = pair.now;
    pair.b.engine = Some(Engine::new(restarted, now));
    pair.flush(Side::B);
    pair.run_for(S);
    assert!(
        pair.a.engine().stats().rejected_handshakes >= 1,
        "stamps an hour old are refused"
    );
    // NTP corrects b's clock; b's next initiation carries the corrected time.
    let now = pair.now;
    let wall = wall_now(&pair);
    pair.b.engine().set_wall(now, wall);
    pair.send(Side::B, &packet(1, 100, 1));
    pair.run_for(6 * S);
    assert_eq!(pair.a.delivered, vec![1], "b is taken after the correction");
}

#[test]
fn a_bonding_peer_that_restarts_on_new_path_addresses_is_followed_again_within_a_second() {
    // a restarts with new source ports on both uplinks (new sockets). Its first
    // initiation comes from an address b's bond does not know: b drops the old bond and
    // makes a new one from a's next probes.
    let mut pair = bonded_pair(66);
    pair.run_for(S);
    assert!(pair.b.engine().bonded().0);
    pair.stop(Side::A);
    pair.run_for(S);
    pair.a.paths = vec![addr("198.51.100.1:52001"), addr("198.51.100.2:52001")];
    let mut a = config(1, 2, Some(addr("192.0.2.2:51002")), 67);
    a.paths = vec![braid_bond::PathSpec::default(); 2];
    a.scheduler = braid_bond::Scheduler::RoundRobin;
    pair.restart(Side::A, a);
    let restarted = pair.now;
    pair.stream(Side::A, 0, 10 * MS, 2 * S);
    let first = pair.b.delivered_at.first().map(|(t, _)| *t - restarted);
    assert!(
        first.is_some_and(|d| d <= 100 * MS),
        "first packet after {first:?}"
    );
    assert!(
        pair.b.delivered.len() >= 190,
        "{} of 200",
        pair.b.delivered.len()
    );
    let status = pair
        .b
        .engine()
        .bond_status(pair.now)
        .expect("b follows again");
    let up: Vec<_> = status
        .paths
        .iter()
        .filter(|p| p.state == braid_bond::PathState::Up)
        .filter_map(|p| p.peer)
        .collect();
    assert!(
        up.contains(&pair.a.paths[0]) && up.contains(&pair.a.paths[1]),
        "{status:?}"
    );
    // The far side answers on both new paths: a sees both up.
    let a_up = pair.a.engine().bond_status(pair.now).map_or(0, |s| {
        s.paths
            .iter()
            .filter(|p| p.state == braid_bond::PathState::Up)
            .count()
    });
    assert_eq!(a_up, 2);
}

#[test]
fn under_load_the_initiator_still_completes_its_handshake() {
    // The flood is at a, the side that dials: b's response meets a's rate limit, a answers
    // it with a cookie reply, and b's next response (to a's retry) carries a valid MAC2.
    let a = config(1, 2, None, 68);
    let b = config(2, 1, None, 69);
    let mut pair = Pair::new(a, b, 68);
    let attacker = addr("198.18.0.207:40004");
    pair.outsiders.push(attacker);
    let forged = forged_initiation(sim::key(1).1, 4);
    let (a_main, b_main) = (pair.a.main, pair.b.main);
    flood(&mut pair, attacker, a_main, &forged, 10 * MS, 100 * MS);
    let now = pair.now;
    pair.a.engine().set_endpoint(now, Some(b_main));
    pair.flush(Side::A);
    flood(&mut pair, attacker, a_main, &forged, 10 * MS, 12 * S);
    let stats = *pair.a.engine().stats();
    assert!(stats.cookie_replies > 0, "a was under load: {stats:?}");
    assert!(has_session(&mut pair, Side::A), "{stats:?}");
    assert!(has_session(&mut pair, Side::B));
}

#[test]
fn a_follower_whose_bond_died_is_alive_again_when_the_restarted_peer_is_followed_anew() {
    // Seen in the lab: n1 (two uplinks, bonding) restarted; n2's link, which follows n1's
    // bond, found every path down (`Dead`: the worker took its carrier away), then followed
    // n1 anew when its first initiation came from new path sockets. The old bond and its
    // dead state were dropped without an `Alive`, so the carrier stayed off for good while
    // traffic flowed (routing went around a working link).
    let mut pair = bonded_pair(70);
    pair.run_for(S);
    assert!(pair.b.engine().bonded().0);
    pair.stop(Side::A);
    pair.run_for(3 * S);
    let dead = pair
        .b
        .events
        .iter()
        .rposition(|(_, e)| *e == Event::Dead)
        .expect("b's bond went dead while a was away");
    pair.a.paths = vec![addr("198.51.100.1:52101"), addr("198.51.100.2:52101")];
    let mut a = config(1, 2, Some(addr("192.0.2.2:51002")), 71);
    a.paths = vec![braid_bond::PathSpec::default(); 2];
    a.scheduler = braid_bond::Scheduler::RoundRobin;
    pair.restart(Side::A, a);
    pair.stream(Side::A, 0, 10 * MS, 2 * S);
    assert!(
        pair.b.delivered.len() >= 190,
        "{} of 200",
        pair.b.delivered.len()
    );
    let after: Vec<&Event> = pair.b.events[dead..].iter().map(|(_, e)| e).collect();
    assert!(
        after
            .iter()
            .any(|e| matches!(e, Event::PeerUnbonded { .. })),
        "b followed a anew: {after:?}"
    );
    assert_eq!(
        after
            .iter()
            .rev()
            .find(|e| matches!(e, Event::Dead | Event::Alive)),
        Some(&&Event::Alive),
        "b's link is alive again: {after:?}"
    );
}
