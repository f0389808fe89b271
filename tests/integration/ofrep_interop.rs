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
    // Always a string (the official Python provider reads it
    // unconditionally): a boolean flag without variants names its value.
    assert_eq!(r.body["variant"], json!("true"), "{}", r.body);
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
    assert_eq!(r.status, 200, "updating a flag: {}", r.body);
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

// ---------------------------------------------------------------------------
// The OFREP OpenAPI schema's rules, checked on every kind of answer.
// ---------------------------------------------------------------------------

/// The rules of the official OFREP schema (open-feature/protocol,
/// `service/openapi.yaml`, `info.version` 0.3.0, read at commit d1a63a4e),
/// written out as checks: which statuses each path may answer and what each
/// response schema requires. The schema file itself is not vendored.
///
/// Two rules are read as the schema evidently means them, because taken
/// literally no success body could validate: the value `oneOf` lists
/// `codeDefaultFlag`, whose schema (`type: object, properties: {}`) every
/// body satisfies, and `integerFlag` beside `floatFlag`, which every integer
/// satisfies. So a value is checked to be one of the listed types, and
/// "no `value`" is what `codeDefaultFlag` means (its description: "This
/// schema has no `value` property").
mod schema {
    use serde_json::Value;

    pub enum Path {
        Single,
        Bulk,
    }

    const REASONS: [&str; 5] = ["STATIC", "TARGETING_MATCH", "SPLIT", "DISABLED", "UNKNOWN"];
    const FAILURE_CODES: [&str; 4] = [
        "PARSE_ERROR",
        "TARGETING_KEY_MISSING",
        "INVALID_CONTEXT",
        "GENERAL",
    ];

    /// Everything in one answer that breaks the schema; empty when it follows it.
    pub fn violations(path: Path, status: u16, body: &Value, etag: Option<&str>) -> Vec<String> {
        let mut v = Vec::new();
        match (path, status) {
            (Path::Single, 200) => evaluation_success(body, "", &mut v),
            (Path::Single, 400) => evaluation_failure(body, "", &mut v),
            (Path::Single, 404) => flag_not_found(body, &mut v),
            (Path::Bulk, 200) => {
                bulk_success(body, &mut v);
                if etag.is_none() {
                    v.push("a bulk 200 carries an ETag header".into());
                }
            }
            (Path::Bulk, 304) => {
                if !body.is_null() {
                    v.push(format!("a 304 has no body, got {body}"));
                }
            }
            (Path::Bulk, 400) => bulk_failure(body, &mut v),
            // Listed without a body schema.
            (_, 401 | 403 | 429) => {}
            (_, 500) => general_error(body, &mut v),
            (_, other) => v.push(format!("status {other} is not an answer this path defines")),
        }
        v
    }

