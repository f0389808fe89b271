//! The flags API (`/api/v1/flags`, `/api/v1/evaluate`): CRUD with versions
//! and `If-Match`, and evaluation for the calling principal. Also the entity
//! tag parsing (RFC 9110) that OFREP's `If-None-Match` shares.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flagbase_engine::{Context, ErrorCode, Evaluation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::auth::Evaluator;
use super::error::{ApiError, Json, Path, Query};
use super::AppState;
use crate::error::Error;
use crate::evaluation_context;
use crate::iam::Caller;
use crate::model::{FlagRecord, Revision, Role};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// The stored definition plus the server-kept fields, as every route shows it.
fn flag_json(record: &FlagRecord) -> Value {
    record.api_json()
}

/// A flag's current entity tag without its quotes: the incarnation (new for
/// every create, so a re-created flag never matches its predecessor's tags)
/// and the version.
fn opaque_tag(record: &FlagRecord) -> String {
    format!("{}-{}", record.incarnation, record.version)
}

fn flag_response(status: StatusCode, record: &FlagRecord) -> Response {
    let mut response = (status, axum::Json(flag_json(record))).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", opaque_tag(record))) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// One entity tag of a conditional header: `"x"` or `W/"x"`.
pub(super) struct EntityTag {
    weak: bool,
    /// Between the quotes.
    opaque: String,
}

impl EntityTag {
    /// RFC 9110 strong comparison (If-Match): both strong, same characters.
    pub(super) fn strong_match(&self, opaque: &str) -> bool {
        !self.weak && self.opaque == opaque
    }

    /// RFC 9110 weak comparison (If-None-Match): the weakness is ignored.
    pub(super) fn weak_match(&self, opaque: &str) -> bool {
        self.opaque == opaque
    }
}

/// A parsed `If-Match` or `If-None-Match`: `*` or a list of entity tags.
pub(super) enum Condition {
    Any,
    Tags(Vec<EntityTag>),
}

/// Parses every line of header `name` as `"*" / #entity-tag` (RFC 9110
/// §13.1.1). `Ok(None)` when the header is absent, `Err(())` when it is not
/// of that form (a bare `3` included: it is not an entity tag).
pub(super) fn condition(headers: &HeaderMap, name: HeaderName) -> Result<Option<Condition>, ()> {
    let mut lines = headers.get_all(name).iter().peekable();
    if lines.peek().is_none() {
        return Ok(None);
    }
    let mut text = String::new();
    for line in lines {
        if !text.is_empty() {
            text.push(',');
        }
        text.push_str(line.to_str().map_err(|_| ())?);
    }
    if text.trim() == "*" {
        return Ok(Some(Condition::Any));
    }
    let mut tags = Vec::new();
    let mut rest = text.as_str();
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return Ok(Some(Condition::Tags(tags)));
        }
        let (weak, quoted) = match rest.strip_prefix("W/") {
            Some(after) => (true, after),
            None => (false, rest),
        };
        let body = quoted.strip_prefix('"').ok_or(())?;
        let end = body.find('"').ok_or(())?;
        let opaque = &body[..end];
        // etagc: visible ASCII except the double quote (RFC 9110 §8.8.3).
        if !opaque
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b))
        {
            return Err(());
        }
        tags.push(EntityTag {
            weak,
            opaque: opaque.to_string(),
        });
        rest = body[end + 1..].trim_start_matches([' ', '\t']);
        if !(rest.is_empty() || rest.starts_with(',')) {
            return Err(());
        }
    }
}

