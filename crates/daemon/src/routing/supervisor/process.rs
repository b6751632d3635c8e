//! The routing daemon's process: spawned tied to braid's life ([`spawn_tied`]), stopped
//! with a grace ([`terminate`]), and recognised by its pid file and command line when an
//! earlier braid left it running ([`stop_stale`]).

use super::pidfd::Pidfd;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

/// How long a routing daemon gets to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);
/// How long a stale daemon gets to go after SIGKILL before braid carries on.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// Spawns `command` tied to this thread's life (the parent-death signal SIGTERM), inside
/// the network namespace `netns` when given (`setns` in the child, before exec).
pub(super) fn spawn_tied(mut command: Command, netns: Option<&str>) -> std::io::Result<Child> {
    let namespace = match netns {
        Some(name) => Some(
            std::fs::File::open(format!("/run/netns/{name}")).map_err(|e| {
                std::io::Error::new(e.kind(), format!("network namespace {name}: {e}"))
            })?,
        ),
        None => None,
    };
    let fd = namespace.as_ref().map(|f| f.as_raw_fd());
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (setns, prctl, getppid); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if let Some(fd) = fd
                && libc::setns(fd, libc::CLONE_NEWNET) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // braid died between fork and prctl: the signal will not come; do not start.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    command.spawn()
}

