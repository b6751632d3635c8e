//! The HTTP status listener (config `status.listen`): `GET /` is the status page (a map of
//! the mesh, embedded in the binary, refreshing itself from `/status`), `GET /status` the
//! status JSON, `GET /metrics` the Prometheus exposition. Other paths answer 404, other
//! methods 405; the status and metrics answer 503 when no status comes within
//! [`STATUS_TIMEOUT`].
//! Handlers ask the daemon's status task (`run`'s `serve_status`) for a fresh status over a
//! channel. It builds the document from the daemon's state, which it reads between two
//! of a reload's link changes: a reload does not hold the answer up, only one change that
//! keeps the state longer than the timeout (a link that takes that long to make) does.
//!
//! The listener has no authentication, so any local user can connect: it holds at most
//! [`crate::fds::http_connection_cap`] connections (more are closed at once), and closes a
//! connection that makes no progress for [`IDLE_TIMEOUT`] or lives longer than
//! [`MAX_LIFETIME`]. Idle clients can make the listener busy, never the daemon.

use crate::status::Status;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// A request for the current status, answered by the daemon's status task.
pub type StatusRequest = oneshot::Sender<Status>;

/// A connection that neither sends nor takes a byte for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// No connection stays open longer than this, busy or not.
pub const MAX_LIFETIME: Duration = Duration::from_secs(30);

/// Counters of the listener's connections (exported as metrics, docs/metrics.md).
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections closed at once because the cap was reached.
    pub refused: AtomicU64,
    /// Connections closed for making no progress, or for living too long.
    pub timed_out: AtomicU64,
    /// Failed accepts (for example the process out of descriptors).
    pub accept_errors: AtomicU64,
    /// The cap on open connections.
    pub cap: AtomicU64,
}

#[derive(Clone)]
struct AppState {
    tx: mpsc::Sender<StatusRequest>,
    stats: Arc<ListenerStats>,
}

/// How long a request waits for the status before it is answered 503: less than
/// [`IDLE_TIMEOUT`], which would otherwise close the connection without a word.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// The daemon's status, or why there is none (the body of a 503).
async fn fetch(tx: &mpsc::Sender<StatusRequest>) -> Result<Status, &'static str> {
    let ask = async {
        let (reply, answer) = oneshot::channel();
        tx.send(reply).await.ok()?;
        answer.await.ok()
    };
    match tokio::time::timeout(STATUS_TIMEOUT, ask).await {
        Ok(Some(status)) => Ok(status),
        Ok(None) => Err("braid is stopping: no status\n"),
        Err(_) => Err(
            "braid gave no status within 3 s (a change held the daemon's state that long); try again\n",
        ),
    }
}

fn unavailable(why: &'static str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        why,
    )
        .into_response()
}

async fn status_json(State(state): State<AppState>) -> Response {
    match fetch(&state.tx).await {
        Ok(status) => axum::Json(status).into_response(),
        Err(why) => unavailable(why),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    match fetch(&state.tx).await {
        Ok(status) => (
            [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
            crate::metrics::render_with_listener(&status, &state.stats),
        )
            .into_response(),
        Err(why) => unavailable(why),
    }
}

/// prometheus-client writes the OpenMetrics text format (counter families named without
/// `_total`, `# EOF` at the end), so that is what the answer says it is: under the classic
/// `text/plain; version=0.0.4`, a scraper's parser takes every counter for an untyped
/// metric (OpenMetrics 1.0, "Overall structure"; Prometheus picks its parser by this header).
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The status page's files, embedded in the binary (no external resources).
const PAGE_HTML: &str = include_str!("page/index.html");
const PAGE_JS: &str = include_str!("page/page.js");
const PAGE_CSS: &str = include_str!("page/page.css");

/// The page loads only its own script and style and talks only to this listener.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// One of the page's files, with its type and the page's content security policy.
fn page_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    page_file("text/html; charset=utf-8", PAGE_HTML)
}

async fn page_js() -> Response {
    page_file("text/javascript; charset=utf-8", PAGE_JS)
}

async fn page_css() -> Response {
    page_file("text/css; charset=utf-8", PAGE_CSS)
}

/// The listener's routes: the page and its two files, `/status` and `/metrics`; axum
/// answers other paths 404 and other methods 405. Handlers ask the status task over `tx` and
/// count nothing themselves; `stats` is what `/metrics` reports of the listener. Building
/// it cannot fail: the paths are fixed and distinct (axum panics only on a duplicate or
/// malformed path, which every test of this listener would show at once).
fn router(tx: mpsc::Sender<StatusRequest>, stats: Arc<ListenerStats>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/page.js", get(page_js))
        .route("/page.css", get(page_css))
        .route("/status", get(status_json))
        .route("/metrics", get(metrics))
        .with_state(AppState { tx, stats })
}

/// Binds the listener now (so a busy port is an error at start) and serves it in the
/// background, with the connection cap for this process's descriptor limit.
pub async fn serve(
    addr: SocketAddr,
    tx: mpsc::Sender<StatusRequest>,
) -> io::Result<tokio::task::JoinHandle<()>> {
    let cap = crate::fds::http_connection_cap(crate::fds::limit());
    serve_with_cap(addr, tx, cap).await
}

/// As [`serve`], with an explicit cap on open connections.
pub async fn serve_with_cap(
    addr: SocketAddr,
    tx: mpsc::Sender<StatusRequest>,
    cap: usize,
) -> io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, cap, "status listener: GET / (page), GET /status, GET /metrics");
    Ok(serve_listener(listener, tx, cap, Arc::default()))
}

