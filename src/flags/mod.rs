//! The flags service: validates and stores flag definitions, keeps the live
//! evaluation snapshot in step with the store, and answers evaluations.
//!
//! Writes are serialised by one lock held across "write to the store, then
//! swap the snapshot", so the snapshot always equals the store's contents in
//! commit order. Inside it the change also takes the change feed's commit
//! turn and, right after the commit, publishes its event, so events leave in
//! the store's sequence order. That unit runs on its own task
//! (`run_to_completion`): a client hanging up cannot stop a committed change
//! from reaching the snapshot and the feed.
//! Definitions are validated and compiled (up to 500 rules × 50 conditions
//! with regexes) on a blocking thread and before the lock is taken, so
//! neither the async workers nor other writers wait for compilation.
//! Reads take no lock: `live()` is an atomic pointer load.

use std::sync::Arc;

use arc_swap::ArcSwap;
use flagbase_engine::{CompiledFlag, FlagSpec, Snapshot};
use rand::RngCore;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::error::{Error, Result};
use crate::events::{ChangeEvent, ChangeFeed, Subject};
use crate::iam::Caller;
use crate::model::{AuditQuery, AuditRecord, Committed, FlagRecord, Revision, Role};
use crate::storage::metrics::{AnomalyRecord, AnomalyStore, NewAnomaly};
use crate::storage::Store;
use crate::unit_of_work::run_to_completion;

/// Fields the server keeps; accepted in request bodies (so a GET result can
/// be sent back as a PUT) but never taken from them.
/// The actor the anomaly detector's changes are audited under.
pub const DETECTOR: &str = "detector";

const SERVER_FIELDS: [&str; 4] = ["version", "created_at", "updated_at", "updated_by"];
/// Keys no new flag may take: `/api/v1/flags/<key>` names another resource.
const RESERVED_KEYS: [&str; 1] = ["usage"];
/// Longest reason a change may carry into the audit log.
const MAX_REASON_CHARS: usize = 500;

/// The snapshot evaluations read, and a tag that changes with it.
pub struct Live {
    pub snapshot: Snapshot,
    /// Differs for every distinct snapshot this process has served, across
    /// restarts too (a random boot id and a counter); used in ETags.
    pub tag: String,
}

pub struct Flags {
    store: Arc<dyn Store>,
    feed: Arc<ChangeFeed>,
    live: ArcSwap<Live>,
    writer: Mutex<u64>,
    boot_id: String,
}

/// A page of flags and where the next one starts.
pub struct Page {
    pub flags: Vec<FlagRecord>,
    pub next_cursor: Option<String>,
}

impl Flags {
    /// Loads and compiles every stored flag. A stored flag that no longer
    /// compiles (it cannot happen through this API) is logged and left out of
    /// evaluation rather than keeping Flagbase from starting.
    pub async fn load(store: Arc<dyn Store>, feed: Arc<ChangeFeed>) -> Result<Flags> {
        let records = store.flags().await?;
        let compiled = off_workers(move || {
            let mut compiled = Vec::new();
            for record in records {
                match compile(record.spec) {
                    Ok((_, flag)) => compiled.push(Arc::new(flag)),
                    Err(e) => {
                        tracing::error!(flag = %record.key, error = %e, "stored flag does not compile; it is not served")
                    }
                }
            }
            Ok(compiled)
        })
        .await?;
        let mut boot = [0u8; 6];
        rand::rng().fill_bytes(&mut boot);
        let boot_id: String = boot.iter().map(|b| format!("{b:02x}")).collect();
        let live = Live {
            snapshot: Snapshot::from_flags(compiled),
            tag: format!("{boot_id}-0"),
        };
        Ok(Flags {
            store,
            feed,
            live: ArcSwap::from_pointee(live),
            writer: Mutex::new(0),
            boot_id,
        })
    }

    /// The current snapshot; cheap, lock-free, safe to hold across awaits.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Applies a change to the snapshot; the caller holds the writer lock.
    fn publish(&self, generation: &mut u64, change: impl FnOnce(&Snapshot) -> Snapshot) {
        let current = self.live.load();
        *generation += 1;
        self.live.store(Arc::new(Live {
            snapshot: change(&current.snapshot),
            tag: format!("{}-{generation}", self.boot_id),
        }));
    }

