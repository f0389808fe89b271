//! The functions tables for the SQLite adapter, and its `FunctionStore`
//! implementation; every change is audited in its transaction.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde_json::{json, Value};

use super::{audit, db_err, now, own, parse_ts, ts, SqliteStore};
use crate::error::{Error, Result};
use crate::model::Committed;
use crate::storage::functions::{FunctionRecord, FunctionStore, FunctionVersion, TriggerRecord};

const FUNCTION: &str = "name, settings, active_version, created_at, updated_at, updated_by";
const VERSION: &str = "name, version, sha256, size, created_at, created_by";

fn function_row(r: &Row<'_>) -> rusqlite::Result<FunctionRecord> {
    let settings: String = r.get(1)?;
    Ok(FunctionRecord {
        name: r.get(0)?,
        settings: serde_json::from_str(&settings).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?,
        active_version: r.get(2)?,
        created_at: parse_ts(&r.get::<_, String>(3)?)?,
        updated_at: parse_ts(&r.get::<_, String>(4)?)?,
        updated_by: r.get(5)?,
    })
}

fn version_row(r: &Row<'_>) -> rusqlite::Result<FunctionVersion> {
    Ok(FunctionVersion {
        name: r.get(0)?,
        version: r.get(1)?,
        sha256: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        created_at: parse_ts(&r.get::<_, String>(4)?)?,
        created_by: r.get(5)?,
    })
}

const TRIGGER: &str = "id, function, subject, schedule, stopped, created_at, created_by";

fn trigger_row(r: &Row<'_>) -> rusqlite::Result<TriggerRecord> {
    Ok(TriggerRecord {
        id: r.get(0)?,
        function: r.get(1)?,
        subject: r.get(2)?,
        schedule: r.get(3)?,
        stopped: r.get(4)?,
        created_at: parse_ts(&r.get::<_, String>(5)?)?,
        created_by: r.get(6)?,
    })
}

fn trigger(conn: &Connection, id: &str) -> Result<Option<TriggerRecord>> {
    conn.query_row(
        &format!("SELECT {TRIGGER} FROM function_triggers WHERE id = ?1"),
        [id],
        trigger_row,
    )
    .optional()
    .map_err(db_err)
}

fn triggers(conn: &Connection) -> Result<Vec<TriggerRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {TRIGGER} FROM function_triggers ORDER BY function, id"
        ))
        .map_err(db_err)?;
    let rows = stmt.query_map([], trigger_row).map_err(db_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
}

fn create_trigger(
    conn: &mut Connection,
    function: &str,
    subject: Option<&str>,
    schedule: Option<&str>,
    actor: &str,
) -> Result<Committed<TriggerRecord>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    existing(&tx, function)?;
    let id = uuid::Uuid::now_v7().to_string();
    tx.execute(
        "INSERT INTO function_triggers (id, function, subject, schedule, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id, function, subject, schedule, ts(now()), actor],
    )
    .map_err(db_err)?;
    let record =
        trigger(&tx, &id)?.ok_or_else(|| Error::internal("the trigger just added is missing"))?;
    let committed = audit::write(
        &tx,
        actor,
        "function.trigger.create",
        &target(function),
        audit::NOTHING,
        Some(&record),
    )?;
    tx.commit().map_err(db_err)?;
    Ok(committed.map(|()| record))
}

fn delete_trigger(
    conn: &mut Connection,
    function: &str,
    id: &str,
    actor: &str,
) -> Result<Committed<TriggerRecord>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let record = trigger(&tx, id)?
        .filter(|t| t.function == function)
        .ok_or_else(|| Error::NotFound(format!("trigger {id} of function {function}")))?;
    tx.execute("DELETE FROM function_triggers WHERE id = ?1", [id])
        .map_err(db_err)?;
    let committed = audit::write(
        &tx,
        actor,
        "function.trigger.delete",
        &target(function),
        Some(&record),
        audit::NOTHING,
    )?;
    tx.commit().map_err(db_err)?;
    Ok(committed.map(|()| record))
}

