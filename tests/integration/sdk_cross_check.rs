//! Cross-check: a few thousand (user, flag) pairs — rules of every kind,
//! integer and fractional rollouts, weighted variants, a `bucket_by`
//! attribute, non-ASCII user ids — evaluated by the server (REST with a
//! server token, and OFREP), the Rust SDK and the JavaScript SDK (both
//! evaluating locally on definitions from the stream), which must agree
//! exactly.

use std::process::{Command, Stdio};
use std::time::Duration;

use flagbase_sdk::{ConnectionState, Context, LocalClient, LocalOptions};
use serde_json::{json, Value};

use crate::harness::Flagbase;
use crate::sdk_rust::seeded;

/// `POST /api/v1/evaluate` with a server token: a machine token evaluates
/// for the context it supplies.
async fn rest(fb: &Flagbase, token: &str, contexts: &[Value]) -> Vec<Vec<Answer>> {
    let mut rows = Vec::new();
    for ctx in contexts {
        let r = fb
            .post(
                "/api/v1/evaluate",
                json!({"context": ctx, "keys": keys()}),
                Some(token),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        rows.push(
            r.body["flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    (
                        f["value"].clone(),
                        f["variant"].clone(),
                        f["reason"].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
        );
    }
    rows
}

const USERS: usize = 300;

fn flags() -> Vec<Value> {
    vec![
        json!({"key": "mix", "type": "string", "enabled": true, "default_value": "none",
               "variants": [{"key": "eu", "value": "EU"}, {"key": "staff", "value": "STAFF"},
                            {"key": "adult", "value": "ADULT"}, {"key": "new-app", "value": "NEW"},
                            {"key": "re", "value": "RE"}],
               "rules": [
                 {"attribute": "email", "operator": "ends_with", "value": "@CORP.example", "variant": "staff", "priority": 0},
                 {"conditions": [{"attribute": "country", "operator": "in", "value": ["NL", "BE", "DE"]},
                                 {"attribute": "age", "operator": "gte", "value": 18}], "variant": "eu", "priority": 1},
                 {"attribute": "age", "operator": "gt", "value": "40.5", "variant": "adult", "priority": 2},
                 {"attribute": "version", "operator": "semver_gt", "value": "1.2.0", "variant": "new-app", "priority": 3},
                 {"attribute": "name", "operator": "matches", "value": "^[a-c]", "variant": "re", "priority": 4}]}),
        json!({"key": "rollout-25", "enabled": true, "rollout_percentage": 25}),
        json!({"key": "rollout-frac", "enabled": true, "rollout_percentage": 33.333,
               "targeted_users": ["josé-1", "用户-2", "😀-3"]}),
        json!({"key": "weights", "type": "string", "enabled": true, "default_value": "x",
               "variants": [{"key": "a", "value": "A", "weight": 12.5}, {"key": "b", "value": "B", "weight": 37.5},
                            {"key": "c", "value": "C", "weight": 20.001}, {"key": "d", "value": "D", "weight": 29.999}]}),
        json!({"key": "by-account", "type": "number", "enabled": true, "default_value": 0, "bucket_by": "account",
               "variants": [{"key": "one", "value": 1, "weight": 50}, {"key": "two", "value": 2, "weight": 50}]}),
        json!({"key": "big-ids", "enabled": true,
               "rules": [{"attribute": "account", "operator": "equals", "value": "12345678901234567890", "variant": true}]}),
        json!({"key": "groups", "enabled": true,
               "rules": [{"attribute": "groups", "operator": "contains", "value": "beta", "variant": true},
                         {"attribute": "groups", "operator": "not_exists", "variant": true}]}),
        json!({"key": "dates", "enabled": true,
               "rules": [{"attribute": "signup", "operator": "after", "value": "2024-06-01T00:00:00+02:00", "variant": true}]}),
        json!({"key": "unicode-rule", "enabled": true,
               "rules": [{"attribute": "userId", "operator": "starts_with", "value": "JOSÉ", "variant": true}]}),
        json!({"key": "json", "type": "json", "enabled": true, "default_value": {"theme": "light"},
               "rules": [{"attribute": "plan", "operator": "not_equals", "value": "free", "variant": {"theme": "dark"}}]}),
        json!({"key": "disabled", "type": "string", "enabled": false, "default_value": "off",
               "rollout_percentage": 50, "variants": [{"key": "on", "value": "on"}]}),
    ]
}

fn contexts() -> Vec<Value> {
    let prefixes = ["user", "josé", "用户", "😀", "Ünïcødé", "ñ"];
    let countries = ["NL", "be", "US", "de", "FR"];
    let names = ["alice", "bob", "carol", "dave", "Éve"];
    let plans = ["free", "pro", "team"];
    (0..USERS)
        .map(|i| {
            let email = if i % 11 == 0 {
                format!("u{i}@corp.example")
            } else {
                format!("u{i}@mail.example")
            };
            let mut ctx = json!({
                "targetingKey": format!("{}-{i}", prefixes[i % prefixes.len()]),
                "country": countries[i % countries.len()],
                "age": (i * 7) % 70,
                "version": format!("1.{}.{}", i % 4, i % 3),
                "name": names[i % names.len()],
                "email": email,
                "plan": plans[i % plans.len()],
                "signup": format!("2024-{:02}-15T12:00:00Z", 1 + i % 12),
            });
            // Strings and numbers alternate as bucket values; one big id.
            ctx["account"] = match i % 3 {
                0 => json!(format!("acct-{}", i / 3)),
                1 => json!(i * 1000 + 7),
                _ => json!("12345678901234567890"),
            };
            match i % 4 {
                0 => ctx["groups"] = json!(["alpha", "Beta"]),
                1 => ctx["groups"] = json!([]),
                2 => ctx["groups"] = json!(["gamma"]),
                _ => {}
            }
            ctx
        })
        .collect()
}

/// One evaluation reduced to what every path reports: value, variant, reason.
type Answer = (Value, Value, String);

fn keys() -> Vec<String> {
    flags()
        .iter()
        .map(|f| f["key"].as_str().unwrap().to_string())
        .collect()
}

async fn rust_sdk(fb: &Flagbase, token: &str, contexts: &[Value]) -> Vec<Vec<Answer>> {
    let sdk = LocalClient::init(LocalOptions::new(&fb.base, token))
        .await
        .unwrap();
    assert_eq!(sdk.state(), ConnectionState::Connected);
    contexts
        .iter()
        .map(|c| {
            let ctx = Context::from_json(c.clone()).unwrap();
            keys()
                .iter()
                .map(|k| {
                    let e = sdk.evaluate(k, &ctx);
                    (e.value, json!(e.variant), e.reason)
                })
                .collect()
        })
        .collect()
}

fn js_sdk(fb: &Flagbase, token: &str, contexts: &[Value]) -> Vec<Vec<Answer>> {
    let mut child = Command::new("node")
        .arg("tests/interop/sdk_cross_check.mjs")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("FLAGBASE_URL", &fb.base)
        .env("FLAGBASE_TOKEN", token)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `node` ({e}): run scripts/install-test-deps.sh"));
    let input = json!({"contexts": contexts, "keys": keys()}).to_string();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = crate::harness::output_within(child, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "the JS driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Vec<(Value, Value, String)>> = serde_json::from_slice(&out.stdout).unwrap();
    rows
}

/// OFREP bulk answers for each context; OFREP's reason for `DEFAULT` is
/// `UNKNOWN` and its variant is always a string, so variants are compared
/// only where the engine names one.
async fn ofrep(fb: &Flagbase, token: &str, contexts: &[Value]) -> Vec<Vec<Answer>> {
    let mut rows = Vec::new();
    for ctx in contexts {
        let r = fb
            .post(
                "/ofrep/v1/evaluate/flags",
                json!({"context": ctx}),
                Some(token),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let by_key: std::collections::HashMap<&str, &Value> = r.body["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["key"].as_str().unwrap(), f))
            .collect();
        rows.push(
            keys()
                .iter()
                .map(|k| {
                    let f = by_key[k.as_str()];
                    (
                        f["value"].clone(),
                        f["variant"].clone(),
                        f["reason"].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
        );
    }
    rows
}

#[tokio::test]
async fn every_path_gives_the_same_answers() {
    let (fb, _admin, token) = seeded(&flags()).await;
    let contexts = contexts();
    let rust = rust_sdk(&fb, &token, &contexts).await;
    let js = js_sdk(&fb, &token, &contexts);
    let rest = rest(&fb, &token, &contexts).await;
    let server = ofrep(&fb, &token, &contexts).await;
    let keys = keys();
    let mut pairs = 0;
    let mut reasons = std::collections::BTreeSet::new();
    for (i, ctx) in contexts.iter().enumerate() {
        for (j, key) in keys.iter().enumerate() {
            let r = &rust[i][j];
            assert_eq!(&rest[i][j], r, "REST vs Rust SDK: {key} for {ctx}");
            assert_eq!(&js[i][j], r, "JS SDK vs Rust SDK: {key} for {ctx}");
            let (value, variant, reason) = &server[i][j];
            assert_eq!(value, &r.0, "OFREP vs Rust SDK: {key} for {ctx}");
            let expected_reason = if r.2 == "DEFAULT" { "UNKNOWN" } else { &r.2 };
            assert_eq!(reason, expected_reason, "OFREP reason: {key} for {ctx}");
            if !r.1.is_null() {
                assert_eq!(variant, &r.1, "OFREP variant: {key} for {ctx}");
            }
            reasons.insert(r.2.clone());
            pairs += 1;
        }
    }
    assert!(pairs >= 3000, "{pairs} pairs");
    // The set exercises every way a value is chosen.
    for reason in ["TARGETING_MATCH", "SPLIT", "DEFAULT", "DISABLED"] {
        assert!(reasons.contains(reason), "no {reason} among {reasons:?}");
    }
}
