//! Upstream connections the gateway holds itself: HTTP/1.1 connections per
//! upstream (`hyper::client::conn::http1`), idle ones reused last-in
//! first-out (the warmest socket, and the others age out), at most
//! `max_idle` kept per upstream. A connection serves one exchange at a time:
//! it is checked out for a request and comes back only once the response
//! body has been read to its end and hyper says the connection can take the
//! next request, so a request never queues behind another. A connection
//! that failed, was closed by the upstream, was upgraded (WebSocket) or
//! whose response was abandoned half-read is dropped, not returned.
//!
//! This replaces hyper-util's pooled client, whose per-request dispatch
//! channel, pool checkout and readiness task cost more than the exchange
//! on loopback; what it gave that this keeps: connect timeout, TCP_NODELAY,
//! a retry on a fresh connection when a reused one was closed before the
//! request was written. Beyond it, as nginx does: an idempotent request
//! without a body that a reused connection's upstream closed on, after
//! writing but before any response, is sent once more on a fresh
//! connection (an upstream's keep-alive timeout can cross the request).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::http::uri::{Authority, Scheme};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::proxy::LimitedBody;

/// Why an exchange with the upstream failed: before a connection existed
/// (unreachable) or on it (the exchange broke).
#[derive(Debug)]
pub enum SendError {
    Connect(String),
    Exchange(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(why) => write!(f, "connect: {why}"),
            SendError::Exchange(e) => write!(f, "{}", super::proxy::chain(e)),
        }
    }
}

/// A reused connection idle at least this long may have met the upstream's
/// keep-alive timeout as the request went out: the request is copied first,
/// when it can be sent again (keep-alive timeouts are seconds; a copy for
/// every request on a busy connection would cost without a reason).
const RETRY_AFTER_IDLE: Duration = Duration::from_secs(1);

pub struct Pool {
    shared: Arc<Shared>,
    connect_timeout: Duration,
}

struct Shared {
    idle: Mutex<HashMap<Authority, Vec<Idle>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

struct Idle {
    sender: SendRequest<LimitedBody>,
    since: Instant,
}

impl Pool {
    pub fn new(max_idle: usize, idle_timeout: Duration, connect_timeout: Duration) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                idle: Mutex::new(HashMap::new()),
                max_idle,
                idle_timeout,
            }),
            connect_timeout,
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) to the upstream at
    /// `scheme://authority`. The response body hands the connection back
    /// when it has been read to its end.
    pub async fn send(
        &self,
        scheme: &Scheme,
        authority: &Authority,
        mut req: Request<LimitedBody>,
    ) -> Result<Response<Returning>, SendError> {
        if *scheme != Scheme::HTTP {
            // As hyper-util's HttpConnector did: no TLS to upstreams.
            return Err(SendError::Connect(
                "only http:// upstreams are supported".into(),
            ));
        }
        if let Some((sender, idle_for)) = self.shared.checkout(authority) {
            let copy = (idle_for >= RETRY_AFTER_IDLE)
                .then(|| resendable_copy(&req))
                .flatten();
            match self.exchange(sender, authority, req).await {
                Ok(response) => return Ok(response),
                // The upstream closed the idle connection before the
                // request was written: nothing was sent, try a fresh one.
                Err(Retry::Again(back)) => req = *back,
                // It closed as the request went out, and nothing of a
                // response came back: an idempotent request is sent again.
                Err(Retry::Failed(e)) => match copy {
                    Some(copy) if closed_before_answering(&e) => {
                        tracing::debug!(upstream = %authority, error = %e, "gateway upstream closed a reused connection; sending the request again");
                        req = copy;
                    }
                    _ => return Err(SendError::Exchange(e)),
                },
            }
        }
        let sender = self.connect(authority).await?;
        match self.exchange(sender, authority, req).await {
            Ok(response) => Ok(response),
            Err(Retry::Again(_)) => Err(SendError::Connect(
                "the new connection closed before the request was sent".into(),
            )),
            Err(Retry::Failed(e)) => Err(SendError::Exchange(e)),
        }
    }

    async fn exchange(
        &self,
        mut sender: SendRequest<LimitedBody>,
        authority: &Authority,
        req: Request<LimitedBody>,
    ) -> Result<Response<Returning>, Retry> {
        match sender.try_send_request(req).await {
            Ok(response) => {
                let upgraded = response.status() == hyper::StatusCode::SWITCHING_PROTOCOLS;
                Ok(response.map(|inner| Returning {
                    inner,
                    // An upgraded connection belongs to the relay now.
                    home: (!upgraded).then(|| Home {
                        sender,
                        pool: self.shared.clone(),
                        authority: authority.clone(),
                    }),
                    ended: false,
                }))
            }
            Err(mut e) => match e.take_message() {
                Some(req) => Err(Retry::Again(Box::new(req))),
                None => Err(Retry::Failed(e.into_error())),
            },
        }
    }

    async fn connect(&self, authority: &Authority) -> Result<SendRequest<LimitedBody>, SendError> {
        let stream = super::h1_pool::dial(authority, self.connect_timeout)
            .await
            .map_err(|e| SendError::Connect(e.to_string()))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Connect(e.to_string()))?;
        tokio::spawn(async move {
            // Upgrades: the connection hands its socket to the relay.
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "gateway upstream connection ended");
            }
        });
        Ok(sender)
    }
}

