//! The gateway at `/gateway`: routing by role, header and cookie, sticky
//! anonymous buckets, variants and fallbacks, prefixes, header rules,
//! streaming (large bodies, SSE, WebSocket), upstream failures, route
//! management and persistence. Every upstream is a real server
//! (`gateway_upstream.rs`).

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::gateway_upstream::{closed_port, Upstream};
use crate::harness::{Flagbase, Options, Resp};

async fn setup(fb: &Flagbase) -> String {
    fb.setup_admin("admin@example.com").await
}

async fn add_route(fb: &Flagbase, admin: &str, body: Value) -> Value {
    let r = fb.post("/api/v1/gateway/routes", body, Some(admin)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

async fn add_flag(fb: &Flagbase, admin: &str, body: Value) {
    let r = fb.post("/api/v1/flags", body, Some(admin)).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// A proxied request with extra headers.
async fn call(fb: &Flagbase, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Resp {
    let mut req = fb.gw.get(fb.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    fb.send(req).await
}

/// Which upstream answered.
fn served_by(r: &Resp) -> &str {
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["name"].as_str().unwrap()
}

fn upstream_header<'a>(r: &'a Resp, name: &str) -> Option<&'a str> {
    r.body["headers"][name].as_str()
}

#[tokio::test]
async fn a_developer_and_a_user_calling_the_same_url_reach_different_backends() {
    let (stable, new) = (
        Upstream::start("stable").await,
        Upstream::start("new").await,
    );
    let fb = Flagbase::start().await;
    let admin = setup(&fb).await;
    add_flag(&fb, &admin, json!({"key": "new-backend", "enabled": true, "default_value": false,
        "rules": [{"attribute": "role", "operator": "equals", "value": "developer", "variant": true}]})).await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/app", "flag_key": "new-backend",
        "target": new.url, "fallback_target": stable.url}),
    )
    .await;
    let (dev_id, dev) = fb.user("dev@example.com", "developer", Some(&admin)).await;
    let (_, user) = fb.user("user@example.com", "user", Some(&admin)).await;

    let r = call(&fb, "/gateway/app/orders?page=2", Some(&dev), &[]).await;
    assert_eq!(served_by(&r), "new");
    assert_eq!(r.body["uri"], "/orders?page=2");
    assert_eq!(
        upstream_header(&r, "x-flagbase-user-id"),
        Some(dev_id.as_str())
    );
    assert_eq!(upstream_header(&r, "x-flagbase-role"), Some("developer"));
    assert_eq!(upstream_header(&r, "x-flagbase-flag"), Some("new-backend"));
    assert_eq!(upstream_header(&r, "x-flagbase-variant"), Some("true"));
    let r = call(&fb, "/gateway/app/orders?page=2", Some(&user), &[]).await;
    assert_eq!(served_by(&r), "stable");
    assert_eq!(upstream_header(&r, "x-flagbase-role"), Some("user"));
    let r = call(&fb, "/gateway/app/orders", None, &[]).await;
    assert_eq!(served_by(&r), "stable");
    assert_eq!(upstream_header(&r, "x-flagbase-role"), Some("anonymous"));
    assert_eq!(upstream_header(&r, "x-flagbase-user-id"), None);

    // Turned off, with no fallback: 503 with our error shape.
    let r = fb
        .put(
            "/api/v1/gateway/routes/".to_string().as_str(),
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 404, "PUT on the collection is not a route");
    let r = fb
        .send(
            fb.http
                .patch(fb.url("/api/v1/flags/new-backend/toggle"))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let routes = fb.get("/api/v1/gateway/routes", Some(&admin)).await;
    let id = routes.body["routes"][0]["id"].as_str().unwrap().to_string();
    let r = fb
        .put(
            &format!("/api/v1/gateway/routes/{id}"),
            json!({"path": "/gateway/app", "flag_key": "new-backend", "target": new.url}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(&fb, "/gateway/app/orders", Some(&dev), &[]).await;
    assert_eq!(r.error(503), "route_disabled");
    assert_eq!(r.body["error"], "route disabled by feature flag");
}

#[tokio::test]
async fn header_and_cookie_rules_route_and_variants_pick_their_targets() {
    let (a, b, canary) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("canary").await,
    );
    let fb = Flagbase::start().await;
    let admin = setup(&fb).await;
    add_flag(
        &fb,
        &admin,
        json!({"key": "canary", "enabled": true, "default_value": false, "rules": [
        {"attribute": "header.x-canary", "operator": "equals", "value": "1", "variant": true},
        {"attribute": "cookie.beta", "operator": "equals", "value": "yes", "variant": true}]}),
    )
    .await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/shop", "flag_key": "canary",
        "target": canary.url, "fallback_target": a.url}),
    )
    .await;
    add_flag(&fb, &admin, json!({"key": "ab", "enabled": true, "type": "string", "default_value": "a",
        "variants": [{"key": "a", "value": "a"}, {"key": "b", "value": "b"}],
        "rules": [{"attribute": "query.group", "operator": "equals", "value": "b", "variant": "b"}]})).await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/ab", "flag_key": "ab",
        "target": a.url, "variants": {"b": b.url}}),
    )
    .await;

    assert_eq!(served_by(&call(&fb, "/gateway/shop", None, &[]).await), "a");
    assert_eq!(
        served_by(&call(&fb, "/gateway/shop", None, &[("x-canary", "1")]).await),
        "canary"
    );
    assert_eq!(
        served_by(&call(&fb, "/gateway/shop", None, &[("cookie", "x=1; beta=yes")]).await),
        "canary"
    );
    assert_eq!(
        served_by(&call(&fb, "/gateway/shop", None, &[("cookie", "beta=no")]).await),
        "a"
    );
    assert_eq!(served_by(&call(&fb, "/gateway/ab/x", None, &[]).await), "a");
    let r = call(&fb, "/gateway/ab/x?group=b", None, &[]).await;
    assert_eq!(served_by(&r), "b");
    assert_eq!(upstream_header(&r, "x-flagbase-variant"), Some("b"));
}

