//! Property tests: determinism, monotonic rollouts, full coverage of weighted
//! splits, "whatever validates evaluates without panicking", and exact
//! numeric comparison of integers of any size.

use std::cmp::Ordering;

use flagbase_engine::{compile, Context, FlagSpec, Reason, Snapshot};
use proptest::prelude::*;
use serde_json::{json, Value};

fn rollout_flag(pct: f64) -> flagbase_engine::CompiledFlag {
    let spec: FlagSpec = serde_json::from_value(json!({
        "key": "prop-rollout", "enabled": true, "rollout_percentage": pct
    }))
    .unwrap();
    compile(spec).unwrap()
}

/// Percentages with at most 3 decimals, as thousandths.
fn milli() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..=100_000, (0u32..=100).prop_map(|p| p * 1000)]
}

proptest! {
    #[test]
    fn evaluation_is_deterministic(user in ".{0,24}", pct in milli()) {
        let flag = rollout_flag(f64::from(pct) / 1000.0);
        let ctx = Context::with_targeting_key(user);
        prop_assert_eq!(flag.evaluate(&ctx), flag.evaluate(&ctx.clone()));
    }

    #[test]
    fn raising_a_rollout_never_removes_a_user(
        user in "[a-zA-Z0-9@._-]{1,24}",
        a in milli(),
        b in milli(),
    ) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let ctx = Context::with_targeting_key(user);
        let in_lo = rollout_flag(f64::from(lo) / 1000.0).evaluate(&ctx).reason == Reason::Split;
        let in_hi = rollout_flag(f64::from(hi) / 1000.0).evaluate(&ctx).reason == Reason::Split;
        prop_assert!(!in_lo || in_hi, "in at {lo} but not at {hi}");
    }

    #[test]
    fn integer_rollouts_are_exactly_bucket_below_p(user in "[a-z0-9-]{1,16}", p in 0u32..=100) {
        let ctx = Context::with_targeting_key(user.clone());
        let inside = rollout_flag(f64::from(p)).evaluate(&ctx).reason == Reason::Split;
        prop_assert_eq!(inside, flagbase_engine::bucket("prop-rollout", &user) < p);
    }

    #[test]
    fn weighted_variants_cover_everyone(
        user in "[a-zA-Z0-9-]{1,24}",
        cuts in proptest::collection::vec(0u32..=100_000, 1..5),
    ) {
        // Turn random cut points into weights (thousandths) summing to 100.
        let mut cuts = cuts;
        cuts.push(0);
        cuts.push(100_000);
        cuts.sort_unstable();
        let variants: Vec<Value> = cuts
            .windows(2)
            .enumerate()
            .map(|(i, w)| json!({"key": format!("v{i}"), "value": i, "weight": f64::from(w[1] - w[0]) / 1000.0}))
            .collect();
        let spec: FlagSpec = serde_json::from_value(json!({
            "key": "prop-weights", "type": "number", "enabled": true,
            "default_value": -1, "variants": variants
        })).unwrap();
        let flag = compile(spec).unwrap();
        let eval = flag.evaluate(&Context::with_targeting_key(user));
        prop_assert_eq!(eval.reason, Reason::Split);
        prop_assert!(eval.variant.is_some());
    }

    #[test]
    fn random_specs_validate_or_evaluate_cleanly(spec in arb_spec(), ctx in arb_context()) {
        let Ok(spec) = serde_json::from_value::<FlagSpec>(spec) else { return Ok(()); };
        let key = spec.key.clone();
        if let Ok(snapshot) = Snapshot::from_specs([spec]) {
            let eval = snapshot.evaluate(&key, &ctx);
            prop_assert!(eval.error_code.is_none());
            let flag = snapshot.get(&key).unwrap();
            // A served value always has the flag's type.
            prop_assert!(flag.flag_type().accepts(eval.value), "{:?}", eval);
            prop_assert_eq!(snapshot.evaluate_all(&ctx).count(), 1);
        }
    }
}

