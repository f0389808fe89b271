//! The detector's storage ports: `MetricStore` (aggregated metric buckets,
//! written by the recorder's flush task, read by the metrics API and the
//! worker) and `AnomalyStore` (per-flag guards and the anomalies the worker
//! opens, including the one transaction that disables a flag).
//!
//! Buckets are keyed by (flag, variant, event type, bucket start) and are
//! added to, never rewritten, so space grows with keys × buckets and not
//! with the number of events.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::metrics::BucketDelta;
use crate::model::{Committed, FlagRecord, Revision};

/// Count and sum of one (variant, event type) over a span of buckets.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricTotal {
    pub variant: String,
    pub event_type: String,
    pub count: u64,
    pub sum: f64,
}

/// Totals of one flag over the buckets starting at or after `from` (unix
/// seconds).
#[derive(Clone, Debug)]
pub struct TotalsQuery {
    pub flag_key: String,
    pub from: i64,
}

/// Counts of one (variant, event type) in one step of a series; `t` is the
/// step's start (unix seconds).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeriesPoint {
    pub t: i64,
    pub variant: String,
    pub event_type: String,
    pub count: u64,
}

#[async_trait]
pub trait MetricStore: Send + Sync {
    /// Adds each delta to its bucket, all in one transaction.
    async fn add_buckets(&self, deltas: Vec<BucketDelta>) -> Result<()>;
    /// One answer per query, in order, read on one connection.
    async fn metric_totals(&self, queries: Vec<TotalsQuery>) -> Result<Vec<Vec<MetricTotal>>>;
    /// Deletes buckets that start before `before`; returns how many.
    async fn prune_buckets(&self, before: i64) -> Result<u64>;
    /// One flag's buckets from `from` on, summed per `step` seconds (each
    /// point's `t` is `from` plus a whole number of steps), in time order.
    async fn metric_series(&self, flag_key: &str, from: i64, step: i64)
        -> Result<Vec<SeriesPoint>>;
}

/// A flag's own guard settings (the JSON the API accepted, validated by
/// the anomaly module).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GuardRecord {
    pub flag_key: String,
    pub guard: Value,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// An anomaly as the worker opens it.
#[derive(Clone, Debug)]
pub struct NewAnomaly {
    pub flag_key: String,
    pub variant: Option<String>,
    pub metric: String,
    /// `disable` or `alert`.
    pub action: String,
    /// The decision record (what the audit log and the bus carry too).
    pub decision: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnomalyRecord {
    pub id: String,
    pub flag_key: String,
    pub variant: Option<String>,
    pub metric: String,
    pub action: String,
    pub decision: Value,
    pub opened_at: DateTime<Utc>,
    /// The change that disabled the flag, when the action did.
    pub seq: Option<u64>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct AnomalyQuery {
    pub flag_key: Option<String>,
    pub resolved: Option<bool>,
    pub limit: usize,
}

#[async_trait]
pub trait AnomalyStore: Send + Sync {
    async fn guards(&self) -> Result<Vec<GuardRecord>>;
    async fn guard(&self, flag_key: &str) -> Result<Option<GuardRecord>>;
    /// Sets a flag's guard (`NotFound` without the flag), audited as
    /// `guard.set` with a change number.
    async fn put_guard(
        &self,
        flag_key: &str,
        guard: Value,
        actor: &str,
    ) -> Result<Committed<GuardRecord>>;

    /// Newest first.
    async fn anomalies(&self, query: AnomalyQuery) -> Result<Vec<AnomalyRecord>>;
    /// The newest anomaly of every flag that has one.
    async fn latest_anomalies(&self) -> Result<Vec<AnomalyRecord>>;
    /// Opens an anomaly that changes nothing else (action `alert`).
    async fn open_anomaly(&self, new: NewAnomaly) -> Result<AnomalyRecord>;
    /// In one transaction: stores `spec` (the flag, disabled) if the flag is
    /// still at `expected`, audits it as `flag.disable` by `actor` with the
    /// decision in the record, and opens the anomaly. `PreconditionFailed`
    /// when the flag changed since the worker read it.
    async fn disable_flag_for_anomaly(
        &self,
        expected: Revision,
        spec: Value,
        new: NewAnomaly,
        actor: &str,
    ) -> Result<Committed<(FlagRecord, AnomalyRecord)>>;
    /// Resolves an anomaly, audited as `anomaly.resolve` by `actor` with a
    /// change number. `NotFound`; resolving a resolved anomaly returns it
    /// unchanged and records nothing (`None`).
    async fn resolve_anomaly(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<(AnomalyRecord, Option<Committed<()>>)>;
}