    fn object<'a>(
        body: &'a Value,
        at: &str,
        v: &mut Vec<String>,
    ) -> Option<&'a serde_json::Map<String, Value>> {
        let o = body.as_object();
        if o.is_none() {
            v.push(format!("{at}: must be an object, got {body}"));
        }
        o
    }

    fn required_string(
        o: &serde_json::Map<String, Value>,
        field: &str,
        at: &str,
        v: &mut Vec<String>,
    ) {
        match o.get(field) {
            Some(Value::String(_)) => {}
            Some(other) => v.push(format!("{at}.{field}: must be a string, got {other}")),
            None => v.push(format!("{at}.{field}: required")),
        }
    }

    fn optional_string(
        o: &serde_json::Map<String, Value>,
        field: &str,
        at: &str,
        v: &mut Vec<String>,
    ) {
        if let Some(value) = o.get(field) {
            if !value.is_string() {
                v.push(format!("{at}.{field}: must be a string, got {value}"));
            }
        }
    }

    fn one_of(
        o: &serde_json::Map<String, Value>,
        field: &str,
        allowed: &[&str],
        at: &str,
        v: &mut Vec<String>,
    ) {
        match o.get(field).and_then(Value::as_str) {
            Some(s) if allowed.contains(&s) => {}
            Some(s) => v.push(format!("{at}.{field}: {s:?} is not one of {allowed:?}")),
            None => v.push(format!("{at}.{field}: required, a string")),
        }
    }

    /// `metadata`: an object of booleans, strings and numbers.
    fn metadata(o: &serde_json::Map<String, Value>, at: &str, v: &mut Vec<String>) {
        let Some(m) = o.get("metadata") else { return };
        let Some(m) = m.as_object() else {
            v.push(format!("{at}.metadata: must be an object, got {m}"));
            return;
        };
        for (k, value) in m {
            if !(value.is_boolean() || value.is_string() || value.is_number()) {
                v.push(format!(
                    "{at}.metadata.{k}: must be a boolean, string or number"
                ));
            }
        }
    }

    fn evaluation_success(body: &Value, at: &str, v: &mut Vec<String>) {
        let Some(o) = object(body, at, v) else { return };
        required_string(o, "key", at, v);
        one_of(o, "reason", &REASONS, at, v);
        optional_string(o, "variant", at, v);
        metadata(o, at, v);
        match o.get("value") {
            None
            | Some(Value::Bool(_) | Value::String(_) | Value::Number(_) | Value::Object(_)) => {}
            Some(other) => v.push(format!(
                "{at}.value: must be a boolean, string, number or object, got {other}"
            )),
        }
    }

    fn evaluation_failure(body: &Value, at: &str, v: &mut Vec<String>) {
        let Some(o) = object(body, at, v) else { return };
        required_string(o, "key", at, v);
        one_of(o, "errorCode", &FAILURE_CODES, at, v);
        optional_string(o, "errorDetails", at, v);
        metadata(o, at, v);
    }

    fn flag_not_found(body: &Value, v: &mut Vec<String>) {
        let Some(o) = object(body, "", v) else { return };
        required_string(o, "key", "", v);
        one_of(o, "errorCode", &["FLAG_NOT_FOUND"], "", v);
        optional_string(o, "errorDetails", "", v);
        metadata(o, "", v);
    }

    fn bulk_success(body: &Value, v: &mut Vec<String>) {
        let Some(o) = object(body, "", v) else { return };
        metadata(o, "", v);
        if let Some(streams) = o.get("eventStreams") {
            if !streams.is_array() {
                v.push(format!(".eventStreams: must be an array, got {streams}"));
            }
        }
        let Some(flags) = o.get("flags").and_then(Value::as_array) else {
            v.push(".flags: required, an array".into());
            return;
        };
        for (i, item) in flags.iter().enumerate() {
            // `oneOf`: exactly one of the two must hold.
            let at = format!(".flags[{i}]");
            let (mut as_success, mut as_failure) = (Vec::new(), Vec::new());
            evaluation_success(item, &at, &mut as_success);
            evaluation_failure(item, &at, &mut as_failure);
            match (as_success.is_empty(), as_failure.is_empty()) {
                (true, false) | (false, true) => {}
                (true, true) => v.push(format!("{at}: both a success and a failure: {item}")),
                (false, false) => {
                    v.push(format!("{at}: neither a success nor a failure: {item}"));
                    v.extend(as_success);
                    v.extend(as_failure);
                }
            }
        }
    }

    fn bulk_failure(body: &Value, v: &mut Vec<String>) {
        let Some(o) = object(body, "", v) else { return };
        required_string(o, "errorCode", "", v);
        optional_string(o, "errorDetails", "", v);
    }

    fn general_error(body: &Value, v: &mut Vec<String>) {
        let Some(o) = object(body, "", v) else { return };
        optional_string(o, "errorDetails", "", v);
    }
}

/// Asserts that `r`, an answer on `path`, follows the schema.
fn assert_schema(path: schema::Path, r: &Resp, what: &str) {
    let violations = schema::violations(path, r.status, &r.body, r.header("etag"));
    assert!(
        violations.is_empty(),
        "{what}: {} {} breaks the OFREP schema:\n  {}",
        r.status,
        r.body,
        violations.join("\n  ")
    );
}