#[tokio::test]
async fn a_ten_percent_canary_keeps_each_anonymous_browser_in_its_bucket() {
    let (stable, canary) = (
        Upstream::start("stable").await,
        Upstream::start("canary").await,
    );
    let fb = Flagbase::start_with(Options::default().set("gateway.cookie_name", "fb_sticky")).await;
    let admin = setup(&fb).await;
    add_flag(
        &fb,
        &admin,
        json!({"key": "canary10", "enabled": true, "rollout_percentage": 10}),
    )
    .await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/web", "flag_key": "canary10",
        "target": canary.url, "fallback_target": stable.url}),
    )
    .await;

    let mut in_canary = 0;
    for _ in 0..100 {
        let first = call(&fb, "/gateway/web", None, &[]).await;
        let cookie = first
            .header("set-cookie")
            .expect("a new visitor gets a cookie")
            .to_string();
        assert!(cookie.starts_with("fb_sticky="), "{cookie}");
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        let pair = cookie.split(';').next().unwrap().to_string();
        // The upstream saw the bucket on the very first request too.
        assert!(upstream_header(&first, "cookie").unwrap().contains(&pair));
        let backend = served_by(&first).to_string();
        in_canary += usize::from(backend == "canary");
        for _ in 0..3 {
            let again = call(&fb, "/gateway/web", None, &[("cookie", pair.as_str())]).await;
            assert_eq!(served_by(&again), backend, "{pair} changed buckets");
            assert!(
                again.header("set-cookie").is_none(),
                "a known visitor keeps their cookie"
            );
        }
    }
    // 10 % of 100 browsers: none or all would mean no bucketing at all
    // (the chance of either with a fair 10 % is below 1e-4).
    assert!(
        (1..40).contains(&in_canary),
        "{in_canary} of 100 in the canary"
    );
}

