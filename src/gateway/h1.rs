//! The gateway's own HTTP/1.1 exchange, for the request most traffic is:
//! no body, no upgrade, proxied to an upstream. hyper's server and client
//! cost several times what the exchange itself does on loopback (see
//! docs/benchmarks.md, "The floor"), so for this request the connection's
//! loop (`http/gateway_h1.rs`) parses the head itself, and this module
//! writes the upstream request in one write, reads the response head on a
//! connection the request drives itself (`h1_pool`), rewrites it and
//! copies the body as it arrives, framing untouched.
//!
//! Routing and header rules are the ones hyper's path uses (`Decision`,
//! `outgoing.rs` for the fields): only the bytes are handled here. Whatever
//! this path does not carry (a body, an upgrade, a function target, a
//! refusal) is left to hyper's path before anything is sent or counted.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;

use bytes::Buf;
use hyper::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Sleep;

use super::h1_pool::{Conn, Conns};
use super::proxy::{hop_by_hop, upstream_path, Decision, ProxyError};
use super::route::{Target, Upstream};
use super::Gateway;
use crate::iam::Caller;
use crate::request_head::RequestHead;

/// Header fields in a response head from an upstream, at most.
const MAX_RESPONSE_HEADERS: usize = 100;
/// A response head from an upstream, at most (hyper's client allows
/// about as much by default).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// A request this path carries: the decision and the upstream head.
pub struct Prepared {
    decision: Decision,
    head: Vec<u8>,
    /// An idempotent method: it may go again on a fresh connection when a
    /// reused one closes before answering.
    resendable: bool,
    /// `HEAD`: the response has no body whatever its head says.
    head_only: bool,
}

/// What the client side adds to the response and wants of it.
pub struct Reply<'a> {
    pub request_id: &'a HeaderValue,
    /// The client asked to close after this response.
    pub close: bool,
    /// Called once the response head is about to go out.
    pub responding: &'a (dyn Fn() + Sync),
}

/// A response relayed to the client.
pub struct Answered {
    pub status: u16,
    /// Whether the client connection can take another request.
    pub keep: bool,
}

/// Why the exchange with the upstream failed before a response began.
#[derive(Debug)]
struct Failed {
    connect: bool,
    error: std::io::Error,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.connect {
            write!(f, "connect: {}", self.error)
        } else {
            write!(f, "{}", self.error)
        }
    }
}

impl Gateway {
    /// Routes a bodyless request and renders its upstream head; `None` when
    /// hyper's path is to serve it (refused, disabled, a function target),
    /// with nothing counted or sent.
    pub fn prepare_h1(
        &self,
        request: &impl RequestHead,
        caller: Option<&Caller>,
        peer: SocketAddr,
    ) -> Option<Prepared> {
        let decision = self.decide(request, caller, peer).ok()?;
        let Some(Target::Upstream(target)) = decision.target() else {
            return None;
        };
        let path = upstream_path(&decision.route, target, request.path(), request.query());
        let method = request.method();
        let mut head = Vec::with_capacity(512);
        head.extend_from_slice(method.as_bytes());
        head.push(b' ');
        head.extend_from_slice(path.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        self.proxy
            .upstream_fields(request, &decision, target, caller, peer, &mut head);
        head.extend_from_slice(b"\r\n");
        Some(Prepared {
            decision,
            head,
            // RFC 9110 §9.2.2.
            resendable: matches!(
                method,
                "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
            ),
            head_only: method == "HEAD",
        })
    }

    /// Sends a prepared request and relays the response to `client`.
    /// `Err` when it failed before any byte reached the client (the caller
    /// answers with the error); `Ok` once a response went out.
    pub async fn exchange_h1<C>(
        &self,
        req: Prepared,
        client: &mut C,
        reply: &Reply<'_>,
        mut timer: Pin<&mut Sleep>,
    ) -> Result<Answered, ProxyError>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let decision = &req.decision;
        let Some(Target::Upstream(target)) = decision.target() else {
            unreachable!("prepare_h1 prepares upstream targets only");
        };
        let conns = &self.proxy.conns;
        // The route's timeout on the connection's one timer: moving a
        // registered timer later is a compare-and-swap, where a new one per
        // request goes into tokio's timer wheel and out again.
        timer
            .as_mut()
            .reset(tokio::time::Instant::now() + decision.route.timeout);
        let sending = send(conns, target, &req);
        tokio::pin!(sending);
        let sent = std::future::poll_fn(|cx| match sending.as_mut().poll(cx) {
            Poll::Ready(answer) => Poll::Ready(Some(answer)),
            Poll::Pending => timer.as_mut().poll(cx).map(|()| None),
        })
        .await;
        let (mut conn, head) = match sent {
            Some(Ok(answer)) => answer,
            Some(Err(failed)) => {
                return Err(self.upstream_failed(decision, target, failed.connect, &failed))
            }
            None => return Err(self.upstream_timed_out(decision, target)),
        };
        self.observe(decision.served.as_ref(), head.status >= 500);

        let mut out = head.out;
        if let Some(cookie) = self.proxy.minted_cookie(decision) {
            field(&mut out, b"set-cookie", cookie.as_bytes());
        }
        field(&mut out, b"x-request-id", reply.request_id.as_bytes());
        let keep_client = !reply.close;
        if !keep_client {
            field(&mut out, b"connection", b"close");
        }
        out.extend_from_slice(b"\r\n");
        conn.buf.advance(head.len);
        (reply.responding)();

        let keep = match relay(&mut conn, head.framing, out, client).await {
            Relayed::Done { clean } => {
                if clean && head.reusable {
                    conns.checkin(&target.authority, conn);
                }
                keep_client
            }
            Relayed::Broken => false,
        };
        Ok(Answered {
            status: head.status,
            keep,
        })
    }
}

