//! Waiting for a process to exit without polling: a pidfd (pidfd_open(2), Linux 5.3)
//! becomes readable when its process exits, so poll(2) sleeps until the exit or the
//! deadline, whichever comes first.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// A process held by its pidfd. Signals sent through it reach that process or none, never
/// one that took its PID after it exited (pidfd_send_signal(2)).
pub(super) struct Pidfd(OwnedFd);

impl Pidfd {
    /// The process `pid`; `None` when there is none (it exited and was reaped). Errors:
    /// those of pidfd_open(2), such as ENOSYS before Linux 5.3 or EMFILE.
    pub(super) fn open(pid: i32) -> std::io::Result<Option<Self>> {
        // SAFETY: pidfd_open takes a PID and flags (none) and returns a new descriptor or
        // -1; it touches no memory of this process.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ESRCH) => Ok(None),
                _ => Err(std::io::Error::new(
                    e.kind(),
                    format!("pidfd_open of process {pid}: {e}"),
                )),
            };
        }
        let fd = i32::try_from(fd).map_err(|_| std::io::Error::other("pidfd out of range"))?;
        // SAFETY: `fd` is a descriptor pidfd_open just made, owned by nothing else.
        Ok(Some(Self(unsafe { OwnedFd::from_raw_fd(fd) })))
    }

    /// Sends `signal` to the process. An error (ESRCH) when it has exited.
    pub(super) fn signal(&self, signal: libc::c_int) -> std::io::Result<()> {
        // SAFETY: pidfd_send_signal with a pidfd this value owns, a signal number, no
        // siginfo (null: as kill(2) would send it) and no flags.
        let sent = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        match sent {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    }

    /// Waits up to `within` for the process to exit (a zombie counts: it runs no more);
    /// whether it did. Sleeps in poll(2), so it returns at the exit, not at a polling
    /// tick. A failure of poll(2) other than EINTR counts as "not exited" (the callers
    /// then send SIGKILL).
    pub(super) fn exited_within(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
            let mut pollfd = libc::pollfd {
                fd: self.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd that lives across the call; the count says one.
            match unsafe { libc::poll(&mut pollfd, 1, timeout) } {
                0 => return false,
                n if n > 0 => return true,
                _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
                _ => return false,
            }
        }
    }
}

/// A test's child process, killed and reaped when the test ends, also by a panic.
#[cfg(test)]
pub(super) struct Reaped(pub(super) std::process::Child);

#[cfg(test)]
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn waits_for_the_exit_without_waiting_out_the_deadline() {
        let mut child = Reaped(Command::new("sleep").arg("30").spawn().unwrap());
        let child = &mut child.0;
        let pid = i32::try_from(child.id()).unwrap();
        let process = Pidfd::open(pid).unwrap().unwrap();
        assert!(
            !process.exited_within(Duration::from_millis(50)),
            "sleep 30 exited"
        );
        process.signal(libc::SIGTERM).unwrap();
        let t0 = Instant::now();
        assert!(process.exited_within(Duration::from_secs(10)));
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        // Exited, not yet reaped: still readable; reaped: the PID names nothing of ours.
        assert!(process.exited_within(Duration::ZERO));
        assert!(!child.wait().unwrap().success());
        assert!(process.signal(libc::SIGTERM).is_err());
    }
}
