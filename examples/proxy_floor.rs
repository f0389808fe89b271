//! The floor under the gateway benchmark: about the least an HTTP/1.1
//! reverse proxy on tokio does per request, with no hyper and none of the
//! gateway's work (no authentication, no flag, no header rules beyond
//! dropping hop-by-hop fields). `FLOOR=1 bench/gateway.sh` measures it
//! beside nginx and the gateway, to tell how much of the gap to nginx is
//! the runtime and the kernel and how much the HTTP machinery above them.
//!
//! A measurement tool, not a proxy: requests without a body, responses
//! framed by `Content-Length`, one upstream connection per client
//! connection, anything else ends the connection.
//!
//! Usage: `proxy_floor <listen address> <upstream address>`; prints the
//! address it listens on.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Header fields that describe one hop (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: proxy_floor <listen address> <upstream address>");
        std::process::exit(2);
    };
    let (Ok(listen), Ok(upstream)) = (listen.parse::<SocketAddr>(), upstream.parse::<SocketAddr>())
    else {
        eprintln!("proxy_floor: addresses are host:port");
        std::process::exit(2);
    };
    // The same runtime kind as `flagbase start`.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await.expect("bind");
        println!("listening on {}", listener.local_addr().expect("bound"));
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = serve(client, upstream).await;
            });
        }
    });
}

/// Reads more bytes into `buf`; 0 at the end of the stream.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    buf.reserve(8192);
    stream.read_buf(buf).await
}

fn hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

async fn serve(mut client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let peer = client.peer_addr()?;
    let mut up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let host = upstream.to_string();
    let (mut inbuf, mut upbuf, mut out) = (Vec::new(), Vec::new(), Vec::with_capacity(4096));
    loop {
        // The request head, rewritten for the upstream.
        let consumed = loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut fields);
            match req.parse(&inbuf) {
                Ok(httparse::Status::Complete(n)) => {
                    out.clear();
                    out.extend_from_slice(req.method.unwrap_or("GET").as_bytes());
                    out.push(b' ');
                    out.extend_from_slice(req.path.unwrap_or("/").as_bytes());
                    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
                    out.extend_from_slice(host.as_bytes());
                    for field in req.headers.iter().filter(|f| !hop_by_hop(f.name)) {
                        out.extend_from_slice(b"\r\n");
                        out.extend_from_slice(field.name.as_bytes());
                        out.extend_from_slice(b": ");
                        out.extend_from_slice(field.value);
                    }
                    out.extend_from_slice(b"\r\nx-forwarded-for: ");
                    out.extend_from_slice(peer.ip().to_string().as_bytes());
                    out.extend_from_slice(b"\r\n\r\n");
                    break n;
                }
                Ok(httparse::Status::Partial) => {}
                Err(_) => return Ok(()),
            }
            if read_more(&mut client, &mut inbuf).await? == 0 {
                return Ok(());
            }
        };
        inbuf.drain(..consumed);
        up.write_all(&out).await?;

        // The response head, rewritten for the client, then its body.
        let (head, body) = loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut res = httparse::Response::new(&mut fields);
            match res.parse(&upbuf) {
                Ok(httparse::Status::Complete(n)) => {
                    let mut length = None;
                    out.clear();
                    out.extend_from_slice(b"HTTP/1.1 ");
                    out.extend_from_slice(res.code.unwrap_or(502).to_string().as_bytes());
                    out.push(b' ');
                    out.extend_from_slice(res.reason.unwrap_or("").as_bytes());
                    for field in res.headers.iter().filter(|f| !hop_by_hop(f.name)) {
                        if field.name.eq_ignore_ascii_case("content-length") {
                            length = std::str::from_utf8(field.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<usize>().ok());
                        }
                        out.extend_from_slice(b"\r\n");
                        out.extend_from_slice(field.name.as_bytes());
                        out.extend_from_slice(b": ");
                        out.extend_from_slice(field.value);
                    }
                    out.extend_from_slice(b"\r\n\r\n");
                    let Some(length) = length else {
                        return Ok(());
                    };
                    break (n, length);
                }
                Ok(httparse::Status::Partial) => {}
                Err(_) => return Ok(()),
            }
            if read_more(&mut up, &mut upbuf).await? == 0 {
                return Ok(());
            }
        };
        while upbuf.len() < head + body {
            if read_more(&mut up, &mut upbuf).await? == 0 {
                return Ok(());
            }
        }
        out.extend_from_slice(&upbuf[head..head + body]);
        upbuf.drain(..head + body);
        client.write_all(&out).await?;
    }
}
