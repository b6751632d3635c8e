//! Link quality into the routing metric (issue 13): braid's measured loss raises a lossy
//! link's Babel cost, so traffic takes a clean detour before the link dies, and comes
//! back when the loss is gone. Decided here only, from `now` and each link's loss samples
//! (no I/O); babeld and BIRD are told the cost in `supervisor` (`babel`, `bird`).
//!
//! The samples are the links' keepalive loss (`keepalive_loss`: the share of the peer's
//! liveness keepalives missing over the last 10 s, `braid_link::liveness`), one look at most
//! every [`SAMPLE_EVERY`]. A link is **lossy** when the mean of its samples of the last
//! [`WINDOW`] is [`ENTER`] or more (or one sample is [`ENTER_AT_ONCE`] or more), and clean
//! again when that mean is below [`LEAVE`]. Hysteresis, because every change of a link's
//! cost makes babeld drop the link's routes for a moment (see docs/routing.md).
//!
//! What it sets is the link's Babel `rxcost` (RFC 8966, section 3.4.3 and appendix A): the
//! cost this node advertises for *receiving* over the link, in its IHUs. The loss braid
//! measures is exactly that direction (from the peer to this node), and the peer adds it
//! to every route it learns over the link (with `link-quality false`, babeld's cost of a
//! neighbour is the rxcost the neighbour advertises, plus the RTT cost; BIRD's on a wired
//! interface alike). Why a fixed penalty and not ETX (appendix A.2.2, cost 256/(α·β)):
//! ETX charges for link-layer retransmissions, and at 5 % loss it raises a link's cost by
//! about 10 %, never above a two-hop detour's. An overlay link retransmits nothing: loss
//! goes straight to the transport, and TCP's rate falls as 1/√p (Mathis et al., 1997), to a
//! few segments per round trip at 5 %, whatever the link's capacity. So a lossy link costs
//! [`LOSSY_RXCOST`]: as much as 32 clean links, or a clean one with a round trip of about a
//! second (babeld's RTT cost, with braid's `max-rtt-penalty 1024 rtt-max 1024`, adds about
//! 1 per millisecond of round trip above 10 ms); a lossy link with no detour still carries
//! the traffic. Why that much: a detour is usually not *feasible* at first (its metric is
//! not below the one this node announced, RFC 8966 section 3.5.1), and babeld asks the
//! route's source for a new sequence number, which makes it feasible, only when the route
//! it has is worse than the detour by 512 or more (`send_unfeasible_request` in babeld
//! 1.12's route.c). Measured: with 256, node 1 stayed on the lossy link (metric 256)
//! beside unfeasible detours of metric 64 for as long as the loss lasted.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// The `rxcost` of a clean link (RAIT's tunnel cost, written into babeld's and BIRD's
/// per-link parameters).
pub const NORMAL_RXCOST: u16 = 32;
/// The `rxcost` of a lossy link: 32 times a clean link's, so that it exceeds a detour's
/// metric by 512 or more, babeld's condition for switching to it (see the module's text).
pub const LOSSY_RXCOST: u16 = 32 * NORMAL_RXCOST;
/// The mean loss over [`WINDOW`] at which a link becomes lossy. A clean link reads 0 %
/// (lab: at most 0.5 % in any 10 s), a link with 5 % loss 2-8 % in 10 s and about 5 ± 2 %
/// over 30 s (BENCHMARKS.md, issue 13).
pub const ENTER: f64 = 0.03;
/// One sample (10 s of keepalives) at or above this makes a link lossy at once: heavy loss
/// is routed around in about 10 s instead of 20-25 s. No clean link comes near it.
pub const ENTER_AT_ONCE: f64 = 0.2;
/// The mean loss over [`WINDOW`] below which a lossy link is clean again.
pub const LEAVE: f64 = 0.015;
/// The loss is judged over the samples of this long (each covering the 10 s before it,
/// so 40 s of keepalives in all, 150-200 of them at braid's default 200 ms).
pub const WINDOW: Duration = Duration::from_secs(30);
/// The samples must reach back this far into [`WINDOW`] before a mean is judged (with the
/// 10 s each sample covers, 30 s of keepalives): the first look at a link decides nothing.
pub const MIN_SPAN: Duration = Duration::from_secs(20);
/// At most one sample per link this often; looks in between are ignored.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Why a link has the cost it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CostReason {
    /// Measured, and below the loss that makes it lossy.
    Clean,
    /// Measured lossy: [`LOSSY_RXCOST`].
    Lossy,
    /// Not measured (yet): no keepalive loss from this link (a peer without braid's
    /// liveness, a bonded link, the first 20-30 s), so the normal cost.
    Unmeasured,
}

impl CostReason {
    /// The reason as the status document and the metrics name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Clean => "clean",
            Self::Lossy => "lossy",
            Self::Unmeasured => "unmeasured",
        }
    }
}

/// A link's routing cost as braid set it (`routing_cost` in the status document).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoutingCost {
    /// The Babel `rxcost` braid gives babeld or BIRD for the link.
    pub rxcost: u16,
    /// Why: `clean`, `lossy` or `unmeasured`.
    pub reason: CostReason,
    /// The mean of the link's keepalive loss samples over [`WINDOW`] (0..1), when there
    /// are any.
    pub loss: Option<f64>,
}

