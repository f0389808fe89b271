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
//! A connection has no task of its own: the request that holds it drives
//! it (`Conn::driver`), first while waiting for the response head, then
//! from the response body as the client's connection reads it. A spawned
//! connection task cost two task wake-ups and a channel hop per proxied
//! request, more than the rest of the exchange on loopback. An idle
//! connection is therefore not polled while it waits in the pool; it is
//! polled once when checked out, which is when an upstream that closed it
//! meanwhile (a keep-alive timeout) is noticed, before a request is
//! written to it. A close noticed only after the request was queued (it
//! arrived in between) ends the connection, which is then dropped at once
//! so that hyper hands the request back for a retry on a fresh connection.
//!
//! This replaces hyper-util's pooled client, whose per-request dispatch
//! channel, pool checkout and readiness task cost more than the exchange
//! on loopback; what it gave that this keeps: connect timeout, TCP_NODELAY,
//! a retry on a fresh connection when a reused one was closed before the
//! request was written.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
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

/// The connection's I/O state machine: hyper's dispatcher, with upgrades
/// (a `101` hands the socket to the WebSocket relay). Boxed once per
/// connection so requests move a pointer, not the dispatcher (whose type
/// hyper does not name).
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// One upstream connection: the handle requests are sent through and the
/// future that does the connection's reading and writing.
struct Conn {
    sender: SendRequest<LimitedBody>,
    /// `None` once the connection has ended.
    driver: Option<Driver>,
}

impl Conn {
    /// Drives the connection as far as it can go now. `true` once it has
    /// ended (closed, broken or upgraded). The driver is then dropped at
    /// once: hyper answers a request still queued on it only when it is
    /// dropped (handing the request back, so it can be retried on a fresh
    /// connection); kept, that request would wait for the route timeout.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(driver) = self.driver.as_mut() else {
            return true;
        };
        let ended = match driver.as_mut().poll(cx) {
            Poll::Pending => false,
            Poll::Ready(Ok(())) => true,
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "gateway upstream connection ended");
                true
            }
        };
        if ended {
            self.driver = None;
        }
        ended
    }

    /// Whether the connection can take a request now. It is polled first,
    /// with no one to wake (whoever uses it next polls it again): that
    /// takes in the end of the last exchange, or the upstream's close.
    fn usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        !self.drive(&mut cx) && self.sender.is_ready()
    }
}

