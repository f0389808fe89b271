//! `GET /api/v1/flags/{key}/metrics/series`: a flag's counts per step over a
//! window, for the console's charts over time. Events still in memory are
//! included; bad windows and steps are field errors.

use serde_json::{json, Value};

use crate::harness::{Flagbase, Options};

#[tokio::test]
async fn the_series_counts_events_per_step_and_validates_its_parameters() {
    let fb = Flagbase::start_with(Options::default().set("metrics.bucket", "1s")).await;
    let admin = fb.setup_admin("admin@example.com").await;
    let r = fb
        .post("/api/v1/flags", json!({"key": "checkout"}), Some(&admin))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let mut batch: Vec<Value> = (0..3)
        .map(|_| json!({"flag_key": "checkout", "variant": "true", "event_type": "error"}))
        .collect();
    batch.push(json!({"flag_key": "checkout", "variant": "false", "event_type": "conversion"}));
    let r = fb
        .post("/api/v1/events", Value::Array(batch), Some(&admin))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);

    let r = fb
        .get(
            "/api/v1/flags/checkout/metrics/series?window=1m&step=10s",
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["step"], "10s");
    let points = r.body["points"].as_array().unwrap();
    let total = |variant: &str, event: &str| -> u64 {
        points
            .iter()
            .filter(|p| p["variant"] == variant && p["event_type"] == event)
            .map(|p| p["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(total("true", "error"), 3, "{points:?}");
    assert_eq!(total("false", "conversion"), 1, "{points:?}");
    let from = r.body["from"].as_str().unwrap().to_string();
    let from = chrono::DateTime::parse_from_rfc3339(&from)
        .unwrap()
        .timestamp();
    for p in points {
        let t = p["t"].as_i64().unwrap();
        assert!(t >= from && (t - from) % 10 == 0, "{p} starts a step");
    }

    for (query, field) in [
        ("window=1m&step=0s", "step"),
        ("window=1m&step=2m", "step"),
        ("window=1h&step=1s", "step"),
        ("window=soon", "window"),
        ("window=1m&step=x", "step"),
    ] {
        let r = fb
            .get(
                &format!("/api/v1/flags/checkout/metrics/series?{query}"),
                Some(&admin),
            )
            .await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert_eq!(r.body["field"], field, "{query}: {}", r.body);
    }
    let r = fb
        .get("/api/v1/flags/nope/metrics/series", Some(&admin))
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = fb.get("/api/v1/flags/checkout/metrics/series", None).await;
    assert_eq!(r.status, 401, "{}", r.body);
}
