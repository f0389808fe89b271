//! Forward-only schema migrations, tracked in `PRAGMA user_version`.
//!
//! Each entry runs once, inside the same transaction that bumps the version,
//! so a crash mid-migration leaves the previous schema intact.

use rusqlite::{Connection, TransactionBehavior};

/// Append only: never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: users, settings, API tokens.
    "CREATE TABLE users (
        id            TEXT PRIMARY KEY,
        email         TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role          TEXT NOT NULL CHECK (role IN ('admin', 'developer', 'user')),
        created_at    TEXT NOT NULL
     );
     CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
     );
     CREATE TABLE api_tokens (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        role        TEXT NOT NULL CHECK (role IN ('admin', 'developer', 'user')),
        owner_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        secret_hash TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        expires_at  TEXT
     );
     CREATE INDEX api_tokens_owner ON api_tokens(owner_id);",
    // 2: flags and the audit log.
    "CREATE TABLE flags (
        key        TEXT PRIMARY KEY,
        spec       TEXT NOT NULL,
        version    INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        updated_by TEXT NOT NULL
     );
     CREATE TABLE audit_log (
        id     TEXT PRIMARY KEY,
        at     TEXT NOT NULL,
        actor  TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        before TEXT,
        after  TEXT
     );
     CREATE INDEX audit_log_target ON audit_log(target, id);
     CREATE INDEX audit_log_actor ON audit_log(actor, id);",
    // 3: a random id per flag incarnation, so that a flag deleted and created
    // again under the same key (its version restarting at 1) never shows an
    // ETag of its predecessor. Existing rows each get their own.
    "ALTER TABLE flags ADD COLUMN incarnation TEXT NOT NULL DEFAULT '';
     UPDATE flags SET incarnation = lower(hex(randomblob(8)));",
];

/// The schema version this build writes.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("the database has schema version {found}, newer than the {LATEST} this flagbase knows; it was written by a newer flagbase: upgrade flagbase or use another database.path")]
    TooNew { found: u32 },
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Brings the schema up to `LATEST`, refusing a database from the future.
pub fn migrate(conn: &mut Connection) -> Result<(), MigrationError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > LATEST {
        return Err(MigrationError::TooNew { found });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as u32 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flags stored before migration 3 each get their own incarnation, so
    /// their ETags (`"<incarnation>-<version>"`) are unique from the start.
    #[test]
    fn migration_3_backfills_a_distinct_incarnation_per_flag() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        for key in ["a", "b"] {
            conn.execute(
                "INSERT INTO flags (key, spec, version, created_at, updated_at, updated_by)
                 VALUES (?1, '{}', 1, 't', 't', 'u')",
                [key],
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();
        let ids: Vec<String> = conn
            .prepare("SELECT incarnation FROM flags ORDER BY key")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(ids.len(), 2);
        assert!(ids.iter().all(|id| id.len() == 16), "{ids:?}");
        assert_ne!(ids[0], ids[1]);
    }
}