/// The checks above are not vacuous: the answers Flagbase gave before
/// (reason `DEFAULT`, `variant: null`) and other slips are caught.
#[test]
fn ofrep_schema_checks_catch_what_the_schema_forbids() {
    use schema::{violations, Path};
    let ok = json!({"key": "f", "value": true, "reason": "TARGETING_MATCH", "variant": "true", "metadata": {}});
    assert!(violations(Path::Single, 200, &ok, None).is_empty());
    let bad = [
        (
            Path::Single,
            200,
            json!({"key": "f", "value": false, "reason": "DEFAULT", "variant": "false"}),
        ),
        (
            Path::Single,
            200,
            json!({"key": "f", "value": false, "reason": "STATIC", "variant": null}),
        ),
        (
            Path::Single,
            200,
            json!({"key": "f", "value": null, "reason": "STATIC"}),
        ),
        (
            Path::Single,
            200,
            json!({"key": "f", "value": [1], "reason": "STATIC"}),
        ),
        (
            Path::Single,
            200,
            json!({"key": "f", "value": 1, "reason": "STATIC", "metadata": {"a": [1]}}),
        ),
        (
            Path::Single,
            400,
            json!({"key": "f", "errorCode": "TYPE_MISMATCH"}),
        ),
        (Path::Single, 400, json!({"errorCode": "PARSE_ERROR"})),
        (
            Path::Single,
            404,
            json!({"key": "f", "errorCode": "GENERAL"}),
        ),
        (Path::Single, 304, Value::Null),
        (
            Path::Bulk,
            200,
            json!({"flags": [{"key": "f", "errorCode": "FLAG_NOT_FOUND"}]}),
        ),
        (
            Path::Bulk,
            200,
            json!({"flags": [{"key": "f", "value": 1, "reason": "STATIC", "errorCode": "GENERAL"}]}),
        ),
        (Path::Bulk, 200, json!({"flag": []})),
        (Path::Bulk, 304, json!({"flags": []})),
        (Path::Bulk, 400, json!({"error": "x", "code": "invalid"})),
        (
            Path::Bulk,
            412,
            json!({"error": "x", "code": "precondition_failed"}),
        ),
    ];
    for (path, status, body) in bad {
        assert!(
            !violations(path, status, &body, Some("\"t\"")).is_empty(),
            "{status} {body} must break the schema"
        );
    }
    assert!(
        !violations(Path::Bulk, 200, &json!({"flags": []}), None).is_empty(),
        "a bulk 200 without an ETag"
    );
}

