//! Server-Sent Events: `GET /api/v1/stream` (flag definitions: sessions of
//! any role and `server` tokens) and `GET /ofrep/v1/events` (OFREP change
//! notices, `{"type":"refetchEvaluation","etag":...}`; any credential,
//! `client` tokens included, and no definition ever travels on it).
//!
//! A stream starts with `retry:` and either a snapshot or the replay of
//! what the client missed (`Last-Event-ID` or `?last_event_id=`), then
//! follows the hub (`crate::stream`). It ends when the client falls behind
//! (after `event: resync`), when its credential is revoked or expires, and
//! when the server stops. An idle stream sends a heartbeat comment, which
//! also keeps the listener's stall timeout (`server.idle_timeout`) from
//! cutting it. Each connection is one small state machine polled by hyper:
//! no task, no channel of its own.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use chrono::Utc;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use super::auth::stream_caller;
use super::error::{ApiError, Query};
use super::AppState;
use crate::error::Error;
use crate::iam::{Caller, Credential};
use crate::model::Role;
use crate::stream::{Message, Start, HEARTBEAT, RESYNC_RELOAD, RESYNC_SLOW};

/// What a stream carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Definitions,
    Refetch,
}

/// `GET /api/v1/stream`.
pub async fn definitions(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let caller = stream_caller(&parts, &state, query.get("token").map(String::as_str)).await?;
    // Definitions hold targeting data: never for a public client token.
    caller.require(Role::User)?;
    open(&state, caller, &parts.headers, &query, Kind::Definitions)
}

/// `GET /ofrep/v1/events`.
pub async fn ofrep_events(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let caller = stream_caller(&parts, &state, query.get("token").map(String::as_str)).await?;
    open(&state, caller, &parts.headers, &query, Kind::Refetch)
}

/// The id the client resumes from: the `Last-Event-ID` header (what an
/// `EventSource` sends when it reconnects) wins over `?last_event_id=`.
fn last_event_id(
    headers: &axum::http::HeaderMap,
    query: &HashMap<String, String>,
) -> Result<Option<u64>, ApiError> {
    let text = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| Error::invalid("Last-Event-ID", "must be a change number"))?,
        ),
        None => query.get("last_event_id").map(String::as_str),
    };
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => t
            .parse::<u64>()
            .map(Some)
            .map_err(|_| Error::invalid("Last-Event-ID", "must be a change number").into()),
    }
}

fn open(
    state: &AppState,
    caller: Caller,
    headers: &axum::http::HeaderMap,
    query: &HashMap<String, String>,
    kind: Kind,
) -> Result<Response, ApiError> {
    let resume = last_event_id(headers, query)?;
    let hub = &state.stream;
    let (start, receiver) = hub.join(resume);
    let config = hub.config();
    let mut queue = VecDeque::with_capacity(2);
    queue.push_back(Bytes::from(format!(
        "retry: {}\n\n",
        config.retry.get().as_millis()
    )));
    match (kind, start) {
        (Kind::Definitions, Start::Snapshot { frame, .. }) => queue.push_back(frame),
        (Kind::Definitions, Start::Replay(changes)) => {
            queue.extend(changes.iter().map(|c| c.frame.clone()))
        }
        // A notice says "refetch"; one for everything missed is enough.
        (Kind::Refetch, Start::Replay(changes)) => {
            if let Some(last) = changes.last() {
                queue.push_back(last.refetch.clone());
            }
        }
        // Resuming from an id the history no longer covers: refetch once.
        (Kind::Refetch, Start::Snapshot { seq, .. }) if resume.is_some() => {
            queue.push_back(crate::stream::refetch_frame(seq, &state.flags.live().tag))
        }
        (Kind::Refetch, Start::Snapshot { .. }) => {}
    }
    let (token, expires_at) = match &caller.credential {
        Credential::ApiToken { id, expires_at, .. } => (Some(id.clone()), *expires_at),
        // A session closes when its JWT expires; the client reconnects
        // with a fresh token.
        Credential::Session { expires_at } => (None, Some(*expires_at)),
    };
    let expires = expires_at.map(|at| {
        let left = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        Instant::now() + left
    });
    let connection = Connection {
        receiver,
        kind,
        user: caller.user.id,
        token,
        expires,
        heartbeat: config.heartbeat.get(),
        queue,
        closing: false,
    };
    let body = Body::from_stream(futures_util::stream::unfold(connection, next));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// One client's stream state.
struct Connection {
    receiver: broadcast::Receiver<Arc<Message>>,
    kind: Kind,
    user: String,
    /// The API token behind the stream, if it is one.
    token: Option<String>,
    /// When the credential (API token or session JWT) expires.
    expires: Option<Instant>,
    heartbeat: Duration,
    /// Bytes to send before waiting for the hub again.
    queue: VecDeque<Bytes>,
    /// Ends the stream once the queue is sent.
    closing: bool,
}

/// The next chunk of the body; `None` ends the response cleanly.
async fn next(mut c: Connection) -> Option<(Result<Bytes, std::convert::Infallible>, Connection)> {
    loop {
        if let Some(bytes) = c.queue.pop_front() {
            return Some((Ok(bytes), c));
        }
        if c.closing {
            return None;
        }
        let beat = Instant::now() + c.heartbeat;
        let wake = c.expires.map_or(beat, |at| at.min(beat));
        tokio::select! {
            received = c.receiver.recv() => match received {
                Ok(message) => match &*message {
                    Message::Flag(change) => c.queue.push_back(match c.kind {
                        Kind::Definitions => change.frame.clone(),
                        Kind::Refetch => change.refetch.clone(),
                    }),
                    Message::Revoked { user, token } => {
                        if user.as_deref() == Some(c.user.as_str())
                            || (token.is_some() && token.as_deref() == c.token.as_deref())
                        {
                            tracing::debug!(user = %c.user, "closing a stream whose credential was revoked");
                            return None;
                        }
                    }
                    Message::Resync => {
                        c.queue.push_back(Bytes::from_static(RESYNC_RELOAD));
                        c.closing = true;
                    }
                    Message::Shutdown => return None,
                },
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(user = %c.user, missed, "closing a stream that fell behind");
                    if c.kind == Kind::Definitions {
                        c.queue.push_back(Bytes::from_static(RESYNC_SLOW));
                    }
                    c.closing = true;
                }
                Err(RecvError::Closed) => return None,
            },
            _ = tokio::time::sleep_until(wake) => {
                if c.expires.is_some_and(|at| Instant::now() >= at) {
                    return None;
                }
                c.queue.push_back(Bytes::from_static(HEARTBEAT));
            }
        }
    }
}
