//! The Rust SDK's local-evaluation client following the real flag stream:
//! changes arrive and apply in order, and a client cut off in the middle of
//! a burst of 100 changes ends with exactly the server's state.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagbase_sdk::{Change, ChangeKind, ConnectionState, Context, LocalClient, LocalOptions};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::harness::Flagbase;
use crate::sdk_rust::{sample_flags, seeded};

/// Waits this long for an awaited event before failing (not a timing
/// assertion: only a bound on a hang).
const PATIENCE: Duration = Duration::from_secs(30);

/// A TCP proxy in front of the server whose live connections the test can
/// cut, as a network failure would; new connections still go through.
pub struct CutProxy {
    pub url: String,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(upstream: &str) -> CutProxy {
        let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (c, a) = (conns.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                c.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                }));
            }
        });
        CutProxy {
            url,
            conns,
            accepted,
            task,
        }
    }

    /// Closes every connection open now.
    pub fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

fn changes(sdk: &LocalClient) -> mpsc::UnboundedReceiver<Change> {
    let (tx, rx) = mpsc::unbounded_channel();
    sdk.on_change(move |c| {
        let _ = tx.send(c.clone());
    });
    rx
}

async fn next_for(rx: &mut mpsc::UnboundedReceiver<Change>, key: &str) -> Change {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let c = rx.recv().await.expect("listener alive");
            if c.key == key {
                return c;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no change for {key}"))
}

/// Every flag as `GET /api/v1/flags` shows it, sorted by key.
pub async fn server_flags(fb: &Flagbase, token: &str) -> Vec<Value> {
    let r = fb.get("/api/v1/flags?limit=1000", Some(token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut flags = r.body["flags"].as_array().unwrap().clone();
    flags.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
    flags
}

async fn toggle(fb: &Flagbase, admin: &str, key: &str) {
    let r = fb
        .send(
            fb.http
                .patch(fb.url(&format!("/api/v1/flags/{key}/toggle")))
                .bearer_auth(admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn local_client_follows_every_change() {
    let (fb, admin, token) = seeded(&sample_flags()).await;
    let sdk = LocalClient::init(LocalOptions::new(&fb.base, &token))
        .await
        .unwrap();
    assert_eq!(sdk.state(), ConnectionState::Connected);
    assert_eq!(sdk.flags(), server_flags(&fb, &token).await);
    let mut rx = changes(&sdk);
    let anyone = Context::with_targeting_key("u");

    assert!(!sdk.is_enabled("off", &anyone));
    toggle(&fb, &admin, "off").await;
    let c = next_for(&mut rx, "off").await;
    assert_eq!(c.kind, ChangeKind::Updated);
    assert!(sdk.is_enabled("off", &anyone));
    assert_eq!(sdk.seq(), c.seq);

    let r = fb.delete("/api/v1/flags/banner", Some(&admin)).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(next_for(&mut rx, "banner").await.kind, ChangeKind::Deleted);
    assert_eq!(sdk.value("banner", &anyone), Value::Null);

    let flag = json!({"key": "fresh", "type": "string", "enabled": true, "default_value": "x",
                      "rules": [{"attribute": "country", "operator": "in", "value": ["NL", "BE"],
                                 "variant": "benelux"}]});
    let r = fb.post("/api/v1/flags", flag, Some(&admin)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    next_for(&mut rx, "fresh").await;
    assert_eq!(
        sdk.value(
            "fresh",
            &Context::with_targeting_key("u").with("country", "be")
        ),
        json!("benelux")
    );
    assert_eq!(sdk.flags(), server_flags(&fb, &token).await);
}

/// The acceptance case: a client that connects, is disconnected
/// during a burst of 100 changes and reconnects ends with exactly the
/// server's state.
#[tokio::test]
async fn a_client_cut_off_during_a_burst_ends_with_the_servers_state() {
    let (fb, admin, token) = seeded(&sample_flags()).await;
    let proxy = CutProxy::start(&fb.base).await;
    let mut options = LocalOptions::new(&proxy.url, &token);
    options.backoff_min = Duration::from_millis(20);
    options.backoff_max = Duration::from_millis(200);
    let sdk = LocalClient::init(options).await.unwrap();
    let mut rx = changes(&sdk);
    let mut states = sdk.watch_state();

    for i in 0..100 {
        match i % 4 {
            0 | 1 => toggle(&fb, &admin, "off").await,
            2 => {
                let r = fb
                    .post(
                        "/api/v1/flags",
                        json!({"key": format!("burst-{i}"), "enabled": true, "rollout_percentage": i}),
                        Some(&admin),
                    )
                    .await;
                assert_eq!(r.status, 201, "{}", r.body);
            }
            _ => {
                let r = fb
                    .delete(&format!("/api/v1/flags/burst-{}", i - 1), Some(&admin))
                    .await;
                assert_eq!(r.status, 204, "{}", r.body);
            }
        }
        if i == 30 || i == 70 {
            // Cut a live connection: the reconnect after the first cut
            // (paced by the server's retry hint, capped at backoff_max) may
            // still be under way.
            tokio::time::timeout(
                PATIENCE,
                states.wait_for(|s| *s == ConnectionState::Connected),
            )
            .await
            .expect("the client is connected before the cut")
            .unwrap();
            proxy.cut();
            // The client notices (the stream ended) before the burst goes on.
            tokio::time::timeout(
                PATIENCE,
                states.wait_for(|s| *s != ConnectionState::Connected),
            )
            .await
            .expect("the client sees the cut")
            .unwrap();
        }
    }
    // One last change: once it is applied, everything before it is too
    // (changes apply in commit order).
    let r = fb
        .post(
            "/api/v1/flags",
            json!({"key": "marker", "enabled": true}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    next_for(&mut rx, "marker").await;
    assert_eq!(sdk.flags(), server_flags(&fb, &token).await);
    assert_eq!(sdk.state(), ConnectionState::Connected);
    assert!(proxy.accepted() >= 3, "the client reconnected twice");
}
