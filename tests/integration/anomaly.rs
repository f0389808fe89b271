//! Metric events and the anomaly detector, end to end against the running
//! binary with short intervals: ingestion and its validation, exposure
//! counting, the default guard (11 errors disable, 10 do not), the
//! comparison (equal rates left alone, a worse variant disabled), the
//! window, guards with `alert`, one anomaly per episode, retention, the
//! shutdown flush, and the API under load while the worker runs.
//!
//! Nothing here sleeps: the detector logs a debug line per tick, so "the
//! detector looked and did nothing" is awaited as two ticks after the
//! events were accepted (the first may have started before them; the
//! second flushed them before looking).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::bus::bus_addr;
use crate::harness::{Flagbase, Options};
use crate::stream::Sse;

/// A safety net against a hung test, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

fn fast() -> Options {
    Options::default()
        .set("metrics.bucket", "1s")
        .set("metrics.flush_interval", "100ms")
        .set("anomaly.interval", "200ms")
        .set("anomaly.window", "3s")
}

async fn start(options: Options) -> (Flagbase, String) {
    let fb = Flagbase::start_with(options).await;
    let admin = fb.setup_admin("admin@example.com").await;
    (fb, admin)
}

async fn create_flag(fb: &Flagbase, admin: &str, key: &str) {
    let r = fb
        .post(
            "/api/v1/flags",
            json!({"key": key, "enabled": true, "rollout_percentage": 50}),
            Some(admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

fn events(key: &str, variant: &str, event_type: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|_| json!({"flag_key": key, "variant": variant, "event_type": event_type}))
        .collect()
}

async fn send(fb: &Flagbase, token: &str, batch: Vec<Value>) {
    let n = batch.len();
    let r = fb
        .post("/api/v1/events", Value::Array(batch), Some(token))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["accepted"], n);
}

/// Waits for `n` detector ticks that start after this call.
fn ticks(fb: &Flagbase, n: usize) {
    let from = fb.stderr.mark();
    fb.stderr.wait_for_count("detector ticks", from, n, |l| {
        l.contains("\"detector tick\"")
    });
}

async fn enabled(fb: &Flagbase, admin: &str, key: &str) -> bool {
    let r = fb.get(&format!("/api/v1/flags/{key}"), Some(admin)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["enabled"].as_bool().unwrap()
}

async fn anomalies(fb: &Flagbase, admin: &str, query: &str) -> Vec<Value> {
    let r = fb
        .get(&format!("/api/v1/anomalies?{query}"), Some(admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["anomalies"].as_array().unwrap().clone()
}

async fn next_disabled(sub: &mut async_nats::Subscriber) -> Value {
    let msg = tokio::time::timeout(PATIENCE, sub.next())
        .await
        .expect("flagbase.flag.disabled within the patience")
        .expect("subscription open");
    assert_eq!(msg.subject.as_str(), "flagbase.flag.disabled");
    serde_json::from_slice(&msg.payload).unwrap()
}

async fn subscribe(fb: &Flagbase) -> async_nats::Subscriber {
    let nc = async_nats::connect(format!("nats://{}", bus_addr(fb)))
        .await
        .expect("connect to the bus");
    let sub = nc.subscribe("flagbase.flag.disabled").await.unwrap();
    nc.flush().await.unwrap();
    sub
}

#[tokio::test]
async fn eleven_errors_disable_the_flag_with_a_decision_on_the_bus_in_the_audit_log_and_anomalies()
{
    let (fb, admin) = start(fast()).await;
    let mut sub = subscribe(&fb).await;
    create_flag(&fb, &admin, "ten").await;
    create_flag(&fb, &admin, "eleven").await;
    // An SSE client watching the definitions sees the detector's change
    // like any other.
    let mut stream = Sse::open(&fb, "/api/v1/stream", Some(&admin), None).await;
    assert_eq!(
        stream.next().await.unwrap().event.as_deref(),
        Some("snapshot")
    );

    send(&fb, &admin, events("ten", "true", "error", 10)).await;
    ticks(&fb, 2);
    assert!(
        enabled(&fb, &admin, "ten").await,
        "10 errors are within the guard"
    );
    assert!(anomalies(&fb, &admin, "flag=ten").await.is_empty());

    send(&fb, &admin, events("eleven", "true", "error", 11)).await;
    let msg = next_disabled(&mut sub).await;
    assert_eq!(msg["key"], "eleven");
    assert_eq!(msg["actor"], "detector");
    assert_eq!(msg["flag"]["enabled"], false);
    let decision = &msg["decision"];
    assert_eq!(decision["flag"], "eleven");
    assert_eq!(decision["test"], "count");
    assert_eq!(decision["metric"], "error");
    assert_eq!(decision["statistic"]["value"], 11);
    assert_eq!(decision["threshold"], 10);
    assert_eq!(decision["action"], "disable");
    assert!(decision["window"]["from"].is_string() && decision["at"].is_string());

    assert!(!enabled(&fb, &admin, "eleven").await);
    let seen = stream.next().await.expect("the stream stays open");
    assert_eq!(seen.event.as_deref(), Some("flag_updated"));
    assert_eq!(seen.id, msg["seq"].as_u64());
    assert_eq!(seen.json()["flag"]["key"], "eleven");
    assert_eq!(seen.json()["flag"]["enabled"], false);
    let audit = fb
        .get("/api/v1/audit?target=flag:eleven", Some(&admin))
        .await;
    let newest = &audit.body["records"][0];
    assert_eq!(newest["actor"], "detector");
    assert_eq!(newest["action"], "flag.disable");
    assert_eq!(newest["seq"], msg["seq"]);
    assert_eq!(&newest["after"]["decision"], decision);
    assert_eq!(newest["after"]["spec"]["enabled"], false);

    let open = anomalies(&fb, &admin, "flag=eleven&resolved=false").await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(&open[0]["decision"], decision);
    assert_eq!(open[0]["seq"], msg["seq"]);

    // One anomaly per episode: more errors and more ticks add none.
    send(&fb, &admin, events("eleven", "true", "error", 20)).await;
    ticks(&fb, 2);
    assert_eq!(anomalies(&fb, &admin, "flag=eleven").await.len(), 1);

    // Re-enabling is a person's decision, audited as theirs; once the
    // episode is resolved, its errors are not counted again.
    let id = open[0]["id"].as_str().unwrap();
    let r = fb
        .post(
            &format!("/api/v1/anomalies/{id}/resolve"),
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["resolved_at"].is_string());
    let r = fb
        .send(
            fb.http
                .patch(fb.url("/api/v1/flags/eleven/toggle"))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    ticks(&fb, 2);
    assert!(enabled(&fb, &admin, "eleven").await);
    assert!(anomalies(&fb, &admin, "resolved=false").await.is_empty());
}

#[tokio::test]
async fn an_equal_rate_variant_is_left_alone_and_a_clearly_worse_one_is_disabled() {
    let (fb, admin) = start(fast()).await;
    let mut sub = subscribe(&fb).await;
    create_flag(&fb, &admin, "same").await;
    create_flag(&fb, &admin, "worse").await;
    // 50 errors per arm is far above the count guard: only the comparison
    // can leave this flag alone.
    send(&fb, &admin, events("same", "false", "exposure", 1000)).await;
    send(&fb, &admin, events("same", "true", "exposure", 1000)).await;
    let mut batch = events("same", "false", "error", 50);
    batch.extend(events("same", "true", "error", 50));
    send(&fb, &admin, batch).await;
    send(&fb, &admin, events("worse", "false", "exposure", 1000)).await;
    send(&fb, &admin, events("worse", "true", "exposure", 1000)).await;
    let mut batch = events("worse", "false", "error", 20);
    batch.extend(events("worse", "true", "error", 80));
    send(&fb, &admin, batch).await;

    let msg = next_disabled(&mut sub).await;
    assert_eq!(msg["key"], "worse");
    let d = &msg["decision"];
    assert_eq!(d["test"], "mixture_sprt");
    assert_eq!(d["variant"], "true");
    assert_eq!(d["arms"]["control"]["variant"], "false");
    assert_eq!(d["arms"]["control"]["errors"], 20);
    assert_eq!(d["arms"]["treatment"]["errors"], 80);
    assert!(d["statistic"]["value"].as_f64().unwrap() >= d["threshold"].as_f64().unwrap());
    ticks(&fb, 2);
    assert!(enabled(&fb, &admin, "same").await);
    assert!(anomalies(&fb, &admin, "flag=same").await.is_empty());
}

#[tokio::test]
async fn events_outside_the_window_are_ignored() {
    let (fb, admin) = start(fast()).await;
    create_flag(&fb, &admin, "late").await;
    let created = chrono::Utc::now().timestamp_millis();
    // Let the flag age past the 3 s window (and a bucket), tick by tick.
    let deadline = Instant::now() + PATIENCE;
    while chrono::Utc::now().timestamp_millis() < created + 5_000 {
        assert!(Instant::now() < deadline);
        ticks(&fb, 1);
    }
    // 20 errors from a second after the flag was created: after the
    // rollout started, but outside the window.
    let old: Vec<Value> = (0..20)
        .map(|_| json!({"flag_key": "late", "variant": "true", "event_type": "error", "timestamp": created + 1_000}))
        .collect();
    send(&fb, &admin, old).await;
    ticks(&fb, 2);
    assert!(enabled(&fb, &admin, "late").await);
    // The same errors now are inside it.
    let mut sub = subscribe(&fb).await;
    send(&fb, &admin, events("late", "true", "error", 11)).await;
    assert_eq!(next_disabled(&mut sub).await["key"], "late");
}

#[tokio::test]
async fn a_guard_with_action_alert_opens_one_anomaly_and_leaves_the_flag_on() {
    let (fb, admin) = start(fast()).await;
    create_flag(&fb, &admin, "watched").await;
    let r = fb
        .put(
            "/api/v1/flags/watched/guard",
            json!({"max_count": 3, "action": "alert"}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["guard"]["max_count"], 3);
    assert_eq!(r.body["guard"]["min_sample"], 100, "defaults fill the rest");
    let bad = fb
        .put(
            "/api/v1/flags/watched/guard",
            json!({"action": "explode"}),
            Some(&admin),
        )
        .await;
    assert_eq!(bad.error(400), "invalid");
    assert_eq!(bad.body["field"], "action", "{}", bad.body);
    let missing = fb
        .put("/api/v1/flags/nope/guard", json!({}), Some(&admin))
        .await;
    missing.error(404);

    send(&fb, &admin, events("watched", "true", "error", 4)).await;
    let deadline = Instant::now() + PATIENCE;
    let open = loop {
        ticks(&fb, 1);
        let open = anomalies(&fb, &admin, "flag=watched&resolved=false").await;
        if !open.is_empty() {
            break open;
        }
        assert!(Instant::now() < deadline, "no anomaly opened");
    };
    assert_eq!(open[0]["action"], "alert");
    assert_eq!(open[0]["decision"]["threshold"], 3);
    ticks(&fb, 2);
    assert!(enabled(&fb, &admin, "watched").await);
    assert_eq!(anomalies(&fb, &admin, "flag=watched").await.len(), 1);
}

#[tokio::test]
async fn events_are_validated_naming_the_item_and_field() {
    let (fb, admin) = start(fast().set("anomaly.enabled", "false")).await;
    create_flag(&fb, &admin, "f").await;
    let one = json!({"flag_key": "f", "variant": "true", "event_type": "conversion", "value": 2.5});
    let r = fb.post("/api/v1/metrics", one.clone(), Some(&admin)).await;
    assert_eq!(r.status, 202, "{}", r.body);

    for (body, field) in [
        (
            json!([one, {"flag_key": "f", "variant": "true"}]),
            "[1].event_type",
        ),
        (
            json!([{"flag_key": "f", "variant": 3, "event_type": "e"}]),
            "[0].variant",
        ),
        (
            json!({"flag_key": "f", "variant": "v", "event_type": "e", "value": "x"}),
            "value",
        ),
        (
            json!({"flag_key": "f", "variant": "v", "event_type": "e", "timestamp": "yesterday"}),
            "timestamp",
        ),
        (
            json!({"flag_key": "f", "variant": "v", "event_type": "e", "colour": 1}),
            "colour",
        ),
        (
            json!({"flag_key": "bad key", "variant": "v", "event_type": "e"}),
            "flag_key",
        ),
        (json!([]), "body"),
        (json!(7), "body"),
    ] {
        let r = fb.post("/api/v1/events", body.clone(), Some(&admin)).await;
        assert_eq!(r.error(400), "invalid", "{body}");
        assert_eq!(r.body["field"], field, "{body} -> {}", r.body);
    }
    let too_many = Value::Array(events("f", "v", "e", 1001));
    let r = fb.post("/api/v1/events", too_many, Some(&admin)).await;
    assert_eq!(r.body["field"], "body", "{}", r.body);
    let r = fb
        .post(
            "/api/v1/events",
            json!([one, {"flag_key": "ghost", "variant": "v", "event_type": "e"}]),
            Some(&admin),
        )
        .await;
    assert_eq!(r.error(404), "not_found");
    assert!(
        r.body["error"].as_str().unwrap().contains("[1]"),
        "{}",
        r.body
    );
    let r = fb.post("/api/v1/events", one.clone(), None).await;
    r.error(401);

    // Nothing of a refused batch was counted; the accepted event was.
    let m = fb
        .get("/api/v1/flags/f/metrics?window=1h", Some(&admin))
        .await;
    assert_eq!(m.status, 200, "{}", m.body);
    assert_eq!(m.body["variants"]["true"]["conversion"]["count"], 1);
    assert_eq!(m.body["variants"]["true"]["conversion"]["sum"], 2.5);
    assert_eq!(
        m.body["variants"].as_object().unwrap().len(),
        1,
        "{}",
        m.body
    );
    fb.get("/api/v1/flags/f/metrics?window=8d", Some(&admin))
        .await
        .error(400);
    fb.get("/api/v1/flags/ghost/metrics", Some(&admin))
        .await
        .error(404);
}

#[tokio::test]
async fn evaluations_count_exposures_per_variant() {
    let (fb, admin) = start(fast().set("anomaly.enabled", "false")).await;
    let r = fb
        .post(
            "/api/v1/flags",
            json!({"key": "shown", "enabled": true, "rollout_percentage": 100}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    for _ in 0..3 {
        let r = fb.get("/api/v1/flags/shown/evaluate", Some(&admin)).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = fb
        .post(
            "/ofrep/v1/evaluate/flags/shown",
            json!({"context": {"targetingKey": "u"}}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = fb
        .post(
            "/ofrep/v1/evaluate/flags",
            json!({"context": {"targetingKey": "u"}}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = fb
        .post("/api/v1/evaluate", json!({"context": {}}), Some(&admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = fb
        .get("/api/v1/flags/shown/metrics?window=1h", Some(&admin))
        .await;
    // A boolean flag rolled out to everyone serves `true`.
    assert_eq!(
        m.body["variants"]["true"]["exposure"]["count"], 6,
        "{}",
        m.body
    );
}

#[tokio::test]
async fn retention_deletes_old_buckets() {
    let (fb, admin) = start(
        fast()
            .set("metrics.retention", "4s")
            .set("anomaly.enabled", "false"),
    )
    .await;
    create_flag(&fb, &admin, "brief").await;
    send(&fb, &admin, events("brief", "true", "conversion", 5)).await;
    let m = fb
        .get("/api/v1/flags/brief/metrics?window=4s", Some(&admin))
        .await;
    assert_eq!(
        m.body["variants"]["true"]["conversion"]["count"], 5,
        "{}",
        m.body
    );
    let db = fb.dir().join("flagbase.db");
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let rows = || -> i64 {
        conn.query_row("SELECT COUNT(*) FROM metric_buckets", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(rows(), 1);
    // The flusher prunes every second here and says when it deleted some.
    fb.stderr.wait_for("old buckets deleted", |l| {
        l.contains("old metric buckets deleted")
    });
    assert_eq!(rows(), 0);
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_window_loses_no_recorded_event() {
    // Nothing flushes on its own here: only the shutdown flush can save them.
    let options = fast()
        .set("metrics.flush_interval", "1h")
        .set("anomaly.enabled", "false");
    let (fb, admin) = start(options).await;
    create_flag(&fb, &admin, "kept").await;
    send(&fb, &admin, events("kept", "true", "error", 7)).await;
    let fb = fb.restart();
    let admin = fb.login("admin@example.com").await;
    let m = fb
        .get("/api/v1/flags/kept/metrics?window=1h", Some(&admin))
        .await;
    assert_eq!(
        m.body["variants"]["true"]["error"]["count"], 7,
        "{}",
        m.body
    );
}

#[tokio::test]
async fn the_api_stays_responsive_while_the_worker_runs_under_load() {
    let (fb, admin) = start(fast()).await;
    for i in 0..100 {
        create_flag(&fb, &admin, &format!("load-{i}")).await;
    }
    let from = fb.stderr.mark();
    let load = async {
        for round in 0..10 {
            let batch: Vec<Value> = (0..1000)
                .map(|i| {
                    json!({"flag_key": format!("load-{}", (i + round) % 100), "variant": if i % 2 == 0 { "true" } else { "false" }, "event_type": "exposure"})
                })
                .collect();
            send(&fb, &admin, batch).await;
        }
    };
    let reads = async {
        for _ in 0..50 {
            let r = fb.get("/api/v1/flags/load-1/evaluate", Some(&admin)).await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(fb.get("/ready", None).await.status, 200);
        }
    };
    tokio::join!(load, reads);
    // The worker looked at every flag while that went on, and after.
    fb.stderr
        .wait_for_count("detector ticks over 100 flags", from, 3, |l| {
            l.contains("\"detector tick\"") && l.contains("\"flags\":100")
        });
    assert_eq!(fb.get("/health", None).await.status, 200);
}
