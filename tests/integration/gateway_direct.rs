//! The gateway's direct path: requests below `/gateway` are served from the
//! connection's service, before the router. They must still get what the
//! router's layers give every route (a request id, the request log line,
//! JSON errors) and see the caller the same way (Bearer or X-API-Key), and
//! only paths below the mount may take that path.

use serde_json::json;

use crate::gateway_upstream::Upstream;
use crate::harness::{Flagbase, Resp};

async fn proxied(fb: &Flagbase, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = fb.gw.get(fb.url(path));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    fb.send(req).await
}

#[tokio::test]
async fn gateway_requests_carry_a_request_id_and_are_logged_like_every_other() {
    let up = Upstream::start("up").await;
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("admin@example.com").await;
    let r = fb
        .post(
            "/api/v1/gateway/routes",
            json!({"path": "/gateway/echo", "target": up.url}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    let r = proxied(&fb, "/gateway/echo/x", &[("x-request-id", "gw-trace-42")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-request-id"), Some("gw-trace-42"));
    let line = fb.stderr.wait_for("the gateway's request log line", |l| {
        l.contains("gw-trace-42") && l.contains("\"status\":200")
    });
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["path"], "/gateway/echo/x");
    assert!(entry["latency_ms"].as_f64().is_some(), "{line}");

    // Unsafe ids are replaced; generated ids differ per request.
    let a = proxied(&fb, "/gateway/echo/x", &[("x-request-id", "bad id")]).await;
    let b = proxied(&fb, "/gateway/echo/x", &[]).await;
    let (a, b) = (a.header("x-request-id"), b.header("x-request-id"));
    assert!(
        a.is_some_and(|id| id != "bad id" && !id.contains(' ')),
        "{a:?}"
    );
    assert!(b.is_some() && a != b, "{a:?} {b:?}");
}

#[tokio::test]
async fn only_paths_below_the_mount_reach_the_gateway_and_its_errors_are_json() {
    let fb = Flagbase::start().await;
    // No route yet: the gateway itself answers, in JSON, with an id.
    for path in ["/gateway", "/gateway/", "/gateway/a/b?c=d"] {
        let r = proxied(&fb, path, &[]).await;
        assert_eq!(r.error(404), "route_not_found", "{path}");
        assert_eq!(
            r.body["error"], "no gateway route serves this path",
            "{path}"
        );
        assert!(r.header("x-request-id").is_some(), "{path}");
    }
    // A path that only starts with the mount's letters is the router's.
    let r = proxied(&fb, "/gatewayx", &[]).await;
    assert_eq!(r.error(404), "route_not_found");
    assert_eq!(r.body["error"], "no such route");
}

#[tokio::test]
async fn the_caller_is_found_from_either_credential_header_on_the_direct_path() {
    let up = Upstream::start("up").await;
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("admin@example.com").await;
    for (path, extra) in [
        ("/gateway/open", json!({})),
        ("/gateway/closed", json!({"require_role": "user"})),
    ] {
        let mut body = json!({"path": path, "target": up.url});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = fb.post("/api/v1/gateway/routes", body, Some(&admin)).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "svc", "role": "user"}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let token = r.body["token"].as_str().unwrap().to_string();

    let r = proxied(&fb, "/gateway/open/x", &[("x-api-key", &token)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["headers"]["x-flagbase-role"], "user");
    assert!(
        r.body["headers"]["x-api-key"].is_null(),
        "credential forwarded"
    );

    // An invalid credential is no credential: anonymous on an open route,
    // refused on one that needs a role.
    let bogus = [("authorization", "Bearer fbk_not-a-token")];
    let r = proxied(&fb, "/gateway/open/x", &bogus).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["headers"]["x-flagbase-role"], "anonymous");
    let r = proxied(&fb, "/gateway/closed/x", &bogus).await;
    assert_eq!(r.error(401), "unauthenticated");
    let bearer = format!("Bearer {token}");
    let r = proxied(&fb, "/gateway/closed/x", &[("authorization", &bearer)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
}