struct Idle {
    conn: Conn,
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
    /// `scheme://authority`. The response body drives the connection and
    /// hands it back when it has been read to its end.
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
        if let Some(conn) = self.shared.checkout(authority) {
            match self.exchange(conn, authority, req).await {
                Ok(response) => return Ok(response),
                // The upstream closed the idle connection before the
                // request was written: nothing was sent, try a fresh one.
                Err(Retry::Again(back)) => req = *back,
                Err(Retry::Failed(e)) => return Err(SendError::Exchange(e)),
            }
        }
        let conn = self.connect(authority).await?;
        match self.exchange(conn, authority, req).await {
            Ok(response) => Ok(response),
            Err(Retry::Again(_)) => Err(SendError::Connect(
                "the new connection closed before the request was sent".into(),
            )),
            Err(Retry::Failed(e)) => Err(SendError::Exchange(e)),
        }
    }

    /// Writes the request and waits for the response head, driving the
    /// connection meanwhile.
    async fn exchange(
        &self,
        mut conn: Conn,
        authority: &Authority,
        req: Request<LimitedBody>,
    ) -> Result<Response<Returning>, Retry> {
        let response = conn.sender.try_send_request(req);
        let mut response = std::pin::pin!(response);
        let answered = std::future::poll_fn(|cx| {
            // The connection first: it writes the request and reads the
            // answer, which the response future then finds. Once it has
            // ended (and been dropped), hyper has answered the request:
            // with the response, an error, or the request handed back.
            conn.drive(cx);
            response.as_mut().poll(cx)
        })
        .await;
        match answered {
            Ok(response) => {
                let upgraded = response.status() == hyper::StatusCode::SWITCHING_PROTOCOLS;
                let conn = match (conn.driver.take(), upgraded) {
                    (None, _) => None,
                    // The switch completes when the driver next runs, and
                    // the socket then belongs to the relay.
                    (Some(driver), true) => {
                        tokio::spawn(async move {
                            if let Err(e) = driver.await {
                                tracing::debug!(error = %e, "gateway upstream upgrade failed");
                            }
                        });
                        None
                    }
                    (Some(driver), false) => Some(Conn {
                        sender: conn.sender,
                        driver: Some(driver),
                    }),
                };
                Ok(response.map(|inner| Returning {
                    inner,
                    home: conn.map(|conn| Home {
                        conn,
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

    async fn connect(&self, authority: &Authority) -> Result<Conn, SendError> {
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
        Ok(Conn {
            sender,
            driver: Some(Box::pin(connection.with_upgrades())),
        })
    }
}

enum Retry {
    /// Boxed: only the rare retry pays for moving the request.
    Again(Box<Request<LimitedBody>>),
    Failed(hyper::Error),
}

impl Shared {
    /// The most recently used connection that can take a request now.
    fn checkout(&self, authority: &Authority) -> Option<Conn> {
        loop {
            let mut conn = {
                let mut idle = self.idle.lock().expect("pool lock");
                let list = idle.get_mut(authority)?;
                let now = Instant::now();
                // Oldest first: those past the idle timeout go.
                let fresh = list
                    .iter()
                    .position(|c| now.duration_since(c.since) < self.idle_timeout)
                    .unwrap_or(list.len());
                list.drain(..fresh);
                list.pop()?.conn
            };
            // Outside the lock: this may read from the socket. One that
            // cannot be used (the upstream closed it) is dropped.
            if conn.usable() {
                return Some(conn);
            }
        }
    }

    fn checkin(&self, authority: Authority, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.entry(authority).or_default();
        if list.len() >= self.max_idle {
            // The oldest goes: LIFO reuse means it is the least useful.
            list.remove(0);
        }
        list.push(Idle {
            conn,
            since: Instant::now(),
        });
    }
}

/// Where a connection goes back once its response is read.
struct Home {
    conn: Conn,
    pool: Arc<Shared>,
    authority: Authority,
}

/// An upstream response body that drives its connection while it is read
/// and returns the connection to the pool when it is dropped after having
/// been read to its end.
pub struct Returning {
    inner: Incoming,
    /// `None` once the connection has ended, was upgraded or broke.
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
        let this = &mut *self;
        let mut polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending() {
            // Asking for the frame told the connection it may read the
            // body; let it, then look again. A connection that ends here
            // has closed the body (with its end or an error).
            if let Some(home) = &mut this.home {
                if home.conn.drive(cx) {
                    this.home = None;
                }
                polled = Pin::new(&mut this.inner).poll_frame(cx);
            }
        }
        match &polled {
            Poll::Ready(None) => this.ended = true,
            Poll::Ready(Some(Err(_))) => this.home = None,
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
        if let Some(mut home) = self.home.take() {
            if (self.ended || self.inner.is_end_stream()) && home.conn.usable() {
                home.pool.checkin(home.authority, home.conn);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn request() -> Request<LimitedBody> {
        Request::builder()
            .uri("/x")
            .header(hyper::header::HOST, "upstream")
            .body(LimitedBody::empty())
            .unwrap()
    }

    /// An upstream that answers one request, then closes the connection
    /// while it is idle (a keep-alive timeout), without `Connection: close`.
    async fn answers_once_then_closes() -> Authority {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                if stream.read(&mut byte).await.unwrap() == 0 {
                    return;
                }
                head.push(byte[0]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
        authority
    }

    /// The race the checkout's poll narrows but cannot close: the
    /// upstream's close is seen only once a request is queued on the
    /// connection. hyper then hands the request back (for a retry on a
    /// fresh connection), but only when the ended connection is dropped;
    /// kept, the request waited for the route timeout.
    #[tokio::test]
    async fn a_request_queued_on_a_connection_that_then_ends_is_handed_back() {
        let authority = answers_once_then_closes().await;
        let pool = Pool::new(4, Duration::from_secs(60), Duration::from_secs(1));
        let response = pool
            .send(&Scheme::HTTP, &authority, request())
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        // The body was read to its end and dropped: the connection is idle
        // in the pool. Then the upstream closes it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Taken without the checkout's poll, as when the close arrives
        // between that poll and the request's first write.
        let conn = {
            let mut idle = pool.shared.idle.lock().unwrap();
            idle.get_mut(&authority).unwrap().pop().unwrap().conn
        };
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            pool.exchange(conn, &authority, request()),
        )
        .await
        .expect("the request waited on a connection that had ended");
        assert!(
            matches!(outcome, Err(Retry::Again(_))),
            "the request was not handed back"
        );
    }
}
