//! Background processes started inside lab nodes, remembered so the lab can end them (by
//! PID) when it goes.

use crate::LabError;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long processes get to exit after SIGTERM before they are killed.
const GRACE: Duration = Duration::from_secs(3);

/// The processes a lab started.
#[derive(Debug, Default)]
pub(crate) struct Children(Mutex<Vec<Child>>);

impl Children {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Child>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts `command` inside the namespace `ns` (`ip netns exec`, which execs the program,
    /// so the PID is the program's), stdout and stderr appended to `log` when given.
    pub(crate) fn spawn(
        &self,
        ns: &str,
        command: &Command,
        log: Option<&Path>,
    ) -> Result<u32, LabError> {
        let program = command.get_program().to_string_lossy().to_string();
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().to_string())
            .collect();
        let line = format!("ip netns exec {ns} {program} {}", args.join(" "));
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", ns])
            .arg(command.get_program())
            .args(command.get_args())
            .stdin(Stdio::null());
        for (key, value) in command.get_envs() {
            match value {
                Some(v) => wrapped.env(key, v),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            wrapped.current_dir(dir);
        }
        if let Some(path) = log {
            let open = || {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| LabError::Write {
                        path: path.display().to_string(),
                        source,
                    })
            };
            wrapped.stdout(open()?).stderr(open()?);
        }
        let child = wrapped.spawn().map_err(|source| LabError::Spawn {
            command: line.clone(),
            source,
        })?;
        let pid = child.id();
        tracing::debug!(command = %line, pid, "lab: spawned");
        self.lock().push(child);
        Ok(pid)
    }

    /// Ends every remembered process: SIGTERM, then SIGKILL for those still running after
    /// [`GRACE`]; all are reaped.
    pub(crate) fn stop_all(&self) {
        let mut children = self.lock();
        for child in children.iter_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                let Ok(pid) = i32::try_from(child.id()) else {
                    continue;
                };
                // SAFETY: kill has no memory-safety preconditions; the PID is a child this
                // lab spawned and has not reaped, so it cannot have been reused.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + GRACE;
        for child in children.iter_mut() {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                tracing::warn!(pid = child.id(), "lab: process ignored SIGTERM; killing it");
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        children.clear();
    }

    /// Forgets every process without ending it.
    pub(crate) fn forget(&self) {
        self.lock().clear();
    }
}
