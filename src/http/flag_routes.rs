//! The flags API (`/api/v1/flags`, `/api/v1/evaluate`): CRUD with versions
//! and `If-Match`, and evaluation for the calling principal.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flagbase_engine::{Context, ErrorCode, Evaluation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::{ApiError, Json, Path, Query};
use super::AppState;
use crate::error::Error;
use crate::iam::Caller;
use crate::model::FlagRecord;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// The stored definition plus the server-kept fields, as every route shows it.
fn flag_json(record: &FlagRecord) -> Value {
    let mut body = record.spec.clone();
    if let Value::Object(map) = &mut body {
        map.insert("version".into(), record.version.into());
        map.insert("created_at".into(), json!(record.created_at));
        map.insert("updated_at".into(), json!(record.updated_at));
        map.insert("updated_by".into(), record.updated_by.clone().into());
    }
    body
}

fn flag_response(status: StatusCode, record: &FlagRecord) -> Response {
    let mut response = (status, axum::Json(flag_json(record))).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", record.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// `If-Match: 3`, `"3"` or `W/"3"` → `Some(3)`; absent or `*` → `None`.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    let bare = text.trim_start_matches("W/").trim_matches('"');
    bare.parse::<i64>().map(Some).map_err(|_| {
        Error::invalid("If-Match", "expected the flag's version number, e.g. \"3\"").into()
    })
}

/// Parses `?limit=`; absent gives the default.
pub fn page_limit(
    query: &HashMap<String, String>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match query.get("limit") {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(Error::invalid("limit", format!("must be a number from 1 to {max}")).into()),
        },
    }
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let record = state.flags.create(&caller, body).await?;
    Ok(flag_response(StatusCode::CREATED, &record))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = page_limit(&query, DEFAULT_PAGE, MAX_PAGE)?;
    let page = state
        .flags
        .list(&caller, query.get("cursor").map(String::as_str), limit)
        .await?;
    let flags: Vec<Value> = page.flags.iter().map(flag_json).collect();
    Ok(axum::Json(json!({ "flags": flags, "next_cursor": page.next_cursor })).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    Ok(flag_response(
        StatusCode::OK,
        &state.flags.get(&caller, &key).await?,
    ))
}

pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let record = state
        .flags
        .replace(&caller, &key, body, if_match(&headers)?)
        .await?;
    Ok(flag_response(StatusCode::OK, &record))
}

pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let record = state
        .flags
        .patch(&caller, &key, body, if_match(&headers)?)
        .await?;
    Ok(flag_response(StatusCode::OK, &record))
}

pub async fn toggle(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let record = state
        .flags
        .toggle(&caller, &key, if_match(&headers)?)
        .await?;
    Ok(flag_response(StatusCode::OK, &record))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    state
        .flags
        .delete(&caller, &key, if_match(&headers)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = page_limit(&query, 50, 500)?;
    let records = state
        .flags
        .history(&caller, &key, limit, query.get("cursor").cloned())
        .await?;
    Ok(super::admin_routes::audit_page(records, limit))
}

/// Attributes that describe the caller come from their credential and
/// cannot be supplied by the request: otherwise `?role=admin` would buy the
/// admins' variant.
const IDENTITY: [&str; 4] = ["targetingKey", "userId", "email", "role"];

fn caller_context(caller: &Caller, supplied: impl IntoIterator<Item = (String, Value)>) -> Context {
    let mut ctx = Context::with_targeting_key(caller.user.id.clone());
    for (name, value) in supplied {
        if !IDENTITY.contains(&name.as_str()) {
            ctx.insert(name, value);
        }
    }
    ctx.insert("userId", caller.user.id.clone());
    ctx.insert("email", caller.user.email.clone());
    ctx.insert("role", caller.role.as_str());
    ctx
}

#[derive(Serialize)]
struct Evaluated<'a> {
    key: &'a str,
    value: &'a Value,
    variant: Option<&'a str>,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
}

impl<'a> Evaluated<'a> {
    fn new(key: &'a str, e: &Evaluation<'a>) -> Self {
        Evaluated {
            key,
            value: e.value,
            variant: e.variant,
            reason: e.reason.as_str(),
            error_code: e.error_code.map(ErrorCode::as_str),
        }
    }
}

pub async fn evaluate_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let ctx = caller_context(
        &caller,
        query.into_iter().map(|(k, v)| (k, Value::String(v))),
    );
    let live = state.flags.live();
    let eval = live.snapshot.evaluate(&key, &ctx);
    if eval.error_code == Some(ErrorCode::FlagNotFound) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "FLAG_NOT_FOUND",
            format!("flag {key} not found"),
        ));
    }
    Ok(axum::Json(Evaluated::new(&key, &eval)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    #[serde(default)]
    context: serde_json::Map<String, Value>,
    keys: Option<Vec<String>>,
}

pub async fn evaluate_many(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<EvaluateRequest>,
) -> Result<Response, ApiError> {
    let ctx = caller_context(&caller, req.context);
    let live = state.flags.live();
    let flags: Vec<Evaluated> = match &req.keys {
        Some(keys) => keys
            .iter()
            .map(|k| Evaluated::new(k, &live.snapshot.evaluate(k, &ctx)))
            .collect(),
        None => live
            .snapshot
            .evaluate_all(&ctx)
            .map(|(k, e)| Evaluated::new(k, &e))
            .collect(),
    };
    Ok(axum::Json(Many { flags }).into_response())
}

#[derive(Serialize)]
struct Many<'a> {
    flags: Vec<Evaluated<'a>>,
}
