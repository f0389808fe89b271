//! API additions the console needs and any client may use: explaining an
//! evaluation, simulating a gateway request, flag usage for the "stale"
//! filter, and admin user creation.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flagbase_engine::{Context, Decision};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::{ApiError, ConnectInfo, Json, Path};
use super::AppState;
use crate::error::Error;
use crate::evaluation_context;
use crate::iam::Caller;
use crate::model::Role;

/// A flag counts as stale when not evaluated for this long.
const DAY_SECS: i64 = 86_400;

fn context_of(map: Map<String, Value>) -> Context {
    Context::from_json(Value::Object(map)).unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    #[serde(default)]
    context: Map<String, Value>,
}

/// `POST /api/v1/flags/{key}/explain` (developer+): the evaluation for the
/// given context with the step that decided, every rule and condition as
/// tested, and the bucket. A preview: it records no exposure.
pub async fn explain(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Json(req): Json<ExplainRequest>,
) -> Result<Response, ApiError> {
    caller.require(Role::Developer)?;
    let supplied = context_of(req.context);
    // A person previews the context as given (`as`); a machine token
    // evaluates for the context it supplies anyway.
    let ctx = if caller.is_machine() {
        evaluation_context::resolve(&caller, supplied, None)?
    } else {
        evaluation_context::resolve(&caller, Context::default(), Some(supplied))?
    }
    .context;
    let live = state.flags.live();
    let flag = live
        .snapshot
        .get(&key)
        .ok_or_else(|| Error::NotFound(format!("flag {key}")))?;
    let x = flag.explain(&ctx);
    let (step, rule_index) = match x.decision {
        Decision::Disabled => ("disabled", None),
        Decision::TargetedUser => ("targeted_user", None),
        Decision::Rule(i) => ("rule", Some(i)),
        Decision::Split => ("split", None),
        Decision::Default => ("default", None),
    };
    Ok(axum::Json(json!({
        "key": key,
        "value": x.evaluation.value,
        "variant": x.evaluation.variant,
        "reason": x.evaluation.reason,
        "decided_by": step,
        "rule_index": rule_index,
        "bucket": x.bucket,
        "rules": x.rules,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateRequest {
    method: String,
    path: String,
    #[serde(default)]
    context: Map<String, Value>,
}

/// `POST /api/v1/gateway/simulate` (developer+): which target a request
/// would reach, decided by the proxy's own routing code; nothing is sent.
pub async fn simulate(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<SimulateRequest>,
) -> Result<Response, ApiError> {
    let sim = state
        .gateway
        .simulate(&caller, &req.method, &req.path, context_of(req.context))?;
    let route = sim.route.as_ref().map(|r| {
        json!({
            "id": r.id,
            "path": r.path,
            "methods": r.methods,
            "flag_key": r.flag_key,
            "target": r.target.display(),
            "fallback_target": r.fallback.as_ref().map(|t| t.display()),
            "variants": r.variants.iter().map(|(k, t)| (k.clone(), Value::String(t.display()))).collect::<Map<_, _>>(),
            "require_role": r.require_role,
        })
    });
    Ok(axum::Json(json!({
        "path": sim.path,
        "matched": sim.route.is_some(),
        "route": route,
        "flag": sim.flag,
        "flag_enabled": sim.flag_enabled,
        "variant": sim.variant,
        "target": sim.target,
        "reason": sim.reason,
    }))
    .into_response())
}

/// `GET /api/v1/flags/usage`: for every flag, when it was last evaluated
/// (the start of the newest metrics bucket with an exposure, within
/// `metrics.retention`) and its exposures over the last 24 hours.
pub async fn usage(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Role::User)?;
    // What is still in memory counts too.
    crate::metrics::flush::flush(&state.metrics, state.metric_store.as_ref()).await?;
    let now = crate::metrics::now_secs();
    let used = state.usage.flag_usage(now - DAY_SECS).await?;
    let mut flags = Map::new();
    for key in state.flags.live().snapshot.flags().map(|f| f.key()) {
        flags.insert(
            key.to_string(),
            json!({ "last_evaluated_at": null, "exposures_24h": 0 }),
        );
    }
    for u in used {
        if let Some(entry) = flags.get_mut(&u.flag_key) {
            let at = chrono::DateTime::from_timestamp(u.last_bucket, 0);
            *entry = json!({ "last_evaluated_at": at, "exposures_24h": u.exposures_since });
        }
    }
    Ok(axum::Json(json!({ "flags": flags })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    email: String,
    password: String,
    role: Role,
}

/// `POST /api/v1/users` (admin): adds a user with a role.
pub async fn create_user(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    Json(req): Json<CreateUserRequest>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let user = state
        .iam
        .register(
            Some(&caller),
            &req.email,
            &req.password,
            Some(req.role),
            Some(peer.ip()),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(user)).into_response())
}
