//! Function triggers end to end: a bus subject (request and reply), a cron
//! schedule, persistence across a restart, and a trigger that would run on
//! its own output being stopped.

use std::time::Duration;

use serde_json::{json, Value};

use crate::bus::bus_addr;
use crate::functions::{deployed, echo, world, World};

const PATIENCE: Duration = Duration::from_secs(20);

async fn trigger(w: &World, function: &str, body: Value) -> String {
    let r =
        w.fb.post(
            &format!("/api/v1/functions/{function}/triggers"),
            body,
            Some(&w.dev),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

/// Polls `path` (as the developer) until `done` holds for its body.
async fn until(
    fb: &crate::harness::Flagbase,
    token: &str,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let r = fb.get(path, Some(token)).await;
        if done(&r.body) {
            return r.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting on {path}: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn nats(w: &World) -> async_nats::Client {
    async_nats::ConnectOptions::with_token(w.dev.clone())
        .connect(format!("nats://{}", bus_addr(&w.fb)))
        .await
        .expect("connect to the bus")
}

#[tokio::test]
async fn function_triggers_run_on_a_subject_and_answer_requests() {
    let w = world().await;
    deployed(&w, "echo", echo()).await;
    let id = trigger(&w, "echo", json!({"subject": "orders.created"})).await;
    let nc = nats(&w).await;
    let reply = tokio::time::timeout(PATIENCE, nc.request("orders.created", "order 42".into()))
        .await
        .expect("a reply in time")
        .expect("a reply");
    assert_eq!(&reply.payload[..], b"order 42");
    let log =
        w.fb.get("/api/v1/functions/echo/invocations", Some(&w.dev))
            .await;
    assert_eq!(
        log.body["invocations"][0]["caller"],
        format!("trigger:{id}")
    );
    let listed =
        w.fb.get("/api/v1/functions/echo/triggers", Some(&w.user))
            .await;
    assert_eq!(listed.body["triggers"][0]["subject"], "orders.created");
    w.fb.post(
        "/api/v1/functions/echo/triggers",
        json!({"subject": "a", "schedule": "* * * * * *"}),
        Some(&w.dev),
    )
    .await
    .error(400);
    w.fb.post(
        "/api/v1/functions/echo/triggers",
        json!({"schedule": "every tuesday"}),
        Some(&w.dev),
    )
    .await
    .error(400);
    w.fb.post(
        "/api/v1/functions/echo/triggers",
        json!({"subject": "x"}),
        Some(&w.user),
    )
    .await
    .error(403);
    assert_eq!(
        w.fb.delete(
            &format!("/api/v1/functions/echo/triggers/{id}"),
            Some(&w.dev)
        )
        .await
        .status,
        204
    );
}

#[tokio::test]
async fn function_triggers_that_loop_on_their_own_output_are_stopped() {
    let w = world().await;
    deployed(&w, "echo", echo()).await;
    let id = trigger(&w, "echo", json!({"subject": "loop.x"})).await;
    let nc = nats(&w).await;
    // The reply goes to the trigger's own subject: its output would run it again.
    nc.publish_with_reply("loop.x", "loop.x", "again".into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let body = until(&w.fb, &w.dev, "/api/v1/functions/echo/triggers", |b| {
        b["triggers"][0]["stopped"].is_string()
    })
    .await;
    assert!(
        body["triggers"][0]["stopped"]
            .as_str()
            .unwrap()
            .contains("loop"),
        "{body}"
    );
    assert_eq!(body["triggers"][0]["id"], id);
    // One run, not an endless chain.
    let log =
        w.fb.get("/api/v1/functions/echo/invocations", Some(&w.dev))
            .await;
    assert_eq!(
        log.body["invocations"].as_array().unwrap().len(),
        1,
        "{}",
        log.body
    );
}

#[tokio::test]
async fn function_triggers_on_a_schedule_survive_a_restart() {
    let w = world().await;
    deployed(&w, "echo", echo()).await;
    let id = trigger(&w, "echo", json!({"schedule": "* * * * * *"})).await;
    let caller = format!("trigger:{id}");
    until(&w.fb, &w.dev, "/api/v1/functions/echo/invocations", |b| {
        b["invocations"][0]["caller"] == caller.as_str()
    })
    .await;
    let fb = w.fb.restart();
    let dev = fb.login("dev@example.com").await;
    let listed = fb.get("/api/v1/functions/echo/triggers", Some(&dev)).await;
    assert_eq!(listed.body["triggers"][0]["schedule"], "* * * * * *");
    until(&fb, &dev, "/api/v1/functions/echo/invocations", |b| {
        b["invocations"][0]["caller"] == caller.as_str()
    })
    .await;
}
