//! The process lifecycle: restarts keep state, `kill -9` loses no
//! acknowledged write, shutdown is graceful, newer schemas are refused, and
//! slow or idle clients cannot hold connections.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use crate::harness::{run_cli, stderr_of, Flagbase, Options, PASSWORD};

#[tokio::test]
async fn restart_keeps_users_and_the_signing_secret() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let (_, user) = fb.user("ada@example.com", "user", None).await;
    let fb = fb.restart();
    assert!(fb.setup_token.is_none(), "no setup after an admin exists");
    // Tokens issued before the restart still verify: the secret was kept.
    assert_eq!(fb.get("/auth/me", Some(&admin)).await.status, 200);
    assert_eq!(
        fb.get("/auth/me", Some(&user)).await.body["email"],
        "ada@example.com"
    );
    fb.login("ada@example.com").await;
}

#[tokio::test]
async fn kill_9_after_acknowledged_writes_loses_nothing() {
    let mut fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let mut emails = Vec::new();
    for i in 0..15 {
        let email = format!("user{i}@example.com");
        let r = fb
            .post(
                "/auth/register",
                json!({"email": email, "password": PASSWORD}),
                None,
            )
            .await;
        assert_eq!(r.status, 201);
        emails.push(email);
    }
    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "last-write", "role": "user"}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 201);
    let token = r.body["token"].as_str().unwrap().to_string();
    // The very last acknowledged write is followed at once by SIGKILL.
    fb.kill9();

    let fb = fb.relaunch_after_kill();
    let users = fb.get("/api/v1/users", Some(&admin)).await;
    let stored: Vec<&str> = users.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    for email in &emails {
        assert!(
            stored.contains(&email.as_str()),
            "{email} lost after kill -9"
        );
    }
    assert_eq!(
        fb.get("/auth/me", Some(&token)).await.status,
        200,
        "the last token survived"
    );
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_closes_the_database() {
    let mut fb = Flagbase::start().await;
    fb.setup_admin("root@example.com").await;
    let addr = fb.base.trim_start_matches("http://").to_string();

    // Send a request's head but hold back its body, so it is in flight.
    let body = format!(r#"{{"email":"root@example.com","password":"{PASSWORD}"}}"#);
    let mut conn = TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "POST /auth/login HTTP/1.1\r\nHost: {addr}\r\nX-Request-Id: in-flight-1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    fb.stderr.wait_for("the handler to start", |l| {
        l.contains("in-flight-1") && l.contains("request started")
    });

    fb.signal(libc::SIGTERM);
    fb.stderr
        .wait_for("shutdown to begin", |l| l.contains("shutdown requested"));
    conn.write_all(body.as_bytes()).unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"token\""));

    let status = fb.wait();
    assert!(status.success(), "{status}");
    fb.stderr
        .wait_for("the final log line", |l| l.contains("shutdown complete"));
    assert!(
        !fb.dir().join("flagbase.db-wal").exists(),
        "the WAL was checkpointed and removed on close"
    );
}

#[test]
fn a_database_from_a_newer_flagbase_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let db = dir.join("flagbase.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "user_version", 999).unwrap();
    drop(conn);
    let out = run_cli(
        dir,
        &["start", "--host", "127.0.0.1", "--port", "0"],
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("schema version 999") && err.contains("newer flagbase"),
        "{err}"
    );
}

