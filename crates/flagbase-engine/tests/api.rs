//! Tests of the public API the server uses: snapshots, typed evaluation,
//! serialization of results and errors.

use std::sync::Arc;

use flagbase_engine::{
    compile, validate, Context, ErrorCode, FlagSpec, FlagType, Reason, Snapshot, ValidationError,
};
use serde_json::{json, Value};

fn spec(v: Value) -> FlagSpec {
    serde_json::from_value(v).unwrap()
}

fn snapshot() -> Snapshot {
    Snapshot::from_specs([
        spec(json!({"key": "b-flag", "enabled": true, "default_value": true})),
        spec(json!({"key": "a-flag", "type": "string", "enabled": true, "default_value": "x",
                    "variants": [{"key": "one", "value": "1"}],
                    "rules": [{"attribute": "plan", "operator": "in", "value": "pro,team", "variant": "one"}]})),
    ])
    .unwrap()
}

#[test]
fn evaluation_serializes_in_openfeature_style() {
    let snap = snapshot();
    let ctx = Context::new().with("plan", "Team");
    let eval = snap.evaluate("a-flag", &ctx);
    assert_eq!(
        serde_json::to_value(eval).unwrap(),
        json!({"value": "1", "variant": "one", "reason": "TARGETING_MATCH"})
    );
    let missing = snap.evaluate("nope", &ctx);
    assert_eq!(
        serde_json::to_value(missing).unwrap(),
        json!({"value": null, "reason": "ERROR", "error_code": "FLAG_NOT_FOUND"})
    );
    assert_eq!(Reason::TargetingMatch.as_str(), "TARGETING_MATCH");
    assert_eq!(
        ErrorCode::TargetingKeyMissing.to_string(),
        "TARGETING_KEY_MISSING"
    );
}

#[test]
fn typed_evaluation_reports_type_mismatch() {
    let snap = snapshot();
    let ctx = Context::new();
    let eval = snap.evaluate_typed("a-flag", &ctx, FlagType::Boolean);
    assert_eq!(eval.reason, Reason::Error);
    assert_eq!(eval.error_code, Some(ErrorCode::TypeMismatch));
    assert_eq!(eval.value, &Value::Null);
    let ok = snap.evaluate_typed("b-flag", &ctx, FlagType::Boolean);
    assert_eq!((ok.value, ok.reason), (&json!(true), Reason::Static));
}

#[test]
fn evaluate_all_is_sorted_by_key() {
    let snap = snapshot();
    let ctx = Context::new();
    let keys: Vec<&str> = snap.evaluate_all(&ctx).map(|(k, _)| k).collect();
    assert_eq!(keys, ["a-flag", "b-flag"]);
}

#[test]
fn snapshots_are_updated_by_copy() {
    let snap = snapshot();
    let replaced = Arc::new(
        compile(spec(
            json!({"key": "b-flag", "enabled": false, "default_value": true}),
        ))
        .unwrap(),
    );
    let added = Arc::new(compile(spec(json!({"key": "c-flag", "enabled": true}))).unwrap());
    let next = snap.with_flag(replaced).with_flag(added);
    let ctx = Context::new();
    assert_eq!(snap.evaluate("b-flag", &ctx).reason, Reason::Static);
    assert_eq!(next.evaluate("b-flag", &ctx).reason, Reason::Disabled);
    assert_eq!(next.len(), 3);
    let keys: Vec<&str> = next.flags().map(|f| f.key()).collect();
    assert_eq!(keys, ["a-flag", "b-flag", "c-flag"]);
    let smaller = next.without_flag("a-flag");
    assert_eq!(smaller.len(), 2);
    assert_eq!(
        smaller.evaluate("a-flag", &ctx).error_code,
        Some(ErrorCode::FlagNotFound)
    );
    assert!(Snapshot::new().is_empty());
}

#[test]
fn duplicate_keys_are_rejected() {
    let err = Snapshot::from_specs([
        spec(json!({"key": "same"})),
        spec(json!({"key": "other"})),
        spec(json!({"key": "same"})),
    ])
    .unwrap_err();
    assert_eq!(err.key, "same");
    assert_eq!(err.to_string(), "flag \"same\": key: duplicate flag key");
}

