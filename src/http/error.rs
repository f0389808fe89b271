//! The one place where error kinds become HTTP responses. Every error body,
//! from a handler, an extractor, a missing route or a panic, has the shape
//! `{"error": "<human message>", "code": "<machine code>"}`.

use axum::extract::path::ErrorKind;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::Error;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after_secs: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code) = match &e {
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::PreconditionFailed(_) => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
            Error::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid"),
            Error::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "throttled"),
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Error::BadGateway(_) => (StatusCode::BAD_GATEWAY, "bad_gateway"),
            Error::GatewayTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "gateway_timeout"),
            Error::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            Error::Failed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "function_failed"),
            Error::Internal(detail) => {
                // Logged once here, inside the request's span (which carries
                // the request id); the body says nothing internal.
                tracing::error!(error = %detail, "internal error");
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                );
            }
        };
        let mut api = ApiError::new(status, code, e.to_string());
        match e {
            Error::Invalid { field, .. } => api.field = Some(field),
            Error::Throttled {
                retry_after_secs, ..
            } => api.retry_after_secs = Some(retry_after_secs),
            _ => {}
        }
        api
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message, "code": self.code });
        if let Some(field) = self.field {
            body["field"] = field.into();
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a body with Content-Type: application/json",
            ),
            JsonRejection::JsonSyntaxError(e) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("malformed JSON: {}", source_text(&e)),
            ),
            JsonRejection::JsonDataError(e) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("invalid request body: {}", source_text(&e)),
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => payload_too_large(),
            // The body could not be read (the client went away or sent a
            // broken chunked body): axum's text would carry hyper's error.
            other => {
                tracing::debug!(error = %other.body_text(), "cannot read the request body");
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "cannot read the request body",
                )
            }
        }
    }
}

/// serde's own message (what and where), without axum's preamble.
fn source_text(e: &dyn std::error::Error) -> String {
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

pub fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "request body is larger than the limit (server.max_body_bytes)",
    )
}

/// `axum::Json` with our error shape for every rejection.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Json(value))
    }
}

/// `axum::extract::Query` with our error shape.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|e: QueryRejection| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid",
                        format!("invalid query string: {}", source_text(&e)),
                    )
                })?;
        Ok(Query(value))
    }
}

/// `axum::extract::Path` with our error shape: a drop-in (`Path(key):
/// Path<String>`), so handlers change only their import.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    let kind = match rejection {
        PathRejection::FailedToDeserializePathParams(e) => e.into_kind(),
        // A route without the parameters its handler asks for: our bug.
        other => return internal(format!("path extraction: {other}")),
    };
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid", message);
    match kind {
        ErrorKind::InvalidUtf8InPathParam { key } => bad(format!(
            "path parameter `{key}` is not valid UTF-8 once percent-decoded"
        )),
        ErrorKind::ParseError { .. }
        | ErrorKind::ParseErrorAtKey { .. }
        | ErrorKind::ParseErrorAtIndex { .. }
        | ErrorKind::DeserializeError { .. } => bad(format!("invalid path parameter: {kind}")),
        // Wrong arity, unsupported types, custom messages: the handler's
        // declaration does not fit its route.
        other => internal(format!("path extraction: {other}")),
    }
}

/// `axum::extract::ConnectInfo` with our error shape. The server always
/// provides it; a missing one is our bug, answered as a JSON 500.
pub struct ConnectInfo<T>(pub T);

impl<T, S> FromRequestParts<S> for ConnectInfo<T>
where
    T: Clone + Send + Sync + 'static,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::ConnectInfo::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::ConnectInfo(value)) => Ok(ConnectInfo(value)),
            Err(e) => Err(internal(format!("connection info: {e}"))),
        }
    }
}

/// A 500 whose detail is logged once, in the request's span, and never sent.
fn internal(detail: String) -> ApiError {
    ApiError::from(Error::Internal(detail))
}

pub async fn route_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

/// Turns a handler panic into a plain 500; the server keeps serving.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = %detail, "handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
    .into_response()
}

/// The gateway's own answers: whose fault each is decides its status
/// (pingora's split): the caller's 4xx, a flag-disabled route 503, the
/// upstream's 502/504 (as kinds), our bug 500.
pub fn proxy_error(e: crate::gateway::ProxyError) -> Response {
    use crate::gateway::ProxyError;
    match e {
        ProxyError::NoRoute => {
            ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "no gateway route serves this path")
                .into_response()
        }
        ProxyError::MethodNotAllowed => ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this gateway route does not accept that method",
        )
        .into_response(),
        ProxyError::BadPath => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the path must not contain . or .. segments",
        )
        .into_response(),
        ProxyError::TooLarge { limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than the gateway limit of {limit} bytes (gateway.max_body_bytes)"),
        )
        .into_response(),
        ProxyError::Disabled { set_cookie } => {
            let mut response = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "route_disabled",
                "route disabled by feature flag",
            )
            .into_response();
            if let Some(cookie) = set_cookie {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
        ProxyError::Failed(kind) => ApiError::from(kind).into_response(),
    }
}
