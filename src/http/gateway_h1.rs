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

use axum::http::HeaderValue;
use axum::response::Response;
use bytes::{Buf, BytesMut};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::Instrument;

use super::auth::maybe_caller_remembered;
use super::error;
use super::gateway_routes::{is_mount, request_id, request_span, Direct, Logged};
use super::serve::Clock;
use crate::gateway::{field, status_line, Reply};
use crate::request_head::RawHead;

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
enum Head<'a> {
    Carry {
        head: RawHead<'a>,
        /// Bytes of the head in the buffer.
        len: usize,
        /// The client asked to close after the response.
        close: bool,
    },
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
        // The route timeout's timer, one per connection (`exchange_h1`).
        let timer = tokio::time::sleep(std::time::Duration::ZERO);
        tokio::pin!(timer);
        loop {
            // Read until the buffer holds a whole head: parsed once, then,
            // and borrowed from the buffer until the upstream head is made.
            while !holds_a_head(buf) {
                if buf.len() > MAX_HEAD {
                    return Ended::HandOff;
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
            }
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let Head::Carry { head, len, close } = parse(buf, &mut fields) else {
                return Ended::HandOff;
            };
            // The head is in: from here the request is under way (no head
            // timeout while the credential is checked or the upstream works).
            let busy = clock.request_started(false);
            let state = self.state();
            let caller = match maybe_caller_remembered(&head, state, &mut remembered).await {
                Ok(caller) => caller,
                // hyper's path answers the refusal.
                Err(_) => return Ended::HandOff,
            };
            let id = request_id(&head);
            let span = request_span(&id);
            let logged = Logged::start(head.method, head.path);
            let head_only = head.method == "HEAD";
            let prepared = span.in_scope(|| {
                std::panic::catch_unwind(AssertUnwindSafe(|| {
                    state.gateway.prepare_h1(&head, caller.as_deref(), peer)
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
                    .exchange_h1(prepared, io, &reply, timer.as_mut())
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

/// Whether `buf` holds the end of a request head: an empty line, after
/// CRLF or bare LF line ends (both of which `httparse` reads).
fn holds_a_head(buf: &[u8]) -> bool {
    // `memchr` per line end: a `memmem` searcher costs more to set up than
    // a head takes to scan.
    memchr::memchr_iter(b'\n', buf)
        .any(|at| matches!(&buf[at + 1..], [b'\n', ..] | [b'\r', b'\n', ..]))
}

/// Reads the request head at the start of `buf` (which holds a whole
/// one: `holds_a_head`).
fn parse<'a>(buf: &'a [u8], fields: &'a mut [httparse::Header<'a>]) -> Head<'a> {
    let mut req = httparse::Request::new(fields);
    let Ok(httparse::Status::Complete(len)) = req.parse(buf) else {
        return Head::Other;
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Head::Other;
    };
    // What `http::Uri` reads the same way everywhere: RFC 3986 path and
    // query characters. Anything else (a fragment, quotes, braces) is
    // hyper's to read or refuse.
    if !target.bytes().all(plain_target_byte) {
        return Head::Other;
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    if !path.starts_with('/') || !is_mount(path) {
        return Head::Other;
    }
    let mut close = false;
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
    }
    Head::Carry {
        head: RawHead {
            method,
            path,
            query,
            fields: req.headers,
        },
        len,
        close,
    }
}

/// RFC 3986 `pchar`, `/` and `?`: unreserved, sub-delims, `:`, `@`, `%`.
fn plain_target_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'?'
                | b'%'
        )
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

    type Carried = (
        String,
        String,
        Option<String>,
        Vec<(String, String)>,
        usize,
        bool,
    );

    /// `(method, path, query, fields, len, close)` of a head this path carries.
    fn carried(raw: &str) -> Carried {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        assert!(holds_a_head(raw.as_bytes()), "{raw:?}");
        match parse(raw.as_bytes(), &mut fields) {
            Head::Carry { head, len, close } => (
                head.method.to_string(),
                head.path.to_string(),
                head.query.map(str::to_string),
                head.fields
                    .iter()
                    .map(|f| {
                        (
                            f.name.to_string(),
                            String::from_utf8_lossy(f.value).to_string(),
                        )
                    })
                    .collect(),
                len,
                close,
            ),
            Head::Other => panic!("other: {raw:?}"),
        }
    }

    fn other(raw: &str) -> bool {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        matches!(parse(raw.as_bytes(), &mut fields), Head::Other)
    }

    #[test]
    fn bodyless_gateway_requests_are_carried() {
        let raw = "GET /gateway/api/x?q=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-A: 2\r\n\r\nGET /next";
        let (method, path, query, fields, len, close) = carried(raw);
        assert_eq!(len, raw.len() - "GET /next".len());
        assert!(!close);
        assert_eq!((method.as_str(), path.as_str()), ("GET", "/gateway/api/x"));
        assert_eq!(query.as_deref(), Some("q=1"));
        assert_eq!(fields.iter().filter(|(n, _)| n == "X-A").count(), 2);
        let (.., close) =
            carried("DELETE /gateway HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        assert!(close);
        // Bare LF line ends are a head too.
        let (_, path, ..) = carried("GET /gateway/lf HTTP/1.1\nHost: h\n\n");
        assert_eq!(path, "/gateway/lf");
    }

    #[test]
    fn a_head_is_whole_at_its_empty_line() {
        for partial in [
            "",
            "GET /gateway/a HTTP/1.1\r\nHost: h",
            "GET / HTTP/1.1\r\nA: b\r\n\r",
        ] {
            assert!(!holds_a_head(partial.as_bytes()), "{partial:?}");
        }
        for whole in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\n\n",
            "GET / HTTP/1.1\r\nA: b\n\r\nrest",
        ] {
            assert!(holds_a_head(whole.as_bytes()), "{whole:?}");
        }
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
            // Targets `http::Uri` may read differently: hyper decides.
            "GET /gateway/a#frag HTTP/1.1\r\n\r\n",
            "GET /gateway/{x} HTTP/1.1\r\n\r\n",
            "GET /gateway/\"q\" HTTP/1.1\r\n\r\n",
        ] {
            assert!(other(raw), "{raw:?}");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        let raw = format!("GET /gateway/a HTTP/1.1\r\n{many}\r\n");
        assert!(other(&raw));
    }
}
