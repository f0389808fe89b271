//! The gateway over HTTP: the proxy mount (`/gateway`, `/gateway/*`) and
//! the admin API for its routes (`/api/v1/gateway/routes`).
//!
//! The mount is served twice over: by the router (for `tower` callers such
//! as the unit tests) and by `Direct`, which the connection's service calls
//! before the router. The direct path skips the router's per-request
//! service clones and layers, so it does their work itself: the request id
//! (echoed or generated, carried by the log span), the request log line,
//! and panic recovery with the same 500 body. The gateway needs no body
//! limit layer: it streams, bounded by `gateway.max_body_bytes`.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use serde_json::{json, Value};
use tracing::Instrument;

use super::auth::MaybeCaller;
use super::error::{self, ApiError, ConnectInfo, Json, Path};
use super::AppState;
use crate::iam::Caller;

/// Every method of every path below `/gateway`. An invalid credential is
/// treated as none (the request may be meant for the upstream); a route
/// with `require_role` then refuses it.
pub async fn proxy(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    MaybeCaller(caller): MaybeCaller,
    req: Request,
) -> Response {
    match state.gateway.serve(req, caller, peer).await {
        Ok(response) => response,
        Err(e) => error::proxy_error(e),
    }
}

/// Whether `path` is under the gateway's mount.
pub fn is_mount(path: &str) -> bool {
    path.strip_prefix(crate::gateway::MOUNT)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The gateway served straight from the connection; see the module docs.
#[derive(Clone)]
pub struct Direct(Arc<AppState>);

impl Direct {
    pub fn new(state: AppState) -> Direct {
        Direct(Arc::new(state))
    }

    /// One request below the mount, with what the router's layers give
    /// every other route.
    pub async fn serve<B>(self, req: hyper::Request<B>, peer: std::net::SocketAddr) -> Response
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let (parts, body) = req.into_parts();
        let id = request_id(&parts);
        let logged = Logged::start(parts.method.as_str(), parts.uri.path());
        let req = hyper::Request::from_parts(parts, body);
        let span = request_span(&id);
        let handled = AssertUnwindSafe(self.handle(req, peer).instrument(span.clone()))
            .catch_unwind()
            .await;
        let mut response = match handled {
            Ok(response) => response,
            Err(panic) => span.in_scope(|| error::panic_response(panic)),
        };
        if let Some(logged) = logged {
            logged.write(&span, response.status().as_u16());
        }
        response
            .headers_mut()
            .insert(super::request::REQUEST_ID, id);
        response
    }

    pub(super) fn state(&self) -> &AppState {
        &self.0
    }

    async fn handle<B>(&self, req: hyper::Request<B>, peer: std::net::SocketAddr) -> Response
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let state = &*self.0;
        let (mut parts, body) = req.into_parts();
        let caller = match MaybeCaller::from_request_parts(&mut parts, state).await {
            Ok(MaybeCaller(caller)) => caller,
            Err(e) => return e.into_response(),
        };
        let req = Request::from_parts(parts, Body::new(body));
        match state.gateway.serve(req, caller, peer).await {
            Ok(response) => response,
            Err(e) => error::proxy_error(e),
        }
    }
}

/// The request's own id when it is sane, else a generated one.
pub(super) fn request_id(head: &impl crate::request_head::RequestHead) -> HeaderValue {
    head.first(super::request::REQUEST_ID)
        .and_then(crate::request_head::text)
        .filter(|id| super::request::acceptable(id))
        .and_then(|id| HeaderValue::from_str(id).ok())
        .unwrap_or_else(generated_request_id)
}

/// The span a gateway request's log lines carry.
pub(super) fn request_span(id: &HeaderValue) -> tracing::Span {
    tracing::info_span!(target: "flagbase::http::request", "request", request_id = id.to_str().unwrap_or_default())
}

/// What the request log line needs, taken only when it is written.
pub(super) struct Logged {
    method: String,
    path: String,
    started: std::time::Instant,
}

impl Logged {
    pub(super) fn start(method: &str, path: &str) -> Option<Logged> {
        tracing::enabled!(target: "flagbase::http::request", tracing::Level::INFO).then(|| Logged {
            method: method.to_owned(),
            path: path.to_owned(),
            started: std::time::Instant::now(),
        })
    }

    pub(super) fn write(self, span: &tracing::Span, status: u16) {
        let Logged {
            method,
            path,
            started,
        } = self;
        span.in_scope(|| {
            tracing::info!(
                target: "flagbase::http::request",
                %method,
                %path,
                status,
                latency_ms = started.elapsed().as_secs_f64() * 1000.0,
                "request"
            )
        });
    }
}

/// A request id without a random draw per request: a random per-process
/// prefix and a counter (`3f9c2a71b0d4e856-42`). Ids need to be unique
/// for correlating logs, not unguessable.
fn generated_request_id() -> HeaderValue {
    static PREFIX: OnceLock<[u8; 16]> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| {
        let mut hex = [0u8; 16];
        let random = uuid::Uuid::new_v4();
        for (i, b) in random.as_bytes()[..8].iter().enumerate() {
            hex[2 * i] = HEX[usize::from(b >> 4)];
            hex[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        hex
    });
    let mut buf = [0u8; 16 + 1 + 20];
    buf[..16].copy_from_slice(prefix);
    buf[16] = b'-';
    let mut n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[17 + i] = digits[len - 1 - i];
    }
    HeaderValue::from_bytes(&buf[..17 + len]).expect("hex digits and a dash")
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let routes: Vec<Value> = state
        .gateway
        .list(&caller)
        .await?
        .iter()
        .map(|r| r.api_json())
        .collect();
    Ok(axum::Json(json!({ "routes": routes })).into_response())
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let route = state.gateway.create(&caller, body).await?;
    Ok((StatusCode::CREATED, axum::Json(route.api_json())).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let route = state.gateway.get(&caller, &id).await?;
    Ok(axum::Json(route.api_json()).into_response())
}

pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let route = state.gateway.replace(&caller, &id, body).await?;
    Ok(axum::Json(route.api_json()).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.gateway.delete(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
