//! The OpenFeature Remote Evaluation Protocol (OFREP v1, OpenAPI schema
//! 0.3.0): single and bulk evaluation for a context the caller supplies (the
//! application's end user), with the protocol's own error bodies and ETag
//! caching for bulk. Engine results are translated here into exactly what
//! the schema allows: its five reasons, a string variant for every value and
//! its error-code enums.

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flagbase_engine::{CompiledFlag, Context, ErrorCode, Evaluation, Reason};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::auth::Evaluator;
use super::error::{payload_too_large, ApiError, Path};
use super::flag_routes::{condition, Condition};
use super::AppState;
use crate::error::Error;
use crate::evaluation_context;
use crate::iam::Caller;

/// The schema's reason enum is `STATIC`, `TARGETING_MATCH`, `SPLIT`,
/// `DISABLED`, `UNKNOWN`. The engine's `DEFAULT` (the flag has targeting,
/// none of it applied, so the flag's default was served) has no equal
/// there: `STATIC` would claim that no dynamic evaluation happened, which is
/// false (another context can get another value) and invites a client to
/// cache the value for every context; `UNKNOWN` is the one member that
/// claims nothing false. `ERROR` never reaches a success body.
fn reason(r: Reason) -> &'static str {
    match r {
        Reason::Static => "STATIC",
        Reason::TargetingMatch => "TARGETING_MATCH",
        Reason::Split => "SPLIT",
        Reason::Disabled => "DISABLED",
        Reason::Default | Reason::Error => "UNKNOWN",
    }
}

/// `evaluationFailure.errorCode` is `PARSE_ERROR`, `TARGETING_KEY_MISSING`,
/// `INVALID_CONTEXT` or `GENERAL`; any other engine code (a type mismatch)
/// is `GENERAL`. `FLAG_NOT_FOUND` has its own 404 body (`flagNotFound`).
fn failure_code(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::ParseError
        | ErrorCode::TargetingKeyMissing
        | ErrorCode::InvalidContext
        | ErrorCode::General => code.as_str(),
        ErrorCode::FlagNotFound | ErrorCode::TypeMismatch => ErrorCode::General.as_str(),
    }
}

/// An OFREP error body `{key?, errorCode, errorDetails}` with a status: the
/// single endpoint's `evaluationFailure` (400) and `flagNotFound` (404) have
/// the key, the bulk endpoint's `bulkEvaluationFailure` (400) has none.
fn failure(status: StatusCode, key: Option<&str>, code: &str, details: String) -> Response {
    let mut body = json!({ "errorCode": code, "errorDetails": details });
    if let Some(key) = key {
        body["key"] = key.into();
    }
    (status, axum::Json(body)).into_response()
}

/// The body, or the response for one that could not be read (boxed: the
/// error path is rare and a `Response` is large).
fn body_bytes(
    body: Result<Bytes, BytesRejection>,
    key: Option<&str>,
) -> Result<Bytes, Box<Response>> {
    body.map_err(|r| {
        Box::new(if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            payload_too_large().into_response()
        } else {
            // axum's text would carry hyper's error; it is logged instead.
            tracing::debug!(error = %r.body_text(), "cannot read the request body");
            failure(
                StatusCode::BAD_REQUEST,
                key,
                ErrorCode::ParseError.as_str(),
                "cannot read the request body".into(),
            )
        })
    })
}

/// The request's context, or the OFREP 400 to answer with. Lenient where
/// the schema is strict and the official providers are not: an empty body,
/// `{}` and a context without `targetingKey` are evaluated as an empty
/// context (both providers send `{}` when the application set none).
fn context(bytes: &[u8], key: Option<&str>) -> Result<Context, Box<Response>> {
    let reject = |code: ErrorCode, details: String| {
        Box::new(failure(
            StatusCode::BAD_REQUEST,
            key,
            code.as_str(),
            details,
        ))
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Context::new());
    }
    let request: Value = serde_json::from_slice(bytes).map_err(|e| {
        reject(
            ErrorCode::ParseError,
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut request) = request else {
        return Err(reject(
            ErrorCode::ParseError,
            "request body must be a JSON object".into(),
        ));
    };
    let context = request.remove("context");
    if let Some(key) = context.as_ref().and_then(|c| c.get("targetingKey")) {
        if !key.is_string() && !key.is_null() {
            return Err(reject(
                ErrorCode::InvalidContext,
                "context.targetingKey must be a string".into(),
            ));
        }
    }
    match context {
        None | Some(Value::Null) => Ok(Context::new()),
        Some(ctx) => Context::from_json(ctx).ok_or_else(|| {
            reject(
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
    variant: Cow<'a, str>,
    metadata: Metadata,
}

/// Flag metadata: none is kept yet, and the schema allows an empty object.
#[derive(Serialize)]
struct Metadata {}

/// Serialised straight from borrowed evaluations: no intermediate JSON tree.
#[derive(Serialize)]
struct Bulk<'a> {
    flags: Vec<Item<'a>>,
    /// OFREP change notifications (ADR-0008), for client tokens.
    #[serde(rename = "eventStreams", skip_serializing_if = "Option::is_none")]
    event_streams: Option<Value>,
}

/// The change stream a client token's provider should follow: our own
/// `GET /ofrep/v1/events` as a structured endpoint without an origin (the
/// provider puts its OFREP base URL's origin in front, which also works
/// behind a proxy), carrying the token (an `EventSource` cannot send
/// headers; a client token is public by design) and the change number the
/// answer reflects, so a change landing between this answer and the
/// connection is still announced. Only for client tokens: a session's JWT
/// or a server token does not belong in a URL.
fn event_streams(caller: &Caller, headers: &HeaderMap, seen: u64) -> Option<Value> {
    if !caller.is_client() {
        return None;
    }
    let presented = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' ').map(|(_, t)| t))
        })?
        .trim();
    // An `fbk_` token is URL-safe as it is; anything else is not ours.
    if !presented
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return None;
    }
    Some(json!([{
        "type": "sse",
        "endpoint": {
            "requestUri": format!("/ofrep/v1/events?token={presented}&last_event_id={seen}")
        }
    }]))
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

