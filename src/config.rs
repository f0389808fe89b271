//! The one validated `Config`, built from defaults, a YAML file, the
//! environment and command-line flags, in rising order of precedence.
//!
//! The set of valid keys is the shape of `Config::default()` serialised to
//! YAML, so a key exists in exactly one place (the struct) and the unknown-key
//! check, the `FLAGBASE_*` environment names and the defaults can never drift.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::duration::HumanDuration;

/// Every setting Flagbase reads. Library code receives it (or a part of it);
/// only the binary builds it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub iam: IamConfig,
    pub storage: StorageConfig,
    pub events: EventsConfig,
    pub stream: crate::stream::StreamConfig,
    pub log: LogConfig,
    pub functions: FunctionsConfig,
    pub metrics: MetricsConfig,
    pub anomaly: AnomalyConfig,
    pub gateway: GatewayConfig,
    pub ui: crate::http::UiConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub host: String,
    /// 0 picks a free port; the banner shows the one chosen.
    pub port: u16,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// How long shutdown waits for in-flight requests before giving up.
    pub shutdown_timeout: HumanDuration,
    /// How long a client has to send a complete request head, counted from
    /// when it connects (or sends the first byte of a later request).
    pub header_read_timeout: HumanDuration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: HumanDuration,
    /// Connections served at once; further ones are closed on arrival.
    pub max_connections: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub path: PathBuf,
    /// Read-only connections beside the single writer.
    pub readers: usize,
    pub busy_timeout: HumanDuration,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IamConfig {
    /// HS256 signing secret. When absent a random one is generated on first
    /// start and kept in the database.
    pub jwt_secret: Option<String>,
    pub token_ttl: HumanDuration,
    pub issuer: String,
    pub setup_token_ttl: HumanDuration,
    /// Failed logins allowed per account from one client address (IPv6: one
    /// /64) within `login_lockout` before 429.
    pub login_max_failures: u32,
    /// Failed logins allowed per client address within `login_lockout`.
    pub login_max_failures_per_ip: u32,
    pub login_lockout: HumanDuration,
    /// Anonymous registrations allowed per client address within
    /// `login_lockout` before 429.
    pub register_max_per_ip: u32,
    /// Password hashes computed at once; 0 means one per CPU core.
    pub hash_concurrency: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub base_path: PathBuf,
    /// Largest object accepted by the buckets API, in bytes.
    pub max_object_bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FunctionsConfig {
    /// Largest module accepted at upload, in bytes.
    pub max_module_bytes: u64,
    /// A function's timeout when it sets none.
    pub default_timeout: HumanDuration,
    /// The longest timeout a function may set.
    pub max_timeout: HumanDuration,
    /// A function's memory limit when it sets none, in bytes.
    pub default_memory_limit: u64,
    /// The largest memory limit a function may set, in bytes.
    pub max_memory_limit: u64,
    /// Largest response (stdout) a run may produce, in bytes.
    pub max_output_bytes: u64,
    /// WebAssembly stack per run, in bytes (deep recursion stops here).
    pub max_stack_bytes: u64,
    /// Runs at once, all functions together; beyond it callers get 503.
    pub max_concurrency: u32,
    /// Invocations kept per function for `/invocations`.
    pub invocation_log: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Address the embedded NATS-protocol bus listens on.
    pub host: String,
    /// 0 picks a free port; the banner shows the one chosen.
    pub nats_port: u16,
    /// Whether clients without a credential may connect (as role `user`).
    pub allow_anonymous: AllowAnonymous,
    /// Largest message payload a client may publish, in bytes.
    pub max_payload: u64,
    /// An external NATS server, `nats://host:port` (userinfo may carry a
    /// token or user:password); when set no embedded bus starts.
    pub url: Option<String>,
    /// The token Flagbase presents to the external server.
    pub token: Option<String>,
    /// The user and password Flagbase presents to the external server.
    pub user: Option<String>,
    pub password: Option<String>,
    /// Changes kept while the bus is unreachable; beyond it the oldest are
    /// dropped (counted and logged).
    pub queue_capacity: u64,
}

impl EventsConfig {
    /// The external NATS server to publish to, if one is configured
    /// (empty values count as unset, as an empty environment variable does).
    pub fn external(&self) -> Option<Result<crate::events::target::BusTarget, String>> {
        fn set(v: &Option<String>) -> Option<&str> {
            v.as_deref().filter(|s| !s.trim().is_empty())
        }
        let url = set(&self.url)?;
        Some(crate::events::target::BusTarget::external(
            url.trim(),
            set(&self.token),
            set(&self.user),
            set(&self.password),
        ))
    }
}

/// `events.allow_anonymous`: `auto` (the default) allows anonymous bus
/// clients only while the bus listens on a loopback address, where only
/// this machine can reach it; `true` and `false` decide outright.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllowAnonymous {
    Auto,
    Yes,
    No,
}

