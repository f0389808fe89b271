//! The evaluation context: who is asking (targeting key) and their attributes.

use std::collections::HashMap;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hash::FxBuildHasher;

/// Attribute map type; uses the Fx hasher because attribute names are short
/// and looked up once per condition on the hot path.
pub type Attributes = HashMap<String, Value, FxBuildHasher>;

/// Attribute names that resolve to the user id.
pub const USER_ID_ATTRIBUTES: [&str; 2] = ["targetingKey", "userId"];

/// An evaluation context.
///
/// JSON form (OpenFeature style, flat): `{"targetingKey": "user-1", "role":
/// "dev", "age": 31, "groups": ["a", "b"]}`. `targetingKey` fills
/// [`Context::targeting_key`] when it is a string; every other key becomes an
/// attribute. A `userId` attribute is an accepted alias for the targeting key.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Context {
    /// The user id; takes precedence over `targetingKey` / `userId` attributes.
    #[serde(rename = "targetingKey", skip_serializing_if = "Option::is_none")]
    pub targeting_key: Option<String>,
    /// Everything else. `null` values are treated as absent.
    #[serde(flatten)]
    pub attributes: Attributes,
}

impl Context {
    /// An empty context (no user id, no attributes).
    pub fn new() -> Self {
        Context::default()
    }

    /// A context with just a user id.
    pub fn with_targeting_key(key: impl Into<String>) -> Self {
        Context {
            targeting_key: Some(key.into()),
            attributes: Attributes::default(),
        }
    }

    /// Builder-style attribute setter.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// Sets an attribute.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        self.attributes.insert(name.into(), value.into());
    }

    /// Builds a context from a JSON object (see the type docs). Returns
    /// `None` when `value` is not an object, so the server can answer with
    /// `INVALID_CONTEXT`.
    pub fn from_json(value: Value) -> Option<Self> {
        match value {
            Value::Object(map) => {
                let mut ctx = Context::new();
                ctx.attributes.reserve(map.len());
                for (k, v) in map {
                    ctx.put(k, v);
                }
                Some(ctx)
            }
            _ => None,
        }
    }

    fn put(&mut self, key: String, value: Value) {
        if key == "targetingKey" {
            if let Value::String(s) = value {
                self.targeting_key = Some(s);
                return;
            }
        }
        self.attributes.insert(key, value);
    }

    /// The user id: the targeting key, else a string `targetingKey` or
    /// `userId` attribute. Empty strings count as absent so that an SDK
    /// sending `""` does not put every anonymous user in the same bucket.
    #[inline]
    pub fn user_id(&self) -> Option<&str> {
        if let Some(k) = self.targeting_key.as_deref() {
            if !k.is_empty() {
                return Some(k);
            }
        }
        if self.attributes.is_empty() {
            return None;
        }
        USER_ID_ATTRIBUTES
            .iter()
            .find_map(|name| match self.attributes.get(*name) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.as_str()),
                _ => None,
            })
    }

    /// Looks up a plain attribute (no user-id aliasing); `null` is absent.
    #[inline]
    pub fn attribute(&self, name: &str) -> Option<&Value> {
        match self.attributes.get(name) {
            Some(Value::Null) | None => None,
            Some(v) => Some(v),
        }
    }
}

/// Per-evaluation attribute cache. Flags often test the same attribute in
/// many rules (`role equals a`, `role equals b`, ...); the cache makes that
/// one hash lookup instead of one per rule. Attributes are numbered per flag
/// at compile time; slots beyond the cache size just look up directly.
pub(crate) struct Lookup<'c> {
    ctx: &'c Context,
    cache: [Option<Option<&'c Value>>; CACHE_SLOTS],
}

/// Number of distinct attributes per flag that are cached.
pub(crate) const CACHE_SLOTS: usize = 8;

impl<'c> Lookup<'c> {
    #[inline]
    pub(crate) fn new(ctx: &'c Context) -> Self {
        Lookup {
            ctx,
            cache: [None; CACHE_SLOTS],
        }
    }

    /// The user id (not cached: it is a field read, not a hash lookup).
    #[inline]
    pub(crate) fn user_id(&self) -> Option<&'c str> {
        self.ctx.user_id()
    }

    /// Attribute `name`, numbered `slot` within the flag being evaluated.
    #[inline]
    pub(crate) fn get(&mut self, slot: usize, name: &str) -> Option<&'c Value> {
        let ctx = self.ctx;
        match self.cache.get_mut(slot) {
            Some(entry) => *entry.get_or_insert_with(|| ctx.attribute(name)),
            None => ctx.attribute(name),
        }
    }
}

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContextVisitor;

        impl<'de> Visitor<'de> for ContextVisitor {
            type Value = Context;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of context attributes")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Context, A::Error> {
                let mut ctx = Context::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    ctx.put(k, v);
                }
                Ok(ctx)
            }
        }

        deserializer.deserialize_map(ContextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targeting_key_is_lifted_out_of_attributes() {
        let ctx: Context =
            serde_json::from_value(json!({"targetingKey": "u1", "role": "dev"})).unwrap();
        assert_eq!(ctx.targeting_key.as_deref(), Some("u1"));
        assert_eq!(ctx.attribute("role"), Some(&json!("dev")));
        assert!(ctx.attribute("targetingKey").is_none());
        assert_eq!(
            Context::from_json(json!({"targetingKey": "u1", "role": "dev"})),
            Some(ctx)
        );
    }

    #[test]
    fn user_id_aliases() {
        assert_eq!(Context::new().with("userId", "u2").user_id(), Some("u2"));
        assert_eq!(Context::with_targeting_key("").user_id(), None);
        assert_eq!(
            Context::with_targeting_key("u1")
                .with("userId", "u2")
                .user_id(),
            Some("u1")
        );
        assert_eq!(Context::new().with("userId", 5).user_id(), None);
    }

    #[test]
    fn null_is_absent() {
        let ctx = Context::new().with("a", Value::Null);
        assert!(ctx.attribute("a").is_none());
    }

    #[test]
    fn non_objects_are_rejected() {
        assert!(Context::from_json(json!([1])).is_none());
    }
}
