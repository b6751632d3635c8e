//! `braid lab`: a whole mesh in network namespaces on this machine.

use crate::cli::lab_checks::{self, MainJob};
use crate::cli::lab_wan::{
    ShapingFlags, WanActions, apply_profiles, change_wan, impairer, show_impairment,
};
use anyhow::{Context, Result, bail};
use braid_lab::impair::parse_profiles;
use braid_lab::{ConfigOptions, Lab, LabSpec, NodeFiles};
use braid_plan::Plan;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub(crate) enum LabCommand {
    /// Build the lab and show braid's main job: address plan, routing, workloads, an exit,
    /// bonded uplinks, a failover.
    #[command(
        after_help = "Examples:\n  sudo braid lab up\n  sudo braid lab up --routing bird --nodes 5\n  sudo braid lab up --profiles n1w0=dsl,n1w1=lte --seconds 6\n  sudo braid lab up --exit 1 --failover-bound 30\n  sudo braid lab up --links-only --nodes 4\n  sudo braid lab up --links-only --nodes 2 --wans 2,1 --scheduler weighted\n\nBy default: 4 nodes over a hub (n1 with two uplinks, bonded), Babel routing, a workload\nnamespace brd-<name>-w<i> on each node's bridge, the last node an exit with an upstream router\nbrd-<name>-r and an internet host brd-<name>-i (2001:db8:fe::2, 192.0.2.2). It prints the\nworkload matrix, the internet through the exit, the bonded throughput and a failover.\n\nNode i lives in namespace brd-<name>-n<i>, with underlay addresses 198.18.0.i and 2001:db8::i;\nits config is <dir>/n<i>/config.json, the shared registry <dir>/registry.json.\nWith --wans, node i's uplink k is wan<k> with 198.18.<k>.i, through the hub brd-<name>-hub."
    )]
    Up {
        /// The flags of `braid lab up`.
        #[command(flatten)]
        args: UpArgs,
    },
    /// Shape, cut or restore one uplink of a lab built with --wans, in both directions.
    #[command(
        after_help = "Examples:\n  sudo braid lab wan --node 1 --wan 0 --rate 200\n  sudo braid lab wan --node 1 --wan 1 --rate 100 --loss 5\n  sudo braid lab wan --node 1 --wan 0 --profile dsl\n  sudo braid lab wan --node 1 --wan 1 --rate 30 --delay 25 --jitter 7.5 --loss 0.5\n  sudo braid lab wan --node 1 --wan 1 --rate 50/10 --delay 10 --burst-loss 1,25 --queue 400/100\n  sudo braid lab wan --show\n  sudo braid lab wan --node 1 --wan 1 --cut\n  sudo braid lab wan --node 1 --wan 1 --restore\n  sudo braid lab wan --node 1 --wan 1 --clear\n\n--rate and --loss set the uplink's shape as a whole: one left out is removed. A cut stays\nin place until --restore, whatever the shape. Only --rate and --loss, whole numbers for\nboth directions: the kernel shapes (tbf, nftables). Anything more (a profile, delay,\njitter, burst loss, queue, outage, DOWN/UP values, fractions): the impairment forwarder\nin the hub shapes the uplink, rate included (docs/lab.md)."
    )]
    Wan {
        #[arg(long, default_value = "lab")]
        name: String,
        /// The node (1-based).
        #[arg(long, required_unless_present = "show")]
        node: Option<usize>,
        /// The uplink (0-based: wan0, wan1, ...).
        #[arg(long, required_unless_present = "show")]
        wan: Option<usize>,
        /// How to shape the uplink.
        #[command(flatten)]
        shaping: Box<ShapingFlags>,
        /// Print every impaired direction's settings and counters.
        #[arg(long)]
        show: bool,
        /// Remove the uplink's shape or impairment.
        #[arg(long, conflicts_with_all = ["rate", "loss", "delay", "jitter", "reorder", "burst_loss", "queue", "outage", "profile"])]
        clear: bool,
        /// Drop everything over the uplink, both directions (the veth stays up).
        #[arg(long)]
        cut: bool,
        /// Undo --cut.
        #[arg(long, conflicts_with = "cut")]
        restore: bool,
        /// Take the node's wan<k> link down (its routes go with it): netlink events, unlike --cut.
        #[arg(long, conflicts_with_all = ["cut", "restore"])]
        down: bool,
        /// Bring the node's wan<k> link back up with its routes.
        #[arg(long, conflicts_with_all = ["cut", "restore", "down"])]
        up: bool,
    },
    /// The impairment forwarder (started by the lab in its hub namespace; not for use by hand).
    #[command(hide = true)]
    Impair,
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

