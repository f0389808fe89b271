//! The SQL of the detector's ports: metric buckets (upserted by addition),
//! flag guards, and anomalies, including the transaction that disables a
//! flag, audits it with the decision record and opens the anomaly.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde_json::{json, Value};

use super::flags::{audited, current, target};
use super::{audit, db_err, now, own, parse_ts, ts, SqliteStore};
use crate::error::{Error, Result};
use crate::metrics::BucketDelta;
use crate::model::{Committed, FlagRecord, Revision};
use crate::storage::metrics::{
    AnomalyQuery, AnomalyRecord, AnomalyStore, GuardRecord, MetricStore, MetricTotal, NewAnomaly,
    SeriesPoint, TotalsQuery,
};

fn add(conn: &mut Connection, deltas: &[BucketDelta]) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    {
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO metric_buckets (flag_key, variant, event_type, bucket, count, sum)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (flag_key, bucket, variant, event_type)
                 DO UPDATE SET count = count + excluded.count, sum = sum + excluded.sum",
            )
            .map_err(db_err)?;
        for d in deltas {
            stmt.execute(params![
                d.flag_key,
                d.variant,
                d.event_type,
                d.bucket,
                i64::try_from(d.count).unwrap_or(i64::MAX),
                d.sum
            ])
            .map_err(db_err)?;
        }
    }
    tx.commit().map_err(db_err)
}

fn totals(conn: &Connection, q: &TotalsQuery) -> Result<Vec<MetricTotal>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT variant, event_type, SUM(count), SUM(sum) FROM metric_buckets
             WHERE flag_key = ?1 AND bucket >= ?2
             GROUP BY variant, event_type ORDER BY variant, event_type",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map(params![q.flag_key, q.from], |r| {
            Ok(MetricTotal {
                variant: r.get(0)?,
                event_type: r.get(1)?,
                count: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                sum: r.get(3)?,
            })
        })
        .map_err(db_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
}

fn series(conn: &Connection, flag_key: &str, from: i64, step: i64) -> Result<Vec<SeriesPoint>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT ?2 + ((bucket - ?2) / ?3) * ?3 AS t, variant, event_type, SUM(count)
             FROM metric_buckets WHERE flag_key = ?1 AND bucket >= ?2
             GROUP BY t, variant, event_type ORDER BY t, variant, event_type",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map(params![flag_key, from, step], |r| {
            Ok(SeriesPoint {
                t: r.get(0)?,
                variant: r.get(1)?,
                event_type: r.get(2)?,
                count: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
            })
        })
        .map_err(db_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
}

fn guard_row(r: &Row<'_>) -> rusqlite::Result<GuardRecord> {
    let guard: String = r.get(1)?;
    Ok(GuardRecord {
        flag_key: r.get(0)?,
        guard: serde_json::from_str(&guard).unwrap_or(Value::Null),
        updated_at: parse_ts(&r.get::<_, String>(2)?)?,
        updated_by: r.get(3)?,
    })
}

const ANOMALY_COLUMNS: &str =
    "id, flag_key, variant, metric, action, decision, opened_at, seq, resolved_at, resolved_by";

fn anomaly_row(r: &Row<'_>) -> rusqlite::Result<AnomalyRecord> {
    let decision: String = r.get(5)?;
    Ok(AnomalyRecord {
        id: r.get(0)?,
        flag_key: r.get(1)?,
        variant: r.get(2)?,
        metric: r.get(3)?,
        action: r.get(4)?,
        decision: serde_json::from_str(&decision).unwrap_or(Value::Null),
        opened_at: parse_ts(&r.get::<_, String>(6)?)?,
        seq: r
            .get::<_, Option<i64>>(7)?
            .and_then(|s| u64::try_from(s).ok()),
        resolved_at: r
            .get::<_, Option<String>>(8)?
            .map(|t| parse_ts(&t))
            .transpose()?,
        resolved_by: r.get(9)?,
    })
}

