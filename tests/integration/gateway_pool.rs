//! The gateway's own upstream connection pool: sequential requests reuse
//! one connection, a request in flight never makes another wait behind it
//! (it gets its own connection), and an upstream that closes its
//! connections, after each exchange or once they sat idle, costs no
//! failed request, even when the close crosses an idempotent request, and
//! leaves no socket half-closed. Each case runs on both HTTP paths.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::harness::{Flagbase, Options};

/// An upstream that answers with the client port of the connection the
/// request came on; `/hold` signals `arrived`, then answers only once
/// `release` is notified.
/// With `keep_alive` false it closes every connection after one exchange.
struct PeerUpstream {
    url: String,
    arrived: Arc<Notify>,
    release: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PeerUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PeerUpstream {
    async fn start(keep_alive: bool) -> PeerUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let release = Arc::new(Notify::new());
        let arrived = Arc::new(Notify::new());
        let gate = (arrived.clone(), release.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let gate = gate.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let gate = gate.clone();
                        answer(req, peer, gate)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        PeerUpstream {
            url: format!("http://{addr}"),
            arrived,
            release,
            task,
        }
    }
}

async fn answer(
    req: Request<Incoming>,
    peer: SocketAddr,
    (arrived, release): (Arc<Notify>, Arc<Notify>),
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path().ends_with("/hold") {
        arrived.notify_one();
        release.notified().await;
    }
    let body = json!({"port": peer.port()}).to_string();
    Ok(Response::new(Full::new(Bytes::from(body))))
}

/// A gateway with one route to `url`, serving bodyless requests with its
/// own HTTP/1 path (`fast`) or with hyper's.
pub async fn gateway_to(url: &str, fast: bool) -> Flagbase {
    let options = Options::default().set("gateway.fast_path", if fast { "true" } else { "false" });
    let fb = Flagbase::start_with(options).await;
    let admin = fb.setup_admin("admin@example.com").await;
    let r = fb
        .post(
            "/api/v1/gateway/routes",
            json!({"path": "/gateway/up", "target": url}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    fb
}

async fn port(fb: &Flagbase, path: &str) -> u64 {
    let r = fb.get(path, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["port"].as_u64().unwrap()
}

both_paths!(gateway_pool_reuses_one_connection_for_sequential_requests);
async fn gateway_pool_reuses_one_connection_for_sequential_requests(fast: bool) {
    let up = PeerUpstream::start(true).await;
    let fb = gateway_to(&up.url, fast).await;
    let first = port(&fb, "/gateway/up/a").await;
    for _ in 0..5 {
        assert_eq!(port(&fb, "/gateway/up/b").await, first, "a new connection");
    }
}

both_paths!(gateway_pool_never_queues_a_request_behind_one_in_flight);
async fn gateway_pool_never_queues_a_request_behind_one_in_flight(fast: bool) {
    let up = PeerUpstream::start(true).await;
    let fb = gateway_to(&up.url, fast).await;
    let warm = port(&fb, "/gateway/up/a").await;
    let held = {
        let (http, url) = (fb.gw.clone(), fb.url("/gateway/up/hold"));
        tokio::spawn(async move { http.get(url).send().await.unwrap().text().await.unwrap() })
    };
    up.arrived.notified().await;
    // The held request holds a connection; these answer meanwhile, on
    // another connection that is then reused.
    let meanwhile = port(&fb, "/gateway/up/b").await;
    assert_eq!(port(&fb, "/gateway/up/c").await, meanwhile);
    assert!(!held.is_finished());
    up.release.notify_one();
    let held: serde_json::Value = serde_json::from_str(&held.await.unwrap()).unwrap();
    let held = held["port"].as_u64().unwrap();
    assert_ne!(held, meanwhile, "two exchanges shared a connection");
    assert_eq!(held, warm, "the idle connection was not reused");
}

both_paths!(gateway_pool_survives_an_upstream_that_closes_every_connection);
async fn gateway_pool_survives_an_upstream_that_closes_every_connection(fast: bool) {
    let up = PeerUpstream::start(false).await;
    let fb = gateway_to(&up.url, fast).await;
    let mut ports = std::collections::HashSet::new();
    for _ in 0..10 {
        ports.insert(port(&fb, "/gateway/up/x").await);
    }
    assert_eq!(ports.len(), 10, "a closed connection was reused");
}

/// A raw HTTP/1.1 upstream (not hyper, so it can misbehave as real ones
/// do). On each connection it answers up to `answers` requests with the
/// connection's client port, then reads the next request and closes
/// without answering (a keep-alive timeout crossing that request); it
/// also closes, silently (no `Connection: close`), a connection idle for
/// `idle`, as Node's (5 s) or nginx's keep-alive timeout does.
async fn raw_upstream(
    answers: usize,
    idle: std::time::Duration,
) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, peer)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let (mut buf, mut answered) = (Vec::new(), 0);
                loop {
                    let mut chunk = [0u8; 4096];
                    match tokio::time::timeout(idle, stream.read(&mut chunk)).await {
                        Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        // Idle too long, or the client went: close.
                        _ => return,
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if answered == answers {
                            return;
                        }
                        answered += 1;
                        let body = json!({"port": peer.port()}).to_string();
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        if stream.write_all((head + &body).as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, task)
}

both_paths!(gateway_pool_drops_connections_the_upstream_closed_while_idle);
async fn gateway_pool_drops_connections_the_upstream_closed_while_idle(fast: bool) {
    let (url, upstream) = raw_upstream(usize::MAX, std::time::Duration::from_millis(100)).await;
    let fb = gateway_to(&url, fast).await;
    let mut ports = std::collections::HashSet::new();
    for _ in 0..4 {
        // Back to back: the same connection.
        let first = port(&fb, "/gateway/up/a").await;
        assert_eq!(port(&fb, "/gateway/up/b").await, first, "a new connection");
        ports.insert(first);
        // Past the upstream's idle timeout: the pooled connection is closed
        // and must be noticed before a request is written to it.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert_eq!(ports.len(), 4, "a closed connection was reused: {ports:?}");
    upstream.abort();
}

both_paths!(gateway_pool_sends_an_idempotent_request_again_when_a_reused_connection_closes_on_it);
async fn gateway_pool_sends_an_idempotent_request_again_when_a_reused_connection_closes_on_it(
    fast: bool,
) {
    let (url, upstream) = raw_upstream(1, std::time::Duration::from_secs(60)).await;
    let fb = gateway_to(&url, fast).await;
    let first = port(&fb, "/gateway/up/a").await;
    // Idle long enough for a keep-alive timeout to be possible: the
    // pooled connection takes the GET and closes; it goes again on a
    // fresh connection, and the caller never sees the close.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let second = port(&fb, "/gateway/up/b").await;
    assert_ne!(first, second, "answered on the connection that closed");
    // A POST may have been acted on: it is not sent twice.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = fb
        .send(reqwest::Client::new().post(fb.url("/gateway/up/c")))
        .await;
    assert_eq!(r.status, 502, "{}", r.body);
    upstream.abort();
}

both_paths!(gateway_pool_leaves_no_socket_half_closed_by_an_idle_upstream);
async fn gateway_pool_leaves_no_socket_half_closed_by_an_idle_upstream(fast: bool) {
    use std::time::{Duration, Instant};
    let (url, upstream) = raw_upstream(usize::MAX, Duration::from_millis(100)).await;
    let fb = gateway_to(&url, fast).await;
    port(&fb, "/gateway/up/a").await;
    let upstream_port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    // The upstream closes the pooled connection once it sits idle 100 ms.
    // Nobody asks for it again, yet the gateway's end must not stay
    // half-closed (CLOSE_WAIT, a file descriptor held) for long: hyper's
    // connection task sees the close, the own path's sweeper probes idle
    // sockets every 5 s.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting = close_wait_to(upstream_port);
        if waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} gateway sockets to the upstream still in CLOSE_WAIT"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    upstream.abort();
}

/// Sockets in CLOSE_WAIT (state 08 in /proc/net/tcp) whose peer is `port`
/// on the loopback: the upstream closed, this end did not.
fn close_wait_to(port: u16) -> usize {
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3
                && fields[3] == "08"
                && fields[2]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
        })
        .count()
}
