//! Resolving an anomaly is a person's change like any other: audited with
//! its actor, published on the bus with the same change number, refused to
//! roles below developer, recorded once, and carried through to the end
//! when the client hangs up while the write waits.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::bus::bus_addr;
use crate::hangup::{hang_up_while_writes_wait, RawRequest};
use crate::harness::{Flagbase, Options};

/// A safety net against a hung test, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

fn fast() -> Options {
    Options::default()
        .set("metrics.bucket", "1s")
        .set("metrics.flush_interval", "100ms")
        .set("anomaly.interval", "200ms")
        .set("anomaly.window", "3s")
        .set("database.busy_timeout", "60s")
}

/// Creates `key`, sends 11 errors for it and waits until the detector has
/// opened its anomaly; returns the anomaly's id.
async fn open_anomaly(fb: &Flagbase, admin: &str, key: &str) -> String {
    let r = fb
        .post(
            "/api/v1/flags",
            json!({"key": key, "enabled": true}),
            Some(admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let nc = async_nats::connect(format!("nats://{}", bus_addr(fb)))
        .await
        .unwrap();
    let mut disabled = nc.subscribe("flagbase.flag.disabled").await.unwrap();
    nc.flush().await.unwrap();
    let batch: Vec<Value> = (0..11)
        .map(|_| json!({"flag_key": key, "variant": "true", "event_type": "error"}))
        .collect();
    let r = fb
        .post("/api/v1/events", Value::Array(batch), Some(admin))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    tokio::time::timeout(PATIENCE, disabled.next())
        .await
        .expect("the detector disables the flag")
        .unwrap();
    let r = fb
        .get(&format!("/api/v1/anomalies?flag={key}"), Some(admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["anomalies"][0]["id"].as_str().unwrap().to_string()
}

async fn audit_of(fb: &Flagbase, admin: &str, id: &str) -> Vec<Value> {
    let r = fb
        .get(&format!("/api/v1/audit?target=anomaly:{id}"), Some(admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["records"].as_array().unwrap().clone()
}

#[tokio::test]
async fn resolving_an_anomaly_is_audited_published_and_recorded_once() {
    let fb = Flagbase::start_with(fast()).await;
    let admin = fb.setup_admin("admin@example.com").await;
    let (_, user) = fb.user("viewer@example.com", "user", Some(&admin)).await;
    let id = open_anomaly(&fb, &admin, "checkout").await;
    let admin_id = fb.get("/auth/me", Some(&admin)).await.body["id"].clone();

    let nc = async_nats::connect(format!("nats://{}", bus_addr(&fb)))
        .await
        .unwrap();
    let mut resolved = nc.subscribe("flagbase.anomaly.resolved").await.unwrap();
    nc.flush().await.unwrap();

    let path = format!("/api/v1/anomalies/{id}/resolve");
    let r = fb.post(&path, json!({}), Some(&user)).await;
    assert_eq!(r.status, 403, "a user may read anomalies, not resolve them");
    assert_eq!(r.body["code"], "forbidden", "{}", r.body);
    assert!(audit_of(&fb, &admin, &id).await.is_empty());

    let r = fb
        .post(
            "/api/v1/anomalies/no-such-anomaly/resolve",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);

    let r = fb.post(&path, json!({}), Some(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["resolved_by"], admin_id);

    let records = audit_of(&fb, &admin, &id).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["action"], "anomaly.resolve");
    assert_eq!(record["actor"], admin_id);
    assert_eq!(record["after"]["flag_key"], "checkout");
    assert_eq!(record["after"]["resolved"], true);
    assert_eq!(record["before"]["resolved"], false);

    let msg = tokio::time::timeout(PATIENCE, resolved.next())
        .await
        .expect("flagbase.anomaly.resolved on the bus")
        .unwrap();
    let event: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["flag_key"], "checkout");
    assert_eq!(event["actor"], admin_id);
    assert_eq!(event["seq"], record["seq"], "{event}");

    // Resolving again changes nothing and records nothing.
    let again = fb.post(&path, json!({}), Some(&admin)).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["resolved_at"], r.body["resolved_at"]);
    assert_eq!(audit_of(&fb, &admin, &id).await.len(), 1);
}

#[tokio::test]
async fn regression_a_resolve_whose_client_hangs_up_is_still_audited() {
    let fb = Flagbase::start_with(fast()).await;
    let admin = fb.setup_admin("admin@example.com").await;
    let id = open_anomaly(&fb, &admin, "search").await;
    let nc = async_nats::connect(format!("nats://{}", bus_addr(&fb)))
        .await
        .unwrap();
    let mut resolved = nc.subscribe("flagbase.anomaly.resolved").await.unwrap();
    nc.flush().await.unwrap();

    let requests: Vec<RawRequest> = vec![(
        "POST",
        format!("/api/v1/anomalies/{id}/resolve"),
        "{}".to_string(),
    )];
    hang_up_while_writes_wait(&fb, &requests, &admin).await;

    // Writes are serialised in arrival order: once a later change has
    // committed, the abandoned resolve has finished too.
    let r = fb
        .post("/api/v1/flags", json!({"key": "sentinel"}), Some(&admin))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let records = audit_of(&fb, &admin, &id).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let r = fb
        .get("/api/v1/anomalies?flag=search&resolved=true", Some(&admin))
        .await;
    assert_eq!(
        r.body["anomalies"].as_array().unwrap().len(),
        1,
        "{}",
        r.body
    );
    // The follow-up after the commit ran too: the event left on the bus.
    let msg = tokio::time::timeout(PATIENCE, resolved.next())
        .await
        .expect("flagbase.anomaly.resolved after the client hung up")
        .unwrap();
    let event: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(event["seq"], records[0]["seq"], "{event}");
}