fn insert_anomaly(conn: &Connection, new: NewAnomaly, seq: Option<u64>) -> Result<AnomalyRecord> {
    let record = AnomalyRecord {
        id: uuid::Uuid::now_v7().to_string(),
        flag_key: new.flag_key,
        variant: new.variant,
        metric: new.metric,
        action: new.action,
        decision: new.decision,
        opened_at: now(),
        seq,
        resolved_at: None,
        resolved_by: None,
    };
    conn.execute(
        &format!("INSERT INTO anomalies ({ANOMALY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, NULL)"),
        params![
            record.id,
            record.flag_key,
            record.variant,
            record.metric,
            record.action,
            record.decision.to_string(),
            ts(record.opened_at),
            seq.map(|s| s as i64),
        ],
    )
    .map_err(db_err)?;
    Ok(record)
}

fn anomaly(conn: &Connection, id: &str) -> Result<Option<AnomalyRecord>> {
    conn.query_row(
        &format!("SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE id = ?1"),
        [id],
        anomaly_row,
    )
    .optional()
    .map_err(db_err)
}

fn disable(
    conn: &mut Connection,
    expected: &Revision,
    spec: Value,
    new: NewAnomaly,
    actor: &str,
) -> Result<Committed<(FlagRecord, AnomalyRecord)>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let key = new.flag_key.clone();
    let before = current(&tx, &key, Some(expected))?;
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
    // The record shows the flag as every flag change does, plus why.
    let mut audited_after = audited(&after);
    audited_after["decision"] = new.decision.clone();
    let committed = audit::write(
        &tx,
        actor,
        "flag.disable",
        &target(&key),
        Some(&audited(&before)),
        Some(&audited_after),
    )?;
    let anomaly = insert_anomaly(&tx, new, Some(committed.seq))?;
    tx.commit().map_err(db_err)?;
    Ok(committed.map(|()| (after, anomaly)))
}

#[async_trait]
impl MetricStore for SqliteStore {
    async fn add_buckets(&self, deltas: Vec<BucketDelta>) -> Result<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        self.pool.write(move |c| add(c, &deltas)).await
    }

    async fn metric_totals(&self, queries: Vec<TotalsQuery>) -> Result<Vec<Vec<MetricTotal>>> {
        self.pool
            .read(move |c| queries.iter().map(|q| totals(c, q)).collect())
            .await
    }

    async fn metric_series(
        &self,
        flag_key: &str,
        from: i64,
        step: i64,
    ) -> Result<Vec<SeriesPoint>> {
        let key = own(flag_key);
        self.pool.read(move |c| series(c, &key, from, step)).await
    }

    async fn prune_buckets(&self, before: i64) -> Result<u64> {
        self.pool
            .write(move |c| {
                c.execute("DELETE FROM metric_buckets WHERE bucket < ?1", [before])
                    .map(|n| n as u64)
                    .map_err(db_err)
            })
            .await
    }
}

#[async_trait]
impl AnomalyStore for SqliteStore {
    async fn guards(&self) -> Result<Vec<GuardRecord>> {
        self.pool
            .read(|c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT flag_key, guard, updated_at, updated_by FROM flag_guards ORDER BY flag_key",
                    )
                    .map_err(db_err)?;
                let rows = stmt.query_map([], guard_row).map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await
    }

    async fn guard(&self, flag_key: &str) -> Result<Option<GuardRecord>> {
        let key = own(flag_key);
        self.pool
            .read(move |c| {
                c.query_row(
                    "SELECT flag_key, guard, updated_at, updated_by FROM flag_guards WHERE flag_key = ?1",
                    [key],
                    guard_row,
                )
                .optional()
                .map_err(db_err)
            })
            .await
    }