/// Appends an HTTP/1.1 status line with the code's canonical reason.
pub fn status_line(out: &mut Vec<u8>, code: hyper::StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(code.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(code.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends one `name: value` line.
pub fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes the head and reads the response head, on a pooled connection
/// or a new one. A reused connection that closes before answering gets
/// an idempotent request once more on a new connection, as nginx does
/// (an upstream's keep-alive timeout can cross the request).
async fn send(conns: &Conns, target: &Upstream, req: &Prepared) -> Result<(Conn, Head), Failed> {
    let authority = &target.authority;
    let mut pooled = conns.checkout(authority);
    loop {
        let mut conn = match pooled.take() {
            Some(conn) => conn,
            None => conns.connect(authority).await.map_err(|error| Failed {
                connect: true,
                error,
            })?,
        };
        match exchange(&mut conn, req).await {
            Ok(head) => return Ok((conn, head)),
            Err(Unanswered::Closed(error)) if conn.reused && req.resendable => {
                tracing::debug!(upstream = %authority, %error, "gateway upstream closed a reused connection; sending the request again");
            }
            Err(Unanswered::Closed(error) | Unanswered::Broken(error)) => {
                return Err(Failed {
                    connect: false,
                    error,
                })
            }
        }
    }
}

enum Unanswered {
    /// The connection closed before any byte of a response.
    Closed(std::io::Error),
    Broken(std::io::Error),
}

/// One request out, one response head in (interim 1xx heads skipped).
async fn exchange(conn: &mut Conn, req: &Prepared) -> Result<Head, Unanswered> {
    if let Err(e) = conn.stream.write_all(&req.head).await {
        return Err(Unanswered::Closed(e));
    }
    loop {
        match conn.stream.read_buf(&mut conn.buf).await {
            Ok(0) if conn.buf.is_empty() => {
                return Err(Unanswered::Closed(std::io::ErrorKind::UnexpectedEof.into()))
            }
            Ok(0) => {
                return Err(Unanswered::Broken(broken(
                    "the connection closed inside the response head",
                )))
            }
            Ok(_) => {}
            Err(e) if conn.buf.is_empty() => return Err(Unanswered::Closed(e)),
            Err(e) => return Err(Unanswered::Broken(e)),
        }
        loop {
            match response_head(&conn.buf, req.head_only) {
                Parsed::Partial if conn.buf.len() > MAX_RESPONSE_HEAD => {
                    return Err(Unanswered::Broken(broken("response head too large")))
                }
                Parsed::Partial => break,
                Parsed::Interim(len) => conn.buf.advance(len),
                Parsed::Bad(why) => return Err(Unanswered::Broken(broken(why))),
                Parsed::Final(head) => return Ok(head),
            }
        }
    }
}

fn broken(why: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why)
}

/// How a response body ends (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Read until the upstream closes. The client gets it chunked, so its
    /// connection lives on (as hyper's path does).
    UntilClose,
}

/// A final response head, rendered for the client without its closing
/// empty line (`exchange_h1` adds its own fields first).
#[derive(Debug)]
struct Head {
    status: u16,
    /// Bytes of the head in the upstream buffer.
    len: usize,
    framing: Framing,
    /// Whether the upstream connection can take another request.
    reusable: bool,
    out: Vec<u8>,
}

#[derive(Debug)]
enum Parsed {
    Partial,
    /// A 1xx head to skip, of this many bytes.
    Interim(usize),
    Bad(&'static str),
    Final(Head),
}

/// Parses a response head and renders it for the client: hop-by-hop fields
/// dropped (with those `Connection` names), the upstream's request id
/// replaced by ours, chunked framing kept as it is.
fn response_head(buf: &[u8], head_only: bool) -> Parsed {
    let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Bad("malformed response head"),
    };
    let Some(code) = response
        .code
        .and_then(|c| hyper::StatusCode::from_u16(c).ok())
    else {
        return Parsed::Bad("malformed status code");
    };
    let status = code.as_u16();
    match status {
        101 => return Parsed::Bad("switching protocols without an upgrade"),
        100..=199 => return Parsed::Interim(len),
        _ => {}
    }
    let mut close = response.version == Some(0);
    let mut chunked = None;
    let mut length: Option<u64> = None;
    for f in response.headers.iter() {
        if f.name.eq_ignore_ascii_case("connection") {
            for token in tokens(f.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    close = close && response.version != Some(0);
                }
            }
        } else if f.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides: chunked ends itself, anything else
            // runs to the close.
            chunked = Some(
                tokens(f.value)
                    .last()
                    .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")),
            );
        } else if f.name.eq_ignore_ascii_case("content-length") {
            // Digits only: `parse` would also take a sign.
            let digits = f.value.trim_ascii();
            let Some(n) = (!digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(digits).ok()?.parse::<u64>().ok())
                .flatten()
            else {
                return Parsed::Bad("invalid content-length");
            };
            if length.is_some_and(|m| m != n) {
                return Parsed::Bad("conflicting content-length");
            }
            length = Some(n);
        }
    }
    let framing = if head_only || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) | (None, None) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
        }
    };

    let mut out = Vec::with_capacity(len + 128);
    status_line(&mut out, code);
    // The fields `Connection` names (`keep-alive`, typically): on the stack
    // up to eight, so no response allocates for them.
    let mut few: [&[u8]; 8] = [b""; 8];
    let mut count = 0;
    let mut more: Vec<&[u8]> = Vec::new();
    for token in response
        .headers
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("connection"))
        .flat_map(|f| tokens(f.value))
    {
        match few.get_mut(count) {
            Some(slot) => {
                *slot = token;
                count += 1;
            }
            None => more.push(token),
        }
    }
    let named = few[..count].iter().chain(&more);
    for f in response.headers.iter() {
        let name = f.name.as_bytes();
        let dropped = hop_by_hop(name)
            || named.clone().any(|n| name.eq_ignore_ascii_case(n))
            || name.eq_ignore_ascii_case(REQUEST_ID.as_str().as_bytes())
            // With chunked framing a length would contradict it.
            || (matches!(framing, Framing::Chunked | Framing::UntilClose)
                && name.eq_ignore_ascii_case(b"content-length"));
        if !dropped {
            field(&mut out, name, f.value);
        }
    }
    if matches!(framing, Framing::Chunked | Framing::UntilClose) {
        field(&mut out, b"transfer-encoding", b"chunked");
    }
    Parsed::Final(Head {
        status,
        len,
        framing,
        reusable: !close && framing != Framing::UntilClose,
        out,
    })
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The comma-separated tokens of a field value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// How relaying a body ended.
enum Relayed {
    /// The body went out whole; `clean` when the upstream sent nothing
    /// beyond it (its connection can be reused).
    Done { clean: bool },
    /// Either side broke off: both connections end.
    Broken,
}

