//! Credential extraction: `Authorization: Bearer <JWT or API token>` and/or
//! `X-API-Key: <API token>`. Every credential a request carries must be
//! valid; when both headers are sent they must name the same principal.
//! Only routes that take a `Caller` look at these headers, so a bad header
//! never breaks a public route.
//!
//! Without either header, the console's session cookie (`flagbase_session`)
//! is accepted in their place: safe methods need nothing more, others need
//! the session's `X-CSRF-Token` and a same-origin request (403 `csrf`).
//! A header credential always wins over the cookie.
//!
//! Public `client` tokens are refused by default: the `Caller` extractor
//! answers 403 for them, so a new route cannot serve one by accident. The
//! few routes a client token may use (evaluation, the OFREP change stream)
//! take an `Evaluator` instead.

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, HOST};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};

use super::error::ApiError;
use super::AppState;
use crate::error::Error;
use crate::iam::browser::csrf_matches;
use crate::iam::Caller;
use crate::request_head::{text, RequestHead};

pub use crate::iam::browser::COOKIE_NAME as SESSION_COOKIE;

/// Header values longer than this are not credentials we could have issued.
const MAX_CREDENTIAL_BYTES: usize = 4096;

fn bad(why: &str) -> Error {
    Error::Unauthenticated(why.to_string())
}

/// The one value of header `name`; a header sent twice is refused rather
/// than having one of its values looked at and the other ignored.
fn single<'a>(head: &'a impl RequestHead, name: &'static str) -> Result<Option<&'a str>, Error> {
    let mut values = head.values(name);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(bad(&format!("more than one {name} header")));
    }
    let text = text(value).ok_or_else(|| bad(&format!("malformed {name} header")))?;
    Ok(Some(text))
}

/// Every credential the request carries: the `Authorization` bearer and the
/// `X-API-Key`, each checked for form. A header that is present but not a
/// credential is an error, never skipped: a request carrying an invalid
/// credential anywhere is refused.
fn presented(head: &impl RequestHead) -> Result<Vec<&str>, Error> {
    let mut found = Vec::with_capacity(2);
    if let Some(text) = single(head, "authorization")? {
        let (scheme, credential) = text
            .split_once(' ')
            .ok_or_else(|| bad("expected Authorization: Bearer <token>"))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(bad("expected Authorization: Bearer <token>"));
        }
        let credential = credential.trim();
        if credential.is_empty() || credential.len() > MAX_CREDENTIAL_BYTES {
            return Err(bad("invalid token"));
        }
        found.push(credential);
    }
    if let Some(text) = single(head, "x-api-key")? {
        let credential = text.trim();
        if credential.is_empty() || credential.len() > MAX_CREDENTIAL_BYTES {
            return Err(bad("invalid API token"));
        }
        found.push(credential);
    }
    Ok(found)
}

/// Authenticates every presented credential. With both headers, both must
/// be valid and name the same user with the same effective role; the
/// caller is then the `Authorization` one. Anything else is ambiguous
/// authority and refused.
async fn authenticate(state: &AppState, credentials: &[&str]) -> Result<Caller, Error> {
    let (first, rest) = credentials.split_first().ok_or_else(|| {
        Error::Unauthenticated("missing credentials: send Authorization: Bearer <token>".into())
    })?;
    let caller = state.iam.authenticate(first).await?;
    for other in rest {
        if other == first {
            continue;
        }
        let second = state.iam.authenticate(other).await?;
        if second.user.id != caller.user.id || second.role != caller.role {
            return Err(bad(
                "Authorization and X-API-Key name different principals; send one credential",
            ));
        }
    }
    Ok(caller)
}

/// `MaybeCaller` for a connection that remembers the credential it
/// verified last (`Iam::authenticate_remembered`): the same answers, and a
/// connection that presents the same bearer on every request pays for its
/// verification once. Two credentials (`Authorization` and `X-API-Key`)
/// are verified in full every time.
pub async fn maybe_caller_remembered<'m>(
    head: &impl RequestHead,
    state: &AppState,
    memo: &'m mut Option<crate::iam::Remembered>,
) -> Result<Option<std::borrow::Cow<'m, Caller>>, ApiError> {
    use std::borrow::Cow;
    let credentials = match presented(head) {
        Ok(found) if !found.is_empty() => found,
        _ => return Ok(None),
    };
    let verified = match credentials.as_slice() {
        [one] => state
            .iam
            .authenticate_remembered(one, memo)
            .await
            .map(Cow::Borrowed),
        several => authenticate(state, several).await.map(Cow::Owned),
    };
    match verified {
        Ok(caller) => {
            caller.require_not_client()?;
            Ok(Some(caller))
        }
        Err(Error::Unauthenticated(_)) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

/// The session cookie's value, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|text| text.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
}

