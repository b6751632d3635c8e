//! `braid`: a routed WireGuard mesh with multi-WAN bonding. One binary, daemon and CLI.

mod cli;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// braid turns a list of machines into one private, routed network.
///
/// It reads a registry of nodes and this node's config (ranet's formats, plus optional
/// extensions) and builds one point-to-point WireGuard link per peer and transport.
#[derive(Parser)]
#[command(name = "braid", version, about)]
#[command(
    after_help = "Examples:\n  braid keygen > key && braid pubkey < key\n  braid check -c /etc/braid/config.json\n  braid plan -c /etc/braid/config.json --json\n  braid lab up --nodes 4\n\nDocs: docs/cli.md, docs/config.md, docs/registry.md"
)]
struct Cli {
    /// Log level: off, error, warn, info, debug, trace, or a filter such as
    /// `info,braid_link=debug` [default: $BRAID_LOG, else $RUST_LOG, else info].
    #[arg(long, global = true, value_name = "LEVEL", value_parser = cli::logging::parse_level)]
    log_level: Option<String>,
    /// Log lines on stderr: text, or json (one object per line) for log shippers.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        default_value = "text",
        env = "BRAID_LOG_FORMAT"
    )]
    log_format: cli::logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config and the registry it names; exit 1 listing every problem.
    #[command(
        after_help = "Example:\n  braid check -c /etc/braid/config.json\n\nExit status: 0 when valid (warnings go to stderr), 1 when there are errors."
    )]
    Check {
        /// The node's config file (JSON, comments allowed).
        #[arg(short, long, value_name = "CONFIG")]
        config: PathBuf,
    },
    /// Show the links and addresses this node would have.
    #[command(
        after_help = "Examples:\n  braid plan -c /etc/braid/config.json\n  braid plan -c /etc/braid/config.json --json | jq '.links[].name'\n\nThe JSON schema is documented in docs/plan-json.md."
    )]
    Plan {
        #[arg(short, long, value_name = "CONFIG")]
        config: PathBuf,
        /// Print the plan as JSON (stable, versioned schema).
        #[arg(long)]
        json: bool,
    },
    /// Write a new node's config and private key file, and print its registry entry.
    #[command(
        after_help = "Examples:\n  braid init -c /etc/braid/config.json --registry https://reg.example.net/registry.json \\\n      --address 192.0.2.1 --address ip6= --address-plan 2001:db8:5e::/48 --name n6\n  braid init -c node.json --registry registry.json --address 192.0.2.7 --send-port 40007 --routing none\n\nRefuses to overwrite the config or the key file. The key file is written 0600.\nPrints the node's registry entry on stdout (like `braid meta`)."
    )]
    Init(cli::init::InitArgs),
    /// Print a new private key (base64), like `wg genkey`.
    #[command(after_help = "Example:\n  braid keygen > /etc/braid/private.key")]
    Keygen,
    /// Read a private key on stdin, print its public key, like `wg pubkey`.
    #[command(after_help = "Example:\n  braid keygen | tee private.key | braid pubkey")]
    Pubkey,
    /// Print this node's registry entry, derived from its config (like ranet's meta).
    #[command(after_help = "Example:\n  braid meta -c /etc/braid/config.json >> entries.json")]
    Meta {
        #[arg(short, long, value_name = "CONFIG")]
        config: PathBuf,
    },
    /// Print the routes the upstream router needs to reach the mesh through this exit.
    #[command(
        after_help = "Examples:\n  braid routes --upstream -c /etc/braid/exit.json\n  braid routes --upstream -c /etc/braid/exit.json --format bird\n  braid routes --upstream -c /etc/braid/exit.json --format ip | ssh router sh\n  braid routes --upstream --aggregate -c /etc/braid/exit.json   # one route, set once\n\nThe next hop is this exit's address on its upstream interface (read from the system, or --via6/--via4)."
    )]
    Routes {
        #[arg(short, long, value_name = "CONFIG")]
        config: PathBuf,
        /// The routes toward the mesh for the upstream router (the only kind so far).
        #[arg(long, required = true)]
        upstream: bool,
        #[arg(long, value_enum, default_value = "ip")]
        format: cli::routes::Format,
        /// The exit's upstream-facing IPv6 address (default: read from the upstream interface).
        #[arg(long)]
        via6: Option<std::net::IpAddr>,
        /// The exit's upstream-facing IPv4 address, for /24 routes when IPv4 is not masqueraded.
        #[arg(long)]
        via4: Option<std::net::IpAddr>,
        /// One route for the network's whole allocation (and IPv4 pool) instead of one per
        /// node: set once on the upstream router, right however the mesh grows.
        #[arg(long)]
        aggregate: bool,
    },
    /// Run the daemon in the foreground: bring up every planned link and keep them in step.
    #[command(
        after_help = "Examples:\n  braid run -c /etc/braid/config.json\n  braid run -c /etc/braid/config.json --log-level debug --log-format json\n\nReloads on SIGHUP and `braid reload`; SIGTERM/SIGINT or `braid down` remove everything it made.\nUnder systemd (Type=notify) it reports READY=1 once the links, routes and control socket are up,\nand STOPPING=1 when it starts taking them down."
    )]
    Run {
        #[arg(short, long, value_name = "CONFIG")]
        config: PathBuf,
    },
    /// Bring the links up with kernel WireGuard and exit (one-shot, like ranet's `up`).
    #[command(
        after_help = "Example:\n  braid up -c /etc/braid/config.json\n\nNeeds kernel WireGuard (backend \"kernel\" or \"auto\") and routing mode \"static\" or \"none\".\nRunning it again applies changes: links already as planned are left alone, removed peers' links go.\n`braid down` removes everything."
    )]
    Up {
        #[arg(short, long, value_name = "CONFIG")]
        config: PathBuf,
    },
    /// Ask the running daemon to re-read config and registry and reconcile.
    #[command(
        after_help = "Example:\n  braid reload -c /etc/braid/config.json\n\nExit status 1 when the new input is invalid: the running network then stays as it was.\nSIGHUP to `braid run` does the same."
    )]
    Reload {
        /// The node's config; only its `control_socket` is used.
        #[arg(short, long, value_name = "CONFIG")]
        config: Option<PathBuf>,
        /// The daemon's control socket (default: the config's, else /run/braid/braid.sock).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Show the running daemon's links: state, peer, endpoint, handshake, traffic.
    #[command(
        after_help = "Examples:\n  braid status -c /etc/braid/config.json\n  braid status -c /etc/braid/config.json --json\n  braid status --socket /run/braid/braid.sock --watch\n\nThe daemon is found by its control socket: --socket, else the config's control_socket (read even from a\nconfig with errors), else /run/braid/braid.sock.\nThe same JSON is served at GET /status and as Prometheus metrics at GET /metrics (config status.listen).\nThe JSON schema is documented in docs/status-json.md."
    )]
    Status {
        /// The node's config; only its `control_socket` is used.
        #[arg(short, long, value_name = "CONFIG")]
        config: Option<PathBuf>,
        /// The daemon's control socket (default: the config's, else /run/braid/braid.sock).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Print the documented JSON document.
        #[arg(long)]
        json: bool,
        /// Refresh every second, in place, until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Remove every interface braid made, through the daemon or directly if it is gone.
    #[command(
        after_help = "Example:\n  braid down -c /etc/braid/config.json\n\nWorks after the daemon was killed: braid's interfaces are found by interface group, and the links'\nstale UAPI sockets and the control socket are removed. Says so when there was nothing to remove."
    )]
    Down {
        /// The node's config: its control socket, and braid's interface groups when no
        /// daemon answers.
        #[arg(short, long, value_name = "CONFIG")]
        config: Option<PathBuf>,
        /// The daemon's control socket (default: the config's, else /run/braid/braid.sock).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Signing keys and signatures for the registry (minisign format).
    #[command(
        after_help = "Examples:\n  braid registry keygen -s /root/braid-registry.key -p braid-registry.pub\n  braid registry sign -s /root/braid-registry.key registry.json\n  braid registry verify -p braid-registry.pub registry.json"
    )]
    Registry {
        #[command(subcommand)]
        command: cli::registry::RegistryCommand,
    },
    /// Run a whole mesh on this machine in network namespaces (needs root).
    #[command(
        after_help = "Examples:\n  sudo braid lab up --nodes 4\n  sudo braid lab down\n  sudo braid lab cleanup   # after a killed run"
    )]
    Lab {
        #[command(subcommand)]
        command: cli::lab::LabCommand,
    },
    /// Print a shell completion script (bash, zsh or fish), generated from this CLI.
    #[command(
        after_help = "Examples:\n  source <(braid completions bash)\n  braid completions bash > /usr/share/bash-completion/completions/braid\n  braid completions zsh > /usr/share/zsh/vendor-completions/_braid\n  braid completions fish > /usr/share/fish/vendor_completions.d/braid.fish\n\nThe Debian package installs all three."
    )]
    Completions {
        #[arg(value_enum)]
        shell: cli::docgen::Shell,
    },
    /// Print the braid(8) man page, or write every page (braid-SUBCOMMAND.8) into DIR.
    #[command(
        after_help = "Examples:\n  braid man | man -l -\n  braid man /usr/local/share/man/man8 && mandb -q\n\nThe pages are generated from this CLI's definition, as --help is; the Debian package installs them."
    )]
    Man {
        /// Directory to write every page into (created if missing); one path per line on stdout.
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // Behave like other Unix tools when stdout is a closed pipe (`braid plan | head`).
    // SAFETY: called before any thread starts; restores the default disposition of SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    cli::logging::init(cli.log_level.as_deref(), cli.log_format);
    let json = cli.log_format == cli::logging::Format::Json;
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            // Problems from validation carry their own `error: ` prefix: print one, not two.
            let text = format!("{e:#}");
            if json {
                // One more log line for the shipper, not a stray line of text.
                tracing::error!("{}", text.strip_prefix("error: ").unwrap_or(&text));
            } else if text.starts_with("error: ") {
                eprintln!("{text}");
            } else {
                eprintln!("error: {text}");
            }
            ExitCode::FAILURE
        }
    }
}