/// Resolves `If-Match` against the flag as stored now, into the revision
/// (incarnation and version) the change must find: `None` when the header
/// is absent or `*` (any current flag will do; a missing one is a 404), the
/// current revision when one of the listed tags matches it strongly, and
/// 412 when none does: a weak tag, a tag of another version or of an
/// earlier incarnation of the key. The store checks the revision again in
/// the change's own transaction, so a change (or a delete and re-create)
/// landing between this read and the write is a 412 too.
async fn expected_revision(
    state: &AppState,
    caller: &Caller,
    key: &str,
    headers: &HeaderMap,
) -> Result<Option<Revision>, ApiError> {
    let tags = match condition(headers, header::IF_MATCH) {
        Ok(None) | Ok(Some(Condition::Any)) => return Ok(None),
        Ok(Some(Condition::Tags(tags))) => tags,
        Err(()) => {
            return Err(Error::invalid(
                "If-Match",
                "expected \"*\" or the flag's ETag(s) as sent, e.g. \"3f2a9c0d1e4b5a6c-2\"",
            )
            .into())
        }
    };
    // The role comes first: without it the answer is 403, whatever the tags.
    caller.require(Role::Developer)?;
    let current = state.flags.get(caller, key).await?;
    let opaque = opaque_tag(&current);
    if tags.iter().any(|t| t.strong_match(&opaque)) {
        Ok(Some(current.revision()))
    } else {
        Err(Error::PreconditionFailed(format!(
            "If-Match: no tag matches the current ETag of flag {key}"
        ))
        .into())
    }
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
    let expected = expected_revision(&state, &caller, &key, &headers).await?;
    let record = state.flags.replace(&caller, &key, body, expected).await?;
    Ok(flag_response(StatusCode::OK, &record))
}

pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let expected = expected_revision(&state, &caller, &key, &headers).await?;
    let record = state.flags.patch(&caller, &key, body, expected).await?;
    Ok(flag_response(StatusCode::OK, &record))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ToggleRequest {
    /// Why, for the audit record.
    reason: Option<String>,
}

/// `PATCH /api/v1/flags/{key}/toggle`, with an optional JSON body
/// `{"reason": "..."}` (no body at all is a toggle without a reason).
pub async fn toggle(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let request: ToggleRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ToggleRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::from(Error::invalid(
                "body",
                format!("expected {{\"reason\": \"...\"}} or no body: {e}"),
            ))
        })?
    };
    let expected = expected_revision(&state, &caller, &key, &headers).await?;
    let record = state
        .flags
        .toggle_with_reason(&caller, &key, expected, request.reason)
        .await?;
    Ok(flag_response(StatusCode::OK, &record))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let expected = expected_revision(&state, &caller, &key, &headers).await?;
    state.flags.delete(&caller, &key, expected).await?;
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
    let ctx =
        evaluation_context::resolve(&caller, evaluation_context::from_pairs(query), None)?.context;
    let live = state.flags.live();
    let eval = live.snapshot.evaluate(&key, &ctx);
    state.metrics.exposed_in(&live.snapshot, &key, &eval);
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
    /// A developer's or admin's preview of another context (sessions only).
    #[serde(rename = "as")]
    preview: Option<serde_json::Map<String, Value>>,
}

/// `POST /api/v1/evaluate`: every (or the listed) flag for one context, as
/// `crate::evaluation_context` decides it. Client tokens may call it.
pub async fn evaluate_many(
    State(state): State<AppState>,
    Evaluator(caller): Evaluator,
    Json(req): Json<EvaluateRequest>,
) -> Result<Response, ApiError> {
    let object = |map| Context::from_json(Value::Object(map)).unwrap_or_default();
    let evaluating =
        evaluation_context::resolve(&caller, object(req.context), req.preview.map(object))?;
    let ctx = evaluating.context;
    let live = state.flags.live();
    // A preview (`as`) is nobody's exposure (see `evaluation_context`).
    let mut exposures = if evaluating.preview {
        None
    } else {
        state.metrics.exposures()
    };
    let mut count = |k: &str, e: &Evaluation<'_>| {
        if let Some(x) = exposures.as_mut() {
            x.exposed_in(&live.snapshot, k, e)
        }
    };
    let flags: Vec<Evaluated> = match &req.keys {
        Some(keys) => keys
            .iter()
            .map(|k| (k, live.snapshot.evaluate(k, &ctx)))
            .inspect(|(k, e)| count(k, e))
            .map(|(k, e)| Evaluated::new(k, &e))
            .collect(),
        None => live
            .snapshot
            .evaluate_all(&ctx)
            .inspect(|(k, e)| count(k, e))
            .map(|(k, e)| Evaluated::new(k, &e))
            .collect(),
    };
    Ok(axum::Json(Many { flags }).into_response())
}

#[derive(Serialize)]
struct Many<'a> {
    flags: Vec<Evaluated<'a>>,
}
