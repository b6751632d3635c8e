//! `braid reload`, `braid status` and `braid down`: talk to the running daemon over its
//! control socket: `--socket`, else the config's `control_socket`, else the default. A
//! config with errors does not hide the daemon: the socket is still read from it if it is
//! readable JSON, and the default used if not.

use anyhow::{Context, Result, anyhow, bail};
use braid_daemon::control::{self, ControlError, Reply, Request};
use braid_daemon::load;
use braid_model::config::DEFAULT_CONTROL_SOCKET;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Where to reach the daemon: `--socket`, or what the config names, or the default.
pub(crate) struct Target<'a> {
    pub config: Option<&'a Path>,
    pub socket: Option<&'a Path>,
}

impl Target<'_> {
    /// The control socket; a config with errors gets a one-line warning, not a failure. A
    /// config this user may not read is an error: the socket it names is unknown, and the
    /// default one would be the wrong daemon's.
    fn socket(&self) -> Result<PathBuf> {
        if let Some(socket) = self.socket {
            return Ok(socket.to_path_buf());
        }
        let Some(config) = self.config else {
            return Ok(PathBuf::from(DEFAULT_CONTROL_SOCKET));
        };
        if let Err(e) = std::fs::File::open(config)
            && e.kind() == ErrorKind::PermissionDenied
        {
            bail!(
                "permission denied reading {}: a config holds a private key and is root's (mode 0600); run this as root (sudo)",
                config.display()
            );
        }
        Ok(match load::config(config) {
            Ok((c, _)) => PathBuf::from(c.control_socket),
            Err(problems) => {
                let socket = load::control_socket_despite_errors(config)
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET));
                let errors = problems.errors().count();
                eprintln!(
                    "warning: {}: {errors} error{} (`braid check -c {}` lists them); asking the daemon at {}",
                    config.display(),
                    if errors == 1 { "" } else { "s" },
                    config.display(),
                    socket.display()
                );
                socket
            }
        })
    }

    fn run_hint(&self) -> String {
        match self.config {
            Some(c) => format!("braid run -c {}", c.display()),
            None => "braid run -c CONFIG".into(),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Whether the call failed because the socket is root's and this user is not.
fn permission_denied(e: &ControlError) -> bool {
    matches!(e, ControlError::Io { source, .. } if source.kind() == ErrorKind::PermissionDenied)
}

/// One message for a failed call, naming the socket and the likely fix.
fn explain(e: &ControlError, target: &Target) -> anyhow::Error {
    match e {
        ControlError::Io { path, source } => match source.kind() {
            ErrorKind::PermissionDenied => anyhow!(
                "permission denied: the control socket {path} is root's (mode 0600 in a root-only directory); run this as root (sudo)"
            ),
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => anyhow!(
                "no daemon answered on control socket {path} ({source}); is `{}` running?",
                target.run_hint()
            ),
            _ => anyhow!("control socket {path}: {source}"),
        },
        ControlError::BadReply { path, source } => {
            anyhow!("control socket {path}: the daemon's reply is not valid: {source}")
        }
    }
}

fn call(rt: &tokio::runtime::Runtime, target: &Target, request: Request) -> Result<Reply> {
    let path = target.socket()?;
    rt.block_on(control::call(&path, &request))
        .map_err(|e| explain(&e, target))
}

/// `braid reload`: exit status says whether the new config was applied.
pub(crate) fn reload(target: &Target) -> Result<bool> {
    let reply = call(&runtime()?, target, Request::Reload)?;
    if reply.ok {
        println!("{}", reply.message);
    } else {
        eprintln!("{}", reply.message);
    }
    Ok(reply.ok)
}

/// `braid status [--json] [--watch]`.
pub(crate) fn status(target: &Target, json: bool, watch: bool) -> Result<bool> {
    let rt = runtime()?;
    // Found once: `--watch` keeps asking the same daemon while the config is edited (a
    // half-written file made it ask the default socket and exit, lab finding).
    let socket = target.socket()?;
    loop {
        let reply = rt
            .block_on(control::call(&socket, &Request::Status))
            .map_err(|e| explain(&e, target))?;
        let Some(doc) = reply.status else {
            // Busy, or a request the daemon refused: an error like the others.
            eprintln!("error: {}", reply.message);
            return Ok(false);
        };
        let text = if json {
            serde_json::to_string_pretty(&doc)? + "\n"
        } else {
            crate::cli::status_table::render_json(&doc)?
        };
        if !watch {
            print!("{text}");
            return Ok(true);
        }
        // Redraw in place: home the cursor, print, clear what the last frame left below.
        print!("\x1b[H{}\x1b[J", text.replace('\n', "\x1b[K\n"));
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// How long `braid down` waits for a daemon that did not answer to let go of its lock (a
/// killed process with many threads and devices takes a moment to finish exiting).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The instance lock of `socket`, waiting up to [`LOCK_WAIT`]. A daemon that holds it all
/// that time but does not answer is alive (or stuck): its interfaces are not pulled from
/// under it. Holding the lock keeps a new daemon from starting during the cleanup.
fn lock_when_free(socket: &Path) -> Result<braid_daemon::instance::InstanceLock> {
    use braid_daemon::instance::{InstanceError, acquire};
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match acquire(socket) {
            Ok(lock) => return Ok(lock),
            Err(InstanceError::Running { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(InstanceError::Running { pid, .. }) => bail!(
                "a braid daemon (pid {}) holds control socket {} but did not answer within {} s; stop it first (kill it), then run braid down again",
                pid.map_or("unknown".to_string(), |p| p.to_string()),
                socket.display(),
                LOCK_WAIT.as_secs()
            ),
            Err(other) => return Err(other.into()),
        }
    }
}

/// `braid down`: asks the daemon to remove everything; without a daemon (killed, or the
/// kernel backend's one-shot `up`), removes what braid left directly: its interface groups,
/// routes and NAT, the links' UAPI sockets and the control socket. Says what it removed,
/// and that there was nothing when there was nothing.
pub(crate) fn down(target: &Target) -> Result<bool> {
    let rt = runtime()?;
    let socket = target.socket()?;
    match rt.block_on(control::call(&socket, &Request::Down)) {
        Ok(reply) => {
            println!("{}", reply.message);
            return Ok(reply.ok);
        }
        Err(e) if permission_denied(&e) => return Err(explain(&e, target)),
        Err(e) => tracing::info!("no daemon answered ({e}); removing what braid left directly"),
    }
    let Some(config_path) = target.config else {
        bail!(
            "no daemon answered on control socket {}; give -c CONFIG so that braid down can find braid's interfaces itself",
            socket.display()
        );
    };
    let (config, _) = load::config(config_path).map_err(|problems| anyhow!("{problems}"))?;
    let _instance = lock_when_free(Path::new(&config.control_socket))?;
    let left = remove_what_braid_left(&rt, config_path, &config)?;
    if left.is_empty() {
        println!("down: no daemon was running and braid had left nothing to remove");
    } else {
        println!("down: no daemon was running; removed {}", left.join(", "));
    }
    Ok(true)
}

/// `braid down` without a daemon: removes braid's routes and NAT, its interface groups,
/// the links' UAPI sockets and the control socket of the config at `config_path`; returns
/// what it removed, one phrase each.
fn remove_what_braid_left(
    rt: &tokio::runtime::Runtime,
    config_path: &Path,
    config: &braid_model::Config,
) -> Result<Vec<String>> {
    if let Err(e) = rt.block_on(braid_daemon::routing::teardown(config)) {
        tracing::warn!("removing braid's routes and NAT table: {e}");
    }
    let interfaces = rt
        .block_on(interfaces_in_groups(config))
        .context("listing braid's interfaces")?;
    rt.block_on(braid_daemon::run::delete_groups(
        config.netns.as_deref(),
        config.active_group,
        config.stale_group,
    ))
    .context("deleting braid's interface groups")?;
    // The links' UAPI sockets: those of the interfaces just removed, and of every planned
    // link (an interface may be gone already while its socket stayed).
    let planned: Vec<String> = load::load(config_path)
        .map(|l| l.plan.links.iter().map(|link| link.name.clone()).collect())
        .unwrap_or_default();
    let sockets = braid_daemon::cleanup::remove_stale_uapi_sockets(
        Path::new(braid_daemon::cleanup::UAPI_DIR),
        interfaces.iter().chain(&planned).map(String::as_str),
    );
    let control_socket = std::fs::remove_file(&config.control_socket).is_ok();
    Ok(removed(config, &interfaces, sockets.len(), control_socket))
}

/// The interfaces in braid's active and stale groups.
async fn interfaces_in_groups(
    config: &braid_model::Config,
) -> Result<Vec<String>, braid_system::SystemError> {
    let nl = braid_system::Netlink::connect_in(config.netns.as_deref())?;
    let mut names = Vec::new();
    for group in [config.active_group, config.stale_group] {
        names.extend(nl.links_in_group(group).await?.into_iter().map(|l| l.name));
    }
    Ok(names)
}

/// What `braid down` removed without a daemon, one phrase each: the `interfaces`, the
/// number of stale UAPI `sockets`, and whether the stale `control_socket` was removed.
fn removed(
    config: &braid_model::Config,
    interfaces: &[String],
    sockets: usize,
    control_socket: bool,
) -> Vec<String> {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let mut removed = Vec::new();
    if !interfaces.is_empty() {
        removed.push(format!(
            "{} interface{} ({}; interface groups {} and {} deleted)",
            interfaces.len(),
            plural(interfaces.len()),
            interfaces.join(", "),
            config.active_group,
            config.stale_group
        ));
    }
    if sockets > 0 {
        removed.push(format!("{sockets} stale UAPI socket{}", plural(sockets)));
    }
    if control_socket {
        removed.push(format!(
            "the stale control socket {}",
            config.control_socket
        ));
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_without_a_daemon_says_what_it_removed() {
        let text = r#"{"registry": "registry.json", "private_key": "KOfdX54OtHAOMqSn2rytCDHSFNe8prw43O8A98z21Xg=",
            "transport": [{"address_family": "ip4", "send_port": 50001, "prefix": "brd4x"}]}"#;
        let (config, _) = braid_model::Config::parse("node.json", text).unwrap();
        assert!(removed(&config, &[], 0, false).is_empty());
        assert_eq!(
            removed(&config, &["brd4x50002".into()], 1, true),
            [
                "1 interface (brd4x50002; interface groups 2 and 1 deleted)",
                "1 stale UAPI socket",
                "the stale control socket /run/braid/braid.sock"
            ]
        );
        assert_eq!(
            removed(&config, &["a".into(), "b".into()], 2, false),
            [
                "2 interfaces (a, b; interface groups 2 and 1 deleted)",
                "2 stale UAPI sockets"
            ]
        );
    }
}
