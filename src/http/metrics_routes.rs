//! Metric events in (`POST /api/v1/events`, and `/api/v1/metrics` for the
//! SDKs that call it) and per-flag totals out
//! (`GET /api/v1/flags/{key}/metrics?window=`).
//!
//! A batch is validated whole before any of it is recorded, so a 400 or a
//! 404 means nothing was counted; 202 means every event was recorded in
//! memory and reaches the database with the next flush.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::error::{ApiError, Json, Path, Query};
use super::AppState;
use crate::duration::HumanDuration;
use crate::error::Error;
use crate::iam::Caller;
use crate::metrics::{now_secs, EXPOSURE};
use crate::model::Role;

/// Events per request.
pub const MAX_BATCH: usize = 1000;
const MAX_KEY: usize = 128;
const MAX_NAME: usize = 128;
const MAX_EVENT_TYPE: usize = 64;
/// How far ahead of our clock a timestamp may be (clients' clocks drift).
const MAX_SKEW_SECS: i64 = 300;

struct Event {
    flag_key: String,
    variant: String,
    event_type: String,
    value: f64,
    at: i64,
}

pub async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    caller.require(Role::User)?;
    let items: Vec<(String, Map<String, Value>)> = match body {
        Value::Object(item) => vec![(String::new(), item)],
        Value::Array(items) => {
            if items.is_empty() || items.len() > MAX_BATCH {
                return Err(
                    Error::invalid("body", format!("must hold 1 to {MAX_BATCH} events")).into(),
                );
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(item) => Ok((format!("[{i}]."), item)),
                    _ => Err(Error::invalid(format!("[{i}]"), "expected an event object")),
                })
                .collect::<Result<_, _>>()?
        }
        _ => {
            return Err(
                Error::invalid("body", "expected an event object or an array of them").into(),
            )
        }
    };
    let now = now_secs();
    let oldest = now - i64::try_from(state.detector.retention().as_secs()).unwrap_or(i64::MAX / 2);
    let events = items
        .into_iter()
        .map(|(at, item)| parse_event(&at, item, now, oldest))
        .collect::<Result<Vec<_>, _>>()?;
    if !state.detector.accepts_unknown_flags() {
        let live = state.flags.live();
        if let Some((i, e)) = events
            .iter()
            .enumerate()
            .find(|(_, e)| live.snapshot.get(&e.flag_key).is_none())
        {
            let which = if events.len() > 1 {
                format!(" (event [{i}])")
            } else {
                String::new()
            };
            return Err(Error::NotFound(format!("flag {}{which}", e.flag_key)).into());
        }
    }
    for e in &events {
        state
            .metrics
            .record_at(&e.flag_key, &e.variant, &e.event_type, e.value, e.at);
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "accepted": events.len() })),
    )
        .into_response())
}

fn parse_event(
    at: &str,
    mut item: Map<String, Value>,
    now: i64,
    oldest: i64,
) -> Result<Event, Error> {
    let field = |name: &str| format!("{at}{name}");
    if let Some(unknown) = item.keys().find(|k| {
        !["flag_key", "variant", "event_type", "value", "timestamp"].contains(&k.as_str())
    }) {
        return Err(Error::invalid(field(unknown), "unknown field"));
    }
    let mut text = |name: &str, max: usize, ok: fn(char) -> bool| -> Result<String, Error> {
        match item.remove(name) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= max && s.chars().all(ok) => Ok(s),
            Some(Value::String(_)) => Err(Error::invalid(
                field(name),
                format!("must be 1 to {max} characters, no control characters"),
            )),
            Some(_) => Err(Error::invalid(field(name), "must be a string")),
            None => Err(Error::invalid(field(name), "is required")),
        }
    };
    let flag_key = text("flag_key", MAX_KEY, |c| {
        c.is_ascii_alphanumeric() || "-_.".contains(c)
    })
    .map_err(|e| match e {
        Error::Invalid { field, reason } if reason.starts_with("must be 1") => Error::Invalid {
            field,
            reason: "must be a flag key: 1 to 128 letters, digits, '-', '_' or '.'".into(),
        },
        other => other,
    })?;
    let variant = text("variant", MAX_NAME, |c| !c.is_control())?;
    let event_type = text("event_type", MAX_EVENT_TYPE, |c| !c.is_control())?;
    let value = match item.remove("value") {
        None | Some(Value::Null) => 1.0,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() && v.abs() <= 1e15 => v,
            _ => {
                return Err(Error::invalid(
                    field("value"),
                    "must be a number within ±1e15",
                ))
            }
        },
        Some(_) => return Err(Error::invalid(field("value"), "must be a number")),
    };
    let ts = match item.remove("timestamp") {
        None | Some(Value::Null) => now,
        Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(&s)
            .map(|t| t.timestamp())
            .map_err(|_| Error::invalid(field("timestamp"), "must be an RFC 3339 time"))?,
        Some(Value::Number(n)) => n
            .as_i64()
            .map(|ms| ms.div_euclid(1000))
            .ok_or_else(|| Error::invalid(field("timestamp"), "must be whole unix milliseconds"))?,
        Some(_) => {
            return Err(Error::invalid(
                field("timestamp"),
                "must be an RFC 3339 time or unix milliseconds",
            ))
        }
    };
    if ts < oldest {
        return Err(Error::invalid(
            field("timestamp"),
            "is older than the retention period (metrics.retention)",
        ));
    }
    if ts > now + MAX_SKEW_SECS {
        return Err(Error::invalid(field("timestamp"), "is in the future"));
    }
    Ok(Event {
        flag_key,
        variant,
        event_type,
        value,
        at: ts,
    })
}

