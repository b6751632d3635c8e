//! The control socket: one JSON request per connection, one JSON reply. The socket is
//! created with mode 0600 in a directory only root can write, so only root can steer braid.

use serde::{Deserialize, Serialize};
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// A request on the control socket: one JSON object per connection, its command in
/// `"command"` (`{"command": "reload"}`).
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

/// The daemon's answer: one JSON object, then the connection closes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request was carried out.
    pub ok: bool,
    /// Human-readable summary or the error, with every problem on its own line.
    pub message: String,
    /// Status document for `status` (docs/status-json.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

impl Reply {
    /// A successful reply with `message`.
    pub fn ok(message: impl Into<String>) -> Self {
        Self {
            ok: true,
            message: message.into(),
            status: None,
        }
    }
    /// A failed reply saying why.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            message: message.into(),
            status: None,
        }
    }
}

/// Why a request to the daemon got no answer (see [`call`]).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Connecting, writing or reading failed (no daemon, or it went away).
    #[error("control socket {path}")]
    Io {
        /// The control socket's path.
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// The daemon answered with something that is not a [`Reply`].
    #[error("control socket {path}: bad reply")]
    BadReply {
        /// The control socket's path.
        path: String,
        /// Why the answer did not parse.
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

/// How long a client has to send its whole request line after connecting.
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a client has to take the reply before braid gives up on it.
pub const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// The largest request accepted, newline included. Requests are a few dozen bytes.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Connections served at once; more are answered "busy" and closed.
pub const MAX_CONNECTIONS: usize = 64;

/// Reads one request from a connection, waiting at most [`READ_TIMEOUT`] and reading at
/// most [`MAX_REQUEST`] bytes; `Err` holds the reply to send for a bad or late request.
pub async fn read_request(stream: &mut UnixStream) -> Result<Request, Reply> {
    read_request_within(stream, READ_TIMEOUT).await
}

async fn read_request_within(
    stream: &mut UnixStream,
    timeout: std::time::Duration,
) -> Result<Request, Reply> {
    use tokio::io::AsyncReadExt;
    let mut line = Vec::new();
    let mut reader = BufReader::new(stream).take(MAX_REQUEST as u64 + 1);
    match tokio::time::timeout(timeout, reader.read_until(b'\n', &mut line)).await {
        Err(_) => Err(Reply::error(format!(
            "no complete request within {} s; send one JSON line such as {{\"command\":\"status\"}} followed by a newline",
            timeout.as_secs_f32()
        ))),
        Ok(Err(e)) => Err(Reply::error(format!("reading request: {e}"))),
        Ok(Ok(_)) if line.len() > MAX_REQUEST => Err(Reply::error(format!(
            "request too large: more than {MAX_REQUEST} bytes; a request is one short JSON line such as {{\"command\":\"status\"}}"
        ))),
        Ok(Ok(_)) => parse_request(&line),
    }
}

/// Parses one request line as read from a client (surrounding ASCII whitespace and the
/// newline ignored); `Err` holds the reply to send. Pure, so it can be fuzzed (fuzz/).
pub fn parse_request(line: &[u8]) -> Result<Request, Reply> {
    serde_json::from_slice(line.trim_ascii()).map_err(|e| Reply::error(format!("bad request: {e}")))
}

/// A request read from a client, handed to the daemon, which answers on `reply` (`status`
/// from the status task, `reload` and `down` from the run loop; see `run`).
#[derive(Debug)]
pub struct Incoming {
    /// What the client asked.
    pub request: Request,
    /// Where the daemon sends its reply.
    pub reply: tokio::sync::oneshot::Sender<Reply>,
    /// Resolves once the reply was written (or given up on): `down` waits for it before
    /// the process exits.
    pub written: tokio::sync::oneshot::Receiver<()>,
}

/// Serves the control socket in the background: every connection in its own task, so
/// a slow or hostile client never holds up the run loop or another client. Valid requests
/// go to `requests`; bad, late and oversized ones get an error reply here.
pub fn serve(
    listener: UnixListener,
    requests: tokio::sync::mpsc::Sender<Incoming>,
) -> tokio::task::JoinHandle<()> {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let mut stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and the like: do not spin; the connection waits in the backlog.
                    if crate::fds::exhausted(&e) {
                        let fix = crate::fds::exhausted_fix();
                        tracing::warn!("control socket: accepting a connection: {e}; {fix}");
                    } else {
                        tracing::warn!("control socket: accepting a connection: {e}");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tokio::spawn(async move {
                    let busy = Reply::error(format!(
                        "busy: {MAX_CONNECTIONS} control connections are open; try again"
                    ));
                    let _ =
                        tokio::time::timeout(WRITE_TIMEOUT, write_reply(&mut stream, &busy)).await;
                });
                continue;
            };
            let requests = requests.clone();
            tokio::spawn(async move {
                connection(stream, requests).await;
                drop(slot);
            });
        }
    })
}

