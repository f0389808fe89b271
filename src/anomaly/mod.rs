//! The anomaly detector: per-flag guards, the anomalies it opens, and the
//! worker that looks at every enabled flag each `anomaly.interval` and turns
//! off the ones whose rollout is hurting users (see `decide` for the rules
//! and `stats` for the sequential test; both pure).
//!
//! The worker reaches storage only through the ports, one call at a time:
//! it never holds a connection while doing other database work, so the API
//! keeps its readers and the writer. A failing tick is logged and the next
//! one starts afresh. One anomaly per episode: while a flag has an
//! unresolved anomaly the detector leaves it alone, and once a person
//! resolves it or changes the flag, only events after that count.

pub mod decide;
pub mod stats;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::events::{ChangeEvent, ChangeFeed, Subject};
use crate::flags::Flags;
use crate::iam::Caller;
use crate::metrics::{self, Recorder};
use crate::model::{FlagRecord, Role};
use crate::storage::metrics::{
    AnomalyQuery, AnomalyRecord, GuardRecord, MetricTotal, NewAnomaly, SeriesPoint, TotalsQuery,
};
use crate::storage::{AnomalyStore, MetricStore, Store};
use crate::unit_of_work::run_to_completion;
use decide::{Action, Decision, Guard, GuardSettings, Observation};

pub struct DetectorOptions {
    pub interval: Duration,
    pub window: Duration,
    pub retention: Duration,
    /// Whether events may name flags that do not exist.
    pub accept_unknown_flags: bool,
    /// The guard of a flag without its own settings.
    pub defaults: Guard,
}

pub struct Detector {
    store: Arc<dyn Store>,
    metric_store: Arc<dyn MetricStore>,
    anomalies: Arc<dyn AnomalyStore>,
    flags: Arc<Flags>,
    recorder: Arc<Recorder>,
    feed: Arc<ChangeFeed>,
    options: DetectorOptions,
}

/// What one tick looked at and did (for logs and benchmarks).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    pub flags: usize,
    pub disabled: usize,
    pub alerted: usize,
}

