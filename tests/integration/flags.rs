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

/// The flag's ETag: `"<incarnation>-<version>"`, strong, for `version`.
fn assert_etag_version(r: &Resp, version: i64) -> String {
    let etag = r.header("etag").expect("ETag").to_string();
    let opaque = etag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or_else(|| panic!("a strong entity tag, got {etag}"));
    let (incarnation, v) = opaque
        .rsplit_once('-')
        .unwrap_or_else(|| panic!("\"<incarnation>-<version>\", got {etag}"));
    assert!(!incarnation.is_empty(), "{etag}");
    assert_eq!(v.parse::<i64>().ok(), Some(version), "{etag}");
    etag
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
    assert_etag_version(&r, 1);
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
    let created = create(&w, CHECKOUT_UI).await;
    let v1 = assert_etag_version(&created, 1);
    let fb = &w.fb;
    let put = |body: Value, if_match: Option<String>| {
        let mut req = fb
            .http
            .put(fb.url("/api/v1/flags/new-checkout-ui"))
            .bearer_auth(&w.dev)
            .json(&body);
        if let Some(v) = if_match {
            req = req.header("if-match", v);
        }
        fb.send(req)
    };
    // PUT replaces everything: the rules are gone.
    let r = put(
        json!({"key": "new-checkout-ui", "enabled": true, "default_value": true}),
        Some(v1.clone()),
    )
    .await;
    assert_eq!(
        (r.status, r.body["version"].as_i64()),
        (200, Some(2)),
        "{}",
        r.body
    );
    assert!(r.body.get("rules").is_none(), "{}", r.body);
    let v2 = assert_etag_version(&r, 2);
    assert_eq!(
        put(json!({"enabled": false}), Some(v1.clone()))
            .await
            .error(412),
        "precondition_failed"
    );
    assert_eq!(
        put(json!({"key": "renamed"}), None).await.error(400),
        "invalid"
    );
    // A bare version is not an entity tag.
    for malformed in ["2", "one", "\"unterminated"] {
        assert_eq!(
            put(json!({"enabled": true}), Some(malformed.into()))
                .await
                .error(400),
            "invalid",
            "{malformed}"
        );
    }
    // A GET result can be sent straight back.
    let current = fb.get("/api/v1/flags/new-checkout-ui", Some(&w.dev)).await;
    assert_eq!(current.header("etag"), Some(v2.as_str()));
    assert_eq!(put(current.body.clone(), Some(v2)).await.body["version"], 3);

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
                .header("if-match", v1),
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

/// Versions restart at 1 when a flag is deleted and created again, and the
/// ETag used to be the version alone: an `If-Match` taken from the deleted
/// flag matched its successor. ETags now carry the flag's incarnation,
/// compare strongly (a `W/` tag never matches) and may be listed.
#[tokio::test]
async fn regression_if_match_from_a_deleted_flag_fails_on_the_recreated_one() {
    let w = world().await;
    let fb = &w.fb;
    let path = "/api/v1/flags/new-checkout-ui";
    let old = assert_etag_version(&create(&w, CHECKOUT_UI).await, 1);
    assert_eq!(fb.delete(path, Some(&w.dev)).await.status, 204);
    let new = assert_etag_version(&create(&w, CHECKOUT_UI).await, 1);
    assert_ne!(old, new, "a re-created flag must not repeat an ETag");

    let send = |method: reqwest::Method, suffix: &str, token: &str, if_match: &str| {
        let mut req = fb
            .http
            .request(method.clone(), fb.url(&format!("{path}{suffix}")))
            .bearer_auth(token)
            .header("if-match", if_match);
        if method == reqwest::Method::PUT || method == reqwest::Method::PATCH && suffix.is_empty() {
            req = req.json(&json!({"description": "changed"}));
        }
        fb.send(req)
    };
    let weak = format!("W/{new}");
    for if_match in [old.as_str(), weak.as_str(), "\"other\", W/\"x\""] {
        for (method, suffix) in [
            (reqwest::Method::PUT, ""),
            (reqwest::Method::PATCH, ""),
            (reqwest::Method::PATCH, "/toggle"),
            (reqwest::Method::DELETE, ""),
        ] {
            let r = send(method.clone(), suffix, &w.dev, if_match).await;
            assert_eq!(
                r.error(412),
                "precondition_failed",
                "{method} {suffix} If-Match: {if_match}"
            );
        }
    }
    // Nothing changed, and the role is checked before the precondition.
    let current = fb.get(path, Some(&w.dev)).await;
    assert_eq!(current.body["version"], 1, "{}", current.body);
    assert_eq!(
        send(reqwest::Method::PATCH, "/toggle", &w.user, &old)
            .await
            .error(403),
        "forbidden"
    );

    // A list with one current tag matches; so does `*`.
    let listed = format!("{old}, W/{new}, {new}");
    let r = send(reqwest::Method::PATCH, "", &w.dev, &listed).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v2 = assert_etag_version(&r, 2);
    let r = send(reqwest::Method::PATCH, "/toggle", &w.dev, "*").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_etag_version(&r, 3);
    // Two header lines form one list too.
    let r = fb
        .send(
            fb.http
                .delete(fb.url(path))
                .bearer_auth(&w.dev)
                .header("if-match", v2)
                .header("if-match", r.header("etag").unwrap()),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
}

/// A record whose stored JSON the reader cannot parse (here nested 200
/// deep, past serde_json's limit of 128) used to fail `GET /api/v1/audit`,
/// `?actor=` and the flag's history with a 500 for good. It is now served
/// with that field `null` and named in `unreadable`, and logged once.
#[tokio::test]
async fn regression_an_unreadable_audit_record_does_not_fail_its_page() {
    let w = world().await;
    let fb = &w.fb;
    assert_eq!(create(&w, CHECKOUT_UI).await.status, 201);

    // Written straight into the running server's database (WAL lets a
    // second connection write beside it).
    let poisoned_id = uuid::Uuid::now_v7().to_string();
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    {
        let conn = rusqlite::Connection::open(fb.dir().join("flagbase.db")).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        conn.execute(
            "INSERT INTO audit_log (id, at, actor, action, target, before, after)
             VALUES (?1, '2026-11-22T05:00:00.000Z', ?2, 'flag.update', 'flag:new-checkout-ui', ?3, ?4)",
            rusqlite::params![poisoned_id, w.dev_id, deep, r#"{"version":2}"#],
        )
        .unwrap();
    }

    let pages = [
        ("/api/v1/audit".to_string(), &w.admin),
        (format!("/api/v1/audit?actor={}", w.dev_id), &w.admin),
        ("/api/v1/flags/new-checkout-ui/history".to_string(), &w.dev),
    ];
    for (path, token) in &pages {
        let r = fb.get(path, Some(token)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let records = r.body["records"].as_array().expect("records");
        let poisoned = records
            .iter()
            .find(|rec| rec["id"] == json!(poisoned_id))
            .unwrap_or_else(|| panic!("{path}: the record is listed: {}", r.body));
        assert_eq!(poisoned["before"], Value::Null, "{poisoned}");
        assert_eq!(poisoned["unreadable"], json!(["before"]), "{poisoned}");
        assert_eq!(poisoned["after"], json!({"version": 2}), "{poisoned}");
        // The readable records around it are whole and unmarked.
        let created = records
            .iter()
            .find(|rec| rec["action"] == "flag.create")
            .unwrap_or_else(|| panic!("{path}: {}", r.body));
        assert!(created.get("unreadable").is_none(), "{created}");
        assert_eq!(created["after"]["version"], 1, "{created}");
    }

    // Logged once for the three reads: a request after them, whose log line
    // is awaited, proves every earlier line has arrived.
    let marker = format!("audit-marker-{}", uuid::Uuid::new_v4().simple());
    fb.send(
        fb.http
            .get(fb.url("/health"))
            .header("x-request-id", &marker),
    )
    .await;
    fb.stderr
        .wait_for("the marker request's log line", |l| l.contains(&marker));
    let warnings = fb
        .stderr
        .all()
        .iter()
        .filter(|l| l.contains("audit record is unreadable") && l.contains(&poisoned_id))
        .count();
    assert_eq!(warnings, 1, "{:#?}", fb.stderr.all());
}

/// Regression: a `json` flag whose default nested 126 arrays deep was
/// stored, and its audit record (wrapped a few levels deeper) then failed
/// every audit page that held it.
#[tokio::test]
async fn regression_a_deeply_nested_flag_value_is_refused_and_the_audit_log_stays_readable() {
    let w = world().await;
    let deep = format!("{}1{}", "[".repeat(126), "]".repeat(126));
    let body = format!(r#"{{"key":"deep","type":"json","enabled":true,"default_value":{deep}}}"#);
    let r = create(&w, &body).await;
    assert_eq!(r.error(400), "invalid", "{}", r.body);
    assert_eq!(r.body["field"], "default_value", "{}", r.body);
    assert!(
        r.body["error"].as_str().unwrap().contains("32 levels"),
        "{}",
        r.body
    );

    let at_limit = format!("{}1{}", "[".repeat(32), "]".repeat(32));
    let body =
        format!(r#"{{"key":"deep","type":"json","enabled":true,"default_value":{at_limit}}}"#);
    assert_eq!(create(&w, &body).await.status, 201);
    let r = w.fb.get("/api/v1/audit", Some(&w.admin)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = w.fb.get("/api/v1/flags/deep/history", Some(&w.dev)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["records"][0]["action"], "flag.create");
    assert!(
        r.body["records"][0].get("unreadable").is_none(),
        "{}",
        r.body
    );
}
