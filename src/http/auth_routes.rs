//! Public identity routes: first-admin setup, registration, login, and `me`.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::MaybeCaller;
use super::error::{ApiError, ConnectInfo, Json};
use super::AppState;
use crate::iam::{Caller, Credential, Session};
use crate::model::Role;

#[derive(Serialize)]
struct SessionBody {
    token: String,
    token_type: &'static str,
    expires_at: DateTime<Utc>,
}

impl From<Session> for SessionBody {
    fn from(s: Session) -> Self {
        SessionBody {
            token: s.token,
            token_type: "Bearer",
            expires_at: s.expires_at,
        }
    }
}

pub async fn setup_status(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(
        json!({ "needs_setup": state.iam.needs_setup().await? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    token: String,
    email: String,
    password: String,
}

pub async fn setup(
    State(state): State<AppState>,
    Json(req): Json<SetupRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let session = state
        .iam
        .complete_setup(&req.token, &req.email, &req.password)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(SessionBody::from(session))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    email: String,
    password: String,
    role: Option<Role>,
}

pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    MaybeCaller(caller): MaybeCaller,
    Json(req): Json<RegisterRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let user = state
        .iam
        .register(
            caller.as_ref(),
            &req.email,
            &req.password,
            req.role,
            Some(peer.ip()),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<LoginRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let session = state
        .iam
        .login(&req.email, &req.password, Some(peer.ip()))
        .await?;
    Ok(axum::Json(SessionBody::from(session)))
}

pub async fn me(caller: Caller) -> impl IntoResponse {
    let credential = match &caller.credential {
        Credential::Session { expires_at } => {
            json!({ "type": "session", "expires_at": expires_at })
        }
        Credential::ApiToken {
            id,
            expires_at,
            kind,
        } => {
            json!({ "type": "api_token", "id": id, "expires_at": expires_at, "kind": kind })
        }
    };
    axum::Json(json!({
        "id": caller.user.id,
        "email": caller.user.email,
        "role": caller.role,
        "created_at": caller.user.created_at,
        "credential": credential,
    }))
}