#[test]
fn snapshot_errors_name_the_flag_and_field() {
    let err = Snapshot::from_specs([spec(json!({"key": "f", "rules": [
        {"attribute": "a", "operator": "eqals", "value": 1, "variant": true}]}))])
    .unwrap_err();
    assert_eq!(
        err.error,
        ValidationError {
            field: "rules[0].operator".into(),
            reason: "unknown operator \"eqals\"".into()
        }
    );
}

#[test]
fn validate_does_not_need_ownership() {
    let s = spec(json!({"key": "ok", "type": "number", "default_value": 3}));
    assert!(validate(&s).is_ok());
    let compiled = compile(s.clone()).unwrap();
    assert_eq!(compiled.spec(), &s);
    assert_eq!(compiled.flag_type(), FlagType::Number);
}

#[test]
fn context_deserializes_from_request_json() {
    let ctx: Context = serde_json::from_str(
        r#"{"targetingKey": "user-42", "role": "developer", "groups": ["a"], "age": 31}"#,
    )
    .unwrap();
    assert_eq!(ctx.user_id(), Some("user-42"));
    let snap = Snapshot::from_specs([spec(json!({"key": "r", "enabled": true, "rules": [
        {"conditions": [
            {"attribute": "groups", "operator": "contains", "value": "A"},
            {"attribute": "age", "operator": "gt", "value": 30},
            {"attribute": "targetingKey", "operator": "starts_with", "value": "user-"}],
         "variant": true}]}))])
    .unwrap();
    assert_eq!(snap.evaluate("r", &ctx).reason, Reason::TargetingMatch);
}

#[test]
fn many_attributes_beyond_the_lookup_cache_still_work() {
    // 12 distinct attributes: more than the per-evaluation cache holds.
    let conditions: Vec<Value> = (0..12)
        .map(|i| json!({"attribute": format!("a{i}"), "operator": "equals", "value": i}))
        .collect();
    let snap = Snapshot::from_specs([spec(json!({"key": "many", "enabled": true,
        "rules": [{"conditions": conditions, "variant": true}]}))])
    .unwrap();
    let mut ctx = Context::new();
    for i in 0..12 {
        ctx.insert(format!("a{i}"), i);
    }
    assert_eq!(snap.evaluate("many", &ctx).reason, Reason::TargetingMatch);
    ctx.insert("a11", 0);
    assert_eq!(snap.evaluate("many", &ctx).reason, Reason::Default);
}

#[test]
fn snapshots_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Snapshot>();
    assert_send_sync::<Arc<flagbase_engine::CompiledFlag>>();
}

#[test]
fn oversized_definitions_are_refused_before_any_other_work() {
    use flagbase_engine::{
        MAX_CONDITIONS, MAX_RULES, MAX_TARGETED_USERS, MAX_TEXT_LEN, MAX_VARIANTS,
    };
    let rule = json!({"attribute": "a", "operator": "equals", "value": "x", "variant": true});
    let condition = json!({"attribute": "a", "operator": "exists"});
    let variants: Vec<_> = (0..=MAX_VARIANTS)
        .map(|i| json!({"key": format!("v{i}"), "value": i}))
        .collect();
    let cases = [
        (
            json!({"key": "k", "name": "n".repeat(MAX_TEXT_LEN + 1)}),
            "name",
        ),
        (
            json!({"key": "k", "description": "d".repeat(MAX_TEXT_LEN + 1)}),
            "description",
        ),
        (
            json!({"key": "k", "type": "number", "default_value": 0, "variants": variants}),
            "variants",
        ),
        (
            json!({"key": "k", "rules": vec![rule; MAX_RULES + 1]}),
            "rules",
        ),
        (
            json!({"key": "k", "targeted_users": (0..=MAX_TARGETED_USERS).map(|i| format!("u{i}")).collect::<Vec<_>>()}),
            "targeted_users",
        ),
        (
            json!({"key": "k", "rules": [{"conditions": vec![condition; MAX_CONDITIONS + 1], "variant": true}]}),
            "rules[0].conditions",
        ),
    ];
    for (spec, field) in cases {
        let spec: FlagSpec = serde_json::from_value(spec).unwrap();
        let err = validate(&spec).unwrap_err();
        assert_eq!(err.field, field, "{err}");
        assert!(err.reason.starts_with("must have at most"), "{err}");
    }
    // At the limit is fine.
    let spec: FlagSpec = serde_json::from_value(json!({"key": "k", "rules": vec![json!({"attribute": "a", "operator": "equals", "value": "x", "variant": true}); MAX_RULES]})).unwrap();
    assert!(validate(&spec).is_ok());
}

