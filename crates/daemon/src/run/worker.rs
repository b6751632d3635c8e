//! The daemon's shared state and the reconciler's own thread, where what blocks runs.

use super::*;

/// The daemon's state, shared: the run loop is its one writer and decides the order of
/// changes; status requests (`serve_status`) lock it for as long as it takes to read
/// it. What touches files or the backend runs on the reconciler's own thread
/// ([`off_loop`]), and the link changes of a reload take the lock one link at a time
/// ([`reconcile`]), so the control socket and the HTTP status answer while a reload of
/// many links runs.
pub(super) struct Shared<B: LinkBackend> {
    pub(super) state: Arc<tokio::sync::Mutex<Reconciler<B>>>,
    pub(super) worker: Arc<Worker>,
    /// The status listener and control socket as bound at start ([`listen`]); a reload
    /// does not move them ([`needs_restart`]).
    pub(super) bound: Arc<std::sync::OnceLock<Bound>>,
}

/// What [`listen`] bound: the config's `status.listen` and `control_socket` at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Bound {
    pub(super) listen: Option<std::net::SocketAddr>,
    pub(super) control_socket: String,
}

impl<B: LinkBackend> Clone for Shared<B> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            worker: self.worker.clone(),
            bound: self.bound.clone(),
        }
    }
}

impl<B: LinkBackend> Shared<B> {
    /// Waits for the state (fairly: in the order asked) and holds it until the guard drops.
    pub(super) async fn lock(&self) -> tokio::sync::MutexGuard<'_, Reconciler<B>> {
        self.state.lock().await
    }
}

/// A job for the reconciler's thread.
pub(super) type Job = Box<dyn FnOnce() + Send>;

/// The reconciler's own thread, for the calls that block (the backend's link changes:
/// TUN devices, netlink; reading the inputs): one long-lived thread, so the async
/// runtime never waits for them and the daemon's thread count stays the same (a pool's
/// threads come and go). It ends when the last [`Shared`] is dropped.
pub(super) struct Worker {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Worker {
    pub(super) fn start() -> std::io::Result<Self> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("braid-reconcile".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })?;
        Ok(Self { jobs })
    }

    /// Runs `f` on the thread and waits (asynchronously) for its result; a panic in `f` is
    /// raised again here, as if it ran inline.
    pub(super) async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        });
        if self.jobs.send(job).is_err() {
            panic!("the reconciler's thread ended");
        }
        match rx.await {
            Ok(Ok(value)) => value,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!("the reconciler's thread ended"),
        }
    }
}

/// Runs `f` on the reconciler on its own thread (off the async runtime), holding the lock
/// for the whole call.
pub(super) async fn off_loop<B, T>(
    d: &Shared<B>,
    f: impl FnOnce(&mut Reconciler<B>) -> T + Send + 'static,
) -> T
where
    B: LinkBackend + 'static,
    T: Send + 'static,
{
    let state = d.state.clone();
    d.worker.run(move || f(&mut state.blocking_lock())).await
}
