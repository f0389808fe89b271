//! Evaluation of a compiled flag against a context: the result type, the
//! OpenFeature reasons and error codes, and the fixed evaluation order.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bucket::Split;
use crate::compile::{CompiledFlag, Served};
use crate::context::Context;
use crate::context::Lookup;

/// Why a value was served (OpenFeature resolution reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// The flag has no targeting at all; the default is the only value.
    Static,
    /// A targeted user id or a rule matched.
    TargetingMatch,
    /// A percentage rollout or weighted variant split decided.
    Split,
    /// The flag is disabled.
    Disabled,
    /// Targeting exists but nothing applied.
    Default,
    /// Evaluation failed; see the error code.
    Error,
}

/// Why evaluation failed (OpenFeature error codes). The engine itself only
/// produces `FLAG_NOT_FOUND` and `TYPE_MISMATCH`; the others are for the
/// server (e.g. `INVALID_CONTEXT` for a context that is not a JSON object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// No flag with that key in the snapshot.
    FlagNotFound,
    /// The flag's type differs from the type the caller asked for.
    TypeMismatch,
    /// The request or context could not be parsed (server-side).
    ParseError,
    /// A targeting key was required but missing (server-side; the engine
    /// itself treats a missing key as "not in any rollout").
    TargetingKeyMissing,
    /// The context is malformed (server-side).
    InvalidContext,
    /// Anything else.
    General,
}

impl Reason {
    /// The wire name, e.g. `TARGETING_MATCH`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Disabled => "DISABLED",
            Reason::Default => "DEFAULT",
            Reason::Error => "ERROR",
        }
    }
}

impl ErrorCode {
    /// The wire name, e.g. `FLAG_NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::General => "GENERAL",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `null`, returned by reference for errors.
static NULL: Value = Value::Null;

/// The outcome of evaluating one flag. Borrows from the snapshot, so
/// producing it allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evaluation<'a> {
    /// The served value (`null` on error).
    pub value: &'a Value,
    /// The variant key, when the value came from a named variant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<&'a str>,
    /// Why this value was served.
    pub reason: Reason,
    /// Set exactly when `reason` is `ERROR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<ErrorCode>,
}

impl<'a> Evaluation<'a> {
    /// An error result with a `null` value.
    pub fn error(code: ErrorCode) -> Self {
        Evaluation {
            value: &NULL,
            variant: None,
            reason: Reason::Error,
            error_code: Some(code),
        }
    }

    /// `reason: ERROR, error_code: FLAG_NOT_FOUND`.
    pub fn not_found() -> Self {
        Self::error(ErrorCode::FlagNotFound)
    }

    #[inline]
    fn plain(value: &'a Value, reason: Reason) -> Self {
        Evaluation {
            value,
            variant: None,
            reason,
            error_code: None,
        }
    }

    #[inline]
    fn served(s: &'a Served, reason: Reason) -> Self {
        Evaluation {
            value: &s.value,
            variant: s.variant.as_deref(),
            reason,
            error_code: None,
        }
    }
}

impl CompiledFlag {
    /// Evaluates the flag for `ctx`. Never fails: steps 2–6 of the order in
    /// docs/engine.md (step 1, unknown keys, is the snapshot's job).
    #[inline]
    pub fn evaluate<'a>(&'a self, ctx: &Context) -> Evaluation<'a> {
        let p = &self.program;
        // 2. Disabled.
        if !p.enabled {
            return Evaluation::plain(&p.disabled_value, Reason::Disabled);
        }
        // 3. Individually targeted users.
        if let Some(on) = &p.on {
            if !p.targeted_users.is_empty() {
                if let Some(uid) = ctx.user_id() {
                    if p.targeted_users
                        .binary_search_by(|u| (**u).cmp(uid))
                        .is_ok()
                    {
                        return Evaluation::served(on, Reason::TargetingMatch);
                    }
                }
            }
        }
        // 4. Rules, already sorted by priority; all conditions must hold.
        if !p.rules.is_empty() {
            let mut lookup = Lookup::new(ctx);
            for rule in p.rules.iter() {
                if rule.conditions.iter().all(|c| c.matches(&mut lookup)) {
                    return Evaluation::served(&rule.served, Reason::TargetingMatch);
                }
            }
        }
        // 5. Percentage rollout or weighted variants.
        match &p.split {
            Split::None => {}
            Split::Rollout {
                threshold,
                fraction,
            } => {
                if *threshold > 0 {
                    if let (Some(on), Some(pos)) = (&p.on, p.bucketer.position(ctx, *fraction)) {
                        if pos < *threshold {
                            return Evaluation::served(on, Reason::Split);
                        }
                    }
                }
            }
            Split::Weighted { bounds, fraction } => {
                if let Some(pos) = p.bucketer.position(ctx, *fraction) {
                    // Bounds are cumulative and end at 100_000, so a variant
                    // is always found; the fallback only guards the invariant.
                    let i = bounds.partition_point(|b| *b <= pos);
                    if let Some(v) = p.variants.get(i) {
                        return Evaluation::served(v, Reason::Split);
                    }
                }
            }
        }
        // 6. Default.
        let reason = if p.is_static {
            Reason::Static
        } else {
            Reason::Default
        };
        Evaluation::plain(&p.default_value, reason)
    }
}
