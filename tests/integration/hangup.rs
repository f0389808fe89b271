//! Clients that hang up while their change waits for the database: the
//! shared machinery of the hang-up regression tests.
//!
//! hyper drops a handler's future when its client goes away. To make every
//! hang-up land while its change is in flight, the test holds SQLite's write
//! lock from outside the server, sends the requests in full, waits until the
//! server has started each of them, resets every connection (SO_LINGER 0),
//! and only then lets the writes through: the commits land after their
//! clients have gone, which is when follow-ups used to be lost.

use tokio::io::AsyncWriteExt;

use crate::harness::Flagbase;

/// One request: method, path and JSON body (empty for none).
pub type RawRequest = (&'static str, String, String);

/// Opens a connection and sends the request in full, without reading the
/// answer.
async fn send_in_full(
    fb: &Flagbase,
    token: &str,
    (method, path, body): &RawRequest,
) -> tokio::net::TcpStream {
    let host = fb.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Sends `requests` (as `token`) while the database refuses writes, resets
/// each connection once the server has started handling every request, then
/// lets the writes through. Start the server with a long
/// `database.busy_timeout` so the waiting writes do not give up.
pub async fn hang_up_while_writes_wait(fb: &Flagbase, requests: &[RawRequest], token: &str) {
    let lock = rusqlite::Connection::open(fb.dir().join("flagbase.db")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let from = fb.stderr.mark();
    let mut streams = Vec::new();
    for request in requests {
        streams.push(send_in_full(fb, token, request).await);
    }
    fb.stderr
        .wait_for_count("every request to start", from, requests.len(), |line| {
            line.contains("request started")
                && requests.iter().any(|(m, p, _)| {
                    line.contains(&format!("\"{p}\"")) && line.contains(&format!("\"{m}\""))
                })
        });
    for stream in streams {
        stream.set_zero_linger().unwrap();
        drop(stream);
    }
    // A request on a fresh connection is answered after the server has seen
    // the resets that reached it first.
    assert_eq!(fb.get("/health", None).await.status, 200);
    lock.execute_batch("ROLLBACK").unwrap();
}