/// One link's samples and state.
#[derive(Debug, Clone, Default)]
struct Link {
    /// (when, keepalive loss), oldest first, at most [`WINDOW`] old.
    samples: VecDeque<(Instant, f64)>,
    lossy: bool,
}

impl Link {
    fn forget_before(&mut self, now: Instant) {
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > WINDOW)
        {
            self.samples.pop_front();
        }
    }

    fn mean(&self) -> Option<f64> {
        (!self.samples.is_empty())
            .then(|| self.samples.iter().map(|(_, l)| l).sum::<f64>() / self.samples.len() as f64)
    }

    /// The mean, when the samples reach back [`MIN_SPAN`].
    fn judged_mean(&self, now: Instant) -> Option<f64> {
        let oldest = self.samples.front()?.0;
        (now.saturating_duration_since(oldest) >= MIN_SPAN)
            .then(|| self.mean())
            .flatten()
    }

    /// Takes a sample (or none: not measured now) and decides again.
    fn observe(&mut self, now: Instant, loss: Option<f64>) {
        self.forget_before(now);
        if let Some(loss) = loss.filter(|l| l.is_finite()).map(|l| l.clamp(0.0, 1.0))
            && self
                .samples
                .back()
                .is_none_or(|(t, _)| now.saturating_duration_since(*t) >= SAMPLE_EVERY)
        {
            self.samples.push_back((now, loss));
            if loss >= ENTER_AT_ONCE {
                self.lossy = true;
            }
        }
        match self.judged_mean(now) {
            Some(mean) if mean >= ENTER => self.lossy = true,
            Some(mean) if mean < LEAVE => self.lossy = false,
            // Between the two: as it was. Without samples for a whole window (the peer
            // stopped its keepalives, or the link keeps dying): clean, unmeasured.
            Some(_) => {}
            None if self.samples.is_empty() => self.lossy = false,
            None => {}
        }
    }

    fn cost(&self) -> RoutingCost {
        let loss = self.mean();
        let (rxcost, reason) = match (self.lossy, loss) {
            (true, _) => (LOSSY_RXCOST, CostReason::Lossy),
            (false, Some(_)) => (NORMAL_RXCOST, CostReason::Clean),
            (false, None) => (NORMAL_RXCOST, CostReason::Unmeasured),
        };
        RoutingCost {
            rxcost,
            reason,
            loss,
        }
    }
}

/// The routing cost of every link (pure: fed `now` and the links' loss).
#[derive(Debug, Clone, Default)]
pub struct LinkCosts {
    links: BTreeMap<String, Link>,
}

impl LinkCosts {
    /// One look at every link braid runs: each link's keepalive loss now (`None`: not
    /// measured). Links not in the look are forgotten. Returns whether a link's `rxcost`
    /// changed (the routing daemon must be told).
    pub fn observe<'a>(
        &mut self,
        now: Instant,
        looks: impl IntoIterator<Item = (&'a str, Option<f64>)>,
    ) -> bool {
        let before = self.rxcosts();
        let mut seen = BTreeMap::new();
        for (name, loss) in looks {
            let mut link = self.links.remove(name).unwrap_or_default();
            link.observe(now, loss);
            seen.insert(name.to_string(), link);
        }
        self.links = seen;
        self.rxcosts() != before
    }

    /// A link's cost as braid sets it (the normal cost for a link it does not know).
    pub fn cost(&self, link: &str) -> RoutingCost {
        self.links.get(link).map_or(
            RoutingCost {
                rxcost: NORMAL_RXCOST,
                reason: CostReason::Unmeasured,
                loss: None,
            },
            Link::cost,
        )
    }

