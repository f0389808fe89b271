//! Credential extraction: `Authorization: Bearer <JWT or API token>` or
//! `X-API-Key: <API token>`. Only routes that take a `Caller` look at these
//! headers, so a bad header never breaks a public route.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::ApiError;
use super::AppState;
use crate::error::Error;
use crate::iam::Caller;

/// Header values longer than this are not credentials we could have issued.
const MAX_CREDENTIAL_BYTES: usize = 4096;

fn presented(parts: &Parts) -> Result<Option<&str>, Error> {
    let bad = |why: &str| Error::Unauthenticated(why.to_string());
    if let Some(value) = parts.headers.get(AUTHORIZATION) {
        let text = value
            .to_str()
            .map_err(|_| bad("malformed Authorization header"))?;
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
        return Ok(Some(credential));
    }
    if let Some(value) = parts.headers.get("x-api-key") {
        let text = value
            .to_str()
            .map_err(|_| bad("malformed X-API-Key header"))?;
        if text.is_empty() || text.len() > MAX_CREDENTIAL_BYTES {
            return Err(bad("invalid API token"));
        }
        return Ok(Some(text.trim()));
    }
    Ok(None)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let credential = presented(parts)?.ok_or_else(|| {
            Error::Unauthenticated("missing credentials: send Authorization: Bearer <token>".into())
        })?;
        Ok(state.iam.authenticate(credential).await?)
    }
}

/// The caller when valid credentials were sent, `None` otherwise; for public
/// routes whose behaviour widens for an authenticated caller.
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Ok(Some(credential)) = presented(parts) else {
            return Ok(MaybeCaller(None));
        };
        match state.iam.authenticate(credential).await {
            Ok(caller) => Ok(MaybeCaller(Some(caller))),
            Err(Error::Unauthenticated(_)) => Ok(MaybeCaller(None)),
            Err(other) => Err(other.into()),
        }
    }
}
