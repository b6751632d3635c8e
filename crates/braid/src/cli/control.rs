//! `braid reload`, `braid status` and `braid down`: talk to the running daemon over its
//! control socket (named by the config's `control_socket`).

use anyhow::{Context, Result};
use braid_daemon::control::{self, Reply, Request};
use braid_daemon::load;
use std::path::{Path, PathBuf};

fn socket(config: &Path) -> Result<PathBuf> {
    let (config, _) = load::config(config).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    Ok(PathBuf::from(config.control_socket))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn call(config: &Path, request: Request) -> Result<Reply> {
    let path = socket(config)?;
    runtime()?
        .block_on(control::call(&path, &request))
        .with_context(|| {
            format!(
                "no daemon answered; is `braid run -c {}` running?",
                config.display()
            )
        })
}

/// `braid reload`: exit status says whether the new config was applied.
pub fn reload(config: &Path) -> Result<bool> {
    let reply = call(config, Request::Reload)?;
    if reply.ok {
        println!("{}", reply.message);
    } else {
        eprintln!("{}", reply.message);
    }
    Ok(reply.ok)
}

/// `braid status [--json] [--watch]`.
pub fn status(config: &Path, json: bool, watch: bool) -> Result<bool> {
    loop {
        let reply = call(config, Request::Status)?;
        let Some(doc) = reply.status else {
            eprintln!("{}", reply.message);
            return Ok(false);
        };
        let text = if json {
            serde_json::to_string_pretty(&doc)? + "\n"
        } else {
            crate::cli::status_table::render(&doc)
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

/// `braid down`: asks the daemon to remove everything; without a daemon (killed, or the
/// kernel backend's one-shot `up`), deletes braid's interface groups directly.
pub fn down(config_path: &Path) -> Result<bool> {
    let (config, _) =
        load::config(config_path).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let rt = runtime()?;
    let path = PathBuf::from(&config.control_socket);
    match rt.block_on(control::call(&path, &Request::Down)) {
        Ok(reply) => {
            println!("{}", reply.message);
            return Ok(reply.ok);
        }
        Err(e) => tracing::info!("no daemon answered ({e}); removing braid's interfaces directly"),
    }
    if let Err(e) = rt.block_on(braid_daemon::routing::teardown(&config)) {
        tracing::warn!("removing braid's routes and NAT table: {e}");
    }
    rt.block_on(braid_daemon::run::delete_groups(
        config.netns.as_deref(),
        config.active_group,
        config.stale_group,
    ))
    .context("deleting braid's interface groups")?;
    let _ = std::fs::remove_file(&path);
    println!(
        "down: interface groups {} and {} deleted",
        config.active_group, config.stale_group
    );
    Ok(true)
}