/// Writes `out` (the response head) with the body bytes already read, then
/// copies the rest of the body as it arrives.
async fn relay<C>(conn: &mut Conn, framing: Framing, mut out: Vec<u8>, client: &mut C) -> Relayed
where
    C: AsyncWrite + Unpin,
{
    let mut tracker = match framing {
        Framing::Empty => Body::Done,
        Framing::Length(n) => Body::Length(n),
        Framing::Chunked => Body::Chunked(Chunks::default()),
        Framing::UntilClose => Body::UntilClose,
    };
    let mut clean = true;
    loop {
        let taken = match tracker.take(&conn.buf) {
            Ok(n) => n,
            Err(()) => return Relayed::Broken,
        };
        if matches!(tracker, Body::UntilClose) {
            chunk(&mut out, &conn.buf[..taken]);
        } else {
            out.extend_from_slice(&conn.buf[..taken]);
        }
        if tracker.done() && taken < conn.buf.len() {
            clean = false;
        }
        conn.buf.clear();
        if !out.is_empty() {
            if client.write_all(&out).await.is_err() {
                return Relayed::Broken;
            }
            out.clear();
        }
        if tracker.done() {
            return Relayed::Done { clean };
        }
        match conn.stream.read_buf(&mut conn.buf).await {
            Ok(0) if matches!(tracker, Body::UntilClose) => {
                // The last chunk: the body ends here for the client too.
                if client.write_all(b"0\r\n\r\n").await.is_err() {
                    return Relayed::Broken;
                }
                return Relayed::Done { clean: false };
            }
            Ok(0) | Err(_) => return Relayed::Broken,
            Ok(_) => {}
        }
    }
}

