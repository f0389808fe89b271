//! The HTTP skeleton's contract: one error shape everywhere, request ids,
//! and public routes that ignore bad credentials.

use serde_json::json;

use crate::harness::{Flagbase, Options};

#[tokio::test]
async fn every_error_has_the_same_shape_and_status() {
    let fb = Flagbase::start_with(Options::default().set("server.max_body_bytes", "256")).await;

    assert_eq!(
        fb.get("/no/such/route", None).await.error(404),
        "route_not_found"
    );
    assert_eq!(
        fb.delete("/health", None).await.error(405),
        "method_not_allowed"
    );

    let raw = |body: &'static str, ctype: Option<&'static str>| {
        let mut req = fb.http.post(fb.url("/auth/login")).body(body);
        if let Some(c) = ctype {
            req = req.header("content-type", c);
        }
        req
    };
    assert_eq!(
        fb.send(raw("{\"email\":", Some("application/json")))
            .await
            .error(400),
        "malformed_json"
    );
    assert_eq!(
        fb.send(raw("{\"email\":1}", Some("application/json")))
            .await
            .error(400),
        "invalid"
    );
    assert_eq!(
        fb.send(raw("{}", Some("text/plain"))).await.error(415),
        "unsupported_media_type"
    );
    assert_eq!(
        fb.send(raw("{}", None)).await.error(415),
        "unsupported_media_type"
    );
    let big = format!("{{\"email\":\"{}\",\"password\":\"x\"}}", "a".repeat(1000));
    let r = fb
        .send(
            fb.http
                .post(fb.url("/auth/login"))
                .header("content-type", "application/json")
                .body(big),
        )
        .await;
    assert_eq!(r.error(413), "payload_too_large");
    let unknown_field = fb
        .post(
            "/auth/login",
            json!({"email": "a@b.co", "password": "x", "admin": true}),
            None,
        )
        .await;
    assert!(
        unknown_field.body["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `admin`"),
        "{}",
        unknown_field.body
    );

    // Protected routes: no credentials, bad credentials, insufficient role.
    let r = fb.get("/auth/me", None).await;
    assert_eq!(r.error(401), "unauthenticated");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        fb.get("/auth/me", Some("not-a-jwt")).await.error(401),
        "unauthenticated"
    );
    assert_eq!(
        fb.get(
            "/auth/me",
            Some("fbk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        )
        .await
        .error(401),
        "unauthenticated"
    );
    let basic = fb
        .send(
            fb.http
                .get(fb.url("/auth/me"))
                .header("authorization", "Basic dXNlcjpwYXNz"),
        )
        .await;
    assert_eq!(basic.error(401), "unauthenticated");
    let admin = fb.setup_admin("root@example.com").await;
    let (_, user) = fb.user("plain@example.com", "user", None).await;
    assert_eq!(
        fb.get("/api/v1/users", Some(&user)).await.error(403),
        "forbidden"
    );
    assert_eq!(fb.get("/api/v1/users", Some(&admin)).await.status, 200);
    assert_eq!(
        fb.delete("/api/v1/users/nobody", Some(&admin))
            .await
            .error(404),
        "not_found"
    );
}

#[tokio::test]
async fn bad_authorization_headers_do_not_break_public_routes() {
    let fb = Flagbase::start().await;
    fb.setup_admin("root@example.com").await;
    for (i, header) in [
        "Bearer garbage",
        "Bearer ",
        "Basic Zm9vOmJhcg==",
        "nonsense",
    ]
    .into_iter()
    .enumerate()
    {
        let r = fb
            .send(
                fb.http
                    .get(fb.url("/health"))
                    .header("authorization", header),
            )
            .await;
        assert_eq!(r.status, 200, "{header}");
        let r = fb
            .send(
                fb.http
                    .post(fb.url("/auth/login"))
                    .header("authorization", header)
                    .json(&json!({
                        "email": "root@example.com", "password": crate::harness::PASSWORD
                    })),
            )
            .await;
        assert_eq!(r.status, 200, "{header}: {}", r.body);
        let r = fb
            .send(fb.http.post(fb.url("/auth/register")).header("authorization", header).json(&json!({
                "email": format!("user{i}@example.com"), "password": crate::harness::PASSWORD
            })))
            .await;
        assert_eq!(r.status, 201, "{header}: {}", r.body);
    }
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated_and_logged() {
    let fb = Flagbase::start().await;
    let r = fb
        .send(
            fb.http
                .get(fb.url("/health"))
                .header("x-request-id", "trace-abc-123"),
        )
        .await;
    assert_eq!(r.header("x-request-id"), Some("trace-abc-123"));
    let r = fb
        .send(
            fb.http
                .get(fb.url("/nope"))
                .header("x-request-id", "bad id with spaces"),
        )
        .await;
    let generated = r.header("x-request-id").unwrap().to_string();
    assert_eq!(
        generated.len(),
        36,
        "a fresh UUID replaces an unsafe id: {generated}"
    );
    assert_eq!(r.status, 404);
    let line = fb.stderr.wait_for("the request log line", |l| {
        l.contains("trace-abc-123") && l.contains("\"status\":200")
    });
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["path"], "/health");
    assert!(entry["latency_ms"].as_f64().is_some(), "{line}");
}

#[tokio::test]
async fn regression_invalid_utf8_in_a_path_segment_is_a_json_400() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    // axum's own Path rejection answered these in text/plain.
    for path in [
        "/api/v1/flags/%FF",
        "/api/v1/flags/a%C3%28b/history",
        "/api/v1/users/%FE/role",
        "/ofrep/v1/evaluate/flags/%FF",
    ] {
        let req = if path.starts_with("/ofrep") {
            fb.http.post(fb.url(path)).json(&json!({"context": {}}))
        } else if path.ends_with("/role") {
            fb.http.put(fb.url(path)).json(&json!({"role": "user"}))
        } else {
            fb.http.get(fb.url(path))
        };
        let r = fb.send(req.bearer_auth(&admin)).await;
        assert_eq!(r.error(400), "invalid", "{path}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        assert!(
            r.body["error"].as_str().unwrap().contains("UTF-8"),
            "{path}: {}",
            r.body
        );
    }
}
