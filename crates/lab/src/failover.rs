//! Measuring a failover: how long workload traffic stops when the underlay between two
//! nodes is cut.
//!
//! A workload pings another every [`PROBE_INTERVAL`] (iputils `ping -D`, which stamps each
//! reply with the wall-clock time it arrived and flushes every line); the cut happens while
//! replies flow; the outage is the longest time between two consecutive replies around and
//! after the cut ([`outage`]). The wait is bounded: when no reply comes back within the
//! bound, the report says so instead of a figure.

use crate::LabError;
use crate::lab::Lab;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Time between two probes (100 per second; `ping -i 0.01`, allowed to root).
pub const PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// Traffic counts as back once replies have flowed this long without a gap.
const STEADY: Duration = Duration::from_millis(500);
/// A silence longer than this counts as a gap (several lost probes in a row).
const GAP: Duration = Duration::from_millis(50);

/// What [`Lab::measure_failover`] saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Failover {
    /// The longest time without replies after the cut; `None` when traffic did not come
    /// back within `bound`.
    pub outage: Option<Duration>,
    /// How long the measurement waited for traffic to return.
    pub bound: Duration,
    /// Probes sent from the cut to the end of the measurement (estimated from the time
    /// and [`PROBE_INTERVAL`]).
    pub sent_after_cut: u64,
    /// Replies received from the cut to the end.
    pub replies_after_cut: u64,
}

impl Failover {
    /// One line for people: `traffic stopped for 2.31 s` or `traffic did not return within 15 s`.
    pub fn describe(&self) -> String {
        match self.outage {
            Some(gap) if gap <= GAP => format!(
                "no interruption (longest gap between replies {} ms)",
                gap.as_millis()
            ),
            Some(gap) => format!("traffic stopped for {:.2} s", gap.as_secs_f64()),
            None => format!("traffic did not return within {} s", self.bound.as_secs()),
        }
    }
}

/// The outage in a series of reply times (seconds, ascending) around a cut at `cut_at`:
/// the longest interval between consecutive replies that ends after the cut (the interval
/// spanning the cut counts, since it began before it). `None` when no reply came after the
/// cut. Pure: the caller's clock gives the times.
pub fn outage(replies: &[f64], cut_at: f64) -> Option<Duration> {
    let last_before = replies.iter().rev().find(|&&t| t <= cut_at).copied();
    let after: Vec<f64> = replies.iter().copied().filter(|&t| t > cut_at).collect();
    if after.is_empty() {
        return None;
    }
    let mut previous = last_before.unwrap_or(cut_at);
    let mut longest = 0.0f64;
    for t in after {
        longest = longest.max(t - previous);
        previous = t;
    }
    Some(Duration::from_secs_f64(longest.max(0.0)))
}

/// True when, at `now`, the replies show traffic back: the last reply came within [`GAP`]
/// and replies have flowed without a gap for [`STEADY`] since the cut's silence. Pure.
fn steady_after(replies: &[f64], cut_at: f64, now: f64) -> bool {
    let Some(&last) = replies.last() else {
        return false;
    };
    if now - last > GAP.as_secs_f64() || last <= cut_at {
        return false;
    }
    // Walk back from the newest reply while the replies are close together.
    let mut start = last;
    for &t in replies.iter().rev().skip(1) {
        if start - t > GAP.as_secs_f64() {
            break;
        }
        start = t;
    }
    last - start.max(cut_at) >= STEADY.as_secs_f64()
}

/// Seconds since the Unix epoch, as `ping -D` stamps replies.
fn wall_clock() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The time stamp of a `ping -D` reply line: `[1700000000.123456] 64 bytes from ...`.
fn reply_time(line: &str) -> Option<f64> {
    if !line.contains(" bytes from ") {
        return None;
    }
    line.strip_prefix('[')?.split(']').next()?.parse().ok()
}

impl Lab {
    /// The node through which node `from` sends IPv6 traffic to `dest` now: the next hop
    /// `fe80::<j>` of its route (lab nodes' link-local addresses carry their index), or
    /// `None` when the route has no such next hop.
    pub fn next_hop(&self, from: usize, dest: &str) -> Option<usize> {
        let out = self
            .try_exec(from, "ip", &["-6", "route", "get", dest])
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let via = text.split_whitespace().skip_while(|w| *w != "via").nth(1)?;
        usize::from_str_radix(via.strip_prefix("fe80::")?, 16)
            .ok()
            .filter(|j| (1..=self.nodes()).contains(j))
    }