    pub async fn create(self: &Arc<Self>, caller: &Caller, body: Value) -> Result<FlagRecord> {
        caller.require(Role::Developer)?;
        let body = strip_server_fields(body)?;
        let (spec, compiled) = off_workers(move || compile(body)).await?;
        if RESERVED_KEYS.contains(&compiled.key()) {
            return Err(Error::invalid(
                "key",
                format!(
                    "{} is reserved: GET /api/v1/flags/{} is another resource",
                    compiled.key(),
                    compiled.key()
                ),
            ));
        }
        let (this, actor) = (self.clone(), caller.user.id.clone());
        run_to_completion(async move {
            let mut generation = this.writer.lock().await;
            let turn = this.feed.begin().await;
            let change = this.store.create_flag(compiled.key(), spec, &actor).await?;
            this.publish(&mut generation, |s| s.with_flag(Arc::new(compiled)));
            turn.publish(ChangeEvent::flag(Subject::FlagCreated, &actor, &change));
            Ok(change.value)
        })
        .await
    }

    /// PUT: replaces the whole definition. The key in the body, if any, must
    /// be the key in the path.
    pub async fn replace(
        self: &Arc<Self>,
        caller: &Caller,
        key: &str,
        body: Value,
        if_match: Option<Revision>,
    ) -> Result<FlagRecord> {
        caller.require(Role::Developer)?;
        let mut body = strip_server_fields(body)?;
        match body.get("key") {
            None => {
                body.insert("key".into(), key.into());
            }
            Some(Value::String(k)) if k == key => {}
            Some(_) => {
                return Err(Error::invalid(
                    "key",
                    "is immutable; it must equal the key in the URL",
                ))
            }
        }
        self.write(caller, key, if_match, "flag.update", None, move |_| {
            Ok(body.clone())
        })
        .await
    }

    /// PATCH: a JSON merge patch (RFC 7396) on the stored definition.
    pub async fn patch(
        self: &Arc<Self>,
        caller: &Caller,
        key: &str,
        patch: Value,
        if_match: Option<Revision>,
    ) -> Result<FlagRecord> {
        caller.require(Role::Developer)?;
        let patch = Value::Object(strip_server_fields(patch)?);
        if patch.get("key").is_some_and(|k| k.as_str() != Some(key)) {
            return Err(Error::invalid("key", "is immutable"));
        }
        self.write(caller, key, if_match, "flag.update", None, move |current| {
            let mut merged = Value::Object(current);
            merge_patch(&mut merged, &patch);
            match merged {
                Value::Object(map) => Ok(map),
                _ => unreachable!("merging objects yields an object"),
            }
        })
        .await
    }

    /// Flips `enabled`.
    pub async fn toggle(
        self: &Arc<Self>,
        caller: &Caller,
        key: &str,
        if_match: Option<Revision>,
    ) -> Result<FlagRecord> {
        self.toggle_with_reason(caller, key, if_match, None).await
    }

