//! The reorder buffer's promises, through two whole engines on virtual time: a bonded
//! link spreading one flow over two paths of different delay never delivers a packet
//! twice, and delivers in order once it has measured the paths.

mod sim;

use proptest::prelude::*;
use sim::{Pair, Side, Wire, addr, config, packet};
use std::time::Duration;

fn spread_pair(seed: u64, fast_ms: u64, slow_ms: u64, jitter_ms: u64, duplicate: f64) -> Pair {
    let mut a = config(1, 2, Some(addr("192.0.2.2:51002")), seed);
    a.paths = vec![braid_bond::PathSpec::default(); 2];
    a.scheduler = braid_bond::Scheduler::RoundRobin;
    let b = config(2, 1, None, seed + 1);
    let mut pair = Pair::new(a, b, seed);
    for (i, ms) in [fast_ms, slow_ms].into_iter().enumerate() {
        let wire = Wire {
            jitter: Duration::from_millis(jitter_ms),
            duplicate,
            ..Wire::delay_ms(ms)
        };
        pair.wires.insert(pair.a.paths[i], wire);
    }
    pair
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn no_packet_is_delivered_twice(
        seed in 1u64..1_000_000,
        fast in 1u64..30,
        slow in 1u64..60,
        jitter in 0u64..20,
        duplicate in 0.0f64..0.3,
    ) {
        let mut pair = spread_pair(seed, fast, slow, jitter, duplicate);
        pair.run_for(Duration::from_secs(1));
        pair.stream(Side::A, 0, Duration::from_millis(2), Duration::from_secs(1));
        pair.run_for(Duration::from_secs(1));
        let mut seen = std::collections::HashSet::new();
        for id in &pair.b.delivered {
            prop_assert!(seen.insert(*id), "packet {} delivered twice", id);
        }
        prop_assert_eq!(seen.len(), 500);
    }

    #[test]
    fn order_is_restored_when_the_delay_spread_is_within_the_wait(
        seed in 1u64..1_000_000,
        fast in 1u64..40,
        extra in 0u64..60,
    ) {
        let mut pair = spread_pair(seed, fast, fast + extra, 0, 0.0);
        // Probes measure both paths first.
        pair.run_for(Duration::from_secs(2));
        let before = pair.b.delivered.len();
        pair.stream(Side::A, 0, Duration::from_millis(2), Duration::from_secs(1));
        pair.run_for(Duration::from_secs(1));
        let got = &pair.b.delivered[before..];
        prop_assert_eq!(got.len(), 500);
        prop_assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {:?}", got);
    }
}

#[test]
fn packets_cross_a_bond_with_one_path_a_hundred_times_slower() {
    let mut pair = spread_pair(9, 1, 100, 0, 0.0);
    pair.run_for(Duration::from_secs(2));
    for id in 0..100 {
        pair.send(Side::A, &packet(id, 200, 1));
        pair.run_for(Duration::from_millis(1));
    }
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.b.delivered.len(), 100);
}