#[tokio::test]
async fn the_longest_prefix_wins_on_whole_segments_and_stripping_is_per_route() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let fb = Flagbase::start().await;
    let admin = setup(&fb).await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/api", "target": a.url}),
    )
    .await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/api/v2/", "target": format!("{}/base", b.url)}),
    )
    .await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/keep", "target": c.url, "strip_prefix": false,
        "methods": ["get", "POST"]}),
    )
    .await;

    let r = call(&fb, "/gateway/api", None, &[]).await;
    assert_eq!((served_by(&r), r.body["uri"].as_str()), ("a", Some("/")));
    let r = call(&fb, "/gateway/api/x/y?q=1&q=2", None, &[]).await;
    assert_eq!(
        (served_by(&r), r.body["uri"].as_str()),
        ("a", Some("/x/y?q=1&q=2"))
    );
    assert_eq!(
        upstream_header(&r, "x-forwarded-prefix"),
        Some("/gateway/api")
    );
    let r = call(&fb, "/gateway/api/v2/z", None, &[]).await;
    assert_eq!(
        (served_by(&r), r.body["uri"].as_str()),
        ("b", Some("/base/z"))
    );
    let r = call(&fb, "/gateway/api/v20", None, &[]).await;
    assert_eq!((served_by(&r), r.body["uri"].as_str()), ("a", Some("/v20")));
    assert_eq!(
        call(&fb, "/gateway/apix", None, &[]).await.error(404),
        "route_not_found"
    );
    assert_eq!(
        call(&fb, "/gateway", None, &[]).await.error(404),
        "route_not_found"
    );
    let r = call(&fb, "/gateway/keep/it", None, &[]).await;
    assert_eq!(
        (served_by(&r), r.body["uri"].as_str()),
        ("c", Some("/gateway/keep/it"))
    );
    assert_eq!(upstream_header(&r, "x-forwarded-prefix"), None);
    let r = fb.send(fb.gw.delete(fb.url("/gateway/keep/it"))).await;
    assert_eq!(r.error(405), "method_not_allowed");
    let r = fb
        .send(fb.gw.post(fb.url("/gateway/keep/it")).body("abc"))
        .await;
    assert_eq!(
        (r.body["method"].as_str(), r.body["body_bytes"].as_u64()),
        (Some("POST"), Some(3))
    );
    // A dot segment could climb out of the prefix upstream.
    for sneaky in ["/gateway/api/../keep", "/gateway/api/%2e%2E/keep"] {
        let raw = raw_get(&fb, sneaky).await;
        assert!(raw.starts_with("HTTP/1.1 400"), "{sneaky}: {raw}");
    }
}

