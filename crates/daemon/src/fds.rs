//! File descriptors: how many the process holds, its limit, and errors that say so. Links,
//! reloads, UAPI requests and the control socket all need descriptors; the status listener
//! gets only a share of the limit ([`http_connection_cap`]) so that clients of it can never
//! take the rest.

/// Descriptors this process holds now (entries of /proc/self/fd); `None` off Linux.
pub fn open() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    // The listing itself holds one descriptor while it runs.
    Some((entries.count() as u64).saturating_sub(1))
}

/// The soft limit on open descriptors (RLIMIT_NOFILE), `None` if unlimited or unknown.
pub fn limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid rlimit struct.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// The most connections the status listener holds at once for a descriptor limit of
/// `limit`: an eighth of it, between 8 and 256. The rest stays for links, reloads, the
/// routing engines and the control socket.
pub fn http_connection_cap(limit: Option<u64>) -> usize {
    let share = limit.map_or(256, |l| l / 8);
    share.clamp(8, 256) as usize
}

/// Whether `e` is the process (EMFILE) or the system (ENFILE) running out of descriptors.
pub fn exhausted(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// What to do about running out of descriptors, with the numbers of now.
pub fn exhausted_fix() -> String {
    let open = open().map_or("?".to_string(), |n| n.to_string());
    let limit = limit().map_or("unlimited".to_string(), |n| n.to_string());
    format!(
        "braid is out of file descriptors ({open} open, limit {limit}); see what holds them with `ls -l /proc/<braid pid>/fd` (metric braid_process_open_fds), and raise the limit (systemd: LimitNOFILE=) if the mesh needs more"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_gets_a_bounded_share() {
        assert_eq!(http_connection_cap(Some(256)), 32);
        assert_eq!(http_connection_cap(Some(20_000)), 256);
        assert_eq!(http_connection_cap(Some(16)), 8);
        assert_eq!(http_connection_cap(None), 256);
    }

    #[test]
    fn descriptors_are_counted_and_exhaustion_recognised() {
        // stdin, stdout, stderr at least (other tests open and close their own meanwhile).
        assert!(open().unwrap() >= 3);
        assert!(exhausted(&std::io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(!exhausted(&std::io::Error::from_raw_os_error(libc::EACCES)));
        assert!(exhausted_fix().contains("out of file descriptors"));
    }
}
