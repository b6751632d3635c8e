//! End-to-end behaviour of two bonded endpoints over simulated paths.

mod sim;

use braid_bond::{
    BondConfig, DownReason, Event, PathId, PathSpec, PathState, ReorderMode, Scheduler,
};
use sim::{LinkSpec, Side, Sim, udp_packet};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const MS: Duration = Duration::from_millis(1);
/// The measured stream's port (warm-up traffic uses port 1).
const SPORT: u16 = 5000;

fn cfg(s: Scheduler) -> BondConfig {
    BondConfig {
        scheduler: Some(s),
        ..BondConfig::default()
    }
}

fn far() -> BondConfig {
    BondConfig::default()
}

fn equal(n: usize, mbit: u64, delay_ms: u64) -> Vec<(PathSpec, LinkSpec, LinkSpec)> {
    (0..n)
        .map(|_| {
            let l = LinkSpec::new(mbit, delay_ms);
            (PathSpec::default(), l, l)
        })
        .collect()
}

/// A trickle of data from A so B learns the paths, for `ms`.
fn warm_up(sim: &mut Sim, ms: u64) {
    let (s, e) = (sim.now, sim.now + Duration::from_millis(ms));
    sim.stream(Side::A, 1, 100, 20 * MS, (s, e));
    sim.run_until(e);
}

fn state_at_b(sim: &Sim, path: usize) -> Option<PathState> {
    let id = sim.b.bond.path_by_addr(sim.paths[path].addr)?;
    sim.b.bond.path_state(id)
}

fn event_time(ep: &sim::Endpoint, after: Instant, f: impl Fn(&Event) -> bool) -> Option<Duration> {
    ep.events
        .iter()
        .find(|(t, e)| *t >= after && f(e))
        .map(|(t, _)| *t - after)
}

#[test]
fn probes_bring_every_path_up_on_both_sides_and_b_learns_keys_and_scheduler() {
    let mut sim = Sim::new(cfg(Scheduler::Weighted), far(), &equal(3, 50, 10), 1);
    warm_up(&mut sim, 1000);
    for i in 0..3 {
        assert_eq!(
            sim.a.bond.path_state(PathId(i as u32)),
            Some(PathState::Up),
            "A path {i}"
        );
        assert_eq!(state_at_b(&sim, i), Some(PathState::Up), "B path {i}");
    }
    let st = sim.b.bond.status(sim.now);
    assert_eq!(st.scheduler, Scheduler::Weighted);
    assert_eq!(st.scheduler_source, "peer");
    assert!(st.reorder.enabled);
    let mut keys: Vec<u32> = st.paths.iter().map(|p| p.key).collect();
    keys.sort();
    assert_eq!(keys, [0, 1, 2]);
    for p in &st.paths {
        let rtt = p.rtt_ms.unwrap();
        assert!((20.0..22.0).contains(&rtt), "{rtt}");
    }
    let json = serde_json::to_string(&sim.a.bond.status(sim.now)).unwrap();
    assert!(json.contains("\"state\":\"up\""), "{json}");
    println!("{json}");
}

#[test]
fn flow_scheduler_keeps_flows_on_one_path_in_both_directions() {
    let mut sim = Sim::new(cfg(Scheduler::Flow), far(), &equal(3, 50, 10), 2);
    warm_up(&mut sim, 1000);
    // Both ends pick the same path (by shared key) for a flow and its reverse.
    let b_key = |sim: &Sim, id: PathId| {
        sim.b
            .bond
            .status(sim.now)
            .paths
            .iter()
            .find(|p| p.id == id)
            .unwrap()
            .key
    };
    let mut per_path = [0usize; 3];
    for sport in 2000..2600u16 {
        let fwd = udp_packet(Side::A, sport, 0, 100);
        let rev = udp_packet(Side::B, sport, 0, 100);
        let now = sim.now;
        let pa = sim.a.bond.pick(&fwd, now)[0];
        let pb = sim.b.bond.pick(&rev, now)[0];
        assert_eq!(pa.0, b_key(&sim, pb), "flow {sport}");
        per_path[pa.0 as usize] += 1;
    }
    assert!(
        per_path.iter().all(|n| (140..260).contains(n)),
        "{per_path:?}"
    );
    // Over the network: every packet of a flow arrives on one path.
    let (s, e) = (sim.now, sim.now + 2000 * MS);
    for sport in 3000..3020u16 {
        sim.stream(Side::A, sport, 500, 5 * MS, (s, e));
    }
    sim.run_until(e + 100 * MS);
    for sport in 3000..3020u16 {
        let paths: HashSet<usize> = sim
            .b
            .delivered
            .iter()
            .filter(|d| d.sport == sport)
            .map(|d| d.path)
            .collect();
        assert_eq!(paths.len(), 1, "flow {sport} used {paths:?}");
    }
}