impl AllowAnonymous {
    /// Whether anonymous clients are admitted on a bus bound to `ip`.
    pub fn allows(self, ip: std::net::IpAddr) -> bool {
        match self {
            AllowAnonymous::Auto => ip.is_loopback(),
            AllowAnonymous::Yes => true,
            AllowAnonymous::No => false,
        }
    }
}

impl Serialize for AllowAnonymous {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            AllowAnonymous::Auto => "auto",
            AllowAnonymous::Yes => "true",
            AllowAnonymous::No => "false",
        })
    }
}

impl<'de> Deserialize<'de> for AllowAnonymous {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A YAML file gives a boolean; the environment and flags give text.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(AllowAnonymous::Yes),
            Raw::Bool(false) => Ok(AllowAnonymous::No),
            Raw::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                "auto" => Ok(AllowAnonymous::Auto),
                "true" => Ok(AllowAnonymous::Yes),
                "false" => Ok(AllowAnonymous::No),
                other => Err(serde::de::Error::custom(format!(
                    "unknown value {other:?} (use auto, true or false)"
                ))),
            },
        }
    }
}

/// The `/gateway` reverse proxy.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The sticky bucketing cookie given to anonymous visitors.
    pub cookie_name: String,
    /// Addresses or CIDR blocks (`10.0.0.0/8`) whose `X-Forwarded-*`
    /// headers are believed; everyone else's are replaced.
    pub trusted_proxies: Vec<String>,
    /// Largest request body proxied, in bytes (streamed, never buffered).
    pub max_body_bytes: u64,
    /// Serve bodyless proxied requests with the gateway's own HTTP/1 code
    /// (`src/gateway/h1.rs`) instead of hyper's; off sends every request
    /// through hyper.
    pub fast_path: bool,
    /// Routes created (or brought back to this definition) at start, as
    /// actor `config`.
    pub routes: Vec<crate::gateway::RouteSpec>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// debug, info, warn or error.
    pub level: String,
    /// pretty or json.
    pub format: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Width of the time buckets events are aggregated into.
    pub bucket: HumanDuration,
    /// How often recorded events are moved from memory to the database.
    pub flush_interval: HumanDuration,
    /// How long aggregated buckets are kept.
    pub retention: HumanDuration,
    /// Whether events may name flags that do not exist (otherwise 404).
    pub accept_unknown_flags: bool,
    /// Whether server-side evaluations count exposures (off only to
    /// measure what counting costs).
    pub count_exposures: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Whether the detector runs at all.
    pub enabled: bool,
    /// How often the detector looks at every guarded flag.
    pub interval: HumanDuration,
    /// The sliding window it looks at.
    pub window: HumanDuration,
    /// The default guard: more than this many `error` events in the window
    /// disable the flag (when exposures are too few for the comparison).
    pub max_errors: u64,
    /// Exposures each arm needs before the sequential comparison replaces
    /// the plain count.
    pub min_sample: u64,
    /// The sequential test's false-alarm bound per watched rollout.
    pub alpha: f64,
}

