//! An immutable, lock-free set of compiled flags: the unit the server swaps
//! atomically (e.g. behind an `Arc`) whenever a flag changes.

use std::collections::HashMap;
use std::sync::Arc;

use crate::compile::{compile, CompiledFlag, ValidationError};
use crate::context::Context;
use crate::evaluate::{ErrorCode, Evaluation};
use crate::hash::FxBuildHasher;
use crate::model::{FlagSpec, FlagType};

/// A validation failure while building a snapshot, tagged with the flag key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("flag {key:?}: {error}")]
pub struct SnapshotError {
    /// The offending flag's key (as written, possibly invalid).
    pub key: String,
    /// What is wrong with it.
    pub error: ValidationError,
}

/// Immutable map from flag key to compiled flag.
///
/// Flags are held in `Arc`s so that a new snapshot differing by one flag
/// ([`Snapshot::with_flag`]) shares every other compiled flag.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    by_key: HashMap<Box<str>, Arc<CompiledFlag>, FxBuildHasher>,
    /// Sorted by key so `evaluate_all` is deterministic without sorting.
    ordered: Vec<Arc<CompiledFlag>>,
}

impl Snapshot {
    /// An empty snapshot.
    pub fn new() -> Self {
        Snapshot::default()
    }

    /// Validates and compiles every spec. Fails on the first invalid flag or
    /// on a duplicate key.
    pub fn from_specs(specs: impl IntoIterator<Item = FlagSpec>) -> Result<Self, SnapshotError> {
        let mut flags: Vec<Arc<CompiledFlag>> = Vec::new();
        for spec in specs {
            let key = spec.key.clone();
            let flag = compile(spec).map_err(|error| SnapshotError {
                key: key.clone(),
                error,
            })?;
            flags.push(Arc::new(flag));
        }
        let snapshot = Self::from_flags(flags.iter().cloned());
        if snapshot.len() != flags.len() {
            let mut keys: Vec<&str> = flags.iter().map(|f| f.key()).collect();
            keys.sort_unstable();
            let dup = keys.windows(2).find(|w| w[0] == w[1]).map_or("", |w| w[0]);
            return Err(SnapshotError {
                key: dup.to_string(),
                error: ValidationError::new("key", "duplicate flag key"),
            });
        }
        Ok(snapshot)
    }

    /// Builds a snapshot from already compiled flags; on duplicate keys the
    /// later flag wins.
    pub fn from_flags(flags: impl IntoIterator<Item = Arc<CompiledFlag>>) -> Self {
        let mut by_key: HashMap<Box<str>, Arc<CompiledFlag>, FxBuildHasher> = HashMap::default();
        for flag in flags {
            by_key.insert(flag.key().into(), flag);
        }
        let mut ordered: Vec<_> = by_key.values().cloned().collect();
        ordered.sort_unstable_by(|a, b| a.key().cmp(b.key()));
        Snapshot { by_key, ordered }
    }

    /// A copy with `flag` added or replaced.
    pub fn with_flag(&self, flag: Arc<CompiledFlag>) -> Self {
        let mut next = self.clone();
        let key = flag.key();
        match next.ordered.binary_search_by(|f| f.key().cmp(key)) {
            Ok(i) => next.ordered[i] = flag.clone(),
            Err(i) => next.ordered.insert(i, flag.clone()),
        }
        next.by_key.insert(key.into(), flag);
        next
    }

    /// A copy without the flag `key` (unchanged if absent).
    pub fn without_flag(&self, key: &str) -> Self {
        let mut next = self.clone();
        if next.by_key.remove(key).is_some() {
            next.ordered.retain(|f| f.key() != key);
        }
        next
    }

    /// The compiled flag for `key`.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&CompiledFlag> {
        self.by_key.get(key).map(|f| &**f)
    }

    /// Number of flags.
    pub fn len(&self) -> usize {
        self.ordered.len()
    }

    /// Whether there are no flags.
    pub fn is_empty(&self) -> bool {
        self.ordered.is_empty()
    }

    /// All flags, sorted by key.
    pub fn flags(&self) -> impl ExactSizeIterator<Item = &CompiledFlag> + '_ {
        self.ordered.iter().map(|f| &**f)
    }

    /// Evaluates one flag; unknown keys give `ERROR` / `FLAG_NOT_FOUND`.
    #[inline]
    pub fn evaluate<'a>(&'a self, key: &str, ctx: &Context) -> Evaluation<'a> {
        match self.get(key) {
            Some(flag) => flag.evaluate(ctx),
            None => Evaluation::not_found(),
        }
    }

    /// Like [`Snapshot::evaluate`], but answers `ERROR` / `TYPE_MISMATCH`
    /// when the flag is not of the `expected` type (for typed OpenFeature
    /// resolvers such as `resolveBooleanEvaluation`).
    pub fn evaluate_typed<'a>(
        &'a self,
        key: &str,
        ctx: &Context,
        expected: FlagType,
    ) -> Evaluation<'a> {
        match self.get(key) {
            Some(flag) if flag.flag_type() != expected => {
                Evaluation::error(ErrorCode::TypeMismatch)
            }
            Some(flag) => flag.evaluate(ctx),
            None => Evaluation::not_found(),
        }
    }

    /// Evaluates every flag, in key order.
    pub fn evaluate_all<'a>(
        &'a self,
        ctx: &'a Context,
    ) -> impl ExactSizeIterator<Item = (&'a str, Evaluation<'a>)> + 'a {
        self.ordered.iter().map(move |f| (f.key(), f.evaluate(ctx)))
    }
}
