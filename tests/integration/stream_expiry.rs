//! A person's session stream ends when the session JWT expires, and the
//! client gets back in with a fresh token; against the real binary. The
//! test waits for the stream's end, never for a clock.

use crate::harness::{Flagbase, Options};
use crate::stream::Sse;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_stream_ends_when_its_jwt_expires() {
    // JWT `exp` has whole seconds: 3s leaves the stream open for 2-3s.
    let fb = Flagbase::start_with(Options::default().set("iam.token_ttl", "3s")).await;
    fb.setup_admin("admin@example.com").await;
    let session = fb.login("admin@example.com").await;

    let me = fb.get("/auth/me", Some(&session)).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["credential"]["type"], "session", "{}", me.body);
    assert!(
        me.body["credential"]["expires_at"].is_string(),
        "a session says when it ends: {}",
        me.body
    );

    let mut sse = Sse::open(&fb, "/api/v1/stream", Some(&session), None).await;
    assert_eq!(sse.status, 200);
    let first = sse.next().await.expect("the snapshot");
    assert_eq!(first.event.as_deref(), Some("snapshot"), "{first:?}");
    // Heartbeats may come first; the end must come without a change.
    if let Some(e) = sse.next().await {
        panic!("only the end was expected after the snapshot, got {e:?}");
    }

    // The expired token is refused; a fresh one streams again.
    let again = Sse::open(&fb, "/api/v1/stream", Some(&session), None).await;
    assert_eq!(again.status, 401);
    let fresh = fb.login("admin@example.com").await;
    let mut back = Sse::open(&fb, "/api/v1/stream", Some(&fresh), None).await;
    assert_eq!(back.status, 200);
    assert_eq!(
        back.next().await.expect("a snapshot").event.as_deref(),
        Some("snapshot")
    );
}
