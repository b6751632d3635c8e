//! Uplinks that behave like real ones: per-direction rate, one-way delay, jitter (with or
//! without reordering), random and bursty (Gilbert-Elliott) loss, a queue limit and
//! periodic outages, for the lab's WAN uplinks, changeable while traffic runs.
//!
//! This kernel has no netem, so the impairment is made in userspace, in the hub:
//! - [`core`] is the pure model of one direction ([`Impairment::on_packet`] takes `now`
//!   and a length and returns [`Verdict::Deliver`] at a time or [`Verdict::Drop`]).
//! - The forwarder ([`serve`], run as `braid lab impair` or `braid-lab-impair` inside the
//!   hub namespace) takes the packets of impaired uplink directions from the kernel's
//!   NFQUEUE (iptables `-j NFQUEUE` in the hub's `mangle` table: PREROUTING `-i n<i>w<k>`
//!   for traffic from the node, POSTROUTING `-o n<i>w<k>` for traffic to it), holds each
//!   until its time and then lets it go on (`NF_ACCEPT`) or drops it (`NF_DROP`). The
//!   kernel keeps the packets; only their verdicts cross to userspace, and it cuts TSO/GSO
//!   packets into wire-sized ones before queueing them, so loss hits single packets.
//! - [`Lab::impair_wan`](crate::Lab::impair_wan) starts the forwarder on first use,
//!   configures it over a Unix socket in the hub's network namespace (abstract name
//!   [`CONTROL_SOCKET`]) and adds the iptables rules.
//!
//! Rate is made here too, not by tbf: the line's queue, its rate and the delay after it
//! must be one model, in one place, for the delay under load and the queue limit to mean
//! what they say (a tbf before or after the delay would be a second queue with its own
//! limit and burst). The kernel path ([`crate::LinkShape`]: tbf and nftables) stays for
//! plain rate and loss; an uplink is shaped by one of the two at a time.

mod control;
pub mod core;
mod forwarder;
mod nfqueue;
mod profiles;

pub use self::core::{
    Counters, DEFAULT_QUEUE_PACKETS, DropReason, GilbertElliott, Impairment, Outage, Settings,
    Verdict,
};
pub use control::{DirectionStatus, Impairer};
pub(crate) use control::{Request, request, start};
pub use forwarder::serve;
pub use profiles::{Profile, parse_profiles};

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The abstract Unix socket the forwarder listens on, in the hub's network namespace
/// (abstract names are per network namespace, so every lab has its own).
pub const CONTROL_SOCKET: &str = "braid-lab-impair";

/// Both directions of one uplink: `down` is toward the node (hub -> node), `up` from it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct WanImpairment {
    /// Hub -> node (download).
    pub down: Settings,
    /// Node -> hub (upload).
    pub up: Settings,
    /// The seed of both directions' randomness (each direction mixes in its own number).
    pub seed: u64,
}

impl WanImpairment {
    /// The same settings both ways.
    pub fn both(settings: Settings) -> Self {
        Self {
            down: settings,
            up: settings,
            seed: 0,
        }
    }

    /// True when neither direction changes anything.
    pub fn is_clear(&self) -> bool {
        self.down.is_clear() && self.up.is_clear()
    }

    /// Checks both directions; the message says which one.
    pub fn validate(&self) -> Result<(), String> {
        self.down.validate().map_err(|e| format!("down: {e}"))?;
        self.up.validate().map_err(|e| format!("up: {e}"))
    }
}

