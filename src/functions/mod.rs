//! The functions service: deploys WebAssembly modules as versioned
//! functions, keeps the active version of each compiled and ready, and
//! invokes them CGI-style with the caller's identity, under the function's
//! limits and the server's concurrency cap, recording each run.
//!
//! Module bytes live in bucket storage (`_functions/modules/<sha256>.wasm`,
//! content-addressed, so a version's bytes never change); compiled
//! artifacts in the runtime's cache; records in the `FunctionStore`.
//! Changes are serialised by one lock held across "commit, then update the
//! in-memory active table", run to completion even if the client leaves.

pub mod cgi;
mod host;
pub mod runtime;
pub mod settings;
pub mod triggers;
mod wasi;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use flagbase_engine::Context;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{OnceCell, Semaphore};

use crate::config::FunctionsConfig;
use crate::error::{Error, Result};
use crate::flags::Flags;
use crate::iam::Caller;
use crate::model::Role;
use crate::objects::{sha256_hex, BucketName, ObjectName, ObjectStore};
use crate::storage::functions::{FunctionRecord, FunctionStore, FunctionVersion};
use crate::unit_of_work::run_to_completion;
use cgi::{CgiRequest, CgiResponse};
use runtime::{Finished, Host, HostError, Input, Outcome, Prepared, Runtime};
pub use settings::Settings;

/// Where module bytes are kept.
const MODULES: &str = "_functions";

/// Where a metric event for the detector goes (`record_event`, and the
/// error event of a failed run): the metrics recorder in the binary.
pub trait EventSink: Send + Sync {
    fn exposure(&self, flag_key: &str, variant: &str);
    fn record(&self, flag_key: &str, variant: &str, event_type: &str, value: f64);
}

impl EventSink for crate::metrics::Recorder {
    fn exposure(&self, flag_key: &str, variant: &str) {
        crate::metrics::Recorder::exposure(self, flag_key, variant);
    }
    fn record(&self, flag_key: &str, variant: &str, event_type: &str, value: f64) {
        crate::metrics::Recorder::record(self, flag_key, variant, event_type, value);
    }
}

/// One function's active version, ready to run.
struct Active {
    version: u32,
    sha256: String,
    settings: Settings,
    prepared: OnceCell<Arc<Prepared>>,
}

/// One run, as `GET /api/v1/functions/{name}/invocations` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct InvocationRecord {
    pub at: DateTime<Utc>,
    pub version: u32,
    pub duration_us: u64,
    /// The HTTP status the run produced (or its error's).
    pub status: u16,
    /// `ok`, `exit`, `timeout`, `memory`, `output_too_large`,
    /// `stack_overflow`, `trap`, `instantiate`.
    pub outcome: &'static str,
    pub exit_code: Option<i32>,
    pub stderr_tail: String,
    /// The user id of the caller, or `trigger:<id>`.
    pub caller: String,
}

/// A request to run a function, as the HTTP layer hands it over.
pub struct Call {
    pub method: String,
    pub path_info: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub struct Functions {
    store: Arc<dyn FunctionStore>,
    objects: Arc<dyn ObjectStore>,
    flags: Arc<Flags>,
    runtime: Arc<Runtime>,
    events: Arc<dyn EventSink>,
    config: FunctionsConfig,
    active: RwLock<HashMap<String, Arc<Active>>>,
    writer: tokio::sync::Mutex<()>,
    permits: Arc<Semaphore>,
    log: Arc<InvocationLog>,
}

/// Recent invocations per function, oldest first.
type InvocationLog = Mutex<HashMap<String, VecDeque<InvocationRecord>>>;

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::internal(format!("blocking task: {e}")))?
}

/// Function names follow the flag-key rules; names made only of dots are
/// refused too, since they read as paths in `/functions/{name}`.
pub fn check_name(name: &str) -> Result<()> {
    if !flagbase_engine::is_valid_key(name) || name.bytes().all(|b| b == b'.') {
        return Err(Error::invalid(
            "name",
            "must be 1-128 characters of letters, digits, '-', '_' or '.' (not only dots)",
        ));
    }
    Ok(())
}

