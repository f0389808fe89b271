//! The SQLite adapter of the storage port: WAL, foreign keys, a busy timeout,
//! migrations at open, and durable (`synchronous=FULL`) commits so that an
//! acknowledged write survives a killed process or a lost machine.
//!
//! The SQL lives in one file per table group (`iam`, `flags`, `audit`); this
//! file opens connections, maps driver errors, and wires the port to them.

mod audit;
mod flags;
mod functions;
mod gateway;
mod iam;
mod metrics;
mod sessions;
mod usage;

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
    ApiToken, AuditQuery, AuditRecord, Committed, FlagRecord, NewApiToken, NewUser, Revision, Role,
    User,
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
    /// How many reader connections the pool holds (tests visit each).
    #[cfg_attr(not(test), allow(dead_code))]
    readers: usize,
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
        Ok(SqliteStore {
            pool,
            readers: options.readers,
        })
    }
}

/// The settings every connection must have in force. Checked on each
/// connection as it opens: a pragma that silently did not take (a build
/// without WAL, a read-only file system, a typo) would otherwise weaken
/// durability without any test noticing, since `kill -9` keeps the page
/// cache and so cannot tell `synchronous=FULL` from `OFF`.
const PRAGMAS: &[(&str, i64)] = &[
    // 2 = FULL: every commit is fsynced before it is acknowledged.
    ("synchronous", 2),
    ("foreign_keys", 1),
];

fn open_writer(path: &Path, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy)?;
    // journal_mode answers with a row, so it is read rather than executed.
    // WAL is a property of the file: set once here, in force for readers.
    let _: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    configure(&conn, busy)?;
    Ok(conn)
}

fn open_reader(path: &Path, busy: Duration) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy)?;
    configure(&conn, busy)?;
    if !conn.is_readonly(rusqlite::MAIN_DB)? {
        return Err(refused("a reader connection is not read-only"));
    }
    Ok(conn)
}

/// Applies `PRAGMAS` and fails unless they, WAL and the busy timeout are
/// all in force on `conn`.
fn configure(conn: &Connection, busy: Duration) -> rusqlite::Result<()> {
    for (name, value) in PRAGMAS {
        conn.pragma_update(None, name, value)?;
    }
    let found = pragmas(conn)?;
    let busy_ms = i64::try_from(busy.as_millis()).unwrap_or(i64::MAX);
    if !found.journal_mode.eq_ignore_ascii_case("wal") {
        return Err(refused(&format!(
            "cannot switch the database to WAL mode (got {})",
            found.journal_mode
        )));
    }
    for (name, want) in PRAGMAS {
        let got = found.get(name);
        if got != *want {
            return Err(refused(&format!(
                "PRAGMA {name} is {got} after setting it to {want}"
            )));
        }
    }
    if found.busy_timeout_ms != busy_ms {
        return Err(refused(&format!(
            "PRAGMA busy_timeout is {} ms after setting it to {busy_ms} ms",
            found.busy_timeout_ms
        )));
    }
    Ok(())
}

/// The settings in force on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pragmas {
    journal_mode: String,
    synchronous: i64,
    foreign_keys: i64,
    busy_timeout_ms: i64,
}

impl Pragmas {
    fn get(&self, name: &str) -> i64 {
        match name {
            "synchronous" => self.synchronous,
            "foreign_keys" => self.foreign_keys,
            _ => unreachable!("PRAGMAS names only known settings"),
        }
    }
}

fn pragmas(conn: &Connection) -> rusqlite::Result<Pragmas> {
    let read = |name: &str| conn.pragma_query_value(None, name, |r| r.get::<_, i64>(0));
    Ok(Pragmas {
        journal_mode: conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?,
        synchronous: read("synchronous")?,
        foreign_keys: read("foreign_keys")?,
        busy_timeout_ms: read("busy_timeout")?,
    })
}

fn refused(message: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
        Some(message.to_string()),
    )
}

/// Maps driver errors to kinds; constraint failures are the caller's doing.
///
/// The driver's text names tables, columns and constraints, so it never
/// becomes a message a client sees: it is logged here, inside the request's
/// span (which carries the request id), and callers that expect a
/// particular constraint replace the generic message with a precise one.
fn db_err(e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => {
            tracing::debug!(error = %e, "constraint violation");
            Error::Conflict(CONFLICT.into())
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            Error::Unavailable("the database is busy; try again".into())
        }
        _ => Error::internal(e),
    }
}

