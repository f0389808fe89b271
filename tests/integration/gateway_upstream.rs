//! Real upstream servers for the gateway tests: each answers with a JSON
//! description of the request it received (method, URI, headers, how many
//! body bytes it streamed in), plus a few special paths: `.../sse` streams
//! one event, waits for the test's release, then streams another;
//! `.../slow` answers after a minute; `.../fail` answers 500; an
//! `Upgrade` request is switched and every byte echoed back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Notify;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub struct Upstream {
    pub url: String,
    /// Lets `.../sse` send its second event.
    pub release: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address nothing listens on (bound, then released).
pub async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

impl Upstream {
    pub async fn start(name: &'static str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let release = Arc::new(Notify::new());
        let gate = release.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let gate = gate.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let gate = gate.clone();
                        async move { Ok::<_, Infallible>(answer(name, req, gate).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Upstream {
            url: format!("http://{addr}"),
            release,
            task,
        }
    }
}

fn full(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    r
}

async fn answer(
    name: &'static str,
    mut req: Request<Incoming>,
    gate: Arc<Notify>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    if req.headers().contains_key("upgrade") {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut r = full(StatusCode::SWITCHING_PROTOCOLS, String::new());
        r.headers_mut()
            .insert("upgrade", "websocket".parse().unwrap());
        r.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        return r;
    }
    if path.ends_with("/sse") {
        let frames = futures_util::stream::unfold(0u8, move |step| {
            let gate = gate.clone();
            async move {
                match step {
                    0 => Some((Ok(Frame::data(Bytes::from("data: one\n\n"))), 1)),
                    1 => {
                        gate.notified().await;
                        Some((Ok(Frame::data(Bytes::from("data: two\n\n"))), 2))
                    }
                    _ => None,
                }
            }
        });
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(frames)));
        r.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        return r;
    }
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    if path.ends_with("/fail") {
        return full(StatusCode::INTERNAL_SERVER_ERROR, "upstream broke".into());
    }
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let v = v.to_str().unwrap_or("<binary>").to_string();
        match headers.get_mut(k.as_str()) {
            Some(serde_json::Value::String(s)) => {
                s.push_str(", ");
                s.push_str(&v);
            }
            _ => {
                headers.insert(k.as_str().to_string(), v.into());
            }
        }
    }
    let (method, uri) = (req.method().to_string(), req.uri().to_string());
    // Counted frame by frame: the upstream never holds the body either.
    let mut body = req.into_body();
    let mut bytes = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            bytes += data.len() as u64;
        }
    }
    let mut r = full(
        StatusCode::OK,
        json!({"name": name, "method": method, "uri": uri, "headers": headers, "body_bytes": bytes})
            .to_string(),
    );
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r.headers_mut()
        .insert("x-upstream-hop", "secret".parse().unwrap());
    r.headers_mut()
        .insert("connection", "x-upstream-hop".parse().unwrap());
    r
}