/// One answer; `flag` is `None` for an unknown key. Bulk callers pass the
/// flag they evaluated, so nothing is looked up twice.
fn item<'a>(flag: Option<&'a CompiledFlag>, key: &'a str, e: &Evaluation<'a>) -> Item<'a> {
    match (e.error_code, flag) {
        (None, Some(flag)) => Item::Success(Success {
            key,
            value: e.value,
            reason: reason(e.reason),
            // Always a string (the schema types it so, and the official
            // Python provider reads it unconditionally); the same naming
            // the exposure counts use, so recorded events meet them.
            variant: crate::metrics::variant_name(flag, e),
            metadata: Metadata {},
        }),
        (code, _) => {
            let code = code.unwrap_or(ErrorCode::FlagNotFound);
            Item::Failure {
                key,
                error_code: failure_code(code),
                error_details: match code {
                    ErrorCode::FlagNotFound => format!("flag {key} not found"),
                    _ => format!("cannot evaluate flag {key}"),
                },
            }
        }
    }
}

pub async fn evaluate_flag(
    State(state): State<AppState>,
    Evaluator(caller): Evaluator,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let ctx = match body_bytes(body, Some(&key)).and_then(|b| context(&b, Some(&key))) {
        Ok(ctx) => ctx,
        Err(response) => return *response,
    };
    let ctx = match evaluation_context::resolve(&caller, ctx, None) {
        Ok(evaluating) => evaluating.context,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let live = state.flags.live();
    let flag = live.snapshot.get(&key);
    let eval = match flag {
        Some(flag) => flag.evaluate(&ctx),
        None => Evaluation::not_found(),
    };
    flag.inspect(|f| state.metrics.exposed(f, &eval));
    match item(flag, &key, &eval) {
        Item::Failure {
            error_code,
            error_details,
            ..
        } => {
            if eval.error_code == Some(ErrorCode::FlagNotFound) {
                failure(
                    StatusCode::NOT_FOUND,
                    Some(&key),
                    ErrorCode::FlagNotFound.as_str(),
                    error_details,
                )
            } else {
                failure(
                    StatusCode::BAD_REQUEST,
                    Some(&key),
                    error_code,
                    error_details,
                )
            }
        }
        ok => axum::Json(ok).into_response(),
    }
}

/// Bulk evaluation. The ETag names the snapshot and the request body, so an
/// unchanged context against unchanged flags answers 304 without evaluating.
/// The request is validated first: a body that is not a valid request gets
/// its 400 whatever `If-None-Match` says.
pub async fn evaluate_all(
    State(state): State<AppState>,
    Evaluator(caller): Evaluator,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let bytes = match body_bytes(body, None) {
        Ok(bytes) => bytes,
        Err(response) => return Ok(*response),
    };
    let ctx = match context(&bytes, None) {
        Ok(ctx) => ctx,
        Err(response) => return Ok(*response),
    };
    let ctx = evaluation_context::resolve(&caller, ctx, None)?.context;
    // Read before the snapshot: the hub follows the snapshot, so the answer
    // reflects at least every change up to `seen`.
    let seen = state.stream.head();
    let live = state.flags.live();
    // A session evaluates for its person (the context rule), so its answer
    // depends on who is asking and with which role, not only on the body.
    let mut hasher = Sha256::new();
    hasher.update(&bytes);
    if !caller.is_machine() {
        hasher.update([0]);
        hasher.update(caller.user.id.as_bytes());
        hasher.update([0]);
        hasher.update(caller.role.as_str().as_bytes());
    }
    let digest = hasher.finalize();
    let body_hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let opaque = format!("{}-{body_hash}", live.tag);
    let etag = HeaderValue::from_str(&format!("\"{opaque}\"")).map_err(Error::internal)?;
    match condition(&headers, header::IF_NONE_MATCH) {
        // OFREP's one deviation from RFC 9110: a POST whose tag matches
        // answers 304, as a GET would (If-None-Match compares weakly).
        Ok(Some(Condition::Tags(tags))) if tags.iter().any(|t| t.weak_match(&opaque)) => {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            response.headers_mut().insert(header::ETAG, etag);
            return Ok(response);
        }
        // `*` is no tag of a previous answer, so OFREP's 304 rule does not
        // cover it and RFC 9110 §13.1.2 applies: the resource has a current
        // representation, so the condition is false, and for a method other
        // than GET or HEAD that is 412.
        Ok(Some(Condition::Any)) => {
            return Err(Error::PreconditionFailed(
                "If-None-Match: * never holds here: the flags always have a current evaluation"
                    .into(),
            )
            .into())
        }
        // No header, no matching tag, or a malformed field, which cannot
        // name a cached answer: evaluate.
        Ok(_) | Err(()) => {}
    }
    let mut exposures = state.metrics.exposures();
    let flags: Vec<Item> = live
        .snapshot
        .flags()
        .map(|f| (f, f.evaluate(&ctx)))
        .inspect(|(f, e)| exposures.iter_mut().for_each(|x| x.exposed(f, e)))
        .map(|(f, e)| item(Some(f), f.key(), &e))
        .collect();
    drop(exposures);
    let mut response = axum::Json(Bulk {
        flags,
        event_streams: event_streams(&caller, &headers, seen),
    })
    .into_response();
    response.headers_mut().insert(header::ETAG, etag);
    Ok(response)
}
