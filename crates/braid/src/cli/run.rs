//! `braid run`: the daemon in the foreground; `braid up`: the kernel backend's one-shot.

use anyhow::{Context, Result, bail};
use braid_daemon::kernel::{self, KernelBackend};
use braid_daemon::load;
use braid_daemon::reconciler::Reconciler;
use braid_daemon::userspace::UserspaceBackend;
use braid_model::extensions::{Backend, RoutingMode};
use std::path::Path;

/// Each link holds a TUN device, a UDP socket and a UAPI socket: a large mesh needs more
/// descriptors than the usual soft limit of 1024, so raise it to the hard limit.
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The backend `braid run` and `braid up` use, from the config's `backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chosen {
    Kernel,
    Userspace,
}

/// The first transport that bonds several paths (only the userspace backend does that).
fn multipath(config: &braid_model::Config) -> Option<usize> {
    braid_model::support::first_multipath(config)
}

pub(crate) fn choose(config_path: &Path, config: &braid_model::Config) -> Result<Chosen> {
    let bonded = multipath(config);
    Ok(match config.backend {
        Backend::Userspace => Chosen::Userspace,
        Backend::Kernel => {
            // Multi-path transports with "kernel" were refused by `load_runnable`.
            if !kernel::available() {
                bail!(
                    "{}: backend: \"kernel\", but {}",
                    config_path.display(),
                    braid_system::SystemError::NoWireGuard
                );
            }
            Chosen::Kernel
        }
        Backend::Auto => {
            if let Some(i) = bonded {
                tracing::info!(
                    "backend auto: transport[{i}] bonds several paths, which only the userspace backend does; using it"
                );
                Chosen::Userspace
            } else if kernel::available() {
                tracing::info!("backend auto: this kernel has WireGuard; using the kernel backend");
                Chosen::Kernel
            } else {
                tracing::info!(
                    "backend auto: this kernel has no WireGuard; using the userspace backend"
                );
                Chosen::Userspace
            }
        }
    })
}

/// The config, with warnings logged; what this build cannot run is refused, by the same
/// check `braid check` and every reload make (`braid_model::support::unsupported`).
fn load_runnable(config_path: &Path) -> Result<braid_model::Config> {
    let (config, warnings) =
        load::config(config_path).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    for warning in &warnings.0 {
        tracing::warn!("{warning}");
    }
    let refused = braid_model::support::unsupported(&config, &config_path.display().to_string());
    if refused.has_errors() {
        bail!("{refused}");
    }
    Ok(config)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub(crate) fn run(config_path: &Path) -> Result<bool> {
    raise_file_limit();
    let config = load_runnable(config_path)?;
    // One daemon per control socket: taken before anything is touched, held until exit.
    let _instance = braid_daemon::instance::acquire_for_start(Path::new(&config.control_socket))?;
    let path = config_path.to_path_buf();
    // systemd (Type=notify) hears READY=1 from the daemon's `ready` hook and STOPPING=1
    // when a stop signal arrives or the daemon returns (`braid down`).
    let ready = super::service::ready;
    let rt = runtime()?;
    let result = match choose(config_path, &config)? {
        Chosen::Kernel => rt.block_on(async {
            super::service::stopping_on_signal();
            braid_daemon::run::run(path, KernelBackend::new(), ready).await
        }),
        Chosen::Userspace => rt.block_on(async {
            super::service::stopping_on_signal();
            braid_daemon::run::run(path, UserspaceBackend::new(), ready).await
        }),
    };
    super::service::stopping();
    result?;
    Ok(true)
}

/// `braid up`: one-shot, like ranet's. Brings the kernel's WireGuard links, the VRF and the
/// static routes in line with the plan and exits; links already as planned are left alone.
pub(crate) fn up(config_path: &Path) -> Result<bool> {
    let config = load_runnable(config_path)?;
    if config.routing.mode == RoutingMode::Babel || config.routing.mode == RoutingMode::Bird {
        bail!(
            "{}: routing.mode: \"{}\" needs the routing engine supervised by a daemon; run `braid run -c {}`, or use \"static\" or \"none\" with `braid up`",
            config_path.display(),
            config.routing.mode.name(),
            config_path.display()
        );
    }
    if let Some(i) = multipath(&config) {
        bail!(
            "{}: transport[{i}]: multi-path links (\"paths\", \"wan\") are carried by the userspace backend, which needs a running process; use `braid run -c {}`",
            config_path.display(),
            config_path.display()
        );
    }
    match config.backend {
        Backend::Userspace => bail!(
            "{}: backend: \"userspace\" links need a running process, and `braid up` configures the kernel and exits; use `braid run -c {}`, or \"backend\": \"kernel\" (or \"auto\") on a kernel with WireGuard",
            config_path.display(),
            config_path.display()
        ),
        Backend::Auto | Backend::Kernel if !kernel::available() => bail!(
            "{}: `braid up` uses kernel WireGuard, but {}; use `braid run -c {}` for the userspace backend",
            config_path.display(),
            braid_system::SystemError::NoWireGuard,
            config_path.display()
        ),
        _ => {}
    }
    // A running daemon of this control socket holds its lock: refuse before touching
    // anything (and keep a second `up` from running beside this one).
    let _instance = braid_daemon::instance::acquire_for_start(Path::new(&config.control_socket))?;
    let rt = runtime()?;
    let socket = std::path::PathBuf::from(&config.control_socket);
    if rt
        .block_on(braid_daemon::control::call(
            &socket,
            &braid_daemon::control::Request::Status,
        ))
        .is_ok()
    {
        bail!(
            "a daemon already runs this config (control socket {}); change it with `braid reload -c {}`",
            socket.display(),
            config_path.display()
        );
    }
    rt.block_on(async {
        let mut r = Reconciler::new(config_path, KernelBackend::new());
        let summary = r.reload()?;
        // Links whose endpoint is a DNS name came up without one: point them now.
        for link in r.due_for_resolve(true, std::time::SystemTime::now()) {
            if let Some(endpoint) = &link.endpoint
                && let Some(addr) =
                    braid_daemon::userspace::resolve_async(endpoint, link.family).await
            {
                r.resolved(&link, addr);
            }
        }
        braid_daemon::run::account_groups(&r)
            .await
            .context("interface group accounting")?;
        let routes = braid_daemon::routing::apply(&r)
            .await
            .context("the node network and routes")?;
        println!(
            "up: {summary}; routes: {} added, {} removed",
            routes.added, routes.removed
        );
        // Routes or rules braid wants but could not set up (the rest were applied).
        for failure in &routes.failed {
            eprintln!("error: {failure}");
        }
        Ok(summary.failed.is_empty() && routes.failed.is_empty())
    })
}
