//! OFREP: the protocol checked over raw HTTP, and interop with the official
//! OpenFeature providers (Node `@openfeature/ofrep-provider`, Python
//! `openfeature-provider-ofrep`) driven by the suites in `tests/interop/`.
//!
//! The provider suites need `node` and `python3` with the packages that
//! `scripts/install-test-deps.sh` installs; when they are missing the tests
//! fail and name that command. They never skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{Flagbase, Resp};

const INSTALL_HINT: &str =
    "run `scripts/install-test-deps.sh` from the repository root (scripts/test runs it too)";
const SUITE_TIMEOUT: Duration = Duration::from_secs(180);

/// The flags every check here evaluates (the interop suites expect them).
fn flags() -> Vec<Value> {
    vec![
        json!({"key": "new-checkout-ui", "name": "New Checkout UI", "enabled": true,
               "default_value": false,
               "rules": [{"attribute": "role", "operator": "equals", "value": "developer",
                          "variant": true, "priority": 0}]}),
        json!({"key": "new-checkout-flow", "description": "Redesigned checkout", "enabled": true,
               "rollout_percentage": 25, "targeted_users": ["user-1", "user-3"]}),
        json!({"key": "banner-text", "type": "string", "enabled": true, "default_value": "hello",
               "variants": [{"key": "a", "value": "hi A"}, {"key": "b", "value": "hi B"}],
               "rules": [{"attribute": "country", "operator": "equals", "value": "NL",
                          "variant": "b", "priority": 0}]}),
        json!({"key": "max-items", "type": "number", "enabled": true, "default_value": 10,
               "rules": [{"attribute": "plan", "operator": "equals", "value": "pro",
                          "variant": 50, "priority": 0}]}),
        json!({"key": "theme", "type": "json", "enabled": true, "default_value": {"color": "blue"},
               "rules": [{"attribute": "beta", "operator": "equals", "value": "true",
                          "variant": {"color": "red"}, "priority": 0}]}),
    ]
}

