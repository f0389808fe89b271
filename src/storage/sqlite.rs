//! The SQLite adapter of the storage port: WAL, foreign keys, a busy timeout,
//! migrations at open, and durable (`synchronous=FULL`) commits so that an
//! acknowledged write survives a killed process or a lost machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};

use super::migrations::{self, MigrationError};
use super::pool::Pool;
use super::Store;
use crate::error::{Error, Result};
use crate::model::{ApiToken, NewApiToken, NewUser, Role, User};

/// Why the database could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
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
        let sqlite_err = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| sqlite_err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        }
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

fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_ts(text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn parse_role(text: &str) -> rusqlite::Result<Role> {
    text.parse()
        .map_err(|e: String| rusqlite::Error::ToSqlConversionFailure(e.into()))
}

const USER_COLUMNS: &str = "id, email, password_hash, role, created_at";

fn user_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        email: r.get(1)?,
        password_hash: r.get(2)?,
        role: parse_role(&r.get::<_, String>(3)?)?,
        created_at: parse_ts(&r.get::<_, String>(4)?)?,
    })
}

const TOKEN_COLUMNS: &str = "id, name, role, owner_id, secret_hash, created_at, expires_at";

fn token_row(r: &Row<'_>) -> rusqlite::Result<ApiToken> {
    Ok(ApiToken {
        id: r.get(0)?,
        name: r.get(1)?,
        role: parse_role(&r.get::<_, String>(2)?)?,
        owner_id: r.get(3)?,
        secret_hash: r.get(4)?,
        created_at: parse_ts(&r.get::<_, String>(5)?)?,
        expires_at: r
            .get::<_, Option<String>>(6)?
            .map(|t| parse_ts(&t))
            .transpose()?,
    })
}

fn insert_user(conn: &Connection, new: NewUser) -> Result<User> {
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        email: new.email,
        password_hash: new.password_hash,
        role: new.role,
        created_at: Utc::now(),
    };
    conn.execute(
        "INSERT INTO users (id, email, password_hash, role, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![user.id, user.email, user.password_hash, user.role.as_str(), ts(user.created_at)],
    )
    .map_err(|e| match db_err(e) {
        Error::Conflict(_) => Error::Conflict(format!("a user with email {} already exists", user.email)),
        other => other,
    })?;
    Ok(user)
}

fn admin_count(conn: &Connection) -> Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM users WHERE role = 'admin'", [], |r| {
        r.get(0)
    })
    .map_err(db_err)
}

fn find_user(conn: &Connection, id: &str) -> Result<Option<User>> {
    conn.query_row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
        [id],
        user_row,
    )
    .optional()
    .map_err(db_err)
}

