//! A routing daemon the supervision thread started: starting it ([`start`]: its files,
//! an earlier one stopped, its process) and telling it braid's state
//! ([`Running::apply`]: babeld's interfaces, BIRD's configuration).

use super::super::babel;
use super::super::bird::{self, BirdInputs};
use super::process::{spawn_tied, stop_stale};
use super::wanted::{RestartKey, Wanted};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Instant;

/// A routing daemon the supervision thread started.
pub(super) struct Running {
    /// What it was started for: another key needs another start.
    pub(super) key: RestartKey,
    /// `babeld` or `bird`.
    pub(super) program: &'static str,
    pub(super) child: Child,
    /// Its control socket.
    pub(super) ctl: PathBuf,
    /// Where its stdout and stderr go.
    pub(super) log: PathBuf,
    pub(super) started: Instant,
    /// The control socket answered.
    pub(super) ready: bool,
    /// braid's state was applied (babeld: interfaces; BIRD: configuration).
    pub(super) in_step: bool,
    /// babeld: the interfaces it was told about, with the parameters it was told.
    interfaces: BTreeMap<String, String>,
    /// BIRD: the inputs of the configuration it runs.
    inputs: Option<BirdInputs>,
    /// After a failed apply: not before this.
    pub(super) retry_at: Option<Instant>,
}

/// A routing daemon's files in its directory (babeld's and BIRD's have these in common).
struct Files {
    conf: PathBuf,
    ctl: PathBuf,
    pid: PathBuf,
    log: PathBuf,
}

impl Files {
    fn of(wanted: &Wanted) -> Self {
        let (conf, ctl, pid, log) = match wanted {
            Wanted::Babel { dir, .. } => {
                let f = babel::Files::in_dir(dir);
                (f.conf, f.ctl, f.pid, f.log)
            }
            Wanted::Bird { dir, .. } => {
                let f = bird::Files::in_dir(dir);
                (f.conf, f.ctl, f.pid, f.log)
            }
        };
        Self {
            conf,
            ctl,
            pid,
            log,
        }
    }
}

/// An I/O error as a sentence naming what was done to which file.
fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> String {
    let what = format!("{what} {}", path.display());
    move |e| format!("{what}: {e}")
}

/// Writes the daemon's config and starts it (after stopping one an earlier braid left).
pub(super) fn start(wanted: &Wanted, now: Instant) -> Result<Running, String> {
    let program = wanted.program();
    let dir = wanted.dir();
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let files = Files::of(wanted);
    match stop_stale(&files.pid, program, &files.conf) {
        Ok(Some(stale)) => tracing::warn!(
            pid = stale,
            "stopped the {program} an earlier braid left running"
        ),
        Ok(None) => {}
        Err(e) => return Err(format!("looking for an earlier {program}: {e}")),
    }
    let _ = std::fs::remove_file(&files.ctl);
    let command = prepare(wanted, &files)?;
    let child = spawn_tied(command, wanted.netns()).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("{program} is not installed (install Debian's package {program})")
        }
        _ => e.to_string(),
    })?;
    tracing::info!(program, pid = child.id(), "routing daemon started");
    Ok(Running {
        key: wanted.restart_key(),
        program,
        child,
        ctl: files.ctl,
        log: files.log,
        started: now,
        ready: false,
        in_step: false,
        interfaces: BTreeMap::new(),
        inputs: match wanted {
            Wanted::Bird { inputs, .. } => Some(inputs.clone()),
            Wanted::Babel { .. } => None,
        },
        retry_at: None,
    })
}

/// Writes the daemon's config file and opens its log: the command line to start it.
fn prepare(wanted: &Wanted, files: &Files) -> Result<Command, String> {
    let text = match wanted {
        Wanted::Babel { config, .. } => config.clone(),
        Wanted::Bird { inputs, .. } => bird::config_text(inputs),
    };
    std::fs::write(&files.conf, text).map_err(io("writing", &files.conf))?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&files.log)
        .map_err(io("opening", &files.log))?;
    match wanted {
        Wanted::Babel { dir, .. } => babel::command(&babel::Files::in_dir(dir), out),
        Wanted::Bird { dir, .. } => bird::command(&bird::Files::in_dir(dir), out),
    }
    .map_err(io("opening", &files.log))
}

impl Running {
    /// Brings the daemon in step with `wanted` (babeld's interfaces; BIRD's config).
    pub(super) fn apply(&mut self, wanted: &Wanted) -> Result<(), String> {
        match wanted {
            Wanted::Babel {
                links,
                link_parameters,
                rxcosts,
                ..
            } => {
                let want = babel::link_interfaces(links, link_parameters, rxcosts);
                let changes = babel::sync_interfaces(&self.ctl, &mut self.interfaces, &want)
                    .map_err(|e| e.to_string())?;
                if changes.added + changes.removed + changes.readded > 0 {
                    tracing::info!(
                        added = changes.added,
                        removed = changes.removed,
                        readded = changes.readded,
                        "babeld interfaces"
                    );
                }
            }
            Wanted::Bird { dir, inputs, .. } => {
                if self.inputs.as_ref() != Some(inputs) {
                    bird::configure(&bird::Files::in_dir(dir), inputs)
                        .map_err(|e| e.to_string())?;
                    tracing::info!("bird reconfigured");
                    self.inputs = Some(inputs.clone());
                }
            }
        }
        Ok(())
    }

    /// The last non-empty line of its log (of the log's last 4 KiB), for error messages.
    pub(super) fn last_log_line(&self) -> Option<String> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(&self.log).ok()?;
        let len = file.metadata().ok()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ok()?;
        String::from_utf8_lossy(&bytes)
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
    }
}