/// A GET written by hand, so the path reaches the server exactly as sent.
async fn raw_get(fb: &Flagbase, path: &str) -> String {
    let addr = fb.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn spoofed_identity_and_forwarding_headers_are_replaced_and_hop_by_hop_ones_removed() {
    let up = Upstream::start("up").await;
    let fb = Flagbase::start().await;
    let admin = setup(&fb).await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/echo", "target": up.url}),
    )
    .await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/auth", "target": up.url, "forward_authorization": true}),
    )
    .await;
    let (user_id, user) = fb.user("user@example.com", "user", Some(&admin)).await;
    let spoof = [
        ("x-flagbase-role", "admin"),
        ("x-flagbase-user-id", "someone-else"),
        ("x-flagbase-variant", "forged"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=6.6.6.6"),
        ("connection", "x-private-hop"),
        ("x-private-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("x-custom", "kept"),
    ];
    let r = call(&fb, "/gateway/echo/x", Some(&user), &spoof).await;
    assert_eq!(served_by(&r), "up");
    let h = |n: &str| upstream_header(&r, n);
    assert_eq!(h("x-flagbase-role"), Some("user"));
    assert_eq!(h("x-flagbase-user-id"), Some(user_id.as_str()));
    assert_eq!(h("x-flagbase-variant"), None, "no flag on this route");
    assert_eq!(h("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(h("x-forwarded-proto"), Some("http"));
    let host = fb.base.trim_start_matches("http://");
    assert_eq!(h("x-forwarded-host"), Some(host));
    assert_eq!(h("x-forwarded-prefix"), Some("/gateway/echo"));
    assert_eq!(h("host"), Some(up.url.trim_start_matches("http://")));
    for gone in ["forwarded", "x-private-hop", "keep-alive", "authorization"] {
        assert_eq!(h(gone), None, "{gone} reached the upstream");
    }
    assert_eq!(h("x-custom"), Some("kept"));
    // The upstream's own hop-by-hop fields stop here too.
    assert!(r.header("x-upstream-hop").is_none());
    assert!(r.header("x-request-id").is_some());

    let r = call(&fb, "/gateway/auth", Some(&user), &[]).await;
    assert_eq!(
        upstream_header(&r, "authorization"),
        Some(format!("Bearer {user}").as_str())
    );
}

#[tokio::test]
async fn trusted_proxies_keep_their_forwarding_headers_and_name_the_client_ip() {
    let (near, far) = (Upstream::start("near").await, Upstream::start("far").await);
    let fb = Flagbase::start_with(Options {
        config_yaml: Some("gateway:\n  trusted_proxies: [\"127.0.0.0/8\"]\n".into()),
        ..Default::default()
    })
    .await;
    let admin = setup(&fb).await;
    add_flag(&fb, &admin, json!({"key": "by-ip", "enabled": true, "default_value": false,
        "rules": [{"attribute": "ip", "operator": "equals", "value": "203.0.113.7", "variant": true}]})).await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/geo", "flag_key": "by-ip",
        "target": far.url, "fallback_target": near.url}),
    )
    .await;
    let r = call(
        &fb,
        "/gateway/geo",
        None,
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(served_by(&r), "far");
    assert_eq!(
        upstream_header(&r, "x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(upstream_header(&r, "x-forwarded-proto"), Some("https"));
    // Behind TLS the bucketing cookie is marked Secure.
    assert!(r.header("set-cookie").unwrap().contains("Secure"));
    assert_eq!(
        served_by(&call(&fb, "/gateway/geo", None, &[]).await),
        "near"
    );
}

#[tokio::test]
async fn a_large_upload_streams_through_with_bounded_memory() {
    let up = Upstream::start("up").await;
    let fb = Flagbase::start().await;
    let admin = setup(&fb).await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/files", "target": up.url}),
    )
    .await;
    let before = peak_rss_kib(fb.pid());
    const SIZE: u64 = 512 * 1024 * 1024;
    let addr = fb.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        format!("PUT /gateway/files/upload HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {SIZE}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let chunk = vec![7u8; 1024 * 1024];
    for _ in 0..SIZE / chunk.len() as u64 {
        s.write_all(&chunk).await.unwrap();
    }
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains(&format!("\"body_bytes\":{SIZE}")), "{out}");
    let grown_mib = (peak_rss_kib(fb.pid()) - before) / 1024;
    // Half a gigabyte went through; the process grew by a few buffers.
    assert!(grown_mib < 64, "peak RSS grew by {grown_mib} MiB");

    // The gateway's own limit refuses a declared length above it.
    drop(fb);
    let fb = Flagbase::start_with(Options::default().set("gateway.max_body_bytes", "10")).await;
    let admin = setup(&fb).await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/files", "target": up.url}),
    )
    .await;
    let r = fb
        .send(fb.gw.post(fb.url("/gateway/files")).body("0123456789ab"))
        .await;
    assert_eq!(r.error(413), "payload_too_large");
    let r = fb
        .send(fb.gw.post(fb.url("/gateway/files")).body("0123456789"))
        .await;
    assert_eq!(r.body["body_bytes"], 10);
    // A chunked body declares no length: it is cut off once past the limit.
    let addr = fb.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        format!("POST /gateway/files HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(out.contains("payload_too_large"), "{out}");
}

fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn server_sent_events_pass_through_as_they_are_produced() {
    let up = Upstream::start("up").await;
    let fb = Flagbase::start().await;
    let admin = setup(&fb).await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/events", "target": up.url}),
    )
    .await;
    let mut res = fb
        .gw
        .get(fb.url("/gateway/events/sse"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    // The upstream holds its second event until the first has arrived
    // here: a proxy that buffered the response would never deliver it.
    let first = res.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"data: one\n\n");
    up.release.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"data: two\n\n");
}

#[tokio::test]
async fn a_websocket_upgrade_is_relayed_both_ways() {
    let up = Upstream::start("up").await;
    let fb = Flagbase::start().await;
    let admin = setup(&fb).await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/ws", "target": up.url}),
    )
    .await;
    let addr = fb.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        format!("GET /gateway/ws/chat HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    // A masked text frame "hello"; the upstream echoes every byte.
    let frame = [
        0x81u8,
        0x85,
        1,
        2,
        3,
        4,
        b'h' ^ 1,
        b'e' ^ 2,
        b'l' ^ 3,
        b'l' ^ 4,
        b'o' ^ 1,
    ];
    for _ in 0..3 {
        s.write_all(&frame).await.unwrap();
        let mut echoed = [0u8; 11];
        s.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, frame);
    }
}

