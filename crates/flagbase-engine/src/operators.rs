//! Rule operators: compiling an `(attribute, operator, value)` triple into a
//! [`Condition`] at write time, and matching it against a context.

use std::cmp::Ordering;
use std::collections::HashSet;

use regex::{Regex, RegexBuilder};
use semver::Version;
use serde_json::Value;

use crate::context::{Context, Lookup, USER_ID_ATTRIBUTES};
use crate::hash::FxBuildHasher;
use crate::number::Decimal;
use crate::text::{fold, Item, Scalar, Text};

/// Compiled-program size limit for `matches` patterns, so a hostile pattern
/// cannot make writes (or evaluation) expensive.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Source-length limit for `matches` patterns.
pub const REGEX_MAX_LEN: usize = 4096;
/// `in` / `not_in` lists longer than this also get a hash set.
const IN_SET_THRESHOLD: usize = 16;

/// Every operator name, in documentation order.
pub const OPERATORS: [&str; 20] = [
    "equals",
    "not_equals",
    "contains",
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
    "not_contains",
];

/// Where a condition reads its input from.
#[derive(Debug, Clone)]
enum Attr {
    /// `userId` / `targetingKey`: resolved through `Context::user_id`.
    UserId,
    /// `slot` indexes the per-evaluation lookup cache (`Lookup`).
    Named { name: Box<str>, slot: usize },
}

/// A member list for `in` / `not_in`.
#[derive(Debug, Clone)]
struct InList {
    items: Box<[Scalar]>,
    /// Folded texts, for long lists.
    set: Option<HashSet<Box<str>, FxBuildHasher>>,
    /// Numeric members, sorted and deduplicated, searched by exact decimal
    /// value (so `"1.0"` still finds `1`, and no big id finds a neighbour).
    /// Kept for every list: the value is then parsed as a number once, not
    /// once per member.
    nums: Box<[Decimal]>,
}

impl InList {
    fn contains(&self, item: Item<'_>) -> bool {
        let Some(set) = &self.set else {
            return self.items.iter().any(|s| s.text_equals(item)) || self.contains_number(item);
        };
        match item {
            Item::Str(s) => {
                let hit = if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
                    set.contains(s)
                } else {
                    set.contains(fold(s).as_str())
                };
                hit || self.contains_number(item)
            }
            Item::Num(_) => self.contains_number(item),
            Item::Bool(b) => set.contains(if b { "true" } else { "false" }),
            Item::Other => false,
        }
    }

    fn contains_number(&self, item: Item<'_>) -> bool {
        !self.nums.is_empty()
            && item
                .with_number(|v| self.nums.binary_search_by(|m| m.as_ref().cmp(&v)).is_ok())
                .unwrap_or(false)
    }
}

/// A compiled operator with its pre-parsed operand.
#[derive(Debug, Clone)]
enum Op {
    Equals(Scalar),
    Contains(Scalar),
    In(InList),
    StartsWith(Text),
    EndsWith(Text),
    Matches(Regex),
    /// `gt`, `gte`, `lt`, `lte`: holds when the item's exact numeric
    /// ordering against the operand is one of `accept`.
    Compare {
        operand: Box<Decimal>,
        accept: [Ordering; 2],
    },
    SemverEq(Version),
    SemverGt(Version),
    SemverLt(Version),
    Before((i64, u32)),
    After((i64, u32)),
    Exists,
}

/// One compiled condition.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    attr: Attr,
    op: Op,
    /// `not_equals`, `not_in`, `not_contains`, `not_exists`: the attribute
    /// must be present (except `not_exists`) and the positive form must fail.
    negated: bool,
}

/// Parses a semantic version, tolerating a leading `v` and whitespace.
/// Build metadata is dropped because SemVer precedence ignores it
/// (`1.0.0+build.5` equals `1.0.0`).
pub(crate) fn parse_semver(s: &str) -> Option<Version> {
    let s = s.trim();
    let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
    let mut v = Version::parse(s).ok()?;
    v.build = semver::BuildMetadata::EMPTY;
    Some(v)
}

/// Parses an RFC 3339 timestamp into (seconds, nanoseconds) since the epoch.
pub(crate) fn parse_time(s: &str) -> Option<(i64, u32)> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
    Some((t.timestamp(), t.timestamp_subsec_nanos()))
}

