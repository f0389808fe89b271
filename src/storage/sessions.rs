//! The browser sessions' storage port. A session is stored under the
//! SHA-256 of its id only, so a copy of the database lets nobody in.
//! Sessions are credentials, not audited changes: creating or ending one
//! takes no change number, as a login never has.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::model::Role;

#[derive(Clone, Debug, PartialEq)]
pub struct SessionRecord {
    /// Hex SHA-256 of the session id the browser holds.
    pub id_hash: String,
    pub user_id: String,
    /// The user's role at login: a session whose user's role has changed
    /// since is ended rather than carried over.
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session; the user's deletion deletes it too.
    async fn create_session(&self, session: SessionRecord) -> Result<()>;
    async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>>;
    /// Whether a session was there to delete.
    async fn delete_session(&self, id_hash: &str) -> Result<bool>;
    /// Deletes the sessions that expired before `now`; returns how many.
    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64>;
}
