//! The functions port: function records (settings, active version) and
//! their uploaded versions. Module bytes are not here; they live in bucket
//! storage under their hash. Changes are audited and numbered like every
//! other change (`Committed`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::model::Committed;

#[derive(Clone, Debug, Serialize)]
pub struct FunctionRecord {
    pub name: String,
    /// The service's settings object, stored as given.
    pub settings: Value,
    pub active_version: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct FunctionVersion {
    pub name: String,
    pub version: u32,
    pub sha256: String,
    pub size: u64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// What runs a function besides HTTP: a bus subject or a schedule.
#[derive(Clone, Debug, Serialize)]
pub struct TriggerRecord {
    pub id: String,
    pub function: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Why Flagbase stopped it (a loop), if it did.
    pub stopped: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

#[async_trait]
pub trait FunctionStore: Send + Sync {
    /// Every trigger of every function.
    async fn triggers(&self) -> Result<Vec<TriggerRecord>>;
    /// `NotFound` when the function does not exist.
    async fn create_trigger(
        &self,
        function: &str,
        subject: Option<&str>,
        schedule: Option<&str>,
        actor: &str,
    ) -> Result<Committed<TriggerRecord>>;
    /// `NotFound` unless the trigger exists and belongs to `function`.
    async fn delete_trigger(
        &self,
        function: &str,
        id: &str,
        actor: &str,
    ) -> Result<Committed<TriggerRecord>>;
    /// Marks a trigger stopped by Flagbase itself, with the reason.
    async fn stop_trigger(&self, id: &str, reason: &str) -> Result<Committed<TriggerRecord>>;

    /// Every function, by name.
    async fn functions(&self) -> Result<Vec<FunctionRecord>>;
    async fn function(&self, name: &str) -> Result<Option<FunctionRecord>>;
    /// The function's versions, oldest first (empty for no such function).
    async fn function_versions(&self, name: &str) -> Result<Vec<FunctionVersion>>;
    /// Adds the next version and makes it active, creating the function
    /// with `settings` when it does not exist.
    async fn add_function_version(
        &self,
        name: &str,
        sha256: &str,
        size: u64,
        settings: Value,
        actor: &str,
    ) -> Result<Committed<(FunctionRecord, FunctionVersion)>>;
    /// `NotFound` for no such function or version.
    async fn activate_function_version(
        &self,
        name: &str,
        version: u32,
        actor: &str,
    ) -> Result<Committed<FunctionRecord>>;
    async fn update_function_settings(
        &self,
        name: &str,
        settings: Value,
        actor: &str,
    ) -> Result<Committed<FunctionRecord>>;
    /// Deletes the function and its versions; returns what was deleted.
    async fn delete_function(
        &self,
        name: &str,
        actor: &str,
    ) -> Result<Committed<(FunctionRecord, Vec<FunctionVersion>)>>;
}