#[tokio::test]
async fn an_unreachable_upstream_is_502_and_a_slow_one_504_naming_neither_in_the_body() {
    let slow = Upstream::start("slow").await;
    let dead = closed_port().await;
    let fb = Flagbase::start().await;
    let admin = setup(&fb).await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/dead", "target": dead}),
    )
    .await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/slow", "target": slow.url, "timeout": "300ms"}),
    )
    .await;
    let r = call(&fb, "/gateway/dead/x", None, &[]).await;
    assert_eq!(r.error(502), "bad_gateway");
    let port = dead.rsplit(':').next().unwrap();
    assert!(!r.body.to_string().contains(port), "{}", r.body);
    fb.stderr.wait_for("the upstream named in the log", |l| {
        l.contains("gateway upstream failed") && l.contains(port)
    });
    let r = call(&fb, "/gateway/slow/slow", None, &[]).await;
    assert_eq!(r.error(504), "gateway_timeout");
    assert!(!r.body.to_string().contains("127.0.0.1"), "{}", r.body);
    // An upstream 5xx is passed through as it is.
    let r = call(&fb, "/gateway/slow/fail", None, &[]).await;
    assert_eq!((r.status, r.body.as_str()), (500, Some("upstream broke")));
}

#[tokio::test]
async fn require_role_refuses_callers_below_it_before_proxying() {
    let up = Upstream::start("up").await;
    let fb = Flagbase::start().await;
    let admin = setup(&fb).await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/internal", "target": up.url, "require_role": "developer"}),
    )
    .await;
    let (_, dev) = fb.user("dev@example.com", "developer", Some(&admin)).await;
    let (_, user) = fb.user("user@example.com", "user", Some(&admin)).await;
    assert_eq!(
        call(&fb, "/gateway/internal", None, &[]).await.error(401),
        "unauthenticated"
    );
    assert_eq!(
        call(&fb, "/gateway/internal", Some("not-a-token"), &[])
            .await
            .error(401),
        "unauthenticated"
    );
    assert_eq!(
        call(&fb, "/gateway/internal", Some(&user), &[])
            .await
            .error(403),
        "forbidden"
    );
    assert_eq!(
        served_by(&call(&fb, "/gateway/internal", Some(&dev), &[]).await),
        "up"
    );
}