fn module_name(sha256: &str) -> ObjectName {
    ObjectName::parse(&format!("modules/{sha256}.wasm")).expect("a hex hash is a valid name")
}

impl Functions {
    pub async fn load(
        store: Arc<dyn FunctionStore>,
        objects: Arc<dyn ObjectStore>,
        flags: Arc<Flags>,
        runtime: Arc<Runtime>,
        events: Arc<dyn EventSink>,
        config: FunctionsConfig,
    ) -> Result<Functions> {
        let mut active = HashMap::new();
        for record in store.functions().await? {
            let versions = store.function_versions(&record.name).await?;
            let Some(version) = versions
                .into_iter()
                .find(|v| v.version == record.active_version)
            else {
                continue;
            };
            active.insert(
                record.name.clone(),
                Arc::new(Active {
                    version: version.version,
                    sha256: version.sha256,
                    settings: Settings::from_stored(&record.settings, &config),
                    prepared: OnceCell::new(),
                }),
            );
        }
        Ok(Functions {
            store,
            objects,
            flags,
            runtime,
            events,
            permits: Arc::new(Semaphore::new(config.max_concurrency as usize)),
            config,
            active: RwLock::new(active),
            writer: tokio::sync::Mutex::new(()),
            log: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Compiles every active version ahead of the first call (from the
    /// artifact cache after a restart, so this is quick).
    pub async fn warm(self: &Arc<Self>) {
        let names: Vec<String> = self
            .active
            .read()
            .expect("active table")
            .keys()
            .cloned()
            .collect();
        for name in names {
            if let Some(active) = self.active_of(&name) {
                if let Err(e) = self.prepared(&active).await {
                    tracing::warn!(function = %name, error = %e, "cannot prepare function");
                }
            }
        }
    }

    fn active_of(&self, name: &str) -> Option<Arc<Active>> {
        self.active.read().expect("active table").get(name).cloned()
    }

    async fn prepared(&self, active: &Active) -> Result<Arc<Prepared>> {
        active
            .prepared
            .get_or_try_init(|| {
                let (runtime, objects, sha) = (
                    self.runtime.clone(),
                    self.objects.clone(),
                    active.sha256.clone(),
                );
                blocking(move || {
                    let bucket = BucketName::internal(MODULES);
                    runtime
                        .prepare(&sha, || Ok(objects.get(&bucket, &module_name(&sha))?.1))
                        .map(Arc::new)
                })
            })
            .await
            .cloned()
    }

    /// Validates, compiles and stores `wasm` as the function's next version,
    /// and makes it active.
    pub async fn deploy(
        self: &Arc<Self>,
        caller: &Caller,
        name: &str,
        wasm: Vec<u8>,
    ) -> Result<FunctionVersion> {
        caller.require(Role::Developer)?;
        check_name(name)?;
        if wasm.is_empty() {
            return Err(Error::invalid("module", "is empty"));
        }
        let sha256 = sha256_hex(&wasm);
        let (runtime, objects, sha) = (self.runtime.clone(), self.objects.clone(), sha256.clone());
        let size = wasm.len() as u64;
        let prepared = blocking(move || {
            let artifact = runtime.check(&wasm)?;
            objects.put(&BucketName::internal(MODULES), &module_name(&sha), &wasm)?;
            runtime.store_artifact(&sha, &artifact)?;
            runtime.prepare(&sha, || Ok(wasm)).map(Arc::new)
        })
        .await?;
        let (this, name, actor) = (self.clone(), name.to_string(), caller.user.id.clone());
        run_to_completion(async move {
            let _writer = this.writer.lock().await;
            let defaults =
                serde_json::to_value(Settings::defaults(&this.config)).map_err(Error::internal)?;
            let committed = this
                .store
                .add_function_version(&name, &sha256, size, defaults, &actor)
                .await?;
            let (record, version) = committed.value;
            let active = Active {
                version: version.version,
                sha256,
                settings: Settings::from_stored(&record.settings, &this.config),
                prepared: OnceCell::new_with(Some(prepared)),
            };
            this.active
                .write()
                .expect("active table")
                .insert(name, Arc::new(active));
            Ok(version)
        })
        .await
    }

    pub async fn list(&self, caller: &Caller) -> Result<Vec<Value>> {
        caller.require(Role::User)?;
        Ok(self
            .store
            .functions()
            .await?
            .iter()
            .map(|f| self.describe(f))
            .collect())
    }

    fn describe(&self, f: &FunctionRecord) -> Value {
        json!({
            "name": f.name,
            "active_version": f.active_version,
            "settings": Settings::from_stored(&f.settings, &self.config),
            "created_at": f.created_at,
            "updated_at": f.updated_at,
            "updated_by": f.updated_by,
        })
    }

    /// The function's settings and versions.
    pub async fn get(&self, caller: &Caller, name: &str) -> Result<Value> {
        caller.require(Role::User)?;
        let record = self
            .store
            .function(name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("function {name}")))?;
        let versions = self.store.function_versions(name).await?;
        let mut out = self.describe(&record);
        out["versions"] = serde_json::to_value(versions).map_err(Error::internal)?;
        Ok(out)
    }

    /// Makes an earlier (or later) version active again.
    pub async fn activate(
        self: &Arc<Self>,
        caller: &Caller,
        name: &str,
        version: u32,
    ) -> Result<Value> {
        caller.require(Role::Developer)?;
        let versions = self.store.function_versions(name).await?;
        let chosen = versions
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| Error::NotFound(format!("version {version} of function {name}")))?;
        let (this, name, actor) = (self.clone(), name.to_string(), caller.user.id.clone());
        run_to_completion(async move {
            let _writer = this.writer.lock().await;
            let record = this
                .store
                .activate_function_version(&name, version, &actor)
                .await?
                .value;
            let active = Active {
                version,
                sha256: chosen.sha256,
                settings: Settings::from_stored(&record.settings, &this.config),
                prepared: OnceCell::new(),
            };
            this.active
                .write()
                .expect("active table")
                .insert(name, Arc::new(active));
            Ok(this.describe(&record))
        })
        .await
    }

    pub async fn update_settings(
        self: &Arc<Self>,
        caller: &Caller,
        name: &str,
        patch: Value,
    ) -> Result<Value> {
        caller.require(Role::Developer)?;
        let (this, name, actor) = (self.clone(), name.to_string(), caller.user.id.clone());
        run_to_completion(async move {
            let _writer = this.writer.lock().await;
            let record = this
                .store
                .function(&name)
                .await?
                .ok_or_else(|| Error::NotFound(format!("function {name}")))?;
            let settings = Settings::from_stored(&record.settings, &this.config)
                .patched(&patch, &this.config)?;
            let stored = serde_json::to_value(&settings).map_err(Error::internal)?;
            let record = this
                .store
                .update_function_settings(&name, stored, &actor)
                .await?
                .value;
            let mut table = this.active.write().expect("active table");
            if let Some(current) = table.get(&name).cloned() {
                let prepared = OnceCell::new();
                if let Some(p) = current.prepared.get() {
                    let _ = prepared.set(p.clone());
                }
                table.insert(
                    name,
                    Arc::new(Active {
                        version: current.version,
                        sha256: current.sha256.clone(),
                        settings,
                        prepared,
                    }),
                );
            }
            drop(table);
            Ok(this.describe(&record))
        })
        .await
    }

    /// Deletes the function and its versions. Module bytes stay in bucket
    /// storage: they are content-addressed and may back other functions.
    pub async fn delete(self: &Arc<Self>, caller: &Caller, name: &str) -> Result<()> {
        caller.require(Role::Developer)?;
        let (this, name, actor) = (self.clone(), name.to_string(), caller.user.id.clone());
        run_to_completion(async move {
            let _writer = this.writer.lock().await;
            this.store.delete_function(&name, &actor).await?;
            this.active.write().expect("active table").remove(&name);
            this.log.lock().expect("invocation log").remove(&name);
            Ok(())
        })
        .await
    }

    pub fn invocations(&self, caller: &Caller, name: &str) -> Result<Vec<InvocationRecord>> {
        caller.require(Role::Developer)?;
        if self.active_of(name).is_none() {
            return Err(Error::NotFound(format!("function {name}")));
        }
        let log = self.log.lock().expect("invocation log");
        Ok(log
            .get(name)
            .map(|l| l.iter().rev().cloned().collect())
            .unwrap_or_default())
    }

    /// Runs the active version for `caller`: 404 when there is no such
    /// function or its flag is off for the caller, 503 when the server
    /// already runs `max_concurrency` functions.
    pub async fn invoke(&self, caller: &Caller, name: &str, call: Call) -> Result<CgiResponse> {
        caller.require(Role::User)?;
        let active = self
            .active_of(name)
            .ok_or_else(|| Error::NotFound(format!("function {name}")))?;
        let ctx = caller_context(caller);
        let mut variant = String::new();
        if let Some(flag) = &active.settings.flag_key {
            let live = self.flags.live();
            let eval = live.snapshot.evaluate(flag, &ctx);
            if eval.value != &Value::Bool(true) {
                return Err(Error::NotFound(format!("function {name}")));
            }
            variant = variant_of(&live.snapshot, flag, &eval);
            self.events.exposure(flag, &variant);
        }
        let who = Who {
            id: caller.user.id.clone(),
            role: caller.role,
        };
        self.execute(name, &active, &who, ctx, call, variant).await
    }

    /// Runs a function for a trigger: no caller, so no flag gate; the
    /// identity the module sees is `trigger:<id>` with role `user`.
    pub async fn run_triggered(
        &self,
        name: &str,
        trigger: &str,
        call: Call,
    ) -> Result<CgiResponse> {
        let active = self
            .active_of(name)
            .ok_or_else(|| Error::NotFound(format!("function {name}")))?;
        let who = Who {
            id: format!("trigger:{trigger}"),
            role: Role::User,
        };
        let ctx = Context::with_targeting_key(who.id.clone());
        self.execute(name, &active, &who, ctx, call, String::new())
            .await
    }

    async fn execute(
        &self,
        name: &str,
        active: &Arc<Active>,
        who: &Who,
        ctx: Context,
        call: Call,
        variant: String,
    ) -> Result<CgiResponse> {
        let request = CgiRequest {
            method: &call.method,
            script_name: format!("/functions/{name}"),
            path_info: call.path_info,
            query: &call.query,
            headers: call.headers,
            body_len: call.body.len(),
        };
        let env: Vec<(String, String)> = active.settings.env.clone().into_iter().collect();
        let role = who.role.as_str();
        let vars = cgi::environment(
            &request,
            [("FLAGBASE_USER_ID", &who.id), ("FLAGBASE_ROLE", role)],
            &env,
        );
        let host = InvocationHost {
            flags: self.flags.clone(),
            objects: self.objects.clone(),
            events: self.events.clone(),
            ctx,
            caller: json!({ "user_id": who.id, "role": role }),
            buckets: active.settings.buckets.clone(),
        };
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            Error::Unavailable(format!(
                "too many functions are running (functions.max_concurrency = {}); retry shortly",
                self.config.max_concurrency
            ))
        })?;
        let prepared = self.prepared(active).await?;
        let input = Input {
            stdin: call.body,
            env: vars,
            program: name.to_string(),
            timeout: active.settings.timeout(),
            memory_limit: active.settings.memory_limit,
            max_output: usize::try_from(self.config.max_output_bytes).unwrap_or(usize::MAX),
            host: Box::new(host),
        };
        // The run and what must follow it (the invocation log, the error
        // event for the function's flag) are a task of their own, on this
        // worker (no thread hop): they go to their end even if the caller
        // hangs up meanwhile, so a module is never stopped between two of
        // its host calls and a run the caller did not wait for still counts.
        let runtime = self.runtime.clone();
        let log = self.log.clone();
        let events = self.events.clone();
        let limits = LogLimits {
            max_output_bytes: self.config.max_output_bytes,
            keep: self.config.invocation_log,
        };
        let (name, active, caller) = (name.to_string(), active.clone(), who.id.clone());
        tokio::spawn(async move {
            let finished = runtime.run(&prepared, input).await;
            drop(permit);
            let result = conclude(&log, limits, &name, &active, finished, caller);
            if let (Some(flag), Err(_)) = (&active.settings.flag_key, &result) {
                events.record(flag, &variant, crate::metrics::ERROR, 1.0);
            }
            result
        })
        .await
        .map_err(|e| Error::internal(format!("function run: {e}")))?
    }
}

