//! The audit log table: written inside the transaction of each change, read
//! newest first with keyset pagination on the time-ordered id.

use rusqlite::{params, Connection, Row};
use serde::Serialize;

use super::{db_err, now, parse_ts, ts};
use crate::error::{Error, Result};
use crate::model::{AuditQuery, AuditRecord};

/// Appends one record; call it with the transaction that makes the change.
pub fn write<B: Serialize, A: Serialize>(
    conn: &Connection,
    actor: &str,
    action: &str,
    target: &str,
    before: Option<&B>,
    after: Option<&A>,
) -> Result<()> {
    fn json<T: Serialize>(v: Option<&T>) -> Result<Option<String>> {
        v.map(|v| serde_json::to_string(v).map_err(Error::internal))
            .transpose()
    }
    conn.execute(
        "INSERT INTO audit_log (id, at, actor, action, target, before, after)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            uuid::Uuid::now_v7().to_string(),
            ts(now()),
            actor,
            action,
            target,
            json(before)?,
            json(after)?,
        ],
    )
    .map_err(db_err)?;
    Ok(())
}

/// `None` for an absent side of a change, typed so `write` can infer `T`.
pub const NOTHING: Option<&()> = None;

fn row(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    let json = |i: usize| -> rusqlite::Result<Option<serde_json::Value>> {
        r.get::<_, Option<String>>(i)?
            .map(|t| {
                serde_json::from_str(&t).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        i,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })
            })
            .transpose()
    };
    Ok(AuditRecord {
        id: r.get(0)?,
        at: parse_ts(&r.get::<_, String>(1)?)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        target: r.get(4)?,
        before: json(5)?,
        after: json(6)?,
    })
}

pub fn query(conn: &Connection, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, at, actor, action, target, before, after FROM audit_log
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
