//! Properties of the reorder buffer under arbitrary arrival orders, duplicates,
//! timeouts and session changes.

use braid_bond::reorder::{ReorderBuffer, ReorderConfig, Verdict};
use proptest::prelude::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
enum Op {
    /// Push counter `base + offset` of the current session.
    Push(u16),
    /// Let time pass (ms), then handle timeouts.
    Wait(u8),
    /// Switch to a new session.
    NewSession,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u16..300).prop_map(Op::Push),
        2 => (0u8..30).prop_map(Op::Wait),
        1 => Just(Op::NewSession),
    ]
}

fn run(ops: &[Op], cfg: ReorderConfig) -> Result<(), TestCaseError> {
    let t0 = Instant::now();
    let mut now = t0;
    let mut b = ReorderBuffer::new(cfg, true, Duration::from_millis(10));
    let mut session = 1u32;
    let mut released: Vec<(u32, u64)> = vec![];
    let mut late: HashSet<(u32, u64)> = HashSet::new();
    let before = |b: &ReorderBuffer| b.counters().released_late;
    for op in ops {
        match op {
            Op::Push(c) => {
                let c = u64::from(*c);
                let late_before = before(&b);
                let v = b.push(session, c, &c.to_le_bytes(), now);
                if before(&b) > late_before {
                    late.insert((session, c));
                }
                if v == Verdict::Deliver {
                    released.push((session, c));
                }
            }
            Op::Wait(ms) => {
                now += Duration::from_millis(u64::from(*ms));
                b.handle_timeout(now);
            }
            Op::NewSession => session += 1,
        }
        while let Some(r) = b.pop() {
            prop_assert_eq!(r.packet, r.counter.to_le_bytes().to_vec());
            released.push((r.session, r.counter));
        }
        prop_assert!(b.buffered_len() <= cfg.max_packets);
        prop_assert!(b.buffered_bytes() <= cfg.max_bytes);
        // After timeouts are handled, nothing is overdue.
        if matches!(op, Op::Wait(_)) {
            prop_assert!(b.poll_timeout().is_none_or(|d| d > now));
        }
    }
    // Never twice.
    let mut seen = HashSet::new();
    for r in &released {
        prop_assert!(seen.insert(*r), "released twice: {:?}", r);
    }
    // In increasing order within a session, apart from packets counted as late.
    let mut last: Option<(u32, u64)> = None;
    for r in released.iter().filter(|r| !late.contains(r)) {
        if let Some((s, c)) = last
            && s == r.0
        {
            prop_assert!(r.1 > c, "{:?} after {:?}", r, (s, c));
        }
        last = Some(*r);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_twice_in_order_and_bounded(ops in prop::collection::vec(op(), 1..400)) {
        run(&ops, ReorderConfig { max_packets: 32, max_bytes: 32 * 8, deliver_late: true })?;
    }

    #[test]
    fn strict_mode_releases_only_in_order(ops in prop::collection::vec(op(), 1..400)) {
        let cfg = ReorderConfig { max_packets: 16, max_bytes: 1 << 20, deliver_late: false };
        run(&ops, cfg)?;
    }

    #[test]
    fn everything_pushed_once_comes_out_when_waited_for(
        order in Just((0u64..200).collect::<Vec<_>>()).prop_shuffle()
    ) {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(ReorderConfig::default(), true, Duration::from_millis(10));
        let mut out = vec![];
        for c in &order {
            if b.push(3, *c, &[], t) == Verdict::Deliver {
                out.push(*c);
            }
            while let Some(r) = b.pop() {
                out.push(r.counter);
            }
        }
        // All 200 arrived within the wait: released complete and in order.
        prop_assert_eq!(out, (0u64..200).collect::<Vec<_>>());
    }
}