/// Reads until the server closes `conn` and returns what it sent. The
/// read timeout only keeps a broken server from hanging the suite: it is
/// far beyond every timeout configured in these tests.
fn read_until_closed(conn: &mut TcpStream) -> Vec<u8> {
    conn.set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!(
                "the server kept the connection open ({e}); it sent {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

/// One keep-alive `GET` on `conn`; returns the status line and the body.
fn http_get(conn: &mut TcpStream, path: &str) -> (String, String) {
    conn.set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: flagbase\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut byte = [0; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = conn.read(&mut byte).expect("a response head");
        assert_eq!(n, 1, "closed mid-head: {:?}", String::from_utf8_lossy(&got));
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .expect("a content-length");
    let mut body = vec![0; length];
    conn.read_exact(&mut body).unwrap();
    let status = head.lines().next().unwrap().to_string();
    (status, String::from_utf8(body).unwrap())
}

fn connect(fb: &Flagbase) -> TcpStream {
    TcpStream::connect(fb.base.trim_start_matches("http://")).unwrap()
}

#[tokio::test]
async fn regression_silent_and_half_sent_connections_are_closed_after_the_header_timeout() {
    let fb = Flagbase::start_with(Options::default().set("server.header_read_timeout", "1s")).await;
    let mut silent = connect(&fb);
    let mut half = connect(&fb);
    half.write_all(b"GET /health HTTP/1.1\r\nHost: flagbase\r\n")
        .unwrap();
    // Trickling bytes does not extend the deadline of a head under way.
    let mut trickle = connect(&fb);
    trickle.write_all(b"GET /hea").unwrap();
    let cut_off = std::thread::scope(|s| {
        s.spawn(|| {
            for b in b"lth HTTP/1.1\r\nX-Slow: ".iter().chain([b'a'; 200].iter()) {
                if trickle.write_all(&[*b]).is_err() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        })
        .join()
        .unwrap()
    });
    assert!(cut_off, "a head trickled over 20 s was still being read");
    assert_eq!(read_until_closed(&mut silent), b"");
    assert_eq!(read_until_closed(&mut half), b"");
    // Before the fix all three were still open after 75 s; a client that
    // sends its request promptly is unaffected.
    assert_eq!(fb.get("/health", None).await.status, 200);
}

#[tokio::test]
async fn regression_idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    // The head timeout is far longer, so only the idle timeout can close it.
    let fb = Flagbase::start_with(
        Options::default()
            .set("server.idle_timeout", "1s")
            .set("server.header_read_timeout", "10m"),
    )
    .await;
    let mut conn = connect(&fb);
    let (status, body) = http_get(&mut conn, "/health");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, r#"{"status":"ok"}"#);
    assert_eq!(
        read_until_closed(&mut conn),
        b"",
        "nothing more, then closed"
    );
}

#[tokio::test]
async fn regression_a_stalled_request_body_is_closed_after_the_idle_timeout() {
    let fb = Flagbase::start_with(
        Options::default()
            .set("server.idle_timeout", "1s")
            .set("server.header_read_timeout", "10m"),
    )
    .await;
    let mut conn = connect(&fb);
    conn.write_all(
        b"POST /auth/login HTTP/1.1\r\nHost: flagbase\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":",
    )
    .unwrap();
    assert_eq!(read_until_closed(&mut conn), b"");
}

#[tokio::test]
async fn regression_a_connection_cap_closes_the_excess_and_keeps_serving() {
    let fb = Flagbase::start_with(
        Options::default()
            .set("server.max_connections", "3")
            .set("server.header_read_timeout", "10m"),
    )
    .await;
    // A well-behaved client, kept alive, then two sockets that say nothing:
    // the cap of 3 is reached.
    let mut client = connect(&fb);
    assert_eq!(http_get(&mut client, "/health").0, "HTTP/1.1 200 OK");
    let silent = [connect(&fb), connect(&fb)];

    // Connections are accepted in order, so this one finds no slot: it is
    // closed without an answer instead of waiting or exhausting descriptors.
    let mut excess = connect(&fb);
    let _ = excess.write_all(b"GET /health HTTP/1.1\r\nHost: flagbase\r\n\r\n");
    assert_eq!(read_until_closed(&mut excess), b"");
    fb.stderr.wait_for("the cap warning", |l| {
        l.contains("connection limit reached")
    });

    // The client already connected is still served.
    assert_eq!(http_get(&mut client, "/health").0, "HTTP/1.1 200 OK");
    assert_eq!(http_get(&mut client, "/ready").0, "HTTP/1.1 200 OK");

    // When a connection ends its slot serves a newcomer.
    let [first, _second] = silent;
    drop(first);
    fb.stderr.wait_for("a slot to free", |l| {
        l.contains("accepting new connections again")
    });
    let mut newcomer = connect(&fb);
    assert_eq!(http_get(&mut newcomer, "/health").0, "HTTP/1.1 200 OK");
}