/// One client: read its request, have the daemon answer it, write the reply.
async fn connection(mut stream: UnixStream, requests: tokio::sync::mpsc::Sender<Incoming>) {
    let (reply, written) = match read_request(&mut stream).await {
        Err(reply) => {
            tracing::warn!("control socket: {}", reply.message);
            (reply, None)
        }
        Ok(request) => {
            let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
            let (written_tx, written_rx) = tokio::sync::oneshot::channel();
            let incoming = Incoming {
                request,
                reply: reply_tx,
                written: written_rx,
            };
            if requests.send(incoming).await.is_err() {
                return; // the daemon is stopping
            }
            match reply_rx.await {
                Ok(reply) => (reply, Some(written_tx)),
                Err(_) => return,
            }
        }
    };
    match tokio::time::timeout(WRITE_TIMEOUT, write_reply(&mut stream, &reply)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("control reply: {e}"),
        Err(_) => tracing::warn!(
            "control reply: the client did not read it within {} s",
            WRITE_TIMEOUT.as_secs()
        ),
    }
    if let Some(written) = written {
        let _ = written.send(());
    }
}

/// Writes the reply as one JSON line and closes the sending side.
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
    let stream = UnixStream::connect(path).await.map_err(io)?;
    let reply = exchange(stream, request).await.map_err(io)?;
    serde_json::from_str(&reply).map_err(|source| ControlError::BadReply {
        path: path.display().to_string(),
        source,
    })
}

