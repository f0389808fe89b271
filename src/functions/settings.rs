//! A function's settings: what `PATCH /api/v1/functions/{name}` changes,
//! checked against the server's caps.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::FunctionsConfig;
use crate::duration::HumanDuration;
use crate::error::{Error, Result};
use crate::objects::BucketName;

const MAX_ENV: usize = 64;
const MAX_ENV_VALUE: usize = 4096;
const MAX_BUCKETS: usize = 16;
/// Variable names a function's `env` cannot set: the request's and ours.
const RESERVED: [&str; 11] = [
    "GATEWAY_INTERFACE",
    "SERVER_PROTOCOL",
    "SERVER_SOFTWARE",
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "X_MATCHED_ROUTE",
    "PATH_TRANSLATED",
];

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    pub timeout: HumanDuration,
    /// Bytes.
    pub memory_limit: u64,
    pub flag_key: Option<String>,
    pub env: BTreeMap<String, String>,
    /// Buckets the module may read and write through `bucket_get`/`bucket_put`.
    pub buckets: Vec<String>,
}

impl Settings {
    pub fn defaults(config: &FunctionsConfig) -> Settings {
        Settings {
            timeout: config.default_timeout,
            memory_limit: config.default_memory_limit,
            flag_key: None,
            env: BTreeMap::new(),
            buckets: Vec::new(),
        }
    }

    /// Stored settings; a field a older record lacks takes its default.
    pub fn from_stored(value: &Value, config: &FunctionsConfig) -> Settings {
        let mut settings = Settings::defaults(config);
        if let Ok(patched) = settings.patched(value, config) {
            settings = patched;
        }
        settings
    }

    pub fn timeout(&self) -> Duration {
        self.timeout.get()
    }

    /// These settings with a PATCH body applied (absent fields unchanged,
    /// `null` resets `flag_key`).
    pub fn patched(&self, patch: &Value, config: &FunctionsConfig) -> Result<Settings> {
        let Value::Object(fields) = patch else {
            return Err(Error::invalid("body", "expected a JSON object"));
        };
        let mut next = self.clone();
        for (field, value) in fields {
            match field.as_str() {
                "timeout" => {
                    let text = value.as_str().ok_or_else(|| {
                        Error::invalid("timeout", "expected a duration such as \"1s\" or \"250ms\"")
                    })?;
                    let d: HumanDuration =
                        text.parse().map_err(|e| Error::invalid("timeout", e))?;
                    if d.get().is_zero() || d > config.max_timeout {
                        return Err(Error::invalid(
                            "timeout",
                            format!(
                                "must be longer than 0 and at most {} (functions.max_timeout)",
                                crate::duration::HumanDuration(config.max_timeout.get())
                            ),
                        ));
                    }
                    next.timeout = d;
                }
                "memory_limit" => {
                    let bytes = parse_bytes(value).ok_or_else(|| {
                        Error::invalid(
                            "memory_limit",
                            "expected bytes, or a size such as \"64MiB\"",
                        )
                    })?;
                    if bytes < 64 * 1024 || bytes > config.max_memory_limit {
                        return Err(Error::invalid(
                            "memory_limit",
                            format!("must be at least 64KiB and at most {} bytes (functions.max_memory_limit)", config.max_memory_limit),
                        ));
                    }
                    next.memory_limit = bytes;
                }
                "flag_key" => {
                    next.flag_key = match value {
                        Value::Null => None,
                        Value::String(key) if flagbase_engine::is_valid_key(key) => {
                            Some(key.clone())
                        }
                        _ => return Err(Error::invalid("flag_key", "expected a flag key or null")),
                    }
                }
                "env" => {
                    let Value::Object(vars) = value else {
                        return Err(Error::invalid("env", "expected an object of strings"));
                    };
                    if vars.len() > MAX_ENV {
                        return Err(Error::invalid(
                            "env",
                            format!("at most {MAX_ENV} variables"),
                        ));
                    }
                    let mut env = BTreeMap::new();
                    for (name, value) in vars {
                        check_env_name(name)?;
                        let Some(value) = value
                            .as_str()
                            .filter(|v| v.len() <= MAX_ENV_VALUE && !v.contains('\0'))
                        else {
                            return Err(Error::invalid(
                                "env",
                                format!(
                                    "{name}: expected a string of at most {MAX_ENV_VALUE} bytes"
                                ),
                            ));
                        };
                        env.insert(name.clone(), value.to_string());
                    }
                    next.env = env;
                }
                "buckets" => {
                    let Some(list) = value.as_array().filter(|l| l.len() <= MAX_BUCKETS) else {
                        return Err(Error::invalid(
                            "buckets",
                            format!("expected a list of at most {MAX_BUCKETS} bucket names"),
                        ));
                    };
                    let mut buckets = Vec::new();
                    for name in list {
                        let name = name
                            .as_str()
                            .ok_or_else(|| Error::invalid("buckets", "expected bucket names"))?;
                        buckets.push(BucketName::parse(name)?.as_str().to_string());
                    }
                    next.buckets = buckets;
                }
                other => {
                    return Err(Error::invalid(
                        other,
                        "unknown setting (use timeout, memory_limit, flag_key, env, buckets)",
                    ))
                }
            }
        }
        Ok(next)
    }
}

fn check_env_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !valid {
        return Err(Error::invalid(
            "env",
            format!("{name:?}: names are upper-case letters, digits and '_'"),
        ));
    }
    if RESERVED.contains(&name) || name.starts_with("HTTP_") || name.starts_with("FLAGBASE_") {
        return Err(Error::invalid(
            "env",
            format!("{name} is set by the request and cannot be configured"),
        ));
    }
    Ok(())
}

/// `67108864`, `"64MiB"`, `"512KiB"`, `"1GiB"`, `"10MB"`.
pub fn parse_bytes(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let text = value.as_str()?.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number: u64 = text[..split].parse().ok()?;
    let unit: u64 = match text[split..].trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_and_limits() {
        assert_eq!(parse_bytes(&json!("64MiB")), Some(64 << 20));
        assert_eq!(parse_bytes(&json!(1024)), Some(1024));
        assert_eq!(parse_bytes(&json!("12 parsecs")), None);
        let config = crate::config::Config::default().functions;
        let s = Settings::defaults(&config);
        assert!(s.patched(&json!({"timeout": "2h"}), &config).is_err());
        assert!(s
            .patched(&json!({"memory_limit": "8GiB"}), &config)
            .is_err());
        assert!(s
            .patched(&json!({"env": {"PATH_INFO": "/x"}}), &config)
            .is_err());
        assert!(s.patched(&json!({"buckets": ["../x"]}), &config).is_err());
        let ok = s
            .patched(&json!({"timeout": "250ms", "memory_limit": "1MiB", "flag_key": "f", "env": {"GREETING": "hi"}}), &config)
            .unwrap();
        assert_eq!(ok.timeout(), Duration::from_millis(250));
        assert_eq!(ok.memory_limit, 1 << 20);
        assert_eq!(
            Settings::from_stored(&serde_json::to_value(&ok).unwrap(), &config),
            ok
        );
    }
}
