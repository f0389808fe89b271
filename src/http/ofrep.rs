//! The OpenFeature Remote Evaluation Protocol (OFREP v1): single and bulk
//! evaluation for a context the caller supplies (the application's end
//! user), with the protocol's own error bodies and ETag caching for bulk.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flagbase_engine::{Context, ErrorCode, Evaluation};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::error::{payload_too_large, ApiError, Path};
use super::AppState;
use crate::iam::Caller;

/// An OFREP error: `{key?, errorCode, errorDetails}` with a status.
fn failure(
    status: StatusCode,
    key: Option<&str>,
    code: ErrorCode,
    details: impl Into<String>,
) -> Response {
    let mut body = json!({ "errorCode": code.as_str(), "errorDetails": details.into() });
    if let Some(key) = key {
        body["key"] = key.into();
    }
    (status, axum::Json(body)).into_response()
}

/// The request body's context, or the OFREP error to answer with (boxed:
/// the error path is rare and a `Response` is large).
fn context(
    body: Result<Bytes, BytesRejection>,
    key: Option<&str>,
) -> Result<Context, Box<Response>> {
    let reject = |status, code, details: String| Box::new(failure(status, key, code, details));
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Box::new(payload_too_large().into_response())
        } else {
            reject(
                StatusCode::BAD_REQUEST,
                ErrorCode::ParseError,
                r.body_text(),
            )
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Context::new());
    }
    let request: Value = serde_json::from_slice(&bytes).map_err(|e| {
        reject(
            StatusCode::BAD_REQUEST,
            ErrorCode::ParseError,
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut request) = request else {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            ErrorCode::ParseError,
            "request body must be a JSON object".into(),
        ));
    };
    let context = request.remove("context");
    if let Some(key) = context.as_ref().and_then(|c| c.get("targetingKey")) {
        if !key.is_string() && !key.is_null() {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidContext,
                "context.targetingKey must be a string".into(),
            ));
        }
    }
    match context {
        None | Some(Value::Null) => Ok(Context::new()),
        Some(ctx) => Context::from_json(ctx).ok_or_else(|| {
            reject(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidContext,
                "context must be a JSON object".into(),
            )
        }),
    }
}

#[derive(Serialize)]
struct Success<'a> {
    key: &'a str,
    value: &'a Value,
    reason: &'static str,
    /// Always present (`null` when the value came from no named variant):
    /// the official Python provider reads it unconditionally.
    variant: Option<&'a str>,
    metadata: Metadata,
}

#[derive(Serialize)]
struct Metadata {}

/// Serialised straight from borrowed evaluations: no intermediate JSON tree.
#[derive(Serialize)]
struct Bulk<'a> {
    flags: Vec<Item<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Item<'a> {
    Success(Success<'a>),
    Failure {
        key: &'a str,
        #[serde(rename = "errorCode")]
        error_code: &'static str,
        #[serde(rename = "errorDetails")]
        error_details: String,
    },
}

fn item<'a>(key: &'a str, e: &Evaluation<'a>) -> Item<'a> {
    match e.error_code {
        Some(code) => Item::Failure {
            key,
            error_code: code.as_str(),
            error_details: match code {
                ErrorCode::FlagNotFound => format!("flag {key} not found"),
                _ => format!("cannot evaluate flag {key}"),
            },
        },
        None => Item::Success(Success {
            key,
            value: e.value,
            reason: e.reason.as_str(),
            variant: e.variant,
            metadata: Metadata {},
        }),
    }
}

pub async fn evaluate_flag(
    State(state): State<AppState>,
    _caller: Caller,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let ctx = match context(body, Some(&key)) {
        Ok(ctx) => ctx,
        Err(response) => return *response,
    };
    let live = state.flags.live();
    let eval = live.snapshot.evaluate(&key, &ctx);
    match item(&key, &eval) {
        Item::Failure { error_details, .. } if eval.error_code == Some(ErrorCode::FlagNotFound) => {
            failure(
                StatusCode::NOT_FOUND,
                Some(&key),
                ErrorCode::FlagNotFound,
                error_details,
            )
        }
        Item::Failure {
            error_code: _,
            error_details,
            ..
        } => failure(
            StatusCode::BAD_REQUEST,
            Some(&key),
            eval.error_code.unwrap_or(ErrorCode::General),
            error_details,
        ),
        ok => axum::Json(ok).into_response(),
    }
}

/// Bulk evaluation. The ETag names the snapshot and the request body, so an
/// unchanged context against unchanged flags answers 304 without evaluating.
pub async fn evaluate_all(
    State(state): State<AppState>,
    _caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let live = state.flags.live();
    let digest = Sha256::digest(body.as_deref().unwrap_or_default());
    let body_hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let etag = format!("\"{}-{body_hash}\"", live.tag);
    if let Some(sent) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        if sent.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        }) {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            response.headers_mut().insert(
                header::ETAG,
                HeaderValue::from_str(&etag).map_err(crate::error::Error::internal)?,
            );
            return Ok(response);
        }
    }
    let ctx = match context(body, None) {
        Ok(ctx) => ctx,
        Err(response) => return Ok(*response),
    };
    let flags: Vec<Item> = live
        .snapshot
        .evaluate_all(&ctx)
        .map(|(k, e)| item(k, &e))
        .collect();
    let mut response = axum::Json(Bulk { flags }).into_response();
    response.headers_mut().insert(
        header::ETAG,
        HeaderValue::from_str(&etag).map_err(crate::error::Error::internal)?,
    );
    Ok(response)
}
