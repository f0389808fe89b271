//! The gateway's own HTTP/1 path, byte by byte: a client written by hand
//! (pipelining, `Connection: close`, malformed heads) against an upstream
//! written by hand (chunked bodies with trailers, bodies that end at the
//! close, interim 1xx heads, broken heads), with the connection handed to
//! hyper at the first request the path does not carry.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::Flagbase;

/// What the upstream answers, by path (the gateway strips `/gateway/up`).
/// `true`: it closes the connection after answering.
fn scripted(method: &str, path: &str) -> (Vec<std::borrow::Cow<'static, [u8]>>, bool) {
    let (pieces, close) = scripted_static(method, path);
    let mut pieces: Vec<std::borrow::Cow<'static, [u8]>> =
        pieces.into_iter().map(Into::into).collect();
    match path {
        // Bodies larger than any buffer on the way, with either framing.
        "/big" => {
            pieces.push(
                format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n")
                    .into_bytes()
                    .into(),
            );
            pieces.push(big_body().into());
        }
        "/big-chunked" => {
            pieces.push(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .to_vec()
                    .into(),
            );
            for part in big_body().chunks(BIG / 7 + 1) {
                let mut chunk = format!("{:x}\r\n", part.len()).into_bytes();
                chunk.extend_from_slice(part);
                chunk.extend_from_slice(b"\r\n");
                pieces.push(chunk.into());
            }
            pieces.push(b"0\r\n\r\n".to_vec().into());
        }
        _ => {}
    }
    (pieces, close)
}

/// Size of `/big` and `/big-chunked`: 8 MiB and a bit.
const BIG: usize = 8 * 1024 * 1024 + 13;

/// Bytes that tell their own position, so a lost or repeated piece shows.
fn big_body() -> Vec<u8> {
    (0..BIG).map(|i| (i % 251) as u8).collect()
}

fn scripted_static(method: &str, path: &str) -> (Vec<&'static [u8]>, bool) {
    match (method, path) {
        ("HEAD", _) => (vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"], false),
        (_, "/chunked") => (
            // In pieces, so the framing is followed across reads.
            vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n5\r",
                b"\nhello\r\n6;ext=1\r\n wor",
                b"ld\r\n0\r\nx-sum: 11\r\n",
                b"\r\n",
            ],
            false,
        ),
        (_, "/close") => (
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ",
                b"the close",
            ],
            true,
        ),
        (_, "/304") => (
            vec![b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"],
            false,
        ),
        (_, "/interim") => (
            vec![
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ],
            false,
        ),
        (_, "/switch") => (vec![b"HTTP/1.1 101 Switching Protocols\r\n\r\n"], true),
        (_, "/garbage") => (vec![b"NOT HTTP AT ALL\r\n\r\n"], true),
        (_, "/plus") => (
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok"],
            true,
        ),
        _ => (Vec::new(), false),
    }
}

/// A raw upstream answering `scripted`, or by default 200 with the path
/// as the body; it records every request head it reads.
async fn upstream() -> (String, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let heads = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let body_len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    while buf.len() < end + 4 + body_len {
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    buf.drain(..end + 4 + body_len);
                    heads.lock().unwrap().push(head.clone());
                    let mut words = head.split(' ');
                    let (method, path) = (words.next().unwrap(), words.next().unwrap());
                    let (pieces, close) = scripted(method, path);
                    if pieces.is_empty() {
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Request-Id: upstream-made\r\n\r\n{path}",
                            path.len()
                        );
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    for piece in pieces {
                        if stream.write_all(&piece).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    if close {
                        return;
                    }
                }
            });
        }
    });
    (url, seen, task)
}

/// A gateway with the route `/gateway/up` to a fresh `upstream`, and the
/// upstream's authority.
async fn gateway(
    fast: bool,
) -> (
    Flagbase,
    Arc<Mutex<Vec<String>>>,
    tokio::task::JoinHandle<()>,
    String,
) {
    let (url, seen, task) = upstream().await;
    let fb = crate::gateway_pool::gateway_to(&url, fast).await;
    let authority = url.trim_start_matches("http://").to_string();
    (fb, seen, task, authority)
}

