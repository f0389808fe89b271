//! The HTTP layer: routes, extractors and middleware. Only this module knows
//! about HTTP status codes, headers and JSON bodies; it calls the services
//! (`iam`, the store for readiness) and maps their error kinds in `error`.

mod admin_routes;
mod anomaly_routes;
mod auth;
mod auth_routes;
mod bucket_routes;
mod console_routes;
pub mod error;
mod flag_routes;
mod function_routes;
mod gateway_h1;
mod gateway_routes;
mod metrics_routes;
mod ofrep;
mod request;
mod serve;
mod session_routes;
mod stream;
mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::IntoResponse;
use axum::routing::{any, delete, get, patch, post, put};
use axum::Router;
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;

use crate::flags::Flags;
use crate::gateway::Gateway;
use crate::iam::Iam;
use crate::storage::Store;
use error::ApiError;
pub use gateway_routes::Direct as GatewayDirect;
pub use serve::{serve, ServeOptions};
pub use ui::{Assets as UiAssets, UiConfig};

#[derive(Clone)]
pub struct AppState {
    pub iam: Arc<Iam>,
    pub flags: Arc<Flags>,
    pub store: Arc<dyn Store>,
    /// The SSE stream hub (`/api/v1/stream`, `/ofrep/v1/events`).
    pub stream: Arc<crate::stream::Hub>,
    pub buckets: Arc<crate::objects::Buckets>,
    pub functions: Arc<crate::functions::Functions>,
    pub triggers: Arc<crate::functions::triggers::Triggers>,
    /// `functions.max_module_bytes`.
    pub max_module_bytes: usize,
    /// `server.max_body_bytes`, for routes that read their body themselves.
    pub max_body_bytes: usize,
    pub metrics: Arc<crate::metrics::Recorder>,
    pub detector: Arc<crate::anomaly::Detector>,
    pub gateway: Arc<Gateway>,
    /// The console's assets (embedded, or `ui.dev_dir`).
    pub ui: Arc<ui::Assets>,
    /// The console's browser sessions (cookie + CSRF).
    pub sessions: Arc<crate::iam::browser::BrowserSessions>,
    /// `ui.secure_cookie`: the console is reached over HTTPS.
    pub secure_cookie: bool,
    /// Flag usage for the console's "stale" filter, and the store the
    /// recorder flushes to first.
    pub usage: Arc<dyn crate::storage::usage::UsageStore>,
    pub metric_store: Arc<dyn crate::storage::MetricStore>,
}

pub struct HttpOptions {
    pub max_body_bytes: usize,
}

