//! Bonding real-looking uplinks, in the simulator: TCP bulk flows over unequal paths with
//! delay, jitter and loss (issue 16, section 3's cases), against the same paths alone.
//! Every number printed here is a simulation (`tests/sim`), not a lab measurement.
//!
//! `cargo test --release -p braid-bond --test uplinks -- --nocapture --test-threads 1`
//! prints the table recorded in BENCHMARKS.md.

mod sim;

use braid_bond::{BondConfig, PathSpec, Scheduler};
use sim::{LinkSpec, Side, Sim};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

/// One direction-pair of a path: A to B (the data direction), B to A (the ACKs).
type Link = (LinkSpec, LinkSpec);

fn fibre() -> Link {
    let l = LinkSpec::new(300, 5).queue_ms(20);
    (l, l)
}

/// DSL 50/10 Mbit/s, 20 ms, a 50 ms queue; the data goes the fast way.
fn dsl() -> Link {
    dsl_queue(50)
}

fn dsl_queue(ms: u64) -> Link {
    (
        LinkSpec::new(50, 20).queue_ms(ms),
        LinkSpec::new(10, 20).queue_ms(ms),
    )
}

/// LTE 30 Mbit/s, 50 ± 15 ms, 0.5% loss each way.
fn lte() -> Link {
    let l = LinkSpec::new(30, 35)
        .jitter_ms(30)
        .loss(0.005)
        .queue_ms(100);
    (l, l)
}

/// GEO satellite 20 Mbit/s, 600 ms round trip (300 ms each way).
fn geo() -> Link {
    let l = LinkSpec::new(20, 300).queue_ms(100);
    (l, l)
}

/// A wired path with a 20 ms queue (a tbf's latency, like the lab's) and a trace of
/// jitter (0-0.5 ms), so runs with different seeds differ.
fn plain(mbit: u64, delay_ms: u64) -> Link {
    let l = LinkSpec::new(mbit, delay_ms).queue_ms(20);
    let l = LinkSpec {
        jitter: Duration::from_micros(500),
        ..l
    };
    (l, l)
}

/// What one run measured.
#[derive(Debug, Clone)]
struct Run {
    /// TCP goodput over the measured span, all flows, Mbit/s.
    mbps: f64,
    /// Share of data bytes per path (A's sends).
    share: Vec<f64>,
    retransmits: u64,
    spurious: u64,
    recoveries: u64,
    timeouts: u64,
    /// Packets the receiver's reorder buffer held, released after the wait, and late;
    /// the wait (mean of samples every 0.5 s).
    held: u64,
    waited: u64,
    late: u64,
    wait_ms: f64,
    /// Median and 95th percentile ping RTT during the transfer, ms.
    ping: Option<(f64, f64)>,
    /// With a cut: data bytes per path sent during it, and Mbit/s delivered during it.
    during_cut: Option<(Vec<u64>, f64)>,
    /// Answered pings: when sent (s after the transfer started) and the round trip (ms).
    pings: Vec<(f64, f64)>,
}

/// A path cut in both directions from `from` to `to` s after the transfer starts.
#[derive(Debug, Clone, Copy)]
struct Cut {
    path: usize,
    from: u64,
    to: u64,
}

fn cfg(s: Scheduler) -> BondConfig {
    BondConfig {
        scheduler: Some(s),
        ..BondConfig::default()
    }
}

/// `flows` TCP flows from A to B over `links` for `secs` (after 1 s of probes), pings
/// every 10 ms alongside when `ping`.
fn run(links: &[Link], s: Scheduler, flows: usize, secs: u64, ping: bool, seed: u64) -> Run {
    run_cut(links, s, flows, secs, ping, seed, None)
}