enum Retry {
    /// Boxed: only the rare retry pays for moving the request.
    Again(Box<Request<LimitedBody>>),
    Failed(hyper::Error),
}

/// A copy of a request that may be sent twice: an idempotent method
/// (RFC 9110 §9.2.2) and no body.
fn resendable_copy(req: &Request<LimitedBody>) -> Option<Request<LimitedBody>> {
    if !req.method().is_idempotent() || !req.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(req.body().empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// Whether the exchange broke because the upstream closed the connection
/// (end of stream or reset) before a response began.
fn closed_before_answering(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        source = cause.source();
    }
    false
}

impl Shared {
    /// The most recently used connection that can take a request now, and
    /// how long it had been idle.
    fn checkout(&self, authority: &Authority) -> Option<(SendRequest<LimitedBody>, Duration)> {
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.get_mut(authority)?;
        let now = Instant::now();
        // Oldest first: those past the idle timeout go.
        let fresh = list
            .iter()
            .position(|c| now.duration_since(c.since) < self.idle_timeout)
            .unwrap_or(list.len());
        list.drain(..fresh);
        // A connection whose task has not yet taken in the end of its last
        // exchange (another worker thread) is kept for later, not used.
        let mut finishing = Vec::new();
        let mut found = None;
        while let Some(conn) = list.pop() {
            if conn.sender.is_ready() {
                found = Some((conn.sender, now.duration_since(conn.since)));
                break;
            }
            if !conn.sender.is_closed() {
                finishing.push(conn);
            }
        }
        list.extend(finishing.into_iter().rev());
        found
    }

    fn checkin(&self, authority: Authority, sender: SendRequest<LimitedBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.entry(authority).or_default();
        if list.len() >= self.max_idle {
            // The oldest goes: LIFO reuse means it is the least useful.
            list.remove(0);
        }
        list.push(Idle {
            sender,
            since: Instant::now(),
        });
    }
}

/// Where a connection goes back once its response is read.
struct Home {
    sender: SendRequest<LimitedBody>,
    pool: Arc<Shared>,
    authority: Authority,
}

/// An upstream response body that returns its connection to the pool when
/// it is dropped after having been read to its end.
pub struct Returning {
    inner: Incoming,
    home: Option<Home>,
    ended: bool,
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.ended = true,
            Poll::Ready(Some(Err(_))) => self.home = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            if self.ended || self.inner.is_end_stream() {
                home.pool.checkin(home.authority, home.sender);
            }
        }
    }
}
