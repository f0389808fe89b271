//! The HTTP listener: accepts connections and serves each with hyper's
//! HTTP/1, bounding what one client can hold. A connection must deliver a
//! complete request head within `header_read_timeout` (silent and half-sent
//! requests are closed), may wait at most `idle_timeout` between requests
//! or while a request body or response stalls, and at most
//! `max_connections` are served at once: further ones are
//! closed as they arrive, so clients already connected keep being served.
//! Shutdown stops accepting, lets each connection finish its request, and
//! waits for them at most `shutdown_timeout`.
//!
//! axum's `serve` has none of these knobs. hyper's own `header_read_timeout`
//! also runs while a kept-alive connection waits for its next request, so it
//! cannot express a longer keep-alive than head timeout; each connection
//! therefore keeps its own small clock (`Clock`) of which phase it is in.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body as AxumBody;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

use super::gateway_h1::Ended;
use super::gateway_routes::{is_mount, Direct};

/// Limits on connections; see the module documentation.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: u32,
    pub shutdown_timeout: Duration,
    /// Whether the gateway's own HTTP/1 path reads connections first
    /// (`gateway.fast_path`).
    pub gateway_fast_path: bool,
}

/// Serves `router` on `listener` until `shutdown` turns true, then drains.
/// Requests below `/gateway` go to `gateway` instead when it is given.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    gateway: Option<Direct>,
    options: ServeOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(options.max_connections as usize));
    let full = Arc::new(AtomicBool::new(false));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors or similar: retrying at once would
                // spin, so pause (still answering shutdown).
                tracing::warn!(error = %e, "cannot accept connections; retrying in a second");
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if !full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max_connections = options.max_connections,
                    "connection limit reached (server.max_connections); closing new connections until one ends"
                );
            }
            drop(stream);
            continue;
        };
        let connection = Connection {
            peer,
            options,
            full: full.clone(),
            slot: Some(slot),
        };
        let handlers = Handlers {
            router: router.clone(),
            gateway: gateway.clone(),
        };
        tokio::spawn(connection.serve(stream, handlers, shutdown.clone()));
    }
    // New connections are refused from here on.
    drop(listener);
    let everyone = slots.acquire_many(options.max_connections);
    if tokio::time::timeout(options.shutdown_timeout, everyone)
        .await
        .is_err()
    {
        tracing::warn!(grace = ?options.shutdown_timeout, "in-flight requests did not finish in time; closing them");
    }
}

/// Errors that concern one connection, not the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What serves a connection's requests: the gateway's direct path for its
/// mount (proxied requests skip the router's layers), the router for the rest.
struct Handlers {
    router: Router,
    gateway: Option<Direct>,
}

/// The handler one request goes to.
enum Handler {
    Router(Router),
    Gateway(Direct),
}

/// One accepted connection and the slot it holds until it ends.
struct Connection {
    peer: SocketAddr,
    options: ServeOptions,
    full: Arc<AtomicBool>,
    slot: Option<OwnedSemaphorePermit>,
}