/// Serves a bound listener in the background with at most `cap` open connections,
/// counting them in `stats`.
pub fn serve_listener(
    listener: TcpListener,
    tx: mpsc::Sender<StatusRequest>,
    cap: usize,
    stats: Arc<ListenerStats>,
) -> tokio::task::JoinHandle<()> {
    stats.cap.store(cap as u64, Ordering::Relaxed);
    let guarded = GuardedListener {
        inner: listener,
        slots: Arc::new(Semaphore::new(cap)),
        stats: stats.clone(),
        last_warning: None,
    };
    tokio::spawn(async move {
        if let Err(e) = axum::serve(guarded, router(tx, stats)).await {
            tracing::error!("status listener: {e}");
        }
    })
}

/// Log a warning about refused connections or failed accepts at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A TCP listener that holds at most `slots` connections and guards each one with
/// [`IDLE_TIMEOUT`] and [`MAX_LIFETIME`].
struct GuardedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    stats: Arc<ListenerStats>,
    last_warning: Option<Instant>,
}

impl GuardedListener {
    fn warn(&mut self, what: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            self.last_warning = Some(now);
            tracing::warn!("status listener: {what}");
        }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    self.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    if crate::fds::exhausted(&e) {
                        let fix = crate::fds::exhausted_fix();
                        self.warn(format_args!("accepting a connection: {e}; {fix}"));
                    } else {
                        self.warn(format_args!("accepting a connection: {e}"));
                    }
                    // Do not spin: the connection waits in the kernel's backlog meanwhile.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                // Closed at once: the descriptor is back before the next accept.
                drop(stream);
                let refused = self.stats.refused.fetch_add(1, Ordering::Relaxed) + 1;
                let cap = self.stats.cap.load(Ordering::Relaxed);
                self.warn(format_args!(
                    "{cap} connections open (the cap); closing new ones ({refused} so far); idle ones close after {} s",
                    IDLE_TIMEOUT.as_secs()
                ));
                continue;
            };
            self.stats.open.fetch_add(1, Ordering::Relaxed);
            let now = tokio::time::Instant::now();
            let io = GuardedStream {
                stream,
                deadline: Box::pin(tokio::time::sleep_until(now + IDLE_TIMEOUT)),
                end_of_life: now + MAX_LIFETIME,
                expired: false,
                stats: self.stats.clone(),
                _slot: slot,
            };
            return (io, addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection of the status listener: reads and writes fail with `TimedOut` once it made
/// no progress for [`IDLE_TIMEOUT`] or reached [`MAX_LIFETIME`]; it frees its slot on drop.
pub struct GuardedStream {
    stream: TcpStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    end_of_life: tokio::time::Instant,
    expired: bool,
    stats: Arc<ListenerStats>,
    _slot: OwnedSemaphorePermit,
}

impl GuardedStream {
    /// Bytes moved: the idle clock starts again (never past the end of life).
    fn progress(&mut self) {
        let next = (tokio::time::Instant::now() + IDLE_TIMEOUT).min(self.end_of_life);
        self.deadline.as_mut().reset(next);
    }

    /// Called when the socket is not ready: `Ready(Err)` once the deadline passed.
    fn poll_deadline<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if self.expired || self.deadline.as_mut().poll(cx).is_ready() {
            if !self.expired {
                self.expired = true;
                self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
            }
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "status listener: connection idle or open too long",
            )));
        }
        Poll::Pending
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.progress();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_deadline(cx),
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.progress();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_deadline(cx),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_flush(cx) {
            Poll::Pending => this.poll_deadline(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_shutdown(cx) {
            Poll::Pending => this.poll_deadline(cx),
            ready => ready,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.progress();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_deadline(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Reads until EOF or error; true when the server closed the connection in `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 512];
        tokio::time::timeout(within, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text).await;
        text
    }

    #[test]
    fn the_page_needs_nothing_from_outside() {
        for (name, file) in [
            ("index.html", PAGE_HTML),
            ("page.js", PAGE_JS),
            ("page.css", PAGE_CSS),
        ] {
            for external in ["http://", "https://", "//cdn", "@import"] {
                // The SVG namespace is a name, not a resource the browser loads.
                let text = file.replace("http://www.w3.org/2000/svg", "");
                assert!(!text.contains(external), "{name} refers to {external}");
            }
        }
        assert!(PAGE_HTML.contains("/page.js") && PAGE_JS.contains("fetch(\"/status\""));
    }

    #[tokio::test]
    async fn the_page_and_its_files_are_served_with_their_policy() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let _task = serve_listener(listener, tx, 8, Arc::default());
        for (path, kind) in [
            ("/", "text/html"),
            ("/page.js", "text/javascript"),
            ("/page.css", "text/css"),
        ] {
            let answer = get(addr, path).await;
            assert!(answer.starts_with("HTTP/1.0 200"), "{path}: {answer}");
            assert!(
                answer.contains(&format!("content-type: {kind}")),
                "{path}: {answer}"
            );
            assert!(
                answer.contains("content-security-policy: default-src 'none'"),
                "{answer}"
            );
        }
    }

    #[tokio::test]
    async fn a_status_that_does_not_come_gets_a_503_with_the_reason() {
        // The status task takes the request and does not answer (the state held by a slow
        // change): the connection used to be closed at IDLE_TIMEOUT without a status line.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel::<StatusRequest>(4);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(reply) = rx.recv().await {
                held.push(reply);
            }
        });
        let _task = serve_listener(listener, tx, 8, Arc::default());
        for path in ["/status", "/metrics"] {
            let started = Instant::now();
            let answer = get(addr, path).await;
            assert!(answer.starts_with("HTTP/1.0 503"), "{path}: {answer:?}");
            assert!(answer.contains("gave no status within 3 s"), "{answer}");
            assert!(started.elapsed() < IDLE_TIMEOUT, "{:?}", started.elapsed());
        }
        // A status task that is gone (the daemon stopping) is said so at once.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel::<StatusRequest>(4);
        drop(rx);
        let _task = serve_listener(listener, tx, 8, Arc::default());
        let answer = get(addr, "/status").await;
        assert!(
            answer.starts_with("HTTP/1.0 503") && answer.contains("stopping"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn metrics_say_they_are_openmetrics() {
        // The body is OpenMetrics (`# TYPE x counter` with `x_total` samples, `# EOF`); it
        // was sent as `text/plain; version=0.0.4`, whose parsers lose every counter's type.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel::<StatusRequest>(4);
        tokio::spawn(async move {
            while let Some(reply) = rx.recv().await {
                let _ = reply.send(crate::metrics::tests::status());
            }
        });
        let _task = serve_listener(listener, tx, 8, Arc::default());
        let answer = get(addr, "/metrics").await;
        assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
        assert!(
            answer.contains(
                "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"
            ),
            "{answer}"
        );
        assert!(
            answer.contains("# TYPE braid_link_receive_bytes counter\n"),
            "{answer}"
        );
        assert!(answer.ends_with("# EOF\n"), "{answer}");
    }

    #[tokio::test]
    async fn idle_clients_are_capped_and_timed_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let stats = Arc::new(ListenerStats::default());
        let _server = serve_listener(listener, tx, 4, stats.clone());
        assert!(get(addr, "/nothing").await.starts_with("HTTP/1.0 404"));

        let started = Instant::now();
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(stats.open.load(Ordering::Relaxed), 4);
        // Over the cap: closed at once, and the daemon holds no descriptor for it.
        let mut over = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut over, Duration::from_secs(1)).await);
        assert_eq!(stats.refused.load(Ordering::Relaxed), 1);
        // The idle ones are closed after IDLE_TIMEOUT, which frees their slots.
        for stream in &mut idle {
            assert!(closed_within(stream, IDLE_TIMEOUT + Duration::from_secs(3)).await);
        }
        assert!(started.elapsed() >= IDLE_TIMEOUT - Duration::from_millis(300));
        assert_eq!(stats.timed_out.load(Ordering::Relaxed), 4);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(stats.open.load(Ordering::Relaxed), 0);
        assert!(get(addr, "/nothing").await.starts_with("HTTP/1.0 404"));
    }

    #[tokio::test]
    async fn a_slow_trickle_ends_at_the_lifetime() {
        // A client that sends one byte a second never goes idle, but it cannot stay: at
        // MAX_LIFETIME the connection is closed. (Checked on the deadline arithmetic, to
        // keep the test short: progress never moves the deadline past the end of life.)
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let now = tokio::time::Instant::now();
        let mut guarded = GuardedStream {
            stream: server,
            deadline: Box::pin(tokio::time::sleep_until(now + IDLE_TIMEOUT)),
            end_of_life: now + Duration::from_millis(300),
            expired: false,
            stats: Arc::default(),
            _slot: Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap(),
        };
        guarded.stats.open.fetch_add(1, Ordering::Relaxed);
        guarded.progress();
        assert_eq!(
            guarded.deadline.deadline(),
            now + Duration::from_millis(300)
        );
        let mut buf = [0u8; 8];
        let started = Instant::now();
        let err = guarded.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(client);
    }
}
