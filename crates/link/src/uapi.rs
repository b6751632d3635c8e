//! The links' UAPI sockets, `/var/run/wireguard/<ifname>.sock`, so that `wg show`,
//! `wg show <if> dump`, `wg showconf` and `wg set` work on braid links (WireGuard's
//! cross-platform userspace API, <https://www.wireguard.com/xplatform/>; parsed and formatted
//! by `braid-uapi`).
//!
//! One thread per process (`uapi`, a current-thread tokio runtime) serves the sockets of all
//! links, never the links' reactors: a client that is slow, silent or sends too much can
//! only hold itself up. Each client gets [`REQUEST_DEADLINE`] from connecting to send its
//! whole request (at most [`MAX_REQUEST`] bytes, ended by a blank line), which is parsed
//! here; only the parsed request goes to the link's worker (`Command::Uapi`, waking its
//! reactor), which answers from its state between two batches of packets without touching
//! the client. The answer is written back here within [`WRITE_DEADLINE`]. Clients are served
//! concurrently, at most [`MAX_CLIENTS`] at once across all links.

use crate::wake::Wake;
use crate::worker::Command;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, oneshot};

/// The directory `wg` looks in.
pub const DEFAULT_DIR: &str = "/var/run/wireguard";
/// Time from connecting to the end of the request. `wg` sends a request in one write; a
/// client that has not finished by then is closed without an answer.
const REQUEST_DEADLINE: Duration = Duration::from_secs(1);
/// The largest request read. A longer one is answered `errno=-22` (EINVAL) and closed. A
/// braid link has one peer with fixed allowed IPs, so its largest sensible request (`wg
/// set` of everything) is well under 1 KiB.
const MAX_REQUEST: usize = 64 * 1024;
/// How long the link's worker may take to answer (it answers within one pass of its
/// reactor, normally microseconds); a link that is stopping may never answer.
const ANSWER_DEADLINE: Duration = Duration::from_secs(1);
/// Time the client has to take the answer.
const WRITE_DEADLINE: Duration = Duration::from_secs(1);
/// Clients served at once, across all links; a client beyond them is closed at once.
const MAX_CLIENTS: usize = 128;
/// A failed accept (out of descriptors, say) is retried after this pause, not in a spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A bound UAPI socket, not yet served.
pub(crate) struct UapiSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl UapiSocket {
    /// Binds `<dir>/<name>.sock` (mode 0600). A socket file left by a dead process is
    /// replaced; one that a live process answers on is an error.
    pub(crate) fn bind(dir: &Path, name: &str) -> std::io::Result<Self> {
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
}

/// The link a UAPI socket leads to: where its requests go and how its reactor is woken.
pub(crate) struct Target {
    /// The link's name, for logs.
    pub name: String,
    pub control: Sender<Command>,
    pub wake: Arc<Wake>,
}

/// Where the link's worker puts its answer to one request: the reply text, `errno=N` and
/// the blank line included. Sending never blocks; a reply dropped unsent closes the client.
pub(crate) struct Reply(oneshot::Sender<String>);

impl Reply {
    pub(crate) fn send(self, answer: String) {
        // The client may have gone (deadline): nothing to do then.
        let _ = self.0.send(answer);
    }
}

/// A link's UAPI socket while it is served. Dropping it removes the socket file and stops
/// accepting on it (clients already connected finish or time out).
pub(crate) struct Served {
    path: PathBuf,
    /// Dropped with this: the accept task sees its receiver close and ends.
    _stop: oneshot::Sender<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serves `socket` on the UAPI thread (started on first use) for the link `target`.
pub(crate) fn serve(socket: UapiSocket, target: Target) -> std::io::Result<Served> {
    let server = server()?;
    let (stop_tx, stop) = oneshot::channel();
    let UapiSocket { listener, path } = socket;
    server.runtime.spawn(accept_loop(
        listener,
        Arc::new(target),
        server.clients.clone(),
        stop,
    ));
    Ok(Served {
        path,
        _stop: stop_tx,
    })
}

/// The UAPI thread's runtime, and the client slots shared by all links.
#[derive(Clone)]
struct Server {
    runtime: tokio::runtime::Handle,
    clients: Arc<Semaphore>,
}

/// The UAPI thread, started on first use.
fn server() -> std::io::Result<Server> {
    static SERVER: Mutex<Option<Server>> = Mutex::new(None);
    let mut server = SERVER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(server) = server.as_ref() {
        return Ok(server.clone());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("uapi".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    let started = Server {
        runtime: handle,
        clients: Arc::new(Semaphore::new(MAX_CLIENTS)),
    };
    *server = Some(started.clone());
    Ok(started)
}

/// Accepts clients on one link's socket until its [`Served`] is dropped; each is served in
/// its own task.
async fn accept_loop(
    listener: UnixListener,
    target: Arc<Target>,
    clients: Arc<Semaphore>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(link = %target.name, "UAPI socket: cannot serve it: {e}");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(link = %target.name, "UAPI socket: accept: {e}");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let Ok(slot) = clients.clone().try_acquire_owned() else {
            tracing::debug!(
                link = %target.name,
                "UAPI socket: {MAX_CLIENTS} clients already connected; closing a new one"
            );
            continue;
        };
        let target = target.clone();
        tokio::spawn(async move {
            serve_client(stream, &target).await;
            drop(slot);
        });
    }
}

/// Reads one request, has the link answer it, writes the answer, closes.
async fn serve_client(mut stream: tokio::net::UnixStream, target: &Target) {
    let received = tokio::time::timeout(REQUEST_DEADLINE, read_request(&mut stream)).await;
    let answer = match received {
        Err(_) => {
            tracing::debug!(
                link = %target.name,
                "UAPI client: no complete request within {REQUEST_DEADLINE:?}; closed"
            );
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(link = %target.name, "UAPI client: reading: {e}");
            return;
        }
        Ok(Ok(Received::Closed)) => return,
        Ok(Ok(Received::Refused(why))) => {
            tracing::debug!(link = %target.name, "UAPI client: {why}; refused");
            braid_uapi::format_errno(braid_uapi::errno::EINVAL)
        }
        Ok(Ok(Received::Request(text))) => match braid_uapi::parse_request(&text) {
            Ok(request) => match ask(target, request).await {
                Some(answer) => answer,
                None => return,
            },
            Err(e) => {
                tracing::debug!(link = %target.name, "UAPI request: {e}");
                braid_uapi::format_errno(e.errno())
            }
        },
    };
    let written = tokio::time::timeout(WRITE_DEADLINE, stream.write_all(answer.as_bytes())).await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::debug!(link = %target.name, "UAPI client: did not take the answer; closed");
    }
}

/// Hands a parsed request to the link's worker and waits for its answer; `None` when the
/// link has stopped or did not answer in time.
async fn ask(target: &Target, request: braid_uapi::Request) -> Option<String> {
    let (reply, answer) = oneshot::channel();
    let command = Command::Uapi {
        request,
        reply: Reply(reply),
    };
    if target.control.send(command).is_err() {
        return None;
    }
    target.wake.wake();
    match tokio::time::timeout(ANSWER_DEADLINE, answer).await {
        Ok(Ok(answer)) => Some(answer),
        _ => {
            tracing::debug!(link = %target.name, "UAPI request: the link did not answer");
            None
        }
    }
}

/// What a client sent.
#[derive(Debug, PartialEq, Eq)]
enum Received {
    /// A request: the text up to and including the blank line that ends it (or up to the
    /// end of the stream, if the client closed its side first).
    Request(String),
    /// The client closed without sending anything.
    Closed,
    /// Not a request: why (too long, not text). Answered `errno=-22`.
    Refused(&'static str),
}

/// Reads one request: up to the first blank line (`\n\n`), which must come within
/// [`MAX_REQUEST`] bytes. Bytes after the blank line are ignored.
async fn read_request<R: AsyncRead + Unpin>(stream: &mut R) -> std::io::Result<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let room = (MAX_REQUEST - buf.len()).min(chunk.len());
        if room == 0 {
            return Ok(Received::Refused("request longer than 64 KiB"));
        }
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Ok(if buf.is_empty() {
                Received::Closed
            } else {
                text(buf)
            });
        }
        // The blank line may straddle two reads.
        let from = buf.len().saturating_sub(1);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf[from..].windows(2).position(|w| w == b"\n\n") {
            buf.truncate(from + end + 2);
            return Ok(text(buf));
        }
    }
}