fn run_cut(
    links: &[Link],
    s: Scheduler,
    flows: usize,
    secs: u64,
    ping: bool,
    seed: u64,
    cut: Option<Cut>,
) -> Run {
    let specs: Vec<_> = links
        .iter()
        .map(|(ab, ba)| (PathSpec::default(), *ab, *ba))
        .collect();
    let mut sim = Sim::new(cfg(s), BondConfig::default(), &specs, seed);
    // Probes bring the paths up; a trickle lets B learn them.
    let (s0, e0) = (sim.now, sim.now + 1000 * MS);
    sim.stream(Side::A, 1, 100, 20 * MS, (s0, e0));
    sim.run_until(e0);
    let start = sim.now;
    let end = start + Duration::from_secs(secs);
    for k in 0..flows {
        sim.tcp_flow(6000 + k as u16, start, end);
    }
    if ping {
        sim.ping(10 * MS, (start + 2000 * MS, end));
    }
    let before = sim.a.data_bytes.clone();
    let since_t0 = |t: std::time::Instant, sim: &Sim| (t - sim.t0).as_millis() as u64;
    if let Some(c) = cut {
        let at = since_t0(start, &sim);
        sim.cut(c.path, at + c.from * 1000, at + c.to * 1000);
    }
    let delivered_now = |sim: &Sim| -> u64 {
        sim.tcp
            .iter()
            .map(|f| f.receiver.stats.delivered_bytes)
            .sum()
    };
    let mut at_cut = None;
    let mut during_cut = None;
    let mut t = start;
    let mut waits = Vec::new();
    while t < end {
        t += 500 * MS;
        sim.run_until(t);
        if let Some(c) = cut {
            let into = (t - start).as_millis() as u64;
            if into == c.from * 1000 {
                at_cut = Some((sim.a.data_bytes.clone(), delivered_now(&sim)));
            }
            if into == c.to * 1000
                && let Some((bytes, delivered)) = at_cut.take()
            {
                let sent: Vec<u64> = sim
                    .a
                    .data_bytes
                    .iter()
                    .zip(&bytes)
                    .map(|(a, b)| a - b)
                    .collect();
                let mbps =
                    (delivered_now(&sim) - delivered) as f64 * 8.0 / (c.to - c.from) as f64 / 1e6;
                during_cut = Some((sent, mbps));
            }
        }
        waits.push(sim.b.bond.status(sim.now).reorder.wait_ms);
        if std::env::var("SIM_TRACE").is_ok() {
            let st = sim.a.bond.status(sim.now);
            for p in &st.paths {
                println!(
                    "  t={:?} path {} cap {:?} rate {:.1} queue {:.1} ms arrival {:?} delay {:?} jit {:.1} loss {:.4} rep {} ex {:?} rtt {:?}",
                    sim.now - start,
                    p.id,
                    p.capacity_bps.map(|c| (c / 1e6).round()),
                    p.rate_bps / 1e6,
                    p.queue_ms,
                    p.arrival_ms,
                    p.send_delay_ms,
                    p.send_jitter_ms,
                    p.send_loss,
                    p.repeating,
                    p.excluded,
                    p.rtt_ms
                );
            }
            let r = sim.b.bond.status(sim.now).reorder;
            println!(
                "  B wait {:.1} ms observed {:.1} ms {:?}",
                r.wait_ms, r.observed_ms, r.counters
            );
            let r = sim.a.bond.status(sim.now).reorder;
            println!(
                "  A wait {:.1} ms observed {:.1} ms {:?}",
                r.wait_ms, r.observed_ms, r.counters
            );
            let cw: Vec<String> = sim
                .tcp
                .iter()
                .map(|f| format!("{:.0}/{}", f.sender.cwnd, f.receiver.stats.delivered_bytes))
                .collect();
            println!("  tcp cwnd/delivered {cw:?}");
        }
    }
    sim.run_until(end + 500 * MS);
    let bytes: Vec<f64> = sim
        .a
        .data_bytes
        .iter()
        .zip(&before)
        .map(|(a, b)| (a - b) as f64)
        .collect();
    let total: f64 = bytes.iter().sum::<f64>().max(1.0);
    let delivered: u64 = sim
        .tcp
        .iter()
        .map(|f| f.receiver.stats.delivered_bytes)
        .sum();
    let st = |f: fn(&sim::tcp::TcpStats) -> u64| -> u64 {
        sim.tcp
            .iter()
            .map(|t| f(&t.sender.stats) + f(&t.receiver.stats))
            .sum()
    };
    let reorder = sim.b.bond.status(sim.now).reorder;
    let ping = (!sim.pings.is_empty()).then(|| {
        let mut rtts: Vec<f64> = sim
            .pings
            .iter()
            .map(|(s, r)| (*r - *s).as_secs_f64() * 1e3)
            .collect();
        rtts.sort_by(f64::total_cmp);
        (rtts[rtts.len() / 2], rtts[rtts.len() * 95 / 100])
    });
    Run {
        mbps: delivered as f64 * 8.0 / secs as f64 / 1e6,
        share: bytes.iter().map(|b| b / total).collect(),
        retransmits: st(|s| s.retransmits),
        spurious: st(|s| s.spurious),
        recoveries: st(|s| s.recoveries),
        timeouts: st(|s| s.timeouts),
        held: reorder.counters.held,
        waited: reorder.counters.released_after_wait,
        late: reorder.counters.released_late,
        wait_ms: waits.iter().sum::<f64>() / waits.len().max(1) as f64,
        ping,
        during_cut,
        pings: sim
            .pings
            .iter()
            .map(|(s, r)| {
                (
                    s.saturating_duration_since(start).as_secs_f64(),
                    (*r - *s).as_secs_f64() * 1e3,
                )
            })
            .collect(),
    }
}