impl Connection {
    async fn serve(
        self,
        stream: TcpStream,
        handlers: Handlers,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        let clock = Arc::new(Clock::new());
        let mut watched = Watched {
            inner: stream,
            clock: clock.clone(),
            read: Bytes::new(),
        };
        // The gateway's own HTTP/1 path reads first; hyper takes over at
        // the first request it does not carry, with the bytes read so far
        // (`Watched::read`).
        let mut read = BytesMut::new();
        if let Some(gateway) = handlers
            .gateway
            .as_ref()
            .filter(|_| self.options.gateway_fast_path)
        {
            let mut stop = shutdown.clone();
            // Boxed: its state is large, and inline it would stay in the
            // task of every connection, also once hyper serves it (an SSE
            // stream held for days).
            let own =
                Box::pin(gateway.serve_h1(&mut watched, &mut read, self.peer, &clock, &mut stop));
            let ended = tokio::select! {
                ended = own => ended,
                phase = clock.expired(&self.options) => {
                    tracing::debug!(peer = %self.peer, phase, "closing a connection that timed out");
                    Ended::Closed
                }
            };
            if matches!(ended, Ended::Closed) {
                return;
            }
        }
        watched.read = read.freeze();
        let io = TokioIo::new(watched);
        let peer = self.peer;
        let requests = clock.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let handler = match &handlers.gateway {
                Some(gateway) if is_mount(req.uri().path()) => Handler::Gateway(gateway.clone()),
                _ => {
                    // Handlers (login throttling) read the peer address from here.
                    req.extensions_mut().insert(ConnectInfo(peer));
                    Handler::Router(handlers.router.clone())
                }
            };
            let busy = requests.request_started(!req.body().is_end_stream());
            let clock = requests.clone();
            let req = req.map(|inner| WatchedBody { inner, clock });
            async move {
                let response = match handler {
                    Handler::Router(router) => router.oneshot(req).await?,
                    // Boxed: hyper keeps one allocation the size of this
                    // future for the connection's whole life, and inline the
                    // gateway's state (about 3 KiB) would make every
                    // connection pay for it, an idle SSE stream included.
                    Handler::Gateway(gateway) => Box::pin(gateway.serve(req, peer)).await,
                };
                busy.responding();
                // The connection is idle once the response is written, which
                // is when hyper drops its body (and with it the guard).
                Ok::<_, Infallible>(response.map(|inner| GuardedBody { inner, _busy: busy }))
            }
        });
        let mut builder = http1::Builder::new();
        // The clock owns the head timeout (see the module documentation).
        builder.header_read_timeout(None).keep_alive(true);
        // Upgrades (WebSocket through the gateway) leave this loop once
        // switched; the upgraded stream is then the gateway's to relay.
        let conn = builder.serve_connection(io, service).with_upgrades();
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                phase = clock.expired(&self.options) => {
                    tracing::debug!(%peer, phase, "closing a connection that timed out");
                    break;
                }
                _ = shutdown.wait_for(|stop| *stop), if !draining => {
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Free the slot before saying so.
        drop(self.slot.take());
        if self.full.swap(false, Ordering::Relaxed) {
            tracing::info!("a connection ended; accepting new connections again");
        }
    }
}

/// What a connection is doing, for its timeouts.
#[derive(Clone, Copy)]
enum Phase {
    /// Waiting for a request head to complete, since the connection opened
    /// or since the first byte of a request arrived.
    Head(Instant),
    /// A request is being handled. While its body is still arriving, or
    /// its response is being written, bytes must keep moving (`last_io`);
    /// while the handler works, handlers bound their own work. A streamed
    /// response must therefore send something at least every
    /// `idle_timeout`.
    Busy {
        body_pending: bool,
        responding: bool,
        last_io: Instant,
    },
    /// Kept alive between requests since the last response was written.
    Idle(Instant),
}

/// The phase a connection is in. Changing it wakes nobody: every change
/// starts a phase whose deadline is at least the shortest timeout away, and
/// `expired` re-reads the phase at least that often, so it never fires late
/// and the request path pays for a lock and a clock read, not for a wake-up
/// and a timer re-armed per request.
pub(super) struct Clock {
    phase: Mutex<Phase>,
}

impl Clock {
    fn new() -> Self {
        Clock {
            phase: Mutex::new(Phase::Head(Instant::now())),
        }
    }

    fn update(&self, change: impl FnOnce(&mut Phase)) {
        change(&mut self.phase.lock().expect("clock lock"));
    }

    /// Bytes arrived: an idle connection starts a new request head. While
    /// a head is under way more bytes do not extend its deadline, so
    /// trickling one byte at a time does not keep a connection.
    fn bytes_read(&self) {
        let mut phase = self.phase.lock().expect("clock lock");
        match &mut *phase {
            Phase::Idle(_) => *phase = Phase::Head(Instant::now()),
            Phase::Busy {
                body_pending: true,
                last_io,
                ..
            } => *last_io = Instant::now(),
            _ => {}
        }
    }

    fn bytes_written(&self) {
        if let Phase::Busy {
            responding: true,
            last_io,
            ..
        } = &mut *self.phase.lock().expect("clock lock")
        {
            *last_io = Instant::now();
        }
    }

    pub(super) fn request_started(self: &Arc<Self>, body_pending: bool) -> BusyGuard {
        self.update(|phase| {
            *phase = Phase::Busy {
                body_pending,
                responding: false,
                last_io: Instant::now(),
            }
        });
        BusyGuard(self.clone())
    }

    fn body_done(&self) {
        self.update(|phase| {
            if let Phase::Busy { body_pending, .. } = phase {
                *body_pending = false;
            }
        });
    }