/// Issue 6, "OFREP exactly as specified": every kind of OFREP answer
/// follows the schema: single success for each value type and reason, bulk,
/// 304, and each error status. Values, reasons and variants are asserted
/// exactly, including the variant naming README documents.
#[tokio::test]
async fn ofrep_every_answer_follows_the_openapi_schema() {
    let (fb, admin, token) = seeded().await;
    for extra in [
        json!({"key": "ratio", "type": "number", "enabled": true, "default_value": 0.25}),
        json!({"key": "legacy-banner", "type": "string", "enabled": false, "default_value": "off",
               "variants": [{"key": "on", "value": "shown"}, {"key": "off", "value": "off"}]}),
        json!({"key": "colour", "type": "string", "enabled": true, "default_value": "grey",
               "variants": [{"key": "red", "value": "r", "weight": 50},
                            {"key": "green", "value": "g", "weight": 50}]}),
    ] {
        let r = fb.post("/api/v1/flags", extra.clone(), Some(&admin)).await;
        assert_eq!(r.status, 201, "{extra}: {}", r.body);
    }

    // (flag, context, value, reason, variant)
    let cases = [
        (
            "new-checkout-ui",
            json!({"targetingKey": "u1", "role": "developer"}),
            json!(true),
            "TARGETING_MATCH",
            "true",
        ),
        (
            "new-checkout-ui",
            json!({"targetingKey": "u1", "role": "user"}),
            json!(false),
            "UNKNOWN",
            "false",
        ),
        (
            "new-checkout-flow",
            json!({"targetingKey": "user-1"}),
            json!(true),
            "TARGETING_MATCH",
            "true",
        ),
        // user-42 is in bucket 73, outside the 25 % rollout: the default.
        (
            "new-checkout-flow",
            json!({"targetingKey": "user-42"}),
            json!(false),
            "UNKNOWN",
            "false",
        ),
        (
            "banner-text",
            json!({"targetingKey": "u1", "country": "NL"}),
            json!("hi B"),
            "TARGETING_MATCH",
            "b",
        ),
        (
            "banner-text",
            json!({"targetingKey": "u1", "country": "DE"}),
            json!("hello"),
            "UNKNOWN",
            "\"hello\"",
        ),
        (
            "max-items",
            json!({"targetingKey": "u1", "plan": "pro"}),
            json!(50),
            "TARGETING_MATCH",
            "50",
        ),
        (
            "max-items",
            json!({"targetingKey": "u1"}),
            json!(10),
            "UNKNOWN",
            "10",
        ),
        (
            "ratio",
            json!({"targetingKey": "u1"}),
            json!(0.25),
            "STATIC",
            "0.25",
        ),
        (
            "theme",
            json!({"targetingKey": "u1", "beta": "true"}),
            json!({"color": "red"}),
            "TARGETING_MATCH",
            "{\"color\":\"red\"}",
        ),
        (
            "legacy-banner",
            json!({"targetingKey": "u1"}),
            json!("off"),
            "DISABLED",
            "off",
        ),
    ];
    for (key, context, value, reason, variant) in cases {
        let r = fb
            .post(
                &format!("{SINGLE}{key}"),
                json!({ "context": context }),
                Some(&token),
            )
            .await;
        assert_schema(schema::Path::Single, &r, key);
        assert_eq!(
            (
                &r.body["key"],
                &r.body["value"],
                &r.body["reason"],
                &r.body["variant"]
            ),
            (&json!(key), &value, &json!(reason), &json!(variant)),
            "{key} for {context}: {}",
            r.body
        );
    }
    // A weighted split: whichever variant, the reason is SPLIT and the
    // variant is the one whose value is served.
    let r = fb
        .post(
            &format!("{SINGLE}colour"),
            json!({"context": {"targetingKey": "u1"}}),
            Some(&token),
        )
        .await;
    assert_schema(schema::Path::Single, &r, "colour");
    assert_eq!(r.body["reason"], "SPLIT", "{}", r.body);
    let expected_variant = if r.body["value"] == "r" {
        "red"
    } else {
        "green"
    };
    assert_eq!(r.body["variant"], expected_variant, "{}", r.body);

    // Bulk, and its 304.
    let all = bulk(&fb, &token, json!({"targetingKey": "user-42"}), None).await;
    assert_schema(schema::Path::Bulk, &all, "bulk");
    assert_eq!(
        all.body["flags"].as_array().map(Vec::len),
        Some(8),
        "{}",
        all.body
    );
    let etag = all.header("etag").expect("ETag").to_string();
    let cached = bulk(&fb, &token, json!({"targetingKey": "user-42"}), Some(&etag)).await;
    assert_eq!(cached.status, 304);
    assert_schema(schema::Path::Bulk, &cached, "bulk 304");

    // Errors on both paths.
    let parse = post_raw(&fb, &format!("{SINGLE}theme"), "{not json", Some(&token)).await;
    assert_failure(&parse, 400, "theme", "PARSE_ERROR");
    assert_schema(schema::Path::Single, &parse, "single parse error");
    let invalid = fb
        .post(
            &format!("{SINGLE}theme"),
            json!({"context": [1]}),
            Some(&token),
        )
        .await;
    assert_failure(&invalid, 400, "theme", "INVALID_CONTEXT");
    assert_schema(schema::Path::Single, &invalid, "single invalid context");
    let missing = fb
        .post(
            &format!("{SINGLE}nope"),
            json!({"context": {"targetingKey": "u1"}}),
            Some(&token),
        )
        .await;
    assert_failure(&missing, 404, "nope", "FLAG_NOT_FOUND");
    assert_schema(schema::Path::Single, &missing, "single not found");
    let anonymous = fb
        .post(&format!("{SINGLE}theme"), json!({"context": {}}), None)
        .await;
    assert_eq!(anonymous.status, 401);
    assert_schema(schema::Path::Single, &anonymous, "single 401");

    let parse = post_raw(&fb, BULK, "{not json", Some(&token)).await;
    assert_eq!(
        (parse.status, &parse.body["errorCode"]),
        (400, &json!("PARSE_ERROR"))
    );
    assert_schema(schema::Path::Bulk, &parse, "bulk parse error");
    let invalid = fb.post(BULK, json!({"context": "u1"}), Some(&token)).await;
    assert_eq!(
        (invalid.status, &invalid.body["errorCode"]),
        (400, &json!("INVALID_CONTEXT"))
    );
    assert_schema(schema::Path::Bulk, &invalid, "bulk invalid context");
    let anonymous = fb.post(BULK, json!({"context": {}}), None).await;
    assert_eq!(anonymous.status, 401);
    assert_schema(schema::Path::Bulk, &anonymous, "bulk 401");
}