fn show(name: &str, r: &Run) {
    let share: Vec<String> = r
        .share
        .iter()
        .map(|s| format!("{:.0}%", s * 100.0))
        .collect();
    println!(
        "{name}: {:.1} Mbit/s, share {}, retransmits {} (spurious {}), recoveries {}, RTOs {}, \
         reorder held {} waited-out {} late {} wait {:.1} ms{}",
        r.mbps,
        share.join(":"),
        r.retransmits,
        r.spurious,
        r.recoveries,
        r.timeouts,
        r.held,
        r.waited,
        r.late,
        r.wait_ms,
        r.ping
            .map(|(m, p)| format!(", ping RTT median {m:.1} ms p95 {p:.1} ms"))
            .unwrap_or_default()
    );
}

fn secs() -> u64 {
    std::env::var("SIM_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

fn seeds() -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Mean and minimum goodput of runs.
fn spread(runs: &[Run]) -> (f64, f64) {
    let mean = runs.iter().map(|r| r.mbps).sum::<f64>() / runs.len() as f64;
    let min = runs.iter().map(|r| r.mbps).fold(f64::INFINITY, f64::min);
    (mean, min)
}

/// The bonded runs (one per seed) against each path alone with the same seeds: prints
/// them, returns (bonded runs, per path the runs alone).
fn compare(
    name: &str,
    links: &[Link],
    s: Scheduler,
    flows: usize,
    ping: bool,
) -> (Vec<Run>, Vec<Vec<Run>>) {
    let n = secs();
    let seeds = 1..=seeds();
    let bonded: Vec<Run> = seeds
        .clone()
        .map(|seed| run(links, s, flows, n, ping, seed))
        .collect();
    let alone: Vec<Vec<Run>> = links
        .iter()
        .map(|l| {
            seeds
                .clone()
                .map(|seed| run(std::slice::from_ref(l), s, flows, n, ping, seed))
                .collect()
        })
        .collect();
    let means: Vec<f64> = alone.iter().map(|r| spread(r).0).collect();
    let best = means.iter().copied().fold(0.0, f64::max);
    let sum: f64 = means.iter().sum();
    let (mean, min) = spread(&bonded);
    println!(
        "== {name}, {s:?}, {flows} flow(s), {n} s, {} seed(s): bonded {mean:.1} Mbit/s (min {min:.1}) = {:.0}% of the sum of the paths alone ({sum:.1}), {:.0}% of the best alone ({best:.1})",
        bonded.len(),
        100.0 * mean / sum,
        100.0 * mean / best
    );
    for (k, r) in bonded.iter().enumerate() {
        show(&format!("   bonded, seed {}", k + 1), r);
    }
    for (i, runs) in alone.iter().enumerate() {
        show(&format!("   path {i} alone, seed 1"), &runs[0]);
    }
    (bonded, alone)
}

/// The table in BENCHMARKS.md (a few minutes in a debug build):
/// `cargo test --release -p braid-bond --test uplinks -- --ignored --nocapture`, with
/// `SIM_SEEDS`, `SIM_SECS` and `SIM_ONLY` (a, aw, b, bw, b2, c, e8, f) to choose.
#[test]
#[ignore]
fn scenarios() {
    let only = std::env::var("SIM_ONLY").unwrap_or_default();
    let want = |k: &str| only.is_empty() || only.split(',').any(|o| o == k);
    if want("a") {
        compare(
            "300+100 equal delay",
            &[plain(300, 10), plain(100, 10)],
            Scheduler::EarliestArrival,
            1,
            false,
        );
    }
    if want("aw") {
        compare(
            "300+100 equal delay",
            &[plain(300, 10), plain(100, 10)],
            Scheduler::Weighted,
            1,
            false,
        );
    }
    if want("b") {
        compare(
            "DSL+LTE",
            &[dsl(), lte()],
            Scheduler::EarliestArrival,
            1,
            false,
        );
    }
    if want("bw") {
        compare("DSL+LTE", &[dsl(), lte()], Scheduler::Weighted, 1, false);
    }
    if want("b2") {
        compare(
            "DSL (150 ms queue)+LTE",
            &[dsl_queue(150), lte()],
            Scheduler::EarliestArrival,
            1,
            false,
        );
    }
    if want("c") {
        compare(
            "fibre+GEO",
            &[fibre(), geo()],
            Scheduler::EarliestArrival,
            1,
            true,
        );
    }
    if want("e8") {
        compare(
            "300+100 equal delay",
            &[plain(300, 10), plain(100, 10)],
            Scheduler::EarliestArrival,
            8,
            false,
        );
        compare(
            "DSL+LTE",
            &[dsl(), lte()],
            Scheduler::EarliestArrival,
            8,
            false,
        );
    }
    if want("f") {
        compare(
            "300+100 equal delay",
            &[plain(300, 10), plain(100, 10)],
            Scheduler::Flow,
            8,
            false,
        );
        compare("DSL+LTE", &[dsl(), lte()], Scheduler::Flow, 8, false);
        compare("fibre+GEO", &[fibre(), geo()], Scheduler::Flow, 8, false);
    }
}

/// The lab benchmark's ceiling: what the best path alone carries of its rate, applied to
/// the sum of the rates (bench/bond.py).
fn ceiling(alone_best: f64, best_rate: f64, sum_rates: f64) -> f64 {
    alone_best / best_rate * sum_rates
}

#[test]
fn unequal_300_and_100_one_stream_reaches_85_percent_of_the_ceiling() {
    let links = [plain(300, 10), plain(100, 10)];
    let alone = run(&links[..1], Scheduler::EarliestArrival, 1, 8, false, 1);
    let top = ceiling(alone.mbps, 300.0, 400.0);
    for s in [Scheduler::EarliestArrival, Scheduler::Weighted] {
        let r = run(&links, s, 1, 8, false, 1);
        show(&format!("300+100 {s:?}"), &r);
        println!("   {:.0}% of the ceiling {top:.1}", 100.0 * r.mbps / top);
        assert!(r.mbps >= 0.85 * top, "{s:?}: {} of {top}", r.mbps);
        // Split by capacity, 3 : 1.
        assert!((0.70..0.82).contains(&r.share[0]), "{s:?}: {:?}", r.share);
        assert_eq!(r.timeouts, 0);
    }
}

#[test]
fn a_lossy_jittery_lte_never_makes_the_bond_slower_than_the_dsl_alone() {
    let links = [dsl(), lte()];
    let alone = run(&links[..1], Scheduler::EarliestArrival, 1, 8, false, 1);
    let bonded = run(&links, Scheduler::EarliestArrival, 1, 8, false, 1);
    show("DSL+LTE", &bonded);
    show("DSL alone", &alone);
    assert!(
        bonded.mbps >= 0.97 * alone.mbps,
        "{} < {}",
        bonded.mbps,
        alone.mbps
    );
}

#[test]
fn the_satellite_is_left_out_while_the_fibre_is_up_and_carries_the_link_when_it_is_cut() {
    let links = [fibre(), geo()];
    let alone = run(&links[..1], Scheduler::EarliestArrival, 1, 8, true, 1);
    let bonded = run(&links, Scheduler::EarliestArrival, 1, 8, true, 1);
    show("fibre+GEO", &bonded);
    show("fibre alone", &alone);
    assert!(bonded.mbps >= 0.97 * alone.mbps);
    // The satellite carries no data (probes are not counted here).
    assert!(bonded.share[1] < 0.001, "{:?}", bonded.share);
    let (b, a) = (bonded.ping.unwrap(), alone.ping.unwrap());
    assert!(b.0 <= a.0 + 10.0, "ping median {} vs {}", b.0, a.0);
    // The fibre cut both ways for 4 s: the satellite carries the link meanwhile. Pings
    // sent from 0.5 s into the cut to 1 s before its end (so their answers come back
    // before it ends) are answered over it, in about its 600 ms.
    let cut = Cut {
        path: 0,
        from: 3,
        to: 7,
    };
    let r = run_cut(
        &links,
        Scheduler::EarliestArrival,
        1,
        10,
        true,
        1,
        Some(cut),
    );
    let (sent, mbps) = r.during_cut.clone().unwrap();
    show("fibre+GEO, fibre cut 3-7 s", &r);
    let window = (3.5, 6.0);
    let answered: Vec<f64> = r
        .pings
        .iter()
        .filter(|(s, _)| (window.0..window.1).contains(s))
        .map(|(_, rtt)| *rtt)
        .collect();
    let expected = ((window.1 - window.0) / 0.01) as usize;
    println!(
        "   during the cut: data bytes per path {sent:?}, TCP {mbps:.1} Mbit/s; pings answered {} of {expected}, shortest RTT {:.1} ms",
        answered.len(),
        answered.iter().copied().fold(f64::INFINITY, f64::min)
    );
    assert!(answered.len() * 100 >= expected * 99, "{}", answered.len());
    assert!(answered.iter().all(|rtt| (590.0..800.0).contains(rtt)));
    assert!(sent[1] > 0, "{sent:?}");
    // Afterwards the fibre carries it again: pings at the fibre's RTT.
    let after: Vec<f64> = r
        .pings
        .iter()
        .filter(|(s, _)| *s > 8.5)
        .map(|(_, rtt)| *rtt)
        .collect();
    assert!(
        !after.is_empty() && after.iter().all(|rtt| *rtt < 100.0),
        "{after:?}"
    );
}

#[test]
fn eight_flows_with_the_flow_scheduler_fill_300_and_100() {
    let links = [plain(300, 10), plain(100, 10)];
    let alone = run(&links[..1], Scheduler::Flow, 8, 6, false, 1);
    let top = ceiling(alone.mbps, 300.0, 400.0);
    let r = run(&links, Scheduler::Flow, 8, 6, false, 1);
    show("300+100 flow, 8 flows", &r);
    assert!(r.mbps >= 0.9 * top, "{} of {top}", r.mbps);
}
