//! `braid lab`: a whole mesh in network namespaces on this machine.

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum LabCommand {
    /// Build the lab: namespaces, underlay, configs and registry; print each node's plan.
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
    },
    /// Remove the lab.
    Down,
}

pub fn run(_command: LabCommand) -> Result<bool> {
    anyhow::bail!("the lab is not built yet")
}