    /// `toggle`, with the author's reason (at most 500 characters) written
    /// on the audit record.
    pub async fn toggle_with_reason(
        self: &Arc<Self>,
        caller: &Caller,
        key: &str,
        if_match: Option<Revision>,
        reason: Option<String>,
    ) -> Result<FlagRecord> {
        caller.require(Role::Developer)?;
        let reason = reason
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        if reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
        {
            return Err(Error::invalid(
                "reason",
                format!("must be at most {MAX_REASON_CHARS} characters"),
            ));
        }
        self.write(
            caller,
            key,
            if_match,
            "flag.toggle",
            reason,
            |mut current| {
                let enabled = current
                    .get("enabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                current.insert("enabled".into(), Value::Bool(!enabled));
                Ok(current)
            },
        )
        .await
    }

    /// Read-modify-write of one flag. The change is first applied and
    /// compiled off the async workers and outside the writer lock, against
    /// the version read; the commit requires that version, so a concurrent
    /// change is never overwritten. If one came first: with `If-Match` that
    /// is a 412; without it the change is redone under the writer lock,
    /// where nothing can overtake it, so contention costs a retry but never
    /// a failure.
    async fn write(
        self: &Arc<Self>,
        caller: &Caller,
        key: &str,
        if_match: Option<Revision>,
        action: &'static str,
        reason: Option<String>,
        change: impl Fn(Map<String, Value>) -> Result<Map<String, Value>> + Send + Sync + 'static,
    ) -> Result<FlagRecord> {
        let change = Arc::new(change);
        let (key, actor) = (key.to_string(), caller.user.id.clone());
        let conditional = if_match.is_some();

        let (revision, map) = self.current(&key, if_match).await?;
        let apply = change.clone();
        let (spec, compiled) = off_workers(move || compile(apply(map)?)).await?;
        let (this, k, a) = (self.clone(), key.clone(), actor.clone());
        let r = reason.clone();
        let optimistic = run_to_completion(async move {
            let mut generation = this.writer.lock().await;
            let turn = this.feed.begin().await;
            let change = this
                .store
                .update_flag_with_reason(&k, spec, Some(revision), action, &a, r.as_deref())
                .await?;
            this.publish(&mut generation, |s| s.with_flag(Arc::new(compiled)));
            turn.publish(ChangeEvent::flag(
                Subject::for_flag_action(action),
                &a,
                &change,
            ));
            Ok(change.value)
        })
        .await;
        match optimistic {
            Err(Error::PreconditionFailed(_)) if !conditional => {}
            other => return other,
        }

        let this = self.clone();
        run_to_completion(async move {
            let mut generation = this.writer.lock().await;
            let (revision, map) = this.current(&key, None).await?;
            let (spec, compiled) = off_workers(move || compile(change(map)?)).await?;
            // Taken after compiling, so other services' writes do not wait
            // for it; the flags writer lock already keeps this key still.
            let turn = this.feed.begin().await;
            let change = this
                .store
                .update_flag_with_reason(
                    &key,
                    spec,
                    Some(revision),
                    action,
                    &actor,
                    reason.as_deref(),
                )
                .await?;
            this.publish(&mut generation, |s| s.with_flag(Arc::new(compiled)));
            turn.publish(ChangeEvent::flag(
                Subject::for_flag_action(action),
                &actor,
                &change,
            ));
            Ok(change.value)
        })
        .await
    }

    /// The stored revision and definition of `key`, checked against the
    /// revision an `If-Match` asked for.
    async fn current(
        &self,
        key: &str,
        if_match: Option<Revision>,
    ) -> Result<(Revision, Map<String, Value>)> {
        let current = self
            .store
            .flag(key)
            .await?
            .ok_or_else(|| Error::NotFound(format!("flag {key}")))?;
        let revision = current.revision();
        if let Some(expected) = if_match.filter(|r| *r != revision) {
            return Err(Error::PreconditionFailed(format!(
                "flag {key} is at revision {revision}, not {expected}"
            )));
        }
        match current.spec {
            Value::Object(map) => Ok((revision, map)),
            _ => Err(Error::internal(format!(
                "stored flag {key} is not an object"
            ))),
        }
    }

    pub async fn delete(
        self: &Arc<Self>,
        caller: &Caller,
        key: &str,
        if_match: Option<Revision>,
    ) -> Result<()> {
        caller.require(Role::Developer)?;
        let (this, key, actor) = (self.clone(), key.to_string(), caller.user.id.clone());
        run_to_completion(async move {
            let mut generation = this.writer.lock().await;
            let turn = this.feed.begin().await;
            let change = this.store.delete_flag(&key, if_match, &actor).await?;
            this.publish(&mut generation, |s| s.without_flag(&key));
            turn.publish(ChangeEvent::flag(Subject::FlagDeleted, &actor, &change));
            Ok(())
        })
        .await
    }

    /// The anomaly detector's action: turns `key` off if it is still at
    /// `revision`, auditing it as actor `detector` with the decision record
    /// and opening the anomaly in the same transaction, then serves and
    /// publishes the change like any other (`flagbase.flag.disabled`, whose
    /// payload adds `decision`). `PreconditionFailed` when a person changed
    /// the flag since the detector read it: it decides again next tick.
    pub async fn disable_by_detector(
        self: &Arc<Self>,
        anomalies: Arc<dyn AnomalyStore>,
        revision: Revision,
        anomaly: NewAnomaly,
    ) -> Result<Committed<(FlagRecord, AnomalyRecord)>> {
        let this = self.clone();
        run_to_completion(async move {
            let mut generation = this.writer.lock().await;
            let (revision, mut map) = this.current(&anomaly.flag_key, Some(revision)).await?;
            map.insert("enabled".into(), Value::Bool(false));
            let (spec, compiled) = off_workers(move || compile(map)).await?;
            let decision = anomaly.decision.clone();
            let turn = this.feed.begin().await;
            let change = anomalies
                .disable_flag_for_anomaly(revision, spec, anomaly, DETECTOR)
                .await?;
            this.publish(&mut generation, |s| s.with_flag(Arc::new(compiled)));
            let flag_change = Committed {
                value: change.value.0.clone(),
                seq: change.seq,
                at: change.at,
            };
            let mut event = ChangeEvent::flag(Subject::FlagDisabled, DETECTOR, &flag_change);
            event.payload["decision"] = decision;
            turn.publish(event);
            Ok(change)
        })
        .await
    }

    pub async fn get(&self, caller: &Caller, key: &str) -> Result<FlagRecord> {
        caller.require(Role::User)?;
        self.store
            .flag(key)
            .await?
            .ok_or_else(|| Error::NotFound(format!("flag {key}")))
    }

    pub async fn list(&self, caller: &Caller, cursor: Option<&str>, limit: usize) -> Result<Page> {
        caller.require(Role::User)?;
        // One extra row says whether another page exists.
        let mut flags = self.store.flags_page(cursor, limit + 1).await?;
        let next_cursor = if flags.len() > limit {
            flags.truncate(limit);
            flags.last().map(|f| f.key.clone())
        } else {
            None
        };
        Ok(Page { flags, next_cursor })
    }

    pub async fn history(
        &self,
        caller: &Caller,
        key: &str,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Vec<AuditRecord>> {
        caller.require(Role::Developer)?;
        self.store
            .audit(AuditQuery {
                target: Some(format!("flag:{key}")),
                actor: None,
                limit,
                cursor,
            })
            .await
    }
}

/// Drops server-kept fields; the body must be a JSON object.
fn strip_server_fields(body: Value) -> Result<Map<String, Value>> {
    let Value::Object(mut map) = body else {
        return Err(Error::invalid("body", "expected a JSON object"));
    };
    for field in SERVER_FIELDS {
        map.remove(field);
    }
    Ok(map)
}

/// Runs CPU-heavy work (validation and compilation) on a blocking thread.
async fn off_workers<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::internal(format!("compilation task failed: {e}")))?
}

