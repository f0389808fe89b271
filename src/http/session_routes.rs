//! The console's browser sessions: `POST /auth/session` logs in and sets
//! the `HttpOnly`, `SameSite=Strict` cookie, `GET` tells a reloaded page who
//! it is and its CSRF token again, `DELETE` logs out server-side.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::{cookie_caller, cross_origin, csrf_error, session_cookie, SESSION_COOKIE};
use super::error::{ApiError, ConnectInfo, Json};
use super::AppState;
use crate::error::Error;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

fn body(caller_user: &crate::model::User, csrf_token: &str) -> serde_json::Value {
    json!({
        "user": {
            "id": caller_user.id,
            "email": caller_user.email,
            "role": caller_user.role,
        },
        "csrf_token": csrf_token,
    })
}

fn cookie(state: &AppState, value: &str, max_age_secs: u64) -> HeaderValue {
    let secure = if state.secure_cookie { "; Secure" } else { "" };
    let text = format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}{secure}"
    );
    HeaderValue::from_str(&text).expect("a cookie of base64url text is a valid header")
}

fn no_session() -> ApiError {
    Error::Unauthenticated("no console session: log in with POST /auth/session".into()).into()
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(req): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    // Refuses login CSRF: another site logging a browser into an account
    // of its choosing.
    if cross_origin(&headers, state.secure_cookie) {
        return Err(csrf_error("log in from the console's own origin"));
    }
    let session = state
        .sessions
        .login(&req.email, &req.password, Some(peer.ip()))
        .await?;
    let mut response = axum::Json(body(&session.user, &session.csrf_token)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::SET_COOKIE,
        cookie(&state, &session.id, state.sessions.ttl().as_secs()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub async fn current(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = session_cookie(&headers).ok_or_else(no_session)?;
    let active = state.sessions.authenticate(id).await?;
    let mut response = axum::Json(body(&active.caller.user, &active.csrf_token)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Logs out with the cookie itself (a bearer token sent beside it does not
/// count): the session, its CSRF token and the origin are checked as for
/// any request that changes state.
pub async fn logout(State(state): State<AppState>, parts: Parts) -> Result<Response, ApiError> {
    let id = session_cookie(&parts.headers).ok_or_else(no_session)?;
    let caller = cookie_caller(&parts, &state, id).await?;
    state.sessions.logout(id).await?;
    tracing::info!(user_id = %caller.user.id, "console session ended by logout");
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&state, "", 0));
    Ok(response)
}
