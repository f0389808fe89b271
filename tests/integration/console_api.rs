//! The web console's backend end to end: serving `/ui` (embedded assets,
//! client routes, security headers, traversal), browser sessions (cookie
//! attributes, CSRF and origin checks, revocation, expiry, the shared login
//! throttle) and the API additions (explain, gateway simulate, toggle
//! reason, usage, admin user creation).

use std::time::{Duration, Instant};

use reqwest::RequestBuilder;
use serde_json::{json, Value};

use crate::harness::{Flagbase, Options, Resp, PASSWORD};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// A logged-in browser: its session cookie and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
    origin: String,
}

impl Browser {
    /// A read: the cookie only.
    fn read(&self, req: RequestBuilder) -> RequestBuilder {
        req.header("cookie", &self.cookie)
    }

    /// A write as the console's own page sends it.
    fn write(&self, req: RequestBuilder) -> RequestBuilder {
        req.header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .header("origin", &self.origin)
    }
}

async fn session_login(fb: &Flagbase, email: &str, password: &str) -> Resp {
    fb.send(
        fb.http
            .post(fb.url("/auth/session"))
            .json(&json!({"email": email, "password": password})),
    )
    .await
}

async fn browser(fb: &Flagbase, email: &str) -> Browser {
    let r = session_login(fb, email, PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let set = r
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    let cookie = set.split(';').next().unwrap().trim().to_string();
    Browser {
        cookie,
        csrf: r.body["csrf_token"].as_str().unwrap().to_string(),
        origin: fb.base.clone(),
    }
}

fn assert_security_headers(r: &Resp, what: &str) {
    assert_eq!(r.header("content-security-policy"), Some(CSP), "{what}");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(r.header("referrer-policy"), Some("same-origin"), "{what}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
}

#[tokio::test]
async fn console_banner_prints_the_console_and_setup_urls() {
    let fb = Flagbase::start().await;
    let token = fb.setup_token.clone().unwrap();
    let lines = fb.stdout.all();
    let console = format!("console:  {}/ui/", fb.base);
    assert!(lines.iter().any(|l| l.trim() == console), "{lines:?}");
    let setup = format!("{}/ui/setup?token={token}", fb.base);
    assert!(lines.iter().any(|l| l.ends_with(&setup)), "{lines:?}");
    // The URL opens the console's client route for setup.
    let page = fb.get(&format!("/ui/setup?token={token}"), None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.as_str().unwrap().contains("/ui/app.js"));
}

#[tokio::test]
async fn console_ui_is_served_with_security_headers_and_client_routes() {
    let fb = Flagbase::start().await;
    let index = fb.get("/ui/", None).await;
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    let etag = index.header("etag").expect("an ETag").to_string();
    assert_security_headers(&index, "/ui/");
    let html = index.body.as_str().unwrap().to_string();
    assert!(html.contains(r#"src="/ui/app.js""#), "{html}");
    // The shipped page has no inline script or style: the CSP forbids them.
    assert!(
        !html.contains("<style") && !html.contains("style="),
        "{html}"
    );
    for tag in html.split("<script").skip(1) {
        let open = &tag[..tag.find('>').unwrap_or(tag.len())];
        assert!(open.contains("src="), "an inline script: {html}");
    }

    // Client routes get the page, with the same headers.
    for route in [
        "/ui",
        "/ui/flags",
        "/ui/flags/new-checkout/history",
        "/ui/login",
    ] {
        let r = fb.get(route, None).await;
        assert_eq!(r.status, 200, "{route}");
        assert_eq!(r.body.as_str(), Some(html.as_str()), "{route}");
        assert_security_headers(&r, route);
    }
    // Revalidation answers 304.
    let again = fb
        .send(fb.http.get(fb.url("/ui/")).header("if-none-match", &etag))
        .await;
    assert_eq!(again.status, 304);
    assert_security_headers(&again, "304");

    // A missing asset is a 404, headers included.
    let missing = fb.get("/ui/no-such-file.js", None).await;
    assert_eq!(missing.error(404), "not_found");
    assert_security_headers(&missing, "missing asset");

    // `/` sends browsers to the console.
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = raw.get(fb.url("/")).send().await.unwrap();
    assert!(root.status().is_redirection(), "{}", root.status());
    assert_eq!(root.headers()["location"], "/ui/");
}

/// Requests sent byte for byte, so no client normalises the path first.
async fn raw_get(base: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn console_ui_traversal_never_leaves_the_asset_set() {
    // Served from disk too, where traversal would matter most: a secret
    // file beside the directory and a symbolic link pointing at it.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "TOP-SECRET").unwrap();
    let dev = outside.path().join("ui");
    std::fs::create_dir(&dev).unwrap();
    std::fs::write(dev.join("index.html"), "<!doctype html><p>DEV INDEX</p>").unwrap();
    std::fs::write(dev.join("app.js"), "export const dev = true;").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), dev.join("link.txt")).unwrap();

    let embedded = Flagbase::start().await;
    let from_disk =
        Flagbase::start_with(Options::default().set("ui.dev_dir", dev.to_str().unwrap())).await;

    let app = from_disk.get("/ui/app.js", None).await;
    assert_eq!(app.status, 200);
    assert_eq!(
        app.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(app.body.as_str(), Some("export const dev = true;"));
    let index = from_disk.get("/ui/flags", None).await;
    assert!(index.body.as_str().unwrap().contains("DEV INDEX"));

    for fb in [&embedded, &from_disk] {
        for path in [
            "/ui/../secret.txt",
            "/ui/../../Cargo.toml",
            "/ui/%2e%2e/secret.txt",
            "/ui/%2E%2E/%2e%2e/Cargo.toml",
            "/ui/..%2fsecret.txt",
            "/ui/..%5csecret.txt",
            "/ui/..\\secret.txt",
            "/ui/pages/../../secret.txt",
            "/ui//etc/passwd",
            "/ui/link.txt",
            "/ui/%00.js",
        ] {
            let (status, text) = raw_get(&fb.base, path).await;
            assert!(status == 404 || status == 400, "{path}: {status}\n{text}");
            assert!(!text.contains("TOP-SECRET"), "{path}");
            assert!(!text.contains("[package]"), "{path}");
        }
    }
}

#[tokio::test]
async fn console_session_cookie_attributes_and_reload() {
    let fb = Flagbase::start().await;
    fb.setup_admin("root@example.com").await;
    let r = session_login(&fb, "root@example.com", PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let set = r.header("set-cookie").unwrap().to_string();
    let attributes: Vec<&str> = set.split(';').map(str::trim).collect();
    assert!(attributes[0].starts_with("flagbase_session="), "{set}");
    // 32 random bytes, base64url.
    assert_eq!(attributes[0].len() - "flagbase_session=".len(), 43, "{set}");
    for wanted in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(attributes.contains(&wanted), "{wanted} in {set}");
    }
    assert!(!attributes.contains(&"Secure"), "plain HTTP: {set}");
    assert_eq!(r.body["user"]["email"], "root@example.com");
    assert_eq!(r.body["user"]["role"], "admin");
    let csrf = r.body["csrf_token"].as_str().unwrap();

    // A reload gets the same user and CSRF token back.
    let cookie = attributes[0];
    let again = fb
        .send(
            fb.http
                .get(fb.url("/auth/session"))
                .header("cookie", cookie),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["csrf_token"], csrf);
    assert_eq!(again.body["user"], r.body["user"]);
    // Without a cookie, or with a made-up one: 401.
    assert_eq!(
        fb.get("/auth/session", None).await.error(401),
        "unauthenticated"
    );
    let forged = fb
        .send(
            fb.http
                .get(fb.url("/auth/session"))
                .header("cookie", format!("flagbase_session={}", "A".repeat(43))),
        )
        .await;
    assert_eq!(forged.error(401), "unauthenticated");
    // Wrong password: 401 JSON and no cookie.
    let wrong = session_login(&fb, "root@example.com", "not the password").await;
    assert_eq!(wrong.error(401), "unauthenticated");
    assert!(wrong.header("set-cookie").is_none());
    // Another site cannot log a browser in.
    let cross = fb
        .send(
            fb.http
                .post(fb.url("/auth/session"))
                .header("origin", "https://evil.example")
                .json(&json!({"email": "root@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(cross.error(403), "csrf");

    // Behind HTTPS the cookie is Secure.
    let tls = Flagbase::start_with(Options::default().set("ui.secure_cookie", "true")).await;
    tls.setup_admin("root@example.com").await;
    let r = session_login(&tls, "root@example.com", PASSWORD).await;
    let set = r.header("set-cookie").unwrap();
    assert!(set.split(';').any(|a| a.trim() == "Secure"), "{set}");
}

#[tokio::test]
async fn console_session_writes_need_csrf_and_same_origin() {
    let fb = Flagbase::start().await;
    fb.setup_admin("root@example.com").await;
    let b = browser(&fb, "root@example.com").await;
    let flag = |key: &str| json!({"key": key, "enabled": true});

    // Reads need the cookie only.
    let list = fb.send(b.read(fb.http.get(fb.url("/api/v1/flags")))).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let me = fb.send(b.read(fb.http.get(fb.url("/auth/me")))).await;
    assert_eq!(me.body["email"], "root@example.com");

    let post = || fb.http.post(fb.url("/api/v1/flags"));
    let cookie_only = fb
        .send(
            post()
                .header("cookie", &b.cookie)
                .header("origin", &b.origin)
                .json(&flag("a")),
        )
        .await;
    assert_eq!(cookie_only.error(403), "csrf");
    let wrong = fb
        .send(
            post()
                .header("cookie", &b.cookie)
                .header("origin", &b.origin)
                .header("x-csrf-token", "x".repeat(b.csrf.len()))
                .json(&flag("a")),
        )
        .await;
    assert_eq!(wrong.error(403), "csrf");
    let cross = fb
        .send(
            post()
                .header("cookie", &b.cookie)
                .header("x-csrf-token", &b.csrf)
                .header("origin", "http://evil.example")
                .json(&flag("a")),
        )
        .await;
    assert_eq!(cross.error(403), "csrf");
    let cross_site = fb
        .send(
            post()
                .header("cookie", &b.cookie)
                .header("x-csrf-token", &b.csrf)
                .header("sec-fetch-site", "cross-site")
                .json(&flag("a")),
        )
        .await;
    assert_eq!(cross_site.error(403), "csrf");
    let no_origin = fb
        .send(
            post()
                .header("cookie", &b.cookie)
                .header("x-csrf-token", &b.csrf)
                .json(&flag("a")),
        )
        .await;
    assert_eq!(no_origin.error(403), "csrf");
    // Nothing was created by the refused requests.
    let list = fb.send(b.read(fb.http.get(fb.url("/api/v1/flags")))).await;
    assert_eq!(list.body["flags"], json!([]));

    let ok = fb.send(b.write(post()).json(&flag("a"))).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(ok.body["updated_by"], me.body["id"]);
    let fetch_marked = fb
        .send(
            post()
                .header("cookie", &b.cookie)
                .header("x-csrf-token", &b.csrf)
                .header("sec-fetch-site", "same-origin")
                .json(&flag("b")),
        )
        .await;
    assert_eq!(fetch_marked.status, 201, "{}", fetch_marked.body);

    // The change stream opens with the cookie (EventSource sends it).
    let stream = fb
        .http
        .get(fb.url("/api/v1/stream"))
        .header("cookie", &b.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
}

#[tokio::test]
async fn console_authorization_header_beats_the_cookie() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let b = browser(&fb, "root@example.com").await;
    let (_, plain) = fb.user("plain@example.com", "user", Some(&admin)).await;
    // The header's principal (a user) is the caller, not the admin cookie.
    let users = fb
        .send(
            b.read(fb.http.get(fb.url("/api/v1/users")))
                .bearer_auth(&plain),
        )
        .await;
    assert_eq!(users.error(403), "forbidden");
    let me = fb
        .send(b.read(fb.http.get(fb.url("/auth/me"))).bearer_auth(&plain))
        .await;
    assert_eq!(me.body["email"], "plain@example.com");
    // A bad header is refused even beside a good cookie.
    let bad = fb
        .send(
            b.read(fb.http.get(fb.url("/api/v1/users")))
                .bearer_auth("nonsense"),
        )
        .await;
    assert_eq!(bad.error(401), "unauthenticated");
    // A header credential needs no CSRF token.
    let create = fb
        .send(
            fb.http
                .post(fb.url("/api/v1/flags"))
                .header("cookie", &b.cookie)
                .bearer_auth(&admin)
                .json(&json!({"key": "by-header"})),
        )
        .await;
    assert_eq!(create.status, 201, "{}", create.body);
}

#[tokio::test]
async fn console_logout_revokes_the_session_server_side() {
    let fb = Flagbase::start().await;
    fb.setup_admin("root@example.com").await;
    let b = browser(&fb, "root@example.com").await;
    let other = browser(&fb, "root@example.com").await;

    let no_csrf = fb
        .send(
            fb.http
                .delete(fb.url("/auth/session"))
                .header("cookie", &b.cookie)
                .header("origin", &b.origin),
        )
        .await;
    assert_eq!(no_csrf.error(403), "csrf");
    // Another session's token does not log this one out.
    let foreign = fb
        .send(
            fb.http
                .delete(fb.url("/auth/session"))
                .header("cookie", &b.cookie)
                .header("origin", &b.origin)
                .header("x-csrf-token", &other.csrf),
        )
        .await;
    assert_eq!(foreign.error(403), "csrf");

    let out = fb
        .send(b.write(fb.http.delete(fb.url("/auth/session"))))
        .await;
    assert_eq!(out.status, 204, "{}", out.body);
    let cleared = out.header("set-cookie").unwrap();
    assert!(cleared.starts_with("flagbase_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // The old cookie is dead everywhere, even replayed by hand.
    for path in ["/auth/session", "/api/v1/flags", "/auth/me"] {
        let r = fb.send(b.read(fb.http.get(fb.url(path)))).await;
        assert_eq!(r.error(401), "unauthenticated", "{path}");
    }
    // The other session lives on.
    let alive = fb
        .send(other.read(fb.http.get(fb.url("/auth/session"))))
        .await;
    assert_eq!(alive.status, 200);
}

#[tokio::test]
async fn console_role_change_and_user_deletion_end_sessions() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let created = fb
        .post(
            "/api/v1/users",
            json!({"email": "dev@example.com", "password": PASSWORD, "role": "developer"}),
            Some(&admin),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();

    let dev = browser(&fb, "dev@example.com").await;
    let ok = fb
        .send(dev.read(fb.http.get(fb.url("/auth/session"))))
        .await;
    assert_eq!(ok.body["user"]["role"], "developer");
    let r = fb
        .put(
            &format!("/api/v1/users/{id}/role"),
            json!({"role": "user"}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = fb
        .send(dev.read(fb.http.get(fb.url("/api/v1/flags"))))
        .await;
    assert_eq!(r.error(401), "unauthenticated");
    // Raising the role back does not revive it.
    fb.put(
        &format!("/api/v1/users/{id}/role"),
        json!({"role": "developer"}),
        Some(&admin),
    )
    .await;
    let r = fb
        .send(dev.read(fb.http.get(fb.url("/auth/session"))))
        .await;
    assert_eq!(r.error(401), "unauthenticated");

    let dev = browser(&fb, "dev@example.com").await;
    assert_eq!(
        fb.send(dev.read(fb.http.get(fb.url("/auth/session"))))
            .await
            .status,
        200
    );
    let r = fb
        .delete(&format!("/api/v1/users/{id}"), Some(&admin))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = fb
        .send(dev.read(fb.http.get(fb.url("/auth/session"))))
        .await;
    assert_eq!(r.error(401), "unauthenticated");
}

#[tokio::test]
async fn console_sessions_expire_after_the_session_ttl() {
    let fb = Flagbase::start_with(Options::default().set("ui.session_ttl", "1s")).await;
    fb.setup_admin("root@example.com").await;
    let r = session_login(&fb, "root@example.com", PASSWORD).await;
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=1"));
    let b = browser(&fb, "root@example.com").await;
    let first = fb.send(b.read(fb.http.get(fb.url("/auth/session")))).await;
    assert_eq!(first.status, 200);
    // Expiry is fixed from login: poll until the clock passes it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = fb.send(b.read(fb.http.get(fb.url("/api/v1/flags")))).await;
        if r.status == 401 {
            assert_eq!(r.error(401), "unauthenticated");
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(Instant::now() < deadline, "the session never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn console_login_shares_the_login_throttle() {
    let fb = Flagbase::start().await;
    fb.setup_admin("root@example.com").await;
    // iam.login_max_failures (5) failures through the console...
    for _ in 0..5 {
        let r = session_login(&fb, "root@example.com", "wrong password!").await;
        assert_eq!(r.error(401), "unauthenticated");
    }
    // ...lock the account for /auth/login as well, and the other way round.
    let r = fb
        .post(
            "/auth/login",
            json!({"email": "root@example.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(r.error(429), "throttled");
    let r = session_login(&fb, "root@example.com", PASSWORD).await;
    assert_eq!(r.error(429), "throttled");
}

#[tokio::test]
async fn console_explain_agrees_with_evaluation() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let flag = json!({
        "key": "checkout",
        "enabled": true,
        "type": "string",
        "default_value": "old",
        "variants": [
            {"key": "a", "value": "A", "weight": 33.333},
            {"key": "b", "value": "B", "weight": 66.667}
        ],
        "targeted_users": ["vip"],
        "rules": [
            {"conditions": [
                {"attribute": "plan", "operator": "in", "value": ["pro", "team"]},
                {"attribute": "age", "operator": "gte", "value": 18}
            ], "variant": "b", "priority": 5},
            {"attribute": "email", "operator": "ends_with", "value": "@example.com", "variant": "a", "priority": 1}
        ]
    });
    let r = fb.post("/api/v1/flags", flag, Some(&admin)).await;
    assert_eq!(r.status, 201, "{}", r.body);

    let contexts = [
        json!({"targetingKey": "vip"}),
        json!({"targetingKey": "u1", "plan": "pro", "age": 30}),
        json!({"targetingKey": "u2", "plan": "pro", "age": 12}),
        json!({"targetingKey": "u3", "email": "x@example.com", "plan": "pro", "age": 40}),
        json!({"targetingKey": "u4"}),
        json!({"plan": "free"}),
    ];
    let expected_steps = ["targeted_user", "rule", "split", "rule", "split", "default"];
    for (ctx, step) in contexts.iter().zip(expected_steps) {
        let x = fb
            .post(
                "/api/v1/flags/checkout/explain",
                json!({"context": ctx}),
                Some(&admin),
            )
            .await;
        assert_eq!(x.status, 200, "{}", x.body);
        let e = fb
            .post(
                "/api/v1/evaluate",
                json!({"as": ctx, "keys": ["checkout"]}),
                Some(&admin),
            )
            .await;
        let e = &e.body["flags"][0];
        for field in ["value", "variant", "reason"] {
            assert_eq!(x.body[field], e[field], "{field} for {ctx}: {}", x.body);
        }
        assert_eq!(x.body["decided_by"], step, "{ctx}: {}", x.body);
        // Rules are listed in the order they are tried (priority 1 first).
        assert_eq!(x.body["rules"][0]["index"], 1, "{}", x.body);
        assert_eq!(x.body["rules"][1]["index"], 0, "{}", x.body);
    }
    // Details of one: the first rule (index 1) fails on email, the second
    // matches; its conditions show what was compared.
    let x = fb
        .post(
            "/api/v1/flags/checkout/explain",
            json!({"context": {"targetingKey": "u1", "plan": "pro", "age": 30}}),
            Some(&admin),
        )
        .await;
    assert_eq!(x.body["rule_index"], 0);
    assert_eq!(x.body["rules"][0]["matched"], false);
    assert_eq!(
        x.body["rules"][1]["conditions"][0],
        json!({"attribute": "plan", "operator": "in", "values": ["pro", "team"], "actual": "pro", "passed": true})
    );
    let bucket = x.body["bucket"].as_f64().unwrap();
    assert!((0.0..100.0).contains(&bucket), "{bucket}");
    // Without a bucket value there is no bucket.
    let x = fb
        .post(
            "/api/v1/flags/checkout/explain",
            json!({"context": {"plan": "free"}}),
            Some(&admin),
        )
        .await;
    assert_eq!(x.body["bucket"], Value::Null);
    assert_eq!(x.body["rule_index"], Value::Null);

    // Developers and up; unknown flags 404; no exposure is recorded.
    let (_, user) = fb.user("u@example.com", "user", Some(&admin)).await;
    let r = fb
        .post(
            "/api/v1/flags/checkout/explain",
            json!({"context": {}}),
            Some(&user),
        )
        .await;
    assert_eq!(r.error(403), "forbidden");
    let r = fb
        .post(
            "/api/v1/flags/nope/explain",
            json!({"context": {}}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.error(404), "not_found");
    let usage = fb.get("/api/v1/flags/usage", Some(&admin)).await;
    assert_eq!(
        usage.body["flags"]["checkout"],
        json!({"last_evaluated_at": null, "exposures_24h": 0}),
        "explain and previews count no exposure"
    );
}

/// `POST /api/v1/evaluate` with `as` counted exposures although the
/// context rule says a preview is recorded nowhere.
#[tokio::test]
async fn console_regression_a_preview_records_no_exposure() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    fb.post(
        "/api/v1/flags",
        json!({"key": "f", "enabled": true}),
        Some(&admin),
    )
    .await;
    let preview = json!({"as": {"targetingKey": "someone"}, "keys": ["f"]});
    let r = fb.post("/api/v1/evaluate", preview, Some(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let usage = fb.get("/api/v1/flags/usage", Some(&admin)).await;
    assert_eq!(usage.body["flags"]["f"]["exposures_24h"], 0);
    // An evaluation for oneself is one.
    let r = fb
        .post("/api/v1/evaluate", json!({"keys": ["f"]}), Some(&admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let usage = fb.get("/api/v1/flags/usage", Some(&admin)).await;
    assert_eq!(usage.body["flags"]["f"]["exposures_24h"], 1);
}

#[tokio::test]
async fn console_gateway_simulate_uses_the_proxys_choice() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let r = fb
        .post(
            "/api/v1/flags",
            json!({"key": "new-api", "enabled": true, "rules": [
                {"attribute": "header.x-beta", "operator": "equals", "value": "1", "variant": true}
            ]}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = fb
        .post(
            "/api/v1/gateway/routes",
            json!({"id": "api", "path": "/gateway/api", "methods": ["GET"], "flag_key": "new-api",
                   "target": "http://127.0.0.1:9/v2", "fallback_target": "http://127.0.0.1:9/v1"}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let simulate = |body: Value| fb.post("/api/v1/gateway/simulate", body, Some(&admin));

    let beta = simulate(json!({"method": "GET", "path": "/gateway/api/users",
                                "context": {"targetingKey": "u1", "header.x-beta": "1"}}))
    .await;
    assert_eq!(beta.status, 200, "{}", beta.body);
    assert_eq!(beta.body["matched"], true);
    assert_eq!(beta.body["route"]["id"], "api");
    assert_eq!(beta.body["flag"], "new-api");
    assert_eq!(beta.body["flag_enabled"], true);
    assert_eq!(beta.body["variant"], "true");
    assert_eq!(beta.body["target"], "http://127.0.0.1:9/v2");
    // Without the header the flag serves false: the fallback.
    let plain =
        simulate(json!({"method": "get", "path": "/api/users", "context": {"targetingKey": "u1"}}))
            .await;
    assert_eq!(plain.body["path"], "/gateway/api/users");
    assert_eq!(plain.body["target"], "http://127.0.0.1:9/v1");
    // The route allows GET only.
    let post = simulate(json!({"method": "POST", "path": "/gateway/api"})).await;
    assert_eq!(post.body["matched"], true);
    assert_eq!(post.body["target"], Value::Null);
    assert!(post.body["reason"].as_str().unwrap().contains("405"));
    // No route.
    let none = simulate(json!({"method": "GET", "path": "/gateway/other"})).await;
    assert_eq!(none.body["matched"], false);
    assert_eq!(none.body["route"], Value::Null);
    // A disabled flag: the fallback too.
    let r = fb
        .send(
            fb.http
                .patch(fb.url("/api/v1/flags/new-api/toggle"))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let off = simulate(json!({"method": "GET", "path": "/gateway/api",
                              "context": {"header.x-beta": "1"}}))
    .await;
    assert_eq!(off.body["flag_enabled"], false);
    assert_eq!(off.body["target"], "http://127.0.0.1:9/v1");
    // Users may not; bad input is a 400.
    let (_, user) = fb.user("u@example.com", "user", Some(&admin)).await;
    let r = fb
        .post(
            "/api/v1/gateway/simulate",
            json!({"method": "GET", "path": "/x"}),
            Some(&user),
        )
        .await;
    assert_eq!(r.error(403), "forbidden");
    let r = simulate(json!({"method": "GET", "path": "no-slash"})).await;
    assert_eq!(r.error(400), "invalid");
}

#[tokio::test]
async fn console_toggle_reason_is_in_the_audit_record() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    fb.post(
        "/api/v1/flags",
        json!({"key": "f", "enabled": true}),
        Some(&admin),
    )
    .await;
    let b = browser(&fb, "root@example.com").await;
    let r = fb
        .send(
            b.write(fb.http.patch(fb.url("/api/v1/flags/f/toggle")))
                .json(&json!({"reason": "incident #42: errors on checkout"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["enabled"], false);
    // Without a body, as before: no reason.
    let r = fb
        .send(
            fb.http
                .patch(fb.url("/api/v1/flags/f/toggle"))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let too_long = fb
        .send(
            fb.http
                .patch(fb.url("/api/v1/flags/f/toggle"))
                .bearer_auth(&admin)
                .json(&json!({"reason": "x".repeat(501)})),
        )
        .await;
    assert_eq!(too_long.error(400), "invalid");
    let unknown = fb
        .send(
            fb.http
                .patch(fb.url("/api/v1/flags/f/toggle"))
                .bearer_auth(&admin)
                .json(&json!({"why": "x"})),
        )
        .await;
    assert_eq!(unknown.error(400), "invalid");

    let history = fb.get("/api/v1/flags/f/history", Some(&admin)).await;
    let records = history.body["records"].as_array().unwrap();
    let toggles: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "flag.toggle")
        .collect();
    assert_eq!(toggles.len(), 2, "{}", history.body);
    // Newest first: the plain toggle has no reason, the first one has it.
    assert!(toggles[0].get("reason").is_none(), "{}", toggles[0]);
    assert_eq!(toggles[1]["reason"], "incident #42: errors on checkout");
    let audit = fb.get("/api/v1/audit", Some(&admin)).await;
    assert!(audit.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["reason"] == "incident #42: errors on checkout"));
}

#[tokio::test]
async fn console_usage_reports_last_evaluation_and_recent_exposures() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    for key in ["used", "unused"] {
        let r = fb
            .post(
                "/api/v1/flags",
                json!({"key": key, "enabled": true}),
                Some(&admin),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    for _ in 0..3 {
        let r = fb.get("/api/v1/flags/used/evaluate", Some(&admin)).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Read right away: counts still in memory are included.
    let usage = fb.get("/api/v1/flags/usage", Some(&admin)).await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    assert_eq!(usage.body["flags"]["used"]["exposures_24h"], 3);
    let at = usage.body["flags"]["used"]["last_evaluated_at"]
        .as_str()
        .expect("a time");
    assert!(at.ends_with('Z'), "{at}");
    assert_eq!(
        usage.body["flags"]["unused"],
        json!({"last_evaluated_at": null, "exposures_24h": 0})
    );
    // `usage` cannot be a flag key: that path is this report.
    let r = fb
        .post("/api/v1/flags", json!({"key": "usage"}), Some(&admin))
        .await;
    assert_eq!(r.error(400), "invalid");
    assert_eq!(
        fb.get("/api/v1/flags/usage", None).await.error(401),
        "unauthenticated"
    );
}

#[tokio::test]
async fn console_admins_create_users() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let r = fb
        .post(
            "/api/v1/users",
            json!({"email": "Dev@Example.com", "password": PASSWORD, "role": "developer"}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["email"], "dev@example.com");
    assert_eq!(r.body["role"], "developer");
    assert!(r.body.get("password_hash").is_none(), "{}", r.body);
    let dev = fb.login("dev@example.com").await;

    let again = fb
        .post(
            "/api/v1/users",
            json!({"email": "dev@example.com", "password": PASSWORD, "role": "user"}),
            Some(&admin),
        )
        .await;
    assert_eq!(again.error(409), "conflict");
    let by_dev = fb
        .post(
            "/api/v1/users",
            json!({"email": "x@example.com", "password": PASSWORD, "role": "user"}),
            Some(&dev),
        )
        .await;
    assert_eq!(by_dev.error(403), "forbidden");
    let anonymous = fb
        .post(
            "/api/v1/users",
            json!({"email": "y@example.com", "password": PASSWORD, "role": "user"}),
            None,
        )
        .await;
    assert_eq!(anonymous.error(401), "unauthenticated");
    let weak = fb
        .post(
            "/api/v1/users",
            json!({"email": "z@example.com", "password": "short", "role": "user"}),
            Some(&admin),
        )
        .await;
    assert_eq!(weak.error(400), "invalid");
    // From the console, with the session and its CSRF token.
    let b = browser(&fb, "root@example.com").await;
    let r = fb
        .send(b.write(fb.http.post(fb.url("/api/v1/users"))).json(&json!({
            "email": "ops@example.com", "password": PASSWORD, "role": "admin"
        })))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// With the session cookie an upstream could act as the signed-in user on
/// the API (the CSRF token is derived from it), so the gateway drops it.
#[tokio::test]
async fn console_session_cookie_never_reaches_a_gateway_upstream() {
    let up = crate::gateway_upstream::Upstream::start("up").await;
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let r = fb
        .post(
            "/api/v1/gateway/routes",
            json!({"path": "/gateway/app", "target": up.url, "forward_authorization": true}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let b = browser(&fb, "root@example.com").await;
    let r = fb
        .send(
            fb.http
                .get(fb.url("/gateway/app/page"))
                .header("cookie", format!("theme=dark; {}; cart=3", b.cookie)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = r.body["headers"]["cookie"].as_str().unwrap_or_default();
    assert_eq!(sent, "theme=dark; cart=3", "{}", r.body);
    assert!(!r
        .body
        .to_string()
        .contains(&b.cookie["flagbase_session=".len()..]));
}
