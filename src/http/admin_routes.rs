//! Authenticated IAM management: users and roles (admin) and API tokens.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, Json, Path, Query};
use super::flag_routes::page_limit;
use super::AppState;
use crate::duration::HumanDuration;
use crate::iam::Caller;
use crate::model::{AuditQuery, AuditRecord, Role, TokenKind};

pub async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(
        json!({ "users": state.iam.users(&caller).await? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    role: Role,
}

pub async fn set_role(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<RoleRequest>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(
        state.iam.set_role(&caller, &id, req.role).await?,
    ))
}

pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    state.iam.delete_user(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    name: String,
    role: Role,
    /// `server` unless asked otherwise.
    #[serde(default)]
    kind: TokenKind,
    expires_in: Option<HumanDuration>,
}

pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<TokenRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (token, secret) = state
        .iam
        .create_api_token(
            &caller,
            &req.name,
            req.role,
            req.kind,
            req.expires_in.map(HumanDuration::get),
        )
        .await?;
    let mut body = serde_json::to_value(&token).map_err(crate::error::Error::internal)?;
    body["token"] = secret.into();
    Ok((StatusCode::CREATED, axum::Json(body)))
}

pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(
        json!({ "tokens": state.iam.api_tokens(&caller).await? }),
    ))
}

pub async fn delete_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    state.iam.revoke_api_token(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Audit records and the cursor for the next page (the last id, when the
/// page was full).
pub fn audit_page(records: Vec<AuditRecord>, limit: usize) -> Response {
    let next_cursor = (records.len() == limit)
        .then(|| records.last().map(|r| r.id.clone()))
        .flatten();
    axum::Json(json!({ "records": records, "next_cursor": next_cursor })).into_response()
}

pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let limit = page_limit(&query, 50, 500)?;
    let records = state
        .store
        .audit(AuditQuery {
            target: query.get("target").cloned(),
            actor: query.get("actor").cloned(),
            limit,
            cursor: query.get("cursor").cloned(),
        })
        .await?;
    Ok(audit_page(records, limit))
}
