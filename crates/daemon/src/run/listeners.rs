//! The control socket and the HTTP status listener, and the tasks that answer status
//! requests from the shared state whatever the run loop is doing.

use super::*;

/// The listeners, each served by its own tasks: status requests are answered by
/// [`serve_status`], the other control requests come to the run loop on `control`.
pub(super) struct Listeners {
    /// The control socket's path (removed at exit).
    pub(super) socket: PathBuf,
    pub(super) control: tokio::sync::mpsc::UnboundedReceiver<control::Incoming>,
    pub(super) _tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Binds the control socket and, when the config has `status.listen`, the status listener;
/// status requests are answered by [`serve_status`] from `d`, whatever the loop is doing.
pub(super) async fn listen<B: LinkBackend + 'static>(
    d: &Shared<B>,
    started: SystemTime,
) -> Result<Listeners, RunError> {
    let (socket, status_listen) = {
        let r = d.lock().await;
        let config = r.loaded().map(|l| &l.config);
        (
            config
                .map(|c| PathBuf::from(&c.control_socket))
                .unwrap_or_default(),
            config.and_then(|c| c.status.listen),
        )
    };
    let listener = control::bind(&socket).map_err(|source| RunError::Control {
        path: socket.display().to_string(),
        source,
    })?;
    // Each client in its own task (read deadline, size limit).
    let (control_tx, control_rx) = tokio::sync::mpsc::channel::<control::Incoming>(16);
    let mut tasks = vec![control::serve(listener, control_tx)];
    let (status_tx, status_rx) = tokio::sync::mpsc::channel::<crate::http::StatusRequest>(64);
    if let Some(addr) = status_listen {
        let task = crate::http::serve(addr, status_tx)
            .await
            .map_err(|source| RunError::Status { addr, source })?;
        tasks.push(task);
    }
    let _ = d.bound.set(Bound {
        listen: status_listen,
        control_socket: socket.display().to_string(),
    });
    // At most `control::MAX_CONNECTIONS` requests are in flight: unbounded is bounded.
    let (to_loop, control) = tokio::sync::mpsc::unbounded_channel();
    let requests = Requests {
        http: status_rx,
        control: control_rx,
        to_loop,
    };
    tasks.push(tokio::spawn(serve_status(d.clone(), started, requests)));
    Ok(Listeners {
        socket,
        control,
        _tasks: tasks,
    })
}

/// The requests [`serve_status`] takes: the HTTP listener's and the control socket's.
pub(super) struct Requests {
    http: tokio::sync::mpsc::Receiver<crate::http::StatusRequest>,
    pub(super) control: tokio::sync::mpsc::Receiver<control::Incoming>,
    /// Control requests other than status, for the run loop.
    to_loop: tokio::sync::mpsc::UnboundedSender<control::Incoming>,
}

/// Answers status requests (HTTP, and `status` on the control socket), each in its own
/// task that locks the daemon only to read it; passes the other control requests to the
/// run loop, in order.
pub(super) async fn serve_status<B: LinkBackend + 'static>(
    d: Shared<B>,
    started: SystemTime,
    mut requests: Requests,
) {
    loop {
        tokio::select! {
            Some(reply) = requests.http.recv() => {
                let d = d.clone();
                tokio::spawn(async move {
                    let _ = reply.send(status_document(&d, started).await);
                });
            }
            Some(incoming) = requests.control.recv() => {
                if !matches!(incoming.request, Request::Status) {
                    if requests.to_loop.send(incoming).is_err() {
                        return;
                    }
                    continue;
                }
                let d = d.clone();
                tokio::spawn(async move {
                    let _ = incoming.reply.send(status_reply(&d, started).await);
                });
            }
            else => return,
        }
    }
}

/// The status document at this moment: made under the lock, then the kernel's view is
/// added without it. Making it reads every link's state from the backend, which blocks
/// with the kernel backend (netlink round trips): it runs on tokio's blocking pool, not on
/// the reconciler's thread, which may be in the middle of a reload's links.
pub(super) async fn status_document<B: LinkBackend + 'static>(
    d: &Shared<B>,
    started: SystemTime,
) -> Status {
    let state = d.state.clone();
    let (doc, netns) = crate::off_runtime(move || {
        let r = state.blocking_lock();
        (
            status::status(&r, started, SystemTime::now()),
            status::netns(&r),
        )
    })
    .await;
    crate::kernel_view::fill(doc, netns).await
}

/// The control socket's reply to `status`: the status document as JSON.
pub(super) async fn status_reply<B: LinkBackend + 'static>(
    d: &Shared<B>,
    started: SystemTime,
) -> Reply {
    let mut reply = Reply::ok("status");
    reply.status = serde_json::to_value(status_document(d, started).await).ok();
    reply
}