/// The flags of `braid lab up` (documented in its help).
#[derive(clap::Args)]
pub(crate) struct UpArgs {
    /// Number of nodes, 2..=50 (1 with --bare or --plan-only).
    #[arg(long, default_value_t = 4, allow_negative_numbers = true)]
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
    /// Only build the namespaces and the underlay: no configs, no daemons (to run your
    /// own configs in the nodes with `ip netns exec brd-<name>-n<i> braid run -c ...`).
    #[arg(long, conflicts_with_all = ["plan_only", "scheduler"])]
    bare: bool,
    /// The minimal mesh: links only (routing mode none, no workloads, no exit, a full
    /// mesh of veth pairs unless --wans), a ping over every link and one throughput
    /// figure.
    #[arg(long)]
    links_only: bool,
    /// Routing mode of the nodes: static, babel (babeld) or bird (BIRD 2's Babel).
    #[arg(long, default_value = "babel", value_parser = ["static", "babel", "bird"], conflicts_with = "links_only")]
    routing: String,
    /// The exit node (its upstream router and the internet host beyond it); default the
    /// last node.
    #[arg(long, conflicts_with = "links_only", allow_negative_numbers = true)]
    exit: Option<usize>,
    /// Longest wait, in seconds, for traffic to return after the failover cut (0 skips
    /// the failover).
    #[arg(
        long,
        default_value_t = 15,
        conflicts_with = "links_only",
        allow_negative_numbers = true
    )]
    failover_bound: u64,
    /// Seconds of the iperf3 throughput run between n1 and n2 (0 to skip).
    #[arg(long, default_value_t = 2, allow_negative_numbers = true)]
    seconds: u32,
    /// WAN uplinks per node, comma-separated, the last repeating (`2`: every node has
    /// two; `2,1`: n1 has two, the others one). Nodes then reach each other through a
    /// hub namespace over veths wan0, wan1, ..., and every transport of a node with
    /// more than one uplink gets a path per uplink. Default `2,1`; with --links-only
    /// none (a full mesh of veth pairs).
    #[arg(long, value_name = "LIST")]
    wans: Option<String>,
    /// Scheduler of the multi-path transports (earliest-arrival, flow, round-robin,
    /// weighted, redundant, backup); braid's default (earliest-arrival) when left out.
    #[arg(long)]
    scheduler: Option<String>,
    /// Uplink profiles, comma-separated n<node>w<uplink>=PROFILE (fibre, dsl, lte, leo,
    /// geo), applied before the daemons start, e.g. `n1w0=dsl,n1w1=lte`.
    #[arg(long, value_name = "LIST")]
    profiles: Option<String>,
}

pub(super) fn lab_dir(name: &str, dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| PathBuf::from("/run/braid-lab").join(name))
}