/// What the invocation log needs from the configuration.
#[derive(Clone, Copy)]
struct LogLimits {
    max_output_bytes: u64,
    /// Records kept per function.
    keep: usize,
}

/// Turns a finished run into a response or an error, and records it.
fn conclude(
    log: &InvocationLog,
    limits: LogLimits,
    name: &str,
    active: &Active,
    finished: Finished,
    caller: String,
) -> Result<CgiResponse> {
    let limit = limits.max_output_bytes;
    let (outcome, exit_code, result): (&'static str, Option<i32>, Result<CgiResponse>) =
        match finished.outcome {
            Outcome::Ok => match cgi::parse_output(finished.stdout) {
                Ok(response) => ("ok", Some(0), Ok(response)),
                Err(why) => (
                    "ok",
                    Some(0),
                    Err(Error::Failed(format!("function {name}: {why}"))),
                ),
            },
            Outcome::Exit(code) => (
                "exit",
                Some(code),
                Err(Error::Failed(format!(
                    "function {name} exited with status {code}"
                ))),
            ),
            Outcome::Timeout => (
                "timeout",
                None,
                Err(Error::Timeout(format!(
                    "function {name} ran past its timeout of {}",
                    active.settings.timeout
                ))),
            ),
            Outcome::Memory => (
                "memory",
                None,
                Err(Error::Failed(format!(
                    "function {name} exceeded its memory limit of {} bytes",
                    active.settings.memory_limit
                ))),
            ),
            Outcome::OutputTooLarge => (
                "output_too_large",
                None,
                Err(Error::Failed(format!(
            "function {name} wrote more than {limit} bytes of output (functions.max_output_bytes)"
        ))),
            ),
            Outcome::StackOverflow => (
                "stack_overflow",
                None,
                Err(Error::Failed(format!(
                    "function {name} exhausted its stack (too deep a recursion)"
                ))),
            ),
            Outcome::Trap(why) => (
                "trap",
                None,
                Err(Error::Failed(format!("function {name} trapped: {why}"))),
            ),
            Outcome::Instantiate(why) => (
                "instantiate",
                None,
                Err(Error::Failed(format!(
                    "function {name} cannot start: {why}"
                ))),
            ),
        };
    let stderr_tail = String::from_utf8_lossy(&finished.stderr).into_owned();
    if !stderr_tail.is_empty() {
        tracing::info!(function = %name, stderr = %stderr_tail, "function stderr");
    }
    let status = match &result {
        Ok(r) => r.status,
        Err(Error::Timeout(_)) => 504,
        Err(_) => 500,
    };
    let record = InvocationRecord {
        at: Utc::now(),
        version: active.version,
        duration_us: finished.duration.as_micros() as u64,
        status,
        outcome,
        exit_code,
        stderr_tail,
        caller,
    };
    let mut log = log.lock().expect("invocation log");
    let entries = log.entry(name.to_string()).or_default();
    if entries.len() >= limits.keep {
        entries.pop_front();
    }
    entries.push_back(record);
    drop(log);
    result
}

/// The variant name the detector counts under, as evaluations name it.
fn variant_of(
    snapshot: &flagbase_engine::Snapshot,
    key: &str,
    eval: &flagbase_engine::Evaluation<'_>,
) -> String {
    match snapshot.get(key) {
        Some(flag) => crate::metrics::variant_name(flag, eval).into_owned(),
        None => "default".into(),
    }
}

/// Who a run is for.
struct Who {
    id: String,
    role: Role,
}

/// The caller as flag rules see them, as the evaluation API builds it.
fn caller_context(caller: &Caller) -> Context {
    let mut ctx = Context::with_targeting_key(caller.user.id.clone());
    ctx.insert("userId", caller.user.id.clone());
    ctx.insert("email", caller.user.email.clone());
    ctx.insert("role", caller.role.as_str());
    ctx
}

/// The `flagbase` imports of one invocation.
struct InvocationHost {
    flags: Arc<Flags>,
    objects: Arc<dyn ObjectStore>,
    events: Arc<dyn EventSink>,
    ctx: Context,
    caller: Value,
    buckets: Vec<String>,
}

impl InvocationHost {
    fn bucket(&self, bucket: &str) -> std::result::Result<BucketName, HostError> {
        if !self.buckets.iter().any(|b| b == bucket) {
            return Err(HostError::Refused);
        }
        BucketName::parse(bucket).map_err(|_| HostError::Refused)
    }
}

fn host_err(e: Error) -> HostError {
    match e {
        Error::NotFound(_) => HostError::NotFound,
        Error::Invalid { .. } | Error::Conflict(_) => HostError::Refused,
        other => {
            tracing::warn!(error = %other, "function bucket call failed");
            HostError::Failed
        }
    }
}

impl Host for InvocationHost {
    fn flag_eval(&self, key: &str) -> Option<Vec<u8>> {
        let live = self.flags.live();
        let eval = live.snapshot.evaluate(key, &self.ctx);
        if eval.error_code == Some(flagbase_engine::ErrorCode::FlagNotFound) {
            return None;
        }
        Some(json!({ "key": key, "value": eval.value, "variant": eval.variant, "reason": eval.reason.as_str() }).to_string().into_bytes())
    }

    fn caller(&self) -> Vec<u8> {
        self.caller.to_string().into_bytes()
    }

    fn bucket_get(&self, bucket: &str, name: &str) -> std::result::Result<Vec<u8>, HostError> {
        let bucket = self.bucket(bucket)?;
        let name = ObjectName::parse(name).map_err(|_| HostError::Refused)?;
        self.objects
            .get(&bucket, &name)
            .map(|(_, data)| data)
            .map_err(host_err)
    }

    fn bucket_put(
        &self,
        bucket: &str,
        name: &str,
        data: &[u8],
    ) -> std::result::Result<(), HostError> {
        let bucket = self.bucket(bucket)?;
        let name = ObjectName::parse(name).map_err(|_| HostError::Refused)?;
        self.objects
            .put(&bucket, &name, data)
            .map(|_| ())
            .map_err(host_err)
    }

    fn record_event(
        &self,
        flag: &str,
        event_type: &str,
        value: f64,
    ) -> std::result::Result<(), HostError> {
        if !flagbase_engine::is_valid_key(flag)
            || event_type.is_empty()
            || event_type.len() > 64
            || !value.is_finite()
        {
            return Err(HostError::Refused);
        }
        // The variant is the one this caller is served, never the module's say.
        let live = self.flags.live();
        let eval = live.snapshot.evaluate(flag, &self.ctx);
        if eval.error_code == Some(flagbase_engine::ErrorCode::FlagNotFound) {
            return Err(HostError::NotFound);
        }
        let variant = variant_of(&live.snapshot, flag, &eval);
        self.events.record(flag, &variant, event_type, value);
        Ok(())
    }
}
