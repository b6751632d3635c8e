//! The link's UAPI socket, `/var/run/wireguard/<ifname>.sock`, so that `wg show`,
//! `wg show <if> dump` and `wg showconf` work on braid links. The link's own thread polls it
//! with its TUN device and UDP socket; requests are small and answered at once.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The directory `wg` looks in.
pub const DEFAULT_DIR: &str = "/var/run/wireguard";
/// A client that sends nothing for this long is dropped, so it cannot stall the link.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(200);
const MAX_REQUEST: usize = 64 * 1024;

pub struct UapiSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl UapiSocket {
    /// Binds `<dir>/<name>.sock` (mode 0600). A socket file left by a dead process is
    /// replaced; one that a live process answers on is an error.
    pub fn bind(dir: &Path, name: &str) -> std::io::Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
        let path = dir.join(format!("{name}.sock"));
        if path.exists() {
            if UnixStream::connect(&path).is_ok() {
                return Err(std::io::Error::new(
                    ErrorKind::AddrInUse,
                    format!("{} is in use by another process", path.display()),
                ));
            }
            std::fs::remove_file(&path)?;
        }
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Self { listener, path })
    }

    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// Takes one pending client, if any.
    pub fn accept(&self) -> Option<UnixStream> {
        let (stream, _) = self.listener.accept().ok()?;
        stream.set_nonblocking(false).ok()?;
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).ok()?;
        stream.set_write_timeout(Some(CLIENT_TIMEOUT)).ok()?;
        Some(stream)
    }
}

impl Drop for UapiSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads one request (up to the blank line that ends it).
pub fn read_request(stream: &mut UnixStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.ends_with(b"\n\n") && buf.len() < MAX_REQUEST {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return None,
        }
    }
    String::from_utf8(buf).ok()
}

pub fn reply(stream: &mut UnixStream, text: &str) {
    let _ = stream.write_all(text.as_bytes());
}