/// `If-None-Match: *` used to answer 304 before the body was read, so even a
/// body that is not JSON got "not modified". The request is validated first;
/// and `*` names no earlier answer, so RFC 9110 §13.1.2 applies: the
/// condition is false and, for a POST, that is 412.
#[tokio::test]
async fn regression_bulk_if_none_match_star_validates_the_body_first() {
    let (fb, _admin, token) = seeded().await;
    let garbage = fb
        .send(
            fb.http
                .post(fb.url(BULK))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .header("if-none-match", "*")
                .body("{not json"),
        )
        .await;
    assert_eq!(garbage.status, 400, "{}", garbage.body);
    assert_eq!(garbage.body["errorCode"], "PARSE_ERROR", "{}", garbage.body);

    let bad_context = fb
        .send(
            fb.http
                .post(fb.url(BULK))
                .bearer_auth(&token)
                .header("if-none-match", "*")
                .json(&json!({"context": 7})),
        )
        .await;
    assert_eq!(bad_context.status, 400, "{}", bad_context.body);
    assert_eq!(bad_context.body["errorCode"], "INVALID_CONTEXT");

    // A stale tag with a bad body is a 400 too, not a 304.
    let first = bulk(&fb, &token, json!({"targetingKey": "u1"}), None).await;
    let etag = first.header("etag").unwrap().to_string();
    let stale_garbage = fb
        .send(
            fb.http
                .post(fb.url(BULK))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .header("if-none-match", &etag)
                .body("{not json"),
        )
        .await;
    assert_eq!(stale_garbage.status, 400, "{}", stale_garbage.body);

    let star = bulk(&fb, &token, json!({"targetingKey": "u1"}), Some("*")).await;
    assert_eq!(star.error(412), "precondition_failed");
    // A weak form of the current tag still matches (If-None-Match compares weakly).
    let weak = bulk(
        &fb,
        &token,
        json!({"targetingKey": "u1"}),
        Some(&format!("W/{etag}")),
    )
    .await;
    assert_eq!(weak.status, 304, "{}", weak.body);
}

/// `presented()` used to read `Authorization` and ignore `X-API-Key`, so a
/// request carrying a forged key beside a valid bearer was served. Every
/// credential a request carries must now be valid, and two must agree.
#[tokio::test]
async fn regression_an_invalid_credential_in_any_header_is_refused() {
    let (fb, admin, token) = seeded().await;
    const FORGED: &str = "fbk_0000000000000000000000000000000000000000";
    let path = format!("{SINGLE}new-checkout-ui");
    let ctx = json!({"context": {"targetingKey": "u1"}});
    let with = |headers: &[(&str, &str)]| {
        let mut req = fb.http.post(fb.url(&path)).json(&ctx);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        fb.send(req)
    };
    let bearer = format!("Bearer {token}");
    let forged_bearer = format!("Bearer {FORGED}");
    let admin_bearer = format!("Bearer {admin}");

    assert_eq!(with(&[("authorization", &bearer)]).await.status, 200);
    assert_eq!(with(&[("x-api-key", &token)]).await.status, 200);
    // The same credential in both headers is one principal.
    assert_eq!(
        with(&[("authorization", &bearer), ("x-api-key", &token)])
            .await
            .status,
        200
    );
    for headers in [
        vec![("authorization", bearer.as_str()), ("x-api-key", FORGED)],
        vec![
            ("authorization", forged_bearer.as_str()),
            ("x-api-key", token.as_str()),
        ],
        vec![("authorization", bearer.as_str()), ("x-api-key", "")],
        vec![
            ("authorization", "Basic dTpw"),
            ("x-api-key", token.as_str()),
        ],
        // Two valid credentials of one user with different roles (the
        // admin's session, the admin's `user` token): ambiguous authority.
        vec![
            ("authorization", admin_bearer.as_str()),
            ("x-api-key", token.as_str()),
        ],
        // The same header twice: neither value may be ignored.
        vec![
            ("authorization", bearer.as_str()),
            ("authorization", forged_bearer.as_str()),
        ],
        vec![("x-api-key", token.as_str()), ("x-api-key", FORGED)],
    ] {
        let r = with(&headers).await;
        assert_eq!(r.error(401), "unauthenticated", "{headers:?}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{headers:?}");
    }
    // The same rule holds on the REST API.
    let me = fb
        .send(
            fb.http
                .get(fb.url("/auth/me"))
                .bearer_auth(&admin)
                .header("x-api-key", FORGED),
        )
        .await;
    assert_eq!(me.error(401), "unauthenticated");
}
