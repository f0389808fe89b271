//! Validation and compilation of a [`FlagSpec`] into a [`CompiledFlag`].
//!
//! Everything evaluation needs is checked and precomputed here (folded
//! strings, parsed numbers / versions / timestamps, compiled regexes, rules
//! sorted by priority, variant values resolved), so that evaluation can
//! neither fail nor do avoidable work.

use serde_json::Value;

use crate::bucket::{to_milli, Bucketer, Split, POSITIONS};
use crate::model::{FlagSpec, FlagType, RuleSpec};
use crate::operators::Condition;

/// Longest accepted flag key, variant key or attribute name.
pub const MAX_KEY_LEN: usize = 128;
/// Longest accepted attribute name.
pub const MAX_ATTRIBUTE_LEN: usize = 256;
/// Longest accepted `name` or `description`, in bytes.
pub const MAX_TEXT_LEN: usize = 4096;
/// Most variants a flag may have.
pub const MAX_VARIANTS: usize = 100;
/// Most rules a flag may have.
pub const MAX_RULES: usize = 500;
/// Most conditions one rule may have.
pub const MAX_CONDITIONS: usize = 50;
/// Most entries in `targeted_users`.
pub const MAX_TARGETED_USERS: usize = 10_000;
/// Deepest nesting of arrays and objects in any value of a definition
/// (`default_value`, variant values, rule operands and literal rule
/// variants). Definitions are stored and embedded in audit records a few
/// levels deeper, and readers refuse JSON nested beyond 128 levels
/// (serde_json's limit); 32 keeps every such record far inside that.
pub const MAX_NESTING: usize = 32;

/// Bounds on a definition's size, checked before any other work so that a
/// huge definition costs a length check, not quadratic validation.
fn check_sizes(spec: &FlagSpec) -> Result<(), ValidationError> {
    let too_long = |field: &str, len: usize, max: usize, unit: &str| {
        (len > max).then(|| ValidationError::new(field, format!("must have at most {max} {unit}")))
    };
    let conditions = spec.rules.iter().enumerate().find(|(_, r)| {
        r.conditions
            .as_ref()
            .is_some_and(|c| c.len() > MAX_CONDITIONS)
    });
    let error = too_long(
        "name",
        spec.name.as_ref().map_or(0, String::len),
        MAX_TEXT_LEN,
        "bytes",
    )
    .or_else(|| {
        too_long(
            "description",
            spec.description.as_ref().map_or(0, String::len),
            MAX_TEXT_LEN,
            "bytes",
        )
    })
    .or_else(|| too_long("variants", spec.variants.len(), MAX_VARIANTS, "entries"))
    .or_else(|| too_long("rules", spec.rules.len(), MAX_RULES, "entries"))
    .or_else(|| {
        too_long(
            "targeted_users",
            spec.targeted_users.len(),
            MAX_TARGETED_USERS,
            "entries",
        )
    })
    .or_else(|| {
        conditions.map(|(i, _)| {
            ValidationError::new(
                format!("rules[{i}].conditions"),
                format!("must have at most {MAX_CONDITIONS} entries"),
            )
        })
    })
    .or_else(|| too_deep(spec));
    error.map_or(Ok(()), Err)
}

/// The first value of `spec` that nests deeper than [`MAX_NESTING`].
fn too_deep(spec: &FlagSpec) -> Option<ValidationError> {
    let deep = |field: String| {
        ValidationError::new(field, format!("nests deeper than {MAX_NESTING} levels"))
    };
    let check = |field: &dyn Fn() -> String, value: Option<&Value>| {
        value
            .is_some_and(|v| nests_deeper(v, MAX_NESTING))
            .then(|| deep(field()))
    };
    check(&|| "default_value".into(), spec.default_value.as_ref())
        .or_else(|| {
            spec.variants
                .iter()
                .enumerate()
                .find_map(|(i, v)| check(&|| format!("variants[{i}].value"), Some(&v.value)))
        })
        .or_else(|| {
            spec.rules.iter().enumerate().find_map(|(i, r)| {
                check(&|| format!("rules[{i}].value"), r.value.as_ref())
                    .or_else(|| check(&|| format!("rules[{i}].variant"), r.variant.as_ref()))
                    .or_else(|| {
                        r.conditions
                            .iter()
                            .flatten()
                            .enumerate()
                            .find_map(|(j, c)| {
                                check(
                                    &|| format!("rules[{i}].conditions[{j}].value"),
                                    c.value.as_ref(),
                                )
                            })
                    })
            })
        })
}

