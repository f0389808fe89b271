//! The remote client: every call is one request to the Flagbase REST API.

use std::time::Duration;

use flagbase_engine::Context;
use reqwest::{Method, RequestBuilder, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// Requests that take longer than this fail (the stream has its own rules).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One evaluation, as `POST /api/v1/evaluate` returns it (and as the local
/// client produces it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The flag key.
    pub key: String,
    /// The served value (`null` on error).
    pub value: Value,
    /// The variant key, when the value came from a named variant.
    pub variant: Option<String>,
    /// `STATIC`, `TARGETING_MATCH`, `SPLIT`, `DISABLED`, `DEFAULT` or `ERROR`.
    pub reason: String,
    /// Set when `reason` is `ERROR` (e.g. `FLAG_NOT_FOUND`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

/// A client of the Flagbase REST API, cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// A client for the server at `base_url` (e.g. `http://localhost:8080`)
    /// using `token` (an `fbk_...` API token or a session JWT).
    pub fn new(base_url: &str, token: &str) -> Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| Error::Invalid(format!("HTTP client: {e}")))?;
        Client::with_http(http, base_url, token)
    }

    pub(crate) fn with_http(http: reqwest::Client, base_url: &str, token: &str) -> Result<Client> {
        let base = base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Invalid(format!(
                "base URL {base_url:?}: expected http:// or https://"
            )));
        }
        if token.is_empty() || token.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(Error::Invalid("token".into()));
        }
        Ok(Client {
            http,
            base: base.to_string(),
            token: token.to_string(),
        })
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// The value of boolean flag `key` for the caller itself (a person's
    /// session evaluates for that person; a token for an empty context).
    /// A non-boolean flag is an `Invalid` error.
    pub async fn evaluate_flag(&self, key: &str) -> Result<bool> {
        let path = format!("/api/v1/flags/{}/evaluate", path_segment(key)?);
        let eval: Evaluation = json_of(self.request(Method::GET, &path).send().await?).await?;
        eval.value
            .as_bool()
            .ok_or_else(|| Error::Invalid(format!("flag {key} is not boolean")))
    }

    /// Evaluates `key` for `ctx`. An unknown flag is not an error here: the
    /// evaluation says `ERROR` / `FLAG_NOT_FOUND`, as OpenFeature expects.
    pub async fn evaluate(&self, key: &str, ctx: &Context) -> Result<Evaluation> {
        let mut all = self.evaluate_keys(Some(&[key]), ctx).await?;
        if all.len() != 1 {
            return Err(Error::Decode(format!(
                "asked for one flag, got {}",
                all.len()
            )));
        }
        Ok(all.remove(0))
    }

    /// Evaluates every flag for `ctx`.
    pub async fn evaluate_all(&self, ctx: &Context) -> Result<Vec<Evaluation>> {
        self.evaluate_keys(None, ctx).await
    }

    async fn evaluate_keys(&self, keys: Option<&[&str]>, ctx: &Context) -> Result<Vec<Evaluation>> {
        #[derive(Deserialize)]
        struct Many {
            flags: Vec<Evaluation>,
        }
        let mut body = json!({ "context": ctx });
        if let Some(keys) = keys {
            body["keys"] = json!(keys);
        }
        let resp = self
            .request(Method::POST, "/api/v1/evaluate")
            .json(&body)
            .send()
            .await?;
        Ok(json_of::<Many>(resp).await?.flags)
    }

    /// Records one metric event (`POST /api/v1/events`): an `error`,
    /// `latency_ms`, `conversion`, ... for `variant` of `flag_key`; `value`
    /// defaults to 1 (a plain count) on the server.
    pub async fn record_event(
        &self,
        flag_key: &str,
        variant: &str,
        event_type: &str,
        value: Option<f64>,
    ) -> Result<()> {
        let mut body = json!({"flag_key": flag_key, "variant": variant, "event_type": event_type});
        if let Some(v) = value {
            body["value"] = json!(v);
        }
        let resp = self
            .request(Method::POST, "/api/v1/events")
            .json(&body)
            .send()
            .await?;
        check(resp).await.map(drop)
    }
}

/// Flag keys are ASCII letters, digits, `-`, `_`, `.` (the engine's rule),
/// so a valid key needs no escaping; anything else is refused here rather
/// than sent somewhere unexpected.
fn path_segment(key: &str) -> Result<&str> {
    if flagbase_engine::is_valid_key(key) {
        Ok(key)
    } else {
        Err(Error::Invalid(format!("flag key {key:?}")))
    }
}

/// The response when its status is a success, else its error body as
/// [`Error::Api`].
pub(crate) async fn check(resp: Response) -> Result<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    #[derive(Deserialize)]
    struct Body {
        error: String,
        code: String,
    }
    let (code, message) = match resp.json::<Body>().await {
        Ok(b) => (b.code, b.error),
        Err(_) => (
            "UNKNOWN".to_string(),
            status.canonical_reason().unwrap_or("").to_string(),
        ),
    };
    Err(Error::Api {
        status: status.as_u16(),
        code,
        message,
    })
}

pub(crate) async fn json_of<T: serde::de::DeserializeOwned>(resp: Response) -> Result<T> {
    Ok(check(resp).await?.json().await?)
}