/// What `braid lab wan` was given, as text: each of `rate`, `loss`, `delay`, `jitter` and
/// `queue` is `X` for both directions or `DOWN/UP`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WanArgs {
    /// Mbit/s.
    pub rate: Option<String>,
    /// Percent.
    pub loss: Option<String>,
    /// One-way delay, milliseconds or with a unit (`20`, `20ms`, `1.5s`, `500us`).
    pub delay: Option<String>,
    /// Like `delay`.
    pub jitter: Option<String>,
    /// Jitter may reorder packets.
    pub reorder: bool,
    /// `P,R[,LOSS_BAD[,LOSS_GOOD]]`, percent, both directions.
    pub burst_loss: Option<String>,
    /// Packets.
    pub queue: Option<String>,
    /// `EVERY,LASTING` (durations), both directions.
    pub outage: Option<String>,
    /// A [`Profile`] name, the base that the other values change.
    pub profile: Option<String>,
    /// The seed.
    pub seed: Option<u64>,
}

/// How an uplink is to be shaped: by the kernel (tbf and nftables, as before) or by the
/// forwarder.
#[derive(Debug, Clone, PartialEq)]
pub enum WanShape {
    /// Only a rate and a loss, whole numbers, the same both ways: tbf and nftables.
    Kernel(crate::LinkShape),
    /// Anything else: the forwarder.
    Impaired(Box<WanImpairment>),
}

impl WanArgs {
    /// True when nothing but `rate` and `loss` is given, each a whole number for both
    /// directions: the kernel can do that (tbf, nftables), as `braid lab wan` always did.
    fn kernel_only(&self) -> bool {
        let whole =
            |v: &Option<String>| v.as_deref().is_none_or(|t| t.trim().parse::<u32>().is_ok());
        self.delay.is_none()
            && self.jitter.is_none()
            && !self.reorder
            && self.burst_loss.is_none()
            && self.queue.is_none()
            && self.outage.is_none()
            && self.profile.is_none()
            && self.seed.is_none()
            && whole(&self.rate)
            && whole(&self.loss)
    }

    /// Turns the text into a shape; errors name the flag and show the form.
    pub fn shape(&self) -> Result<WanShape, String> {
        if self.kernel_only() {
            let rate = self.rate.as_deref().map(|t| t.trim().parse::<u32>());
            let loss = self.loss.as_deref().map(|t| t.trim().parse::<u32>());
            let loss = match loss {
                Some(Ok(l)) if l > 100 => {
                    return Err(format!("--loss {l}: a percentage is 0..=100"));
                }
                Some(Ok(l)) => Some(l as u8),
                _ => None,
            };
            return Ok(WanShape::Kernel(crate::LinkShape {
                rate_mbit: rate.and_then(Result::ok).filter(|&r| r > 0),
                loss_percent: loss.filter(|&l| l > 0),
            }));
        }
        let mut imp = match &self.profile {
            Some(name) => Profile::from_name(name)
                .ok_or_else(|| {
                    format!(
                        "--profile `{name}` is not a profile; use one of {}",
                        Profile::NAMES.join(", ")
                    )
                })?
                .impairment(),
            None => WanImpairment::default(),
        };
        if let Some(text) = &self.rate {
            let (d, u) = pair("--rate", text, |t| parse_number("--rate", t, "Mbit/s"))?;
            imp.down.rate_mbit = (d > 0.0).then_some(d);
            imp.up.rate_mbit = (u > 0.0).then_some(u);
        }
        if let Some(text) = &self.loss {
            let (d, u) = pair("--loss", text, |t| parse_number("--loss", t, "percent"))?;
            (imp.down.loss_percent, imp.up.loss_percent) = (d, u);
        }
        if let Some(text) = &self.delay {
            (imp.down.delay, imp.up.delay) =
                pair("--delay", text, |t| parse_duration("--delay", t))?;
        }
        if let Some(text) = &self.jitter {
            (imp.down.jitter, imp.up.jitter) =
                pair("--jitter", text, |t| parse_duration("--jitter", t))?;
        }
        if self.reorder {
            (imp.down.reorder, imp.up.reorder) = (true, true);
        }
        if let Some(text) = &self.queue {
            let (d, u) = pair("--queue", text, |t| {
                t.parse::<u32>().map_err(|_| {
                    format!("--queue `{t}` is not a packet count; write e.g. `1000` or `400/100`")
                })
            })?;
            (imp.down.queue_packets, imp.up.queue_packets) = (Some(d), Some(u));
        }
        if let Some(text) = &self.burst_loss {
            let ge = parse_burst_loss(text)?;
            (imp.down.burst_loss, imp.up.burst_loss) = (ge, ge);
        }
        if let Some(text) = &self.outage {
            let o = parse_outage(text)?;
            (imp.down.outage, imp.up.outage) = (o, o);
        }
        if let Some(seed) = self.seed {
            imp.seed = seed;
        }
        imp.validate()?;
        Ok(WanShape::Impaired(Box::new(imp)))
    }
}