    /// Resolves when the current phase outlives its limit; returns its name.
    async fn expired(&self, options: &ServeOptions) -> &'static str {
        let tick = options.header_read_timeout.min(options.idle_timeout);
        loop {
            let phase = *self.phase.lock().expect("clock lock");
            let due = match phase {
                Phase::Head(since) => {
                    Some((since + options.header_read_timeout, "header_read_timeout"))
                }
                Phase::Idle(since) => Some((since + options.idle_timeout, "idle_timeout")),
                Phase::Busy {
                    body_pending,
                    responding,
                    last_io,
                } if body_pending || responding => {
                    Some((last_io + options.idle_timeout, "idle_timeout"))
                }
                // A working handler has no deadline here.
                Phase::Busy { .. } => None,
            };
            let now = Instant::now();
            match due {
                Some((deadline, name)) if now >= deadline => return name,
                Some((deadline, _)) => tokio::time::sleep_until(deadline.min(now + tick)).await,
                None => tokio::time::sleep_until(now + tick).await,
            }
        }
    }
}

/// Held from a request's start until its response is written.
pub(super) struct BusyGuard(Arc<Clock>);

impl BusyGuard {
    pub(super) fn responding(&self) {
        self.0.update(|phase| {
            if let Phase::Busy {
                responding,
                last_io,
                ..
            } = phase
            {
                *responding = true;
                *last_io = Instant::now();
            }
        });
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.update(|phase| *phase = Phase::Idle(Instant::now()));
    }
}

/// A request body, reporting its end to the connection's clock.
struct WatchedBody {
    inner: Incoming,
    clock: Arc<Clock>,
}

impl hyper::body::Body for WatchedBody {
    type Data = <Incoming as hyper::body::Body>::Data;
    type Error = <Incoming as hyper::body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None | Some(Err(_))) => self.clock.body_done(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.clock.body_done(),
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

/// A response body that keeps its request busy until hyper drops it.
struct GuardedBody {
    inner: AxumBody,
    _busy: BusyGuard,
}

impl hyper::body::Body for GuardedBody {
    type Data = <AxumBody as hyper::body::Body>::Data;
    type Error = <AxumBody as hyper::body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The TCP stream, reporting progress to the connection's clock. `read`
/// holds bytes already read from it (by the gateway's own path), which
/// hyper reads first.
struct Watched {
    inner: TcpStream,
    clock: Arc<Clock>,
    read: Bytes,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.has_remaining() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.advance(n);
            if !self.read.has_remaining() {
                // Free the buffer: an SSE stream may hold this connection
                // for days.
                self.read = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.bytes_written();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.bytes_written();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: ServeOptions = ServeOptions {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections: 1,
        shutdown_timeout: Duration::from_secs(1),
        gateway_fast_path: true,
    };

    /// Runs `expired` in paused time; `None` if it did not fire in a day.
    async fn expires_after(clock: &Clock) -> Option<(&'static str, Duration)> {
        let start = Instant::now();
        let fired = tokio::time::timeout(Duration::from_secs(86_400), clock.expired(&OPTIONS));
        fired.await.ok().map(|name| (name, start.elapsed()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_has_header_read_timeout_however_it_trickles() {
        let clock = Clock::new();
        assert_eq!(
            expires_after(&clock).await,
            Some(("header_read_timeout", Duration::from_secs(10)))
        );
        let clock = Clock::new();
        tokio::time::advance(Duration::from_secs(9)).await;
        clock.bytes_read();
        assert_eq!(
            expires_after(&clock).await,
            Some(("header_read_timeout", Duration::from_secs(1)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_working_handler_is_never_cut_off_and_idle_starts_after_the_response() {
        let clock = Arc::new(Clock::new());
        let busy = clock.request_started(false);
        assert_eq!(expires_after(&clock).await, None, "the handler works");
        busy.responding();
        tokio::time::advance(Duration::from_secs(59)).await;
        clock.bytes_written();
        // A response that keeps moving is not cut off...
        assert_eq!(
            expires_after(&clock).await,
            Some(("idle_timeout", Duration::from_secs(60))),
            "...but one that stalls is"
        );
        drop(busy);
        assert_eq!(
            expires_after(&clock).await,
            Some(("idle_timeout", Duration::from_secs(60)))
        );
        // The next request's first byte starts a head.
        clock.bytes_read();
        assert_eq!(
            expires_after(&clock).await,
            Some(("header_read_timeout", Duration::from_secs(10)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_body_must_keep_arriving_until_it_is_in() {
        let clock = Arc::new(Clock::new());
        let _busy = clock.request_started(true);
        tokio::time::advance(Duration::from_secs(30)).await;
        clock.bytes_read();
        assert_eq!(
            expires_after(&clock).await,
            Some(("idle_timeout", Duration::from_secs(60)))
        );
        clock.body_done();
        assert_eq!(expires_after(&clock).await, None, "the handler works");
    }
}