/// One response as a client reads it off the wire.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Trailer fields of a chunked body, as sent.
    trailers: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn body(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// A client connection written by hand.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(fb: &Flagbase) -> Client {
        let stream = TcpStream::connect(fb.base.trim_start_matches("http://"))
            .await
            .unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, raw: &str) {
        self.stream.write_all(raw.as_bytes()).await.unwrap();
    }

    /// Reads more; false at the end of the stream.
    async fn more(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
            .await
            .expect("the server went silent")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.more().await, "the connection ended inside a body");
        }
        self.buf.drain(..n).collect()
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.buf.drain(..end + 2).collect()).unwrap();
                return line.trim_end().to_string();
            }
            assert!(self.more().await, "the connection ended inside a line");
        }
    }

    /// The next response (`head_only`: the answer to a HEAD request).
    async fn response(&mut self, head_only: bool) -> Raw {
        let status_line = self.line().await;
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .unwrap_or_else(|| panic!("not a status line: {status_line:?}"))[..3]
            .parse()
            .unwrap();
        let mut headers = Vec::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let mut raw = Raw {
            status,
            headers,
            body: Vec::new(),
            trailers: String::new(),
        };
        if head_only || status == 304 {
            return raw;
        }
        if raw
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let size_line = self.line().await;
                let size = usize::from_str_radix(size_line.split(';').next().unwrap(), 16).unwrap();
                if size == 0 {
                    loop {
                        let line = self.line().await;
                        if line.is_empty() {
                            return raw;
                        }
                        raw.trailers.push_str(&line);
                        raw.trailers.push('\n');
                    }
                }
                let data = self.take(size + 2).await;
                raw.body.extend_from_slice(&data[..size]);
            }
        }
        match raw.header("content-length") {
            Some(n) => {
                let n = n.parse().unwrap();
                raw.body = self.take(n).await;
            }
            None => {
                while self.more().await {}
                raw.body = std::mem::take(&mut self.buf);
            }
        }
        raw
    }

    /// Whether the server closed the connection (nothing more arrives).
    async fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.more().await
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n")
}

both_paths!(gateway_h1_answers_pipelined_requests_in_order_and_hands_the_connection_to_hyper_at_an_api_request);
async fn gateway_h1_answers_pipelined_requests_in_order_and_hands_the_connection_to_hyper_at_an_api_request(
    fast: bool,
) {
    let (fb, seen, upstream, authority) = gateway(fast).await;
    let mut client = Client::connect(&fb).await;
    // One write: two proxied requests, an API request, one more proxied.
    client
        .send(&format!(
            "{}{}{}{}",
            get("/gateway/up/one"),
            get("/gateway/up/two?x=1"),
            get("/health"),
            get("/gateway/up/three")
        ))
        .await;
    let one = client.response(false).await;
    assert_eq!((one.status, one.body().as_str()), (200, "/one"));
    // Ours replaces the upstream's; the upstream's own length stands.
    let id = one.header("x-request-id").unwrap();
    assert_ne!(id, "upstream-made");
    assert_eq!(one.header("content-length"), Some("4"));
    let two = client.response(false).await;
    assert_eq!((two.status, two.body().as_str()), (200, "/two?x=1"));
    assert_ne!(two.header("x-request-id"), Some(id), "ids are per request");
    let health = client.response(false).await;
    assert_eq!(health.status, 200, "{}", health.body());
    assert!(health.body().contains("ok"), "{}", health.body());
    let three = client.response(false).await;
    assert_eq!((three.status, three.body().as_str()), (200, "/three"));

    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 3, "{heads:?}");
    let first = heads[0].to_ascii_lowercase();
    assert!(first.starts_with("get /one http/1.1\r\n"), "{first}");
    let upstream_host = format!("host: {authority}");
    for expected in [
        upstream_host.as_str(),
        "x-forwarded-for: 127.0.0.1",
        "x-forwarded-host: gw.test",
        "x-forwarded-proto: http",
        "x-forwarded-prefix: /gateway/up",
        "x-flagbase-role: anonymous",
    ] {
        assert!(first.contains(expected), "{expected} missing from {first}");
    }
    upstream.abort();
}