#[tokio::test]
async fn routes_are_admin_only_validated_audited_and_take_effect_at_once() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let fb = Flagbase::start().await;
    let admin = setup(&fb).await;
    let (_, dev) = fb.user("dev@example.com", "developer", Some(&admin)).await;
    let body = json!({"id": "shop", "path": "/gateway/shop", "target": a.url});
    let r = fb
        .post("/api/v1/gateway/routes", body.clone(), Some(&dev))
        .await;
    assert_eq!(r.error(403), "forbidden");
    let r = fb.post("/api/v1/gateway/routes", body.clone(), None).await;
    assert_eq!(r.error(401), "unauthenticated");
    assert_eq!(
        fb.get("/api/v1/gateway/routes", Some(&dev))
            .await
            .error(403),
        "forbidden"
    );

    for (bad, field) in [
        (
            json!({"path": "/gateway/x", "target": a.url, "flag_key": "missing"}),
            "flag_key",
        ),
        (
            json!({"path": "/gateway/x", "target": "ftp://example.com"}),
            "target",
        ),
        (
            json!({"path": "/gateway/x", "target": "not a url"}),
            "target",
        ),
        (json!({"path": "/elsewhere", "target": a.url}), "path"),
        (
            json!({"path": "/gateway/x", "target": a.url, "timeout": "soon"}),
            "timeout",
        ),
        (
            json!({"path": "/gateway/x", "target": a.url, "bogus": 1}),
            "body",
        ),
    ] {
        let r = fb
            .post("/api/v1/gateway/routes", bad.clone(), Some(&admin))
            .await;
        assert_eq!(r.error(400), "invalid", "{bad}");
        assert!(
            r.body["field"].as_str().unwrap().starts_with(field)
                || r.body["error"].as_str().unwrap().contains("bogus"),
            "{bad}: {}",
            r.body
        );
    }
    let created = add_route(&fb, &admin, body).await;
    assert_eq!(
        (created["id"].as_str(), created["version"].as_i64()),
        (Some("shop"), Some(1))
    );
    let r = fb
        .post(
            "/api/v1/gateway/routes",
            json!({"path": "/gateway/shop/", "target": b.url}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.error(409), "conflict");
    assert!(
        r.body["error"].as_str().unwrap().starts_with("path"),
        "{}",
        r.body
    );
    assert_eq!(served_by(&call(&fb, "/gateway/shop", None, &[]).await), "a");

    let r = fb
        .put(
            "/api/v1/gateway/routes/shop",
            json!({"path": "/gateway/shop", "target": b.url}),
            Some(&admin),
        )
        .await;
    assert_eq!((r.status, r.body["version"].as_i64()), (200, Some(2)));
    assert_eq!(served_by(&call(&fb, "/gateway/shop", None, &[]).await), "b");
    let r = fb.get("/api/v1/gateway/routes/shop", Some(&admin)).await;
    assert_eq!(r.body["target"], b.url.as_str());
    assert_eq!(
        fb.delete("/api/v1/gateway/routes/shop", Some(&admin))
            .await
            .status,
        204
    );
    assert_eq!(
        call(&fb, "/gateway/shop", None, &[]).await.error(404),
        "route_not_found"
    );
    assert_eq!(
        fb.get("/api/v1/gateway/routes/shop", Some(&admin))
            .await
            .error(404),
        "not_found"
    );

    let audit = fb.get("/api/v1/audit?limit=10", Some(&admin)).await;
    let actions: Vec<&str> = audit.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["target"] == "gateway_route:shop")
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "gateway.route.delete",
            "gateway.route.update",
            "gateway.route.create"
        ]
    );
}

#[tokio::test]
async fn routes_survive_a_restart_and_config_routes_are_declared_at_start() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let yaml = format!(
        "gateway:\n  routes:\n    - id: from-config\n      path: /gateway/cfg\n      target: {}\n",
        b.url
    );
    let fb = Flagbase::start_with(Options {
        config_yaml: Some(yaml),
        ..Default::default()
    })
    .await;
    let admin = setup(&fb).await;
    add_route(
        &fb,
        &admin,
        json!({"id": "api", "path": "/gateway/api", "target": a.url}),
    )
    .await;
    assert_eq!(served_by(&call(&fb, "/gateway/cfg", None, &[]).await), "b");
    let fb = fb.restart();
    assert_eq!(
        served_by(&call(&fb, "/gateway/api/x", None, &[]).await),
        "a"
    );
    assert_eq!(served_by(&call(&fb, "/gateway/cfg", None, &[]).await), "b");
    let admin = fb.login("admin@example.com").await;
    let r = fb
        .get("/api/v1/gateway/routes/from-config", Some(&admin))
        .await;
    // Declared once: restarting with the same definition changes nothing.
    assert_eq!(
        (r.body["updated_by"].as_str(), r.body["version"].as_i64()),
        (Some("config"), Some(1))
    );
}