/// A running instance with the flags above; returns it, the admin's JWT and
/// an `fbk_` API token with role `user`.
async fn seeded() -> (Flagbase, String, String) {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    for flag in flags() {
        let r = fb.post("/api/v1/flags", flag.clone(), Some(&admin)).await;
        assert_eq!(r.status, 201, "creating {flag}: {}", r.body);
    }
    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "ofrep-interop", "role": "user"}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let token = r.body["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("fbk_"), "{token}");
    (fb, admin, token)
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd` to completion (killed after `SUITE_TIMEOUT`).
fn run(mut cmd: Command, what: &str) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what} ({e}); {INSTALL_HINT}"));
    crate::harness::output_within(child, SUITE_TIMEOUT)
}

fn show(out: &Output) -> String {
    format!(
        "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A command for a provider suite, talking to `fb` with `token`.
fn suite_command(program: &str, fb: &Flagbase, token: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(repo_root())
        .env("FLAGBASE_URL", &fb.base)
        .env("FLAGBASE_TOKEN", token)
        // A proxy configured for the machine must not see loopback traffic.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

fn require_node() {
    let out = Command::new("node")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("`node` (>= 18) is not installed ({e}); {INSTALL_HINT}"));
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        out.status.success() && major >= 18,
        "`node` >= 18 is needed, found {version:?}; {INSTALL_HINT}"
    );
    let provider: &Path =
        "tests/interop/node/node_modules/@openfeature/ofrep-provider/package.json".as_ref();
    assert!(
        repo_root().join(provider).is_file(),
        "the Node OpenFeature packages are not installed (no {}); {INSTALL_HINT}",
        provider.display()
    );
}

fn require_python() {
    let out = Command::new("python3")
        .args([
            "-c",
            "import openfeature.api, openfeature.contrib.provider.ofrep, pytest",
        ])
        .output()
        .unwrap_or_else(|e| panic!("`python3` is not installed ({e}); {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "the Python OpenFeature packages are not importable ({}); {INSTALL_HINT}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

#[tokio::test]
async fn official_node_provider_evaluates_flagbase_flags() {
    require_node();
    let (fb, _admin, token) = seeded().await;
    let mut cmd = suite_command("node", &fb, &token);
    cmd.args(["--test", "tests/interop/node/ofrep.test.mjs"]);
    let out = tokio::task::spawn_blocking(move || run(cmd, "node"))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "the Node OFREP interop suite failed against {}:\n{}",
        fb.base,
        show(&out)
    );
}

#[tokio::test]
async fn official_python_provider_evaluates_flagbase_flags() {
    require_python();
    let (fb, _admin, token) = seeded().await;
    let mut cmd = suite_command("python3", &fb, &token);
    cmd.args([
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/interop/python/test_ofrep.py",
    ]);
    let out = tokio::task::spawn_blocking(move || run(cmd, "python3"))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "the Python OFREP interop suite failed against {}:\n{}",
        fb.base,
        show(&out)
    );
}

// ---------------------------------------------------------------------------
// The protocol over raw HTTP (no Node or Python needed).
// ---------------------------------------------------------------------------

const SINGLE: &str = "/ofrep/v1/evaluate/flags/";
const BULK: &str = "/ofrep/v1/evaluate/flags";

/// POSTs a raw body with `Content-Type: application/json`.
async fn post_raw(fb: &Flagbase, path: &str, body: &str, token: Option<&str>) -> Resp {
    let mut req = fb
        .http
        .post(fb.url(path))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    fb.send(req).await
}

async fn bulk(fb: &Flagbase, token: &str, context: Value, if_none_match: Option<&str>) -> Resp {
    let mut req = fb
        .http
        .post(fb.url(BULK))
        .bearer_auth(token)
        .json(&json!({ "context": context }));
    if let Some(tag) = if_none_match {
        req = req.header("if-none-match", tag);
    }
    fb.send(req).await
}

fn is_json(r: &Resp) -> bool {
    r.header("content-type")
        .is_some_and(|ct| ct.starts_with("application/json"))
}

/// The OFREP failure shape: `{key, errorCode, errorDetails}`.
fn assert_failure(r: &Resp, status: u16, key: &str, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert!(is_json(r), "content type {:?}", r.header("content-type"));
    assert_eq!(r.body["key"], json!(key), "{}", r.body);
    assert_eq!(r.body["errorCode"], json!(code), "{}", r.body);
    assert!(
        r.body["errorDetails"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "errorDetails must be a non-empty string: {}",
        r.body
    );
}

/// An RFC 9110 entity tag: `"..."` or `W/"..."`.
fn assert_entity_tag(tag: &str) {
    let opaque = tag.strip_prefix("W/").unwrap_or(tag);
    assert!(
        opaque.len() >= 2 && opaque.starts_with('"') && opaque.ends_with('"'),
        "ETag must be a quoted entity tag, got {tag:?}"
    );
}

#[tokio::test]
async fn ofrep_single_success_shape_and_both_auth_headers() {
    let (fb, _admin, token) = seeded().await;
    let ctx = json!({"context": {"targetingKey": "u1", "role": "developer"}});

    let r = fb
        .post(
            &format!("{SINGLE}new-checkout-ui"),
            ctx.clone(),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(is_json(&r), "content type {:?}", r.header("content-type"));
    assert_eq!(r.body["key"], json!("new-checkout-ui"), "{}", r.body);
    assert_eq!(r.body["value"], json!(true), "{}", r.body);
    assert_eq!(r.body["reason"], json!("TARGETING_MATCH"), "{}", r.body);
    assert!(r.body["metadata"].is_object(), "metadata: {}", r.body);
    // The official Python provider reads `variant` unconditionally.
    assert!(
        r.body.get("variant").is_some(),
        "`variant` must be present (the Python provider indexes it): {}",
        r.body
    );
    assert!(r.body.get("errorCode").is_none(), "{}", r.body);

    let via_api_key = fb
        .send(
            fb.http
                .post(fb.url(&format!("{SINGLE}new-checkout-ui")))
                .header("x-api-key", &token)
                .json(&ctx),
        )
        .await;
    assert_eq!(via_api_key.status, 200, "{}", via_api_key.body);
    assert_eq!(via_api_key.body, r.body);

    // Typed values arrive as JSON of their type; an integer stays an integer.
    let n = fb
        .post(
            &format!("{SINGLE}max-items"),
            json!({"context": {"targetingKey": "u1", "plan": "pro"}}),
            Some(&token),
        )
        .await;
    assert_eq!(n.status, 200, "{}", n.body);
    assert!(
        n.body["value"].is_u64(),
        "50 must be the integer 50: {}",
        n.body
    );
    assert_eq!(n.body["value"], json!(50));
    let o = fb
        .post(
            &format!("{SINGLE}theme"),
            json!({"context": {"targetingKey": "u1", "beta": "true"}}),
            Some(&token),
        )
        .await;
    assert_eq!(o.body["value"], json!({"color": "red"}), "{}", o.body);
    let s = fb
        .post(
            &format!("{SINGLE}banner-text"),
            json!({"context": {"targetingKey": "u1", "country": "NL"}}),
            Some(&token),
        )
        .await;
    assert_eq!(
        (&s.body["value"], &s.body["variant"], &s.body["reason"]),
        (&json!("hi B"), &json!("b"), &json!("TARGETING_MATCH")),
        "{}",
        s.body
    );

    // Both official providers send `{}` when there is no context at all.
    let empty = fb
        .post(&format!("{SINGLE}banner-text"), json!({}), Some(&token))
        .await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(empty.body["value"], json!("hello"), "{}", empty.body);
}

#[tokio::test]
async fn ofrep_requires_credentials() {
    let (fb, _admin, _token) = seeded().await;
    let ctx = json!({"context": {"targetingKey": "u1"}});
    let single = fb
        .post(&format!("{SINGLE}new-checkout-ui"), ctx.clone(), None)
        .await;
    assert_eq!(single.status, 401, "{}", single.body);
    let all = fb.post(BULK, ctx.clone(), None).await;
    assert_eq!(all.status, 401, "{}", all.body);
    let forged = fb
        .post(
            &format!("{SINGLE}new-checkout-ui"),
            ctx.clone(),
            Some("fbk_0000000000000000000000000000000000000000"),
        )
        .await;
    assert_eq!(forged.status, 401, "{}", forged.body);
    let forged_key = fb
        .send(
            fb.http
                .post(fb.url(BULK))
                .header("x-api-key", "fbk_0000000000000000000000000000000000000000")
                .json(&ctx),
        )
        .await;
    assert_eq!(forged_key.status, 401, "{}", forged_key.body);
}

#[tokio::test]
async fn ofrep_error_bodies() {
    let (fb, _admin, token) = seeded().await;

    let missing = fb
        .post(
            &format!("{SINGLE}does-not-exist"),
            json!({"context": {"targetingKey": "u1"}}),
            Some(&token),
        )
        .await;
    assert_failure(&missing, 404, "does-not-exist", "FLAG_NOT_FOUND");
    assert!(missing.body.get("value").is_none(), "{}", missing.body);

    let garbage = post_raw(
        &fb,
        &format!("{SINGLE}new-checkout-ui"),
        "{not json",
        Some(&token),
    )
    .await;
    assert_failure(&garbage, 400, "new-checkout-ui", "PARSE_ERROR");

    for context in [
        json!([1, 2]),
        json!("u1"),
        json!(42),
        json!(true),
        json!({"targetingKey": 5}),
    ] {
        let r = fb
            .post(
                &format!("{SINGLE}new-checkout-ui"),
                json!({ "context": context }),
                Some(&token),
            )
            .await;
        assert_failure(&r, 400, "new-checkout-ui", "INVALID_CONTEXT");
    }

    // Bulk failures carry `errorCode` (and no `flags`).
    let garbage = post_raw(&fb, BULK, "{not json", Some(&token)).await;
    assert_eq!(garbage.status, 400, "{}", garbage.body);
    assert_eq!(
        garbage.body["errorCode"],
        json!("PARSE_ERROR"),
        "{}",
        garbage.body
    );
    assert!(garbage.body.get("flags").is_none(), "{}", garbage.body);
    let bad_ctx = fb.post(BULK, json!({"context": [1]}), Some(&token)).await;
    assert_eq!(bad_ctx.status, 400, "{}", bad_ctx.body);
    assert_eq!(
        bad_ctx.body["errorCode"],
        json!("INVALID_CONTEXT"),
        "{}",
        bad_ctx.body
    );
}

#[tokio::test]
async fn ofrep_bulk_etag_and_not_modified() {
    let (fb, admin, token) = seeded().await;
    let dev = json!({"targetingKey": "u1", "role": "developer"});

    let first = bulk(&fb, &token, dev.clone(), None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(
        is_json(&first),
        "content type {:?}",
        first.header("content-type")
    );
    let listed = first.body["flags"].as_array().expect("flags array");
    let mut keys: Vec<&str> = listed.iter().map(|f| f["key"].as_str().unwrap()).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "banner-text",
            "max-items",
            "new-checkout-flow",
            "new-checkout-ui",
            "theme"
        ]
    );
    let ui = listed
        .iter()
        .find(|f| f["key"] == "new-checkout-ui")
        .unwrap();
    assert_eq!(
        (&ui["value"], &ui["reason"]),
        (&json!(true), &json!("TARGETING_MATCH")),
        "{ui}"
    );
    let etag = first
        .header("etag")
        .expect("bulk response has an ETag")
        .to_string();
    assert_entity_tag(&etag);

    // Same request, same result: same tag; If-None-Match gives 304, no body.
    let again = bulk(&fb, &token, dev.clone(), None).await;
    assert_eq!(
        again.header("etag"),
        Some(etag.as_str()),
        "ETag must be stable"
    );
    let cached = bulk(&fb, &token, dev.clone(), Some(&etag)).await;
    assert_eq!(cached.status, 304, "{}", cached.body);
    assert_eq!(cached.body, Value::Null, "a 304 has no body");
    assert_eq!(
        cached.header("etag"),
        Some(etag.as_str()),
        "a 304 repeats the ETag"
    );
    let listed_tags = bulk(
        &fb,
        &token,
        dev.clone(),
        Some(&format!("\"other\", {etag}")),
    )
    .await;
    assert_eq!(listed_tags.status, 304, "If-None-Match takes a list");
    let stale = bulk(&fb, &token, dev.clone(), Some("\"something-else\"")).await;
    assert_eq!(stale.status, 200, "{}", stale.body);

    // Another context evaluates differently, so it is another representation.
    let user = bulk(
        &fb,
        &token,
        json!({"targetingKey": "u1", "role": "user"}),
        Some(&etag),
    )
    .await;
    assert_eq!(user.status, 200, "a different evaluation must not be 304");
    assert_ne!(user.header("etag"), Some(etag.as_str()));

    // Changing the flags changes the tag, and the old tag no longer matches.
    let r = fb
        .post(
            "/api/v1/flags",
            json!({"key": "brand-new", "enabled": true, "default_value": true}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let after_create = bulk(&fb, &token, dev.clone(), Some(&etag)).await;
    assert_eq!(
        after_create.status, 200,
        "a new flag must invalidate the ETag"
    );
    let etag2 = after_create.header("etag").expect("ETag").to_string();
    assert_ne!(etag2, etag);
    assert!(
        after_create.body["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["key"] == "brand-new"),
        "{}",
        after_create.body
    );

    // Editing a flag (here: switching it off) changes the tag too.
    let mut edited = flags()[0].clone();
    edited["enabled"] = json!(false);
    let r = fb
        .put("/api/v1/flags/new-checkout-ui", edited, Some(&admin))
        .await;
    assert!(
        r.status == 200 || r.status == 204,
        "updating a flag: {} {}",
        r.status,
        r.body
    );
    let after_edit = bulk(&fb, &token, dev.clone(), Some(&etag2)).await;
    assert_eq!(
        after_edit.status, 200,
        "an edited flag must invalidate the ETag"
    );
    assert_ne!(after_edit.header("etag"), Some(etag2.as_str()));
    let ui = after_edit.body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "new-checkout-ui")
        .cloned()
        .unwrap();
    assert_eq!(ui["reason"], json!("DISABLED"), "{ui}");
}
