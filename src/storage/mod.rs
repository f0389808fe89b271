//! The storage port: everything Flagbase persists goes through `Store`, so the
//! SQLite adapter (and the PostgreSQL one to come) can be swapped without
//! touching callers. Adapters translate driver errors into `crate::Error`
//! kinds: a UNIQUE violation is `Conflict`, a missing row `NotFound`.

mod migrations;
mod pool;
pub mod sqlite;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{ApiToken, NewApiToken, NewUser, Role, User};

pub use sqlite::SqliteStore;

#[async_trait]
pub trait Store: Send + Sync {
    /// Answers only when the database does (used by `/ready`).
    async fn ping(&self) -> Result<()>;

    /// `Conflict` when the email is taken. Emails arrive normalised.
    async fn create_user(&self, new: NewUser) -> Result<User>;
    /// Creates an admin only while none exists, atomically; `Conflict` otherwise.
    async fn create_first_admin(&self, new: NewUser) -> Result<User>;
    async fn user(&self, id: &str) -> Result<Option<User>>;
    async fn user_by_email(&self, email: &str) -> Result<Option<User>>;
    /// All users, oldest first.
    async fn users(&self) -> Result<Vec<User>>;
    async fn has_admin(&self) -> Result<bool>;
    /// `NotFound`, or `Conflict` when it would leave no admin.
    async fn set_user_role(&self, id: &str, role: Role) -> Result<User>;
    /// Deletes the user and their API tokens. `NotFound`, or `Conflict` when it
    /// would leave no admin.
    async fn delete_user(&self, id: &str) -> Result<()>;

    /// Stores `value` under `key` unless a value is there; returns the stored one.
    async fn init_setting(&self, key: &str, value: &str) -> Result<String>;

    async fn create_api_token(&self, new: NewApiToken) -> Result<ApiToken>;
    async fn api_token(&self, id: &str) -> Result<Option<ApiToken>>;
    /// Tokens of one owner, or of everyone when `owner` is `None`; oldest first.
    async fn api_tokens(&self, owner: Option<&str>) -> Result<Vec<ApiToken>>;
    /// `NotFound` when there is no such token.
    async fn delete_api_token(&self, id: &str) -> Result<()>;

    /// Finishes pending work and closes the database cleanly.
    async fn close(&self);
}
