//! Store, snapshot and caches agree: after clients hang up mid-request and
//! under concurrent writes.
//!
//! hyper drops a handler's future when its client goes away; a change that
//! was committed must still reach the live snapshot, or the store and what
//! evaluation serves disagree until a restart. To make every hang-up land while the change is in flight, the test holds
//! SQLite's write lock from outside the server, sends the requests, waits
//! until the server has started all of them, resets every connection, and
//! only then lets the writes through.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::Flagbase;

/// A raw HTTP/1.1 request, so the test controls exactly when the socket dies.
fn raw_request(method: &str, path: &str, token: &str, body: Option<&Value>) -> Vec<u8> {
    let body = body.map(Value::to_string).unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: flagbase\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends a request on a fresh connection and returns the socket, still open.
fn send_raw(fb: &Flagbase, request: &[u8]) -> TcpStream {
    let addr = fb.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(request).expect("send request");
    stream
}

/// Closes with a TCP reset (SO_LINGER 0), the rudest way a client can leave.
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(stream);
}

/// Holds SQLite's write lock on the server's database until dropped.
struct WriteLock(rusqlite::Connection);

impl WriteLock {
    fn take(fb: &Flagbase) -> WriteLock {
        let conn = rusqlite::Connection::open(fb.dir().join("flagbase.db")).expect("open db");
        conn.execute_batch("BEGIN IMMEDIATE")
            .expect("take the write lock");
        WriteLock(conn)
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

/// Waits until the server has logged the start of `count` requests for
/// which `matches(method, path)` holds.
fn wait_for_started(fb: &Flagbase, count: usize, matches: impl Fn(&str, &str) -> bool) {
    fb.stderr.wait_for_count("requests started", count, |line| {
        serde_json::from_str::<Value>(line).is_ok_and(|l| {
            l["message"] == "request started"
                && matches(
                    l["method"].as_str().unwrap_or_default(),
                    l["path"].as_str().unwrap_or_default(),
                )
        })
    });
}

fn flag(key: &str) -> Value {
    json!({"key": key, "enabled": true, "default_value": false})
}

/// The reason evaluation gives for `key` (STATIC when enabled, DISABLED when
/// not), or `None` when the snapshot does not know the flag.
async fn served(fb: &Flagbase, token: &str, key: &str) -> Option<String> {
    let r = fb
        .get(&format!("/api/v1/flags/{key}/evaluate"), Some(token))
        .await;
    match r.status {
        200 => Some(r.body["reason"].as_str().unwrap().to_string()),
        404 => None,
        other => panic!("evaluate {key}: {other} {}", r.body),
    }
}

#[tokio::test]
async fn regression_flag_changes_from_clients_that_hang_up_reach_the_snapshot() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    // Flags to toggle and delete while their clients hang up.
    for i in 0..40 {
        let r = fb
            .post(
                "/api/v1/flags",
                flag(&format!("existing-{i}")),
                Some(&admin),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }

    let lock = WriteLock::take(&fb);
    let mut sockets = Vec::new();
    for i in 0..60 {
        let body = flag(&format!("hung-up-{i}"));
        let req = raw_request("POST", "/api/v1/flags", &admin, Some(&body));
        sockets.push(send_raw(&fb, &req));
    }
    for i in 0..20 {
        let path = format!("/api/v1/flags/existing-{i}/toggle");
        sockets.push(send_raw(&fb, &raw_request("PATCH", &path, &admin, None)));
    }
    for i in 20..40 {
        let path = format!("/api/v1/flags/existing-{i}");
        sockets.push(send_raw(&fb, &raw_request("DELETE", &path, &admin, None)));
    }
    // 40 creations before the lock, then the 100 requests sent under it.
    wait_for_started(&fb, 140, |method, path| {
        (method == "POST" && path == "/api/v1/flags")
            || (method == "PATCH" && path.ends_with("/toggle"))
            || (method == "DELETE" && path.starts_with("/api/v1/flags/existing-"))
    });
    for socket in sockets {
        reset(socket);
    }
    drop(lock);

    // Writes are serialised in arrival order, so once a change sent now has
    // committed, every change queued before it has finished too.
    let r = fb
        .post("/api/v1/flags", flag("sentinel"), Some(&admin))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    let r = fb.get("/api/v1/flags?limit=1000", Some(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let stored: Vec<(String, bool)> = r.body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["key"].as_str().unwrap().to_string(),
                f["enabled"].as_bool().unwrap(),
            )
        })
        .collect();
    let committed = stored
        .iter()
        .filter(|(k, _)| k.starts_with("hung-up-"))
        .count();
    assert!(
        committed > 0,
        "no hung-up change committed: the test did not exercise the bug"
    );
    for (key, enabled) in &stored {
        let expected = if *enabled { "STATIC" } else { "DISABLED" };
        assert_eq!(
            served(&fb, &admin, key).await.as_deref(),
            Some(expected),
            "flag {key} is stored (enabled: {enabled}) but the snapshot serves otherwise"
        );
    }
    for i in 20..40 {
        let key = format!("existing-{i}");
        if !stored.iter().any(|(k, _)| *k == key) {
            assert_eq!(
                served(&fb, &admin, &key).await,
                None,
                "flag {key} was deleted but is still served"
            );
        }
    }
}

/// Concurrent read-modify-writes without `If-Match` must each apply once:
/// none lost to a race, none refused because another came first.
#[tokio::test]
async fn concurrent_toggles_each_apply_exactly_once() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let r = fb.post("/api/v1/flags", flag("busy"), Some(&admin)).await;
    assert_eq!(r.status, 201, "{}", r.body);

    let mut toggles = tokio::task::JoinSet::new();
    for _ in 0..31 {
        let request = fb
            .http
            .patch(fb.url("/api/v1/flags/busy/toggle"))
            .bearer_auth(&admin);
        toggles.spawn(async move { request.send().await.expect("toggle").status() });
    }
    while let Some(status) = toggles.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let r = fb.get("/api/v1/flags/busy", Some(&admin)).await;
    assert_eq!(r.body["version"], 32, "{}", r.body);
    assert_eq!(r.body["enabled"], false, "31 flips of true");
    assert_eq!(
        served(&fb, &admin, "busy").await.as_deref(),
        Some("DISABLED")
    );
}
