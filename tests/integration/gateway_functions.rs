//! Gateway routes whose target is a function (`function:<name>`): run as
//! `/functions/{name}/{path...}` runs it, chosen per request by a flag
//! like any upstream, and a hostile module still fails cleanly.

use serde_json::{json, Value};

use crate::functions::{deployed, echo, env_dump, module, world, World};
use crate::gateway_upstream::Upstream;
use crate::harness::Resp;

async fn add_route(w: &World, body: Value) -> Resp {
    w.fb.post("/api/v1/gateway/routes", body, Some(&w.admin))
        .await
}

async fn add_flag(w: &World, body: Value) {
    let r = w.fb.post("/api/v1/flags", body, Some(&w.admin)).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

async fn call(w: &World, path: &str, token: Option<&str>, body: &str) -> Resp {
    let mut req = w.fb.gw.post(w.fb.url(path)).body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    w.fb.send(req).await
}

fn says(text: &str) -> Vec<u8> {
    module(
        "",
        &[(1024, text)],
        &format!("(call $write (i32.const 1024) (i32.const {}))", text.len()),
    )
}

#[tokio::test]
async fn gateway_function_route_runs_the_function_as_the_caller() {
    let w = world().await;
    deployed(&w, "echo", echo()).await;
    deployed(&w, "env", env_dump()).await;
    for (path, target) in [
        ("/gateway/echo", "function:echo"),
        ("/gateway/env", "function:env"),
    ] {
        let r = add_route(&w, json!({"path": path, "target": target})).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }

    let r = call(&w, "/gateway/echo/x", Some(&w.user), "hello").await;
    assert_eq!((r.status, r.body.clone()), (201, json!("hello")));
    assert_eq!(r.headers["x-fn"], "echo");
    assert_eq!(r.headers["content-type"], "text/plain");

    let r = call(&w, "/gateway/env/a/b?q=1", Some(&w.user), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let env = r.body.as_str().unwrap().to_string();
    let lines: Vec<&str> = env.lines().collect();
    for expected in [
        "REQUEST_METHOD=POST",
        "PATH_INFO=/a/b",
        "QUERY_STRING=q=1",
        "FLAGBASE_ROLE=user",
        &format!("FLAGBASE_USER_ID={}", w.user_id),
    ] {
        assert!(lines.contains(&expected), "{expected} missing in {env}");
    }
    assert!(!env.contains("HTTP_AUTHORIZATION"), "{env}");
    let r = call(&w, "/gateway/env", Some(&w.user), "").await;
    assert!(
        r.body.as_str().unwrap().lines().any(|l| l == "PATH_INFO="),
        "{}",
        r.body
    );

    // Functions need a caller, behind the gateway as at /functions.
    assert_eq!(
        call(&w, "/gateway/echo", None, "").await.error(401),
        "unauthenticated"
    );
    // The name is checked at creation, the function's existence per request.
    let r = add_route(
        &w,
        json!({"path": "/gateway/bad", "target": "function:../x"}),
    )
    .await;
    assert_eq!(r.error(400), "invalid");
    assert!(
        r.body["error"].as_str().unwrap().starts_with("target:"),
        "{}",
        r.body
    );
    let r = add_route(
        &w,
        json!({"path": "/gateway/nope", "target": "function:nope"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call(&w, "/gateway/nope", Some(&w.user), "").await;
    assert_eq!(r.error(404), "not_found");
    assert_eq!(
        call(&w, "/functions/nope", Some(&w.user), "").await.body,
        r.body,
        "the same 404 as /functions gives"
    );
}

#[tokio::test]
async fn gateway_variant_sends_developers_to_a_function_and_others_upstream() {
    let up = Upstream::start("stable").await;
    let w = world().await;
    deployed(&w, "preview", says("Content-Type: text/plain\n\npreview")).await;
    add_flag(&w, json!({"key": "preview", "enabled": true, "default_value": false,
        "rules": [{"attribute": "role", "operator": "equals", "value": "developer", "variant": true}]}))
    .await;
    let r = add_route(
        &w,
        json!({"path": "/gateway/app", "flag_key": "preview", "target": up.url,
            "variants": {"true": "function:preview"}, "fallback_target": up.url}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);

    let r = call(&w, "/gateway/app/page", Some(&w.dev), "").await;
    assert_eq!((r.status, r.body.clone()), (200, json!("preview")));
    let r = call(&w, "/gateway/app/page", Some(&w.user), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "stable");
    assert_eq!(r.body["uri"], "/page");

    // A function as the fallback too.
    let r = add_route(
        &w,
        json!({"path": "/gateway/off", "flag_key": "preview", "target": up.url,
            "fallback_target": "function:preview"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call(&w, "/gateway/off", Some(&w.user), "").await;
    assert_eq!((r.status, r.body.clone()), (200, json!("preview")));
}

#[tokio::test]
async fn gateway_hostile_function_gives_a_clean_json_error_and_an_error_event() {
    let w = world().await;
    deployed(&w, "echo", echo()).await;
    deployed(&w, "trap", module("", &[], "unreachable")).await;
    deployed(&w, "spin", module("", &[], "(loop $forever (br $forever))")).await;
    let r =
        w.fb.send(
            w.fb.http
                .patch(w.fb.url("/api/v1/functions/spin"))
                .bearer_auth(&w.dev)
                .json(&json!({"timeout": "300ms"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    add_flag(
        &w,
        json!({"key": "watched", "enabled": true, "default_value": true}),
    )
    .await;
    for (path, target) in [
        ("/gateway/trap", "function:trap"),
        ("/gateway/spin", "function:spin"),
        ("/gateway/echo", "function:echo"),
    ] {
        let r = add_route(
            &w,
            json!({"path": path, "flag_key": "watched", "target": target}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }

    let r = call(&w, "/gateway/trap", Some(&w.user), "").await;
    assert_eq!(r.error(500), "function_failed");
    assert!(
        r.body["error"].as_str().unwrap().contains("trapped"),
        "{}",
        r.body
    );
    let r = call(&w, "/gateway/spin", Some(&w.user), "").await;
    assert_eq!(r.error(504), "timeout");
    // The server keeps serving others.
    let r = call(&w, "/gateway/echo", Some(&w.user), "still here").await;
    assert_eq!((r.status, r.body.clone()), (201, json!("still here")));

    // Exposures for all three, error events for the two failures; the
    // recorder flushes on stop, so a restart reads every count.
    let fb = w.fb.restart();
    let admin = fb.login("root@example.com").await;
    let r = fb
        .get("/api/v1/flags/watched/metrics?window=1h", Some(&admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let count = |event: &str| r.body["variants"]["true"][event]["count"].as_u64();
    assert_eq!(count("exposure"), Some(3), "{}", r.body);
    assert_eq!(count("error"), Some(2), "{}", r.body);
}
