//! The process lifecycle: restarts keep state, `kill -9` loses no
//! acknowledged write, shutdown is graceful, and newer schemas are refused.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::json;

use crate::harness::{run_cli, stderr_of, Flagbase, PASSWORD};

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