/// One direction's settings in a line, e.g. `rate 30 Mbit/s, delay 25 ms +- 7.5 ms, loss
/// 0.5 %, queue 1000`; `none` when clear.
pub fn describe(s: &Settings) -> String {
    let ms = |d: Duration| {
        let v = d.as_secs_f64() * 1000.0;
        format!("{}", (v * 1000.0).round() / 1000.0)
    };
    let mut parts = Vec::new();
    if let Some(rate) = s.rate_mbit {
        parts.push(format!("rate {rate} Mbit/s"));
    }
    if !s.delay.is_zero() || !s.jitter.is_zero() {
        let mut d = format!("delay {} ms", ms(s.delay));
        if !s.jitter.is_zero() {
            d.push_str(&format!(" +- {} ms", ms(s.jitter)));
            if s.reorder {
                d.push_str(" (reordering)");
            }
        }
        parts.push(d);
    }
    if s.loss_percent > 0.0 {
        parts.push(format!("loss {} %", s.loss_percent));
    }
    if let Some(ge) = s.burst_loss {
        parts.push(format!(
            "burst loss p {} % r {} % (bad {} %, good {} %)",
            ge.p, ge.r, ge.loss_bad, ge.loss_good
        ));
    }
    if s.rate_mbit.is_some() {
        parts.push(format!(
            "queue {}",
            s.queue_packets.unwrap_or(DEFAULT_QUEUE_PACKETS)
        ));
    }
    if let Some(o) = s.outage {
        parts.push(format!(
            "outage {} ms every {} s",
            ms(o.lasting),
            o.every.as_secs_f64()
        ));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// `X` (both directions) or `DOWN/UP`, each part parsed by `one`.
fn pair<T: Copy>(
    flag: &str,
    text: &str,
    one: impl Fn(&str) -> Result<T, String>,
) -> Result<(T, T), String> {
    let parts: Vec<&str> = text.split('/').map(str::trim).collect();
    match parts[..] {
        [both] => one(both).map(|v| (v, v)),
        [down, up] => Ok((one(down)?, one(up)?)),
        _ => Err(format!(
            "{flag} `{text}`: give one value for both directions or DOWN/UP, e.g. `50/10`"
        )),
    }
}

fn parse_number(flag: &str, text: &str, unit: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(v) if v < 0.0 => Err(format!("{flag} `{text}`: {unit} cannot be negative")),
        _ => Err(format!("{flag} `{text}` is not a number of {unit}")),
    }
}

/// The longest delay, jitter or outage period the forwarder takes.
const MAX_DURATION_S: f64 = 3600.0;

/// A duration: a number of milliseconds, or a number with `us`, `ms` or `s`.
pub fn parse_duration(flag: &str, text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        (text, 1e-3)
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v * scale <= MAX_DURATION_S => {
            Ok(Duration::from_secs_f64(v * scale))
        }
        Ok(v) if v < 0.0 => Err(format!("{flag} `{text}`: a duration cannot be negative")),
        Ok(v) if v.is_finite() => Err(format!(
            "{flag} `{text}`: at most {MAX_DURATION_S} s (an hour)"
        )),
        _ => Err(format!(
            "{flag} `{text}` is not a duration; write milliseconds (`20`) or with a unit (`20ms`, `1.5s`, `500us`)"
        )),
    }
}