/// `?window=5m` (default `anomaly.window`, at most `metrics.retention`):
/// per variant and event type, the count, the sum, the mean, the count per
/// exposure of that variant (`rate`) and per second.
pub async fn flag_metrics(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let window = window_of(&state, &query)?;
    let (totals, from) = state.detector.metrics(&caller, &key, window).await?;
    let exposures: HashMap<&str, u64> = totals
        .iter()
        .filter(|t| t.event_type == EXPOSURE)
        .map(|t| (t.variant.as_str(), t.count))
        .collect();
    let seconds = window.as_secs_f64();
    let mut variants: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for t in &totals {
        let rate = match (t.event_type.as_str(), exposures.get(t.variant.as_str())) {
            (EXPOSURE, _) | (_, None) | (_, Some(0)) => Value::Null,
            (_, Some(&n)) => json!(t.count as f64 / n as f64),
        };
        variants.entry(&t.variant).or_default().insert(
            t.event_type.clone(),
            json!({
                "count": t.count,
                "sum": t.sum,
                "mean": if t.count > 0 { json!(t.sum / t.count as f64) } else { Value::Null },
                "rate": rate,
                "per_second": t.count as f64 / seconds,
            }),
        );
    }
    Ok(axum::Json(json!({
        "flag_key": key,
        "window": HumanDuration(window).to_string(),
        "from": from,
        "variants": variants,
    }))
    .into_response())
}

/// `window` (default `anomaly.window`), from 1 s to `metrics.retention`.
fn window_of(state: &AppState, query: &HashMap<String, String>) -> Result<Duration, ApiError> {
    let window =
        duration_param(query, "window", "5m or 1h")?.unwrap_or(state.detector.default_window());
    if window < Duration::from_secs(1) || window > state.detector.retention() {
        return Err(Error::invalid(
            "window",
            "must be from 1s to the retention period (metrics.retention)",
        )
        .into());
    }
    Ok(window)
}

fn duration_param(
    query: &HashMap<String, String>,
    name: &str,
    example: &str,
) -> Result<Option<Duration>, ApiError> {
    query
        .get(name)
        .map(|text| {
            text.parse::<HumanDuration>().map(|d| d.get()).map_err(|_| {
                Error::invalid(name, format!("must be a duration such as {example}")).into()
            })
        })
        .transpose()
}

/// Most points one series answers: window / step may not exceed it.
const MAX_SERIES_STEPS: u64 = 1000;

/// `GET /api/v1/flags/{key}/metrics/series?window=1h&step=1m`: counts per
/// variant and event type in each step, for charts over time.
pub async fn flag_metrics_series(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let window = window_of(&state, &query)?;
    let step = duration_param(&query, "step", "10s or 1m")?
        .unwrap_or_else(|| Duration::from_secs((window.as_secs() / 60).max(1)));
    if step < Duration::from_secs(1) || step > window {
        return Err(Error::invalid("step", "must be from 1s to the window").into());
    }
    if window.as_secs() / step.as_secs() > MAX_SERIES_STEPS {
        return Err(Error::invalid(
            "step",
            format!("window / step may be at most {MAX_SERIES_STEPS}"),
        )
        .into());
    }
    let (points, from) = state
        .detector
        .metrics_series(&caller, &key, window, step)
        .await?;
    Ok(axum::Json(json!({
        "flag_key": key,
        "window": HumanDuration(window).to_string(),
        "step": HumanDuration(step).to_string(),
        "from": from,
        "points": points,
    }))
    .into_response())
}
