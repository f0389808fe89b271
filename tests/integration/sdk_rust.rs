//! The Rust SDK (`crates/flagbase-sdk`) against the real binary: the remote
//! client over the REST API, and the local-evaluation client's offline start
//! from a bootstrap file.

use std::time::Duration;

use flagbase_sdk::{Client, ConnectionState, Context, Error, LocalClient, LocalOptions};
use serde_json::{json, Value};

use crate::harness::Flagbase;

/// Flags covering each way a value is chosen.
pub fn sample_flags() -> Vec<Value> {
    vec![
        json!({"key": "new-checkout-ui", "enabled": true,
               "rules": [{"attribute": "plan", "operator": "equals", "value": "pro", "variant": true}]}),
        json!({"key": "rollout", "enabled": true, "rollout_percentage": 37.5,
               "targeted_users": ["vip"]}),
        json!({"key": "banner", "type": "string", "enabled": true, "default_value": "hello",
               "variants": [{"key": "a", "value": "hi A", "weight": 30},
                            {"key": "b", "value": "hi B", "weight": 70}]}),
        json!({"key": "off", "enabled": false, "default_value": true}),
    ]
}

/// An instance holding `flags`; returns it, the admin's JWT and a server token.
pub async fn seeded(flags: &[Value]) -> (Flagbase, String, String) {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    for flag in flags {
        let r = fb.post("/api/v1/flags", flag.clone(), Some(&admin)).await;
        assert_eq!(r.status, 201, "creating {flag}: {}", r.body);
    }
    let token = server_token(&fb, &admin, "sdk").await;
    (fb, admin, token)
}

pub async fn server_token(fb: &Flagbase, admin: &str, name: &str) -> String {
    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": name, "role": "user"}),
            Some(admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn remote_client_evaluates_through_the_rest_api() {
    let (fb, admin, token) = seeded(&sample_flags()).await;
    let client = Client::new(&fb.base, &token).unwrap();

    assert!(!client.evaluate_flag("off").await.unwrap());
    let e = client
        .evaluate("banner", &Context::with_targeting_key("user-1"))
        .await
        .unwrap();
    let direct = fb
        .post(
            "/api/v1/evaluate",
            json!({"context": {"targetingKey": "user-1"}, "keys": ["banner"]}),
            Some(&token),
        )
        .await;
    assert_eq!(serde_json::to_value(&e).unwrap(), direct.body["flags"][0]);
    assert_eq!(e.reason, "SPLIT");

    let missing = client.evaluate("nope", &Context::new()).await.unwrap();
    assert_eq!(missing.reason, "ERROR");
    assert_eq!(missing.error_code.as_deref(), Some("FLAG_NOT_FOUND"));
    match client.evaluate_flag("nope").await {
        Err(Error::Api {
            status: 404, code, ..
        }) => assert_eq!(code, "FLAG_NOT_FOUND"),
        other => panic!("expected a 404, got {other:?}"),
    }
    match client.evaluate_flag("banner").await {
        Err(Error::Invalid(_)) => {}
        other => panic!("a string flag is not a boolean: {other:?}"),
    }
    let all = client.evaluate_all(&Context::new()).await.unwrap();
    assert_eq!(all.len(), sample_flags().len());

    let bad = Client::new(&fb.base, "fbk_nope_nope").unwrap();
    match bad.evaluate_flag("off").await {
        Err(Error::Api { status: 401, .. }) => {}
        other => panic!("expected a 401, got {other:?}"),
    }
    drop(admin);
}

#[tokio::test]
async fn remote_client_refuses_bad_arguments() {
    assert!(matches!(
        Client::new("localhost:8080", "t"),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        Client::new("http://localhost:8080", "a b"),
        Err(Error::Invalid(_))
    ));
    let c = Client::new("http://127.0.0.1:9/", "t").unwrap();
    assert!(matches!(
        c.evaluate_flag("../admin").await,
        Err(Error::Invalid(_))
    ));
}

/// A bootstrap file as `save_bootstrap` writes it, for a server that is not
/// there: the client starts, serves those definitions and says it is
/// disconnected.
#[tokio::test]
async fn local_client_starts_offline_from_a_bootstrap_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    // Server-kept fields (as the API shows flags) are accepted and ignored.
    let mut flags = sample_flags();
    for f in &mut flags {
        f["version"] = json!(3);
        f["updated_by"] = json!("someone");
    }
    std::fs::write(&file, json!({"seq": 9, "flags": flags}).to_string()).unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);

    let mut options = LocalOptions::new(&url, "fbk_x_y").bootstrap(&file);
    options.init_timeout = Duration::from_secs(5);
    let sdk = LocalClient::init(options).await.unwrap();
    assert_ne!(sdk.state(), ConnectionState::Connected);
    assert_eq!(sdk.seq(), 9);
    let pro = Context::with_targeting_key("u").with("plan", "pro");
    assert!(sdk.is_enabled("new-checkout-ui", &pro));
    assert!(!sdk.is_enabled("new-checkout-ui", &Context::with_targeting_key("u")));
    assert!(sdk.is_enabled("rollout", &Context::with_targeting_key("vip")));
    assert_eq!(sdk.value("missing", &pro), Value::Null);

    // What it saves reads back the same.
    let copy = dir.path().join("copy.json");
    sdk.save_bootstrap(&copy).await.unwrap();
    let saved: Value = serde_json::from_slice(&std::fs::read(&copy).unwrap()).unwrap();
    assert_eq!(saved["seq"], 9);
    assert_eq!(saved["flags"].as_array().unwrap().len(), flags.len());

    // Without the file there is nothing to serve: init fails.
    let mut options = LocalOptions::new(&url, "fbk_x_y").bootstrap(dir.path().join("none.json"));
    options.init_timeout = Duration::from_secs(5);
    assert!(LocalClient::init(options).await.is_err());
}

#[tokio::test]
async fn remote_client_records_metric_events_the_server_counts() {
    let (fb, admin, token) = seeded(&sample_flags()).await;
    let client = Client::new(&fb.base, &token).unwrap();

    for _ in 0..3 {
        client
            .record_event("rollout", "true", "error", None)
            .await
            .unwrap();
    }
    client
        .record_event("rollout", "false", "latency_ms", Some(12.5))
        .await
        .unwrap();
    match client.record_event("nope", "true", "error", None).await {
        Err(Error::Api { status: 404, .. }) => {}
        other => panic!("an unknown flag is a 404: {other:?}"),
    }
    match client.record_event("rollout", "true", "", None).await {
        Err(Error::Api { status: 400, .. }) => {}
        other => panic!("an empty event type is a 400: {other:?}"),
    }

    let m = fb
        .get("/api/v1/flags/rollout/metrics?window=1h", Some(&admin))
        .await;
    assert_eq!(m.status, 200, "{}", m.body);
    assert_eq!(
        m.body["variants"]["true"]["error"]["count"], 3,
        "{}",
        m.body
    );
    assert_eq!(m.body["variants"]["false"]["latency_ms"]["count"], 1);
    assert_eq!(m.body["variants"]["false"]["latency_ms"]["sum"], 12.5);
}