pub(crate) fn run(command: LabCommand) -> Result<bool> {
    if !braid_lab::available() {
        bail!("the lab needs root and iproute2 (`ip netns`); run it as root");
    }
    match command {
        LabCommand::Up { args } => up_command(args),
        LabCommand::Wan {
            name,
            node,
            wan,
            shaping,
            show,
            clear,
            cut,
            restore,
            down,
            up,
        } => {
            let lab = Lab::attach(&name)?;
            lab.set_impairer(impairer(&name)?);
            if show {
                print!("{}", show_impairment(&lab)?);
                if node.is_none() {
                    return Ok(true);
                }
            }
            let (Some(node), Some(wan)) = (node, wan) else {
                bail!("give --node and --wan");
            };
            let actions = WanActions {
                clear,
                cut,
                restore,
                down,
                up,
            };
            let done = change_wan(&lab, node, wan, *shaping, &actions)?;
            println!("lab {name}: n{node} wan{wan}: {}", done.join("; "));
            Ok(true)
        }
        LabCommand::Impair => {
            braid_lab::impair::serve().context("the impairment forwarder")?;
            Ok(true)
        }
        LabCommand::Down { name, dir } => {
            down(&name, dir)?;
            Ok(true)
        }
        LabCommand::Cleanup => {
            braid_lab::cleanup(None).context("removing lab namespaces")?;
            println!("every brd-* lab namespace removed");
            Ok(true)
        }
    }
}

/// `braid lab up`: checks the flags, then builds the lab (bare, or with configs and
/// daemons, see [`up`]).
fn up_command(args: UpArgs) -> Result<bool> {
    let UpArgs {
        nodes,
        name,
        dir,
        plan_only,
        bare,
        links_only,
        routing,
        exit,
        failover_bound,
        seconds,
        wans,
        scheduler,
        profiles,
    } = args;
    let wans = match wans {
        Some(text) => braid_lab::parse_wans(&text)?,
        None if links_only || bare => Vec::new(),
        // n1 with two uplinks, the others one (a single node: two).
        None => vec![2, 1][..nodes.clamp(1, 2)].to_vec(),
    };
    if wans.is_empty() && (scheduler.is_some() || profiles.is_some()) {
        bail!("--scheduler and --profiles need uplinks: give --wans (e.g. --wans 2,1)");
    }
    check_scheduler(scheduler.as_deref())?;
    let profiles = match profiles {
        Some(text) => parse_profiles(&text).map_err(|e| anyhow::anyhow!("--profiles {e}"))?,
        None => Vec::new(),
    };
    if !links_only && !bare {
        check_routing_engine(&routing)?;
    }
    let exit = exit.unwrap_or(nodes);
    check_up_flags(&UpFlags {
        name: &name,
        nodes,
        exit: (!links_only && !bare).then_some(exit),
        single_node_ok: bare || plan_only,
        wans: &wans,
        profiles: &profiles,
    })?;
    let spec = LabSpec::new(&name, nodes).with_wans(&wans);
    let impair = |lab: &Lab| apply_profiles(lab, &name, &profiles);
    if bare {
        return up_bare(spec, impair);
    }
    let main = (!links_only).then_some(MainJob {
        routing,
        exit,
        failover_bound: Duration::from_secs(failover_bound),
    });
    let dir = lab_dir(&name, dir);
    up(spec, dir, plan_only, seconds, scheduler, main, impair)
}

/// `--scheduler`: one of braid's scheduler names, when given.
fn check_scheduler(scheduler: Option<&str>) -> Result<()> {
    use braid_model::extensions::Scheduler;
    if let Some(s) = scheduler
        && Scheduler::from_name(s).is_none()
    {
        bail!(
            "--scheduler `{s}` is not a scheduler; use one of {}",
            Scheduler::NAMES.join(", ")
        );
    }
    Ok(())
}

/// `--routing babel` and `--routing bird` need their routing daemon installed.
fn check_routing_engine(routing: &str) -> Result<()> {
    let (program, package) = match routing {
        "babel" => ("babeld", "babeld"),
        "bird" => ("bird", "bird2"),
        _ => return Ok(()),
    };
    if Command::new(program).arg("--version").output().is_err() {
        bail!(
            "--routing {routing} needs {program}, which is not installed: run scripts/deps.sh (Debian package {package}), or choose --routing static"
        );
    }
    Ok(())
}

/// `braid lab down`: the lab `name`'s namespaces and its directory (checked to be a lab's).
fn down(name: &str, dir: Option<PathBuf>) -> Result<()> {
    // An empty or odd name made the directory /run/braid-lab itself, every lab's.
    check_name(name)?;
    let dir = lab_dir(name, dir);
    if dir.exists() {
        check_lab_dir(&dir)?;
    }
    braid_lab::cleanup(Some(name)).context("removing the lab's namespaces")?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    println!("lab {name} removed");
    Ok(())
}

