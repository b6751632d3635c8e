//! `braid lab wan` and the lab's uplink profiles: shaping, impairment and cuts of a lab
//! node's uplinks (`braid_lab::impair`), as the CLI takes and shows them.

use super::lab::lab_dir;
use anyhow::{Context, Result, bail};
use braid_lab::impair::{Impairer, WanArgs};
use braid_lab::{Lab, WanShape};

/// The shaping flags of `braid lab wan` (boxed: they are many).
#[derive(clap::Args)]
pub(crate) struct ShapingFlags {
    /// Rate limit in Mbit/s, or DOWN/UP (e.g. 50/10).
    #[arg(long, value_name = "MBIT[/MBIT]", allow_negative_numbers = true)]
    pub rate: Option<String>,
    /// Random loss in percent, in each direction, or DOWN/UP.
    #[arg(long, value_name = "PERCENT[/PERCENT]", allow_negative_numbers = true)]
    pub loss: Option<String>,
    /// One-way delay in ms (or 20ms, 1.5s, 500us), or DOWN/UP.
    #[arg(long, value_name = "MS[/MS]", allow_negative_numbers = true)]
    pub delay: Option<String>,
    /// Delay variation, up to this much either way, or DOWN/UP.
    #[arg(long, value_name = "MS[/MS]", allow_negative_numbers = true)]
    pub jitter: Option<String>,
    /// Let jitter reorder packets (drawn per packet); otherwise order is kept.
    #[arg(long)]
    pub reorder: bool,
    /// Bursty loss (Gilbert-Elliott), percent: P,R[,LOSS_BAD[,LOSS_GOOD]].
    #[arg(long, value_name = "P,R")]
    pub burst_loss: Option<String>,
    /// Queue limit in packets (with a rate), or DOWN/UP.
    #[arg(long, value_name = "PACKETS[/PACKETS]", allow_negative_numbers = true)]
    pub queue: Option<String>,
    /// Periodic total outage: EVERY,LASTING (e.g. 15s,100ms).
    #[arg(long, value_name = "EVERY,LASTING")]
    pub outage: Option<String>,
    /// A named profile (fibre, dsl, lte, leo, geo) as the base the other flags change.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Seed of the loss and jitter randomness.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl ShapingFlags {
    /// The flags as the lab's shaping arguments.
    pub(super) fn into_args(self) -> WanArgs {
        WanArgs {
            rate: self.rate,
            loss: self.loss,
            delay: self.delay,
            jitter: self.jitter,
            reorder: self.reorder,
            burst_loss: self.burst_loss,
            queue: self.queue,
            outage: self.outage,
            profile: self.profile,
            seed: self.seed,
        }
    }
}

/// `--profiles`: impairs each listed uplink of the lab `name` with its profile.
pub(super) fn apply_profiles(
    lab: &Lab,
    name: &str,
    profiles: &[(usize, usize, braid_lab::Profile)],
) -> Result<()> {
    for &(i, k, profile) in profiles {
        lab.set_impairer(impairer(name)?);
        lab.impair_wan(i, k, &profile.impairment())
            .with_context(|| format!("--profiles: n{i}w{k}={}", profile.name()))?;
        println!("n{i} wan{k}: {} profile", profile.name());
    }
    Ok(())
}

/// What `braid lab wan` does to an uplink besides shaping it.
pub(super) struct WanActions {
    pub(super) clear: bool,
    pub(super) cut: bool,
    pub(super) restore: bool,
    pub(super) down: bool,
    pub(super) up: bool,
}

/// `braid lab wan --node --wan`: shapes, cuts, restores or takes down node `node`'s uplink
/// `wan`; returns what was done, one phrase each (an error when nothing was asked).
pub(super) fn change_wan(
    lab: &Lab,
    node: usize,
    wan: usize,
    shaping: ShapingFlags,
    actions: &WanActions,
) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let args = shaping.into_args();
    if args != WanArgs::default() || actions.clear {
        let shape = args.shape().map_err(|e| anyhow::anyhow!("{e}"))?;
        lab.shape_uplink(node, wan, &shape)?;
        done.push(if actions.clear {
            "shape and impairment cleared".into()
        } else {
            describe_shape(&shape)
        });
    }
    if actions.cut {
        lab.cut_wan(node, wan)?;
        done.push("cut".into());
    }
    if actions.restore {
        lab.restore_wan(node, wan)?;
        done.push("restored".into());
    }
    if actions.down || actions.up {
        lab.set_wan_link(node, wan, actions.up)?;
        done.push(format!("link {}", if actions.up { "up" } else { "down" }));
    }
    if done.is_empty() {
        bail!(
            "nothing to do: give --rate, --loss, --delay, --profile (or another shaping flag), --clear, --cut, --restore, --down, --up or --show"
        );
    }
    Ok(done)
}

/// An uplink's new shape, as `braid lab wan` reports it.
pub(super) fn describe_shape(shape: &WanShape) -> String {
    match shape {
        WanShape::Kernel(shape) => format!(
            "rate {}, loss {}",
            shape
                .rate_mbit
                .map_or("none".into(), |r| format!("{r} Mbit/s")),
            shape
                .loss_percent
                .map_or("none".into(), |l| format!("{l}%"))
        ),
        WanShape::Impaired(imp) => format!(
            "impaired by the forwarder: down {}; up {}",
            braid_lab::impair::describe(&imp.down),
            braid_lab::impair::describe(&imp.up)
        ),
    }
}

/// The forwarder of the lab `name`: this binary as `braid lab impair`, its output in
/// /run/braid-lab/<name>/impair.log.
pub(super) fn impairer(name: &str) -> Result<Impairer> {
    let dir = lab_dir(name, None);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(Impairer {
        program: std::env::current_exe().context("finding the braid binary")?,
        args: vec!["lab".into(), "impair".into()],
        log: Some(dir.join("impair.log")),
    })
}

/// Every impaired direction, one line each.
pub(super) fn show_impairment(lab: &Lab) -> Result<String> {
    let status = lab.impair_status()?;
    if status.is_empty() {
        return Ok("no uplink is impaired by the forwarder\n".into());
    }
    let mut out = String::new();
    for s in status {
        let c = s.counters;
        out.push_str(&format!(
            "{} {:<4} {}\n     packets {} delivered {} lost: queue {} loss {} burst {} outage {}; queued {}\n",
            s.uplink,
            s.direction,
            braid_lab::impair::describe(&s.settings),
            c.packets,
            c.delivered,
            c.dropped_queue,
            c.dropped_loss,
            c.dropped_burst,
            c.dropped_outage,
            s.queued
        ));
    }
    Ok(out)
}