    /// The links whose `rxcost` is not [`NORMAL_RXCOST`], with theirs.
    pub fn rxcosts(&self) -> BTreeMap<String, u16> {
        self.links
            .iter()
            .map(|(name, link)| (name.clone(), link.cost().rxcost))
            .filter(|(_, c)| *c != NORMAL_RXCOST)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `samples` one second apart from `t`, returns the time after the last.
    fn feed(costs: &mut LinkCosts, t: &mut Instant, samples: &[f64]) {
        for &s in samples {
            *t += Duration::from_secs(1);
            costs.observe(*t, [("brd4x1", Some(s))]);
        }
    }

    #[test]
    fn five_percent_loss_makes_a_link_lossy_and_its_end_clean_again() {
        let mut c = LinkCosts::default();
        let mut t = Instant::now();
        feed(&mut c, &mut t, &[0.0; 40]);
        assert_eq!(c.cost("brd4x1").reason, CostReason::Clean);
        assert!(c.rxcosts().is_empty());
        // 5 % loss begins: the 10 s samples ramp up over 10 s, then read 3-7 %.
        let ramp: Vec<f64> = (1..=10).map(|k| 0.005 * f64::from(k)).collect();
        feed(&mut c, &mut t, &ramp);
        assert_eq!(c.cost("brd4x1").reason, CostReason::Clean, "not yet");
        let mut entered = None;
        for k in 0..30 {
            feed(&mut c, &mut t, &[[0.03, 0.07, 0.05][k % 3]]);
            if entered.is_none() && c.cost("brd4x1").reason == CostReason::Lossy {
                entered = Some(10 + k + 1);
            }
        }
        let entered = entered.expect("lossy");
        assert!((15..=25).contains(&entered), "lossy after {entered} s");
        assert_eq!(c.rxcosts().get("brd4x1"), Some(&LOSSY_RXCOST));
        // The loss ends: the samples ramp down over 10 s, then read 0.
        let mut left = None;
        for k in 0..40 {
            let s = (0.05 - 0.005 * k as f64).max(0.0);
            feed(&mut c, &mut t, &[s]);
            if left.is_none() && c.cost("brd4x1").reason == CostReason::Clean {
                left = Some(k + 1);
            }
        }
        let left = left.expect("clean again");
        assert!((18..=30).contains(&left), "clean after {left} s");
        assert!(c.rxcosts().is_empty());
    }

    #[test]
    fn heavy_loss_is_lossy_at_once() {
        let mut c = LinkCosts::default();
        let mut t = Instant::now();
        feed(&mut c, &mut t, &[0.0, 0.0, 0.25]);
        assert_eq!(c.cost("brd4x1").rxcost, LOSSY_RXCOST);
    }

    #[test]
    fn the_first_looks_decide_nothing_and_unmeasured_links_keep_the_normal_cost() {
        let mut c = LinkCosts::default();
        let t = Instant::now();
        assert!(!c.observe(t, [("brd4x1", Some(0.1)), ("brd4x2", None)]));
        assert_eq!(c.cost("brd4x1").reason, CostReason::Clean);
        assert_eq!(c.cost("brd4x2").reason, CostReason::Unmeasured);
        assert_eq!(c.cost("other").rxcost, NORMAL_RXCOST);
        // Looks closer together than SAMPLE_EVERY are one sample.
        let mut t2 = t;
        for _ in 0..100 {
            t2 += Duration::from_millis(100);
            c.observe(t2, [("brd4x1", Some(0.1))]);
        }
        assert_eq!(c.links["brd4x1"].samples.len(), 1 + 10);
    }

    #[test]
    fn a_lossy_link_without_samples_for_a_window_is_unmeasured_and_a_gone_link_forgotten() {
        let mut c = LinkCosts::default();
        let mut t = Instant::now();
        feed(&mut c, &mut t, &[0.1; 25]);
        assert_eq!(c.cost("brd4x1").reason, CostReason::Lossy);
        // The link died: no samples for 10 s, still lossy.
        for _ in 0..10 {
            t += Duration::from_secs(1);
            c.observe(t, [("brd4x1", None)]);
        }
        assert_eq!(c.cost("brd4x1").reason, CostReason::Lossy);
        for _ in 0..25 {
            t += Duration::from_secs(1);
            c.observe(t, [("brd4x1", None)]);
        }
        assert_eq!(c.cost("brd4x1").reason, CostReason::Unmeasured);
        feed(&mut c, &mut t, &[0.1; 25]);
        assert!(c.observe(t + Duration::from_secs(1), [("brd4x2", Some(0.0))]));
        assert!(c.rxcosts().is_empty(), "brd4x1 is gone");
    }

    proptest! {
        /// A clean link's noise (0-2 % in every sample, any timing of the looks) never
        /// makes it lossy.
        #[test]
        fn noise_up_to_two_percent_never_flips_a_clean_link(
            looks in prop::collection::vec((0u64..3000, prop::option::of(0.0f64..=0.02)), 1..400)
        ) {
            let mut c = LinkCosts::default();
            let mut t = Instant::now();
            for (gap_ms, loss) in looks {
                t += Duration::from_millis(gap_ms);
                prop_assert!(!c.observe(t, [("brd4x1", loss)]));
                prop_assert_ne!(c.cost("brd4x1").reason, CostReason::Lossy);
            }
        }

        /// Samples of 3-8 % (5 % loss and its noise) for a window make a link lossy, and
        /// samples of 1.6-8 % keep it so (hysteresis: no flapping at 5 %).
        #[test]
        fn five_percent_and_its_noise_is_lossy_and_stays_so(
            enter in prop::collection::vec(0.03f64..=0.08, 21..40),
            stay in prop::collection::vec(0.016f64..=0.08, 1..200),
        ) {
            let mut c = LinkCosts::default();
            let mut t = Instant::now();
            feed(&mut c, &mut t, &enter);
            prop_assert_eq!(c.cost("brd4x1").reason, CostReason::Lossy);
            for s in stay {
                feed(&mut c, &mut t, &[s]);
                prop_assert_eq!(c.cost("brd4x1").rxcost, LOSSY_RXCOST);
            }
            // Clean for a window: clean again.
            feed(&mut c, &mut t, &[0.0; 31]);
            prop_assert_eq!(c.cost("brd4x1").reason, CostReason::Clean);
        }
    }
}