/// Validates a definition and compiles it; returns the normalised JSON to
/// store and the compiled flag to serve.
fn compile(spec: impl Into<Value>) -> Result<(Value, CompiledFlag)> {
    let spec: FlagSpec = serde_path_to_error::deserialize(spec.into()).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        Error::invalid(field, e.into_inner())
    })?;
    let normalised = serde_json::to_value(&spec).map_err(Error::internal)?;
    let compiled = flagbase_engine::compile(spec).map_err(|e| Error::Invalid {
        field: e.field,
        reason: e.reason,
    })?;
    Ok((normalised, compiled))
}

/// RFC 7396: objects merge recursively, `null` removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let map = target.as_object_mut().expect("just made an object");
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge_patch(
            &mut doc,
            &json!({"a": null, "b": {"c": 5}, "e": [2], "f": true}),
        );
        assert_eq!(doc, json!({"b": {"c": 5, "d": 3}, "e": [2], "f": true}));
    }

    #[test]
    fn validation_errors_name_the_field() {
        let err = compile(json!({"key": "k", "enabled": true, "rules": [{"attribute": "a", "operator": "eqals", "value": "x", "variant": true}]}))
            .unwrap_err();
        assert!(err.to_string().starts_with("rules[0].operator"), "{err}");
        let err = compile(json!({"key": "k", "enabled": "yes"})).unwrap_err();
        assert!(err.to_string().starts_with("enabled:"), "{err}");
        let err = compile(json!({"key": "k", "rollout_percentge": 5})).unwrap_err();
        assert!(err.to_string().contains("rollout_percentge"), "{err}");
    }
}