/// The secret every tutorial shows; refusing it keeps copies of tutorials safe.
pub const WELL_KNOWN_SECRET: &str = "change-me-in-production";

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig {
                host: "0.0.0.0".into(),
                port: 8080,
                max_body_bytes: 1024 * 1024,
                shutdown_timeout: HumanDuration::from_secs(30),
                header_read_timeout: HumanDuration::from_secs(10),
                idle_timeout: HumanDuration::from_secs(60),
                max_connections: 10_000,
            },
            database: DatabaseConfig {
                path: "flagbase.db".into(),
                readers: 4,
                busy_timeout: HumanDuration::from_secs(5),
            },
            iam: IamConfig {
                jwt_secret: None,
                token_ttl: HumanDuration::from_secs(24 * 3600),
                issuer: "flagbase".into(),
                setup_token_ttl: HumanDuration::from_secs(15 * 60),
                login_max_failures: 5,
                login_max_failures_per_ip: 50,
                login_lockout: HumanDuration::from_secs(15 * 60),
                register_max_per_ip: 20,
                hash_concurrency: 0,
            },
            storage: StorageConfig {
                base_path: "./data/storage".into(),
                max_object_bytes: 10 * 1024 * 1024,
            },
            events: EventsConfig {
                host: "127.0.0.1".into(),
                nats_port: 4222,
                allow_anonymous: AllowAnonymous::Auto,
                max_payload: 1024 * 1024,
                url: None,
                token: None,
                user: None,
                password: None,
                queue_capacity: 10_000,
            },
            stream: crate::stream::StreamConfig::default(),
            log: LogConfig {
                level: "info".into(),
                format: "pretty".into(),
            },
            functions: FunctionsConfig {
                max_module_bytes: 16 * 1024 * 1024,
                default_timeout: HumanDuration::from_secs(5),
                max_timeout: HumanDuration::from_secs(60),
                default_memory_limit: 64 * 1024 * 1024,
                max_memory_limit: 512 * 1024 * 1024,
                max_output_bytes: 4 * 1024 * 1024,
                max_stack_bytes: 512 * 1024,
                max_concurrency: 32,
                invocation_log: 100,
            },
            metrics: MetricsConfig {
                bucket: HumanDuration::from_secs(10),
                flush_interval: HumanDuration::from_secs(1),
                retention: HumanDuration::from_secs(7 * 24 * 3600),
                accept_unknown_flags: false,
                count_exposures: true,
            },
            anomaly: AnomalyConfig {
                enabled: true,
                interval: HumanDuration::from_secs(30),
                window: HumanDuration::from_secs(5 * 60),
                max_errors: 10,
                min_sample: 100,
                alpha: 0.01,
            },
            gateway: GatewayConfig {
                cookie_name: "fb_bucket".into(),
                trusted_proxies: Vec::new(),
                max_body_bytes: 1024 * 1024 * 1024,
                fast_path: true,
                routes: Vec::new(),
            },
            ui: crate::http::UiConfig::default(),
        }
    }
}

/// A configuration that cannot be used, with where the bad value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name, environment variable or flag that supplied the value.
    pub origin: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Where the layers above the defaults come from.
#[derive(Debug, Default)]
pub struct Sources<'a> {
    pub file: Option<&'a Path>,
    /// The process environment (passed in so tests need not touch the real one).
    pub env: Vec<(String, String)>,
    /// `(key path, value, flag name)` from the command line.
    pub flags: Vec<(String, String, String)>,
}

/// Environment variables that are not configuration keys but are ours.
const ENV_NOT_KEYS: &[&str] = &["FLAGBASE_CONFIG", "FLAGBASE_LOG"];

impl Config {
    /// Builds and validates the configuration from every layer.
    pub fn load(sources: &Sources<'_>) -> Result<Config, ConfigError> {
        Config::load_noting(sources).map(|(config, _)| config)
    }

