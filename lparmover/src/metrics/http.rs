//! `/metrics` and `/healthz` of a manager process (the navigator, the policy daemon) over plain
//! HTTP on a loopback address the operator gives (`--metrics 127.0.0.1:PORT`).
//!
//! Plain HTTP without a token is safe only where nobody but this machine's users can connect:
//! an address outside 127.0.0.0/8 (and `::1`) is refused unless the operator says so as well
//! (`allow_remote`), and then a warning says the figures are readable by anyone who can
//! reach it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{CONTENT_TYPE, Metrics};

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsServeError {
    /// A non-loopback address without the operator's say-so.
    #[error(
        "{0} is not a loopback address: the metrics endpoint is plain HTTP without a token, so it listens on 127.0.0.0/8 or ::1 only (give 127.0.0.1:PORT and let Prometheus scrape it on this machine, or add --metrics-allow-remote if anyone who can reach {0} may read the figures)"
    )]
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error(
        "cannot listen on {addr} for metrics: {source} (choose another port, or stop what holds it)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Binds `addr` for [`serve`], refusing a non-loopback address unless `allow_remote`.
pub fn bind(
    addr: SocketAddr,
    allow_remote: bool,
) -> Result<std::net::TcpListener, MetricsServeError> {
    if !addr.ip().is_loopback() {
        if !allow_remote {
            return Err(MetricsServeError::NotLoopback(addr));
        }
        tracing::warn!(%addr, "metrics served on a non-loopback address over plain HTTP without a token: anyone who can reach it can read them");
    }
    let bind_err = |source| MetricsServeError::Bind { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    Ok(listener)
}

#[derive(Clone)]
struct Served {
    metrics: Arc<Metrics>,
    process: Arc<str>,
}

/// The routes: `GET /metrics` (Prometheus text format) and `GET /healthz` (JSON:
/// `{"status":"up","process":…,"version":…}`).
pub fn router(metrics: Arc<Metrics>, process: &str) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(health))
        .with_state(Served {
            metrics,
            process: process.into(),
        })
}

async fn render(State(s): State<Served>) -> Response {
    metrics_response(&s.metrics)
}

/// `/metrics`' answer: the rendered series with their content type.
pub fn metrics_response(metrics: &Metrics) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render()).into_response()
}

async fn health(State(s): State<Served>) -> Response {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({
            "status": "up",
            "process": &*s.process,
            "version": env!("CARGO_PKG_VERSION"),
        })),
    )
        .into_response()
}

/// Serves [`router`] on `listener` (from [`bind`]) until the task is dropped or the process
/// ends. Call inside a Tokio runtime.
pub async fn serve(
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
    process: &str,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, process, "metrics endpoint listening (/metrics, /healthz)");
    }
    axum::serve(listener, router(metrics, process)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One HTTP/1.1 GET on a fresh connection: the head and the body.
    async fn get(addr: SocketAddr, path: &str) -> (String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("request");
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.expect("answer");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        (head.to_owned(), body.to_owned())
    }

    #[test]
    fn a_non_loopback_address_is_refused_unless_asked_for() {
        let addr: SocketAddr = "192.0.2.1:9100".parse().expect("address");
        let e = bind(addr, false).expect_err("refused");
        assert!(matches!(e, MetricsServeError::NotLoopback(_)));
        assert!(e.to_string().contains("--metrics-allow-remote"), "{e}");
    }

    #[tokio::test]
    async fn metrics_and_health_answer_over_http() {
        let listener = bind("127.0.0.1:0".parse().expect("address"), false).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = Arc::new(Metrics::new(&[]));
        metrics
            .moves
            .one_step(super::super::Part::Manager, crate::model::Mode::Shutdown);
        let server = tokio::spawn(serve(listener, metrics, "test"));
        let (head, text) = get(addr, "/metrics").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-type: {CONTENT_TYPE}")),
            "{head}"
        );
        assert!(
            text.contains(
                "lparmover_moves_ended_total{role=\"manager\",mode=\"shutdown\",outcome=\"completed\"} 1"
            ),
            "{text}"
        );
        let (head, body) = get(addr, "/healthz").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let health: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(health["status"], "up");
        assert_eq!(health["process"], "test");
        let (head, _) = get(addr, "/nothing").await;
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        server.abort();
    }
}
