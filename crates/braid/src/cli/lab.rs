//! `braid lab`: a whole mesh in network namespaces on this machine.

use anyhow::{Context, Result, bail};
use braid_lab::{ConfigOptions, Lab, LabSpec};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum LabCommand {
    /// Build the lab: namespaces, underlay, configs and registry; print each node's plan.
    #[command(
        after_help = "Example:\n  sudo braid lab up --nodes 4\n\nNode i lives in namespace brd-<name>-n<i>, with underlay addresses 198.18.0.i and 2001:db8::i;\nits config is <dir>/n<i>/config.json, the shared registry <dir>/registry.json."
    )]
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Lab name (1..=8 of a-z, 0-9): several labs can run side by side.
        #[arg(long, default_value = "lab")]
        name: String,
        /// Where configs and the registry go (default /run/braid-lab/<name>).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Remove the lab: its processes, namespaces and files.
    #[command(after_help = "Example:\n  sudo braid lab down")]
    Down {
        #[arg(long, default_value = "lab")]
        name: String,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Remove every braid lab namespace (brd-*), e.g. after a killed test run.
    #[command(after_help = "Example:\n  sudo braid lab cleanup")]
    Cleanup,
}

fn lab_dir(name: &str, dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| PathBuf::from("/run/braid-lab").join(name))
}

pub fn run(command: LabCommand) -> Result<bool> {
    if !braid_lab::available() {
        bail!("the lab needs root and iproute2 (`ip netns`); run it as root");
    }
    match command {
        LabCommand::Up { nodes, name, dir } => up(nodes, &name, lab_dir(&name, dir)),
        LabCommand::Down { name, dir } => {
            braid_lab::cleanup(Some(&name)).context("removing the lab's namespaces")?;
            let dir = lab_dir(&name, dir);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
            println!("lab {name} removed");
            Ok(true)
        }
        LabCommand::Cleanup => {
            braid_lab::cleanup(None).context("removing lab namespaces")?;
            println!("every brd-* lab namespace removed");
            Ok(true)
        }
    }
}

fn up(nodes: usize, name: &str, dir: PathBuf) -> Result<bool> {
    let dir = std::path::absolute(&dir).with_context(|| format!("resolving {}", dir.display()))?;
    let lab = Lab::up(LabSpec::new(name, nodes)).context("building the lab")?;
    let files = lab
        .write_configs(&dir, &ConfigOptions::default())
        .context("writing the lab's configs")?;
    println!("lab {name}: {nodes} nodes, files in {}", dir.display());
    for f in &files {
        println!(
            "\n== n{} (namespace {}, underlay {} / {})",
            f.index,
            lab.ns(f.index),
            lab.addrs(f.index).v4,
            lab.addrs(f.index).v6
        );
        match braid_daemon::load::load(&f.config) {
            Ok(loaded) => print!("{}", crate::cli::plan::render(&loaded.plan)),
            Err(problems) => {
                eprintln!("{problems}");
                return Ok(false);
            }
        }
    }
    println!("\nremove it with: braid lab down --name {name}");
    lab.detach();
    Ok(true)
}
