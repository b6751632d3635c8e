//! The control socket: one JSON request per connection, one JSON reply. The socket is
//! created with mode 0600 in a directory only root can write, so only root can steer braid.

use serde::{Deserialize, Serialize};
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    /// Re-read config and registry and reconcile; the reply says what changed or why not.
    Reload,
    /// Report node and link status.
    Status,
    /// Remove everything braid made and exit.
    Down,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    /// Human-readable summary or the error, with every problem on its own line.
    pub message: String,
    /// Status document for `status` (docs/status-json.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

impl Reply {
    pub fn ok(message: impl Into<String>) -> Self {
        Self {
            ok: true,
            message: message.into(),
            status: None,
        }
    }
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            message: message.into(),
            status: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("control socket {path}: bad reply")]
    BadReply {
        path: String,
        source: serde_json::Error,
    },
}

/// Binds the control socket: creates its directory (0700) and replaces a stale socket.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Reads one request from a connection; `Err` holds the reply to send for a bad request.
pub async fn read_request(stream: &mut UnixStream) -> Result<Request, Reply> {
    let mut line = String::new();
    let mut reader = BufReader::new(stream);
    match reader.read_line(&mut line).await {
        Ok(_) => {
            serde_json::from_str(line.trim()).map_err(|e| Reply::error(format!("bad request: {e}")))
        }
        Err(e) => Err(Reply::error(format!("reading request: {e}"))),
    }
}

pub async fn write_reply(stream: &mut UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut text = serde_json::to_string(reply).map_err(std::io::Error::other)?;
    text.push('\n');
    stream.write_all(text.as_bytes()).await?;
    stream.shutdown().await
}

/// Sends one request to a running daemon and waits for its reply.
pub async fn call(path: &Path, request: &Request) -> Result<Reply, ControlError> {
    let io = |source| ControlError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut stream = UnixStream::connect(path).await.map_err(io)?;
    let mut text = serde_json::to_string(request).map_err(|e| io(std::io::Error::other(e)))?;
    text.push('\n');
    stream.write_all(text.as_bytes()).await.map_err(io)?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .await
        .map_err(io)?;
    serde_json::from_str(&reply).map_err(|source| ControlError::BadReply {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn request_and_reply_round_trip_over_a_real_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/braid.sock");
        let listener = bind(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let request = read_request(&mut stream).await.unwrap();
            assert_eq!(request, Request::Reload);
            write_reply(&mut stream, &Reply::ok("nothing changed"))
                .await
                .unwrap();
        });
        let reply = call(&path, &Request::Reload).await.unwrap();
        assert!(reply.ok);
        assert_eq!(reply.message, "nothing changed");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn garbage_requests_get_an_error_reply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("braid.sock");
        let listener = bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let reply = read_request(&mut stream).await.unwrap_err();
            write_reply(&mut stream, &reply).await.unwrap();
        });
        let mut stream = UnixStream::connect(&path).await.unwrap();
        stream
            .write_all(b"{\"command\":\"explode\"}\n")
            .await
            .unwrap();
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply).await.unwrap();
        let reply: Reply = serde_json::from_str(&reply).unwrap();
        assert!(
            !reply.ok && reply.message.contains("bad request"),
            "{}",
            reply.message
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn calling_a_missing_daemon_names_the_socket() {
        let err = call(Path::new("/nonexistent/braid.sock"), &Request::Status)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/braid.sock"));
    }
}
