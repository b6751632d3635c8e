//! `braid run`: the daemon in the foreground.

use anyhow::{Context, Result, bail};
use braid_daemon::load;
use braid_daemon::userspace::UserspaceBackend;
use braid_model::extensions::Backend;
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

pub fn run(config_path: &Path) -> Result<bool> {
    raise_file_limit();
    let (config, warnings) =
        load::config(config_path).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    for warning in &warnings.0 {
        tracing::warn!("{warning}");
    }
    if let Some((i, _)) = config
        .transports
        .iter()
        .enumerate()
        .find(|(_, t)| t.wan_auto)
    {
        bail!(
            "{}: transport[{i}]: wan: \"auto\" (finding uplinks by their routes) is not part of this build yet; list the uplinks in \"paths\" instead",
            config_path.display()
        );
    }
    let backend = match config.backend {
        Backend::Auto | Backend::Userspace => UserspaceBackend::new(),
        Backend::Kernel => bail!(
            "{}: backend: the kernel WireGuard backend is not part of this build yet; set \"backend\": \"userspace\" (or \"auto\")",
            config_path.display()
        ),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(braid_daemon::run::run(config_path.to_path_buf(), backend))?;
    Ok(true)
}