fn weighted_run(weights: [Option<u32>; 2], offered_mbit: f64, seed: u64) -> (f64, f64) {
    // 300 + 100 Mbit/s scaled down by 10 to keep the packet count small.
    let links = [(30, weights[0]), (10, weights[1])]
        .map(|(mbit, w)| {
            let l = LinkSpec::new(mbit, 10);
            (
                PathSpec {
                    weight: w,
                    ..PathSpec::default()
                },
                l,
                l,
            )
        })
        .to_vec();
    let mut sim = Sim::new(cfg(Scheduler::Weighted), far(), &links, seed);
    warm_up(&mut sim, 500);
    // Offer 1200-byte packets for 10 s.
    let (s, e) = (sim.now, sim.now + 10_000 * MS);
    let every = Duration::from_secs_f64(1200.0 * 8.0 / (offered_mbit * 1e6));
    let sent = sim.stream(Side::A, SPORT, 1200, every, (s, e));
    // Measure the second half.
    sim.run_until(s + 5000 * MS);
    let before = sim.a.data_bytes.clone();
    let delivered_before = sim.b.delivered.iter().filter(|d| d.sport == SPORT).count();
    sim.run_until(e + 200 * MS);
    let bytes: Vec<f64> = (0..2)
        .map(|i| (sim.a.data_bytes[i] - before[i]) as f64)
        .collect();
    let delivered = sim.b.delivered.iter().filter(|d| d.sport == SPORT).count();
    let half_sent = sent as f64 / 2.0;
    let downs = sim
        .a
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::PathDown(..)))
        .count();
    println!("path downs at A: {downs}");
    for (t, e) in &sim.a.events {
        println!("  {:?} {e:?}", *t - sim.t0);
    }
    let ratio = bytes[0] / bytes[1];
    let delivery = (delivered - delivered_before) as f64 / half_sent;
    println!(
        "weights {weights:?}, offered {offered_mbit} Mbit/s: bytes ratio {ratio:.2}, delivered {:.1}% (second half), status {}",
        delivery * 100.0,
        serde_json::to_string(&sim.a.bond.status(sim.now).paths).unwrap()
    );
    (ratio, delivery)
}

#[test]
fn weighted_splits_by_configured_weights() {
    // Offered 36 Mbit/s: 90% of the sum.
    let (ratio, delivered) = weighted_run([Some(300), Some(100)], 36.0, 3);
    assert!((2.9..3.1).contains(&ratio), "{ratio}");
    assert!(delivered > 0.99, "{delivered}");
}

#[test]
fn weighted_without_weights_measures_300_plus_100_and_splits_near_3_to_1() {
    let (ratio, delivered) = weighted_run([None, None], 36.0, 4);
    assert!((2.4..3.6).contains(&ratio), "{ratio}");
    assert!(delivered > 0.95, "{delivered}");
}

#[test]
fn weighted_without_weights_fills_both_paths_when_offered_more_than_they_carry() {
    // 44 Mbit/s offered to 30 + 10: the estimator must find both bottlenecks.
    let (ratio, delivered) = weighted_run([None, None], 44.0, 11);
    let goodput = delivered * 44.0;
    println!("saturated: goodput {goodput:.1} of 40 Mbit/s");
    assert!((2.4..3.6).contains(&ratio), "{ratio}");
    assert!(goodput > 0.85 * 40.0, "{goodput}");
}

#[test]
fn redundant_with_5_percent_loss_per_path_delivers_more_than_99_5_percent() {
    let links: Vec<_> = (0..2)
        .map(|_| {
            let l = LinkSpec::new(50, 15).loss(0.05).jitter_ms(2);
            (PathSpec::default(), l, l)
        })
        .collect();
    let mut sim = Sim::new(cfg(Scheduler::Redundant), far(), &links, 5);
    warm_up(&mut sim, 1000);
    let (s, e) = (sim.now, sim.now + 20_000 * MS);
    let sent = sim.stream(Side::A, SPORT, 200, 2 * MS, (s, e));
    sim.run_until(e + 500 * MS);
    let got: HashSet<u64> = sim
        .b
        .delivered
        .iter()
        .filter(|d| d.sport == SPORT)
        .map(|d| d.id)
        .collect();
    let loss = 1.0 - got.len() as f64 / sent as f64;
    // Second copies are dropped by the (simulated) replay window before the bond, or by
    // the bond's own duplicate window.
    let dups = sim.b.replayed + sim.b.bond.status(sim.now).reorder.counters.duplicates;
    println!(
        "redundant: sent {sent}, delivered {}, loss {:.3}%, duplicates discarded {dups}",
        got.len(),
        loss * 100.0
    );
    assert!(loss < 0.005, "{loss}");
    // Both copies arrived for most packets: the second was discarded, not delivered.
    assert!(dups as f64 > 0.85 * sent as f64, "{dups}");
    let total = sim.b.delivered.iter().filter(|d| d.sport == SPORT).count();
    assert_eq!(total, got.len(), "a duplicate was delivered");
}

