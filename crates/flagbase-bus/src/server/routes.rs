//! A connection's cache of where its recent subjects go, so that a publisher
//! repeating a subject (the usual case) skips the shared index: no lock, no
//! walk, no fresh list per message. nats-server keeps the same per-client
//! cache. Any change to the index bumps its generation, which empties every
//! cache at its next use.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Shared, Subscription};
use crate::sublist::Matches;

/// Subjects one connection remembers; past this the cache starts over, so a
/// client publishing to ever new subjects costs a bounded amount of memory.
const MAX_SUBJECTS: usize = 256;

#[derive(Default)]
pub(crate) struct RouteCache {
    generation: u64,
    entries: HashMap<Box<str>, Matches<Arc<Subscription>>>,
}

impl RouteCache {
    /// Every subscription `subject` reaches now.
    pub(crate) fn matches(
        &mut self,
        shared: &Shared,
        subject: &str,
    ) -> &Matches<Arc<Subscription>> {
        // Loaded before the index is read: a change made in between bumps
        // the generation past this one, so what is cached below is dropped
        // at the next call rather than trusted.
        let generation = shared.generation.load(Ordering::Acquire);
        if generation != self.generation || self.entries.len() >= MAX_SUBJECTS {
            self.entries.clear();
            self.generation = generation;
        }
        // Looked up twice on a miss: `entry` would need the key allocated
        // on every hit.
        if !self.entries.contains_key(subject) {
            let found = shared.subs.read().expect("sublist lock").matches(subject);
            self.entries.insert(subject.into(), found);
        }
        &self.entries[subject]
    }
}