/// What a client learns about a constraint no caller anticipated.
const CONFLICT: &str = "the change conflicts with data already stored";

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

    async fn create_user(&self, new: NewUser, actor: &str) -> Result<Committed<User>> {
        let actor = own(actor);
        self.pool
            .write(move |c| iam::create_user(c, new, &actor))
            .await
    }

    async fn create_first_admin(&self, new: NewUser) -> Result<Committed<User>> {
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

    async fn set_user_role(&self, id: &str, role: Role, actor: &str) -> Result<Committed<User>> {
        let (id, actor) = (own(id), own(actor));
        self.pool
            .write(move |c| iam::set_user_role(c, &id, role, &actor))
            .await
    }

    async fn delete_user(&self, id: &str, actor: &str) -> Result<Committed<User>> {
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

    async fn create_api_token(&self, new: NewApiToken, actor: &str) -> Result<Committed<ApiToken>> {
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

    async fn delete_api_token(&self, id: &str, actor: &str) -> Result<Committed<ApiToken>> {
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
    ) -> Result<Committed<FlagRecord>> {
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
    ) -> Result<Committed<FlagRecord>> {
        self.update_flag_with_reason(key, spec, expected, action, actor, None)
            .await
    }

    async fn update_flag_with_reason(
        &self,
        key: &str,
        spec: serde_json::Value,
        expected: Option<Revision>,
        action: &str,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<Committed<FlagRecord>> {
        let (key, action, actor) = (own(key), own(action), own(actor));
        let reason = reason.map(own);
        self.pool
            .write(move |c| {
                flags::update(
                    c,
                    &key,
                    spec,
                    expected.as_ref(),
                    &action,
                    &actor,
                    reason.as_deref(),
                )
            })
            .await
    }

    async fn delete_flag(
        &self,
        key: &str,
        expected: Option<Revision>,
        actor: &str,
    ) -> Result<Committed<FlagRecord>> {
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

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};

    use super::*;

    /// Lets `n` blocking closures through only together, so `n` concurrent
    /// reads must each hold a different connection; a pool that handed out
    /// fewer makes `arrive` time out instead of hanging the test.
    struct Gate {
        arrived: Mutex<usize>,
        changed: Condvar,
        n: usize,
    }

    impl Gate {
        fn arrive(&self) -> bool {
            let mut arrived = self.arrived.lock().unwrap();
            *arrived += 1;
            self.changed.notify_all();
            let (arrived, wait) = self
                .changed
                .wait_timeout_while(arrived, Duration::from_secs(30), |a| *a < self.n)
                .unwrap();
            drop(arrived);
            !wait.timed_out()
        }
    }

    fn open(dir: &Path, readers: usize) -> Arc<SqliteStore> {
        Arc::new(
            SqliteStore::open(&SqliteOptions {
                path: dir.join("flagbase.db"),
                readers,
                busy_timeout: Duration::from_millis(1234),
            })
            .unwrap(),
        )
    }

    #[tokio::test]
    async fn every_pool_connection_has_wal_full_sync_and_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 4);
        let expected = Pragmas {
            journal_mode: "wal".into(),
            synchronous: 2,
            foreign_keys: 1,
            busy_timeout_ms: 1234,
        };
        let writer = store
            .pool
            .write(|c| {
                assert!(!c.is_readonly(rusqlite::MAIN_DB).unwrap());
                pragmas(c).map_err(db_err)
            })
            .await
            .unwrap();
        assert_eq!(writer, expected, "writer");

        let gate = Arc::new(Gate {
            arrived: Mutex::new(0),
            changed: Condvar::new(),
            n: store.readers,
        });
        let mut reads = tokio::task::JoinSet::new();
        for _ in 0..store.readers {
            let (store, gate) = (store.clone(), gate.clone());
            reads.spawn(async move {
                store
                    .pool
                    .read(move |c| {
                        let found = pragmas(c).map_err(db_err)?;
                        let read_only = c.is_readonly(rusqlite::MAIN_DB).map_err(db_err)?;
                        assert!(gate.arrive(), "the readers are not distinct connections");
                        Ok((found, read_only))
                    })
                    .await
            });
        }
        let mut seen = 0;
        while let Some(joined) = reads.join_next().await {
            let (found, read_only) = joined.unwrap().unwrap();
            assert_eq!(found, expected, "reader");
            assert!(read_only, "readers are read-only");
            seen += 1;
        }
        assert_eq!(seen, 4);
        store.close().await;
    }

    #[test]
    fn a_connection_that_cannot_use_wal_is_refused() {
        // An in-memory database answers `memory` to journal_mode = WAL.
        let e = open_writer(Path::new(":memory:"), Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("WAL"), "{e}");
    }

    #[test]
    fn regression_constraint_violations_do_not_carry_driver_text() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY); INSERT INTO t VALUES ('a');")
            .unwrap();
        let e = db_err(conn.execute("INSERT INTO t VALUES ('a')", []).unwrap_err());
        match e {
            Error::Conflict(message) => {
                assert_eq!(message, CONFLICT);
                assert!(!message.contains("UNIQUE") && !message.contains("t.k"));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
}
