//! What `braid down` removes when no daemon answers (after `kill -9`, say), besides the
//! interface groups: the UAPI sockets the dead daemon's links left in
//! `/var/run/wireguard`, so that `wg show` lists no ghosts.

use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The directory of the userspace links' UAPI sockets (what `wg` reads).
pub const UAPI_DIR: &str = braid_link::UAPI_DIR;

/// Removes `<dir>/<name>.sock` for each of `names` where it is a socket nobody listens on
/// (connecting is refused). A socket a live process answers on, or a file that is not a
/// socket, is left alone. Returns the paths removed.
pub fn remove_stale_uapi_sockets<'n>(
    dir: &Path,
    names: impl IntoIterator<Item = &'n str>,
) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for name in names {
        if name.is_empty() || name.contains('/') {
            continue;
        }
        let path = dir.join(format!("{name}.sock"));
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.file_type().is_socket() {
            continue;
        }
        match UnixStream::connect(&path) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                match std::fs::remove_file(&path) {
                    Ok(()) => removed.push(path),
                    Err(e) => tracing::warn!("removing stale UAPI socket {}: {e}", path.display()),
                }
            }
            _ => {}
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn only_dead_sockets_of_the_named_links_go() {
        let dir = tempfile::tempdir().unwrap();
        let dead = UnixListener::bind(dir.path().join("brd4x1.sock")).unwrap();
        drop(dead); // the file stays, nobody listens: what kill -9 leaves
        let _live = UnixListener::bind(dir.path().join("brd4x2.sock")).unwrap();
        let other = UnixListener::bind(dir.path().join("wg0.sock")).unwrap();
        drop(other);
        std::fs::write(dir.path().join("brd4x3.sock"), "not a socket").unwrap();
        let removed =
            remove_stale_uapi_sockets(dir.path(), ["brd4x1", "brd4x2", "brd4x3", "brd4x4"]);
        assert_eq!(removed, vec![dir.path().join("brd4x1.sock")]);
        assert!(!dir.path().join("brd4x1.sock").exists());
        assert!(dir.path().join("brd4x2.sock").exists());
        assert!(dir.path().join("brd4x3.sock").exists());
        // Not named: not braid's to remove.
        assert!(dir.path().join("wg0.sock").exists());
    }
}
