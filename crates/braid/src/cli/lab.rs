//! `braid lab`: a whole mesh in network namespaces on this machine.

use crate::cli::lab_checks;
use anyhow::{Context, Result, bail};
use braid_lab::{ConfigOptions, Lab, LabSpec};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

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
        /// Only build namespaces and configs and print the plans; start no daemons.
        #[arg(long)]
        plan_only: bool,
        /// Seconds of the iperf3 throughput run between n1 and n2 (0 to skip).
        #[arg(long, default_value_t = 3)]
        seconds: u32,
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
        LabCommand::Up {
            nodes,
            name,
            dir,
            plan_only,
            seconds,
        } => up(nodes, &name, lab_dir(&name, dir), plan_only, seconds),
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

fn up(nodes: usize, name: &str, dir: PathBuf, plan_only: bool, seconds: u32) -> Result<bool> {
    let dir = std::path::absolute(&dir).with_context(|| format!("resolving {}", dir.display()))?;
    let lab = Lab::up(LabSpec::new(name, nodes)).context("building the lab")?;
    let files = lab
        .write_configs(&dir, &ConfigOptions::default())
        .context("writing the lab's configs")?;
    println!("lab {name}: {nodes} nodes, files in {}", dir.display());
    let mut plans = Vec::new();
    for f in &files {
        let loaded = braid_daemon::load::load(&f.config)
            .map_err(|problems| anyhow::anyhow!("{problems}"))?;
        if plan_only {
            println!(
                "\n== n{} (namespace {}, underlay {} / {})",
                f.index,
                lab.ns(f.index),
                lab.addrs(f.index).v4,
                lab.addrs(f.index).v6
            );
            print!("{}", crate::cli::plan::render(&loaded.plan));
        }
        plans.push(loaded.plan);
    }
    if plan_only {
        println!("\nremove it with: braid lab down --name {name}");
        lab.detach();
        return Ok(true);
    }
    let exe = std::env::current_exe().context("finding the braid binary")?;
    let mut sockets = Vec::new();
    for f in &files {
        let log = f.config.with_file_name("braid.log");
        lab.spawn_private_uapi(
            f.index,
            Command::new(&exe).arg("run").arg("-c").arg(&f.config),
            Some(&log),
        )?;
        let (config, _) = braid_daemon::load::config(&f.config)
            .map_err(|problems| anyhow::anyhow!("{problems}"))?;
        sockets.push(PathBuf::from(config.control_socket));
    }
    let links: usize = plans.iter().map(|p| p.links.len()).sum();
    println!(
        "started {nodes} daemons (`braid run`, logs in {}/n<i>/braid.log); waiting for {links} links to handshake",
        dir.display()
    );
    let started = std::time::Instant::now();
    if let Err(e) = lab_checks::wait_for_handshakes(&sockets, Duration::from_secs(30)) {
        eprintln!("{e:#}");
        lab.detach();
        eprintln!(
            "the lab is left up for inspection; remove it with: braid lab down --name {name}"
        );
        return Ok(false);
    }
    println!(
        "all {links} links up in {:.1}s\n",
        started.elapsed().as_secs_f64()
    );
    let (matrix, all_ok) = lab_checks::connectivity_matrix(&lab, &plans);
    print!("{matrix}");
    if seconds > 0 && nodes >= 2 {
        match lab_checks::throughput(&lab, &plans, seconds, &dir) {
            Ok(line) => println!("\n{line}"),
            Err(e) => eprintln!("\nthroughput: {e:#}"),
        }
    }
    println!(
        "\nstatus:  braid status -c {}/n1/config.json   (or GET http://127.0.0.1:8091/status inside {})",
        dir.display(),
        lab.ns(1)
    );
    println!(
        "shell:   ip netns exec {} bash   (each node is a namespace; workloads are not attached)",
        lab.ns(1)
    );
    println!("remove it with: braid lab down --name {name}");
    lab.detach();
    Ok(all_ok)
}