#[test]
fn failover_takes_a_cut_path_out_within_300_ms_and_back_within_1_s() {
    let mut sim = Sim::new(cfg(Scheduler::Flow), far(), &equal(2, 50, 10), 6);
    warm_up(&mut sim, 1000);
    // A ping-like flow (every 10 ms, both ways) that the flow hash puts on path 1.
    let sport = (10_000..11_000u16)
        .find(|p| sim.a.bond.pick(&udp_packet(Side::A, *p, 0, 64), sim.now)[0] == PathId(1))
        .unwrap();
    let (s, e) = (sim.now, sim.now + 6000 * MS);
    sim.stream(Side::A, sport, 64, 10 * MS, (s, e));
    sim.stream(Side::B, sport, 64, 10 * MS, (s, e));
    let cut_at = 2000 + (s - sim.t0).as_millis() as u64;
    sim.cut(1, cut_at, cut_at + 2000);
    sim.run_until(e + 200 * MS);
    let cut = sim.at(cut_at);
    let restore = sim.at(cut_at + 2000);
    let down_a = event_time(&sim.a, cut, |e| {
        *e == Event::PathDown(PathId(1), DownReason::NoAnswer)
    });
    let b1 = sim.b.bond.path_by_addr(sim.paths[1].addr).unwrap();
    let down_b = event_time(&sim.b, cut, |e| {
        *e == Event::PathDown(b1, DownReason::NoAnswer)
    });
    let up_a = event_time(&sim.a, restore, |e| *e == Event::PathUp(PathId(1)));
    let up_b = event_time(&sim.b, restore, |e| *e == Event::PathUp(b1));
    // The longest gap in delivery of the flow, each way.
    let gap = |d: &[sim::Delivery]| {
        let times: Vec<Instant> = d
            .iter()
            .filter(|d| d.sport == sport)
            .map(|d| d.at)
            .collect();
        times.windows(2).map(|w| w[1] - w[0]).max().unwrap()
    };
    let (gap_ab, gap_ba) = (gap(&sim.b.delivered), gap(&sim.a.delivered));
    println!(
        "failover: down A {down_a:?} B {down_b:?}; up again A {up_a:?} B {up_b:?}; longest gap A->B {gap_ab:?} B->A {gap_ba:?}"
    );
    assert!(down_a.unwrap() <= 300 * MS);
    assert!(down_b.unwrap() <= 300 * MS);
    assert!(up_a.unwrap() <= 1000 * MS);
    assert!(up_b.unwrap() <= 1000 * MS);
    // The gap is the failover time plus one ping interval and the path delay.
    assert!(gap_ab <= 330 * MS, "{gap_ab:?}");
    assert!(gap_ba <= 330 * MS, "{gap_ba:?}");
    // After the restore the flow is back on path 1.
    let last = sim
        .b
        .delivered
        .iter()
        .rev()
        .find(|d| d.sport == sport)
        .unwrap();
    assert_eq!(last.path, 1);
}

#[test]
fn administrative_down_is_immediate() {
    let mut sim = Sim::new(cfg(Scheduler::Flow), far(), &equal(2, 50, 10), 7);
    warm_up(&mut sim, 1000);
    sim.a.bond.path_down(PathId(0)).unwrap();
    let now = sim.now;
    for sport in 0..100 {
        assert_eq!(
            sim.a.bond.pick(&udp_packet(Side::A, sport, 0, 64), now)[0],
            PathId(1)
        );
    }
    sim.a.bond.path_up(PathId(0), now).unwrap();
    sim.run_until(now + 500 * MS);
    assert_eq!(sim.a.bond.path_state(PathId(0)), Some(PathState::Up));
}