    async fn put_guard(
        &self,
        flag_key: &str,
        guard: Value,
        actor: &str,
    ) -> Result<Committed<GuardRecord>> {
        let (key, actor) = (own(flag_key), own(actor));
        self.pool
            .write(move |c| {
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                current(&tx, &key, None)?;
                let before: Option<Value> = tx
                    .query_row(
                        "SELECT guard FROM flag_guards WHERE flag_key = ?1",
                        [&key],
                        |r| r.get::<_, String>(0),
                    )
                    .optional()
                    .map_err(db_err)?
                    .and_then(|g| serde_json::from_str(&g).ok());
                let record = GuardRecord {
                    flag_key: key.clone(),
                    guard,
                    updated_at: now(),
                    updated_by: actor.clone(),
                };
                tx.execute(
                    "INSERT INTO flag_guards (flag_key, guard, updated_at, updated_by)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (flag_key) DO UPDATE SET guard = excluded.guard,
                        updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                    params![key, record.guard.to_string(), ts(record.updated_at), actor],
                )
                .map_err(db_err)?;
                let committed = audit::write(
                    &tx,
                    &actor,
                    "guard.set",
                    &target(&key),
                    before.map(|g| json!({ "guard": g })).as_ref(),
                    Some(&json!({ "guard": record.guard })),
                )?;
                tx.commit().map_err(db_err)?;
                Ok(committed.map(|()| record))
            })
            .await
    }

    async fn anomalies(&self, q: AnomalyQuery) -> Result<Vec<AnomalyRecord>> {
        self.pool
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {ANOMALY_COLUMNS} FROM anomalies
                         WHERE (?1 IS NULL OR flag_key = ?1)
                           AND (?2 IS NULL OR (resolved_at IS NOT NULL) = ?2)
                         ORDER BY id DESC LIMIT ?3"
                    ))
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(
                        params![
                            q.flag_key,
                            q.resolved,
                            i64::try_from(q.limit).unwrap_or(i64::MAX)
                        ],
                        anomaly_row,
                    )
                    .map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await
    }

    async fn latest_anomalies(&self) -> Result<Vec<AnomalyRecord>> {
        self.pool
            .read(|c| {
                // Ids are time-ordered (UUIDv7), so the newest is the largest.
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {ANOMALY_COLUMNS} FROM anomalies
                         WHERE id IN (SELECT MAX(id) FROM anomalies GROUP BY flag_key)"
                    ))
                    .map_err(db_err)?;
                let rows = stmt.query_map([], anomaly_row).map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await
    }

    async fn open_anomaly(&self, new: NewAnomaly) -> Result<AnomalyRecord> {
        self.pool.write(move |c| insert_anomaly(c, new, None)).await
    }

    async fn disable_flag_for_anomaly(
        &self,
        expected: Revision,
        spec: Value,
        new: NewAnomaly,
        actor: &str,
    ) -> Result<Committed<(FlagRecord, AnomalyRecord)>> {
        let actor = own(actor);
        self.pool
            .write(move |c| disable(c, &expected, spec, new, &actor))
            .await
    }

    async fn resolve_anomaly(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<(AnomalyRecord, Option<Committed<()>>)> {
        let (id, actor) = (own(id), own(actor));
        self.pool
            .write(move |c| {
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                let before =
                    anomaly(&tx, &id)?.ok_or_else(|| Error::NotFound(format!("anomaly {id}")))?;
                if before.resolved_at.is_some() {
                    return Ok((before, None));
                }
                tx.execute(
                    "UPDATE anomalies SET resolved_at = ?1, resolved_by = ?2 WHERE id = ?3",
                    params![ts(now()), actor, id],
                )
                .map_err(db_err)?;
                let after =
                    anomaly(&tx, &id)?.ok_or_else(|| Error::NotFound(format!("anomaly {id}")))?;
                let committed = audit::write(
                    &tx,
                    &actor,
                    "anomaly.resolve",
                    &format!("anomaly:{id}"),
                    Some(&json!({ "anomaly": id, "flag_key": before.flag_key, "resolved": false })),
                    Some(&json!({ "anomaly": id, "flag_key": after.flag_key, "resolved": true })),
                )?;
                tx.commit().map_err(db_err)?;
                Ok((after, Some(committed)))
            })
            .await
    }
}
