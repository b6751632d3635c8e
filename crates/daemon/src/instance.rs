//! One `braid run` per control socket. The daemon takes an exclusive `flock(2)` on
//! `<control_socket>.lock` before it touches anything (interfaces, routes, the socket) and
//! holds it until it exits; the kernel releases it however the process ends, so a crash
//! leaves no stale lock. A second start finds the lock taken and refuses at once, naming
//! the running daemon's pid (written into the lock file), and changes nothing.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct InstanceLock {
    _file: std::fs::File,
    path: PathBuf,
}

impl InstanceLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why a daemon could not take its instance lock.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(
        "already running (pid {}): another braid daemon holds {} for control socket {}; change it with `braid reload`, or stop it (`braid down`) before starting another",
        pid.map_or("unknown".to_string(), |p| p.to_string()),
        lock.display(),
        socket.display()
    )]
    /// Another daemon holds the lock of this control socket.
    Running {
        /// The holder's process ID, when the lock file names a live one.
        pid: Option<u32>,
        /// The lock file (beside the control socket).
        lock: PathBuf,
        /// The control socket the lock is for.
        socket: PathBuf,
    },
    /// The lock file could not be opened or locked.
    #[error("instance lock {}: {source}; fix: check that the control socket's directory is writable by root", lock.display())]
    Io {
        /// The lock file.
        lock: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
}

/// The lock file of a control socket: `<socket>.lock`, beside it.
pub fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock of `socket` without waiting, creating its directory (0700) and the lock
/// file (0600) as needed, and writes this process's pid into it.
pub fn acquire(socket: &Path) -> Result<InstanceLock, InstanceError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let lock = lock_path(socket);
    let io = |source| InstanceError::Io {
        lock: lock.clone(),
        source,
    };
    if let Some(dir) = lock.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock)
        .map_err(io)?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(InstanceError::Running {
                pid: text.trim().parse().ok(),
                lock,
                socket: socket.to_path_buf(),
            });
        }
        return Err(io(e));
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(InstanceLock {
        _file: file,
        path: lock,
    })
}

/// How long a starting daemon waits for a lock whose recorded holder is gone: a daemon
/// killed a moment ago (or a child it forked just then, before its exec) can hold the lock
/// for a little while after its pid has ended.
pub const DYING_HOLDER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// [`acquire`] for a starting daemon: refuses at once while the daemon named in the lock
/// file runs; when that pid is gone (a crash a moment ago), waits up to
/// [`DYING_HOLDER_WAIT`] for the kernel to let the lock go.
pub fn acquire_for_start(socket: &Path) -> Result<InstanceLock, InstanceError> {
    let deadline = std::time::Instant::now() + DYING_HOLDER_WAIT;
    loop {
        match acquire(socket) {
            Err(InstanceError::Running { pid, .. })
                if !pid.is_some_and(alive) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Whether process `pid` runs: it exists, is not a zombie and is not exiting. (A daemon
/// killed with SIGKILL can spend a while in its exit closing TUN devices, in state D, still
/// holding the lock: the kernel's PF_EXITING flag, field 9 of /proc/PID/stat, tells.)
fn alive(pid: u32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return false;
    };
    // After the command: state (field 3), then ppid, pgrp, session, tty, tpgid, flags (9).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let zombie = fields.first().is_some_and(|s| *s == "Z" || *s == "X");
    let exiting = fields
        .get(6)
        .and_then(|f| f.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_EXITING != 0);
    !zombie && !exiting
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_missing_one_is_not() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX - 1));
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run/braid.sock");
        let first = acquire(&socket).unwrap();
        assert_eq!(first.path(), dir.path().join("run/braid.sock.lock"));
        // flock conflicts between open file descriptions, also within one process.
        let err = acquire(&socket).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, InstanceError::Running { pid: Some(p), .. } if p == std::process::id()),
            "{text}"
        );
        assert!(
            text.starts_with(&format!("already running (pid {})", std::process::id())),
            "{text}"
        );
        drop(first);
        // Released with the holder: the next start takes it (the file stays, stale pid
        // and all, which is harmless).
        let again = acquire(&socket).unwrap();
        let pid = std::fs::read_to_string(again.path()).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
    }

    #[test]
    fn sockets_in_different_places_do_not_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let _a = acquire(&dir.path().join("a.sock")).unwrap();
        let _b = acquire(&dir.path().join("b.sock")).unwrap();
    }
}
