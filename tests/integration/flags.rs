//! The flags API end to end: both accepted shapes, validation, roles,
//! pagination, versions with If-Match, evaluation and the audit trail.

use serde_json::{json, Value};

use crate::harness::{Flagbase, Resp};

const CHECKOUT_UI: &str = r#"{"key":"new-checkout-ui","name":"New Checkout UI","enabled":true,"default_value":false,
 "rules":[{"attribute":"role","operator":"equals","value":"developer","variant":true,"priority":0}]}"#;
const CHECKOUT_FLOW: &str = r#"{"key":"new-checkout-flow","description":"Redesigned checkout","enabled":true,
 "rollout_percentage":25,"targeted_users":["user-1","user-3"]}"#;

/// FNV-1a 32, written out here so the test does not trust the engine.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

struct World {
    fb: Flagbase,
    admin: String,
    dev: String,
    dev_id: String,
    user: String,
    user_id: String,
}

async fn world() -> World {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let (dev_id, dev) = fb.user("dev@example.com", "developer", Some(&admin)).await;
    let (user_id, user) = fb.user("user@example.com", "user", None).await;
    World {
        fb,
        admin,
        dev,
        dev_id,
        user,
        user_id,
    }
}

async fn create(w: &World, body: &str) -> Resp {
    let v: Value = serde_json::from_str(body).unwrap();
    w.fb.post("/api/v1/flags", v, Some(&w.dev)).await
}