/// Whether `v` nests more than `budget` levels of arrays and objects (a
/// scalar nests 0 levels, `[]` one). The recursion stops one level past the
/// budget, so however deep a value is, checking it cannot exhaust the stack.
fn nests_deeper(v: &Value, budget: usize) -> bool {
    match v {
        Value::Array(items) => budget == 0 || items.iter().any(|x| nests_deeper(x, budget - 1)),
        Value::Object(map) => budget == 0 || map.values().any(|x| nests_deeper(x, budget - 1)),
        _ => false,
    }
}

/// Why a flag definition was rejected. Displays as `"{field}: {reason}"`,
/// e.g. `rules[2].operator: unknown operator "eqals"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    /// Path of the offending field, e.g. `variants[1].weight`.
    pub field: String,
    /// Human-readable explanation.
    pub reason: String,
}

impl ValidationError {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// What a matching rule, targeted user or rollout serves.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub value: Value,
    pub variant: Option<Box<str>>,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub conditions: Box<[Condition]>,
    pub served: Served,
}

/// A validated flag, ready for fast evaluation. Build with [`compile`].
#[derive(Debug, Clone)]
pub struct CompiledFlag {
    pub(crate) spec: FlagSpec,
    pub(crate) program: Program,
}

/// The evaluation-ready parts of a flag.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    pub enabled: bool,
    pub default_value: Value,
    pub disabled_value: Value,
    /// The "on" value for targeted users and rollouts: `true`, or the first
    /// variant. `None` only for non-boolean flags without variants, which
    /// validation forbids from having targets or a rollout.
    pub on: Option<Served>,
    /// Sorted, for binary search.
    pub targeted_users: Box<[Box<str>]>,
    /// Sorted by priority (stable).
    pub rules: Box<[CompiledRule]>,
    pub split: Split,
    pub bucketer: Bucketer,
    /// Variant values in declaration order (used by weighted splits).
    pub variants: Box<[Served]>,
    /// No rules, targets, rollout or weights: reason `STATIC`.
    pub is_static: bool,
}

impl CompiledFlag {
    /// Validates and compiles `spec`.
    pub fn compile(spec: FlagSpec) -> Result<CompiledFlag, ValidationError> {
        compile(spec)
    }

    /// The definition this flag was compiled from.
    pub fn spec(&self) -> &FlagSpec {
        &self.spec
    }

    /// The flag key.
    pub fn key(&self) -> &str {
        &self.spec.key
    }

    /// The flag's value type.
    pub fn flag_type(&self) -> FlagType {
        self.spec.flag_type
    }
}

/// Validates and compiles a flag definition, returning the first problem.
pub fn compile(spec: FlagSpec) -> Result<CompiledFlag, ValidationError> {
    let program = build(&spec)?;
    Ok(CompiledFlag { spec, program })
}

/// Checks a flag definition without keeping the compiled form.
pub fn validate(spec: &FlagSpec) -> Result<(), ValidationError> {
    build(spec).map(drop)
}

/// Whether `key` is a valid flag or variant key.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_key(field: &str, key: &str) -> Result<(), ValidationError> {
    if is_valid_key(key) {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!("must be 1-{MAX_KEY_LEN} characters of letters, digits, '-', '_' or '.'"),
        ))
    }
}

fn check_attribute(field: &str, name: &str) -> Result<(), ValidationError> {
    if name.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if name.len() > MAX_ATTRIBUTE_LEN {
        let reason = format!("must be at most {MAX_ATTRIBUTE_LEN} bytes");
        return Err(ValidationError::new(field, reason));
    }
    Ok(())
}

