//! Authenticated IAM management: users and roles (admin) and API tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, Json};
use super::AppState;
use crate::duration::HumanDuration;
use crate::iam::Caller;
use crate::model::Role;

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
