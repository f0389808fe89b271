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
//! request was written.

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
use tokio::net::TcpStream;
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
        if let Some(sender) = self.shared.checkout(authority) {
            match self.exchange(sender, authority, req).await {
                Ok(response) => return Ok(response),
                // The upstream closed the idle connection before the
                // request was written: nothing was sent, try a fresh one.
                Err(Retry::Again(back)) => req = *back,
                Err(Retry::Failed(e)) => return Err(SendError::Exchange(e)),
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
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| SendError::Connect(format!("timed out after {:?}", self.connect_timeout)))?
            .map_err(|e| SendError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
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

impl Shared {
    /// The most recently used connection that can take a request now.
    fn checkout(&self, authority: &Authority) -> Option<SendRequest<LimitedBody>> {
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
                found = Some(conn.sender);
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