fn expect_type(field: &str, ty: FlagType, value: &Value) -> Result<(), ValidationError> {
    if ty.accepts(value) {
        Ok(())
    } else {
        let what = if ty == FlagType::Json {
            "a non-null value"
        } else {
            ty.as_str()
        };
        Err(ValidationError::new(field, format!("expected {what}")))
    }
}

/// Builds the evaluation program (borrowing the spec, so `validate` need
/// not clone it).
fn build(spec: &FlagSpec) -> Result<Program, ValidationError> {
    check_key("key", &spec.key)?;
    check_sizes(spec)?;
    let ty = spec.flag_type;

    let default_value = match (&spec.default_value, ty) {
        (None | Some(Value::Null), FlagType::Boolean) => Value::Bool(false),
        (None | Some(Value::Null), _) => {
            let reason = format!("required for {} flags", ty.as_str());
            return Err(ValidationError::new("default_value", reason));
        }
        (Some(v), _) => {
            expect_type("default_value", ty, v)?;
            v.clone()
        }
    };
    let disabled_value = match ty {
        FlagType::Boolean => Value::Bool(false),
        _ => default_value.clone(),
    };

    // Variants: unique keys, typed values, all-or-nothing weights.
    let mut variants = Vec::with_capacity(spec.variants.len());
    let mut weights = Vec::new();
    let weighted = spec.variants.iter().any(|v| v.weight.is_some());
    for (i, v) in spec.variants.iter().enumerate() {
        check_key(&format!("variants[{i}].key"), &v.key)?;
        if spec.variants[..i].iter().any(|w| w.key == v.key) {
            let reason = format!("duplicate variant key {:?}", v.key);
            return Err(ValidationError::new(format!("variants[{i}].key"), reason));
        }
        expect_type(&format!("variants[{i}].value"), ty, &v.value)?;
        match v.weight {
            Some(w) => weights.push(
                to_milli(w)
                    .map_err(|r| ValidationError::new(format!("variants[{i}].weight"), r))?,
            ),
            None if weighted => {
                return Err(ValidationError::new(
                    format!("variants[{i}].weight"),
                    "required when any variant has a weight",
                ))
            }
            None => {}
        }
        variants.push(Served {
            value: v.value.clone(),
            variant: Some(v.key.as_str().into()),
        });
    }
    // Summed in u64: many large weights must not overflow (and panic).
    if weighted && weights.iter().map(|w| u64::from(*w)).sum::<u64>() != u64::from(POSITIONS) {
        return Err(ValidationError::new("variants", "weights must sum to 100"));
    }

    let on = if let Some(first) = variants.first() {
        Some(first.clone())
    } else if ty == FlagType::Boolean {
        Some(Served {
            value: Value::Bool(true),
            variant: None,
        })
    } else {
        None
    };

    let split = match spec.rollout_percentage {
        None if weighted => Split::weighted(&weights),
        None => Split::None,
        Some(p) => {
            let threshold =
                to_milli(p).map_err(|r| ValidationError::new("rollout_percentage", r))?;
            if weighted {
                return Err(ValidationError::new(
                    "rollout_percentage",
                    "cannot be combined with variant weights (give a control variant a weight instead)",
                ));
            }
            if on.is_none() {
                let reason = format!(
                    "requires a boolean flag or variants, not a {} flag",
                    ty.as_str()
                );
                return Err(ValidationError::new("rollout_percentage", reason));
            }
            Split::rollout(threshold)
        }
    };

    if !spec.targeted_users.is_empty() && on.is_none() {
        let reason = format!(
            "requires a boolean flag or variants, not a {} flag",
            ty.as_str()
        );
        return Err(ValidationError::new("targeted_users", reason));
    }
    let mut targeted_users = Vec::with_capacity(spec.targeted_users.len());
    for (i, u) in spec.targeted_users.iter().enumerate() {
        if u.is_empty() {
            return Err(ValidationError::new(
                format!("targeted_users[{i}]"),
                "must not be empty",
            ));
        }
        targeted_users.push(Box::<str>::from(u.as_str()));
    }
    targeted_users.sort_unstable();
    targeted_users.dedup();

    if let Some(b) = &spec.bucket_by {
        check_attribute("bucket_by", b)?;
    }

    let mut rules = Vec::with_capacity(spec.rules.len());
    let mut slots = Vec::new();
    for (i, rule) in spec.rules.iter().enumerate() {
        let compiled = compile_rule(&format!("rules[{i}]"), rule, ty, &variants, &mut slots)?;
        rules.push((rule.priority, compiled));
    }
    // Stable sort: equal priorities keep list order.
    rules.sort_by_key(|(p, _)| *p);
    let rules: Box<[CompiledRule]> = rules.into_iter().map(|(_, r)| r).collect();

    let is_static = rules.is_empty() && targeted_users.is_empty() && matches!(split, Split::None);
    Ok(Program {
        enabled: spec.enabled,
        default_value,
        disabled_value,
        on,
        targeted_users: targeted_users.into_boxed_slice(),
        rules,
        split,
        bucketer: Bucketer::new(&spec.key, spec.bucket_by.as_deref()),
        variants: variants.into_boxed_slice(),
        is_static,
    })
}

