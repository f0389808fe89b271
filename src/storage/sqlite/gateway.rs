//! The gateway_routes table: one row per route, the validated definition as
//! JSON text, its path in a UNIQUE column; every change audited in its
//! transaction (target `gateway_route:<id>`).

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde_json::{json, Value};

use super::{audit, db_err, now, own, parse_ts, ts, SqliteStore};
use crate::error::{Error, Result};
use crate::model::Committed;
use crate::storage::gateway::{GatewayStore, RouteRecord};

const COLUMNS: &str = "id, path, spec, version, created_at, updated_at, updated_by";

fn row(r: &Row<'_>) -> rusqlite::Result<RouteRecord> {
    let spec: String = r.get(2)?;
    Ok(RouteRecord {
        id: r.get(0)?,
        path: r.get(1)?,
        spec: serde_json::from_str(&spec).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
        })?,
        version: r.get(3)?,
        created_at: parse_ts(&r.get::<_, String>(4)?)?,
        updated_at: parse_ts(&r.get::<_, String>(5)?)?,
        updated_by: r.get(6)?,
    })
}

fn target(id: &str) -> String {
    format!("gateway_route:{id}")
}

fn audited(route: &RouteRecord) -> Value {
    json!({ "spec": route.spec, "path": route.path, "version": route.version })
}

fn all(conn: &Connection) -> Result<Vec<RouteRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM gateway_routes ORDER BY path"
        ))
        .map_err(db_err)?;
    let rows = stmt.query_map([], row).map_err(db_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
}

fn get(conn: &Connection, id: &str) -> Result<Option<RouteRecord>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM gateway_routes WHERE id = ?1"),
        [id],
        row,
    )
    .optional()
    .map_err(db_err)
}

/// A path taken by another route is the caller's conflict; the check runs
/// inside the writing transaction, so it cannot race another write.
fn path_free(conn: &Connection, path: &str, id: &str) -> Result<()> {
    let holder: Option<String> = conn
        .query_row(
            "SELECT id FROM gateway_routes WHERE path = ?1 AND id <> ?2",
            params![path, id],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?;
    match holder {
        Some(other) => Err(Error::Conflict(format!(
            "path: route {other} already serves {path}"
        ))),
        None => Ok(()),
    }
}

fn create(
    conn: &mut Connection,
    id: &str,
    path: &str,
    spec: Value,
    actor: &str,
) -> Result<Committed<RouteRecord>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    if get(&tx, id)?.is_some() {
        return Err(Error::Conflict(format!(
            "id: a route with id {id} already exists"
        )));
    }
    path_free(&tx, path, id)?;
    let now = now();
    let route = RouteRecord {
        id: id.to_string(),
        path: path.to_string(),
        spec,
        version: 1,
        created_at: now,
        updated_at: now,
        updated_by: actor.to_string(),
    };
    tx.execute(
        "INSERT INTO gateway_routes (id, path, spec, version, created_at, updated_at, updated_by)
         VALUES (?1, ?2, ?3, 1, ?4, ?4, ?5)",
        params![id, path, route.spec.to_string(), ts(now), actor],
    )
    .map_err(db_err)?;
    let committed = audit::write(
        &tx,
        actor,
        "gateway.route.create",
        &target(id),
        audit::NOTHING,
        Some(&audited(&route)),
    )?;
    tx.commit().map_err(db_err)?;
    Ok(committed.map(|()| route))
}

fn update(
    conn: &mut Connection,
    id: &str,
    path: &str,
    spec: Value,
    actor: &str,
) -> Result<Committed<RouteRecord>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let before = get(&tx, id)?.ok_or_else(|| Error::NotFound(format!("gateway route {id}")))?;
    path_free(&tx, path, id)?;
    let after = RouteRecord {
        path: path.to_string(),
        spec,
        version: before.version + 1,
        updated_at: now(),
        updated_by: actor.to_string(),
        ..before.clone()
    };
    tx.execute(
        "UPDATE gateway_routes SET path = ?1, spec = ?2, version = ?3, updated_at = ?4, updated_by = ?5
         WHERE id = ?6",
        params![
            path,
            after.spec.to_string(),
            after.version,
            ts(after.updated_at),
            actor,
            id
        ],
    )
    .map_err(db_err)?;
    let committed = audit::write(
        &tx,
        actor,
        "gateway.route.update",
        &target(id),
        Some(&audited(&before)),
        Some(&audited(&after)),
    )?;
    tx.commit().map_err(db_err)?;
    Ok(committed.map(|()| after))
}

fn delete(conn: &mut Connection, id: &str, actor: &str) -> Result<Committed<RouteRecord>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let before = get(&tx, id)?.ok_or_else(|| Error::NotFound(format!("gateway route {id}")))?;
    tx.execute("DELETE FROM gateway_routes WHERE id = ?1", [id])
        .map_err(db_err)?;
    let committed = audit::write(
        &tx,
        actor,
        "gateway.route.delete",
        &target(id),
        Some(&audited(&before)),
        audit::NOTHING,
    )?;
    tx.commit().map_err(db_err)?;
    Ok(committed.map(|()| before))
}

#[async_trait]
impl GatewayStore for SqliteStore {
    async fn gateway_routes(&self) -> Result<Vec<RouteRecord>> {
        self.pool.read(all).await
    }

    async fn gateway_route(&self, id: &str) -> Result<Option<RouteRecord>> {
        let id = own(id);
        self.pool.read(move |c| get(c, &id)).await
    }

    async fn create_gateway_route(
        &self,
        id: &str,
        path: &str,
        spec: Value,
        actor: &str,
    ) -> Result<Committed<RouteRecord>> {
        let (id, path, actor) = (own(id), own(path), own(actor));
        self.pool
            .write(move |c| create(c, &id, &path, spec, &actor))
            .await
    }

    async fn update_gateway_route(
        &self,
        id: &str,
        path: &str,
        spec: Value,
        actor: &str,
    ) -> Result<Committed<RouteRecord>> {
        let (id, path, actor) = (own(id), own(path), own(actor));
        self.pool
            .write(move |c| update(c, &id, &path, spec, &actor))
            .await
    }

    async fn delete_gateway_route(&self, id: &str, actor: &str) -> Result<Committed<RouteRecord>> {
        let (id, actor) = (own(id), own(actor));
        self.pool.write(move |c| delete(c, &id, &actor)).await
    }
}
