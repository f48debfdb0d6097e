//! The `/metrics` and `/healthz` HTTP endpoint, built to survive the pods it shares a node with.
//!
//! The DaemonSet binds it to the pod IP so the kubelet's probes and Prometheus reach it; any
//! container on the node can then open connections to it unless the CNI enforces the
//! NetworkPolicy in `infra/daemonset.yaml`. So the server assumes hostile clients:
//!
//! - at most [`Limits::max_connections`] connections at once; one more is closed as soon as it is
//!   accepted, and counted (`peregrine_http_connections_rejected_total`);
//! - a request head must arrive within [`Limits::header_read_timeout`]. hyper starts that clock
//!   whenever it waits for a request, so it is also the keep-alive idle timeout: a slowloris
//!   client or an idle one loses its slot;
//! - a connection lives at most [`Limits::connection_lifetime`] (a client that never reads its
//!   response cannot hold a slot either);
//! - a request head is at most [`Limits::max_request_bytes`] and [`Limits::max_headers`]
//!   headers (hyper answers 431); a request with a body is refused (413); only `GET` on the two
//!   paths is served (405, 404);
//! - accept errors (EMFILE, ENFILE, ENOBUFS) back off exponentially instead of spinning, and are
//!   counted (`peregrine_http_accept_errors_total`);
//! - `/healthz` names the probes that failed, and why, only to a loopback peer
//!   ([`sees_probe_detail`]); other peers get counts.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Body, Bytes},
    header,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinSet,
};

use crate::{
    health::{Detail, Health},
    metrics::Metrics,
};

/// What one client may take from the endpoint. [`Limits::default`] is what the agent runs with.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once. Prometheus, the kubelet's three probes and an operator's
    /// `curl` need a handful; the rest is headroom for reconnects.
    pub max_connections: usize,
    /// Time allowed for a request head, counted from when the server starts waiting for it:
    /// also the keep-alive idle timeout.
    pub header_read_timeout: Duration,
    /// Whole life of a connection, however busy.
    pub connection_lifetime: Duration,
    /// Largest request head (request line and headers). hyper's minimum, 8 KiB.
    pub max_request_bytes: usize,
    /// Most headers in a request.
    pub max_headers: usize,
    /// First pause after an accept error; doubles on each consecutive error.
    pub accept_backoff_min: Duration,
    /// Longest pause after an accept error.
    pub accept_backoff_max: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 16,
            header_read_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(30),
            max_request_bytes: 8 * 1024,
            max_headers: 32,
            accept_backoff_min: Duration::from_millis(10),
            accept_backoff_max: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on {addr}: {source}")]
pub struct ServeError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Binds now (so a port conflict is reported at start) and serves with [`Limits::default`]
/// until the task is aborted, which closes every connection too.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    health: Health,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError { addr, source })?;
    Ok(serve_on(listener, Limits::default(), metrics, health))
}

/// Serves on a bound listener until the task is aborted.
pub fn serve_on(
    listener: TcpListener,
    limits: Limits,
    metrics: Metrics,
    health: Health,
) -> tokio::task::JoinHandle<()> {
    let state = Arc::new(State {
        registry: metrics.registry(&health),
        metrics,
        health,
        limits,
    });
    tokio::spawn(accept_loop(listener, state))
}

struct State {
    registry: Registry,
    metrics: Metrics,
    health: Health,
    limits: Limits,
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let permits = Arc::new(Semaphore::new(state.limits.max_connections));
    // Connections live in the set, so aborting this task closes them all.
    let mut conns = JoinSet::new();
    let mut backoff = state.limits.accept_backoff_min;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = conns.join_next() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = state.limits.accept_backoff_min;
                a
            }
            Err(e) => {
                // EMFILE and friends leave the connection in the backlog: accepting again at
                // once fails again at once. Pause, so a file-descriptor exhaustion does not
                // become a busy loop too.
                state.metrics.http_accept_errors.inc();
                tracing::warn!(error = %e, pause = ?backoff, "metrics endpoint: accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(state.limits.accept_backoff_max);
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over the cap: dropping the stream closes it now, without reading a byte.
            state.metrics.http_connections_rejected.inc();
            drop(stream);
            continue;
        };
        let state = state.clone();
        conns.spawn(async move {
            state.metrics.http_connections_open.inc();
            serve_connection(stream, peer, &state).await;
            state.metrics.http_connections_open.dec();
            drop(permit);
        });
    }
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, state: &Arc<State>) {
    let l = &state.limits;
    let svc_state = state.clone();
    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
        let resp = respond(&svc_state, &req, peer);
        async move { Ok::<_, Infallible>(resp) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(l.header_read_timeout)
        .max_buf_size(l.max_request_bytes.max(8 * 1024))
        .max_headers(l.max_headers)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    match tokio::time::timeout(l.connection_lifetime, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.is_timeout() => state.metrics.http_timeout("header"),
        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "metrics endpoint: connection error"),
        // Dropping the connection closes the socket.
        Err(_) => state.metrics.http_timeout("lifetime"),
    };
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Metrics,
    Healthz,
    NotFound,
    MethodNotAllowed,
    /// A request with a body: nothing here takes one, and not reading it would leave it in
    /// the connection.
    BodyNotAccepted,
}

/// Routes a request by its method, path and whether it carries a body.
pub fn route(method: &Method, path: &str, has_body: bool) -> Route {
    let known = match path {
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Healthz,
        _ => return Route::NotFound,
    };
    if method != Method::GET {
        Route::MethodNotAllowed
    } else if has_body {
        Route::BodyNotAccepted
    } else {
        known
    }
}

/// Whether a peer may see which probes failed and why. Only a loopback peer: in the agent's
/// own network namespace that is a process of the agent's pod (an operator's `kubectl exec`),
/// never another pod, the kubelet or a scraper. An IPv4-mapped IPv6 loopback counts too.
pub fn sees_probe_detail(peer: IpAddr) -> bool {
    peer.to_canonical().is_loopback()
}

fn respond<B: Body>(state: &State, req: &Request<B>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let has_body = !req.body().is_end_stream();
    let (status, content_type, body): (StatusCode, &str, Bytes) =
        match route(req.method(), req.uri().path(), has_body) {
            Route::Metrics => (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                state.metrics.render(&state.registry).into(),
            ),
            Route::Healthz => {
                let detail = if sees_probe_detail(peer.ip()) {
                    Detail::Full
                } else {
                    Detail::Counts
                };
                let (code, body) = state.health.healthz_for(detail);
                (
                    StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    "application/json",
                    body.into(),
                )
            }
            Route::NotFound => (
                StatusCode::NOT_FOUND,
                "text/plain",
                Bytes::from_static(b"not found\n"),
            ),
            Route::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                Bytes::from_static(b"method not allowed\n"),
            ),
            Route::BodyNotAccepted => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain",
                Bytes::from_static(b"no request body accepted\n"),
            ),
        };
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type);
    if status == StatusCode::METHOD_NOT_ALLOWED {
        b = b.header(header::ALLOW, "GET");
    }
    if has_body {
        // The unread body would be taken for the next request: end the connection instead.
        b = b.header(header::CONNECTION, "close");
    }
    b.body(Full::new(body)).unwrap_or_else(|_| {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

#[cfg(test)]
mod tests;
