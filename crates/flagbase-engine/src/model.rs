//! Serde input types: the flag definition exactly as clients send it.
//!
//! These types are deliberately loose (strings for operators, raw JSON for
//! values) so that [`crate::compile`] can report problems as
//! [`crate::ValidationError`]s with precise field paths instead of opaque
//! serde messages. Unknown fields are rejected so that typos such as
//! `rollout_percentge` fail loudly instead of being silently ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The value type a flag serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlagType {
    /// `true` / `false`; the default.
    #[default]
    Boolean,
    /// A JSON string.
    String,
    /// A JSON number.
    Number,
    /// Any non-null JSON value (object, array, ...).
    Json,
}

impl FlagType {
    /// The lowercase name used in JSON and in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FlagType::Boolean => "boolean",
            FlagType::String => "string",
            FlagType::Number => "number",
            FlagType::Json => "json",
        }
    }

    /// Whether `value` is a valid value of this type.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            FlagType::Boolean => value.is_boolean(),
            FlagType::String => value.is_string(),
            FlagType::Number => value.is_number(),
            FlagType::Json => !value.is_null(),
        }
    }
}

/// A flag definition as written by users (API body, YAML file, ...).
///
/// Server-kept metadata (`version`, `created_at`, `updated_at`, `updated_by`)
/// is not part of this type; the server strips it before deserializing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagSpec {
    /// 1–128 characters of ASCII letters, digits, `-`, `_` and `.`.
    pub key: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Defaults to `false` when absent: a flag that nobody explicitly turned
    /// on must never start serving its targeting to production traffic.
    #[serde(default)]
    pub enabled: bool,
    /// Defaults to `boolean`.
    #[serde(default, rename = "type")]
    pub flag_type: FlagType,
    /// Served when nothing else applies. Optional for boolean flags (then
    /// `false`), required for every other type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<Value>,
    /// Named values for multi-variant and A/B flags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantSpec>,
    /// Targeting rules, tried in ascending `priority`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleSpec>,
    /// Percentage (0–100, up to 3 decimals) of bucketed users who get the
    /// flag's "on" value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_percentage: Option<f64>,
    /// User ids that always get the flag's "on" value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targeted_users: Vec<String>,
    /// Context attribute used for bucketing; defaults to the user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_by: Option<String>,
}

/// One named value of a multi-variant flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// Same character rules as flag keys.
    pub key: String,
    /// Must match the flag's type.
    pub value: Value,
    /// Share of traffic in percent (up to 3 decimals). Either every variant
    /// has a weight and they sum to 100, or none has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

/// A targeting rule: either one inline condition (`attribute`, `operator`,
/// `value`) or a `conditions` list that must all hold, never both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Inline condition: the context attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// Inline condition: the operator name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Inline condition: the operand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Several conditions, all of which must hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<ConditionSpec>>,
    /// What the rule serves: a variant key for flags with variants, a boolean
    /// for boolean flags, otherwise a literal of the flag's type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<Value>,
    /// Lower runs first; ties keep list order.
    #[serde(default)]
    pub priority: i64,
}

/// One condition of a multi-condition rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    /// The context attribute.
    pub attribute: String,
    /// The operator name.
    pub operator: String,
    /// The operand; omitted for `exists` / `not_exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_documented_bodies_deserialize() {
        let a: FlagSpec = serde_json::from_str(
            r#"{"key":"new-checkout-ui","name":"New Checkout UI","enabled":true,"default_value":false,
             "rules":[{"attribute":"role","operator":"equals","value":"developer","variant":true,"priority":0}]}"#,
        )
        .unwrap();
        assert_eq!(a.rules.len(), 1);
        let b: FlagSpec = serde_json::from_str(
            r#"{"key":"new-checkout-flow","description":"Redesigned checkout","enabled":true,
             "rollout_percentage":25,"targeted_users":["user-1","user-3"]}"#,
        )
        .unwrap();
        assert_eq!(b.rollout_percentage, Some(25.0));
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let err = serde_json::from_str::<FlagSpec>(r#"{"key":"a","rollout_percentge":5}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("rollout_percentge"), "{err}");
    }

    #[test]
    fn enabled_defaults_to_false() {
        let f: FlagSpec = serde_json::from_str(r#"{"key":"a"}"#).unwrap();
        assert!(!f.enabled);
        assert_eq!(f.flag_type, FlagType::Boolean);
    }

    #[test]
    fn round_trips_without_noise() {
        let f: FlagSpec = serde_json::from_str(r#"{"key":"a","enabled":true}"#).unwrap();
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, r#"{"key":"a","enabled":true,"type":"boolean"}"#);
    }
}