/// Guards against a vacuous property: a fair share of the random specs must
/// actually validate, so `random_specs_validate_or_evaluate_cleanly` really
/// exercises evaluation.
#[test]
fn random_specs_are_often_valid() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = arb_spec();
    let total = 2000;
    let valid = (0..total)
        .filter(|_| {
            let spec = strategy.new_tree(&mut runner).unwrap().current();
            serde_json::from_value::<FlagSpec>(spec)
                .ok()
                .is_some_and(|s| compile(s).is_ok())
        })
        .count();
    eprintln!("{valid} of {total} random specs are valid");
    assert!(
        valid * 20 >= total,
        "only {valid} of {total} random specs were valid"
    );
}

/// Proportions over many ids stay within a fixed tolerance. The ids and the
/// hash are deterministic, so this is not flaky: it either always passes or
/// always fails.
#[test]
fn weighted_proportions_are_roughly_right() {
    let spec: FlagSpec = serde_json::from_value(json!({
        "key": "proportions", "type": "string", "enabled": true, "default_value": "none",
        "variants": [
            {"key": "a", "value": "a", "weight": 10},
            {"key": "b", "value": "b", "weight": 20},
            {"key": "c", "value": "c", "weight": 30.5},
            {"key": "d", "value": "d", "weight": 39.5}
        ]
    }))
    .unwrap();
    let flag = compile(spec).unwrap();
    let n = 100_000;
    let mut counts = [0usize; 4];
    for i in 0..n {
        let ctx = Context::with_targeting_key(format!("user-{i}"));
        let v = flag
            .evaluate(&ctx)
            .variant
            .expect("every user gets a variant");
        counts[usize::from(v.as_bytes()[0] - b'a')] += 1;
    }
    for (count, want) in counts.iter().zip([0.10, 0.20, 0.305, 0.395]) {
        let share = *count as f64 / f64::from(n);
        assert!(
            (share - want).abs() < 0.01,
            "share {share} vs {want} ({counts:?})"
        );
    }
}

#[test]
fn rollout_proportion_is_roughly_right() {
    let flag = rollout_flag(12.345);
    let n = 100_000;
    let inside = (0..n)
        .filter(|i| {
            let ctx = Context::with_targeting_key(format!("id-{i}"));
            flag.evaluate(&ctx).reason == Reason::Split
        })
        .count();
    let share = inside as f64 / f64::from(n);
    assert!((share - 0.12345).abs() < 0.01, "share {share}");
}

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1000i64..1000).prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|n| json!(n)),
        "[a-zA-Z0-9 ,.*+?()\\[\\]^$|-]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("1.2.3"),
            Just("v2.0.0-rc.1"),
            Just("2024-01-01T00:00:00Z"),
            Just("(")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    arb_scalar().prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,3}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const OPS: [&str; 22] = [
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "in",
    "not_in",
    "starts_with",
    "ends_with",
    "matches",
    "gt",
    "gte",
    "lt",
    "lte",
    "semver_eq",
    "semver_gt",
    "semver_lt",
    "before",
    "after",
    "exists",
    "not_exists",
    "eqals",
    "",
];
const ATTRS: [&str; 5] = ["role", "age", "userId", "targetingKey", "tags"];

fn arb_rule() -> impl Strategy<Value = Value> {
    (
        proptest::sample::select(&ATTRS[..]),
        proptest::sample::select(&OPS[..]),
        prop_oneof![
            2 => arb_value(),
            3 => prop_oneof![
                Just(json!("dev")),
                Just(json!(5)),
                Just(json!("1.2.3")),
                Just(json!("2024-01-01T00:00:00Z")),
                Just(json!(["a", "B", 3])),
                Just(json!("^a.*z$")),
            ],
        ],
        prop_oneof![
            3 => any::<bool>().prop_map(Value::Bool),
            2 => prop_oneof![Just(json!("v0")), Just(json!("v1"))],
            1 => arb_scalar(),
        ],
        -3i64..3,
    )
        .prop_map(|(a, o, v, variant, p)| {
            json!({"attribute": a, "operator": o, "value": v, "variant": variant, "priority": p})
        })
}