/// `braid lab up`'s flags, as far as they can be checked against each other before
/// anything is built.
struct UpFlags<'a> {
    name: &'a str,
    nodes: usize,
    /// The exit node, for the main job only.
    exit: Option<usize>,
    /// `--bare` and `--plan-only` may build a single node; the jobs need links.
    single_node_ok: bool,
    wans: &'a [usize],
    profiles: &'a [(usize, usize, braid_lab::Profile)],
}

/// A lab name: 1..=8 of a-z, 0-9 (its namespaces are `brd-<name>-*`, its files
/// /run/braid-lab/<name>).
fn check_name(name: &str) -> Result<()> {
    let ok = (1..=8).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok {
        bail!("--name `{name}`: a lab name is 1..=8 of a-z, 0-9");
    }
    Ok(())
}

/// `braid lab down` removes the lab's directory only when it holds nothing but what
/// `braid lab up` writes there (`registry.json`, `n<i>/`, logs such as `impair.log` and
/// `iperf3-server.log`), so that a wrong `--dir` takes nothing else with it.
fn check_lab_dir(dir: &Path) -> Result<()> {
    let unreadable = || format!("reading {}", dir.display());
    for entry in std::fs::read_dir(dir).with_context(unreadable)? {
        let entry = entry.with_context(unreadable)?;
        let file = entry.file_name();
        let file = file.to_string_lossy();
        let node_dir = file
            .strip_prefix('n')
            .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
            && entry.file_type().is_ok_and(|t| t.is_dir());
        let log = file.ends_with(".log") && entry.file_type().is_ok_and(|t| t.is_file());
        if !(node_dir || log || file == "registry.json") {
            bail!(
                "{}: not a lab's directory (it holds `{file}`, which braid lab up does not write); nothing removed: give the lab's own --dir, or remove it yourself",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Checks `braid lab up`'s flags before anything is built, so that a bad value names its
/// flag and the fix, and leaves nothing behind (nor replaces a running lab of that name).
fn check_up_flags(f: &UpFlags<'_>) -> Result<()> {
    check_name(f.name)?;
    let nodes = f.nodes;
    let max = braid_lab::MAX_NODES;
    if !(1..=max).contains(&nodes) {
        bail!("--nodes {nodes}: a lab has 1..={max} nodes");
    }
    if nodes < 2 && !f.single_node_ok {
        bail!(
            "--nodes {nodes}: the main job and --links-only need at least 2 nodes (links between them; 3 for the failover); --bare or --plan-only build a single node"
        );
    }
    if let Some(exit) = f.exit
        && !(1..=nodes).contains(&exit)
    {
        bail!(
            "--exit {exit}: the exit is one of the nodes 1..={nodes}; leave --exit out for the last"
        );
    }
    for &(i, k, profile) in f.profiles {
        let item = format!("n{i}w{k}={}", profile.name());
        if !(1..=nodes).contains(&i) {
            bail!("--profiles {item}: node {i} is not in the lab (--nodes {nodes}: n1..n{nodes})");
        }
        let uplinks = braid_lab::wans::wans_of(f.wans, i);
        if k >= uplinks {
            bail!(
                "--profiles {item}: n{i} has {uplinks} uplink{} (wan0..wan{}); give it more with --wans, or pick one of its uplinks",
                if uplinks == 1 { "" } else { "s" },
                uplinks.saturating_sub(1)
            );
        }
    }
    Ok(())
}

/// Prints node i's uplinks, one line per node.
fn print_uplinks(lab: &Lab) {
    println!(
        "uplinks through the hub {} (routes per uplink k in table 100+k; shape them with `braid lab wan`):",
        lab.hub()
    );
    for i in 1..=lab.nodes() {
        let uplinks: Vec<String> = (0..lab.wans(i))
            .map(|k| format!("wan{k} {}", lab.wan_addrs(i, k).v4))
            .collect();
        println!("  n{i}: {}", uplinks.join(", "));
    }
}

fn up_bare(spec: LabSpec, impair: impl Fn(&Lab) -> Result<()>) -> Result<bool> {
    let name = spec.name.clone();
    let lab = Lab::up(spec).context("building the lab")?;
    impair(&lab)?;
    println!(
        "lab {name}: {} nodes (namespaces {}..{}), no configs, no daemons",
        lab.nodes(),
        lab.ns(1),
        lab.ns(lab.nodes())
    );
    if lab.has_wans() {
        print_uplinks(&lab);
    }
    println!(
        "run a node: ip netns exec {} braid run -c CONFIG",
        lab.ns(1)
    );
    println!("remove it with: braid lab down --name {name}");
    lab.detach();
    Ok(true)
}

/// `braid lab up` with configs: builds the lab, writes and loads the configs (printing the
/// plans and stopping there with `plan_only`), starts a daemon per node, waits for the
/// links and runs the checks: the `main` job, or the links-only matrix and throughput.
fn up(
    spec: LabSpec,
    dir: PathBuf,
    plan_only: bool,
    seconds: u32,
    scheduler: Option<String>,
    main: Option<MainJob>,
    impair: impl Fn(&Lab) -> Result<()>,
) -> Result<bool> {
    let started = Instant::now();
    let name = &spec.name.clone();
    let dir = std::path::absolute(&dir).with_context(|| format!("resolving {}", dir.display()))?;
    let lab = Lab::up(spec).context("building the lab")?;
    impair(&lab)?;
    if let Some(job) = &main {
        lab.add_upstream(job.exit)
            .context("building the exit's upstream router and internet")?;
    }
    let files = write_configs(&lab, &dir, scheduler, main.as_ref())?;
    let plans = load_plans(&lab, &files, plan_only)?;
    if plan_only {
        println!("\nremove it with: braid lab down --name {name}");
        lab.detach();
        return Ok(true);
    }
    if let Some(job) = &main {
        print!("{}", lab_checks::address_plan(&plans, job.exit));
    }
    let exe = std::env::current_exe().context("finding the braid binary")?;
    let Some(links_up) = start_daemons(&lab, &exe, &files, &plans, &dir)? else {
        return Ok(leave_up(lab, name));
    };
    let checks = Checks {
        lab: &lab,
        exe: &exe,
        files: &files,
        plans: &plans,
        seconds,
        dir: &dir,
    };
    let Some(all_ok) = checks.run(main.as_ref(), links_up) else {
        return Ok(leave_up(lab, name));
    };
    print_next_steps(&lab, &dir, name, main.is_some(), started);
    lab.detach();
    Ok(all_ok)
}

/// Writes every node's config and the registry into `dir` (routing and exit from the
/// `main` job, routing `none` without one) and says where they are.
fn write_configs(
    lab: &Lab,
    dir: &Path,
    scheduler: Option<String>,
    main: Option<&MainJob>,
) -> Result<Vec<NodeFiles>> {
    let options = ConfigOptions {
        scheduler,
        routing: main.map_or("none".into(), |j| j.routing.clone()),
        hello_interval: main.map(|_| 1),
        exit: main.map(|j| j.exit),
        ..ConfigOptions::default()
    };
    let files = lab
        .write_configs(dir, &options)
        .context("writing the lab's configs")?;
    println!(
        "lab {}: {} nodes, routing {}, files in {}",
        lab.name(),
        lab.nodes(),
        options.routing,
        dir.display()
    );
    if lab.has_wans() {
        print_uplinks(lab);
    }
    Ok(files)
}

/// Loads each node's config into its plan; with `plan_only`, prints each plan.
fn load_plans(lab: &Lab, files: &[NodeFiles], plan_only: bool) -> Result<Vec<Plan>> {
    let mut plans = Vec::new();
    for f in files {
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
    Ok(plans)
}

/// Starts `braid run` in every node and waits for every link's handshake; returns when
/// the links came up, or `None` (after printing why) when they did not within 30 s.
fn start_daemons(
    lab: &Lab,
    exe: &Path,
    files: &[NodeFiles],
    plans: &[Plan],
    dir: &Path,
) -> Result<Option<Instant>> {
    let mut sockets = Vec::new();
    for f in files {
        let log = f.config.with_file_name("braid.log");
        lab.spawn_private_uapi(
            f.index,
            Command::new(exe).arg("run").arg("-c").arg(&f.config),
            Some(&log),
        )?;
        let (config, _) = braid_daemon::load::config(&f.config)
            .map_err(|problems| anyhow::anyhow!("{problems}"))?;
        sockets.push(PathBuf::from(config.control_socket));
    }
    let links: usize = plans.iter().map(|p| p.links.len()).sum();
    println!(
        "started {} daemons (`braid run`, logs in {}/n<i>/braid.log); waiting for {links} links to handshake",
        lab.nodes(),
        dir.display()
    );
    let waited = Instant::now();
    if let Err(e) = lab_checks::wait_for_handshakes(&sockets, Duration::from_secs(30)) {
        eprintln!("{e:#}");
        return Ok(None);
    }
    let links_up = Instant::now();
    println!(
        "all {links} links up in {:.1}s\n",
        (links_up - waited).as_secs_f64()
    );
    Ok(Some(links_up))
}

/// What the checks of a running lab need.
struct Checks<'a> {
    lab: &'a Lab,
    exe: &'a Path,
    files: &'a [NodeFiles],
    plans: &'a [Plan],
    /// Seconds of the throughput run (0 skips it).
    seconds: u32,
    dir: &'a Path,
}

impl Checks<'_> {
    /// The main job's checks, or (without one) the links-only matrix and throughput;
    /// whether all passed, or `None` (after printing why) when the main job could not run.
    fn run(&self, main: Option<&MainJob>, links_up: Instant) -> Option<bool> {
        let Some(job) = main else {
            return Some(self.links_only());
        };
        let Self {
            lab,
            exe,
            files,
            plans,
            seconds,
            dir,
        } = *self;
        match lab_checks::main_job(lab, exe, files, plans, job, seconds, dir, links_up) {
            Ok(ok) => Some(ok),
            Err(e) => {
                eprintln!("{e:#}");
                None
            }
        }
    }

    /// `--links-only`: a ping over every link and one throughput figure.
    fn links_only(&self) -> bool {
        let (matrix, all_ok) = lab_checks::connectivity_matrix(self.lab, self.plans);
        print!("{matrix}");
        if self.seconds > 0 && self.lab.nodes() >= 2 {
            match lab_checks::throughput(self.lab, self.plans, self.seconds, self.dir) {
                Ok(line) => println!("\n{line}"),
                Err(e) => eprintln!("\nthroughput: {e:#}"),
            }
        }
        all_ok
    }
}

/// The closing lines of `braid lab up`: how long it took, and how to look, enter and
/// remove the lab.
fn print_next_steps(lab: &Lab, dir: &Path, name: &str, main: bool, started: Instant) {
    println!(
        "\nlab up and checked in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "status:  braid status -c {}/n1/config.json   (or GET http://127.0.0.1:8091/status inside {})",
        dir.display(),
        lab.ns(1)
    );
    if main {
        println!(
            "shell:   ip netns exec {} bash   (node 1's workload; nodes are {}..{})",
            lab.workload_ns(1),
            lab.ns(1),
            lab.ns(lab.nodes())
        );
    } else {
        println!(
            "shell:   ip netns exec {} bash   (each node is a namespace; workloads are not attached)",
            lab.ns(1)
        );
    }
    println!("remove it with: braid lab down --name {name}");
}

/// Leaves a lab whose checks failed running for inspection; returns `false`.
fn leave_up(lab: Lab, name: &str) -> bool {
    lab.detach();
    eprintln!("the lab is left up for inspection; remove it with: braid lab down --name {name}");
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_lab::Profile;

    fn flags<'a>(nodes: usize, exit: Option<usize>, wans: &'a [usize]) -> UpFlags<'a> {
        UpFlags {
            name: "t",
            nodes,
            exit,
            single_node_ok: false,
            wans,
            profiles: &[],
        }
    }

    fn error(f: &UpFlags<'_>) -> String {
        check_up_flags(f).unwrap_err().to_string()
    }

    #[test]
    fn bad_node_counts_name_the_nodes_flag() {
        // Was "--exit 0: the exit is one of the nodes 1..=0".
        assert_eq!(
            error(&flags(0, Some(0), &[2, 1])),
            "--nodes 0: a lab has 1..=50 nodes"
        );
        assert!(error(&flags(51, Some(51), &[2, 1])).starts_with("--nodes 51: a lab has 1..=50"));
        // One node has no links: the main job would print an empty matrix and "checked".
        assert!(error(&flags(1, Some(1), &[2])).contains("need at least 2 nodes"));
        assert!(error(&flags(1, None, &[])).contains("--bare or --plan-only"));
        let single = UpFlags {
            single_node_ok: true,
            ..flags(1, None, &[])
        };
        assert!(check_up_flags(&single).is_ok());
        assert!(check_up_flags(&flags(2, Some(2), &[2, 1])).is_ok());
    }

    #[test]
    fn a_bad_exit_or_name_is_refused() {
        assert!(
            error(&flags(3, Some(9), &[2, 1]))
                .starts_with("--exit 9: the exit is one of the nodes 1..=3")
        );
        let name = UpFlags {
            name: "NB",
            ..flags(4, Some(4), &[2, 1])
        };
        assert!(error(&name).starts_with("--name `NB`"));
    }

    #[test]
    fn down_removes_only_a_labs_directory() {
        // `braid lab down --name ''` removed /run/braid-lab, every lab's files.
        for bad in ["", "NB", "a/b", "..", "toolongname"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("nb").is_ok());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("registry.json"), "{}").unwrap();
        std::fs::write(dir.path().join("impair.log"), "").unwrap();
        std::fs::write(dir.path().join("iperf3-server.log"), "").unwrap();
        std::fs::create_dir(dir.path().join("n1")).unwrap();
        std::fs::write(dir.path().join("n1/config.json"), "{}").unwrap();
        std::fs::create_dir(dir.path().join("n12")).unwrap();
        check_lab_dir(dir.path()).unwrap();
        // Anything else (another lab's directory, a file of the user's): left alone.
        std::fs::create_dir(dir.path().join("nb")).unwrap();
        let err = check_lab_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("not a lab's directory (it holds `nb`"),
            "{err}"
        );
        std::fs::remove_dir(dir.path().join("nb")).unwrap();
        std::fs::write(dir.path().join("n2"), "a file, not a node's directory").unwrap();
        assert!(check_lab_dir(dir.path()).is_err());
    }

    #[test]
    fn profiles_are_checked_against_nodes_and_uplinks_before_building() {
        // These were found only after the lab was built (and a running lab of the same
        // name replaced).
        let profiles = [(9, 0, Profile::Dsl)];
        let f = UpFlags {
            profiles: &profiles,
            ..flags(4, Some(4), &[2, 1])
        };
        assert!(error(&f).starts_with("--profiles n9w0=dsl: node 9 is not in the lab"));
        let profiles = [(1, 1, Profile::Dsl), (2, 1, Profile::Lte)];
        let f = UpFlags {
            profiles: &profiles,
            ..flags(4, Some(4), &[2, 1])
        };
        assert_eq!(
            error(&f),
            "--profiles n2w1=lte: n2 has 1 uplink (wan0..wan0); give it more with --wans, or pick one of its uplinks"
        );
        let profiles = [
            (1, 0, Profile::Dsl),
            (1, 1, Profile::Lte),
            (4, 0, Profile::Leo),
        ];
        let f = UpFlags {
            profiles: &profiles,
            ..flags(4, Some(4), &[2, 1])
        };
        assert!(check_up_flags(&f).is_ok());
    }
}
