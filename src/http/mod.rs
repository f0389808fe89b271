//! The HTTP layer: routes, extractors and middleware. Only this module knows
//! about HTTP status codes, headers and JSON bodies; it calls the services
//! (`iam`, the store for readiness) and maps their error kinds in `error`.

mod admin_routes;
mod auth;
mod auth_routes;
pub mod error;
mod request;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;

use crate::iam::Iam;
use crate::storage::Store;
use error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub iam: Arc<Iam>,
    pub store: Arc<dyn Store>,
}

pub struct HttpOptions {
    pub max_body_bytes: usize,
}

pub fn router(state: AppState, options: &HttpOptions) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/setup/status", get(auth_routes::setup_status))
        .route("/setup", post(auth_routes::setup))
        .route("/auth/register", post(auth_routes::register))
        .route("/auth/login", post(auth_routes::login))
        .route("/auth/me", get(auth_routes::me))
        .route("/api/v1/users", get(admin_routes::list_users))
        .route("/api/v1/users/{id}/role", put(admin_routes::set_role))
        .route("/api/v1/users/{id}", delete(admin_routes::delete_user))
        .route(
            "/api/v1/tokens",
            post(admin_routes::create_token).get(admin_routes::list_tokens),
        )
        .route("/api/v1/tokens/{id}", delete(admin_routes::delete_token))
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(axum::middleware::from_fn(request::context))
        .with_state(state)
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// Ready only when the database answers, within a second.
async fn ready(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    match tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await {
        Ok(Ok(())) => Ok(axum::Json(json!({ "status": "ready" }))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(crate::error::Error::Unavailable("the database is not answering".into()).into())
        }
        Err(_) => Err(crate::error::Error::Unavailable("the database is not answering".into()).into()),
    }
}
