//! A TCP bulk sender and its receiver, enough like Linux's to judge a scheduler by: CUBIC
//! (RFC 9438: β 0.7, C 0.4, the Reno-friendly region, fast convergence), slow start left
//! on a delay rise (HyStart-like), SACK with RACK loss detection (RFC 8985: a packet is
//! lost once one sent more than `min_rtt / 4` after it was delivered), an RTO (RFC 6298,
//! at least 200 ms), pacing at 2× (slow start) or 1.2× cwnd/srtt as Linux does, and a
//! receive window of 3000 packets (about 4 MB, Linux's default `tcp_rmem` maximum of 6 MB
//! at half for the window). Not modelled, so this is harsher on reordering than Linux:
//! undoing a reduction found spurious (DSACK, F-RTO), an adaptive reordering degree, TLP.
//!
//! Units are packets of [`MSS`] payload bytes; sequence numbers count packets. The
//! receiver acknowledges every packet (no delayed ACKs), echoing the send time of the packet that triggered the ACK (as TCP timestamps
//! do) and the last three out-of-order packets it got (as SACK blocks would).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// IP packet size of a full segment (the link MTU).
pub(crate) const PACKET: usize = 1420;
/// Payload bytes per segment (IPv4 + TCP headers off).
pub(crate) const MSS: usize = PACKET - 40;
/// The ACK's IP packet size.
pub(crate) const ACK: usize = 64;
/// Largest congestion window (the receive window), packets.
pub(crate) const RWND: f64 = 3000.0;
const BETA: f64 = 0.7;
const C: f64 = 0.4;
const MIN_RTO: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy)]
struct Seg {
    xmit: Instant,
    sacked: bool,
}

/// Counters of one flow.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TcpStats {
    pub sent: u64,
    pub retransmits: u64,
    pub recoveries: u64,
    pub timeouts: u64,
    /// Packets the receiver got twice (a retransmission of one that was not lost).
    pub spurious: u64,
    /// Bytes delivered in order to the receiving application.
    pub delivered_bytes: u64,
}