fn text(buf: Vec<u8>) -> Received {
    String::from_utf8(buf).map_or(Received::Refused("request not UTF-8"), Received::Request)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a request from `chunks`, each one read, then the end of the stream.
    fn read(chunks: &[&[u8]]) -> Received {
        let empty: Box<dyn AsyncRead + Unpin + Send> = Box::new(tokio::io::empty());
        let mut reader = chunks.iter().rev().fold(empty, |rest, chunk| {
            Box::new(std::io::Cursor::new(chunk.to_vec()).chain(rest))
        });
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(read_request(&mut reader))
            .unwrap()
    }

    fn request(text: &str) -> Received {
        Received::Request(text.to_string())
    }

    #[test]
    fn a_request_ends_at_the_first_blank_line_even_across_reads() {
        assert_eq!(read(&[b"get=1\n\n"]), request("get=1\n\n"));
        assert_eq!(read(&[b"get=1\n", b"\n"]), request("get=1\n\n"));
        assert_eq!(read(&[b"get=1\n\nset=1\n\n"]), request("get=1\n\n"));
        assert_eq!(
            read(&[b"set=1\nlisten_port=1", b"\n", b"\nmore"]),
            request("set=1\nlisten_port=1\n\n")
        );
    }

    #[test]
    fn a_client_closing_early_sends_what_it_sent_or_nothing() {
        assert_eq!(read(&[b"get=1\n"]), request("get=1\n"));
        assert_eq!(read(&[]), Received::Closed);
    }

    #[test]
    fn requests_are_capped_at_64_kib_blank_line_included() {
        let mut fits = vec![b'x'; MAX_REQUEST - 2];
        fits.extend_from_slice(b"\n\n");
        assert!(matches!(read(&[&fits]), Received::Request(t) if t.len() == MAX_REQUEST));
        let mut over = vec![b'x'; MAX_REQUEST - 1];
        over.extend_from_slice(b"\n\n");
        assert!(matches!(read(&[&over]), Received::Refused(_)));
        assert!(matches!(
            read(&[&vec![b'x'; 1 << 20]]),
            Received::Refused(_)
        ));
    }

    #[test]
    fn bytes_that_are_not_text_are_refused() {
        assert!(matches!(read(&[b"get=1\xff\n\n"]), Received::Refused(_)));
    }
}
