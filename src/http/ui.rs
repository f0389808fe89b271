//! The web console's assets under `/ui`: embedded in the binary at build time
//! (or read from `ui.dev_dir` while developing), with client-side routes
//! answered by `index.html` and strict security headers on every response.
//!
//! Only names of the asset set are ever served: a request path is split
//! into segments and refused outright when one is empty, `.`, `..`, or
//! carries a backslash or a NUL, so no spelling of a parent directory (plain,
//! percent-encoded or with backslashes) can leave it.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{ApiError, Path as UrlPath};
use super::AppState;
use crate::duration::HumanDuration;

/// The `ui:` configuration section.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// Serve the console from this directory instead of the assets embedded
    /// at build time (for working on the UI without rebuilding).
    pub dev_dir: Option<PathBuf>,
    /// How long a browser session lasts from login (fixed, not sliding).
    pub session_ttl: HumanDuration,
    /// Mark the session cookie `Secure`: set it when the console is reached
    /// over HTTPS through a proxy (Flagbase itself serves plain HTTP).
    pub secure_cookie: bool,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            dev_dir: None,
            session_ttl: HumanDuration::from_secs(12 * 3600),
            secure_cookie: false,
        }
    }
}

impl UiConfig {
    /// Rejects values that parse but cannot work.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let ttl = self.session_ttl.get();
        if ttl.is_zero() || ttl > std::time::Duration::from_secs(30 * 86_400) {
            return Err(("ui.session_ttl", "must be between 1s and 30d".into()));
        }
        if let Some(dir) = &self.dev_dir {
            if !dir.is_dir() {
                return Err((
                    "ui.dev_dir",
                    format!("{} is not a directory", dir.display()),
                ));
            }
        }
        Ok(())
    }
}

/// The assets as built into the binary. `debug-embed` embeds them in debug
/// builds too, so tests exercise exactly what ships; `build.rs` reruns when
/// anything under `ui/` changes, so an added file is picked up as well.
#[derive(rust_embed::Embed)]
#[folder = "ui/"]
struct Embedded;

/// Where assets come from.
#[derive(Clone, Debug, Default)]
pub struct Assets {
    /// Canonical path of `ui.dev_dir`, when serving from disk.
    dev_dir: Option<PathBuf>,
}

impl Assets {
    pub fn new(dev_dir: Option<&Path>) -> std::io::Result<Assets> {
        let dev_dir = dev_dir.map(std::fs::canonicalize).transpose()?;
        Ok(Assets { dev_dir })
    }

    /// The asset at `name` (already checked by `clean`) and its ETag.
    async fn load(&self, name: &str) -> Option<(Vec<u8>, String)> {
        match &self.dev_dir {
            None => {
                let file = Embedded::get(name)?;
                let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()));
                Some((file.data.into_owned(), etag))
            }
            Some(root) => {
                let path = tokio::fs::canonicalize(root.join(name)).await.ok()?;
                // A symbolic link inside the directory must not lead out of it.
                if !path.starts_with(root) || !path.is_file() {
                    return None;
                }
                let data = tokio::fs::read(&path).await.ok()?;
                let etag = format!("\"{}\"", hex(&Sha256::digest(&data)));
                Some((data, etag))
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The routes: `/` redirects to the console, `/ui/...` serves it.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(asset))
        .layer(axum::middleware::map_response(security_headers))
}

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// On every console response, errors and redirects included.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn index(State(state): State<AppState>, request: HeaderMap) -> Response {
    serve(&state.ui, "index.html", &request).await
}

async fn asset(
    State(state): State<AppState>,
    UrlPath(path): UrlPath<String>,
    request: HeaderMap,
) -> Response {
    let Some(name) = clean(&path) else {
        return not_found();
    };
    // A path whose last segment has no extension is a client-side route,
    // unless an asset has exactly that name.
    let client_route = !name.rsplit('/').next().unwrap_or("").contains('.');
    let response = serve(&state.ui, &name, &request).await;
    if response.status() == StatusCode::NOT_FOUND && client_route {
        return serve(&state.ui, "index.html", &request).await;
    }
    response
}

/// The path as a name in the asset set, or `None` when any segment could
/// point outside it. Empty segments (`a//b`, a trailing `/`) are refused
/// too, so one asset has exactly one URL.
fn clean(path: &str) -> Option<String> {
    if path.len() > 512 {
        return None;
    }
    for segment in path.split('/') {
        if segment.is_empty()
            || segment == "."
            || segment == ".."
            || segment.contains(['\\', '\0', ':'])
        {
            return None;
        }
    }
    Some(path.to_string())
}

async fn serve(assets: &Assets, name: &str, request: &HeaderMap) -> Response {
    let Some((data, etag)) = assets.load(name).await else {
        return not_found();
    };
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(data))
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    // Revalidated on every use, so a new binary's assets are never mixed
    // with a cached old one's.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such console asset").into_response()
}

fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map_or("", |(_, e)| e);
    match extension.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_segments_name_an_asset() {
        assert_eq!(clean("app.js").as_deref(), Some("app.js"));
        assert_eq!(clean("pages/flag.js").as_deref(), Some("pages/flag.js"));
        for bad in [
            "../Cargo.toml",
            "pages/../../x",
            "./app.js",
            "a//b",
            "pages/",
            "..\\x",
            "c:\\x",
            "a\0b",
        ] {
            assert_eq!(clean(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn session_ttl_and_dev_dir_are_checked() {
        let ok = UiConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        for ttl in ["0s", "31d"] {
            let c = UiConfig {
                session_ttl: ttl.parse().unwrap(),
                ..UiConfig::default()
            };
            assert_eq!(c.validate().unwrap_err().0, "ui.session_ttl", "{ttl}");
        }
        let c = UiConfig {
            dev_dir: Some("/no/such/directory".into()),
            ..UiConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "ui.dev_dir");
    }

    #[test]
    fn the_embedded_set_has_the_index() {
        assert!(Embedded::get("index.html").is_some());
    }
}