fn compile_rule(
    path: &str,
    rule: &RuleSpec,
    ty: FlagType,
    variants: &[Served],
    slots: &mut Vec<Box<str>>,
) -> Result<CompiledRule, ValidationError> {
    let inline = rule.attribute.is_some() || rule.operator.is_some() || rule.value.is_some();
    let conditions: Vec<Condition> = match (&rule.conditions, inline) {
        (Some(_), true) => {
            return Err(ValidationError::new(
                path,
                "use either attribute/operator/value or conditions, not both",
            ))
        }
        (Some(list), false) => {
            if list.is_empty() {
                return Err(ValidationError::new(
                    format!("{path}.conditions"),
                    "must not be empty",
                ));
            }
            list.iter()
                .enumerate()
                .map(|(j, c)| {
                    let p = format!("{path}.conditions[{j}]");
                    condition(
                        slots,
                        &p,
                        Some(&c.attribute),
                        Some(&c.operator),
                        c.value.as_ref(),
                    )
                })
                .collect::<Result<_, _>>()?
        }
        (None, _) => vec![condition(
            slots,
            path,
            rule.attribute.as_deref(),
            rule.operator.as_deref(),
            rule.value.as_ref(),
        )?],
    };

    let field = format!("{path}.variant");
    let served = match &rule.variant {
        None | Some(Value::Null) => return Err(ValidationError::new(field, "required")),
        Some(v) if !variants.is_empty() => {
            let Value::String(name) = v else {
                return Err(ValidationError::new(
                    field,
                    "expected a variant key (string)",
                ));
            };
            variants
                .iter()
                .find(|s| s.variant.as_deref() == Some(name.as_str()))
                .cloned()
                .ok_or_else(|| ValidationError::new(field, format!("unknown variant {name:?}")))?
        }
        Some(v) => {
            expect_type(&field, ty, v)?;
            Served {
                value: v.clone(),
                variant: None,
            }
        }
    };
    Ok(CompiledRule {
        conditions: conditions.into_boxed_slice(),
        served,
    })
}

fn condition(
    slots: &mut Vec<Box<str>>,
    path: &str,
    attribute: Option<&str>,
    operator: Option<&str>,
    value: Option<&Value>,
) -> Result<Condition, ValidationError> {
    let attribute =
        attribute.ok_or_else(|| ValidationError::new(format!("{path}.attribute"), "required"))?;
    check_attribute(&format!("{path}.attribute"), attribute)?;
    let operator =
        operator.ok_or_else(|| ValidationError::new(format!("{path}.operator"), "required"))?;
    Condition::compile(attribute, operator, value, slots)
        .map_err(|(field, reason)| ValidationError::new(format!("{path}.{field}"), reason))
}