#[tokio::test]
async fn each_proxied_request_records_an_exposure_and_failures_an_error_event() {
    let up = Upstream::start("up").await;
    let dead = closed_port().await;
    let fb = Flagbase::start().await;
    let admin = setup(&fb).await;
    add_flag(&fb, &admin, json!({"key": "watched", "enabled": true, "default_value": false,
        "rules": [{"attribute": "role", "operator": "equals", "value": "developer", "variant": true}]})).await;
    add_route(
        &fb,
        &admin,
        json!({"path": "/gateway/m", "flag_key": "watched",
        "target": up.url, "fallback_target": dead}),
    )
    .await;
    let (_, dev) = fb.user("dev@example.com", "developer", Some(&admin)).await;
    for _ in 0..3 {
        assert_eq!(
            served_by(&call(&fb, "/gateway/m/ok", Some(&dev), &[]).await),
            "up"
        );
    }
    assert_eq!(
        call(&fb, "/gateway/m/fail", Some(&dev), &[]).await.status,
        500
    );
    for _ in 0..2 {
        assert_eq!(
            call(&fb, "/gateway/m/ok", None, &[]).await.error(502),
            "bad_gateway"
        );
    }
    // The recorder flushes what it holds when the server stops, so a
    // restart reads every count without waiting for a flush interval.
    let fb = fb.restart();
    let admin = fb.login("admin@example.com").await;
    let r = fb
        .get("/api/v1/flags/watched/metrics?window=1h", Some(&admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let count = |variant: &str, event: &str| r.body["variants"][variant][event]["count"].as_u64();
    assert_eq!(count("true", "exposure"), Some(4), "{}", r.body);
    assert_eq!(count("true", "error"), Some(1), "{}", r.body);
    assert_eq!(count("false", "exposure"), Some(2), "{}", r.body);
    assert_eq!(count("false", "error"), Some(2), "{}", r.body);
}

#[tokio::test]
async fn route_changes_reach_the_bus_for_admins_only() {
    use futures_util::StreamExt;
    use tokio::io::AsyncBufReadExt;
    let up = Upstream::start("up").await;
    let fb = Flagbase::start().await;
    let admin = setup(&fb).await;
    let (_, user) = fb.user("user@example.com", "user", Some(&admin)).await;
    let bus = crate::bus::bus_addr(&fb);
    let nc = async_nats::ConnectOptions::with_token(admin.clone())
        .connect(format!("nats://{bus}"))
        .await
        .unwrap();
    let mut sub = nc.subscribe("flagbase.gateway.>").await.unwrap();
    // Applied by the server once a flush round-trips.
    nc.flush().await.unwrap();
    add_route(
        &fb,
        &admin,
        json!({"id": "r1", "path": "/gateway/r1", "target": up.url}),
    )
    .await;
    let msg = tokio::time::timeout(std::time::Duration::from_secs(30), sub.next())
        .await
        .expect("a gateway event")
        .unwrap();
    assert_eq!(msg.subject.as_str(), "flagbase.gateway.route.created");
    let body: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(
        (body["id"].as_str(), body["route"]["path"].as_str()),
        (Some("r1"), Some("/gateway/r1"))
    );
    assert!(body["seq"].as_u64().is_some(), "{body}");

    // A user's subscription is refused: routes name internal upstreams.
    let stream = tokio::net::TcpStream::connect(&bus).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    let connect = json!({"auth_token": user, "verbose": false, "pedantic": false});
    write
        .write_all(format!("CONNECT {connect}\r\nSUB flagbase.gateway.> 1\r\nPING\r\n").as_bytes())
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let line = lines.next_line().await.unwrap().expect("the bus answers");
        if line == "PONG" {
            break;
        }
        seen.push(line);
    }
    assert!(
        seen.iter().any(|l| l == "-ERR 'Permissions Violation for Subscription to \"flagbase.gateway.>\"'"),
        "{seen:?}"
    );
}
