//! The gateway over HTTP: the proxy mount (`/gateway`, `/gateway/*`) and
//! the admin API for its routes (`/api/v1/gateway/routes`).

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::auth::MaybeCaller;
use super::error::{self, ApiError, ConnectInfo, Json, Path};
use super::AppState;
use crate::iam::Caller;

/// Every method of every path below `/gateway`. An invalid credential is
/// treated as none (the request may be meant for the upstream); a route
/// with `require_role` then refuses it.
pub async fn proxy(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    MaybeCaller(caller): MaybeCaller,
    req: Request,
) -> Response {
    match state.gateway.serve(req, caller, peer).await {
        Ok(response) => response,
        Err(e) => error::proxy_error(e),
    }
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let routes: Vec<Value> = state
        .gateway
        .list(&caller)
        .await?
        .iter()
        .map(|r| r.api_json())
        .collect();
    Ok(axum::Json(json!({ "routes": routes })).into_response())
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let route = state.gateway.create(&caller, body).await?;
    Ok((StatusCode::CREATED, axum::Json(route.api_json())).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let route = state.gateway.get(&caller, &id).await?;
    Ok(axum::Json(route.api_json()).into_response())
}

pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let route = state.gateway.replace(&caller, &id, body).await?;
    Ok(axum::Json(route.api_json()).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.gateway.delete(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