/// Error from [`Condition::compile`]: which field (`operator` or `value`) and why.
pub(crate) type CompileError = (&'static str, String);

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Condition {
    /// Compiles one condition; `slots` numbers the flag's distinct
    /// attribute names (new names are appended).
    pub(crate) fn compile(
        attribute: &str,
        operator: &str,
        value: Option<&Value>,
        slots: &mut Vec<Box<str>>,
    ) -> Result<Condition, CompileError> {
        let attr = if USER_ID_ATTRIBUTES.contains(&attribute) {
            Attr::UserId
        } else {
            let slot = match slots.iter().position(|n| **n == *attribute) {
                Some(i) => i,
                None => {
                    slots.push(attribute.into());
                    slots.len() - 1
                }
            };
            Attr::Named {
                name: attribute.into(),
                slot,
            }
        };
        let (negated, positive) = match operator {
            "not_equals" => (true, "equals"),
            "not_in" => (true, "in"),
            "not_contains" => (true, "contains"),
            "not_exists" => (true, "exists"),
            other => (false, other),
        };
        if !OPERATORS.contains(&operator) {
            return Err(("operator", format!("unknown operator {:?}", operator)));
        }
        if positive == "exists" {
            // The operand is meaningless here and ignored.
            return Ok(Condition {
                attr,
                op: Op::Exists,
                negated,
            });
        }
        let value = match value {
            None | Some(Value::Null) => {
                return Err(("value", format!("required for operator {operator}")))
            }
            Some(v) => v,
        };
        let scalar = || {
            Scalar::from_value(value).ok_or_else(|| {
                let got = describe(value);
                (
                    "value",
                    format!("expected a string, number or boolean, got {got}"),
                )
            })
        };
        let string = || match value {
            Value::String(s) => Ok(s.as_str()),
            other => Err((
                "value",
                format!("expected a string, got {}", describe(other)),
            )),
        };
        let number = |accept: [Ordering; 2]| {
            let n = match value {
                Value::Number(n) => Decimal::from_number(n).map(Box::new),
                Value::String(s) => Decimal::parse(s).map(Box::new),
                _ => None,
            };
            n.map(|operand| Op::Compare { operand, accept })
                .ok_or_else(|| {
                    (
                        "value",
                        format!("expected a number, got {}", describe(value)),
                    )
                })
        };
        let version = || {
            parse_semver(string()?).ok_or_else(|| ("value", "invalid semantic version".to_string()))
        };
        let time = || {
            parse_time(string()?).ok_or_else(|| ("value", "invalid RFC 3339 timestamp".to_string()))
        };
        let op = match positive {
            "equals" => Op::Equals(scalar()?),
            "contains" => Op::Contains(scalar()?),
            "in" => Op::In(compile_list(value)?),
            "starts_with" => Op::StartsWith(Text::new(string()?)),
            "ends_with" => Op::EndsWith(Text::new(string()?)),
            "matches" => Op::Matches(compile_regex(string()?)?),
            "gt" => number([Ordering::Greater; 2])?,
            "gte" => number([Ordering::Greater, Ordering::Equal])?,
            "lt" => number([Ordering::Less; 2])?,
            "lte" => number([Ordering::Less, Ordering::Equal])?,
            "semver_eq" => Op::SemverEq(version()?),
            "semver_gt" => Op::SemverGt(version()?),
            "semver_lt" => Op::SemverLt(version()?),
            "before" => Op::Before(time()?),
            "after" => Op::After(time()?),
            _ => unreachable!("operator list and match arms are in sync"),
        };
        Ok(Condition { attr, op, negated })
    }

    /// The context value the condition reads (for explanations): the user
    /// id for the user-id attributes, the attribute otherwise.
    pub(crate) fn actual(&self, ctx: &Context) -> Option<Value> {
        match &self.attr {
            Attr::UserId => ctx.user_id().map(|id| Value::String(id.to_string())),
            Attr::Named { name, .. } => ctx.attribute(name).cloned(),
        }
    }

    /// Whether the condition holds for `ctx`.
    #[inline]
    pub(crate) fn matches(&self, lookup: &mut Lookup<'_>) -> bool {
        let present = match &self.attr {
            Attr::UserId => lookup.user_id().map(|id| self.op.test(Item::Str(id))),
            Attr::Named { name, slot } => lookup.get(*slot, name).map(|v| match v {
                Value::Array(items) => match &self.op {
                    Op::Exists => true,
                    // On a list, `contains` means membership, not substring.
                    Op::Contains(s) => items.iter().any(|x| s.equals(Item::of(x))),
                    op => items.iter().any(|x| op.test(Item::of(x))),
                },
                other => self.op.test(Item::of(other)),
            }),
        };
        match present {
            Some(hit) => hit != self.negated,
            // An absent attribute matches nothing except `not_exists`.
            None => self.negated && matches!(self.op, Op::Exists),
        }
    }
}

fn compile_regex(pattern: &str) -> Result<Regex, CompileError> {
    if pattern.len() > REGEX_MAX_LEN {
        return Err((
            "value",
            format!("regular expression longer than {REGEX_MAX_LEN} bytes"),
        ));
    }
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let msg = e.to_string().replace('\n', " ");
            ("value", format!("invalid regular expression: {msg}"))
        })
}

