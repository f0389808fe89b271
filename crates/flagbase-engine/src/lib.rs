//! Flagbase rule engine: validation, compilation and evaluation of feature
//! flags, with no I/O.
//!
//! ```
//! use flagbase_engine::{Context, FlagSpec, Reason, Snapshot};
//!
//! let spec: FlagSpec = serde_json::from_str(
//!     r#"{"key":"new-checkout-ui","enabled":true,
//!         "rules":[{"attribute":"role","operator":"equals","value":"developer","variant":true}]}"#,
//! ).unwrap();
//! let snapshot = Snapshot::from_specs([spec]).unwrap();
//! let ctx = Context::with_targeting_key("user-1").with("role", "Developer");
//! let eval = snapshot.evaluate("new-checkout-ui", &ctx);
//! assert_eq!(eval.value, &serde_json::Value::Bool(true));
//! assert_eq!(eval.reason, Reason::TargetingMatch);
//! ```
//!
//! The semantics (evaluation order, operators, hashing) are specified in
//! `docs/engine.md`; shared test vectors live in `spec/evaluation/`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bucket;
mod compile;
mod context;
mod evaluate;
mod explain;
mod hash;
mod model;
mod number;
mod operators;
mod snapshot;
mod text;

pub use bucket::{bucket, position, FRACTION_SUFFIX, POSITIONS};
pub use compile::{
    compile, is_valid_key, validate, CompiledFlag, ValidationError, MAX_ATTRIBUTE_LEN,
    MAX_CONDITIONS, MAX_KEY_LEN, MAX_NESTING, MAX_RULES, MAX_TARGETED_USERS, MAX_TEXT_LEN,
    MAX_VARIANTS,
};
pub use context::{Attributes, Context, USER_ID_ATTRIBUTES};
pub use evaluate::{ErrorCode, Evaluation, Reason};
pub use explain::{ConditionTrace, Decision, Explanation, RuleTrace};
pub use hash::{fnv1a32, Fnv1a32, FxBuildHasher, FxHasher};
pub use model::{ConditionSpec, FlagSpec, FlagType, RuleSpec, VariantSpec};
pub use operators::{OPERATORS, REGEX_MAX_LEN, REGEX_SIZE_LIMIT};
pub use snapshot::{Snapshot, SnapshotError};
