//! The flags table: one row per flag, the spec as JSON text, an
//! optimistic-concurrency version and the incarnation id that keeps ETags
//! unique across delete and re-create; every change is audited in its
//! transaction.

use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde_json::{json, Value};

use super::{audit, db_err, now, parse_ts, ts};
use crate::error::{Error, Result};
use crate::model::{Committed, FlagRecord, Revision};

const COLUMNS: &str = "key, spec, version, created_at, updated_at, updated_by, incarnation";

fn row(r: &Row<'_>) -> rusqlite::Result<FlagRecord> {
    let spec: String = r.get(1)?;
    Ok(FlagRecord {
        key: r.get(0)?,
        spec: serde_json::from_str(&spec).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?,
        version: r.get(2)?,
        created_at: parse_ts(&r.get::<_, String>(3)?)?,
        updated_at: parse_ts(&r.get::<_, String>(4)?)?,
        updated_by: r.get(5)?,
        incarnation: r.get(6)?,
    })
}

/// 64 random bits in hex: a new flag's incarnation.
fn new_incarnation() -> String {
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the audit log shows of a flag: its spec, version and incarnation.
pub(super) fn audited(flag: &FlagRecord) -> Value {
    json!({ "spec": flag.spec, "version": flag.version, "incarnation": flag.incarnation })
}

pub(super) fn target(key: &str) -> String {
    format!("flag:{key}")
}

pub fn all(conn: &Connection) -> Result<Vec<FlagRecord>> {
    page(conn, None, usize::MAX)
}

pub fn page(conn: &Connection, after: Option<&str>, limit: usize) -> Result<Vec<FlagRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM flags WHERE ?1 IS NULL OR key > ?1 ORDER BY key LIMIT ?2"
        ))
        .map_err(db_err)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![after, limit], row).map_err(db_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
}

pub fn get(conn: &Connection, key: &str) -> Result<Option<FlagRecord>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM flags WHERE key = ?1"),
        [key],
        row,
    )
    .optional()
    .map_err(db_err)
}

pub fn create(
    conn: &mut Connection,
    key: &str,
    spec: Value,
    actor: &str,
) -> Result<Committed<FlagRecord>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let now = now();
    let flag = FlagRecord {
        key: key.to_string(),
        spec,
        version: 1,
        created_at: now,
        updated_at: now,
        updated_by: actor.to_string(),
        incarnation: new_incarnation(),
    };
    tx.execute(
        "INSERT INTO flags (key, spec, version, created_at, updated_at, updated_by, incarnation)
         VALUES (?1, ?2, 1, ?3, ?3, ?4, ?5)",
        params![
            flag.key,
            flag.spec.to_string(),
            ts(now),
            actor,
            flag.incarnation
        ],
    )
    .map_err(|e| match db_err(e) {
        Error::Conflict(_) => Error::Conflict(format!("a flag with key {key} already exists")),
        other => other,
    })?;
    let committed = audit::write(
        &tx,
        actor,
        "flag.create",
        &target(key),
        audit::NOTHING,
        Some(&audited(&flag)),
    )?;
    tx.commit().map_err(db_err)?;
    Ok(committed.map(|()| flag))
}

/// Loads the current row and checks the caller's expected revision.
pub(super) fn current(
    conn: &Connection,
    key: &str,
    expected: Option<&Revision>,
) -> Result<FlagRecord> {
    let flag = get(conn, key)?.ok_or_else(|| Error::NotFound(format!("flag {key}")))?;
    if let Some(expected) = expected {
        if *expected != flag.revision() {
            return Err(Error::PreconditionFailed(format!(
                "flag {key} is at revision {}, not {expected}",
                flag.revision()
            )));
        }
    }
    Ok(flag)
}

pub fn update(
    conn: &mut Connection,
    key: &str,
    spec: Value,
    expected: Option<&Revision>,
    action: &str,
    actor: &str,
    reason: Option<&str>,
) -> Result<Committed<FlagRecord>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let before = current(&tx, key, expected)?;
    let after = FlagRecord {
        spec,
        version: before.version + 1,
        updated_at: now(),
        updated_by: actor.to_string(),
        ..before.clone()
    };
    tx.execute(
        "UPDATE flags SET spec = ?1, version = ?2, updated_at = ?3, updated_by = ?4 WHERE key = ?5",
        params![
            after.spec.to_string(),
            after.version,
            ts(after.updated_at),
            actor,
            key
        ],
    )
    .map_err(db_err)?;
    let committed = audit::write(
        &tx,
        actor,
        action,
        &target(key),
        Some(&audited(&before)),
        Some(&audited(&after)),
    )?;
    if let Some(reason) = reason {
        audit::note_reason(&tx, committed.seq, reason)?;
    }
    tx.commit().map_err(db_err)?;
    Ok(committed.map(|()| after))
}

pub fn delete(
    conn: &mut Connection,
    key: &str,
    expected: Option<&Revision>,
    actor: &str,
) -> Result<Committed<FlagRecord>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let before = current(&tx, key, expected)?;
    tx.execute("DELETE FROM flags WHERE key = ?1", [key])
        .map_err(db_err)?;
    let committed = audit::write(
        &tx,
        actor,
        "flag.delete",
        &target(key),
        Some(&audited(&before)),
        audit::NOTHING,
    )?;
    tx.commit().map_err(db_err)?;
    Ok(committed.map(|()| before))
}
