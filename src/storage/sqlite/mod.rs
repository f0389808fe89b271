//! The SQLite adapter of the storage port: WAL, foreign keys, a busy timeout,
//! migrations at open, and durable (`synchronous=FULL`) commits so that an
//! acknowledged write survives a killed process or a lost machine.
//!
//! The SQL lives in one file per table group (`iam`, `flags`, `audit`); this
//! file opens connections, maps driver errors, and wires the port to them.

mod audit;
mod flags;
mod iam;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags};

use super::migrations::{self, MigrationError};
use super::pool::Pool;
use super::Store;
use crate::error::{Error, Result};
use crate::model::{
    ApiToken, AuditQuery, AuditRecord, FlagRecord, NewApiToken, NewUser, Revision, Role, User,
};

/// Why the database could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Migration {
        path: PathBuf,
        source: MigrationError,
    },
}

#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub readers: usize,
    pub busy_timeout: Duration,
}

pub struct SqliteStore {
    pool: Pool,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(options: &SqliteOptions) -> Result<Self, OpenError> {
        let path = options.path.clone();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| OpenError::Directory {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let sqlite_err = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut first = open_writer(&path, options.busy_timeout).map_err(sqlite_err)?;
        migrations::migrate(&mut first).map_err(|source| OpenError::Migration {
            path: path.clone(),
            source,
        })?;
        drop(first);

        let (wp, rp, timeout) = (path.clone(), path.clone(), options.busy_timeout);
        let pool = Pool::new(
            options.readers,
            Arc::new(move || open_writer(&wp, timeout)),
            Arc::new(move || open_reader(&rp, timeout)),
        )
        .map_err(sqlite_err)?;
        Ok(SqliteStore { pool })
    }
}

fn open_writer(path: &Path, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy)?;
    // journal_mode answers with a row, so it is read rather than executed.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "cannot switch the database to WAL mode (got {mode})"
        )));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(conn)
}

fn open_reader(path: &Path, busy: Duration) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy)?;
    Ok(conn)
}

/// Maps driver errors to kinds; constraint failures are the caller's doing.
fn db_err(e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => Error::Conflict(e.to_string()),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            Error::Unavailable("the database is busy; try again".into())
        }
        _ => Error::internal(e),
    }
}

/// The current time at the precision stored, so a returned record equals
/// the one read back later.
fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(3)
}

fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_ts(text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Owned copies of borrowed arguments, for closures sent to blocking threads.
fn own(s: &str) -> String {
    s.to_string()
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.pool
            .read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(db_err))
            .await
    }

    async fn create_user(&self, new: NewUser, actor: &str) -> Result<User> {
        let actor = own(actor);
        self.pool
            .write(move |c| iam::create_user(c, new, &actor))
            .await
    }

    async fn create_first_admin(&self, new: NewUser) -> Result<User> {
        self.pool
            .write(move |c| iam::create_first_admin(c, new))
            .await
    }

    async fn user(&self, id: &str) -> Result<Option<User>> {
        let id = own(id);
        self.pool.read(move |c| iam::user(c, &id)).await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = own(email);
        self.pool.read(move |c| iam::user_by_email(c, &email)).await
    }

    async fn users(&self) -> Result<Vec<User>> {
        self.pool.read(iam::users).await
    }

    async fn has_admin(&self) -> Result<bool> {
        self.pool.read(iam::has_admin).await
    }

    async fn set_user_role(&self, id: &str, role: Role, actor: &str) -> Result<User> {
        let (id, actor) = (own(id), own(actor));
        self.pool
            .write(move |c| iam::set_user_role(c, &id, role, &actor))
            .await
    }

    async fn delete_user(&self, id: &str, actor: &str) -> Result<()> {
        let (id, actor) = (own(id), own(actor));
        self.pool
            .write(move |c| iam::delete_user(c, &id, &actor))
            .await
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        let (key, value) = (own(key), own(value));
        self.pool
            .write(move |c| iam::init_setting(c, &key, &value))
            .await
    }

    async fn create_api_token(&self, new: NewApiToken, actor: &str) -> Result<ApiToken> {
        let actor = own(actor);
        self.pool
            .write(move |c| iam::create_api_token(c, new, &actor))
            .await
    }

    async fn api_token(&self, id: &str) -> Result<Option<ApiToken>> {
        let id = own(id);
        self.pool.read(move |c| iam::api_token(c, &id)).await
    }

    async fn api_tokens(&self, owner: Option<&str>) -> Result<Vec<ApiToken>> {
        let owner = owner.map(own);
        self.pool
            .read(move |c| iam::api_tokens(c, owner.as_deref()))
            .await
    }

    async fn delete_api_token(&self, id: &str, actor: &str) -> Result<()> {
        let (id, actor) = (own(id), own(actor));
        self.pool
            .write(move |c| iam::delete_api_token(c, &id, &actor))
            .await
    }

    async fn flags(&self) -> Result<Vec<FlagRecord>> {
        self.pool.read(flags::all).await
    }

    async fn flags_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<FlagRecord>> {
        let after = after.map(own);
        self.pool
            .read(move |c| flags::page(c, after.as_deref(), limit))
            .await
    }

    async fn flag(&self, key: &str) -> Result<Option<FlagRecord>> {
        let key = own(key);
        self.pool.read(move |c| flags::get(c, &key)).await
    }

    async fn create_flag(
        &self,
        key: &str,
        spec: serde_json::Value,
        actor: &str,
    ) -> Result<FlagRecord> {
        let (key, actor) = (own(key), own(actor));
        self.pool
            .write(move |c| flags::create(c, &key, spec, &actor))
            .await
    }

    async fn update_flag(
        &self,
        key: &str,
        spec: serde_json::Value,
        expected: Option<Revision>,
        action: &str,
        actor: &str,
    ) -> Result<FlagRecord> {
        let (key, action, actor) = (own(key), own(action), own(actor));
        self.pool
            .write(move |c| flags::update(c, &key, spec, expected.as_ref(), &action, &actor))
            .await
    }

    async fn delete_flag(&self, key: &str, expected: Option<Revision>, actor: &str) -> Result<()> {
        let (key, actor) = (own(key), own(actor));
        self.pool
            .write(move |c| flags::delete(c, &key, expected.as_ref(), &actor))
            .await
    }

    async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditRecord>> {
        self.pool.read(move |c| audit::query(c, &query)).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