/// `levels` arrays nested inside each other around `leaf`.
fn nested(levels: usize, leaf: Value) -> Value {
    (0..levels).fold(leaf, |inner, _| Value::Array(vec![inner]))
}

/// A `json` flag whose default value nested 126 arrays deep was stored, and
/// its audit record (the definition wrapped a few levels deeper) could no
/// longer be read back by a reader with serde_json's 128-level limit.
#[test]
fn regression_deeply_nested_json_values_are_refused_at_write_time() {
    use flagbase_engine::MAX_NESTING;
    let deep = nested(126, json!(1));
    let over = nested(MAX_NESTING + 1, json!(1));
    let reason = format!("nests deeper than {MAX_NESTING} levels");
    let cases = [
        (
            json!({"key": "k", "type": "json", "default_value": deep}),
            "default_value",
        ),
        (
            json!({"key": "k", "type": "json", "default_value": over.clone()}),
            "default_value",
        ),
        (
            json!({"key": "k", "type": "json", "default_value": 1,
                   "variants": [{"key": "a", "value": 1}, {"key": "b", "value": {"x": over.clone()}}]}),
            "variants[1].value",
        ),
        (
            json!({"key": "k", "type": "json", "default_value": 1,
                   "rules": [{"attribute": "a", "operator": "exists", "variant": over.clone()}]}),
            "rules[0].variant",
        ),
        (
            json!({"key": "k", "rules": [{"attribute": "a", "operator": "in", "value": over.clone(), "variant": true}]}),
            "rules[0].value",
        ),
        (
            json!({"key": "k", "rules": [{"conditions": [{"attribute": "a", "operator": "exists"},
                   {"attribute": "a", "operator": "in", "value": over}], "variant": true}]}),
            "rules[0].conditions[1].value",
        ),
    ];
    for (spec, field) in cases {
        let spec: FlagSpec = serde_json::from_value(spec).unwrap();
        let err = validate(&spec).unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.reason.as_str()),
            (field, reason.as_str())
        );
    }
    // Exactly at the limit (arrays and objects count alike) is accepted and
    // served as written.
    let at_limit = nested(MAX_NESTING - 1, json!({"leaf": true}));
    let flag = compile(spec(
        json!({"key": "k", "type": "json", "enabled": true, "default_value": at_limit.clone()}),
    ))
    .unwrap();
    assert_eq!(flag.evaluate(&Context::new()).value, &at_limit);
    // A value built in code far deeper than serde_json's parser allows is
    // refused without walking all of it.
    // (Built directly: deserializing it would recurse as deep as it nests.)
    let mut spec = spec(json!({"key": "k", "type": "json", "default_value": 1}));
    spec.default_value = Some(nested(1000, json!(1)));
    assert_eq!(validate(&spec).unwrap_err().field, "default_value");
}

/// As `f64`, "1234567890123456789" equals "…700", "…800" and "…850", and
/// 2^53 + 1 equals 2^53: a feature granted to one id reached others.
#[test]
fn regression_big_numeric_ids_never_match_their_neighbours() {
    let listed = "1234567890123456789";
    let long: Vec<String> = (0..20)
        .map(|i| format!("99999999999999999{i:02}"))
        .chain([listed.to_string()])
        .collect();
    let snap = Snapshot::from_specs([
        spec(json!({"key": "short", "enabled": true,
            "rules": [{"attribute": "userId", "operator": "in", "value": [listed], "variant": true}]})),
        spec(json!({"key": "long", "enabled": true,
            "rules": [{"attribute": "userId", "operator": "in", "value": long, "variant": true}]})),
        spec(json!({"key": "eq", "enabled": true,
            "rules": [{"attribute": "userId", "operator": "equals", "value": "9007199254740993", "variant": true}]})),
    ])
    .unwrap();
    let on = |key: &str, user: &str| {
        snap.evaluate(key, &Context::with_targeting_key(user)).value == &json!(true)
    };
    for key in ["short", "long"] {
        assert!(on(key, listed), "{key}");
        for other in [
            "1234567890123456700",
            "1234567890123456800",
            "1234567890123456850",
        ] {
            assert!(!on(key, other), "{key} matched {other}");
        }
    }
    assert!(on("long", "9999999999999999905"));
    assert!(!on("long", "9999999999999999920"));
    assert!(on("eq", "9007199254740993"));
    assert!(!on("eq", "9007199254740992"));
}