    /// Like `load`, and also returns one note per `FLAGBASE_*` variable that
    /// was ignored, for the caller to log once logging is set up.
    ///
    /// Only a variable inside a known section (`FLAGBASE_SERVER_PROT`) must
    /// be a key: it can only be a typo. Others are left alone, because
    /// clients share the prefix (a CLI reads `FLAGBASE_SERVER` and
    /// `FLAGBASE_TOKEN`) and must not stop a server started in the same
    /// shell.
    pub fn load_noting(sources: &Sources<'_>) -> Result<(Config, Vec<String>), ConfigError> {
        let mut notes = Vec::new();
        let defaults = serde_yaml::to_value(Config::default()).expect("defaults serialise");
        let keys = leaf_keys(&defaults);
        let mut merged = defaults.clone();
        // key path -> who set it last, so errors can name the culprit.
        let mut origins: BTreeMap<String, String> = BTreeMap::new();

        if let Some(path) = sources.file {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                origin: origin.clone(),
                message: format!("cannot read config file: {e}"),
            })?;
            let file: Value = serde_yaml::from_str(&text).map_err(|e| ConfigError {
                origin: origin.clone(),
                message: format!("invalid YAML: {e}"),
            })?;
            match file {
                Value::Null => {}
                Value::Mapping(map) => {
                    overlay(&mut merged, &defaults, &map, "", &origin, &mut origins)?
                }
                _ => {
                    return Err(ConfigError {
                        origin,
                        message: "expected a mapping of sections such as `server:`".into(),
                    })
                }
            }
        }

        let env_names: BTreeMap<String, &String> = keys.iter().map(|k| (env_name(k), k)).collect();
        let section_prefixes: Vec<String> = defaults
            .as_mapping()
            .expect("defaults are a mapping")
            .keys()
            .filter_map(Value::as_str)
            .map(|section| format!("{}_", env_name(section)))
            .collect();
        for (name, value) in &sources.env {
            if !name.starts_with("FLAGBASE_") || ENV_NOT_KEYS.contains(&name.as_str()) {
                continue;
            }
            let Some(key) = env_names.get(name) else {
                let names: Vec<&str> = env_names.keys().map(String::as_str).collect();
                let hint = suggestion(name, &names);
                let in_section = section_prefixes
                    .iter()
                    .any(|p| name.len() > p.len() && name.starts_with(p.as_str()));
                if in_section {
                    return Err(ConfigError {
                        origin: "environment".into(),
                        message: format!("unknown variable {name}{hint}"),
                    });
                }
                // Outside a section a name is most likely someone else's
                // (FLAGBASE_SERVER is not a misspelt FLAGBASE_SERVER_HOST),
                // so only a near miss earns a hint.
                let near: Vec<&str> = names
                    .iter()
                    .copied()
                    .filter(|c| strsim::damerau_levenshtein(name, c) <= 2)
                    .collect();
                notes.push(format!(
                    "ignoring environment variable {name}: not a configuration key{}",
                    suggestion(name, &near)
                ));
                continue;
            };
            set_leaf(&mut merged, key, value, &defaults);
            origins.insert((*key).clone(), name.clone());
        }

        for (key, value, flag) in &sources.flags {
            if !keys.contains(key) {
                let names: Vec<&str> = keys.iter().map(String::as_str).collect();
                return Err(ConfigError {
                    origin: flag.clone(),
                    message: format!("unknown key {key}{}", suggestion(key, &names)),
                });
            }
            set_leaf(&mut merged, key, value, &defaults);
            origins.insert(key.clone(), flag.clone());
        }

        let origin_of = |key: &str| {
            origins
                .get(key)
                .cloned()
                .unwrap_or_else(|| "defaults".to_string())
        };
        let config: Config = serde_path_to_error::deserialize(merged).map_err(|e| {
            let key = e.path().to_string();
            ConfigError {
                origin: origin_of(&key),
                message: format!("{key}: {}", clean_serde_message(&e.inner().to_string())),
            }
        })?;
        config.validate().map_err(|(key, message)| ConfigError {
            origin: origin_of(key),
            message: format!("{key}: {message}"),
        })?;
        Ok((config, notes))
    }

    /// Rejects values that parse but cannot work.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.server.host.trim().is_empty() {
            return Err(("server.host", "must not be empty".into()));
        }
        if self.server.max_body_bytes == 0 {
            return Err(("server.max_body_bytes", "must be at least 1".into()));
        }
        for (key, d) in [
            (
                "server.header_read_timeout",
                self.server.header_read_timeout,
            ),
            ("server.idle_timeout", self.server.idle_timeout),
        ] {
            if d.get().is_zero() {
                return Err((key, "must be longer than 0".into()));
            }
            // Beyond a day a timeout no longer protects anything, and a
            // deadline that far out risks overflowing the timer.
            if d.get() > std::time::Duration::from_secs(24 * 3600) {
                return Err((key, "must be at most 24h".into()));
            }
        }
        if self.server.max_connections == 0 {
            return Err(("server.max_connections", "must be at least 1".into()));
        }
        self.validate_detector()?;
        self.ui.validate()?;
        if self.database.path.as_os_str().is_empty() {
            return Err(("database.path", "must not be empty".into()));
        }
        if !(1..=64).contains(&self.database.readers) {
            return Err(("database.readers", "must be between 1 and 64".into()));
        }
        if let Some(secret) = &self.iam.jwt_secret {
            if secret == WELL_KNOWN_SECRET {
                return Err((
                    "iam.jwt_secret",
                    "is the well-known example secret; set a random one of at least 32 bytes or remove the key to have one generated".into(),
                ));
            }
            if secret.len() < 32 {
                return Err((
                    "iam.jwt_secret",
                    format!("is {} bytes; at least 32 are required", secret.len()),
                ));
            }
        }
        for (key, d) in [
            ("iam.token_ttl", self.iam.token_ttl),
            ("iam.setup_token_ttl", self.iam.setup_token_ttl),
            ("iam.login_lockout", self.iam.login_lockout),
        ] {
            if d.get().is_zero() {
                return Err((key, "must be longer than 0".into()));
            }
        }
        if self.iam.issuer.trim().is_empty() {
            return Err(("iam.issuer", "must not be empty".into()));
        }
        if self.iam.login_max_failures == 0 || self.iam.login_max_failures_per_ip == 0 {
            return Err(("iam.login_max_failures", "must be at least 1".into()));
        }
        if self.iam.register_max_per_ip == 0 {
            return Err(("iam.register_max_per_ip", "must be at least 1".into()));
        }
        if self.storage.base_path.as_os_str().is_empty() {
            return Err(("storage.base_path", "must not be empty".into()));
        }
        if self.storage.max_object_bytes == 0 {
            return Err(("storage.max_object_bytes", "must be at least 1".into()));
        }
        let f = &self.functions;
        if f.max_timeout.get().is_zero()
            || f.max_timeout.get() > std::time::Duration::from_secs(3600)
        {
            return Err(("functions.max_timeout", "must be between 1ms and 1h".into()));
        }
        if f.default_timeout.get().is_zero() || f.default_timeout > f.max_timeout {
            return Err((
                "functions.default_timeout",
                "must be longer than 0 and at most functions.max_timeout".into(),
            ));
        }
        // The pool reserves address space per slot; 4 GiB is wasm32's reach.
        if !(64 * 1024..=4 * 1024 * 1024 * 1024).contains(&f.max_memory_limit) {
            return Err((
                "functions.max_memory_limit",
                "must be between 64KiB and 4GiB".into(),
            ));
        }
        if f.default_memory_limit < 64 * 1024 || f.default_memory_limit > f.max_memory_limit {
            return Err((
                "functions.default_memory_limit",
                "must be at least 64KiB and at most functions.max_memory_limit".into(),
            ));
        }
        if f.max_module_bytes == 0 || f.max_output_bytes == 0 {
            return Err((
                "functions.max_module_bytes",
                "sizes must be at least 1".into(),
            ));
        }
        if !(64 * 1024..=64 * 1024 * 1024).contains(&f.max_stack_bytes) {
            return Err((
                "functions.max_stack_bytes",
                "must be between 64KiB and 64MiB".into(),
            ));
        }
        if !(1..=10_000).contains(&f.max_concurrency) {
            return Err((
                "functions.max_concurrency",
                "must be between 1 and 10000".into(),
            ));
        }
        if !(1..=10_000).contains(&f.invocation_log) {
            return Err((
                "functions.invocation_log",
                "must be between 1 and 10000".into(),
            ));
        }
        if self.events.host.trim().is_empty() {
            return Err(("events.host", "must not be empty".into()));
        }
        // nats-server refuses a max_payload above 64 MiB for the same reason:
        // every client buffers whole messages.
        if !(1..=64 * 1024 * 1024).contains(&self.events.max_payload) {
            return Err((
                "events.max_payload",
                "must be between 1 and 67108864 (64 MiB)".into(),
            ));
        }
        match self.events.external() {
            Some(Err(reason)) => return Err(("events.url", reason)),
            Some(Ok(_)) => {}
            None => {
                for (key, value) in [
                    ("events.token", &self.events.token),
                    ("events.user", &self.events.user),
                    ("events.password", &self.events.password),
                ] {
                    if value.as_deref().is_some_and(|v| !v.trim().is_empty()) {
                        return Err((key, "only applies with events.url".into()));
                    }
                }
            }
        }
        if !(1..=1_000_000).contains(&self.events.queue_capacity) {
            return Err((
                "events.queue_capacity",
                "must be between 1 and 1000000".into(),
            ));
        }
        self.stream.validate()?;
        if let Err((key, message)) = crate::gateway::validate_config(&self.gateway) {
            return Err((key, message));
        }
        if !["debug", "info", "warn", "error"].contains(&self.log.level.as_str()) {
            return Err((
                "log.level",
                format!(
                    "unknown level {:?} (use debug, info, warn or error)",
                    self.log.level
                ),
            ));
        }
        if !["pretty", "json"].contains(&self.log.format.as_str()) {
            return Err((
                "log.format",
                format!("unknown format {:?} (use pretty or json)", self.log.format),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// The `metrics` and `anomaly` sections.
    fn validate_detector(&self) -> Result<(), (&'static str, String)> {
        let (m, a) = (&self.metrics, &self.anomaly);
        let second = std::time::Duration::from_secs(1);
        if m.bucket.get() < second || m.bucket.get().subsec_nanos() != 0 {
            return Err((
                "metrics.bucket",
                "must be whole seconds, at least 1s".into(),
            ));
        }
        if m.flush_interval.get().is_zero() {
            return Err(("metrics.flush_interval", "must be longer than 0".into()));
        }
        if m.retention.get() < a.window.get() {
            return Err((
                "metrics.retention",
                "must be at least anomaly.window".into(),
            ));
        }
        if a.interval.get().is_zero() {
            return Err(("anomaly.interval", "must be longer than 0".into()));
        }
        if a.window.get() < m.bucket.get() {
            return Err(("anomaly.window", "must be at least metrics.bucket".into()));
        }
        if a.min_sample == 0 {
            return Err(("anomaly.min_sample", "must be at least 1".into()));
        }
        if !(a.alpha > 0.0 && a.alpha < 0.5) {
            return Err(("anomaly.alpha", "must be between 0 and 0.5".into()));
        }
        Ok(())
    }
}

/// `server.port` -> `FLAGBASE_SERVER_PORT`.
pub fn env_name(key: &str) -> String {
    format!("FLAGBASE_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Dotted paths of every leaf in the defaults tree.
fn leaf_keys(value: &Value) -> Vec<String> {
    fn walk(value: &Value, prefix: &str, out: &mut Vec<String>) {
        match value {
            Value::Mapping(map) => {
                for (k, v) in map {
                    let name = k.as_str().unwrap_or_default();
                    let path = if prefix.is_empty() {
                        name.to_string()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    walk(v, &path, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out
}

/// Copies `file` over `target`, refusing keys the defaults do not have.
fn overlay(
    target: &mut Value,
    defaults: &Value,
    file: &Mapping,
    prefix: &str,
    origin: &str,
    origins: &mut BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let known = defaults.as_mapping().expect("overlay on a mapping");
    for (k, v) in file {
        let Some(name) = k.as_str() else {
            return Err(ConfigError {
                origin: origin.into(),
                message: format!("{prefix}: keys must be strings, found {k:?}"),
            });
        };
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        };
        let Some(default) = known.get(name) else {
            let siblings: Vec<String> = known
                .keys()
                .filter_map(|k| k.as_str())
                .map(|s| {
                    if prefix.is_empty() {
                        s.to_string()
                    } else {
                        format!("{prefix}.{s}")
                    }
                })
                .collect();
            let names: Vec<&str> = siblings.iter().map(String::as_str).collect();
            return Err(ConfigError {
                origin: origin.into(),
                message: format!("unknown key {path}{}", suggestion(&path, &names)),
            });
        };
        let slot = target
            .as_mapping_mut()
            .expect("target mirrors defaults")
            .get_mut(name)
            .expect("target mirrors defaults");
        match (default, v) {
            (Value::Mapping(_), Value::Mapping(inner)) => {
                overlay(slot, default, inner, &path, origin, origins)?
            }
            (Value::Mapping(_), Value::Null) => {}
            (Value::Mapping(_), other) => {
                return Err(ConfigError {
                    origin: origin.into(),
                    message: format!(
                        "{path}: expected a section of keys, found {}",
                        kind_of(other)
                    ),
                })
            }
            _ => {
                *slot = v.clone();
                origins.insert(path, origin.into());
            }
        }
    }
    Ok(())
}

/// Sets one leaf from text. Keys whose default is text (or absent text) take
/// the raw string, so a secret like `0123` is not read as a number; others
/// are read as a YAML scalar so `9090` or `true` get their natural type.
fn set_leaf(target: &mut Value, key: &str, raw: &str, defaults: &Value) {
    let mut default = defaults;
    let mut slot = target;
    for part in key.split('.') {
        default = &default[part];
        slot = slot
            .as_mapping_mut()
            .expect("leaf keys come from the defaults")
            .get_mut(part)
            .expect("leaf keys come from the defaults");
    }
    *slot = match default {
        Value::String(_) | Value::Null => Value::String(raw.to_string()),
        _ => serde_yaml::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string())),
    };
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a section",
        Value::Tagged(_) => "a tagged value",
    }
}

/// ` (did you mean X?)` when one candidate is close enough to be a typo.
fn suggestion(wrong: &str, candidates: &[&str]) -> String {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(wrong, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min()
        .map(|(_, c)| format!(" (did you mean {c}?)"))
        .unwrap_or_default()
}

/// serde_yaml appends positions of the merged tree, which mean nothing to the
/// user; the key path we add says where instead.
fn clean_serde_message(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_yaml(yaml: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        Config::load(&Sources {
            file: Some(&path),
            ..Default::default()
        })
        .map_err(|mut e| {
            e.origin = "config.yaml".into();
            e
        })
    }

    /// What users rely on when they start with no file, no variables and
    /// no flags (README, Quick start).
    #[test]
    fn with_no_configuration_users_get_what_the_readme_promises() {
        let secs = std::time::Duration::from_secs;
        let c = Config::load(&Sources::default()).unwrap();
        assert_eq!(c.server.host, "0.0.0.0");
        assert_eq!(c.server.port, 8080);
        // Relative, so the database lands in the working directory.
        assert_eq!(c.database.path, Path::new("flagbase.db"));
        assert_eq!(c.storage.base_path, Path::new("./data/storage"));
        assert_eq!(c.events.nats_port, 4222);
        assert_eq!(c.events.host, "127.0.0.1");
        assert_eq!(c.events.allow_anonymous, AllowAnonymous::Auto);
        assert_eq!(c.events.max_payload, 1024 * 1024);
        assert_eq!(
            (c.log.level.as_str(), c.log.format.as_str()),
            ("info", "pretty")
        );
        assert_eq!(c.iam.jwt_secret, None, "generated on first start");
        assert_eq!(c.iam.token_ttl.get(), secs(24 * 3600));
        assert_eq!(c.server.max_body_bytes, 1024 * 1024);
        assert_eq!(c.server.shutdown_timeout.get(), secs(30));
        assert_eq!(c.server.header_read_timeout.get(), secs(10));
        assert_eq!(c.server.idle_timeout.get(), secs(60));
        assert_eq!(c.server.max_connections, 10_000);
    }

    #[test]
    fn connection_limits_are_validated() {
        for (yaml, want) in [
            (
                "server:\n  header_read_timeout: 0s\n",
                "server.header_read_timeout: must be longer than 0",
            ),
            (
                "server:\n  idle_timeout: 0s\n",
                "server.idle_timeout: must be longer than 0",
            ),
            (
                "server:\n  idle_timeout: 25h\n",
                "server.idle_timeout: must be at most 24h",
            ),
            (
                "server:\n  max_connections: 0\n",
                "server.max_connections: must be at least 1",
            ),
        ] {
            let e = load_yaml(yaml).unwrap_err();
            assert_eq!(e.to_string(), format!("config.yaml: {want}"));
        }
        let e = load_yaml("server:\n  max_connections: -1\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config.yaml: server.max_connections:"),
            "{e}"
        );
    }

    #[test]
    fn regression_client_variables_sharing_the_prefix_do_not_stop_the_server() {
        let env = |pairs: &[(&str, &str)]| Sources {
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let (c, notes) = Config::load_noting(&env(&[
            ("FLAGBASE_TOKEN", "fbk_x"),
            // A sibling of the server section's prefix, but no key in it.
            ("FLAGBASE_SERVER", "http://flags.example.com"),
            ("FLAGBASE_SERVER_PORT", "9000"),
            ("FLAGBASE_SERVR_PORT", "1"),
        ]))
        .unwrap();
        assert_eq!(c.server.port, 9000);
        assert_eq!(
            notes,
            [
                "ignoring environment variable FLAGBASE_TOKEN: not a configuration key",
                "ignoring environment variable FLAGBASE_SERVER: not a configuration key",
                "ignoring environment variable FLAGBASE_SERVR_PORT: not a configuration key (did you mean FLAGBASE_SERVER_PORT?)",
            ]
        );
        // Inside a known section, an unknown name can only be a typo.
        let e = Config::load_noting(&env(&[("FLAGBASE_SERVER_PROT", "1")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment: unknown variable FLAGBASE_SERVER_PROT (did you mean FLAGBASE_SERVER_PORT?)"
        );
        for name in [
            "FLAGBASE_LOG_COLOUR",
            "FLAGBASE_IAM_TOKEN",
            "FLAGBASE_DATABASE_X",
        ] {
            let e = Config::load_noting(&env(&[(name, "1")])).unwrap_err();
            let want = format!("environment: unknown variable {name}");
            assert!(e.to_string().starts_with(&want), "{e}");
        }
        // Ours but not keys: neither an error nor a note.
        let (_, notes) =
            Config::load_noting(&env(&[("FLAGBASE_LOG", "debug"), ("FLAGBASE_CONFIG", "")]))
                .unwrap();
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn unknown_key_names_the_path_and_a_suggestion() {
        let e = load_yaml("server:\n  prot: 9090\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.yaml: unknown key server.prot (did you mean server.port?)"
        );
        let e = load_yaml("sever:\n  port: 9090\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.yaml: unknown key sever (did you mean server?)"
        );
    }

    #[test]
    fn wrong_types_name_the_key() {
        let e = load_yaml("server:\n  port: eighty\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config.yaml: server.port: invalid type"),
            "{e}"
        );
        let e = load_yaml("server:\n  port: 70000\n").unwrap_err();
        assert!(
            e.to_string().starts_with("config.yaml: server.port:"),
            "{e}"
        );
        let e = load_yaml("iam:\n  token_ttl: 5 minutes\n").unwrap_err();
        assert!(
            e.to_string().contains("iam.token_ttl: invalid duration"),
            "{e}"
        );
        let e = load_yaml("server: 3\n").unwrap_err();
        assert!(e.to_string().contains("server: expected a section"), "{e}");
    }

    #[test]
    fn env_beats_file_and_flags_beat_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "server:\n  port: 7000\n  host: 127.0.0.1\n").unwrap();
        let env = vec![("FLAGBASE_SERVER_PORT".to_string(), "8000".to_string())];
        let c = Config::load(&Sources {
            file: Some(&path),
            env: env.clone(),
            flags: vec![],
        })
        .unwrap();
        assert_eq!((c.server.port, c.server.host.as_str()), (8000, "127.0.0.1"));
        let c = Config::load(&Sources {
            file: Some(&path),
            env,
            flags: vec![("server.port".into(), "9000".into(), "--port".into())],
        })
        .unwrap();
        assert_eq!(c.server.port, 9000);
    }

    #[test]
    fn env_errors_name_the_variable() {
        let e = Config::load(&Sources {
            env: vec![("FLAGBASE_SERVER_PROT".into(), "1".into())],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment: unknown variable FLAGBASE_SERVER_PROT (did you mean FLAGBASE_SERVER_PORT?)"
        );
        let e = Config::load(&Sources {
            env: vec![("FLAGBASE_IAM_TOKEN_TTL".into(), "soon".into())],
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("FLAGBASE_IAM_TOKEN_TTL: iam.token_ttl: invalid duration"),
            "{e}"
        );
    }

    #[test]
    fn weak_secrets_are_refused() {
        let e = load_yaml("iam:\n  jwt_secret: change-me-in-production\n").unwrap_err();
        assert!(e.to_string().contains("well-known"), "{e}");
        let e = load_yaml("iam:\n  jwt_secret: short\n").unwrap_err();
        assert!(e.to_string().contains("at least 32"), "{e}");
        // Secrets that look like numbers stay text.
        let c = Config::load(&Sources {
            env: vec![("FLAGBASE_IAM_JWT_SECRET".into(), "0".repeat(40))],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.iam.jwt_secret.as_deref(), Some("0".repeat(40).as_str()));
    }

    #[test]
    fn events_allow_anonymous_reads_booleans_and_auto_from_every_layer() {
        let c = load_yaml("events:\n  allow_anonymous: false\n").unwrap();
        assert_eq!(c.events.allow_anonymous, AllowAnonymous::No);
        let c = load_yaml("events:\n  allow_anonymous: auto\n").unwrap();
        assert_eq!(c.events.allow_anonymous, AllowAnonymous::Auto);
        let c = Config::load(&Sources {
            env: vec![("FLAGBASE_EVENTS_ALLOW_ANONYMOUS".into(), "true".into())],
            ..Sources::default()
        })
        .unwrap();
        assert_eq!(c.events.allow_anonymous, AllowAnonymous::Yes);
        let e = load_yaml("events:\n  allow_anonymous: maybe\n").unwrap_err();
        assert!(e.message.contains("events.allow_anonymous"), "{e}");
        let e = load_yaml("events:\n  max_payload: 0\n").unwrap_err();
        assert!(e.message.contains("events.max_payload"), "{e}");
    }

    #[test]
    fn events_url_takes_credentials_from_the_url_or_keys_never_both() {
        let c = load_yaml("events:\n  url: nats://s3cret@nats.internal:4333\n").unwrap();
        let target = c.events.external().unwrap().unwrap();
        assert_eq!(target.address, "nats://nats.internal:4333");
        assert!(!target.display().contains("s3cret"));
        let c = load_yaml(
            "events:\n  url: nats://nats.internal\n  user: fb\n  password: pw\n  queue_capacity: 5\n",
        )
        .unwrap();
        assert_eq!(c.events.queue_capacity, 5);
        assert!(c.events.external().unwrap().is_ok());
        for (yaml, key) in [
            ("events:\n  url: http://x:1\n", "events.url"),
            ("events:\n  url: nats://t@x:1\n  token: t2\n", "events.url"),
            ("events:\n  url: nats://x:1\n  user: fb\n", "events.url"),
            ("events:\n  token: abc\n", "events.token"),
            ("events:\n  queue_capacity: 0\n", "events.queue_capacity"),
        ] {
            let e = load_yaml(yaml).unwrap_err();
            assert!(e.message.starts_with(key), "{yaml}: {e}");
            assert!(
                !e.message.contains("t2") && !e.message.contains("abc"),
                "{e}"
            );
        }
        // An empty variable is no URL: the embedded bus starts.
        let c = Config::load(&Sources {
            env: vec![("FLAGBASE_EVENTS_URL".into(), "".into())],
            ..Default::default()
        })
        .unwrap();
        assert!(c.events.external().is_none());
        assert!(AllowAnonymous::Auto.allows("127.0.0.1".parse().unwrap()));
        assert!(!AllowAnonymous::Auto.allows("0.0.0.0".parse().unwrap()));
    }
}