/// A value of the flag's type most of the time, arbitrary JSON sometimes.
fn typed_value(ty: &'static str) -> BoxedStrategy<Value> {
    let typed = match ty {
        "boolean" => any::<bool>().prop_map(Value::Bool).boxed(),
        "string" => "[a-z]{0,5}".prop_map(Value::String).boxed(),
        "number" => (-100i64..100).prop_map(|n| json!(n)).boxed(),
        _ => arb_value().boxed(),
    };
    prop_oneof![6 => typed, 1 => arb_value()].boxed()
}

fn arb_spec() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => Just("boolean"),
        1 => Just("string"),
        1 => Just("number"),
        1 => Just("json")
    ]
    .prop_flat_map(|ty| {
        (
            Just(ty),
            proptest::option::weighted(0.7, typed_value(ty)),
            proptest::collection::vec(typed_value(ty), 0..4),
            // 0: no weights, 1: weights summing to 100, 2: arbitrary weights.
            prop_oneof![3 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8)],
            proptest::collection::vec(0u32..=100_000, 4),
            proptest::collection::vec(arb_rule(), 0..4),
            proptest::option::weighted(
                0.4,
                prop_oneof![
                    4 => (0u32..=100_000).prop_map(|m| f64::from(m) / 1000.0),
                    4 => (0u32..=100).prop_map(f64::from),
                    1 => -5f64..105.0,
                ],
            ),
            proptest::collection::vec("[a-z0-9-]{0,6}", 0..2),
            proptest::option::of(proptest::sample::select(&ATTRS[..])),
            any::<bool>(),
        )
    })
    .prop_map(
        |(ty, default, values, weight_mode, raw, rules, rollout, users, bucket_by, enabled)| {
            let n = values.len();
            let weights: Vec<Option<f64>> = match weight_mode {
                0 => vec![None; n],
                1 if n > 0 => {
                    // Cut points in thousandths → weights that sum to 100.
                    let mut cuts: Vec<u32> = raw[..n - 1].to_vec();
                    cuts.extend([0, 100_000]);
                    cuts.sort_unstable();
                    cuts.windows(2)
                        .map(|w| Some(f64::from(w[1] - w[0]) / 1000.0))
                        .collect()
                }
                _ => raw[..n]
                    .iter()
                    .map(|w| Some(f64::from(*w) / 1000.0))
                    .collect(),
            };
            let variants: Vec<Value> = values
                .into_iter()
                .zip(weights)
                .enumerate()
                .map(|(i, (value, weight))| {
                    let mut v = json!({"key": format!("v{i}"), "value": value});
                    if let Some(w) = weight {
                        v["weight"] = json!(w);
                    }
                    v
                })
                .collect();
            let mut spec = json!({
                "key": "random", "type": ty, "enabled": enabled,
                "variants": variants, "rules": rules, "targeted_users": users,
            });
            if let Some(d) = default {
                spec["default_value"] = d;
            }
            if let Some(r) = rollout {
                spec["rollout_percentage"] = json!(r);
            }
            if let Some(b) = bucket_by {
                spec["bucket_by"] = json!(b);
            }
            spec
        },
    )
}

fn arb_context() -> impl Strategy<Value = Context> {
    proptest::collection::btree_map(proptest::sample::select(&ATTRS[..]), arb_value(), 0..5)
        .prop_map(|m| {
            Context::from_json(Value::Object(
                m.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            ))
            .unwrap()
        })
}

/// Integer strings in canonical spelling (no `+`, no leading zeros, no
/// `-0`), up to 40 digits, as pairs that often share a long prefix so that
/// near neighbours (big ids a few units apart) come up as well as strangers.
fn int_pair() -> impl Strategy<Value = (String, String)> {
    let int = || {
        (any::<bool>(), "[1-9][0-9]{0,39}").prop_map(|(neg, digits)| {
            if neg {
                format!("-{digits}")
            } else {
                digits
            }
        })
    };
    let near = (
        any::<bool>(),
        "[1-9][0-9]{0,30}",
        "[0-9]{1,4}",
        "[0-9]{1,4}",
    )
        .prop_map(|(neg, prefix, x, y)| {
            let sign = if neg { "-" } else { "" };
            (format!("{sign}{prefix}{x}"), format!("{sign}{prefix}{y}"))
        });
    prop_oneof![
        2 => near,
        2 => (int(), int()),
        1 => (int(), Just("0".to_string())),
    ]
}

