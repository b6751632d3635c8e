//! The HTTP status listener (config `status.listen`): `GET /status` is the status JSON,
//! `GET /metrics` the Prometheus exposition. Other paths answer 404, other methods 405.
//! Handlers ask the run loop for a fresh status over a channel; they never block it long.

use crate::status::Status;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use tokio::sync::{mpsc, oneshot};

/// A request for the current status, answered by the run loop.
pub type StatusRequest = oneshot::Sender<Status>;

async fn fetch(tx: &mpsc::Sender<StatusRequest>) -> Option<Status> {
    let (reply, answer) = oneshot::channel();
    tx.send(reply).await.ok()?;
    answer.await.ok()
}

async fn status_json(State(tx): State<mpsc::Sender<StatusRequest>>) -> Response {
    match fetch(&tx).await {
        Some(status) => axum::Json(status).into_response(),
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn metrics(State(tx): State<mpsc::Sender<StatusRequest>>) -> Response {
    match fetch(&tx).await {
        Some(status) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            crate::metrics::render(&status),
        )
            .into_response(),
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

pub fn router(tx: mpsc::Sender<StatusRequest>) -> Router {
    Router::new()
        .route("/status", get(status_json))
        .route("/metrics", get(metrics))
        .with_state(tx)
}

/// Binds the listener now (so a busy port is an error at start) and serves it in the
/// background.
pub async fn serve(
    addr: SocketAddr,
    tx: mpsc::Sender<StatusRequest>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "status listener: GET /status, GET /metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(tx)).await {
            tracing::error!("status listener: {e}");
        }
    }))
}
