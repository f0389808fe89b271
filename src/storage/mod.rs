//! The storage port: everything Flagbase persists goes through `Store`, so the
//! SQLite adapter (and the PostgreSQL one to come) can be swapped without
//! touching callers. Adapters translate driver errors into `crate::Error`
//! kinds: a UNIQUE violation is `Conflict`, a missing row `NotFound`.
//!
//! Every method that changes state takes the acting principal and writes an
//! audit record in the same transaction, so nothing that changed state can
//! be missing from the audit log. In that transaction it also takes the
//! change's number in one gapless, commit-ordered change sequence (written
//! on the audit record as `seq`) and returns it with the committed value as
//! a `Committed<T>`; a change that fails takes no number. Deletions return
//! what they deleted, so followers (events) can describe it.

pub mod functions;
pub mod gateway;
pub mod metrics;
mod migrations;
mod pool;
pub mod sessions;
pub mod sqlite;
pub mod usage;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{
    ApiToken, AuditQuery, AuditRecord, Committed, FlagRecord, NewApiToken, NewUser, Revision, Role,
    User,
};

pub use metrics::{AnomalyStore, MetricStore};
pub use sqlite::SqliteStore;

#[async_trait]
pub trait Store: Send + Sync {
    /// Answers only when the database does (used by `/ready`).
    async fn ping(&self) -> Result<()>;

    /// `Conflict` when the email is taken. Emails arrive normalised.
    async fn create_user(&self, new: NewUser, actor: &str) -> Result<Committed<User>>;
    /// Creates an admin only while none exists, atomically; `Conflict` otherwise.
    async fn create_first_admin(&self, new: NewUser) -> Result<Committed<User>>;
    async fn user(&self, id: &str) -> Result<Option<User>>;
    async fn user_by_email(&self, email: &str) -> Result<Option<User>>;
    /// All users, oldest first.
    async fn users(&self) -> Result<Vec<User>>;
    async fn has_admin(&self) -> Result<bool>;
    /// `NotFound`, or `Conflict` when it would leave no admin. Lowers the
    /// user's API tokens that would outrank the new role.
    async fn set_user_role(&self, id: &str, role: Role, actor: &str) -> Result<Committed<User>>;
    /// Deletes the user and their API tokens. `NotFound`, or `Conflict` when it
    /// would leave no admin.
    async fn delete_user(&self, id: &str, actor: &str) -> Result<Committed<User>>;

    /// Stores `value` under `key` unless a value is there; returns the stored one.
    async fn init_setting(&self, key: &str, value: &str) -> Result<String>;

    async fn create_api_token(&self, new: NewApiToken, actor: &str) -> Result<Committed<ApiToken>>;
    async fn api_token(&self, id: &str) -> Result<Option<ApiToken>>;
    /// Tokens of one owner, or of everyone when `owner` is `None`; oldest first.
    async fn api_tokens(&self, owner: Option<&str>) -> Result<Vec<ApiToken>>;
    /// `NotFound` when there is no such token.
    async fn delete_api_token(&self, id: &str, actor: &str) -> Result<Committed<ApiToken>>;

    /// Every flag, ordered by key (to build the evaluation snapshot).
    async fn flags(&self) -> Result<Vec<FlagRecord>>;
    /// Up to `limit` flags with keys after `after`, ordered by key.
    async fn flags_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<FlagRecord>>;
    async fn flag(&self, key: &str) -> Result<Option<FlagRecord>>;
    /// Stores a new flag at version 1; `Conflict` when the key exists.
    async fn create_flag(
        &self,
        key: &str,
        spec: serde_json::Value,
        actor: &str,
    ) -> Result<Committed<FlagRecord>>;
    /// Replaces a flag's spec and bumps its version. `NotFound`, or
    /// `PreconditionFailed` when `expected` is given and the stored flag is
    /// another incarnation or at another version.
    /// `action` names the change in the audit log (`flag.update`, `flag.toggle`).
    async fn update_flag(
        &self,
        key: &str,
        spec: serde_json::Value,
        expected: Option<Revision>,
        action: &str,
        actor: &str,
    ) -> Result<Committed<FlagRecord>>;
    /// `update_flag` with the author's reason for the change, written on its
    /// audit record.
    async fn update_flag_with_reason(
        &self,
        key: &str,
        spec: serde_json::Value,
        expected: Option<Revision>,
        action: &str,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<Committed<FlagRecord>>;
    /// `NotFound`, or `PreconditionFailed` as for `update_flag`.
    async fn delete_flag(
        &self,
        key: &str,
        expected: Option<Revision>,
        actor: &str,
    ) -> Result<Committed<FlagRecord>>;

    /// Audit records, newest first.
    async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditRecord>>;

    /// Finishes pending work and closes the database cleanly.
    async fn close(&self);
}
