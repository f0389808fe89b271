//! Users, API tokens and settings tables. Role changes, deletions and token
//! changes are audited in their own transaction.

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use super::{audit, db_err, now, parse_ts, ts};
use crate::error::{Error, Result};
use crate::model::{ApiToken, Committed, NewApiToken, NewUser, Role, TokenKind, User};

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

const TOKEN_COLUMNS: &str = "id, name, role, owner_id, secret_hash, created_at, expires_at, kind";

fn parse_kind(text: &str) -> rusqlite::Result<TokenKind> {
    text.parse()
        .map_err(|e: String| rusqlite::Error::ToSqlConversionFailure(e.into()))
}

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
        kind: parse_kind(&r.get::<_, String>(7)?)?,
    })
}

fn immediate(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)
}

fn insert_user(conn: &Connection, new: NewUser, actor: &str) -> Result<Committed<User>> {
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        email: new.email,
        password_hash: new.password_hash,
        role: new.role,
        created_at: now(),
    };
    conn.execute(
        "INSERT INTO users (id, email, password_hash, role, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![user.id, user.email, user.password_hash, user.role.as_str(), ts(user.created_at)],
    )
    .map_err(|e| match db_err(e) {
        Error::Conflict(_) => {
            Error::Conflict(format!("a user with email {} already exists", user.email))
        }
        other => other,
    })?;
    let actor = if actor.is_empty() { &user.id } else { actor };
    let committed = audit::write(
        conn,
        actor,
        "user.create",
        &format!("user:{}", user.id),
        audit::NOTHING,
        Some(&user),
    )?;
    Ok(committed.map(|()| user))
}

fn admin_count(conn: &Connection) -> Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM users WHERE role = 'admin'", [], |r| {
        r.get(0)
    })
    .map_err(db_err)
}

pub fn has_admin(conn: &Connection) -> Result<bool> {
    Ok(admin_count(conn)? > 0)
}

pub fn user(conn: &Connection, id: &str) -> Result<Option<User>> {
    conn.query_row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
        [id],
        user_row,
    )
    .optional()
    .map_err(db_err)
}

pub fn user_by_email(conn: &Connection, email: &str) -> Result<Option<User>> {
    conn.query_row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1"),
        [email],
        user_row,
    )
    .optional()
    .map_err(db_err)
}

pub fn users(conn: &Connection) -> Result<Vec<User>> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id"
        ))
        .map_err(db_err)?;
    let rows = stmt.query_map([], user_row).map_err(db_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
}

pub fn create_user(conn: &mut Connection, new: NewUser, actor: &str) -> Result<Committed<User>> {
    let tx = immediate(conn)?;
    let user = insert_user(&tx, new, actor)?;
    tx.commit().map_err(db_err)?;
    Ok(user)
}

pub fn create_first_admin(conn: &mut Connection, new: NewUser) -> Result<Committed<User>> {
    let tx = immediate(conn)?;
    if has_admin(&tx)? {
        return Err(Error::Conflict("an admin already exists".into()));
    }
    // The new admin is their own actor: setup has no other principal.
    let user = insert_user(
        &tx,
        NewUser {
            role: Role::Admin,
            ..new
        },
        "",
    )?;
    tx.commit().map_err(db_err)?;
    Ok(user)
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

pub fn set_user_role(
    conn: &mut Connection,
    id: &str,
    role: Role,
    actor: &str,
) -> Result<Committed<User>> {
    let tx = immediate(conn)?;
    let before = user(&tx, id)?.ok_or_else(|| Error::NotFound(format!("user {id}")))?;
    if role != Role::Admin {
        guard_last_admin(&tx, &before)?;
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
    let after = User {
        role,
        ..before.clone()
    };
    let committed = audit::write(
        &tx,
        actor,
        "user.role",
        &format!("user:{id}"),
        Some(&before),
        Some(&after),
    )?;
    tx.commit().map_err(db_err)?;
    Ok(committed.map(|()| after))
}

pub fn delete_user(conn: &mut Connection, id: &str, actor: &str) -> Result<Committed<User>> {
    let tx = immediate(conn)?;
    let before = user(&tx, id)?.ok_or_else(|| Error::NotFound(format!("user {id}")))?;
    guard_last_admin(&tx, &before)?;
    tx.execute("DELETE FROM users WHERE id = ?1", [id])
        .map_err(db_err)?;
    let committed = audit::write(
        &tx,
        actor,
        "user.delete",
        &format!("user:{id}"),
        Some(&before),
        audit::NOTHING,
    )?;
    tx.commit().map_err(db_err)?;
    Ok(committed.map(|()| before))
}

pub fn init_setting(conn: &Connection, key: &str, value: &str) -> Result<String> {
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
        params![key, value],
    )
    .map_err(db_err)?;
    conn.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
        r.get(0)
    })
    .map_err(db_err)
}

pub fn create_api_token(
    conn: &mut Connection,
    new: NewApiToken,
    actor: &str,
) -> Result<Committed<ApiToken>> {
    let tx = immediate(conn)?;
    let token = ApiToken {
        id: new.id,
        name: new.name,
        role: new.role,
        kind: new.kind,
        owner_id: new.owner_id,
        secret_hash: new.secret_hash,
        created_at: now(),
        expires_at: new.expires_at,
    };
    tx.execute(
        "INSERT INTO api_tokens (id, name, role, owner_id, secret_hash, created_at, expires_at, kind)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            token.id,
            token.name,
            token.role.as_str(),
            token.owner_id,
            token.secret_hash,
            ts(token.created_at),
            token.expires_at.map(ts),
            token.kind.as_str(),
        ],
    )
    .map_err(|e| match db_err(e) {
        // The only constraints are the generated id and the owner.
        Error::Conflict(_) => Error::NotFound(format!("user {}", token.owner_id)),
        other => other,
    })?;
    let committed = audit::write(
        &tx,
        actor,
        "token.create",
        &format!("token:{}", token.id),
        audit::NOTHING,
        Some(&token),
    )?;
    tx.commit().map_err(db_err)?;
    Ok(committed.map(|()| token))
}

pub fn api_token(conn: &Connection, id: &str) -> Result<Option<ApiToken>> {
    conn.query_row(
        &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
        [id],
        token_row,
    )
    .optional()
    .map_err(db_err)
}

pub fn api_tokens(conn: &Connection, owner: Option<&str>) -> Result<Vec<ApiToken>> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE ?1 IS NULL OR owner_id = ?1 ORDER BY created_at, id"
        ))
        .map_err(db_err)?;
    let rows = stmt.query_map([owner], token_row).map_err(db_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
}

pub fn delete_api_token(
    conn: &mut Connection,
    id: &str,
    actor: &str,
) -> Result<Committed<ApiToken>> {
    let tx = immediate(conn)?;
    let before = api_token(&tx, id)?.ok_or_else(|| Error::NotFound(format!("token {id}")))?;
    tx.execute("DELETE FROM api_tokens WHERE id = ?1", [id])
        .map_err(db_err)?;
    let committed = audit::write(
        &tx,
        actor,
        "token.delete",
        &format!("token:{id}"),
        Some(&before),
        audit::NOTHING,
    )?;
    tx.commit().map_err(db_err)?;
    Ok(committed.map(|()| before))
}
