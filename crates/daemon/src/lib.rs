//! braid's daemon: composition of the plan, the link backend and the system layer into a
//! reconcile loop, with reload on SIGHUP and on `braid reload`, and a control socket.

pub mod backend;
pub mod cleanup;
pub mod control;
pub mod fds;
pub mod fetch;
pub mod http;
pub mod instance;
pub mod kernel;
pub mod kernel_view;
pub mod liveness;
pub mod load;
pub mod metrics;
pub mod reconciler;
pub mod registry_file;
pub mod routing;
pub mod run;
pub mod status;
pub mod uplinks;
pub mod userspace;
pub mod vrf;

/// Runs `f`, which blocks (a netlink round trip, a thread entering a namespace, a child
/// process), on tokio's blocking pool and waits for it asynchronously, so that the async
/// runtime goes on meanwhile; a panic in `f` is raised again here, as if it ran inline.
pub(crate) async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only when the runtime shuts down before the task started.
            Err(e) => panic!("a blocking task was cancelled: {e}"),
        },
    }
}