fn stop_trigger(conn: &mut Connection, id: &str, reason: &str) -> Result<Committed<TriggerRecord>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let before = trigger(&tx, id)?.ok_or_else(|| Error::NotFound(format!("trigger {id}")))?;
    tx.execute(
        "UPDATE function_triggers SET stopped = ?2 WHERE id = ?1",
        params![id, reason],
    )
    .map_err(db_err)?;
    let after = trigger(&tx, id)?.ok_or_else(|| Error::NotFound(format!("trigger {id}")))?;
    let committed = audit::write(
        &tx,
        "flagbase",
        "function.trigger.stop",
        &target(&before.function),
        Some(&before),
        Some(&after),
    )?;
    tx.commit().map_err(db_err)?;
    Ok(committed.map(|()| after))
}

fn target(name: &str) -> String {
    format!("function:{name}")
}

fn audited(f: &FunctionRecord) -> Value {
    json!({ "settings": f.settings, "active_version": f.active_version })
}

fn all(conn: &Connection) -> Result<Vec<FunctionRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {FUNCTION} FROM functions ORDER BY name"))
        .map_err(db_err)?;
    let rows = stmt.query_map([], function_row).map_err(db_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
}

fn get(conn: &Connection, name: &str) -> Result<Option<FunctionRecord>> {
    conn.query_row(
        &format!("SELECT {FUNCTION} FROM functions WHERE name = ?1"),
        [name],
        function_row,
    )
    .optional()
    .map_err(db_err)
}

fn existing(conn: &Connection, name: &str) -> Result<FunctionRecord> {
    get(conn, name)?.ok_or_else(|| Error::NotFound(format!("function {name}")))
}

fn versions(conn: &Connection, name: &str) -> Result<Vec<FunctionVersion>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {VERSION} FROM function_versions WHERE name = ?1 ORDER BY version"
        ))
        .map_err(db_err)?;
    let rows = stmt.query_map([name], version_row).map_err(db_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
}

fn add_version(
    conn: &mut Connection,
    name: &str,
    sha256: &str,
    size: u64,
    settings: Value,
    actor: &str,
) -> Result<Committed<(FunctionRecord, FunctionVersion)>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let at = ts(now());
    let before = get(&tx, name)?;
    if before.is_none() {
        tx.execute(
            "INSERT INTO functions (name, settings, active_version, created_at, updated_at, updated_by)
             VALUES (?1, ?2, 0, ?3, ?3, ?4)",
            params![name, settings.to_string(), at, actor],
        )
        .map_err(db_err)?;
    }
    let next: u32 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM function_versions WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    tx.execute(
        "INSERT INTO function_versions (name, version, sha256, size, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![name, next, sha256, size as i64, at, actor],
    )
    .map_err(db_err)?;
    tx.execute(
        "UPDATE functions SET active_version = ?2, updated_at = ?3, updated_by = ?4 WHERE name = ?1",
        params![name, next, at, actor],
    )
    .map_err(db_err)?;
    let function = existing(&tx, name)?;
    let version = versions(&tx, name)?
        .pop()
        .ok_or_else(|| Error::internal("the version just added is missing"))?;
    let committed = audit::write(
        &tx,
        actor,
        if before.is_some() {
            "function.deploy"
        } else {
            "function.create"
        },
        &target(name),
        before.as_ref().map(audited).as_ref(),
        Some(&json!({ "function": audited(&function), "version": version })),
    )?;
    tx.commit().map_err(db_err)?;
    Ok(committed.map(|()| (function, version)))
}

/// Runs `change` on the function's row in one audited transaction.
fn change(
    conn: &mut Connection,
    name: &str,
    action: &str,
    actor: &str,
    change: impl FnOnce(&Connection) -> Result<()>,
) -> Result<Committed<FunctionRecord>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let before = existing(&tx, name)?;
    change(&tx)?;
    tx.execute(
        "UPDATE functions SET updated_at = ?2, updated_by = ?3 WHERE name = ?1",
        params![name, ts(now()), actor],
    )
    .map_err(db_err)?;
    let after = existing(&tx, name)?;
    let committed = audit::write(
        &tx,
        actor,
        action,
        &target(name),
        Some(&audited(&before)),
        Some(&audited(&after)),
    )?;
    tx.commit().map_err(db_err)?;
    Ok(committed.map(|()| after))
}