both_paths!(gateway_h1_relays_every_upstream_framing_as_the_client_expects);
async fn gateway_h1_relays_every_upstream_framing_as_the_client_expects(fast: bool) {
    let (fb, _, upstream, _) = gateway(fast).await;
    let mut client = Client::connect(&fb).await;

    client.send(&get("/gateway/up/chunked")).await;
    let chunked = client.response(false).await;
    assert_eq!(chunked.status, 200);
    assert_eq!(chunked.body(), "hello world");
    // The gateway's own path passes trailers on; hyper's drops them unless
    // the client said it takes them (`TE: trailers`).
    let trailers = if fast { "x-sum: 11\n" } else { "" };
    assert_eq!(chunked.trailers, trailers);
    assert_eq!(chunked.header("content-length"), None);
    // `Trailer` describes this hop's framing only.
    assert_eq!(chunked.header("trailer"), None);

    client
        .send("HEAD /gateway/up/any HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await;
    let head = client.response(true).await;
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("5"))
    );

    client.send(&get("/gateway/up/304")).await;
    let not_modified = client.response(false).await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("etag"), Some("\"x\""));
    // Which path served: the gateway's own passes header names as the
    // upstream wrote them (as nginx does), hyper's writes them lowercase.
    let name = &not_modified
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("etag"))
        .unwrap()
        .0;
    assert_eq!(name, if fast { "ETag" } else { "etag" });

    client.send(&get("/gateway/up/interim")).await;
    let after_hints = client.response(false).await;
    assert_eq!(
        (after_hints.status, after_hints.body().as_str()),
        (200, "ok")
    );

    for big in ["/gateway/up/big", "/gateway/up/big-chunked"] {
        client.send(&get(big)).await;
        let r = client.response(false).await;
        assert_eq!(r.status, 200, "{big}");
        assert!(
            r.body == big_body(),
            "{big}: {} bytes, not the upstream's",
            r.body.len()
        );
    }

    // A body that ends at the upstream's close reaches the client chunked,
    // and the client's connection lives on.
    client.send(&get("/gateway/up/close")).await;
    let until_close = client.response(false).await;
    assert_eq!(until_close.status, 200);
    assert_eq!(until_close.header("transfer-encoding"), Some("chunked"));
    assert_eq!(until_close.body(), "until the close");
    // Still the same connection: every framing above ended where it should.
    client.send(&get("/gateway/up/last")).await;
    let last = client.response(false).await;
    assert_eq!((last.status, last.body().as_str()), (200, "/last"));
    upstream.abort();
}

both_paths!(gateway_h1_answers_a_broken_upstream_with_502_and_keeps_the_client_connection);
async fn gateway_h1_answers_a_broken_upstream_with_502_and_keeps_the_client_connection(fast: bool) {
    let (fb, _, upstream, _) = gateway(fast).await;
    let mut client = Client::connect(&fb).await;
    for broken in ["/switch", "/garbage", "/plus"] {
        client.send(&get(&format!("/gateway/up{broken}"))).await;
        let r = client.response(false).await;
        assert_eq!(r.status, 502, "{broken}: {}", r.body());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header("x-request-id").is_some());
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "the upstream broke the exchange", "{body}");
        client.send(&get("/gateway/up/fine")).await;
        let fine = client.response(false).await;
        assert_eq!((fine.status, fine.body().as_str()), (200, "/fine"));
    }
    upstream.abort();
}

