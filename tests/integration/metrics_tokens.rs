//! Who may record metric events. A `client` token is public (it ships in
//! browsers and mobile apps), so anyone could copy it and send `error`
//! events until the detector turns a flag off: such tokens are refused on
//! `POST /api/v1/events` with a message naming what to use instead, while a
//! `server` token of any role, or a session, records events.

use serde_json::{json, Value};

use crate::harness::Flagbase;

async fn token(fb: &Flagbase, admin: &str, kind: &str) -> String {
    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": format!("{kind}-events"), "role": "user", "kind": kind}),
            Some(admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn client_tokens_cannot_record_metric_events_and_are_told_what_can() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("admin@example.com").await;
    let r = fb
        .post("/api/v1/flags", json!({"key": "checkout"}), Some(&admin))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let event = json!({"flag_key": "checkout", "variant": "true", "event_type": "error"});

    let client = token(&fb, &admin, "client").await;
    let r = fb
        .post("/api/v1/events", event.clone(), Some(&client))
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["code"], "forbidden");
    let message = r.body["error"].as_str().unwrap();
    assert!(message.contains("client token"), "{message}");
    assert!(message.contains("server token"), "{message}");

    let server = token(&fb, &admin, "server").await;
    let r = fb.post("/api/v1/events", event, Some(&server)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["accepted"], Value::from(1));
}