/// Refuses a change that would remove the last admin.
fn guard_last_admin(conn: &Connection, user: &User) -> Result<()> {
    if user.role == Role::Admin && admin_count(conn)? <= 1 {
        return Err(Error::Conflict(
            "this is the last admin; make another user admin first".into(),
        ));
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.pool
            .read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(db_err))
            .await
    }

    async fn create_user(&self, new: NewUser) -> Result<User> {
        self.pool.write(move |c| insert_user(c, new)).await
    }

    async fn create_first_admin(&self, new: NewUser) -> Result<User> {
        self.pool
            .write(move |c| {
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                if admin_count(&tx)? > 0 {
                    return Err(Error::Conflict("an admin already exists".into()));
                }
                let user = insert_user(
                    &tx,
                    NewUser {
                        role: Role::Admin,
                        ..new
                    },
                )?;
                tx.commit().map_err(db_err)?;
                Ok(user)
            })
            .await
    }

    async fn user(&self, id: &str) -> Result<Option<User>> {
        let id = id.to_string();
        self.pool.read(move |c| find_user(c, &id)).await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = email.to_string();
        self.pool
            .read(move |c| {
                c.query_row(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1"),
                    [email],
                    user_row,
                )
                .optional()
                .map_err(db_err)
            })
            .await
    }

    async fn users(&self) -> Result<Vec<User>> {
        self.pool
            .read(|c| {
                let mut stmt = c
                    .prepare(&format!(
                        "SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id"
                    ))
                    .map_err(db_err)?;
                let rows = stmt.query_map([], user_row).map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await
    }

    async fn has_admin(&self) -> Result<bool> {
        self.pool.read(|c| Ok(admin_count(c)? > 0)).await
    }

    async fn set_user_role(&self, id: &str, role: Role) -> Result<User> {
        let id = id.to_string();
        self.pool
            .write(move |c| {
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                let mut user =
                    find_user(&tx, &id)?.ok_or_else(|| Error::NotFound(format!("user {id}")))?;
                if role != Role::Admin {
                    guard_last_admin(&tx, &user)?;
                }
                tx.execute(
                    "UPDATE users SET role = ?1 WHERE id = ?2",
                    params![role.as_str(), id],
                )
                .map_err(db_err)?;
                // A token may not outrank its owner: lower the owner's tokens too.
                tx.execute(
                    "UPDATE api_tokens SET role = ?1 WHERE owner_id = ?2 AND
                       (CASE role WHEN 'admin' THEN 3 WHEN 'developer' THEN 2 ELSE 1 END) >
                       (CASE ?1 WHEN 'admin' THEN 3 WHEN 'developer' THEN 2 ELSE 1 END)",
                    params![role.as_str(), id],
                )
                .map_err(db_err)?;
                tx.commit().map_err(db_err)?;
                user.role = role;
                Ok(user)
            })
            .await
    }

    async fn delete_user(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.pool
            .write(move |c| {
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                let user =
                    find_user(&tx, &id)?.ok_or_else(|| Error::NotFound(format!("user {id}")))?;
                guard_last_admin(&tx, &user)?;
                tx.execute("DELETE FROM users WHERE id = ?1", [&id])
                    .map_err(db_err)?;
                tx.commit().map_err(db_err)
            })
            .await
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        let (key, value) = (key.to_string(), value.to_string());
        self.pool
            .write(move |c| {
                c.execute(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
                    params![key, value],
                )
                .map_err(db_err)?;
                c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .map_err(db_err)
            })
            .await
    }

    async fn create_api_token(&self, new: NewApiToken) -> Result<ApiToken> {
        self.pool
            .write(move |c| {
                let token = ApiToken {
                    id: new.id,
                    name: new.name,
                    role: new.role,
                    owner_id: new.owner_id,
                    secret_hash: new.secret_hash,
                    created_at: Utc::now(),
                    expires_at: new.expires_at,
                };
                c.execute(
                    "INSERT INTO api_tokens (id, name, role, owner_id, secret_hash, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        token.id,
                        token.name,
                        token.role.as_str(),
                        token.owner_id,
                        token.secret_hash,
                        ts(token.created_at),
                        token.expires_at.map(ts),
                    ],
                )
                .map_err(|e| match db_err(e) {
                    // The only constraints are the generated id and the owner.
                    Error::Conflict(_) => Error::NotFound(format!("user {}", token.owner_id)),
                    other => other,
                })?;
                Ok(token)
            })
            .await
    }

    async fn api_token(&self, id: &str) -> Result<Option<ApiToken>> {
        let id = id.to_string();
        self.pool
            .read(move |c| {
                c.query_row(
                    &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
                    [id],
                    token_row,
                )
                .optional()
                .map_err(db_err)
            })
            .await
    }

    async fn api_tokens(&self, owner: Option<&str>) -> Result<Vec<ApiToken>> {
        let owner = owner.map(str::to_string);
        self.pool
            .read(move |c| {
                let mut stmt = c
                    .prepare(&format!(
                        "SELECT {TOKEN_COLUMNS} FROM api_tokens
                         WHERE ?1 IS NULL OR owner_id = ?1 ORDER BY created_at, id"
                    ))
                    .map_err(db_err)?;
                let rows = stmt.query_map([owner], token_row).map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await
    }

    async fn delete_api_token(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.pool
            .write(move |c| {
                let n = c
                    .execute("DELETE FROM api_tokens WHERE id = ?1", [&id])
                    .map_err(db_err)?;
                if n == 0 {
                    return Err(Error::NotFound(format!("token {id}")));
                }
                Ok(())
            })
            .await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