/// The test oracle: arbitrary-precision integer ordering of canonical
/// spellings, by sign, then length, then digits.
fn int_cmp(a: &str, b: &str) -> Ordering {
    let magnitude = |x: &str| x.strip_prefix('-').unwrap_or(x).to_string();
    let (ma, mb) = (magnitude(a), magnitude(b));
    let by_magnitude = ma.len().cmp(&mb.len()).then_with(|| ma.cmp(&mb));
    match (a.starts_with('-'), b.starts_with('-')) {
        (false, false) => by_magnitude,
        (true, true) => by_magnitude.reverse(),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    }
}

/// The integer as a JSON number when `as_number` and it fits, else a string.
fn int_value(s: &str, as_number: bool) -> Value {
    if as_number {
        if let Ok(n) = s.parse::<u64>() {
            return json!(n);
        }
        if let Ok(n) = s.parse::<i64>() {
            return json!(n);
        }
    }
    Value::String(s.to_string())
}

/// Whether `n <operator> operand` holds for a context attribute `n`.
fn holds(operator: &str, operand: Value, n: Value) -> bool {
    let spec: FlagSpec = serde_json::from_value(json!({
        "key": "numbers", "enabled": true,
        "rules": [{"attribute": "n", "operator": operator, "value": operand, "variant": true}]
    }))
    .unwrap();
    let flag = compile(spec).unwrap();
    flag.evaluate(&Context::new().with("n", n)).reason == Reason::TargetingMatch
}

proptest! {
    #[test]
    fn distinct_integer_strings_never_compare_equal(
        (a, b) in int_pair(),
        a_num in any::<bool>(),
        b_num in any::<bool>(),
    ) {
        prop_assume!(a != b);
        let (operand, value) = (int_value(&a, a_num), int_value(&b, b_num));
        prop_assert!(!holds("equals", operand.clone(), value.clone()), "{} equals {}", a, b);
        prop_assert!(holds("not_equals", operand.clone(), value.clone()));
        prop_assert!(!holds("in", json!([operand.clone()]), value.clone()));
        // Long lists take the hash-set and sorted-numbers path; the other
        // members (`b` with digits appended) are all different numbers.
        let mut long: Vec<Value> = (1..=17).map(|k| json!(format!("{b}{k}"))).collect();
        long.push(operand);
        prop_assert!(!holds("in", json!(long), value.clone()), "{} in long list", b);
        // ...while the same integer is found, whatever its representation.
        prop_assert!(holds("equals", int_value(&b, !b_num), value.clone()));
        long.push(int_value(&b, !b_num));
        prop_assert!(holds("in", json!(long), value));
    }

    #[test]
    fn integer_ordering_is_exact(
        (a, b) in int_pair(),
        a_num in any::<bool>(),
        b_num in any::<bool>(),
    ) {
        let want = int_cmp(&b, &a);
        let (operand, value) = (int_value(&a, a_num), int_value(&b, b_num));
        for (op, accept) in [
            ("gt", [Ordering::Greater; 2]),
            ("gte", [Ordering::Greater, Ordering::Equal]),
            ("lt", [Ordering::Less; 2]),
            ("lte", [Ordering::Less, Ordering::Equal]),
        ] {
            prop_assert_eq!(
                holds(op, operand.clone(), value.clone()),
                accept.contains(&want),
                "{} {} {}", b, op, a
            );
        }
    }

    #[test]
    fn spellings_of_one_integer_are_equal(
        (a, _) in int_pair(),
        zeros in 0usize..3,
        spelling in 0u8..4,
    ) {
        let (sign, digits) = match a.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("", a.as_str()),
        };
        let pad = "0".repeat(zeros);
        let other = match spelling {
            0 => format!("{sign}{pad}{digits}"),
            1 => format!("{a}.{pad}"),
            2 => format!("{a}e0"),
            _ => format!("{a}{pad}e-{zeros}"),
        };
        prop_assert!(holds("equals", json!(a), json!(other)), "{} vs {}", a, other);
        prop_assert!(holds("gte", json!(a), json!(other)));
        prop_assert!(!holds("gt", json!(a), json!(other)));
    }
}