fn delete(
    conn: &mut Connection,
    name: &str,
    actor: &str,
) -> Result<Committed<(FunctionRecord, Vec<FunctionVersion>)>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let before = existing(&tx, name)?;
    let gone = versions(&tx, name)?;
    tx.execute("DELETE FROM functions WHERE name = ?1", [name])
        .map_err(db_err)?;
    let committed = audit::write(
        &tx,
        actor,
        "function.delete",
        &target(name),
        Some(&audited(&before)),
        audit::NOTHING,
    )?;
    tx.commit().map_err(db_err)?;
    Ok(committed.map(|()| (before, gone)))
}

#[async_trait]
impl FunctionStore for SqliteStore {
    async fn triggers(&self) -> Result<Vec<TriggerRecord>> {
        self.pool.read(triggers).await
    }

    async fn create_trigger(
        &self,
        function: &str,
        subject: Option<&str>,
        schedule: Option<&str>,
        actor: &str,
    ) -> Result<Committed<TriggerRecord>> {
        let (function, actor) = (own(function), own(actor));
        let (subject, schedule) = (subject.map(own), schedule.map(own));
        self.pool
            .write(move |c| {
                create_trigger(
                    c,
                    &function,
                    subject.as_deref(),
                    schedule.as_deref(),
                    &actor,
                )
            })
            .await
    }

    async fn delete_trigger(
        &self,
        function: &str,
        id: &str,
        actor: &str,
    ) -> Result<Committed<TriggerRecord>> {
        let (function, id, actor) = (own(function), own(id), own(actor));
        self.pool
            .write(move |c| delete_trigger(c, &function, &id, &actor))
            .await
    }

    async fn stop_trigger(&self, id: &str, reason: &str) -> Result<Committed<TriggerRecord>> {
        let (id, reason) = (own(id), own(reason));
        self.pool
            .write(move |c| stop_trigger(c, &id, &reason))
            .await
    }

    async fn functions(&self) -> Result<Vec<FunctionRecord>> {
        self.pool.read(all).await
    }

    async fn function(&self, name: &str) -> Result<Option<FunctionRecord>> {
        let name = own(name);
        self.pool.read(move |c| get(c, &name)).await
    }

    async fn function_versions(&self, name: &str) -> Result<Vec<FunctionVersion>> {
        let name = own(name);
        self.pool.read(move |c| versions(c, &name)).await
    }

    async fn add_function_version(
        &self,
        name: &str,
        sha256: &str,
        size: u64,
        settings: Value,
        actor: &str,
    ) -> Result<Committed<(FunctionRecord, FunctionVersion)>> {
        let (name, sha256, actor) = (own(name), own(sha256), own(actor));
        self.pool
            .write(move |c| add_version(c, &name, &sha256, size, settings, &actor))
            .await
    }

    async fn activate_function_version(
        &self,
        name: &str,
        version: u32,
        actor: &str,
    ) -> Result<Committed<FunctionRecord>> {
        let (name, actor) = (own(name), own(actor));
        self.pool
            .write(move |c| {
                change(c, &name, "function.activate", &actor, |tx| {
                    let known: Option<u32> = tx
                        .query_row(
                            "SELECT version FROM function_versions WHERE name = ?1 AND version = ?2",
                            params![name, version],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(db_err)?;
                    if known.is_none() {
                        return Err(Error::NotFound(format!("version {version} of function {name}")));
                    }
                    tx.execute(
                        "UPDATE functions SET active_version = ?2 WHERE name = ?1",
                        params![name, version],
                    )
                    .map_err(db_err)?;
                    Ok(())
                })
            })
            .await
    }

    async fn update_function_settings(
        &self,
        name: &str,
        settings: Value,
        actor: &str,
    ) -> Result<Committed<FunctionRecord>> {
        let (name, actor) = (own(name), own(actor));
        self.pool
            .write(move |c| {
                change(c, &name, "function.update", &actor, |tx| {
                    tx.execute(
                        "UPDATE functions SET settings = ?2 WHERE name = ?1",
                        params![name, settings.to_string()],
                    )
                    .map_err(db_err)?;
                    Ok(())
                })
            })
            .await
    }

    async fn delete_function(
        &self,
        name: &str,
        actor: &str,
    ) -> Result<Committed<(FunctionRecord, Vec<FunctionVersion>)>> {
        let (name, actor) = (own(name), own(actor));
        self.pool.write(move |c| delete(c, &name, &actor)).await
    }
}