/// What the sender wants: packets to send now and when to be called again.
#[derive(Debug, Default)]
pub(crate) struct Out {
    pub packets: Vec<(u64, Instant)>,
    pub wake: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct Sender {
    next_seq: u64,
    una: u64,
    /// Every packet from `una` on that is not acknowledged cumulatively.
    segs: BTreeMap<u64, Seg>,
    /// Packets in flight (not SACKed, not marked lost), by send time: the pipe.
    flight: BTreeSet<(Instant, u64)>,
    /// Packets marked lost and not yet sent again.
    lost: BTreeSet<u64>,
    pub cwnd: f64,
    ssthresh: f64,
    recovery: Option<u64>,
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rtt: Option<Duration>,
    /// Send time of the most recently sent packet known delivered (RACK.xmit_ts).
    rack_xmit: Option<Instant>,
    pacing_next: Instant,
    rto_at: Option<Instant>,
    rto_backoff: u32,
    // CUBIC
    w_max: f64,
    w_last_max: f64,
    epoch: Option<Instant>,
    k: f64,
    origin: f64,
    w_est: f64,
    // HyStart: minimum RTT of the current round and the round's end.
    round_end: u64,
    round_min: Option<Duration>,
    pub stats: TcpStats,
}

impl Sender {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            next_seq: 0,
            una: 0,
            segs: BTreeMap::new(),
            flight: BTreeSet::new(),
            lost: BTreeSet::new(),
            cwnd: 10.0,
            ssthresh: f64::INFINITY,
            recovery: None,
            srtt: None,
            rttvar: Duration::ZERO,
            min_rtt: None,
            rack_xmit: None,
            pacing_next: now,
            rto_at: None,
            rto_backoff: 0,
            w_max: 0.0,
            w_last_max: 0.0,
            epoch: None,
            k: 0.0,
            origin: 0.0,
            w_est: 0.0,
            round_end: 0,
            round_min: None,
            stats: TcpStats::default(),
        }
    }

    fn pipe(&self) -> f64 {
        self.flight.len() as f64
    }

    /// `seq` is delivered (cumulatively or SACKed); returns whether that is news.
    fn delivered(&mut self, seq: u64) -> Option<Instant> {
        let s = self.segs.get_mut(&seq)?;
        if s.sacked {
            return None;
        }
        s.sacked = true;
        let xmit = s.xmit;
        self.flight.remove(&(xmit, seq));
        self.lost.remove(&seq);
        Some(xmit)
    }

    fn rto(&self) -> Duration {
        let base = match self.srtt {
            Some(s) => (s + 4 * self.rttvar).max(MIN_RTO),
            None => Duration::from_secs(1),
        };
        base * 2u32.pow(self.rto_backoff.min(6))
    }

    fn pacing_gap(&self) -> Duration {
        let srtt = self.srtt.unwrap_or(Duration::from_millis(100));
        let ratio = if self.cwnd < self.ssthresh / 2.0 {
            2.0
        } else {
            1.2
        };
        let rate = ratio * self.cwnd / srtt.as_secs_f64().max(1e-4); // packets per second
        Duration::from_secs_f64(1.0 / rate)
    }

    /// Sends what the window and pacing allow: lost packets first, then new ones.
    pub(crate) fn send(&mut self, now: Instant) -> Out {
        let mut out = Out::default();
        if self.rto_at.is_some_and(|t| t <= now) {
            self.on_rto(now);
        }
        loop {
            if self.pipe() >= self.cwnd.min(RWND) {
                break;
            }
            if self.pacing_next > now {
                out.wake = Some(self.pacing_next);
                break;
            }
            let seq = match self.lost.pop_first() {
                Some(q) => {
                    if let Some(s) = self.segs.get_mut(&q) {
                        s.xmit = now;
                    }
                    self.stats.retransmits += 1;
                    q
                }
                None => {
                    let q = self.next_seq;
                    self.next_seq += 1;
                    self.segs.insert(
                        q,
                        Seg {
                            xmit: now,
                            sacked: false,
                        },
                    );
                    q
                }
            };
            self.flight.insert((now, seq));
            self.stats.sent += 1;
            out.packets.push((seq, now));
            self.pacing_next = self.pacing_next.max(now - self.pacing_gap()) + self.pacing_gap();
            if self.rto_at.is_none() {
                self.rto_at = Some(now + self.rto());
            }
        }
        let rto = self.rto_at;
        out.wake = [out.wake, rto].into_iter().flatten().min();
        out
    }

    /// An ACK: cumulative `cum` (next expected), SACKed sequence numbers, and the echoed
    /// send time of the packet that triggered it.
    pub(crate) fn on_ack(&mut self, cum: u64, sacks: &[u64], echo: Instant, now: Instant) -> Out {
        let rtt = now.saturating_duration_since(echo);
        self.rtt_sample(rtt, now);
        let mut delivered = 0.0;
        let mut newest: Option<Instant> = None;
        while self.una < cum {
            if let Some(t) = self.delivered(self.una) {
                delivered += 1.0;
                newest = newest.max(Some(t));
            }
            self.segs.remove(&self.una);
            self.una += 1;
        }
        for q in sacks {
            if *q >= self.una
                && let Some(t) = self.delivered(*q)
            {
                delivered += 1.0;
                newest = newest.max(Some(t));
            }
        }
        if delivered > 0.0 {
            self.rto_backoff = 0;
            self.rto_at = (!self.segs.is_empty()).then(|| now + self.rto());
        }
        if let Some(t) = newest {
            self.rack_xmit = self.rack_xmit.max(Some(t));
        }
        if self.recovery.is_some_and(|r| self.una >= r) {
            self.recovery = None;
        }
        let lost = self.detect_losses();
        if lost > 0 && self.recovery.is_none() {
            self.reduce(now);
            self.recovery = Some(self.next_seq);
            self.stats.recoveries += 1;
        } else if self.recovery.is_none() && delivered > 0.0 {
            self.grow(delivered, now);
        }
        self.hystart(rtt);
        self.send(now)
    }

    fn rtt_sample(&mut self, rtt: Duration, _now: Instant) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(s) => {
                self.rttvar = (self.rttvar * 3 + s.abs_diff(rtt)) / 4;
                self.srtt = Some((s * 7 + rtt) / 8);
            }
        }
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        self.round_min = Some(self.round_min.map_or(rtt, |m| m.min(rtt)));
    }

    /// RACK: a packet sent more than `min_rtt / 4` before the most recently delivered
    /// one is lost (a retransmission too).
    fn detect_losses(&mut self) -> u64 {
        let (Some(rack), Some(min_rtt)) = (self.rack_xmit, self.min_rtt) else {
            return 0;
        };
        let reo_wnd = min_rtt / 4;
        let mut n = 0;
        while let Some(&(xmit, seq)) = self.flight.first() {
            if xmit + reo_wnd >= rack {
                break;
            }
            self.flight.pop_first();
            self.lost.insert(seq);
            n += 1;
        }
        n
    }

    fn reduce(&mut self, _now: Instant) {
        // Fast convergence.
        self.w_max = if self.cwnd < self.w_last_max {
            self.cwnd * (1.0 + BETA) / 2.0
        } else {
            self.cwnd
        };
        self.w_last_max = self.cwnd;
        self.cwnd = (self.cwnd * BETA).max(2.0);
        self.ssthresh = self.cwnd;
        self.epoch = None;
    }

    fn grow(&mut self, acked: f64, now: Instant) {
        if self.cwnd < self.ssthresh {
            self.cwnd = (self.cwnd + acked).min(RWND);
            return;
        }
        let rtt = self
            .min_rtt
            .unwrap_or(Duration::from_millis(100))
            .as_secs_f64();
        let epoch = *self.epoch.get_or_insert_with(|| {
            if self.cwnd < self.w_max {
                self.k = ((self.w_max - self.cwnd) / C).cbrt();
                self.origin = self.w_max;
            } else {
                self.k = 0.0;
                self.origin = self.cwnd;
            }
            self.w_est = self.cwnd;
            now
        });
        let t = now.saturating_duration_since(epoch).as_secs_f64() + rtt;
        let target = self.origin + C * (t - self.k).powi(3);
        self.w_est += acked * 3.0 * (1.0 - BETA) / (1.0 + BETA) / self.cwnd;
        let inc = if target > self.cwnd {
            (target - self.cwnd) / self.cwnd * acked
        } else {
            0.01 * acked / self.cwnd
        };
        self.cwnd = (self.cwnd + inc).max(self.w_est).min(RWND);
    }

    /// Leaves slow start when a round's minimum RTT rises by an eighth of the minimum
    /// (at least 4 ms).
    fn hystart(&mut self, _rtt: Duration) {
        if self.una < self.round_end {
            return;
        }
        if self.cwnd < self.ssthresh
            && self.cwnd >= 16.0
            && let (Some(round), Some(min)) = (self.round_min, self.min_rtt)
            && round > min + (min / 8).max(Duration::from_millis(4))
        {
            self.ssthresh = self.cwnd;
        }
        self.round_end = self.next_seq;
        self.round_min = None;
    }

    fn on_rto(&mut self, now: Instant) {
        self.stats.timeouts += 1;
        while let Some((_, seq)) = self.flight.pop_first() {
            self.lost.insert(seq);
        }
        self.w_max = self.cwnd;
        self.ssthresh = (self.cwnd * BETA).max(2.0);
        self.cwnd = 1.0;
        self.recovery = Some(self.next_seq);
        self.epoch = None;
        self.rto_backoff += 1;
        self.rto_at = Some(now + self.rto());
        self.pacing_next = now;
    }
}

#[derive(Debug, Default)]
pub(crate) struct Receiver {
    next: u64,
    above: BTreeSet<u64>,
    recent: Vec<u64>,
    pub stats: TcpStats,
}

/// An ACK to send: cumulative, SACKs, echoed send time.
pub(crate) type Ack = (u64, Vec<u64>, Instant);

impl Receiver {
    /// A data packet; returns the ACK to send.
    pub(crate) fn on_data(&mut self, seq: u64, xmit: Instant) -> Ack {
        if seq < self.next || self.above.contains(&seq) {
            self.stats.spurious += 1;
            return (self.next, self.recent.clone(), xmit);
        }
        if seq == self.next {
            self.next += 1;
            while self.above.remove(&self.next) {
                self.next += 1;
            }
        } else {
            self.above.insert(seq);
            self.recent.insert(0, seq);
            self.recent.truncate(3);
        }
        self.stats.delivered_bytes = self.next * MSS as u64;
        (self.next, self.recent.clone(), xmit)
    }
}