/// `in` operands: a JSON array of scalars, or a comma-separated string whose
/// items are trimmed (empty items dropped).
fn compile_list(value: &Value) -> Result<InList, CompileError> {
    let items: Vec<Scalar> = match value {
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Scalar::from_value(&Value::String(s.to_string())).expect("string scalar"))
            .collect(),
        Value::Array(values) => values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                Scalar::from_value(v).ok_or_else(|| {
                    let got = describe(v);
                    (
                        "value",
                        format!("item {i}: expected a string, number or boolean, got {got}"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        other => {
            let got = describe(other);
            return Err((
                "value",
                format!("expected an array or a comma-separated string, got {got}"),
            ));
        }
    };
    if items.is_empty() {
        return Err(("value", "list must not be empty".to_string()));
    }
    let set = (items.len() > IN_SET_THRESHOLD)
        .then(|| items.iter().map(|s| s.text.lower.clone()).collect());
    let mut nums: Vec<Decimal> = items
        .iter()
        .filter_map(|s| s.num.as_deref().cloned())
        .collect();
    nums.sort_unstable_by(|a, b| a.as_ref().cmp(&b.as_ref()));
    nums.dedup_by(|a, b| a.as_ref().eq(&b.as_ref()));
    Ok(InList {
        items: items.into_boxed_slice(),
        set,
        nums: nums.into_boxed_slice(),
    })
}

impl Op {
    /// The positive form of the operator on one scalar item.
    #[inline]
    fn test(&self, item: Item<'_>) -> bool {
        match self {
            Op::Equals(s) => s.equals(item),
            Op::Contains(s) => match item {
                Item::Str(v) => s.text.is_substring_of(v),
                _ => false,
            },
            Op::In(list) => list.contains(item),
            Op::StartsWith(t) => matches!(item, Item::Str(v) if t.is_prefix_of(v)),
            Op::EndsWith(t) => matches!(item, Item::Str(v) if t.is_suffix_of(v)),
            Op::Matches(re) => matches!(item, Item::Str(v) if re.is_match(v)),
            Op::Compare { operand, accept } => item
                .cmp_number(operand)
                .is_some_and(|o| accept.contains(&o)),
            Op::SemverEq(r) => semver_of(item).is_some_and(|v| v == *r),
            Op::SemverGt(r) => semver_of(item).is_some_and(|v| v > *r),
            Op::SemverLt(r) => semver_of(item).is_some_and(|v| v < *r),
            Op::Before(t) => time_of(item).is_some_and(|v| v < *t),
            Op::After(t) => time_of(item).is_some_and(|v| v > *t),
            Op::Exists => true,
        }
    }
}

fn semver_of(item: Item<'_>) -> Option<Version> {
    match item {
        Item::Str(s) => parse_semver(s),
        _ => None,
    }
}

fn time_of(item: Item<'_>) -> Option<(i64, u32)> {
    match item {
        Item::Str(s) => parse_time(s),
        _ => None,
    }
}