pub fn csrf_error(why: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "csrf", why)
}

/// Whether the request comes from a page of this server: the browser says
/// so (`Sec-Fetch-Site: same-origin`), or its `Origin` is our own
/// (`http(s)://` + the `Host` it addressed).
pub fn same_origin(headers: &HeaderMap, secure: bool) -> bool {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if header("sec-fetch-site") == Some("same-origin") {
        return true;
    }
    let (Some(origin), Some(host)) = (header("origin"), header(HOST.as_str())) else {
        return false;
    };
    let scheme = if secure { "https" } else { "http" };
    origin
        .strip_prefix(scheme)
        .and_then(|rest| rest.strip_prefix("://"))
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

/// Whether a browser marked the request as coming from another site (a
/// request without `Origin` or `Sec-Fetch-Site` is no browser's).
pub fn cross_origin(headers: &HeaderMap, secure: bool) -> bool {
    let marked = headers.contains_key("origin") || headers.contains_key("sec-fetch-site");
    marked && !same_origin(headers, secure)
}

/// The caller a session cookie names, with the CSRF defence for methods
/// that change state.
pub async fn cookie_caller(parts: &Parts, state: &AppState, id: &str) -> Result<Caller, ApiError> {
    let active = state.sessions.authenticate(id).await?;
    if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let presented =
            single(parts, "x-csrf-token").map_err(|_| csrf_error("malformed X-CSRF-Token"))?;
        let Some(presented) = presented else {
            return Err(csrf_error(
                "a console request that changes state needs the X-CSRF-Token header",
            ));
        };
        if !csrf_matches(presented, &active.csrf_token) {
            return Err(csrf_error("wrong X-CSRF-Token for this session"));
        }
        if !same_origin(&parts.headers, state.secure_cookie) {
            return Err(csrf_error(
                "a console request must come from the console's own origin",
            ));
        }
    }
    Ok(active.caller)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Evaluator(caller) = Evaluator::from_request_parts(parts, state).await?;
        caller.require_not_client()?;
        Ok(caller)
    }
}

/// Any authenticated caller, public `client` tokens included: only for the
/// routes that evaluate for a supplied context and reveal no definition.
pub struct Evaluator(pub Caller);

impl FromRequestParts<AppState> for Evaluator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let credentials = presented(parts)?;
        if credentials.is_empty() {
            if let Some(id) = session_cookie(&parts.headers) {
                return Ok(Evaluator(cookie_caller(parts, state, id).await?));
            }
        }
        Ok(Evaluator(authenticate(state, &credentials).await?))
    }
}

/// For streams an `EventSource` opens, which cannot send headers: the
/// headers' credential when one is sent, otherwise `query_token` (the
/// `?token=` parameter). The request log never records query strings.
pub async fn stream_caller(
    parts: &Parts,
    state: &AppState,
    query_token: Option<&str>,
) -> Result<Caller, ApiError> {
    let mut credentials = presented(parts)?;
    if credentials.is_empty() {
        if let Some(token) = query_token {
            let token = token.trim();
            if token.is_empty() || token.len() > MAX_CREDENTIAL_BYTES {
                return Err(bad("invalid token").into());
            }
            credentials.push(token);
        } else if let Some(id) = session_cookie(&parts.headers) {
            return cookie_caller(parts, state, id).await;
        }
    }
    Ok(authenticate(state, &credentials).await?)
}

/// The caller when valid credentials were sent, `None` otherwise; for public
/// routes whose behaviour widens for an authenticated caller. Headers only:
/// the session cookie reaches `/gateway` paths too, where it is the proxied
/// site's business, not a credential for us.
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let credentials = match presented(parts) {
            Ok(found) if !found.is_empty() => found,
            _ => return Ok(MaybeCaller(None)),
        };
        match authenticate(state, &credentials).await {
            Ok(caller) => {
                caller.require_not_client()?;
                Ok(MaybeCaller(Some(caller)))
            }
            Err(Error::Unauthenticated(_)) => Ok(MaybeCaller(None)),
            Err(other) => Err(other.into()),
        }
    }
}