fn reorder_run(mode: ReorderMode) -> (usize, usize, f64) {
    let links = vec![
        (
            PathSpec::default(),
            LinkSpec::new(50, 10),
            LinkSpec::new(50, 10),
        ),
        (
            PathSpec::default(),
            LinkSpec::new(50, 30),
            LinkSpec::new(50, 30),
        ),
    ];
    let b = BondConfig {
        reorder: mode,
        ..far()
    };
    let mut sim = Sim::new(cfg(Scheduler::RoundRobin), b, &links, 8);
    warm_up(&mut sim, 1000);
    let (s, e) = (sim.now, sim.now + 3000 * MS);
    let sent = sim.stream(Side::A, 9000, 1000, Duration::from_micros(500), (s, e));
    sim.run_until(e + 300 * MS);
    let ids: Vec<u64> = sim
        .b
        .delivered
        .iter()
        .filter(|d| d.sport == 9000)
        .map(|d| d.id)
        .collect();
    let inversions = ids.windows(2).filter(|w| w[1] < w[0]).count();
    let st = sim.b.bond.status(sim.now);
    println!(
        "reorder {mode:?}: sent {sent}, delivered {}, out of order {inversions}, wait {:.1} ms, counters {:?}",
        ids.len(),
        st.reorder.wait_ms,
        st.reorder.counters
    );
    (ids.len(), inversions, st.reorder.wait_ms)
}

#[test]
fn reorder_buffer_puts_two_paths_of_10_and_30_ms_back_in_order() {
    let (n, inv, wait) = reorder_run(ReorderMode::Auto);
    assert_eq!(n, 6000);
    assert_eq!(inv, 0);
    // The wait follows the one-way delay spread (20 ms) plus a margin, not the maximum.
    assert!((20.0..30.0).contains(&wait), "{wait}");
    let (n_off, inv_off, _) = reorder_run(ReorderMode::Off);
    assert_eq!(n_off, 6000);
    assert!(
        inv_off > 1000,
        "without the buffer the paths reorder: {inv_off}"
    );
}

#[test]
fn forged_and_replayed_probes_change_nothing() {
    let mut sim = Sim::new(cfg(Scheduler::Flow), far(), &equal(2, 50, 10), 9);
    sim.record = Some(Vec::new());
    warm_up(&mut sim, 1000);
    let rec = sim.record.take().unwrap();
    let requests_a: Vec<&Vec<u8>> = rec
        .iter()
        .filter(|(_, s, i, b)| *s == Side::A && *i == 1 && braid_bond::is_probe(b) && b[4] == 1)
        .map(|(_, _, _, b)| b)
        .collect();
    let replies_b: Vec<&Vec<u8>> = rec
        .iter()
        .filter(|(_, s, i, b)| *s == Side::B && *i == 1 && braid_bond::is_probe(b) && b[4] == 2)
        .map(|(_, _, _, b)| b)
        .collect();
    assert!(requests_a.len() > 10 && replies_b.len() > 10);

    // Cut path 1; replaying B's recorded replies to A must not keep it up.
    let cut_ms = (sim.now - sim.t0).as_millis() as u64;
    sim.cut(1, cut_ms, cut_ms + 10_000);
    let mut t = sim.now;
    for _ in 0..20 {
        t += 50 * MS;
        sim.run_until(t);
        for r in &replies_b {
            assert!(sim.a.bond.handle_probe(PathId(1), r, t).is_err());
        }
    }
    assert_eq!(sim.a.bond.path_state(PathId(1)), Some(PathState::Down));
    let st = sim.a.bond.status(sim.now);
    assert!(st.probes.unsolicited >= 20 * replies_b.len() as u64);

    // Replayed requests at B: rejected, and no reply is sent.
    let b_before = sim.b.bond.status(sim.now).probes;
    let b1 = sim.b.bond.path_by_addr(sim.paths[1].addr).unwrap();
    for r in &requests_a {
        assert!(sim.b.bond.handle_probe(b1, r, sim.now).is_err());
    }
    while sim.b.bond.poll_transmit().is_some() {}
    let b_after = sim.b.bond.status(sim.now).probes;
    assert_eq!(
        b_after.replayed - b_before.replayed,
        requests_a.len() as u64
    );
    assert_eq!(b_after.sent_replies, b_before.sent_replies);

    // A replayed request from a new address does not create a path.
    let stranger: std::net::SocketAddr = "192.0.2.99:666".parse().unwrap();
    for r in &requests_a {
        assert!(sim.b.bond.handle_probe_from(stranger, r, sim.now).is_err());
    }
    assert_eq!(sim.b.bond.path_by_addr(stranger), None);

    // Forged: any single bit flipped, or a probe made with other keys.
    let mut forged = requests_a[0].clone();
    forged[30] ^= 4;
    assert!(sim.b.bond.handle_probe(b1, &forged, sim.now).is_err());
    let other = braid_bond::ProbeKeys::from_raw([7; 32], [8; 32]);
    let mut evil = braid_bond::Bond::new(cfg(Scheduler::Flow), other, 1, sim.now);
    let p = evil.add_path(PathSpec::default(), sim.now).unwrap();
    evil.handle_timeout(sim.now);
    let tx = evil.poll_transmit().unwrap();
    assert_eq!(tx.path, p);
    assert!(sim.b.bond.handle_probe(b1, &tx.payload, sim.now).is_err());
    assert!(sim.b.bond.status(sim.now).probes.bad_mac >= 2);
}

