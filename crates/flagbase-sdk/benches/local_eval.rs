//! Local evaluation cost per check: the SDK's `LocalClient` (definitions
//! behind an atomic pointer, kept by the stream task) against the bare
//! engine `Snapshot` on the same flags, interleaved in one run
//! (`<case>/engine`, `<case>/sdk`). The client is started from a bootstrap
//! file with no server listening, so no network is involved.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use flagbase_engine::{FlagSpec, Snapshot};
use flagbase_sdk::{Context, LocalClient, LocalOptions};
use serde_json::{json, Value};

fn flags() -> Vec<Value> {
    let mut ten_rules: Vec<Value> = (0..9)
        .map(|i| json!({"attribute": "role", "operator": "equals", "value": format!("role-{i}"), "variant": false, "priority": i}))
        .collect();
    ten_rules.push(json!({"attribute": "role", "operator": "equals", "value": "developer", "variant": true, "priority": 9}));
    serde_json::from_value(json!([
        {"key": "simple", "enabled": true, "default_value": true},
        {"key": "one-rule", "enabled": true,
         "rules": [{"attribute": "role", "operator": "equals", "value": "developer", "variant": true}]},
        {"key": "ten-rules", "enabled": true, "rules": ten_rules},
        {"key": "rollout", "enabled": true, "rollout_percentage": 25},
        {"key": "variants", "type": "string", "enabled": true, "default_value": "none",
         "variants": [
            {"key": "a", "value": "a", "weight": 25}, {"key": "b", "value": "b", "weight": 25},
            {"key": "c", "value": "c", "weight": 25}, {"key": "d", "value": "d", "weight": 25}]}
    ]))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("flagbase-sdk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bootstrap.json");
    std::fs::write(&file, json!({"seq": 1, "flags": flags()}).to_string()).unwrap();
    let mut options = LocalOptions::new("http://127.0.0.1:9", "bench").bootstrap(&file);
    options.init_timeout = Duration::from_millis(200);
    options.backoff_min = Duration::from_secs(60);
    let sdk = rt.block_on(LocalClient::init(options)).unwrap();
    let specs: Vec<FlagSpec> = serde_json::from_value(Value::Array(flags())).unwrap();
    let engine = Snapshot::from_specs(specs).unwrap();

    let ctx = Context::with_targeting_key("user-42").with("role", "developer");
    // Both sides answer the same question the same way: "is it on?" (a
    // full evaluation, then a comparison), and for the weighted flag also
    // "which variant?" as an owned String, which is what the SDK returns.
    for key in ["simple", "one-rule", "ten-rules", "rollout", "variants"] {
        let mut g = c.benchmark_group(key);
        g.bench_function("sdk", |b| {
            b.iter(|| black_box(sdk.is_enabled(black_box(key), black_box(&ctx))))
        });
        g.bench_function("engine", |b| {
            b.iter(|| {
                let e = engine.evaluate(black_box(key), black_box(&ctx));
                black_box(matches!(e.value, Value::Bool(true)))
            })
        });
        // A snapshot handle taken once, as a request handler would, then
        // one check per iteration.
        let snap = sdk.snapshot();
        g.bench_function("sdk-snapshot", |b| {
            b.iter(|| black_box(snap.is_enabled(black_box(key), black_box(&ctx))))
        });
        g.bench_function("sdk-again", |b| {
            b.iter(|| black_box(sdk.is_enabled(black_box(key), black_box(&ctx))))
        });
        g.finish();
    }
    // Many users in a row, as a server checks a flag per request: each
    // iteration takes the next of 64 contexts (no `black_box` round trip
    // through memory on the key and context for every check).
    let users: Vec<Context> = (0..64)
        .map(|i| Context::with_targeting_key(format!("user-{i}")).with("role", "developer"))
        .collect();
    for key in ["simple", "one-rule", "ten-rules", "rollout", "variants"] {
        let mut g = c.benchmark_group(format!("{key}/users"));
        let key = black_box(key);
        g.bench_function("sdk", |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 63;
                sdk.is_enabled(key, &users[i])
            })
        });
        g.bench_function("engine", |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 63;
                matches!(engine.evaluate(key, &users[i]).value, Value::Bool(true))
            })
        });
        g.finish();
    }
    let mut g = c.benchmark_group("variant");
    g.bench_function("engine", |b| {
        b.iter(|| {
            let e = engine.evaluate(black_box("variants"), black_box(&ctx));
            black_box(e.variant.map(str::to_string))
        })
    });
    g.bench_function("sdk", |b| {
        b.iter(|| black_box(sdk.variant(black_box("variants"), black_box(&ctx))))
    });
    g.finish();
    std::fs::remove_dir_all(&dir).ok();
}

criterion_group!(benches, bench);
criterion_main!(benches);
