//! The first reader of every connection: requests to `/gateway` that the
//! gateway's own HTTP/1 path carries (no body, no upgrade, HTTP/1.1) are
//! served here without hyper; at the first request it does not carry, the
//! connection goes to hyper for good, with the bytes read so far given
//! back (`serve.rs`). So the API never sees this path, and a gateway
//! request with a body, an `Expect`, an upgrade, a function target or a
//! refusal is answered by hyper's path exactly as before.
//!
//! What the router's layers do for other routes is done here as in
//! `Direct::serve`: the request id, the log line, panic recovery. The
//! connection's clock (`serve.rs`) bounds the head, the idle time and a
//! stalled response as for hyper's connections.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use axum::response::Response;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::Instrument;

use super::auth::maybe_caller_remembered;
use super::error;
use super::gateway_routes::{is_mount, request_id, request_span, Direct, Logged};
use super::serve::Clock;
use crate::gateway::{field, status_line, Reply};

/// A request head this path reads, at most; a longer one goes to hyper,
/// which has its own limit and answers 431.
const MAX_HEAD: usize = 16 * 1024;
/// Header fields in a request head this path reads, at most.
const MAX_HEADERS: usize = 64;
/// An error body the gateway writes itself, at most.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How the connection left this path.
pub(super) enum Ended {
    /// It is over: the client closed, asked to, or timed out, or the
    /// server is shutting down.
    Closed,
    /// A request this path does not carry is in the buffer: hyper takes it.
    HandOff,
}

/// A request head, as far as this path is concerned.
// Returned once per request and taken apart at once: boxing the large
// variant would add an allocation to every request for nothing.
#[allow(clippy::large_enum_variant)]
enum Head {
    Carry {
        parts: axum::http::request::Parts,
        /// Bytes of the head in the buffer.
        len: usize,
        /// The client asked to close after the response.
        close: bool,
    },
    Partial,
    /// Not for this path, or not well formed: hyper answers it.
    Other,
}

impl Direct {
    /// Serves the gateway requests this path carries, in order, until the
    /// connection ends or a request for hyper arrives (left in `buf`).
    pub(super) async fn serve_h1<IO>(
        &self,
        io: &mut IO,
        buf: &mut BytesMut,
        peer: std::net::SocketAddr,
        clock: &Arc<Clock>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Ended
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        // The credential verified last on this connection: a client sends
        // the same one with every request.
        let mut remembered = None;
        loop {
            let head = loop {
                if !buf.is_empty() {
                    match parse(buf) {
                        Head::Partial if buf.len() <= MAX_HEAD => {}
                        Head::Partial | Head::Other => return Ended::HandOff,
                        carry => break carry,
                    }
                }
                // Small: most heads are a few hundred bytes, and every connection
                // starts here, including the API's long-lived streams.
                buf.reserve(1024);
                let read = if buf.is_empty() {
                    // Between requests: shutting down closes the connection.
                    tokio::select! {
                        read = io.read_buf(buf) => read,
                        _ = shutdown.wait_for(|stop| *stop) => return Ended::Closed,
                    }
                } else {
                    io.read_buf(buf).await
                };
                if !matches!(read, Ok(n) if n > 0) {
                    return Ended::Closed;
                }
            };
            let Head::Carry { parts, len, close } = head else {
                unreachable!("the loop above breaks with a head to carry");
            };
            // The head is in: from here the request is under way (no head
            // timeout while the credential is checked or the upstream works).
            let busy = clock.request_started(false);
            let state = self.state();
            let caller = match maybe_caller_remembered(&parts, state, &mut remembered).await {
                Ok(caller) => caller,
                // hyper's path answers the refusal.
                Err(_) => return Ended::HandOff,
            };
            let id = request_id(&parts.headers);
            let span = request_span(&id);
            let logged = Logged::start(&parts.method, parts.uri.path());
            let head_only = parts.method == Method::HEAD;
            let prepared = span.in_scope(|| {
                std::panic::catch_unwind(AssertUnwindSafe(|| {
                    state.gateway.prepare_h1(parts, caller.as_deref(), peer)
                }))
            });
            let prepared = match prepared {
                Ok(Some(prepared)) => prepared,
                Ok(None) => return Ended::HandOff,
                Err(panic) => {
                    buf.advance(len);
                    let response = span.in_scope(|| error::panic_response(panic));
                    let _ = write_response(io, response, &id, true, head_only).await;
                    return Ended::Closed;
                }
            };
            buf.advance(len);

            let responding = || busy.responding();
            let reply = Reply {
                request_id: &id,
                close,
                responding: &responding,
            };
            let exchanged = AssertUnwindSafe(
                state
                    .gateway
                    .exchange_h1(prepared, io, &reply)
                    .instrument(span.clone()),
            )
            .catch_unwind()
            .await;
            let (status, keep) = match exchanged {
                Ok(Ok(answered)) => (answered.status, answered.keep),
                Ok(Err(e)) => {
                    let response = error::proxy_error(e);
                    let status = response.status().as_u16();
                    busy.responding();
                    let written = write_response(io, response, &id, close, head_only).await;
                    (status, written && !close)
                }
                // Part of a response may have gone out: only closing is safe.
                Err(_) => (500, false),
            };
            if let Some(logged) = logged {
                logged.write(&span, status);
            }
            drop(busy);
            if !keep || *shutdown.borrow() {
                return Ended::Closed;
            }
        }
    }
}