/// Appends `data` as one chunk (none for no data: an empty chunk ends the body).
fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Where a response body ends, tracked over the bytes as they pass.
enum Body {
    Length(u64),
    Chunked(Chunks),
    UntilClose,
    Done,
}

impl Body {
    /// How many of `bytes` belong to the body.
    fn take(&mut self, bytes: &[u8]) -> Result<usize, ()> {
        match self {
            Body::Length(left) => {
                let n = (*left).min(bytes.len() as u64);
                *left -= n;
                if *left == 0 {
                    *self = Body::Done;
                }
                Ok(n as usize)
            }
            Body::Chunked(chunks) => {
                let n = chunks.feed(bytes)?;
                if chunks.done() {
                    *self = Body::Done;
                }
                Ok(n)
            }
            Body::UntilClose => Ok(bytes.len()),
            Body::Done => Ok(0),
        }
    }

    fn done(&self) -> bool {
        matches!(self, Body::Done)
    }
}

/// Chunked framing (RFC 9112 §7.1), followed byte by byte outside chunk
/// data: sizes, extensions, trailers. Only finds the end; the bytes pass
/// on unchanged.
#[derive(Default)]
struct Chunks {
    state: Chunk,
    size: u64,
    digits: usize,
    /// Bytes of the current size or trailer line.
    line: usize,
}

#[derive(Default, Clone, Copy, PartialEq, Debug)]
enum Chunk {
    #[default]
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    LineStart,
    Line,
    LineLf {
        empty: bool,
    },
    Done,
}

/// A size or trailer line, at most.
const MAX_CHUNK_LINE: usize = 4096;

impl Chunks {
    fn done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// How many of `bytes` belong to the body (all of them until its end).
    fn feed(&mut self, bytes: &[u8]) -> Result<usize, ()> {
        let mut i = 0;
        while i < bytes.len() {
            if self.state == Chunk::Data {
                let n = self.size.min((bytes.len() - i) as u64);
                self.size -= n;
                i += n as usize;
                if self.size == 0 {
                    self.state = Chunk::DataCr;
                }
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.line += 1;
            if self.line > MAX_CHUNK_LINE {
                return Err(());
            }
            self.state = match (self.state, b) {
                (Chunk::Size, _) if b.is_ascii_hexdigit() => {
                    self.digits += 1;
                    if self.digits > 15 {
                        return Err(());
                    }
                    self.size = self.size * 16 + u64::from(hex(b));
                    Chunk::Size
                }
                (Chunk::Size, b';' | b' ' | b'\t') if self.digits > 0 => Chunk::Extension,
                (Chunk::Size, b'\r') if self.digits > 0 => Chunk::SizeLf,
                (Chunk::Extension, b'\r') => Chunk::SizeLf,
                (Chunk::Extension, _) => Chunk::Extension,
                (Chunk::SizeLf, b'\n') => {
                    self.line = 0;
                    self.digits = 0;
                    if self.size == 0 {
                        Chunk::LineStart
                    } else {
                        Chunk::Data
                    }
                }
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataLf, b'\n') => {
                    self.line = 0;
                    Chunk::Size
                }
                (Chunk::LineStart, b'\r') => Chunk::LineLf { empty: true },
                (Chunk::Line, b'\r') => Chunk::LineLf { empty: false },
                (Chunk::LineStart | Chunk::Line, _) => Chunk::Line,
                (Chunk::LineLf { empty: true }, b'\n') => {
                    self.state = Chunk::Done;
                    return Ok(i);
                }
                (Chunk::LineLf { empty: false }, b'\n') => {
                    self.line = 0;
                    Chunk::LineStart
                }
                _ => return Err(()),
            };
        }
        Ok(i)
    }
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn final_head(raw: &str, head_only: bool) -> Head {
        match response_head(raw.as_bytes(), head_only) {
            Parsed::Final(head) => head,
            other => panic!("{other:?}"),
        }
    }

