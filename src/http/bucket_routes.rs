//! The buckets API: `PUT/GET/DELETE /api/v1/buckets/{bucket}/objects/{name...}`
//! and `GET /api/v1/buckets/{bucket}/objects?prefix=`. The entity tag of an
//! object is its content's SHA-256.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::{payload_too_large, ApiError, Path, Query};
use super::AppState;
use crate::iam::Caller;

/// Reads a body up to `limit` bytes; beyond it, 413.
pub(super) async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Err(payload_too_large())
            } else {
                Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "cannot read the request body",
                ))
            }
        }
    }
}

fn etag(sha256: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{sha256}\"")).ok()
}

pub async fn put_object(
    State(state): State<AppState>,
    caller: Caller,
    Path((bucket, name)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let data = read_body(body, state.buckets.max_object_bytes).await?;
    let (info, created) = state.buckets.put(&caller, &bucket, &name, data).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (
        status,
        axum::Json(json!({ "bucket": bucket, "object": info })),
    )
        .into_response();
    if let Some(tag) = info.sha256.as_deref().and_then(etag) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    Ok(response)
}

pub async fn get_object(
    State(state): State<AppState>,
    caller: Caller,
    Path((bucket, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (info, data) = state.buckets.get(&caller, &bucket, &name).await?;
    let tag = info.sha256.as_deref().and_then(etag);
    if let (Some(tag), Ok(Some(super::flag_routes::Condition::Tags(tags)))) = (
        &tag,
        super::flag_routes::condition(&headers, header::IF_NONE_MATCH),
    ) {
        let opaque = tag
            .to_str()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string();
        if tags.iter().any(|t| t.weak_match(&opaque)) {
            return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag.clone())]).into_response());
        }
    }
    let mut response = (StatusCode::OK, Bytes::from(data)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if let Some(tag) = tag {
        h.insert(header::ETAG, tag);
    }
    Ok(response)
}

pub async fn delete_object(
    State(state): State<AppState>,
    caller: Caller,
    Path((bucket, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.buckets.delete(&caller, &bucket, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_objects(
    State(state): State<AppState>,
    caller: Caller,
    Path(bucket): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let prefix = query.get("prefix").map(String::as_str).unwrap_or("");
    let objects = state.buckets.list(&caller, &bucket, prefix).await?;
    Ok(axum::Json(json!({ "bucket": bucket, "objects": objects })).into_response())
}