/// Writes the request line and reads the reply line. A daemon at its connection cap
/// answers "busy" and closes without reading, so the write may fail (EPIPE) while the
/// reply waits to be read: the reply wins over the write's error.
async fn exchange(mut stream: UnixStream, request: &Request) -> std::io::Result<String> {
    let mut text = serde_json::to_string(request).map_err(std::io::Error::other)?;
    text.push('\n');
    let written = stream.write_all(text.as_bytes()).await;
    let mut reply = String::new();
    let read = BufReader::new(stream).read_line(&mut reply).await;
    match (written, read) {
        (Ok(()), Err(e)) | (Err(e), Ok(0) | Err(_)) => Err(e),
        _ => Ok(reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_parses_with_its_whitespace_and_bad_bytes_get_a_reply() {
        assert_eq!(
            parse_request(b"  {\"command\":\"reload\"}\r\n").map_err(|r| r.message),
            Ok(Request::Reload)
        );
        for bad in [&b""[..], b"\xff\xfe", b"{\"command\":\"status\"", b"[1,2]"] {
            let reply = parse_request(bad).expect_err("not a request");
            assert!(!reply.ok);
            assert!(
                reply.message.starts_with("bad request: "),
                "{}",
                reply.message
            );
        }
    }

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

    /// A run loop stand-in: answers every request with "answered".
    fn answer_all(mut rx: tokio::sync::mpsc::Receiver<Incoming>) {
        tokio::spawn(async move {
            while let Some(incoming) = rx.recv().await {
                let _ = incoming.reply.send(Reply::ok("answered"));
            }
        });
    }

    async fn raw_reply(stream: UnixStream) -> Reply {
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply).await.unwrap();
        serde_json::from_str(&reply).unwrap()
    }

    #[tokio::test]
    async fn a_stalled_client_holds_up_nobody_and_is_told_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("braid.sock");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let _server = serve(bind(&path).unwrap(), tx);
        answer_all(rx);
        // Half a line, then silence: the old loop waited for the rest forever.
        let mut stalled = UnixStream::connect(&path).await.unwrap();
        stalled.write_all(b"{\"command\":").await.unwrap();
        let started = std::time::Instant::now();
        let reply = tokio::time::timeout(
            // Well inside the stalled client's 2 s: answered while it still waits.
            std::time::Duration::from_millis(1500),
            call(&path, &Request::Status),
        )
        .await
        .expect("another client answered at once")
        .unwrap();
        assert!(reply.ok && reply.message == "answered");
        let reply = raw_reply(stalled).await;
        let waited = started.elapsed();
        assert!(
            !reply.ok && reply.message.contains("no complete request within 2 s"),
            "{}",
            reply.message
        );
        assert!(
            waited >= READ_TIMEOUT - std::time::Duration::from_millis(300)
                && waited < READ_TIMEOUT + std::time::Duration::from_secs(2),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn an_oversized_request_is_refused_without_reading_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("braid.sock");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let _server = serve(bind(&path).unwrap(), tx);
        answer_all(rx);
        let stream = UnixStream::connect(&path).await.unwrap();
        let (read, mut write) = stream.into_split();
        // 8 MiB without a newline: the server stops at 64 KiB and answers; the rest of the
        // write fails or is left unread.
        let writer = tokio::spawn(async move {
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..128 {
                if write.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        let mut reply = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            BufReader::new(read).read_line(&mut reply),
        )
        .await
        .expect("a reply before the deadline")
        .unwrap();
        let reply: Reply = serde_json::from_str(&reply).unwrap();
        assert!(
            !reply.ok
                && reply
                    .message
                    .contains("request too large: more than 65536 bytes"),
            "{}",
            reply.message
        );
        writer.abort();
        // A request of exactly the limit's size (padded with blanks) is still read.
        let mut exact = UnixStream::connect(&path).await.unwrap();
        let mut text = b"{\"command\":\"status\"}".to_vec();
        text.resize(MAX_REQUEST - 1, b' ');
        text.push(b'\n');
        exact.write_all(&text).await.unwrap();
        let reply = raw_reply(exact).await;
        assert!(reply.ok, "{}", reply.message);
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_told_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("braid.sock");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let _server = serve(bind(&path).unwrap(), tx);
        answer_all(rx);
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(UnixStream::connect(&path).await.unwrap());
        }
        // Give the server time to accept them all.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let reply = call(&path, &Request::Status).await.unwrap();
        assert!(
            !reply.ok && reply.message.starts_with("busy"),
            "{}",
            reply.message
        );
        drop(idle);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let reply = call(&path, &Request::Status).await.unwrap();
        assert!(reply.ok, "{}", reply.message);
    }

    #[tokio::test]
    async fn a_busy_reply_is_read_even_when_the_request_could_not_be_written() {
        // The daemon at its cap writes "busy" and closes before the client writes; the
        // client's write then fails with EPIPE, and `braid status` used to say only
        // "Broken pipe (os error 32)".
        let (client, mut server) = UnixStream::pair().unwrap();
        write_reply(&mut server, &Reply::error("busy: try again"))
            .await
            .unwrap();
        drop(server);
        let reply = exchange(client, &Request::Status).await.unwrap();
        let reply: Reply = serde_json::from_str(&reply).unwrap();
        assert!(!reply.ok && reply.message.starts_with("busy"), "{reply:?}");
        // Closed without a reply: the write's error is the one reported.
        let (client, server) = UnixStream::pair().unwrap();
        drop(server);
        let err = exchange(client, &Request::Status).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn calling_a_missing_daemon_names_the_socket() {
        let err = call(Path::new("/nonexistent/braid.sock"), &Request::Status)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/braid.sock"));
    }
}