    fn rendered(head: &Head) -> String {
        String::from_utf8(head.out.clone()).unwrap()
    }

    #[test]
    fn a_length_framed_head_loses_its_hop_by_hop_fields_and_request_id() {
        let raw = "HTTP/1.1 200 Whatever\r\ncontent-length: 3\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nkeep-alive: timeout=5\r\nx-request-id: theirs\r\nx-kept: yes\r\n\r\nok\n";
        let head = final_head(raw, false);
        assert_eq!(head.framing, Framing::Length(3));
        assert_eq!(head.len, raw.len() - 3);
        assert!(head.reusable);
        assert_eq!(
            rendered(&head),
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-kept: yes\r\n"
        );
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let chunked = final_head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
            false,
        );
        assert_eq!(chunked.framing, Framing::Chunked);
        assert_eq!(
            rendered(&chunked),
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n"
        );
        let gzip_only = final_head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false);
        assert_eq!(gzip_only.framing, Framing::UntilClose);
        assert!(!gzip_only.reusable);
        let unframed = final_head("HTTP/1.1 200 OK\r\nContent-Type: a/b\r\n\r\n", false);
        assert_eq!(unframed.framing, Framing::UntilClose);
        assert_eq!(
            rendered(&unframed),
            "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\ntransfer-encoding: chunked\r\n"
        );
        let head = final_head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true);
        assert_eq!(head.framing, Framing::Empty);
        assert!(rendered(&head).contains("Content-Length: 5"));
        assert_eq!(
            final_head("HTTP/1.1 304 Not Modified\r\n\r\n", false).framing,
            Framing::Empty
        );
        let closing = final_head(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            false,
        );
        assert!(!closing.reusable);
        let old = final_head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
        assert!(!old.reusable);
    }

    #[test]
    fn interim_and_broken_heads() {
        let raw = "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n";
        assert!(
            matches!(response_head(raw.as_bytes(), false), Parsed::Interim(n) if n == raw.len())
        );
        assert!(matches!(
            response_head(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false),
            Parsed::Bad(_)
        ));
        assert!(matches!(
            response_head(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            ),
            Parsed::Bad(_)
        ));
        for length in ["x", "+3", "-1", "", "99999999999999999999999"] {
            let raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n");
            assert!(
                matches!(response_head(raw.as_bytes(), false), Parsed::Bad(_)),
                "{length:?}"
            );
        }
        assert!(matches!(
            response_head(b"HTTP/1.1 200 OK\r\nConte", false),
            Parsed::Partial
        ));
        assert!(matches!(
            response_head(b"garbage\r\n\r\n", false),
            Parsed::Bad(_)
        ));
        assert!(matches!(
            response_head(b"HTTP/1.1 099 Odd\r\n\r\n", false),
            Parsed::Bad(_)
        ));
    }

    /// Feeds `body` in pieces of every size; the end must be found at the
    /// same byte each time.
    fn end_of(body: &[u8]) -> Result<Option<usize>, ()> {
        let mut found = None;
        for piece in 1..=body.len().max(1) {
            let mut chunks = Chunks::default();
            let mut at = 0;
            let mut end = None;
            for part in body.chunks(piece) {
                let n = chunks.feed(part)?;
                if chunks.done() {
                    end = Some(at + n);
                    break;
                }
                assert_eq!(n, part.len());
                at += n;
            }
            if piece > 1 {
                assert_eq!(end, found, "piece size {piece}");
            }
            found = end;
        }
        Ok(found)
    }

    #[test]
    fn chunked_bodies_end_where_they_end_however_they_arrive() {
        let body = b"5\r\nhello\r\nA;ext=1\r\n0123456789\r\n0\r\n\r\nNEXT";
        assert_eq!(end_of(body), Ok(Some(body.len() - 4)));
        let trailers = b"3\r\nabc\r\n0\r\nx-sum: 1\r\ny: 2\r\n\r\n";
        assert_eq!(end_of(trailers), Ok(Some(trailers.len())));
        assert_eq!(end_of(b"5\r\nhel"), Ok(None));
        assert_eq!(end_of(b"zz\r\n"), Err(()));
        assert_eq!(end_of(b"3\r\nabcX\r\n"), Err(()));
        assert_eq!(end_of(b"\r\n"), Err(()));
        assert_eq!(end_of(b"fffffffffffffffff\r\n"), Err(()));
    }
}
