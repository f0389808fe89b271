//! The audit log table: written inside the transaction of each change, which
//! takes the change's number in the change sequence there; read newest first
//! with keyset pagination on the time-ordered id. Reading is
//! tolerant: a record whose stored JSON cannot be parsed is served with that
//! field as `null` and named in `unreadable`, never failing its page.

use std::collections::HashSet;
use std::sync::Mutex;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, Row};
use serde::Serialize;
use serde_json::Value;

use super::{db_err, now, parse_ts, ts};
use crate::error::{Error, Result};
use crate::model::{AuditQuery, AuditRecord, Committed};

/// Appends one record and takes the next number of the change sequence for
/// it; call it with the transaction that makes the change, so the number is
/// taken if and only if the change commits, and in commit order (the write
/// lock is held from here to the commit). Returns the change's number and
/// time, for the caller to put on what it returns.
pub fn write<B: Serialize, A: Serialize>(
    conn: &Connection,
    actor: &str,
    action: &str,
    target: &str,
    before: Option<&B>,
    after: Option<&A>,
) -> Result<Committed<()>> {
    fn json<T: Serialize>(v: Option<&T>) -> Result<Option<String>> {
        v.map(|v| serde_json::to_string(v).map_err(Error::internal))
            .transpose()
    }
    let seq: i64 = conn
        .query_row(
            "UPDATE change_sequence SET last = last + 1 WHERE id = 1 RETURNING last",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    let at = now();
    conn.execute(
        "INSERT INTO audit_log (id, at, actor, action, target, before, after, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            uuid::Uuid::now_v7().to_string(),
            ts(at),
            actor,
            action,
            target,
            json(before)?,
            json(after)?,
            seq,
        ],
    )
    .map_err(db_err)?;
    Ok(Committed {
        value: (),
        seq: u64::try_from(seq).map_err(Error::internal)?,
        at,
    })
}

/// Records why change `seq` (just written by `write`, in the same
/// transaction) was made.
pub fn note_reason(conn: &Connection, seq: u64, reason: &str) -> Result<()> {
    conn.execute(
        "UPDATE audit_log SET reason = ?1 WHERE seq = ?2",
        params![reason, seq as i64],
    )
    .map_err(db_err)?;
    Ok(())
}

/// `None` for an absent side of a change, typed so `write` can infer `T`.
pub const NOTHING: Option<&()> = None;

/// Ids of unreadable records already logged, so a page read again and again
/// does not repeat the warning; bounded, and once full every further
/// sighting is logged again rather than silently dropped.
static LOGGED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
const MAX_LOGGED: usize = 1024;

fn log_unreadable(id: &str, field: &str, why: &dyn std::fmt::Display) {
    let first = {
        let mut logged = LOGGED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let logged = logged.get_or_insert_with(HashSet::new);
        if logged.contains(id) {
            false
        } else {
            if logged.len() < MAX_LOGGED {
                logged.insert(id.to_string());
            }
            true
        }
    };
    if first {
        // The content itself is not logged: it may be huge, and it is what
        // failed to parse.
        tracing::warn!(audit_id = %id, field, error = %why, "audit record is unreadable; served with the field as null");
    }
}

/// One stored side of a change: `Ok(None)` for SQL NULL, `Err` when the
/// stored text is not readable JSON (or not text at all).
fn json_field(r: &Row<'_>, i: usize) -> std::result::Result<Option<Value>, String> {
    match r.get_ref(i).map_err(|e| e.to_string())? {
        ValueRef::Null => Ok(None),
        ValueRef::Text(bytes) => {
            let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
            serde_json::from_str(text)
                .map(Some)
                .map_err(|e| e.to_string())
        }
        other => Err(format!("stored as {}, not text", other.data_type())),
    }
}

/// Maps a row; a `before`/`after` that cannot be read becomes `null` and
/// is named in `unreadable`, so one bad record never fails a whole page.
fn row(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    let id: String = r.get(0)?;
    let mut unreadable = Vec::new();
    let mut side = |i: usize, name: &'static str| match json_field(r, i) {
        Ok(value) => value,
        Err(why) => {
            log_unreadable(&id, name, &why);
            unreadable.push(name);
            None
        }
    };
    let before = side(5, "before");
    let after = side(6, "after");
    Ok(AuditRecord {
        seq: r
            .get::<_, Option<i64>>(7)?
            .and_then(|seq| u64::try_from(seq).ok()),
        at: parse_ts(&r.get::<_, String>(1)?)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        target: r.get(4)?,
        before,
        after,
        unreadable,
        reason: r.get(8)?,
        id,
    })
}

pub fn query(conn: &Connection, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, at, actor, action, target, before, after, seq, reason FROM audit_log
             WHERE (?1 IS NULL OR target = ?1)
               AND (?2 IS NULL OR actor = ?2)
               AND (?3 IS NULL OR id < ?3)
             ORDER BY id DESC LIMIT ?4",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map(params![q.target, q.actor, q.cursor, q.limit as i64], row)
        .map_err(db_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
}
