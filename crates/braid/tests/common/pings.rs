//! Ping streams that run through a fault and are read afterwards: `ping -D` in a namespace,
//! its output in a file, parsed into requests with their send and reply times, and the
//! gaps, losses and recovery times over a window.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (the clock of `ping -D`).
pub(crate) fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One line of `ping -D` output with a sequence number: its timestamp (Unix seconds), the
/// `icmp_seq` and the rest of the line after the timestamp.
/// `[1796098079.123456] 64 bytes from ..: icmp_seq=7 ttl=63 time=0.1 ms`
pub(crate) fn ping_line(line: &str) -> Option<(f64, u32, &str)> {
    let (ts, rest) = line.strip_prefix('[')?.split_once(']')?;
    let seq = rest
        .split_whitespace()
        .find_map(|w| w.strip_prefix("icmp_seq="))?
        .parse()
        .ok()?;
    Some((ts.parse().ok()?, seq, rest))
}

/// One ping stream running in a namespace, its output in a file; killed on drop.
pub(crate) struct Pinger {
    /// The stream's name in reports.
    pub(crate) name: String,
    /// Seconds between requests.
    interval: f64,
    child: Child,
    out: PathBuf,
}

impl Pinger {
    /// Pings `to` from namespace `ns` every `interval` seconds (waiting 1 s for each
    /// reply), the output in `dir/ping-<name>.txt`.
    pub(crate) fn start(name: &str, ns: &str, to: &str, interval: f64, dir: &Path) -> Self {
        let out = dir.join(format!("ping-{name}.txt"));
        let every = interval.to_string();
        let child = Command::new("ip")
            .args([
                "netns", "exec", ns, "ping", "-D", "-O", "-n", "-i", &every, "-W", "1", to,
            ])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self {
            name: name.into(),
            interval,
            child,
            out,
        }
    }

    /// Every request so far, by sequence number: when it was sent (Unix seconds) and when
    /// its reply came, if one did. Send times come from the reply's timestamp less its
    /// round trip, or from ping's `no answer yet` line (printed when the next request goes,
    /// one interval later).
    pub(crate) fn requests(&self) -> BTreeMap<u32, (f64, Option<f64>)> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let mut out = BTreeMap::new();
        for (ts, seq, rest) in text.lines().filter_map(ping_line) {
            if rest.contains(" bytes from ") {
                let rtt = rest
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("time="))
                    .and_then(|t| t.parse::<f64>().ok())
                    .unwrap_or(0.0)
                    / 1000.0;
                out.insert(seq, (ts - rtt, Some(ts)));
            } else if rest.contains("no answer yet") {
                out.entry(seq).or_insert((ts - self.interval, None));
            } else {
                // An ICMP error (unreachable): sent about then, not answered.
                out.entry(seq).or_insert((ts, None));
            }
        }
        out
    }

    /// The times of every reply so far.
    pub(crate) fn replies(&self) -> Vec<f64> {
        self.requests().values().filter_map(|r| r.1).collect()
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the pings saw during one window.
#[derive(Debug, Default, Clone)]
pub(crate) struct Traffic {
    /// The longest time without a reply in the window (s)...
    pub(crate) gap: f64,
    /// ...and on which stream.
    pub(crate) gap_stream: String,
    /// The longest time from the end of the fault to the first reply, over the streams (s).
    pub(crate) back: Option<f64>,
    /// Requests in the window that never got a reply, over all streams.
    pub(crate) lost: u32,
    /// The first few of them, as `stream seq N` (to find them in the ping output).
    pub(crate) lost_seqs: Vec<String>,
}

/// The traffic of `pingers` between `t0` and `t1`; `since`: when the fault ended (for
/// `back`). Requests sent in the window up to a second before its end count for `lost`
/// (a reply may take that long).
pub(crate) fn traffic(pingers: &[Pinger], t0: f64, t1: f64, since: Option<f64>) -> Traffic {
    let mut t = Traffic::default();
    let mut back: Option<f64> = Some(0.0);
    for p in pingers {
        let requests = p.requests();
        let lost: Vec<u32> = requests
            .iter()
            .filter(|(_, (sent, reply))| (t0..=t1 - 1.0).contains(sent) && reply.is_none())
            .map(|(seq, _)| *seq)
            .collect();
        t.lost += lost.len() as u32;
        t.lost_seqs.extend(
            lost.iter()
                .take(3)
                .map(|seq| format!("{} seq {seq}", p.name)),
        );
        let mut times: Vec<f64> = requests
            .values()
            .filter_map(|r| r.1)
            .filter(|ts| (t0..=t1).contains(ts))
            .collect();
        times.sort_by(f64::total_cmp);
        let mut edges = vec![t0];
        edges.extend(&times);
        edges.push(t1);
        let gap = edges.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
        if gap > t.gap {
            t.gap = gap;
            t.gap_stream.clone_from(&p.name);
        }
        if let Some(since) = since {
            let first = times.iter().find(|ts| **ts >= since).map(|ts| ts - since);
            back = match (back, first) {
                (Some(b), Some(f)) => Some(b.max(f)),
                _ => None,
            };
        }
    }
    t.back = since.and(back);
    t
}

/// True when every stream has a reply after `since`.
pub(crate) fn flowing_since(pingers: &[Pinger], since: f64) -> bool {
    pingers
        .iter()
        .all(|p| p.replies().iter().any(|ts| *ts > since))
}