    /// Measures how long traffic from node `from`'s workload to `to` stops when `cut`
    /// runs: probes every [`PROBE_INTERVAL`], waits for replies to flow, runs `cut`, and
    /// waits until replies flow again steadily or `bound` passes (see [`crate::failover`]).
    /// The caller restores what `cut` changed.
    pub fn measure_failover(
        &self,
        from: usize,
        to: &str,
        bound: Duration,
        cut: impl FnOnce() -> Result<(), LabError>,
    ) -> Result<Failover, LabError> {
        let ns = self.workload_ns(from);
        let interval = format!("{}", PROBE_INTERVAL.as_secs_f64());
        let args = [
            "netns", "exec", &ns, "ping", "-n", "-D", "-i", &interval, "-W", "1", to,
        ];
        let spawn_error = |source| LabError::Spawn {
            command: format!("ip {}", args.join(" ")),
            source,
        };
        let mut child = Command::new("ip")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(spawn_error)?;
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(t) = reply_time(&line)
                    && tx.send(t).is_err()
                {
                    return;
                }
            }
        });
        let result = watch(&rx, bound, cut);
        // The child is ours; ending it closes its stdout and ends the reader.
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        result
    }
}

/// Collects replies from `rx`: waits for traffic, cuts, and waits for its return.
fn watch(
    rx: &mpsc::Receiver<f64>,
    bound: Duration,
    cut: impl FnOnce() -> Result<(), LabError>,
) -> Result<Failover, LabError> {
    let mut replies = Vec::new();
    let start = Instant::now();
    while replies.len() < 20 {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(t) => replies.push(t),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if start.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    if replies.len() < 20 {
        return Err(LabError::Topology(format!(
            "only {} replies before the cut in 5 s: the workloads do not reach each other",
            replies.len()
        )));
    }
    let cut_at = wall_clock();
    let cut_instant = Instant::now();
    cut()?;
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(t) => replies.push(t),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if steady_after(&replies, cut_at, wall_clock()) || cut_instant.elapsed() > bound {
            break;
        }
    }
    let replies_after_cut = replies.iter().filter(|&&t| t > cut_at).count() as u64;
    let elapsed = cut_instant.elapsed();
    let back = steady_after(&replies, cut_at, wall_clock()) || elapsed <= bound;
    Ok(Failover {
        outage: outage(&replies, cut_at).filter(|_| back),
        bound,
        sent_after_cut: (elapsed.as_secs_f64() / PROBE_INTERVAL.as_secs_f64()) as u64,
        replies_after_cut,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(from: f64, to: f64) -> Vec<f64> {
        let mut v = Vec::new();
        let mut t = from;
        while t < to {
            v.push(t);
            t += 0.01;
        }
        v
    }

    #[test]
    fn the_outage_is_the_silence_around_the_cut() {
        let mut replies = series(100.0, 101.0);
        replies.extend(series(103.5, 104.5));
        let gap = outage(&replies, 100.995).unwrap();
        assert!((gap.as_secs_f64() - 2.51).abs() < 0.02, "{gap:?}");
        assert!(steady_after(&replies, 100.995, 104.5));
        assert!(
            !steady_after(&replies, 100.995, 105.0),
            "the last reply is old"
        );
        assert!(
            !steady_after(&replies[..110], 100.995, 103.6),
            "not steady yet"
        );
    }

    #[test]
    fn no_reply_after_the_cut_is_no_figure() {
        assert_eq!(outage(&series(100.0, 101.0), 101.5), None);
        assert!(!steady_after(&series(100.0, 101.0), 101.5, 101.5));
    }

    #[test]
    fn a_reroute_without_loss_is_no_interruption() {
        let replies = series(100.0, 102.0);
        let f = Failover {
            outage: outage(&replies, 101.0),
            bound: Duration::from_secs(15),
            sent_after_cut: 100,
            replies_after_cut: 100,
        };
        assert!(
            f.describe().starts_with("no interruption"),
            "{}",
            f.describe()
        );
        let none = Failover { outage: None, ..f };
        assert_eq!(none.describe(), "traffic did not return within 15 s");
    }

    #[test]
    fn reply_lines_carry_their_time() {
        assert_eq!(
            reply_time(
                "[1796096873.480320] 64 bytes from 127.0.0.1: icmp_seq=1 ttl=64 time=0.113 ms"
            ),
            Some(1_796_096_873.480_32)
        );
        assert_eq!(
            reply_time("[1796096873.480320] From 10.0.0.1 icmp_seq=3 Destination Host Unreachable"),
            None
        );
        assert_eq!(reply_time("PING x"), None);
    }
}