pub fn router(state: AppState, options: &HttpOptions) -> Router {
    let routes = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/setup/status", get(auth_routes::setup_status))
        .route("/setup", post(auth_routes::setup))
        .route("/auth/register", post(auth_routes::register))
        .route("/auth/login", post(auth_routes::login))
        .route("/auth/me", get(auth_routes::me))
        .route(
            "/auth/session",
            post(session_routes::login)
                .get(session_routes::current)
                .delete(session_routes::logout),
        )
        .route(
            "/api/v1/users",
            get(admin_routes::list_users).post(console_routes::create_user),
        )
        .route("/api/v1/users/{id}/role", put(admin_routes::set_role))
        .route("/api/v1/users/{id}", delete(admin_routes::delete_user))
        .route(
            "/api/v1/tokens",
            post(admin_routes::create_token).get(admin_routes::list_tokens),
        )
        .route("/api/v1/tokens/{id}", delete(admin_routes::delete_token))
        .route("/api/v1/audit", get(admin_routes::audit))
        .route(
            "/api/v1/flags",
            post(flag_routes::create).get(flag_routes::list),
        )
        .route(
            "/api/v1/flags/{key}",
            get(flag_routes::get)
                .put(flag_routes::replace)
                .patch(flag_routes::patch)
                .delete(flag_routes::delete),
        )
        // Static beats the `{key}` capture; `usage` is a reserved flag key.
        .route("/api/v1/flags/usage", get(console_routes::usage))
        .route("/api/v1/flags/{key}/explain", post(console_routes::explain))
        .route("/api/v1/gateway/simulate", post(console_routes::simulate))
        .route("/api/v1/flags/{key}/toggle", patch(flag_routes::toggle))
        .route("/api/v1/flags/{key}/history", get(flag_routes::history))
        .route(
            "/api/v1/flags/{key}/evaluate",
            get(flag_routes::evaluate_one),
        )
        .route("/api/v1/evaluate", post(flag_routes::evaluate_many))
        .route("/ofrep/v1/evaluate/flags", post(ofrep::evaluate_all))
        .route("/ofrep/v1/evaluate/flags/{key}", post(ofrep::evaluate_flag))
        .route("/api/v1/stream", get(stream::definitions))
        .route("/ofrep/v1/events", get(stream::ofrep_events))
        .route(
            "/api/v1/buckets/{bucket}/objects",
            get(bucket_routes::list_objects),
        )
        .route(
            "/api/v1/buckets/{bucket}/objects/{*name}",
            get(bucket_routes::get_object)
                .put(bucket_routes::put_object)
                .delete(bucket_routes::delete_object),
        )
        .route(
            "/api/v1/functions",
            get(function_routes::list).post(function_routes::post_multipart),
        )
        .route(
            "/api/v1/functions/{name}",
            get(function_routes::get)
                .put(function_routes::put)
                .patch(function_routes::patch)
                .delete(function_routes::delete),
        )
        .route(
            "/api/v1/functions/{name}/activate",
            post(function_routes::activate),
        )
        .route(
            "/api/v1/functions/{name}/invocations",
            get(function_routes::invocations),
        )
        .route(
            "/api/v1/functions/{name}/invoke",
            post(function_routes::invoke_api),
        )
        .route(
            "/api/v1/functions/{name}/triggers",
            get(function_routes::list_triggers).post(function_routes::create_trigger),
        )
        .route(
            "/api/v1/functions/{name}/triggers/{id}",
            delete(function_routes::delete_trigger),
        )
        .route("/functions/{name}", any(function_routes::invoke_root))
        .route(
            "/functions/{name}/{*path}",
            any(function_routes::invoke_path),
        )
        .route("/api/v1/events", post(metrics_routes::ingest))
        .route("/api/v1/metrics", post(metrics_routes::ingest))
        .route(
            "/api/v1/flags/{key}/metrics",
            get(metrics_routes::flag_metrics),
        )
        .route(
            "/api/v1/flags/{key}/metrics/series",
            get(metrics_routes::flag_metrics_series),
        )
        .route(
            "/api/v1/flags/{key}/guard",
            get(anomaly_routes::get_guard).put(anomaly_routes::put_guard),
        )
        .route("/api/v1/anomalies", get(anomaly_routes::list))
        .route(
            "/api/v1/anomalies/{id}/resolve",
            post(anomaly_routes::resolve),
        )
        .route(
            "/api/v1/gateway/routes",
            post(gateway_routes::create).get(gateway_routes::list),
        )
        .route(
            "/api/v1/gateway/routes/{id}",
            get(gateway_routes::get)
                .put(gateway_routes::replace)
                .delete(gateway_routes::delete),
        )
        // Proxied bodies stream through: no extractor reads them, so the
        // body limit above does not apply (gateway.max_body_bytes does).
        .route("/gateway", any(gateway_routes::proxy))
        .route("/gateway/{*rest}", any(gateway_routes::proxy))
        .merge(ui::routes());
    with_common_layers(routes, options).with_state(state)
}

/// What every route gets: JSON 404/405, the body limit, panic recovery and
/// the request context (outermost, so even a panic's 500 carries the id).
fn with_common_layers<S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    options: &HttpOptions,
) -> Router<S> {
    routes
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(axum::middleware::from_fn(request::context))
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
        Err(_) => {
            Err(crate::error::Error::Unavailable("the database is not answering".into()).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    /// No production route panics on purpose, so the layer stack is tested
    /// here with one that does.
    #[tokio::test]
    async fn a_panicking_handler_becomes_a_json_500_and_the_router_lives_on() {
        async fn boom() -> &'static str {
            panic!("secret detail that must not leak")
        }
        let app = with_common_layers(
            Router::new()
                .route("/boom", get(boom))
                .route("/fine", get(health)),
            &HttpOptions {
                max_body_bytes: 1024,
            },
        );
        let response = app
            .clone()
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        assert!(response.headers().contains_key("x-request-id"));
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, json!({"error": "internal error", "code": "internal"}));
        let again = app
            .oneshot(Request::get("/fine").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(again.status(), 200);
    }
}
