//! Deterministic bucketing for percentage rollouts and weighted variants.
//!
//! `h = FNV-1a-32(flagKey + ":" + bucketValue)`; the integer bucket is
//! `h % 100`. Fractional percentages refine that bucket with a sub-bucket
//! `FNV-1a-32(flagKey + ":" + bucketValue + ":fraction") % 1000`, giving a
//! position `bucket * 1000 + sub` in `0..100_000`. A rollout of `p` percent
//! admits positions below `round(p * 1000)`, so integer percentages reduce to
//! `h % 100 < p` (bit-compatible with the TypeScript and Go SDKs) and raising
//! a percentage never removes anyone.

use std::fmt::Write as _;

use serde_json::Value;

use crate::context::{Context, USER_ID_ATTRIBUTES};
use crate::hash::Fnv1a32;

/// Size of the position space: 100 buckets × 1000 sub-buckets.
pub const POSITIONS: u32 = 100_000;
/// Suffix hashed (after the bucket input) to derive the sub-bucket.
pub const FRACTION_SUFFIX: &[u8] = b":fraction";

/// The integer bucket (`0..100`) of `bucketValue` for `flagKey`.
pub fn bucket(flag_key: &str, bucket_value: &str) -> u32 {
    seed(flag_key).with(bucket_value.as_bytes()).finish() % 100
}

/// The full position (`0..100_000`) of `bucketValue` for `flagKey`.
pub fn position(flag_key: &str, bucket_value: &str) -> u32 {
    position_of(seed(flag_key).with(bucket_value.as_bytes()), true)
}

/// FNV state after `flagKey + ":"`.
fn seed(flag_key: &str) -> Fnv1a32 {
    Fnv1a32::default().with(flag_key.as_bytes()).with(b":")
}

/// Turns the hash of `flagKey:bucketValue` into a position. When every
/// threshold is a whole percentage the sub-bucket cannot change any decision,
/// so the second hash is skipped (`fraction == false` → sub-bucket 0).
#[inline]
fn position_of(h: Fnv1a32, fraction: bool) -> u32 {
    let bucket = h.finish() % 100;
    let sub = if fraction {
        h.with(FRACTION_SUFFIX).finish() % 1000
    } else {
        0
    };
    bucket * 1000 + sub
}

/// Converts a percentage with at most 3 decimals into thousandths.
pub(crate) fn to_milli(p: f64) -> Result<u32, &'static str> {
    if !p.is_finite() || !(0.0..=100.0).contains(&p) {
        return Err("must be between 0 and 100");
    }
    let scaled = p * 1000.0;
    let rounded = scaled.round();
    if (scaled - rounded).abs() > 1e-6 {
        return Err("at most 3 decimal places are allowed");
    }
    Ok(rounded as u32)
}

/// Per-flag bucketing configuration, precomputed at compile time.
#[derive(Debug, Clone)]
pub(crate) struct Bucketer {
    /// FNV state after `flagKey + ":"`, so evaluation hashes only the
    /// bucket value.
    seed: Fnv1a32,
    by: BucketBy,
}

#[derive(Debug, Clone)]
enum BucketBy {
    UserId,
    Attribute(Box<str>),
}

impl Bucketer {
    pub(crate) fn new(flag_key: &str, bucket_by: Option<&str>) -> Self {
        let by = match bucket_by {
            Some(a) if !USER_ID_ATTRIBUTES.contains(&a) => BucketBy::Attribute(a.into()),
            _ => BucketBy::UserId,
        };
        Bucketer {
            seed: seed(flag_key),
            by,
        }
    }

    /// The context's position, or `None` when it has no usable bucket value
    /// (then the user is in no rollout and gets no weighted variant).
    ///
    /// Bucket values: strings as-is (empty = absent), numbers by their JSON
    /// text (e.g. `42`, `1.5`), booleans as `true` / `false`; lists and
    /// objects are not bucketable.
    #[inline]
    pub(crate) fn position(&self, ctx: &Context, fraction: bool) -> Option<u32> {
        let mut h = self.seed;
        match &self.by {
            BucketBy::UserId => h.update(ctx.user_id()?.as_bytes()),
            BucketBy::Attribute(name) => match ctx.attribute(name)? {
                Value::String(s) if !s.is_empty() => h.update(s.as_bytes()),
                Value::Number(n) => write!(h, "{n}").ok()?,
                Value::Bool(b) => h.update(if *b { b"true" } else { b"false" }),
                _ => return None,
            },
        }
        Some(position_of(h, fraction))
    }
}

/// How a flag splits traffic (step 5 of the evaluation order).
#[derive(Debug, Clone)]
pub(crate) enum Split {
    None,
    /// Positions below `threshold` (thousandths of a percent) are in.
    Rollout {
        threshold: u32,
        fraction: bool,
    },
    /// Variant `i` owns positions `bounds[i-1]..bounds[i]`; the last bound
    /// is [`POSITIONS`], so every position gets a variant.
    Weighted {
        bounds: Box<[u32]>,
        fraction: bool,
    },
}

impl Split {
    pub(crate) fn rollout(threshold: u32) -> Self {
        Split::Rollout {
            threshold,
            fraction: !threshold.is_multiple_of(1000),
        }
    }

    pub(crate) fn weighted(weights: &[u32]) -> Self {
        let bounds: Box<[u32]> = weights
            .iter()
            .scan(0, |acc, w| {
                *acc += w;
                Some(*acc)
            })
            .collect();
        let fraction = bounds.iter().any(|b| b % 1000 != 0);
        Split::Weighted { bounds, fraction }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_bucket() {
        assert_eq!(bucket("new-checkout-flow", "user-42"), 73);
        assert_eq!(position("new-checkout-flow", "user-42") / 1000, 73);
    }

    #[test]
    fn milli_conversion() {
        assert_eq!(to_milli(25.0), Ok(25_000));
        assert_eq!(to_milli(33.333), Ok(33_333));
        assert_eq!(to_milli(0.001), Ok(1));
        assert!(to_milli(12.3456).is_err());
        assert!(to_milli(-1.0).is_err());
        assert!(to_milli(100.5).is_err());
        assert!(to_milli(f64::NAN).is_err());
    }

    #[test]
    fn whole_weights_skip_the_fraction_hash() {
        match Split::weighted(&[50_000, 50_000]) {
            Split::Weighted { bounds, fraction } => {
                assert_eq!(&*bounds, &[50_000, 100_000]);
                assert!(!fraction);
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn number_bucket_values_hash_their_text() {
        let b = Bucketer::new("f", Some("account"));
        let ctx = Context::new().with("account", 42);
        let expected = position("f", "42");
        assert_eq!(b.position(&ctx, true), Some(expected));
        assert_eq!(b.position(&Context::new(), true), None);
    }
}
