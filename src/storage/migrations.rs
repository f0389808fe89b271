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
    // 4: the change sequence. One row holds the last number taken; every
    // audited change takes the next one inside its own transaction and
    // writes it on its audit record, so the numbers are gapless and in
    // commit order (an autoincrement id is neither once a transaction can
    // roll back). Existing records are numbered in commit order, which is
    // the order of their time-ordered ids.
    "CREATE TABLE change_sequence (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        last INTEGER NOT NULL
     );
     ALTER TABLE audit_log ADD COLUMN seq INTEGER;
     UPDATE audit_log SET seq = numbered.n
       FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM audit_log) AS numbered
      WHERE numbered.id = audit_log.id;
     INSERT INTO change_sequence (id, last) SELECT 1, COUNT(*) FROM audit_log;
     CREATE UNIQUE INDEX audit_log_seq ON audit_log(seq);",
    // 5: token kinds. A `client` token is public and only evaluates; every
    // token that existed before kinds is a `server` token.
    "ALTER TABLE api_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'server'
        CHECK (kind IN ('server', 'client'));",
    // 6: metric buckets (aggregated per flag, variant, event type and time
    // bucket), per-flag guards, and the anomalies the detector opens.
    "CREATE TABLE metric_buckets (
        flag_key   TEXT NOT NULL,
        variant    TEXT NOT NULL,
        event_type TEXT NOT NULL,
        bucket     INTEGER NOT NULL,
        count      INTEGER NOT NULL,
        sum        REAL NOT NULL,
        PRIMARY KEY (flag_key, bucket, variant, event_type)
     ) WITHOUT ROWID;
     CREATE INDEX metric_buckets_bucket ON metric_buckets(bucket);
     CREATE TABLE flag_guards (
        flag_key   TEXT PRIMARY KEY REFERENCES flags(key) ON DELETE CASCADE,
        guard      TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        updated_by TEXT NOT NULL
     );
     CREATE TABLE anomalies (
        id          TEXT PRIMARY KEY,
        flag_key    TEXT NOT NULL,
        variant     TEXT,
        metric      TEXT NOT NULL,
        action      TEXT NOT NULL,
        decision    TEXT NOT NULL,
        opened_at   TEXT NOT NULL,
        seq         INTEGER,
        resolved_at TEXT,
        resolved_by TEXT
     );
     CREATE INDEX anomalies_flag ON anomalies(flag_key, id);",
    // 7: the gateway's routes: the validated definition as JSON, the path in
    // its own column so two routes can never share one.
    "CREATE TABLE gateway_routes (
        id         TEXT PRIMARY KEY,
        path       TEXT NOT NULL UNIQUE,
        spec       TEXT NOT NULL,
        version    INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        updated_by TEXT NOT NULL
     );",
    // 8: functions: one row per function (its settings as JSON and the active
    // version), one per uploaded version (the module itself lives in bucket
    // storage under its hash).
    "CREATE TABLE functions (
        name           TEXT PRIMARY KEY,
        settings       TEXT NOT NULL,
        active_version INTEGER NOT NULL,
        created_at     TEXT NOT NULL,
        updated_at     TEXT NOT NULL,
        updated_by     TEXT NOT NULL
     );
     CREATE TABLE function_versions (
        name       TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        version    INTEGER NOT NULL,
        sha256     TEXT NOT NULL,
        size       INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        PRIMARY KEY (name, version)
     );
     CREATE TABLE function_triggers (
        id         TEXT PRIMARY KEY,
        function   TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        subject    TEXT,
        schedule   TEXT,
        stopped    TEXT,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        CHECK ((subject IS NULL) <> (schedule IS NULL))
     );",
    // The console's browser sessions: only the SHA-256 of the id is kept;
    // a session goes with its user.
    "CREATE TABLE browser_sessions (
        id_hash    TEXT PRIMARY KEY,
        user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        role       TEXT NOT NULL CHECK (role IN ('admin', 'developer', 'user')),
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
     );
     CREATE INDEX browser_sessions_user ON browser_sessions(user_id);
     CREATE INDEX browser_sessions_expiry ON browser_sessions(expires_at);",
    // Why a change was made, when its author said (a toggle's reason).
    "ALTER TABLE audit_log ADD COLUMN reason TEXT;",
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

    /// Audit records written before migration 4 are numbered 1..n in the
    /// order of their ids, and the next change continues at n + 1.
    #[test]
    fn migration_4_numbers_existing_audit_records_in_commit_order() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        // Inserted out of id order, as a reader of the table might see them.
        for id in ["0002", "0003", "0001"] {
            conn.execute(
                "INSERT INTO audit_log (id, at, actor, action, target) VALUES (?1, 't', 'a', 'x', 'y')",
                [id],
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();
        let numbered: Vec<(String, i64)> = conn
            .prepare("SELECT id, seq FROM audit_log ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            numbered,
            [("0001".into(), 1), ("0002".into(), 2), ("0003".into(), 3)]
        );
        let last: i64 = conn
            .query_row("SELECT last FROM change_sequence", [], |r| r.get(0))
            .unwrap();
        assert_eq!(last, 3);
    }

    /// Tokens minted before kinds existed are `server` tokens, and the
    /// column refuses any kind but the two.
    #[test]
    fn the_token_kind_migration_makes_existing_tokens_server_tokens() {
        let mut conn = Connection::open_in_memory().unwrap();
        // Found by content: the lead renumbers migrations at merge.
        let before_kinds = MIGRATIONS
            .iter()
            .position(|m| m.contains("ADD COLUMN kind"))
            .unwrap();
        for sql in &MIGRATIONS[..before_kinds] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", before_kinds as u32)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, email, password_hash, role, created_at)
               VALUES ('u', 'a@example.com', 'h', 'user', 't');
             INSERT INTO api_tokens (id, name, role, owner_id, secret_hash, created_at)
               VALUES ('t', 'old', 'user', 'u', 'h', 't');",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let kind: String = conn
            .query_row("SELECT kind FROM api_tokens WHERE id = 't'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(kind, "server");
        assert!(conn
            .execute("UPDATE api_tokens SET kind = 'browser' WHERE id = 't'", [])
            .is_err());
    }
}