both_paths!(gateway_h1_closes_when_the_client_asks_and_leaves_odd_heads_to_hyper);
async fn gateway_h1_closes_when_the_client_asks_and_leaves_odd_heads_to_hyper(fast: bool) {
    let (fb, seen, upstream, _) = gateway(fast).await;
    let mut client = Client::connect(&fb).await;
    client
        .send("GET /gateway/up/last HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
        .await;
    let last = client.response(false).await;
    assert_eq!((last.status, last.body().as_str()), (200, "/last"));
    assert_eq!(last.header("connection"), Some("close"));
    assert!(client.closed().await);
    assert!(
        !seen.lock().unwrap()[0]
            .to_ascii_lowercase()
            .contains("connection:"),
        "Connection is hop-by-hop"
    );

    // A malformed field: hyper's 400, as for any other route.
    let mut client = Client::connect(&fb).await;
    client
        .send("GET /gateway/up/x HTTP/1.1\r\nHost: gw.test\r\nBad Field: 1\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.status, 400);

    // HTTP/1.0 and a request with a body are proxied by hyper's path.
    let mut client = Client::connect(&fb).await;
    client.send("GET /gateway/up/old HTTP/1.0\r\n\r\n").await;
    let line = client.line().await;
    assert!(
        line.starts_with("HTTP/1.") && line.ends_with("200 OK"),
        "{line}"
    );
    let mut client = Client::connect(&fb).await;
    client
        .send("POST /gateway/up/form HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 3\r\n\r\nabc")
        .await;
    let posted = client.response(false).await;
    assert_eq!((posted.status, posted.body().as_str()), (200, "/form"));
    // ...and the connection then stays with hyper, serving on.
    client.send(&get("/gateway/up/after")).await;
    let after = client.response(false).await;
    assert_eq!((after.status, after.body().as_str()), (200, "/after"));
    upstream.abort();
}

both_paths!(gateway_h1_closes_its_idle_connections_at_shutdown);
async fn gateway_h1_closes_its_idle_connections_at_shutdown(fast: bool) {
    let (mut fb, _, upstream, _) = gateway(fast).await;
    let mut idle = Client::connect(&fb).await;
    idle.send(&get("/gateway/up/warm")).await;
    assert_eq!(idle.response(false).await.status, 200);
    fb.signal(libc::SIGTERM);
    assert!(idle.closed().await, "an idle connection outlived shutdown");
    assert!(fb.wait().success());
    upstream.abort();
}

fn get_as(path: &str, bearer: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {bearer}\r\n\r\n")
}

/// The role and user the upstream was told about in the last request head.
fn last_identity(seen: &Mutex<Vec<String>>) -> (String, String) {
    let heads = seen.lock().unwrap();
    let head = heads.last().unwrap().to_ascii_lowercase();
    let field = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    (field("x-flagbase-role:"), field("x-flagbase-user-id:"))
}

// The own path verifies a connection's credential once and remembers it;
// a change to the user or the token must still count from the very next
// request on that connection, as on hyper's path.
both_paths!(gateway_h1_applies_a_role_change_a_revocation_and_an_expiry_to_the_next_request_of_the_same_connection);
async fn gateway_h1_applies_a_role_change_a_revocation_and_an_expiry_to_the_next_request_of_the_same_connection(
    fast: bool,
) {
    let (fb, seen, upstream, _) = gateway(fast).await;
    let admin = fb.login("admin@example.com").await;
    let (dev_id, dev_jwt) = fb.user("dev@example.com", "developer", Some(&admin)).await;
    let token = |body: serde_json::Value| {
        let fb = &fb;
        let dev_jwt = dev_jwt.clone();
        async move {
            let r = fb.post("/api/v1/tokens", body, Some(&dev_jwt)).await;
            assert_eq!(r.status, 201, "{}", r.body);
            (
                r.body["id"].as_str().unwrap().to_string(),
                r.body["token"].as_str().unwrap().to_string(),
            )
        }
    };
    let (token_id, secret) = token(serde_json::json!({"name": "gw", "role": "developer"})).await;
    let mut client = Client::connect(&fb).await;
    let mut ask = async |bearer: &str| {
        client.send(&get_as("/gateway/up/who", bearer)).await;
        let r = client.response(false).await;
        assert_eq!(r.status, 200, "{}", r.body());
        last_identity(&seen)
    };

    let developer = ("developer".to_string(), dev_id.clone());
    assert_eq!(ask(&secret).await, developer);
    assert_eq!(ask(&secret).await, developer, "the same credential again");

    let r = fb
        .put(
            &format!("/api/v1/users/{dev_id}/role"),
            serde_json::json!({"role": "user"}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let user = ("user".to_string(), dev_id.clone());
    assert_eq!(
        ask(&secret).await,
        user,
        "the owner's new role bounds the token's"
    );
    // Another credential of the same person on the same connection.
    assert_eq!(ask(&dev_jwt).await, user);
    assert_eq!(ask(&secret).await, user);

    let r = fb
        .delete(&format!("/api/v1/tokens/{token_id}"), Some(&admin))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let anonymous = ("anonymous".to_string(), String::new());
    assert_eq!(
        ask(&secret).await,
        anonymous,
        "a revoked token is no credential"
    );
    // A wrong secret for a live token never rides on a remembered answer.
    let (_, live) = token(serde_json::json!({"name": "live", "role": "user"})).await;
    assert_eq!(ask(&live).await, user);
    let mut wrong = live.clone().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(ask(std::str::from_utf8(&wrong).unwrap()).await, anonymous);

    let (_, brief) =
        token(serde_json::json!({"name": "brief", "role": "user", "expires_in": "2s"})).await;
    assert_eq!(ask(&brief).await, user);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        ask(&brief).await,
        anonymous,
        "an expired token is no credential"
    );
    upstream.abort();
}