/// `P,R[,LOSS_BAD[,LOSS_GOOD]]` in percent; `0` or `off` for none.
pub fn parse_burst_loss(text: &str) -> Result<Option<GilbertElliott>, String> {
    if matches!(text.trim(), "0" | "off" | "none") {
        return Ok(None);
    }
    let numbers: Result<Vec<f64>, String> = text
        .split(',')
        .map(|t| parse_number("--burst-loss", t.trim(), "percent"))
        .collect();
    let form = "write P,R[,LOSS_BAD[,LOSS_GOOD]] in percent, e.g. `1,25` (Good->Bad 1 %, Bad->Good 25 %: bursts of 4 packets)";
    match numbers.map_err(|e| format!("{e}; {form}"))?[..] {
        [p, r] => Ok(Some(GilbertElliott {
            p,
            r,
            loss_bad: 100.0,
            loss_good: 0.0,
        })),
        [p, r, loss_bad] => Ok(Some(GilbertElliott {
            p,
            r,
            loss_bad,
            loss_good: 0.0,
        })),
        [p, r, loss_bad, loss_good] => Ok(Some(GilbertElliott {
            p,
            r,
            loss_bad,
            loss_good,
        })),
        _ => Err(format!("--burst-loss `{text}`: {form}")),
    }
}