/// SIGTERM, up to [`STOP_GRACE`] for the child to exit, then SIGKILL; reaps it. The wait
/// sleeps on the child's pidfd ([`Pidfd::exited_within`]); when no pidfd can be had (an
/// old kernel, no descriptors left) the child gets SIGKILL at once.
pub(super) fn terminate(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        // A child this process started and has not reaped: its PID cannot have been reused.
        let process = i32::try_from(child.id())
            .map_err(std::io::Error::other)
            .and_then(Pidfd::open);
        match process {
            Ok(Some(process)) => {
                let _ = process.signal(libc::SIGTERM);
                process.exited_within(STOP_GRACE);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(pid = child.id(), "cannot wait for the routing daemon: {e}"),
        }
    }
    if matches!(child.try_wait(), Ok(None)) {
        tracing::warn!(
            pid = child.id(),
            "the routing daemon ignored SIGTERM; killing it"
        );
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// True when `cmdline` (a process's `/proc/<pid>/cmdline`: arguments separated by NUL) is
/// `program` run with the config file `conf`, which is how braid starts its routing
/// daemons. A zombie's cmdline is empty: not a running daemon.
pub fn started_by_braid(cmdline: &[u8], program: &str, conf: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let mut args = cmdline.split(|b| *b == 0).map(std::ffi::OsStr::from_bytes);
    let Some(first) = args.next() else {
        return false;
    };
    let named = Path::new(first)
        .file_name()
        .is_some_and(|name| name.as_bytes() == program.as_bytes());
    named && args.any(|a| Path::new(a) == conf)
}

/// Whether the process `pid` runs as braid's `program` with the config `conf`.
fn running_as(pid: i32, program: &str, conf: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| started_by_braid(&cmdline, program, conf))
}

/// Stops a routing daemon an earlier braid left running: the process named by `pid_file`,
/// if `/proc/<pid>/cmdline` shows `program` with the config `conf` (SIGTERM, SIGKILL after
/// [`STOP_GRACE`]). A pid file that names no such process is stale and removed (babeld
/// refuses to start over one). Returns the PID it stopped. Blocks up to about 4 s; the
/// supervision thread and `braid down` call it, never the main loop. The process is held by
/// its pidfd from before the command line is checked, so the signals reach the process
/// checked or none, never one that took its PID since. Errors: reading or removing the pid
/// file, and pidfd_open(2) (ENOSYS before Linux 5.3).
pub fn stop_stale(pid_file: &Path, program: &str, conf: &Path) -> std::io::Result<Option<i32>> {
    let text = match std::fs::read_to_string(pid_file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        other => other?,
    };
    let process = match text.trim().parse::<i32>().ok().filter(|p| *p > 1) {
        Some(pid) => Pidfd::open(pid)?.map(|process| (pid, process)),
        None => None,
    };
    let Some((pid, process)) = process.filter(|(pid, _)| running_as(*pid, program, conf)) else {
        remove_if_present(pid_file)?;
        return Ok(None);
    };
    let _ = process.signal(libc::SIGTERM);
    if !process.exited_within(STOP_GRACE) {
        let _ = process.signal(libc::SIGKILL);
        process.exited_within(KILL_GRACE);
    }
    remove_if_present(pid_file)?;
    Ok(Some(pid))
}

/// Removes `path`; one that is not there is no error.
fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::pidfd::Reaped;
    use super::*;
    use std::time::Instant;

    #[test]
    fn recognises_only_braids_daemon_by_program_and_config() {
        let conf = Path::new("/run/braid/babeld/babeld.conf");
        let ours = b"babeld\0-c\0/run/braid/babeld/babeld.conf\0-I\0/run/braid/babeld/babeld.pid\0";
        assert!(started_by_braid(ours, "babeld", conf));
        let full_path = b"/usr/sbin/babeld\0-c\0/run/braid/babeld/babeld.conf\0";
        assert!(started_by_braid(full_path, "babeld", conf));
        // Another babeld, another program with braid's path, a zombie.
        assert!(!started_by_braid(
            b"babeld\0-c\0/etc/babeld.conf\0",
            "babeld",
            conf
        ));
        assert!(!started_by_braid(
            b"vi\0/run/braid/babeld/babeld.conf\0",
            "babeld",
            conf
        ));
        assert!(!started_by_braid(b"", "babeld", conf));
    }

    #[test]
    fn a_stale_pid_file_is_removed_and_a_foreign_process_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("babeld.pid");
        let conf = dir.path().join("babeld.conf");
        // This test process is alive but is not babeld with that config.
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(stop_stale(&pid_file, "babeld", &conf).unwrap(), None);
        assert!(!pid_file.exists());
        std::fs::write(&pid_file, "garbage").unwrap();
        assert_eq!(stop_stale(&pid_file, "babeld", &conf).unwrap(), None);
        assert!(!pid_file.exists());
        assert_eq!(stop_stale(&pid_file, "babeld", &conf).unwrap(), None);
    }

    #[test]
    fn a_stale_daemon_is_stopped() {
        // A stand-in for a daemon an earlier braid left: `tail -f <braid's config path>`
        // with its argv[0] set to `babeld` (bash's exec -a).
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("babeld.conf");
        std::fs::write(&conf, "").unwrap();
        let pid_file = dir.path().join("babeld.pid");
        let mut child = Command::new("bash")
            .arg("-c")
            .arg("exec -a babeld tail -f \"$0\"")
            .arg(&conf)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !running_as(pid, "babeld", &conf) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::write(&pid_file, pid.to_string()).unwrap();
        // It is our child: reap it concurrently so it does not linger as a zombie.
        let reaper = std::thread::spawn(move || child.wait());
        assert_eq!(stop_stale(&pid_file, "babeld", &conf).unwrap(), Some(pid));
        assert!(!pid_file.exists());
        assert!(!reaper.join().unwrap().unwrap().success());
    }

    #[test]
    fn terminate_stops_and_reaps_a_child_that_heeds_sigterm_without_the_grace() {
        let mut child = Reaped(Command::new("sleep").arg("30").spawn().unwrap());
        let child = &mut child.0;
        let t0 = Instant::now();
        terminate(child);
        assert!(t0.elapsed() < STOP_GRACE, "{:?}", t0.elapsed());
        assert!(child.try_wait().unwrap().is_some(), "reaped");
    }

    #[test]
    fn terminate_kills_a_child_that_ignores_sigterm_after_the_grace() {
        // `tail` inherits bash's SIG_IGN for SIGTERM across exec (and has no children).
        let mut child = Reaped(
            Command::new("bash")
                .arg("-c")
                .arg("trap '' TERM; exec tail -f /dev/null")
                .spawn()
                .unwrap(),
        );
        let child = &mut child.0;
        let ignores_term = |pid: u32| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
                .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ignores_term(child.id()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            ignores_term(child.id()),
            "the stand-in does not ignore SIGTERM"
        );
        let t0 = Instant::now();
        terminate(child);
        assert!(t0.elapsed() >= STOP_GRACE, "{:?}", t0.elapsed());
        let status = child.try_wait().unwrap().expect("reaped");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