impl Detector {
    pub fn new(
        store: Arc<dyn Store>,
        metric_store: Arc<dyn MetricStore>,
        anomalies: Arc<dyn AnomalyStore>,
        flags: Arc<Flags>,
        recorder: Arc<Recorder>,
        feed: Arc<ChangeFeed>,
        options: DetectorOptions,
    ) -> Detector {
        Detector {
            store,
            metric_store,
            anomalies,
            flags,
            recorder,
            feed,
            options,
        }
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    pub fn retention(&self) -> Duration {
        self.options.retention
    }

    pub fn accepts_unknown_flags(&self) -> bool {
        self.options.accept_unknown_flags
    }

    pub fn default_window(&self) -> Duration {
        self.options.window
    }

    /// A flag's guard with the defaults filled in, and its own settings.
    pub async fn guard(&self, caller: &Caller, key: &str) -> Result<(Guard, Option<GuardRecord>)> {
        caller.require(Role::User)?;
        self.require_flag(key).await?;
        let own = self.anomalies.guard(key).await?;
        let settings = own
            .as_ref()
            .and_then(|g| serde_json::from_value::<GuardSettings>(g.guard.clone()).ok())
            .unwrap_or_default();
        Ok((settings.over(&self.options.defaults), own))
    }

    /// Replaces a flag's guard settings; audited and published as
    /// `flagbase.guard.updated`.
    pub async fn set_guard(
        self: &Arc<Self>,
        caller: &Caller,
        key: &str,
        body: Value,
    ) -> Result<(Guard, GuardRecord)> {
        caller.require(Role::Developer)?;
        let settings: GuardSettings = serde_path_to_error::deserialize(body).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "body".into() } else { path };
            Error::invalid(field, e.into_inner())
        })?;
        settings
            .validate()
            .map_err(|(field, reason)| Error::invalid(field, reason))?;
        let stored = serde_json::to_value(&settings).map_err(Error::internal)?;
        let (this, key, actor) = (self.clone(), key.to_string(), caller.user.id.clone());
        let record = run_to_completion(async move {
            let turn = this.feed.begin().await;
            let change = this.anomalies.put_guard(&key, stored, &actor).await?;
            turn.publish(ChangeEvent {
                seq: change.seq,
                subject: Subject::GuardUpdated,
                at: change.at,
                actor: actor.clone(),
                payload: serde_json::json!({
                    "key": key,
                    "actor": actor,
                    "at": change.at,
                    "guard": change.value.guard,
                }),
            });
            Ok(change.value)
        })
        .await?;
        Ok((settings.over(&self.options.defaults), record))
    }

    pub async fn anomalies(
        &self,
        caller: &Caller,
        query: AnomalyQuery,
    ) -> Result<Vec<AnomalyRecord>> {
        caller.require(Role::User)?;
        self.anomalies.anomalies(query).await
    }

    /// Resolves an anomaly; audited and published as
    /// `flagbase.anomaly.resolved`, to completion even if the client leaves.
    pub async fn resolve(self: &Arc<Self>, caller: &Caller, id: &str) -> Result<AnomalyRecord> {
        caller.require(Role::Developer)?;
        let (this, id, actor) = (self.clone(), id.to_string(), caller.user.id.clone());
        run_to_completion(async move {
            let turn = this.feed.begin().await;
            let (record, change) = this.anomalies.resolve_anomaly(&id, &actor).await?;
            if let Some(change) = change {
                turn.publish(ChangeEvent {
                    seq: change.seq,
                    subject: Subject::AnomalyResolved,
                    at: change.at,
                    actor: actor.clone(),
                    payload: serde_json::json!({
                        "id": record.id,
                        "flag_key": record.flag_key,
                        "actor": actor,
                        "at": change.at,
                        "resolved_at": record.resolved_at,
                    }),
                });
            }
            Ok(record)
        })
        .await
    }

    /// Totals of one flag over the last `window`, including events still
    /// in memory.
    pub async fn metrics(
        &self,
        caller: &Caller,
        key: &str,
        window: Duration,
    ) -> Result<(Vec<MetricTotal>, DateTime<Utc>)> {
        caller.require(Role::User)?;
        self.require_flag(key).await?;
        metrics::flush::flush(&self.recorder, self.metric_store.as_ref()).await?;
        let from = self.bucket_floor(metrics::now_secs() - secs(window));
        let mut totals = self
            .metric_store
            .metric_totals(vec![TotalsQuery {
                flag_key: key.to_string(),
                from,
            }])
            .await?;
        Ok((totals.pop().unwrap_or_default(), at(from)))
    }

    /// One flag's counts per `step` over the last `window`, including events
    /// still in memory; the series starts at a bucket boundary.
    pub async fn metrics_series(
        &self,
        caller: &Caller,
        key: &str,
        window: Duration,
        step: Duration,
    ) -> Result<(Vec<SeriesPoint>, DateTime<Utc>)> {
        caller.require(Role::User)?;
        self.require_flag(key).await?;
        metrics::flush::flush(&self.recorder, self.metric_store.as_ref()).await?;
        let from = self.bucket_floor(metrics::now_secs() - secs(window));
        let step = secs(step).max(self.recorder.bucket_secs());
        let points = self.metric_store.metric_series(key, from, step).await?;
        Ok((points, at(from)))
    }

    async fn require_flag(&self, key: &str) -> Result<FlagRecord> {
        self.store
            .flag(key)
            .await?
            .ok_or_else(|| Error::NotFound(format!("flag {key}")))
    }

    fn bucket_floor(&self, t: i64) -> i64 {
        let b = self.recorder.bucket_secs();
        t.div_euclid(b) * b
    }

    /// Looks every `interval` until `stop` resolves.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut ticker = tokio::time::interval(self.options.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick fires at once; skip it so a fresh start has data.
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = &mut stop => return,
            }
            let started = Instant::now();
            match self.tick().await {
                Ok(report) => tracing::debug!(
                    flags = report.flags,
                    disabled = report.disabled,
                    alerted = report.alerted,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "detector tick"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "detector tick failed; retrying next tick")
                }
            }
        }
    }

    /// One look at every enabled flag.
    pub async fn tick(&self) -> Result<TickReport> {
        // Events still in memory count: they happened.
        metrics::flush::flush(&self.recorder, self.metric_store.as_ref()).await?;
        let flags: Vec<FlagRecord> = self
            .store
            .flags()
            .await?
            .into_iter()
            .filter(|f| f.spec.get("enabled").and_then(Value::as_bool) == Some(true))
            .collect();
        let guards: HashMap<String, GuardSettings> = self
            .anomalies
            .guards()
            .await?
            .into_iter()
            .filter_map(|g| Some((g.flag_key, serde_json::from_value(g.guard).ok()?)))
            .collect();
        let latest: HashMap<String, AnomalyRecord> = self
            .anomalies
            .latest_anomalies()
            .await?
            .into_iter()
            .map(|a| (a.flag_key.clone(), a))
            .collect();

        let now_secs = metrics::now_secs();
        let now = at(now_secs);
        let oldest = now_secs - secs(self.options.retention);
        let window_from = self.bucket_floor(now_secs - secs(self.options.window));
        let mut looks = Vec::new();
        let mut queries = Vec::new();
        for flag in &flags {
            let last = latest.get(&flag.key);
            if last.is_some_and(|a| a.resolved_at.is_none()) {
                continue; // this episode is already open
            }
            // The rollout as it is now started at the flag's last change;
            // a resolved episode's events are not counted again.
            // The bucket of the flag's change counts (its events may be the
            // rollout's first); the bucket of a resolution does not (its
            // events are the episode's last).
            let mut start = self.bucket_floor(flag.updated_at.timestamp().max(oldest));
            if let Some(resolved) = last.and_then(|a| a.resolved_at) {
                start = start
                    .max(self.bucket_floor(resolved.timestamp()) + self.recorder.bucket_secs());
            }
            let window_start = window_from.max(start);
            queries.push(TotalsQuery {
                flag_key: flag.key.clone(),
                from: start,
            });
            queries.push(TotalsQuery {
                flag_key: flag.key.clone(),
                from: window_start,
            });
            looks.push((flag, start, window_start));
        }
        let totals = self.metric_store.metric_totals(queries).await?;
        let mut report = TickReport {
            flags: looks.len(),
            ..TickReport::default()
        };
        for ((flag, start, window_start), pair) in looks.into_iter().zip(totals.chunks(2)) {
            let guard = guards
                .get(&flag.key)
                .map(|s| s.over(&self.options.defaults))
                .unwrap_or_else(|| self.options.defaults.clone());
            let default_variant = default_variant(&flag.spec);
            let observation = Observation {
                flag_key: &flag.key,
                default_variant: &default_variant,
                since_start: &pair[0],
                start: at(start),
                in_window: &pair[1],
                window_start: at(window_start),
                now,
            };
            let Some(decision) = decide::decide(&guard, &observation) else {
                continue;
            };
            match self.act(flag, &guard, decision).await {
                Ok(Action::Disable) => report.disabled += 1,
                Ok(Action::Alert) => report.alerted += 1,
                Err(Error::PreconditionFailed(_)) => {
                    tracing::debug!(flag = %flag.key, "flag changed while the detector looked; deciding again next tick")
                }
                Err(e) => {
                    tracing::warn!(flag = %flag.key, error = %e, "the detector could not act on a flag; retrying next tick")
                }
            }
        }
        Ok(report)
    }

    async fn act(&self, flag: &FlagRecord, guard: &Guard, decision: Decision) -> Result<Action> {
        let new = NewAnomaly {
            flag_key: flag.key.clone(),
            variant: decision.variant.clone(),
            metric: guard.metric.clone(),
            action: guard.action.as_str().into(),
            decision: decision.record.clone(),
        };
        match guard.action {
            Action::Disable => {
                let change = self
                    .flags
                    .disable_by_detector(self.anomalies.clone(), flag.revision(), new)
                    .await?;
                tracing::warn!(flag = %flag.key, seq = change.seq, anomaly = %change.value.1.id, decision = %decision.record, "the detector disabled a flag");
            }
            Action::Alert => {
                let anomaly = self.anomalies.open_anomaly(new).await?;
                tracing::warn!(flag = %flag.key, anomaly = %anomaly.id, decision = %decision.record, "the detector found an anomaly (guard action: alert)");
            }
        }
        Ok(guard.action)
    }
}

/// The variant a flag serves when nothing applies, named as exposures
/// name it (`metrics::variant_name`): the variant whose value is the
/// default, else the default as JSON text (`false` for a boolean flag).
pub fn default_variant(spec: &Value) -> String {
    let default = spec.get("default_value").unwrap_or(&Value::Bool(false));
    spec.get("variants")
        .and_then(Value::as_array)
        .and_then(|vs| vs.iter().find(|v| v.get("value") == Some(default)))
        .and_then(|v| v.get("key"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| default.to_string())
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)
}

fn at(unix: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(unix, 0).single().unwrap_or_default()
}
