//! Runs the shared, language-neutral test vectors in `spec/` (also consumed
//! by the other SDKs) against this engine.

use std::fs;
use std::path::{Path, PathBuf};

use flagbase_engine::{bucket, fnv1a32, position, Context, FlagSpec, Snapshot};
use serde_json::Value;

fn spec_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../spec")
        .join(sub)
}

/// Every `*.json` file in a spec directory, parsed as a non-empty array.
fn load(sub: &str) -> Vec<(String, Vec<Value>)> {
    let dir = spec_dir(sub);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no vector files in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = fs::read_to_string(&path).unwrap();
            let cases: Vec<Value> = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name}: not a JSON array of cases: {e}"));
            assert!(!cases.is_empty(), "{name} has no cases");
            (name, cases)
        })
        .collect()
}

fn check_hash_case(case: &Value) -> Result<(), String> {
    let s = |k: &str| case[k].as_str().ok_or(format!("missing {k}"));
    let u = |k: &str| case[k].as_u64().ok_or(format!("missing {k}"));
    let (key, value, input) = (s("flag_key")?, s("bucket_value")?, s("input")?);
    if format!("{key}:{value}") != input {
        return Err("input is not flag_key + \":\" + bucket_value".into());
    }
    let got = (
        u64::from(fnv1a32(input)),
        u64::from(bucket(key, value)),
        u64::from(fnv1a32(&format!("{input}:fraction"))),
        u64::from(position(key, value)),
    );
    let want = (
        u("hash")?,
        u("bucket")?,
        u("fraction_hash")?,
        u("position")?,
    );
    if got != want {
        return Err(format!(
            "(hash, bucket, fraction_hash, position) = {got:?}, want {want:?}"
        ));
    }
    Ok(())
}

fn check_eval_case(case: &Value) -> Result<(), String> {
    let spec: FlagSpec =
        serde_json::from_value(case["flag"].clone()).map_err(|e| format!("flag: {e}"))?;
    let key = case["key"].as_str().unwrap_or(&spec.key).to_string();
    let snapshot = Snapshot::from_specs([spec]).map_err(|e| e.to_string())?;
    let ctx = Context::from_json(case["context"].clone()).ok_or("context is not an object")?;
    let eval = snapshot.evaluate(&key, &ctx);
    let expected = &case["expected"];
    let got = serde_json::json!({
        "value": eval.value,
        "variant": eval.variant,
        "reason": eval.reason,
        "error_code": eval.error_code,
    });
    let want = serde_json::json!({
        "value": expected["value"],
        "variant": expected["variant"],
        "reason": expected["reason"],
        "error_code": expected["error_code"],
    });
    // Compare numbers numerically (1 vs 1.0) by normalising through f64.
    if normalise(&got) != normalise(&want) {
        return Err(format!("got {got}, want {want}"));
    }
    // Determinism: a second evaluation gives the same answer.
    if snapshot.evaluate(&key, &ctx) != eval {
        return Err("evaluation is not deterministic".into());
    }
    if let Some(flag) = snapshot.get(&key) {
        check_explanation(flag, &ctx, &eval)?;
    }
    Ok(())
}

/// The explanation serves what evaluation serves, and the step it names as
/// deciding is the one that produced that answer.
fn check_explanation(
    flag: &flagbase_engine::CompiledFlag,
    ctx: &Context,
    eval: &flagbase_engine::Evaluation<'_>,
) -> Result<(), String> {
    use flagbase_engine::{Decision, Reason};
    let x = flag.explain(ctx);
    if x.evaluation != *eval {
        return Err(format!(
            "explain served {:?}, evaluate {eval:?}",
            x.evaluation
        ));
    }
    let spec = flag.spec();
    let consistent = match x.decision {
        Decision::Disabled => eval.reason == Reason::Disabled,
        Decision::TargetedUser => eval.reason == Reason::TargetingMatch,
        Decision::Rule(i) => {
            let rule = &spec.rules[i];
            let traced = x.rules.iter().find(|r| r.index == i);
            let first = x.rules.iter().find(|r| r.matched).map(|r| r.index) == Some(i);
            let served = match (&rule.variant, spec.variants.is_empty()) {
                (Some(Value::String(name)), false) => eval.variant == Some(name.as_str()),
                (Some(v), true) => normalise(v) == normalise(eval.value),
                _ => false,
            };
            eval.reason == Reason::TargetingMatch
                && first
                && served
                && traced.is_some_and(|r| r.matched && r.conditions.iter().all(|c| c.passed))
        }
        Decision::Split => {
            eval.reason == Reason::Split
                && x.bucket.is_some_and(|b| {
                    spec.rollout_percentage.is_none_or(|pct| b < pct) && (0.0..100.0).contains(&b)
                })
        }
        Decision::Default => matches!(eval.reason, Reason::Default | Reason::Static),
    };
    if !consistent {
        return Err(format!(
            "explanation decided by {:?} (bucket {:?}) but evaluation is {eval:?}",
            x.decision, x.bucket
        ));
    }
    // A matched rule's trace agrees with its conditions.
    for rule in &x.rules {
        if rule.matched != rule.conditions.iter().all(|c| c.passed) {
            return Err(format!("rule {} matched/conditions disagree", rule.index));
        }
    }
    Ok(())
}

fn normalise(v: &Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), normalise(v))).collect())
        }
        other => other.clone(),
    }
}

fn run(sub: &str, check: impl Fn(&Value) -> Result<(), String>) {
    let mut failures = Vec::new();
    let mut total = 0;
    for (file, cases) in load(sub) {
        for (i, case) in cases.iter().enumerate() {
            total += 1;
            let result = if sub == "evaluation" && case.get("input").is_some() {
                check_hash_case(case)
            } else {
                check(case)
            };
            if let Err(e) = result {
                let desc = case["description"].as_str().unwrap_or("?");
                failures.push(format!("{file}[{i}] {desc}: {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn evaluation_vectors() {
    run("evaluation", check_eval_case);
}

#[test]
fn validation_vectors() {
    run("validation", |case| {
        let want = case["error"].as_str().ok_or("missing error")?;
        let got = match serde_json::from_value::<FlagSpec>(case["flag"].clone()) {
            Err(e) => e.to_string(),
            Ok(spec) => match flagbase_engine::compile(spec) {
                Err(e) => e.to_string(),
                Ok(_) => return Err("flag was accepted".into()),
            },
        };
        if got.starts_with(want) {
            Ok(())
        } else {
            Err(format!("error {got:?} does not start with {want:?}"))
        }
    });
}

#[test]
fn the_reference_hash_vector_is_present() {
    let all = load("evaluation");
    let found = all.iter().flat_map(|(_, c)| c).any(|c| {
        c["input"] == "new-checkout-flow:user-42"
            && c["hash"] == 4_236_282_073u64
            && c["bucket"] == 73
    });
    assert!(found, "hashing vector new-checkout-flow:user-42 missing");
}