/// `EVERY,LASTING` (durations, e.g. `15s,100ms`); `0` or `off` for none.
pub fn parse_outage(text: &str) -> Result<Option<Outage>, String> {
    if matches!(text.trim(), "0" | "off" | "none") {
        return Ok(None);
    }
    match text.split(',').collect::<Vec<_>>()[..] {
        [every, lasting] => Ok(Some(Outage {
            every: parse_duration("--outage", every)?,
            lasting: parse_duration("--outage", lasting)?,
        })),
        _ => Err(format!(
            "--outage `{text}`: write EVERY,LASTING, e.g. `15s,100ms`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LinkShape;

    fn args() -> WanArgs {
        WanArgs::default()
    }

    #[test]
    fn plain_rate_and_loss_stay_in_the_kernel() {
        let a = WanArgs {
            rate: Some("200".into()),
            loss: Some("5".into()),
            ..args()
        };
        assert_eq!(
            a.shape().unwrap(),
            WanShape::Kernel(LinkShape {
                rate_mbit: Some(200),
                loss_percent: Some(5)
            })
        );
        assert!(args().shape().is_ok());
    }

    #[test]
    fn anything_more_goes_to_the_forwarder() {
        let a = WanArgs {
            rate: Some("50/10".into()),
            delay: Some("10".into()),
            jitter: Some("2ms/1ms".into()),
            loss: Some("0.5".into()),
            queue: Some("400/100".into()),
            burst_loss: Some("1,25".into()),
            outage: Some("15s,100ms".into()),
            ..args()
        };
        let WanShape::Impaired(imp) = a.shape().unwrap() else {
            panic!("kernel");
        };
        assert_eq!(imp.down.rate_mbit, Some(50.0));
        assert_eq!(imp.up.rate_mbit, Some(10.0));
        assert_eq!(imp.down.delay, Duration::from_millis(10));
        assert_eq!(imp.down.jitter, Duration::from_millis(2));
        assert_eq!(imp.up.jitter, Duration::from_millis(1));
        assert_eq!(imp.up.loss_percent, 0.5);
        assert_eq!(imp.up.queue_packets, Some(100));
        assert_eq!(imp.down.burst_loss.unwrap().r, 25.0);
        assert_eq!(imp.up.outage.unwrap().lasting, Duration::from_millis(100));
        for one in [
            WanArgs {
                loss: Some("0.5".into()),
                ..args()
            },
            WanArgs {
                rate: Some("100/20".into()),
                ..args()
            },
            WanArgs {
                delay: Some("0".into()),
                ..args()
            },
        ] {
            assert!(matches!(one.shape(), Ok(WanShape::Impaired(_))), "{one:?}");
        }
    }

    #[test]
    fn a_profile_is_a_base_the_flags_change() {
        let a = WanArgs {
            profile: Some("lte".into()),
            delay: Some("40".into()),
            ..args()
        };
        let WanShape::Impaired(imp) = a.shape().unwrap() else {
            panic!()
        };
        assert_eq!(imp.down.rate_mbit, Some(30.0));
        assert_eq!(imp.down.delay, Duration::from_millis(40));
        assert_eq!(imp.down.loss_percent, 0.5);
    }

    #[test]
    fn bad_values_name_the_flag_and_the_form() {
        for (a, needle) in [
            (
                WanArgs {
                    rate: Some("fast".into()),
                    delay: Some("1".into()),
                    ..args()
                },
                "--rate `fast`",
            ),
            (
                WanArgs {
                    delay: Some("1/2/3".into()),
                    ..args()
                },
                "DOWN/UP",
            ),
            (
                WanArgs {
                    delay: Some("soon".into()),
                    ..args()
                },
                "`20ms`",
            ),
            (
                WanArgs {
                    burst_loss: Some("1".into()),
                    ..args()
                },
                "P,R",
            ),
            (
                WanArgs {
                    outage: Some("15s".into()),
                    ..args()
                },
                "EVERY,LASTING",
            ),
            (
                WanArgs {
                    profile: Some("dialup".into()),
                    ..args()
                },
                "fibre, dsl",
            ),
            (
                WanArgs {
                    loss: Some("150".into()),
                    ..args()
                },
                "0..=100",
            ),
            (
                WanArgs {
                    loss: Some("150.5".into()),
                    ..args()
                },
                "0..=100",
            ),
        ] {
            let err = a.shape().unwrap_err();
            assert!(err.contains(needle), "{a:?}: {err}");
        }
    }

    #[test]
    fn a_direction_reads_as_one_line() {
        let lte = Profile::Lte.impairment().down;
        assert_eq!(
            describe(&lte),
            "rate 30 Mbit/s, delay 25 ms +- 7.5 ms, loss 0.5 %, queue 1000"
        );
        assert_eq!(describe(&Settings::default()), "none");
        assert!(describe(&Profile::Leo.impairment().up).ends_with("outage 100 ms every 15 s"));
    }

    #[test]
    fn durations_take_units() {
        let d = |t| parse_duration("--delay", t).unwrap();
        assert_eq!(d("20"), Duration::from_millis(20));
        assert_eq!(d("20ms"), Duration::from_millis(20));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("250us"), Duration::from_micros(250));
        assert_eq!(parse_outage("off").unwrap(), None);
        assert_eq!(parse_burst_loss("0").unwrap(), None);
    }

    #[test]
    fn bad_numbers_say_what_is_wrong_with_them() {
        // `--delay 100000s` used to be "not a duration", and a negative rate the same as
        // a word.
        let e = |t| parse_duration("--delay", t).unwrap_err();
        assert_eq!(e("100000s"), "--delay `100000s`: at most 3600 s (an hour)");
        assert_eq!(e("-5"), "--delay `-5`: a duration cannot be negative");
        assert!(e("5x").contains("is not a duration; write milliseconds"));
        assert_eq!(
            parse_duration("--delay", "3600s").unwrap(),
            Duration::from_secs(3600)
        );
        let rate = |t| parse_number("--rate", t, "Mbit/s");
        assert_eq!(
            rate("-1").unwrap_err(),
            "--rate `-1`: Mbit/s cannot be negative"
        );
        assert_eq!(
            rate("abc").unwrap_err(),
            "--rate `abc` is not a number of Mbit/s"
        );
        assert_eq!(
            rate("NaN").unwrap_err(),
            "--rate `NaN` is not a number of Mbit/s"
        );
        assert_eq!(rate("2.5"), Ok(2.5));
    }
}