#[test]
fn memory_and_replies_stay_bounded_under_a_flood() {
    let mut sim = Sim::new(cfg(Scheduler::Weighted), far(), &equal(2, 50, 10), 10);
    warm_up(&mut sim, 1000);
    let b1 = sim.b.bond.path_by_addr(sim.paths[1].addr).unwrap();
    // A restarted A (same keys, new epoch): its requests are answered, but at most one
    // per half probe interval per path, however many arrive.
    let (ka, _) = sim::keys();
    let mut again = braid_bond::Bond::new(cfg(Scheduler::Weighted), ka, 0xdead, sim.now);
    again.add_path(PathSpec::default(), sim.now).unwrap();
    let mut flood = Vec::new();
    let mut t = sim.now;
    // (Its path is never answered, so it slows to a probe every 2 s after a minute: run
    // it until it has sent 2000.)
    while flood.len() < 2000 {
        t += 50 * MS;
        again.handle_timeout(t);
        while let Some(tx) = again.poll_transmit() {
            flood.push(tx.payload);
        }
    }
    flood.truncate(2000);
    let before = sim.b.bond.status(sim.now).probes.sent_replies;
    let start = sim.now;
    for (k, m) in flood.iter().enumerate() {
        let at = start + Duration::from_micros(50 * k as u64);
        let _ = sim.b.bond.handle_probe(b1, m, at);
        while sim.b.bond.poll_transmit().is_some() {}
    }
    let replies = sim.b.bond.status(sim.now).probes.sent_replies - before;
    // 100 ms of flood, one reply per 25 ms at most.
    println!(
        "flood of {} requests from an unconfirmed epoch: {replies} replies",
        flood.len()
    );
    assert!(replies <= 5, "{replies}");
    // A flood of data with every other counter missing: the reorder buffer stays bounded.
    let mut t = sim.now;
    for c in 0..200_000u64 {
        t += Duration::from_micros(1);
        let _ = sim
            .b
            .bond
            .push_received(0x0a0a, 1_000_000 + c * 2, &[0u8; 1400], t);
        assert!(sim.b.bond.status(t).reorder.buffered <= 1024 || c % 1000 != 0);
        if c % 7 == 0 {
            while sim.b.bond.pop_received().is_some() {}
        }
    }
    let st = sim.b.bond.status(t).reorder;
    println!("reorder under flood: {st:?}");
    assert!(st.buffered <= 1024);
    assert!(st.counters.forced > 0);
}

#[test]
fn learned_paths_are_bounded_and_stale_ones_make_room() {
    let (_, kb) = sim::keys();
    let t0 = Instant::now();
    let mut b = braid_bond::Bond::new(far(), kb, 1, t0);
    let addr =
        |i: u32| -> std::net::SocketAddr { format!("198.51.100.{}:1", i + 1).parse().unwrap() };
    for i in 0..braid_bond::MAX_PATHS as u32 {
        b.learn_path(addr(i), t0 + i * MS).unwrap();
    }
    // All up: no room, and nothing is evicted.
    assert_eq!(
        b.learn_path(addr(100), t0 + 100 * MS),
        Err(braid_bond::BondError::TooManyPaths)
    );
    // Once the peer probes, silent learned paths fail over and can be replaced.
    b.handle_timeout(t0 + 200 * MS);
    let (ka, _) = sim::keys();
    let mut a = braid_bond::Bond::new(cfg(Scheduler::Flow), ka, 2, t0);
    a.add_path(PathSpec::default(), t0).unwrap();
    a.handle_timeout(t0 + 200 * MS);
    let req = a.poll_transmit().unwrap();
    let _ = b.handle_probe(
        b.path_by_addr(addr(3)).unwrap(),
        &req.payload,
        t0 + 200 * MS,
    );
    b.handle_timeout(t0 + 2000 * MS);
    let newcomer = b.learn_path(addr(100), t0 + 2000 * MS).unwrap();
    assert_eq!(b.path_by_addr(addr(100)), Some(newcomer));
    assert_eq!(b.path_ids().count(), braid_bond::MAX_PATHS);
    // The one heard from longest ago went.
    assert_eq!(b.path_by_addr(addr(0)), None);
}