#[tokio::test]
async fn both_documented_shapes_create_working_flags() {
    let w = world().await;
    let r = create(&w, CHECKOUT_UI).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        (r.body["key"].as_str(), r.body["version"].as_i64()),
        (Some("new-checkout-ui"), Some(1))
    );
    assert_eq!(r.body["updated_by"].as_str(), Some(w.dev_id.as_str()));
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert!(r.body["created_at"].is_string() && r.body["updated_at"].is_string());
    let r = create(&w, CHECKOUT_FLOW).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["rollout_percentage"], 25.0);

    // The developer gets the role rule's variant; everyone else the default.
    let dev =
        w.fb.get("/api/v1/flags/new-checkout-ui/evaluate", Some(&w.dev))
            .await;
    assert_eq!(
        dev.body,
        json!({"key": "new-checkout-ui", "value": true, "variant": null, "reason": "TARGETING_MATCH"})
    );
    let user =
        w.fb.get("/api/v1/flags/new-checkout-ui/evaluate", Some(&w.user))
            .await;
    assert_eq!(
        (user.body["value"].clone(), user.body["reason"].as_str()),
        (json!(false), Some("DEFAULT"))
    );
    // Identity attributes come from the credential, not the query string.
    let sneaky =
        w.fb.get(
            "/api/v1/flags/new-checkout-ui/evaluate?role=developer",
            Some(&w.user),
        )
        .await;
    assert_eq!(sneaky.body["value"], false);

    // The rollout follows FNV-1a of "flag:user id" exactly.
    assert_eq!(fnv1a("new-checkout-flow:user-42"), 4_236_282_073);
    for (token, id) in [(&w.user, &w.user_id), (&w.dev, &w.dev_id)] {
        let r =
            w.fb.get("/api/v1/flags/new-checkout-flow/evaluate", Some(token))
                .await;
        let in_rollout = fnv1a(&format!("new-checkout-flow:{id}")) % 100 < 25;
        assert_eq!(r.body["value"], json!(in_rollout), "{id}: {}", r.body);
        assert_eq!(
            r.body["reason"],
            if in_rollout { "SPLIT" } else { "DEFAULT" }
        );
    }

    // Evaluating many at once, for a supplied context.
    let r =
        w.fb.post(
            "/api/v1/evaluate",
            json!({"context": {"plan": "pro"}, "keys": ["new-checkout-ui", "missing"]}),
            Some(&w.dev),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let flags = r.body["flags"].as_array().unwrap();
    assert_eq!(flags[0]["value"], true);
    assert_eq!(
        (flags[1]["reason"].as_str(), flags[1]["error_code"].as_str()),
        (Some("ERROR"), Some("FLAG_NOT_FOUND"))
    );
    let all =
        w.fb.post("/api/v1/evaluate", json!({}), Some(&w.user))
            .await;
    assert_eq!(all.body["flags"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn invalid_definitions_are_refused_naming_the_field() {
    let w = world().await;
    let cases = [
        (
            json!({"key": "a", "enabled": true, "rules": [
            {"attribute": "x", "operator": "equals", "value": "1", "variant": true},
            {"attribute": "x", "operator": "equals", "value": "1", "variant": true},
            {"attribute": "x", "operator": "eqals", "value": "1", "variant": true}]}),
            "rules[2].operator",
        ),
        (
            json!({"key": "a", "type": "string", "default_value": "x", "variants": [
            {"key": "a", "value": "1", "weight": 50}, {"key": "b", "value": "2", "weight": 40}]}),
            "variants",
        ),
        (json!({"key": "a", "default_value": "yes"}), "default_value"),
        (
            json!({"key": "a", "type": "string", "default_value": "x", "variants": [{"key": "a", "value": "1"}],
            "rules": [{"attribute": "c", "operator": "equals", "value": "1", "variant": "blue"}]}),
            "rules[0].variant",
        ),
        (
            json!({"key": "a", "rules": [{"attribute": "c", "operator": "matches", "value": "(unclosed", "variant": true}]}),
            "rules[0].value",
        ),
        (
            json!({"key": "a", "rollout_percentage": 101}),
            "rollout_percentage",
        ),
        (json!({"key": "not a key!"}), "key"),
        (json!({"key": "a", "rollout_percentge": 5}), "body"),
        (json!({"key": "a", "enabled": "yes"}), "enabled"),
    ];
    for (body, field) in cases {
        let r = w.fb.post("/api/v1/flags", body.clone(), Some(&w.dev)).await;
        assert_eq!(r.error(400), "invalid", "{body}");
        let message = r.body["error"].as_str().unwrap();
        if field == "body" {
            assert!(message.contains("rollout_percentge"), "{message}");
        } else {
            assert!(message.starts_with(field), "{body} -> {message}");
        }
    }
    let r =
        w.fb.send(
            w.fb.http
                .post(w.fb.url("/api/v1/flags"))
                .bearer_auth(&w.dev)
                .json(&json!([1, 2])),
        )
        .await;
    assert_eq!(r.error(400), "invalid");
    assert_eq!(create(&w, CHECKOUT_UI).await.status, 201);
    assert_eq!(create(&w, CHECKOUT_UI).await.error(409), "conflict");
}

#[tokio::test]
async fn roles_decide_who_writes_and_who_reads() {
    let w = world().await;
    assert_eq!(
        w.fb.post("/api/v1/flags", json!({"key": "a"}), None)
            .await
            .error(401),
        "unauthenticated"
    );
    assert_eq!(
        w.fb.post("/api/v1/flags", json!({"key": "a"}), Some(&w.user))
            .await
            .error(403),
        "forbidden"
    );
    assert_eq!(
        w.fb.post("/api/v1/flags", json!({"key": "a"}), Some(&w.admin))
            .await
            .status,
        201
    );
    assert_eq!(w.fb.get("/api/v1/flags/a", Some(&w.user)).await.status, 200);
    assert_eq!(w.fb.get("/api/v1/flags", Some(&w.user)).await.status, 200);
    assert_eq!(
        w.fb.delete("/api/v1/flags/a", Some(&w.user))
            .await
            .error(403),
        "forbidden"
    );
    let toggle =
        w.fb.send(
            w.fb.http
                .patch(w.fb.url("/api/v1/flags/a/toggle"))
                .bearer_auth(&w.user),
        )
        .await;
    assert_eq!(toggle.error(403), "forbidden");
    assert_eq!(
        w.fb.get("/api/v1/flags/a/history", Some(&w.user))
            .await
            .error(403),
        "forbidden"
    );
    assert_eq!(
        w.fb.get("/api/v1/audit", Some(&w.dev)).await.error(403),
        "forbidden"
    );
}

#[tokio::test]
async fn listing_is_ordered_by_key_and_paginated() {
    let w = world().await;
    for key in ["e", "c", "a", "d", "b"] {
        assert_eq!(
            w.fb.post("/api/v1/flags", json!({"key": key}), Some(&w.dev))
                .await
                .status,
            201
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/flags?limit=2&cursor={c}"),
            None => "/api/v1/flags?limit=2".to_string(),
        };
        let r = w.fb.get(&path, Some(&w.user)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        seen.extend(
            r.body["flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["key"].as_str().unwrap().to_string()),
        );
        match r.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    for bad in ["0", "1001", "x"] {
        assert_eq!(
            w.fb.get(&format!("/api/v1/flags?limit={bad}"), Some(&w.user))
                .await
                .error(400),
            "invalid"
        );
    }
}

#[tokio::test]
async fn updates_are_versioned_and_if_match_guards_them() {
    let w = world().await;
    create(&w, CHECKOUT_UI).await;
    let fb = &w.fb;
    let put = |body: Value, version: Option<&'static str>| {
        let mut req = fb
            .http
            .put(fb.url("/api/v1/flags/new-checkout-ui"))
            .bearer_auth(&w.dev)
            .json(&body);
        if let Some(v) = version {
            req = req.header("if-match", v);
        }
        fb.send(req)
    };
    // PUT replaces everything: the rules are gone.
    let r = put(
        json!({"key": "new-checkout-ui", "enabled": true, "default_value": true}),
        Some("\"1\""),
    )
    .await;
    assert_eq!(
        (r.status, r.body["version"].as_i64()),
        (200, Some(2)),
        "{}",
        r.body
    );
    assert!(r.body.get("rules").is_none(), "{}", r.body);
    assert_eq!(
        put(json!({"enabled": false}), Some("1")).await.error(412),
        "precondition_failed"
    );
    assert_eq!(
        put(json!({"key": "renamed"}), None).await.error(400),
        "invalid"
    );
    assert_eq!(
        put(json!({"enabled": true}), Some("one")).await.error(400),
        "invalid"
    );
    // A GET result can be sent straight back.
    let current = fb.get("/api/v1/flags/new-checkout-ui", Some(&w.dev)).await;
    assert_eq!(current.header("etag"), Some("\"2\""));
    assert_eq!(
        put(current.body.clone(), Some("2")).await.body["version"],
        3
    );

    let patch = fb
        .send(
            fb.http
                .patch(fb.url("/api/v1/flags/new-checkout-ui"))
                .bearer_auth(&w.dev)
                .json(&json!({"description": "patched"})),
        )
        .await;
    assert_eq!(
        (
            patch.body["version"].as_i64(),
            patch.body["description"].as_str()
        ),
        (Some(4), Some("patched"))
    );
    assert_eq!(
        patch.body["default_value"], true,
        "PATCH keeps what it does not mention"
    );

    let toggled = fb
        .send(
            fb.http
                .patch(fb.url("/api/v1/flags/new-checkout-ui/toggle"))
                .bearer_auth(&w.dev),
        )
        .await;
    assert_eq!(
        (
            toggled.body["enabled"].as_bool(),
            toggled.body["version"].as_i64()
        ),
        (Some(false), Some(5))
    );
    let eval = fb
        .get("/api/v1/flags/new-checkout-ui/evaluate", Some(&w.user))
        .await;
    assert_eq!(
        (eval.body["value"].clone(), eval.body["reason"].as_str()),
        (json!(false), Some("DISABLED"))
    );

    let stale_delete = fb
        .send(
            fb.http
                .delete(fb.url("/api/v1/flags/new-checkout-ui"))
                .bearer_auth(&w.dev)
                .header("if-match", "4"),
        )
        .await;
    assert_eq!(stale_delete.error(412), "precondition_failed");
    assert_eq!(
        fb.delete("/api/v1/flags/new-checkout-ui", Some(&w.dev))
            .await
            .status,
        204
    );
    assert_eq!(
        fb.get("/api/v1/flags/new-checkout-ui", Some(&w.dev))
            .await
            .error(404),
        "not_found"
    );
    let gone = fb
        .get("/api/v1/flags/new-checkout-ui/evaluate", Some(&w.user))
        .await;
    assert_eq!(gone.error(404), "FLAG_NOT_FOUND");
    assert_eq!(
        fb.delete("/api/v1/flags/new-checkout-ui", Some(&w.dev))
            .await
            .error(404),
        "not_found"
    );
}

#[tokio::test]
async fn every_change_is_in_the_audit_log() {
    let w = world().await;
    let fb = &w.fb;
    create(&w, CHECKOUT_UI).await;
    fb.send(
        fb.http
            .patch(fb.url("/api/v1/flags/new-checkout-ui/toggle"))
            .bearer_auth(&w.dev),
    )
    .await;
    fb.send(
        fb.http
            .patch(fb.url("/api/v1/flags/new-checkout-ui"))
            .bearer_auth(&w.dev)
            .json(&json!({"name": "renamed"})),
    )
    .await;
    fb.delete("/api/v1/flags/new-checkout-ui", Some(&w.dev))
        .await;
    fb.put(
        &format!("/api/v1/users/{}/role", w.user_id),
        json!({"role": "developer"}),
        Some(&w.admin),
    )
    .await;
    let token = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "ci", "role": "user"}),
            Some(&w.dev),
        )
        .await;
    let token_id = token.body["id"].as_str().unwrap().to_string();
    fb.delete(&format!("/api/v1/tokens/{token_id}"), Some(&w.dev))
        .await;

    let history = fb
        .get("/api/v1/flags/new-checkout-ui/history", Some(&w.dev))
        .await;
    assert_eq!(history.status, 200, "{}", history.body);
    let actions: Vec<&str> = history.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["flag.delete", "flag.update", "flag.toggle", "flag.create"]
    );
    let toggle = &history.body["records"][2];
    assert_eq!(
        (
            toggle["before"]["spec"]["enabled"].as_bool(),
            toggle["after"]["spec"]["enabled"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert_eq!(toggle["actor"].as_str(), Some(w.dev_id.as_str()));

    let audit = fb.get("/api/v1/audit?limit=500", Some(&w.admin)).await;
    let all: Vec<&str> = audit.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for action in [
        "user.create",
        "user.role",
        "token.create",
        "token.delete",
        "flag.create",
        "flag.toggle",
        "flag.update",
        "flag.delete",
    ] {
        assert!(all.contains(&action), "{action} missing from {all:?}");
    }
    let by_target = fb
        .get(
            &format!("/api/v1/audit?target=token:{token_id}"),
            Some(&w.admin),
        )
        .await;
    assert_eq!(by_target.body["records"].as_array().unwrap().len(), 2);
    let by_actor = fb
        .get(
            &format!("/api/v1/audit?actor={}&limit=1", w.dev_id),
            Some(&w.admin),
        )
        .await;
    assert_eq!(by_actor.body["records"].as_array().unwrap().len(), 1);
    let next = by_actor.body["next_cursor"]
        .as_str()
        .expect("a full page has a cursor");
    let second = fb
        .get(
            &format!("/api/v1/audit?actor={}&limit=1&cursor={next}", w.dev_id),
            Some(&w.admin),
        )
        .await;
    assert_ne!(
        second.body["records"][0]["id"],
        by_actor.body["records"][0]["id"]
    );
    assert!(
        !audit.body.to_string().contains("argon2"),
        "no password hashes in the audit log"
    );
}

#[tokio::test]
async fn flags_survive_a_restart() {
    let w = world().await;
    create(&w, CHECKOUT_UI).await;
    let World { fb, dev, .. } = w;
    let fb = fb.restart();
    let r = fb
        .get("/api/v1/flags/new-checkout-ui/evaluate", Some(&dev))
        .await;
    assert_eq!(
        (r.body["value"].clone(), r.body["reason"].as_str()),
        (json!(true), Some("TARGETING_MATCH"))
    );
}
