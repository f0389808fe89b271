//! Guards and anomalies: `GET|PUT /api/v1/flags/{key}/guard`,
//! `GET /api/v1/anomalies?flag=&resolved=&limit=`,
//! `POST /api/v1/anomalies/{id}/resolve`.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::error::{ApiError, Json, Path, Query};
use super::flag_routes::page_limit;
use super::AppState;
use crate::anomaly::decide::Guard;
use crate::error::Error;
use crate::iam::Caller;
use crate::storage::metrics::{AnomalyQuery, GuardRecord};

fn guard_json(key: &str, guard: &Guard, own: Option<&GuardRecord>) -> Value {
    json!({
        "flag_key": key,
        "guard": guard,
        "settings": own.map(|g| &g.guard),
        "updated_at": own.map(|g| g.updated_at),
        "updated_by": own.map(|g| &g.updated_by),
    })
}

pub async fn get_guard(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let (guard, own) = state.detector.guard(&caller, &key).await?;
    Ok(axum::Json(guard_json(&key, &guard, own.as_ref())).into_response())
}

pub async fn put_guard(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let (guard, own) = state.detector.set_guard(&caller, &key, body).await?;
    Ok(axum::Json(guard_json(&key, &guard, Some(&own))).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let resolved = match query.get("resolved").map(String::as_str) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(Error::invalid("resolved", "must be true or false").into()),
    };
    let anomalies = state
        .detector
        .anomalies(
            &caller,
            AnomalyQuery {
                flag_key: query.get("flag").cloned(),
                resolved,
                limit: page_limit(&query, 100, 1000)?,
            },
        )
        .await?;
    Ok(axum::Json(json!({ "anomalies": anomalies })).into_response())
}

pub async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let anomaly = state.detector.resolve(&caller, &id).await?;
    Ok(axum::Json(anomaly).into_response())
}
