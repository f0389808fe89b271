//! Store, snapshot and caches agree: after clients hang up mid-request and
//! under concurrent writes.
//!
//! A change that was committed must reach the live snapshot even when its
//! client hung up, or the store and what evaluation serves disagree until a
//! restart (`hangup.rs` makes the hang-ups land mid-change).

use serde_json::{json, Value};

use crate::hangup::{hang_up_while_writes_wait, RawRequest};
use crate::harness::{Flagbase, Options};

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
    let fb = Flagbase::start_with(Options::default().set("database.busy_timeout", "60s")).await;
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

    let mut requests: Vec<RawRequest> = (0..60)
        .map(|i| {
            let body = flag(&format!("hung-up-{i}")).to_string();
            ("POST", "/api/v1/flags".to_string(), body)
        })
        .collect();
    for i in 0..20 {
        let path = format!("/api/v1/flags/existing-{i}/toggle");
        requests.push(("PATCH", path, String::new()));
    }
    for i in 20..40 {
        requests.push((
            "DELETE",
            format!("/api/v1/flags/existing-{i}"),
            String::new(),
        ));
    }
    hang_up_while_writes_wait(&fb, &requests, &admin).await;

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
