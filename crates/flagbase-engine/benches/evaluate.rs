//! Evaluation benchmarks: each case runs on flagbase-engine and, in the same
//! run, on the equivalent Unleash toggle in `unleash-yggdrasil`, so the
//! output reads side by side (`simple/flagbase`, `simple/yggdrasil`, ...).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use flagbase_engine::{Context, FlagSpec, Snapshot};
use serde_json::{json, Value};
use unleash_yggdrasil::{ClientFeatures, EngineState};

fn flagbase_snapshot() -> Snapshot {
    let mut ten_rules: Vec<Value> = (0..9)
        .map(|i| json!({"attribute": "role", "operator": "equals", "value": format!("role-{i}"), "variant": false, "priority": i}))
        .collect();
    ten_rules.push(json!({"attribute": "role", "operator": "equals", "value": "developer", "variant": true, "priority": 9}));
    let specs = json!([
        {"key": "simple", "enabled": true, "default_value": true},
        {"key": "one-rule", "enabled": true,
         "rules": [{"attribute": "role", "operator": "equals", "value": "developer", "variant": true}]},
        {"key": "ten-rules", "enabled": true, "rules": ten_rules},
        {"key": "rollout", "enabled": true, "rollout_percentage": 25},
        {"key": "variants", "type": "string", "enabled": true, "default_value": "none",
         "variants": [
            {"key": "a", "value": "a", "weight": 25}, {"key": "b", "value": "b", "weight": 25},
            {"key": "c", "value": "c", "weight": 25}, {"key": "d", "value": "d", "weight": 25}]}
    ]);
    let specs: Vec<FlagSpec> = serde_json::from_value(specs).unwrap();
    Snapshot::from_specs(specs).unwrap()
}

fn constraint(values: &[&str]) -> Value {
    json!({"contextName": "role", "operator": "IN", "values": values, "caseInsensitive": true, "inverted": false})
}

fn yggdrasil_engine() -> EngineState {
    let mut ten: Vec<Value> = (0..9)
        .map(|i| json!({"name": "default", "parameters": {}, "constraints": [constraint(&[&format!("role-{i}")])]}))
        .collect();
    ten.push(
        json!({"name": "default", "parameters": {}, "constraints": [constraint(&["developer"])]}),
    );
    let variant = |name: &str| {
        json!({"name": name, "weight": 250, "weightType": "variable", "stickiness": "default",
                                      "payload": {"type": "string", "value": name}})
    };
    let features = json!({
        "version": 2,
        "features": [
            {"name": "simple", "enabled": true, "strategies": [{"name": "default", "parameters": {}}]},
            {"name": "one-rule", "enabled": true,
             "strategies": [{"name": "default", "parameters": {}, "constraints": [constraint(&["developer"])]}]},
            {"name": "ten-rules", "enabled": true, "strategies": ten},
            {"name": "rollout", "enabled": true, "strategies": [{"name": "flexibleRollout",
              "parameters": {"rollout": "25", "stickiness": "default", "groupId": "rollout"}}]},
            {"name": "variants", "enabled": true, "strategies": [{"name": "default", "parameters": {}}],
             "variants": [variant("a"), variant("b"), variant("c"), variant("d")]}
        ]
    });
    let features: ClientFeatures = serde_json::from_value(features).unwrap();
    let engine = EngineState::default();
    engine.apply_client_features(features);
    engine
}

fn bench(c: &mut Criterion) {
    let snapshot = flagbase_snapshot();
    let engine = yggdrasil_engine();
    let ctx = Context::with_targeting_key("user-42").with("role", "developer");
    let ygg_ctx: unleash_yggdrasil::Context =
        serde_json::from_value(json!({"userId": "user-42", "properties": {"role": "developer"}}))
            .unwrap();

    // Sanity: both engines agree on the boolean cases before timing them.
    for key in ["simple", "one-rule", "ten-rules"] {
        assert_eq!(snapshot.evaluate(key, &ctx).value, &json!(true), "{key}");
        assert!(engine.is_enabled(key, &ygg_ctx, &None), "{key}");
    }
    assert!(snapshot.evaluate("variants", &ctx).variant.is_some());
    assert!(engine.get_variant("variants", &ygg_ctx, &None).enabled);

    for key in ["simple", "one-rule", "ten-rules", "rollout"] {
        let mut group = c.benchmark_group(key);
        group.bench_function("flagbase", |b| {
            b.iter(|| black_box(snapshot.evaluate(black_box(key), black_box(&ctx))).reason)
        });
        group.bench_function("yggdrasil", |b| {
            b.iter(|| engine.is_enabled(black_box(key), black_box(&ygg_ctx), &None))
        });
        group.finish();
    }
    let mut group = c.benchmark_group("variants");
    group.bench_function("flagbase", |b| {
        b.iter(|| black_box(snapshot.evaluate(black_box("variants"), black_box(&ctx))).variant)
    });
    group.bench_function("yggdrasil", |b| {
        b.iter(|| engine.get_variant(black_box("variants"), black_box(&ygg_ctx), &None))
    });
    group.finish();

    let mut group = c.benchmark_group("all-5");
    group.bench_function("flagbase", |b| {
        b.iter(|| {
            snapshot
                .evaluate_all(black_box(&ctx))
                .filter(|(_, e)| e.value.as_bool() == Some(true))
                .count()
        })
    });
    group.bench_function("yggdrasil", |b| {
        b.iter(|| {
            engine
                .resolve_all(black_box(&ygg_ctx), &None)
                .map(|m| m.len())
        })
    });
    group.finish();

    bench_numbers(c);
}

/// Numeric comparisons (flagbase only: they have no exact yggdrasil
/// counterpart): big ids in short and long `in` lists, `equals` on a numeric
/// string, and `gte` on a JSON number and on a numeric string.
fn bench_numbers(c: &mut Criterion) {
    let ids: Vec<String> = (0..20)
        .map(|i| format!("12345678901234567{i:02}"))
        .collect();
    let specs = json!([
        {"key": "in-short", "enabled": true,
         "rules": [{"attribute": "userId", "operator": "in", "value": ids[..4], "variant": true}]},
        {"key": "in-long", "enabled": true,
         "rules": [{"attribute": "userId", "operator": "in", "value": ids, "variant": true}]},
        {"key": "equals", "enabled": true,
         "rules": [{"attribute": "account", "operator": "equals", "value": "9007199254740993", "variant": true}]},
        {"key": "gte-number", "enabled": true,
         "rules": [{"attribute": "age", "operator": "gte", "value": 21, "variant": true}]},
        {"key": "gte-string", "enabled": true,
         "rules": [{"attribute": "score", "operator": "gte", "value": "10.5", "variant": true}]}
    ]);
    let specs: Vec<FlagSpec> = serde_json::from_value(specs).unwrap();
    let snapshot = Snapshot::from_specs(specs).unwrap();
    let ctx = Context::with_targeting_key("1234567890123456703")
        .with("account", "9007199254740993")
        .with("age", 31)
        .with("score", "12.25");
    let mut group = c.benchmark_group("numbers");
    for key in ["in-short", "in-long", "equals", "gte-number", "gte-string"] {
        assert_eq!(snapshot.evaluate(key, &ctx).value, &json!(true), "{key}");
        group.bench_function(key, |b| {
            b.iter(|| black_box(snapshot.evaluate(black_box(key), black_box(&ctx))).reason)
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