fn status(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn target<'a>(
    config: &'a Option<PathBuf>,
    socket: &'a Option<PathBuf>,
) -> cli::control::Target<'a> {
    cli::control::Target {
        config: config.as_deref(),
        socket: socket.as_deref(),
    }
}

fn run(command: Command) -> Result<ExitCode> {
    Ok(match command {
        Command::Check { config } => cli::check::run(&config),
        Command::Plan { config, json } => status(cli::plan::run(&config, json)?),
        Command::Init(args) => status(cli::init::run(&args)?),
        Command::Keygen => {
            cli::keys::keygen()?;
            ExitCode::SUCCESS
        }
        Command::Pubkey => {
            cli::keys::pubkey()?;
            ExitCode::SUCCESS
        }
        Command::Meta { config } => status(cli::meta::run(&config)?),
        Command::Routes {
            config,
            upstream: _,
            format,
            via6,
            via4,
            aggregate,
        } => status(cli::routes::run(&config, format, via6, via4, aggregate)?),
        Command::Run { config } => status(cli::run::run(&config)?),
        Command::Up { config } => status(cli::run::up(&config)?),
        Command::Reload { config, socket } => {
            status(cli::control::reload(&target(&config, &socket))?)
        }
        Command::Status {
            config,
            socket,
            json,
            watch,
        } => status(cli::control::status(
            &target(&config, &socket),
            json,
            watch,
        )?),
        Command::Down { config, socket } => status(cli::control::down(&target(&config, &socket))?),
        Command::Lab { command } => status(cli::lab::run(command)?),
        Command::Completions { shell } => {
            cli::docgen::completions(Cli::command(), shell, &mut std::io::stdout().lock());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => {
            cli::docgen::man(Cli::command(), dir.as_deref())?;
            ExitCode::SUCCESS
        }
        Command::Registry { command } => status(cli::registry::run(command)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every visible subcommand, at every depth, as its page name (`braid-lab-up`).
    fn subcommands(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("{prefix}-{}", sub.get_name());
            subcommands(sub, &name, out);
            out.push(name);
        }
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_a_man_page_with_its_synopsis() {
        let pages = cli::docgen::pages(Cli::command()).unwrap();
        let mut wanted = vec!["braid".to_string()];
        subcommands(
            &Cli::command().disable_help_subcommand(true),
            "braid",
            &mut wanted,
        );
        assert!(wanted.contains(&"braid-lab-up".to_string()), "{wanted:?}");
        for name in &wanted {
            let file = format!("{name}.8");
            let (_, text) = pages
                .iter()
                .find(|(f, _)| *f == file)
                .unwrap_or_else(|| panic!("no man page {file}"));
            let text = String::from_utf8_lossy(text);
            assert!(text.contains(".TH"), "{file}: {text}");
            // The synopsis names the command as typed: `braid lab up`.
            let typed = name.replace('-', " ");
            assert!(
                text.contains(&typed) || text.contains(&name.replace('-', r"\-")),
                "{file}: {text}"
            );
        }
        assert_eq!(
            pages.len(),
            wanted.len(),
            "pages: {:?}",
            pages.iter().map(|p| &p.0).collect::<Vec<_>>()
        );
    }
}