/// Reads a request head from the start of `buf`.
fn parse(buf: &[u8]) -> Head {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Other,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Head::Other;
    };
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if !path.starts_with('/') || !is_mount(path) {
        return Head::Other;
    }
    let mut close = false;
    // Read, never added to: the upstream's fields are written elsewhere.
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for f in req.headers.iter() {
        let name = f.name;
        if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return Head::Other;
        }
        // A body, or a length that is not plainly zero: hyper's path.
        if name.eq_ignore_ascii_case("content-length") && f.value.trim_ascii() != b"0" {
            return Head::Other;
        }
        if name.eq_ignore_ascii_case("connection") {
            for token in f.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Head::Other;
                }
            }
        }
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(f.value),
        ) else {
            return Head::Other;
        };
        headers.append(name, value);
    }
    let (Ok(method), Ok(uri)) = (
        Method::from_bytes(method.as_bytes()),
        Uri::from_maybe_shared(Bytes::copy_from_slice(target.as_bytes())),
    ) else {
        return Head::Other;
    };
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = headers;
    Head::Carry { parts, len, close }
}

/// Writes a response the gateway made itself (an error: small, whole).
/// Whether it was written.
async fn write_response<IO>(
    io: &mut IO,
    response: Response,
    id: &HeaderValue,
    close: bool,
    head_only: bool,
) -> bool
where
    IO: AsyncWrite + Unpin,
{
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let mut out = Vec::with_capacity(256 + body.len());
    status_line(&mut out, parts.status);
    for (name, value) in &parts.headers {
        if !matches!(
            name.as_str(),
            "content-length" | "connection" | "transfer-encoding" | super::request::REQUEST_ID
        ) {
            field(&mut out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    field(
        &mut out,
        b"content-length",
        body.len().to_string().as_bytes(),
    );
    field(
        &mut out,
        super::request::REQUEST_ID.as_bytes(),
        id.as_bytes(),
    );
    if close {
        field(&mut out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&body);
    }
    io.write_all(&out).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carried(raw: &str) -> (axum::http::request::Parts, usize, bool) {
        match parse(raw.as_bytes()) {
            Head::Carry { parts, len, close } => (parts, len, close),
            Head::Partial => panic!("partial: {raw:?}"),
            Head::Other => panic!("other: {raw:?}"),
        }
    }

    #[test]
    fn bodyless_gateway_requests_are_carried() {
        let raw = "GET /gateway/api/x?q=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-A: 2\r\n\r\nGET /next";
        let (parts, len, close) = carried(raw);
        assert_eq!(len, raw.len() - "GET /next".len());
        assert!(!close);
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.uri.path(), "/gateway/api/x");
        assert_eq!(parts.uri.query(), Some("q=1"));
        assert_eq!(parts.headers.get_all("x-a").iter().count(), 2);
        let (_, _, close) =
            carried("DELETE /gateway HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        assert!(close);
    }

    #[test]
    fn everything_else_goes_to_hyper() {
        for raw in [
            "GET /api/v1/flags HTTP/1.1\r\n\r\n",
            "GET /gatewayx HTTP/1.1\r\n\r\n",
            "GET /gateway/a HTTP/1.0\r\n\r\n",
            "GET http://h/gateway/a HTTP/1.1\r\n\r\n",
            "POST /gateway/a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            "POST /gateway/a HTTP/1.1\r\nContent-Length: +0\r\n\r\n",
            "POST /gateway/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /gateway/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "PUT /gateway/a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
            "BAD\r\n\r\n",
        ] {
            assert!(matches!(parse(raw.as_bytes()), Head::Other), "{raw:?}");
        }
        assert!(matches!(
            parse(b"GET /gateway/a HTTP/1.1\r\nHost: h"),
            Head::Partial
        ));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        let raw = format!("GET /gateway/a HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(parse(raw.as_bytes()), Head::Other));
    }
}
