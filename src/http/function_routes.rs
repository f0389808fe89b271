//! The functions API: deploy (`PUT` raw wasm, `POST` multipart), versions,
//! activation, settings, deletion, the invocation log, and invocation at
//! `ANY /functions/{name}[/{path...}]` and `POST /api/v1/functions/{name}/invoke`.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::bucket_routes::read_body;
use super::error::{ApiError, Json, Path};
use super::AppState;
use crate::error::Error;
use crate::functions::Call;
use crate::iam::Caller;

fn deployed(version: crate::storage::functions::FunctionVersion) -> Response {
    (StatusCode::CREATED, axum::Json(version)).into_response()
}

/// `PUT /api/v1/functions/{name}` with the module as the body.
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !(content_type.is_empty()
        || content_type.starts_with("application/wasm")
        || content_type.starts_with("application/octet-stream"))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected the module as the body with Content-Type: application/wasm",
        ));
    }
    let wasm = read_body(request.into_body(), state.max_module_bytes).await?;
    Ok(deployed(
        state.functions.deploy(&caller, &name, wasm).await?,
    ))
}

/// `POST /api/v1/functions` with multipart fields `name` and `module`.
pub async fn post_multipart(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    let boundary = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(multipart_boundary)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: multipart/form-data with fields name and module",
            )
        })?;
    let body = read_body(request.into_body(), state.max_module_bytes + 64 * 1024).await?;
    let parts = parse_multipart(&body, &boundary).map_err(|why| Error::invalid("body", why))?;
    let mut name = None;
    let mut module = None;
    for (field, data) in parts {
        match field.as_str() {
            "name" => {
                name = Some(
                    String::from_utf8(data).map_err(|_| Error::invalid("name", "is not UTF-8"))?,
                )
            }
            "module" => module = Some(data),
            _ => {}
        }
    }
    let name = name.ok_or_else(|| Error::invalid("name", "the multipart field is missing"))?;
    let module =
        module.ok_or_else(|| Error::invalid("module", "the multipart field is missing"))?;
    if module.len() > state.max_module_bytes {
        return Err(super::error::payload_too_large());
    }
    Ok(deployed(
        state.functions.deploy(&caller, name.trim(), module).await?,
    ))
}

fn multipart_boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params
        .split(';')
        .find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            (k.trim().eq_ignore_ascii_case("boundary"))
                .then(|| v.trim().trim_matches('"').to_string())
        })
        .filter(|b| !b.is_empty() && b.len() <= 200)
}

/// The (field name, content) of each part of a multipart/form-data body.
fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let delimiter = format!("--{boundary}").into_bytes();
    let find = |hay: &[u8], needle: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut parts = Vec::new();
    let mut at =
        find(body, &delimiter, 0).ok_or("no multipart boundary in the body")? + delimiter.len();
    loop {
        if body[at..].starts_with(b"--") {
            return Ok(parts);
        }
        let head_start = at
            + if body[at..].starts_with(b"\r\n") {
                2
            } else {
                return Err("malformed multipart body".into());
            };
        let head_end = find(body, b"\r\n\r\n", head_start).ok_or("malformed multipart part")?;
        let head = std::str::from_utf8(&body[head_start..head_end])
            .map_err(|_| "malformed multipart headers")?;
        let mut closing = b"\r\n".to_vec();
        closing.extend_from_slice(&delimiter);
        let end = find(body, &closing, head_end + 4).ok_or("unterminated multipart part")?;
        let name = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .and_then(|l| {
                l.split(';').find_map(|p| {
                    p.trim()
                        .strip_prefix("name=")
                        .map(|n| n.trim_matches('"').to_string())
                })
            })
            .ok_or("a multipart part has no name")?;
        parts.push((name, body[head_end + 4..end].to_vec()));
        if parts.len() > 16 {
            return Err("too many multipart parts".into());
        }
        at = end + closing.len();
    }
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    Ok(axum::Json(json!({ "functions": state.functions.list(&caller).await? })).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(state.functions.get(&caller, &name).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activate {
    version: u32,
}

pub async fn activate(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<Activate>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(
        state
            .functions
            .activate(&caller, &name, body.version)
            .await?,
    )
    .into_response())
}

pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(
        state
            .functions
            .update_settings(&caller, &name, body)
            .await?,
    )
    .into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.functions.delete(&caller, &name).await?;
    state.triggers.forget_function(&name);
    Ok(StatusCode::NO_CONTENT)
}

pub async fn invocations(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(
        axum::Json(json!({ "invocations": state.functions.invocations(&caller, &name)? }))
            .into_response(),
    )
}

pub async fn create_trigger(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    let record = state.triggers.create(&caller, &name, body).await?;
    Ok((StatusCode::CREATED, axum::Json(record)).into_response())
}

pub async fn list_triggers(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let triggers = state.triggers.list(&caller, &name).await?;
    Ok(axum::Json(json!({ "triggers": triggers })).into_response())
}

pub async fn delete_trigger(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.triggers.delete(&caller, &name, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `ANY /functions/{name}`.
pub async fn invoke_root(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    invoke(state, caller, name, String::new(), request).await
}

/// `ANY /functions/{name}/{*path}`.
pub async fn invoke_path(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, path)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    invoke(state, caller, name, format!("/{path}"), request).await
}

/// `POST /api/v1/functions/{name}/invoke`: the body is stdin.
pub async fn invoke_api(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    invoke(state, caller, name, String::new(), request).await
}

async fn invoke(
    state: AppState,
    caller: Caller,
    name: String,
    path_info: String,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let body = read_body(body, state.max_body_bytes).await?;
    let headers = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let call = Call {
        method: parts.method.as_str().to_string(),
        path_info,
        query: parts.uri.query().unwrap_or("").to_string(),
        headers,
        body,
    };
    let reply = state.functions.invoke(&caller, &name, call).await?;
    Ok(reply.into_http())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_fields_are_read() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"module\"; filename=\"m.wasm\"\r\nContent-Type: application/wasm\r\n\r\n\0asm\r\n--XyZ--\r\n";
        let parts = parse_multipart(body, "XyZ").unwrap();
        assert_eq!(
            parts,
            [
                ("name".to_string(), b"hello".to_vec()),
                ("module".to_string(), b"\0asm".to_vec())
            ]
        );
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=\"XyZ\"").as_deref(),
            Some("XyZ")
        );
        assert!(parse_multipart(b"garbage", "XyZ").is_err());
    }
}
