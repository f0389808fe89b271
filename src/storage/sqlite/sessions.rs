//! The browser_sessions table: one row per console session, keyed by the
//! SHA-256 of its id, deleted with its user (foreign key cascade).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};

use super::{db_err, own, parse_ts, ts, SqliteStore};
use crate::error::Result;
use crate::storage::sessions::{SessionRecord, SessionStore};

const COLUMNS: &str = "id_hash, user_id, role, created_at, expires_at";

fn row(r: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id_hash: r.get(0)?,
        user_id: r.get(1)?,
        role: r
            .get::<_, String>(2)?
            .parse()
            .map_err(|e: String| rusqlite::Error::ToSqlConversionFailure(e.into()))?,
        created_at: parse_ts(&r.get::<_, String>(3)?)?,
        expires_at: parse_ts(&r.get::<_, String>(4)?)?,
    })
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, s: SessionRecord) -> Result<()> {
        self.pool
            .write(move |c| {
                c.execute(
                    &format!(
                        "INSERT INTO browser_sessions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
                    ),
                    params![
                        s.id_hash,
                        s.user_id,
                        s.role.to_string(),
                        ts(s.created_at),
                        ts(s.expires_at)
                    ],
                )
                .map_err(db_err)?;
                Ok(())
            })
            .await
    }

    async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>> {
        let id_hash = own(id_hash);
        self.pool
            .read(move |c| {
                c.query_row(
                    &format!("SELECT {COLUMNS} FROM browser_sessions WHERE id_hash = ?1"),
                    [id_hash],
                    row,
                )
                .optional()
                .map_err(db_err)
            })
            .await
    }

    async fn delete_session(&self, id_hash: &str) -> Result<bool> {
        let id_hash = own(id_hash);
        self.pool
            .write(move |c| {
                let n = c
                    .execute("DELETE FROM browser_sessions WHERE id_hash = ?1", [id_hash])
                    .map_err(db_err)?;
                Ok(n > 0)
            })
            .await
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        self.pool
            .write(move |c| {
                let n = c
                    .execute(
                        "DELETE FROM browser_sessions WHERE expires_at < ?1",
                        [ts(now)],
                    )
                    .map_err(db_err)?;
                Ok(n as u64)
            })
            .await
    }
}
