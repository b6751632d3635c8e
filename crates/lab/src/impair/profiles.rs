//! Named uplink profiles for the common cases. The figures are round-trip times as people
//! quote them (from ping), split evenly over the two directions; rates are per direction;
//! loss is per direction. docs/lab.md gives the sources.

use super::{Outage, Settings, WanImpairment};
use std::time::Duration;

/// A named kind of uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Fibre (FTTH): 300 Mbit/s both ways, 5 ms round trip.
    Fibre,
    /// DSL (VDSL2): 50 Mbit/s down, 10 up, 20 ms round trip.
    Dsl,
    /// LTE: 30 Mbit/s both ways, 50 +- 15 ms round trip, 0.5 % loss each way.
    Lte,
    /// LEO satellite (Starlink-like): 100 Mbit/s both ways, 40 +- 20 ms round trip, and all
    /// traffic lost for 100 ms every 15 s (the satellite handover).
    Leo,
    /// GEO satellite: 20 Mbit/s both ways, 600 ms round trip.
    Geo,
}

impl Profile {
    /// Every profile's name, as `--profile` takes it.
    pub const NAMES: [&'static str; 5] = ["fibre", "dsl", "lte", "leo", "geo"];

    /// The profile called `name` (`fiber` is taken for `fibre`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "fibre" | "fiber" => Self::Fibre,
            "dsl" => Self::Dsl,
            "lte" => Self::Lte,
            "leo" => Self::Leo,
            "geo" => Self::Geo,
            _ => return None,
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fibre => "fibre",
            Self::Dsl => "dsl",
            Self::Lte => "lte",
            Self::Leo => "leo",
            Self::Geo => "geo",
        }
    }

    /// Its settings, both directions. Queues are the default 1000 packets.
    pub fn impairment(self) -> WanImpairment {
        let line = |rate: f64, rtt_ms: u64, jitter_rtt_ms: u64| Settings {
            rate_mbit: Some(rate),
            delay: Duration::from_micros(rtt_ms * 500),
            jitter: Duration::from_micros(jitter_rtt_ms * 500),
            ..Settings::default()
        };
        match self {
            Self::Fibre => WanImpairment::both(line(300.0, 5, 0)),
            Self::Dsl => WanImpairment {
                down: line(50.0, 20, 0),
                up: line(10.0, 20, 0),
                seed: 0,
            },
            Self::Lte => WanImpairment::both(Settings {
                loss_percent: 0.5,
                ..line(30.0, 50, 15)
            }),
            Self::Leo => WanImpairment::both(Settings {
                outage: Some(Outage {
                    every: Duration::from_secs(15),
                    lasting: Duration::from_millis(100),
                }),
                ..line(100.0, 40, 20)
            }),
            Self::Geo => WanImpairment::both(line(20.0, 600, 0)),
        }
    }
}

/// Parses `--profiles` of `braid lab up`: `n<i>w<k>=PROFILE`, comma-separated (the hub's
/// names of the uplinks), e.g. `n1w0=dsl,n1w1=lte`. Returns (node, uplink, profile).
pub fn parse_profiles(text: &str) -> Result<Vec<(usize, usize, Profile)>, String> {
    text.split(',')
        .map(|item| {
            let form = || {
                format!(
                    "`{item}` in `{text}`: write n<node>w<uplink>=PROFILE, e.g. `n1w0=dsl,n1w1=lte`; profiles: {}",
                    Profile::NAMES.join(", ")
                )
            };
            let (uplink, name) = item.trim().split_once('=').ok_or_else(form)?;
            let (node, wan) = uplink
                .strip_prefix('n')
                .and_then(|rest| rest.split_once('w'))
                .ok_or_else(form)?;
            let node = node.parse::<usize>().map_err(|_| form())?;
            let wan = wan.parse::<usize>().map_err(|_| form())?;
            let profile = Profile::from_name(name).ok_or_else(form)?;
            Ok((node, wan, profile))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_carry_the_documented_figures() {
        let ms = Duration::from_millis;
        let fibre = Profile::Fibre.impairment();
        assert_eq!(fibre.down.rate_mbit, Some(300.0));
        assert_eq!(fibre.down.delay + fibre.up.delay, ms(5));
        let dsl = Profile::Dsl.impairment();
        assert_eq!(
            (dsl.down.rate_mbit, dsl.up.rate_mbit),
            (Some(50.0), Some(10.0))
        );
        assert_eq!(dsl.down.delay + dsl.up.delay, ms(20));
        let lte = Profile::Lte.impairment();
        assert_eq!(lte.down.delay + lte.up.delay, ms(50));
        assert_eq!(lte.down.jitter + lte.up.jitter, ms(15));
        assert_eq!(lte.up.loss_percent, 0.5);
        let leo = Profile::Leo.impairment();
        assert_eq!(leo.down.delay + leo.up.delay, ms(40));
        assert_eq!(leo.down.jitter + leo.up.jitter, ms(20));
        assert_eq!(leo.down.outage.unwrap().every, Duration::from_secs(15));
        let geo = Profile::Geo.impairment();
        assert_eq!(geo.down.delay + geo.up.delay, ms(600));
        assert_eq!(geo.down.rate_mbit, Some(20.0));
        for name in Profile::NAMES {
            let p = Profile::from_name(name).unwrap();
            assert_eq!(p.name(), name);
            assert!(p.impairment().validate().is_ok());
        }
    }

    #[test]
    fn profile_lists_name_each_uplink() {
        assert_eq!(
            parse_profiles("n1w0=dsl, n1w1=LTE").unwrap(),
            vec![(1, 0, Profile::Dsl), (1, 1, Profile::Lte)]
        );
        for bad in ["n1w0", "x1w0=dsl", "n1w0=dialup", "n1=dsl", ""] {
            assert!(
                parse_profiles(bad)
                    .unwrap_err()
                    .contains("n<node>w<uplink>"),
                "{bad}"
            );
        }
    }
}
