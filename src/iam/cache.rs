//! An in-process cache of users and API tokens for authentication, so the
//! hot path (every authenticated request) does not touch the database.
//!
//! Correctness rests on one invariant: role changes, deletions and
//! revocations go through `Iam`, which calls `invalidate` after each. Only
//! positive lookups are cached, so users created elsewhere (the CLI) are
//! found on their first request. A generation counter stops a lookup that
//! raced with an invalidation from caching what it read before the change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use crate::error::Result;
use crate::model::{ApiToken, User};
use crate::storage::Store;

/// Entries per map before it is simply emptied; bounds memory.
const MAX_ENTRIES: usize = 50_000;

#[derive(Default)]
pub struct Principals {
    generation: AtomicU64,
    users: RwLock<HashMap<String, User>>,
    tokens: RwLock<HashMap<String, ApiToken>>,
}

/// Reads through `map`, filling it from `load` unless the cache was
/// invalidated while loading.
async fn read_through<T: Clone>(
    generation: &AtomicU64,
    map: &RwLock<HashMap<String, T>>,
    key: &str,
    load: impl std::future::Future<Output = Result<Option<T>>>,
) -> Result<Option<T>> {
    if let Some(hit) = map.read().expect("cache lock").get(key) {
        return Ok(Some(hit.clone()));
    }
    let seen = generation.load(Ordering::Acquire);
    let loaded = load.await?;
    if let Some(value) = &loaded {
        let mut map = map.write().expect("cache lock");
        if generation.load(Ordering::Acquire) == seen {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(key.to_string(), value.clone());
        }
    }
    Ok(loaded)
}

impl Principals {
    pub async fn user(&self, store: &dyn Store, id: &str) -> Result<Option<User>> {
        read_through(&self.generation, &self.users, id, store.user(id)).await
    }

    pub async fn api_token(&self, store: &dyn Store, id: &str) -> Result<Option<ApiToken>> {
        read_through(&self.generation, &self.tokens, id, store.api_token(id)).await
    }

    /// Changes whenever `invalidate` runs: what was concluded from the
    /// principals at one generation holds while it is still current.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Forgets everything; called after any change to users or tokens.
    pub fn invalidate(&self) {
        // Bump first, under the write locks, so a concurrent loader that read
        // the old generation cannot insert after the clear.
        let mut users = self.users.write().expect("cache lock");
        let mut tokens = self.tokens.write().expect("cache lock");
        self.generation.fetch_add(1, Ordering::AcqRel);
        users.clear();
        tokens.clear();
    }
}
