//! wasmtime, narrowed to what functions use: one `Engine` (cranelift,
//! epoch interruption, the pooling allocator, a wasm stack limit), one
//! `Linker` with WASI preview1 (`wasi.rs`) and the `flagbase` host module,
//! compiled modules cached on disk by content hash, and `run`, which turns
//! every way a module can fail into an `Outcome` the caller can map to a
//! clean error. Nothing else in Flagbase names a wasmtime type.
//!
//! `run` is a future: the module executes on a fiber of its own, on the
//! calling task (no hop to a blocking thread and back, which cost two
//! context switches per invocation, a third of the server's CPU on a
//! trivial function). A ticker thread bumps the engine's epoch every `TICK`
//! while a run is in progress; at each tick the run yields to the executor,
//! so a long-running module shares its worker thread with other requests,
//! and once its timeout's worth of ticks has passed it traps. The guest's
//! fast path pays nothing for either.
//!
//! Host calls stay synchronous: the `flagbase` host module's bucket calls
//! read and write small files on the calling worker thread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap,
};

use crate::error::{Error, Result};

const TICK: Duration = Duration::from_millis(10);
/// Stack a run's fiber keeps for host calls, above the wasm stack limit.
const HOST_STACK: usize = 1024 * 1024;
/// stderr kept per run (the tail, for the invocation log and the logs).
pub const STDERR_KEPT: usize = 4096;

pub struct RuntimeOptions {
    /// Runs at once (also the size of the instance pool).
    pub max_concurrency: u32,
    /// The largest `memory_limit` a function may have.
    pub max_memory: u64,
    pub max_stack: usize,
    /// Where precompiled artifacts are kept.
    pub cache_dir: PathBuf,
}

/// A module compiled for this engine, linked and ready to instantiate.
pub struct Prepared {
    pre: InstancePre<HostState>,
}

/// The capabilities of the `flagbase` import module, bound to one
/// invocation (its caller, its function's buckets).
pub trait Host: Send + Sync {
    /// The flag's evaluation for the caller as JSON, `None` for no such flag.
    fn flag_eval(&self, key: &str) -> Option<Vec<u8>>;
    /// The caller as JSON: `{"user_id": "...", "role": "..."}`.
    fn caller(&self) -> Vec<u8>;
    fn bucket_get(&self, bucket: &str, name: &str) -> std::result::Result<Vec<u8>, HostError>;
    fn bucket_put(
        &self,
        bucket: &str,
        name: &str,
        data: &[u8],
    ) -> std::result::Result<(), HostError>;
    fn record_event(
        &self,
        flag: &str,
        event_type: &str,
        value: f64,
    ) -> std::result::Result<(), HostError>;
}

/// What a host call answers instead of data; negative return codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    NotFound = -1,
    Refused = -2,
    Failed = -3,
}

/// The input of one run.
pub struct Input {
    pub stdin: Vec<u8>,
    /// `NAME=value` pairs.
    pub env: Vec<String>,
    pub program: String,
    pub timeout: Duration,
    pub memory_limit: u64,
    pub max_output: usize,
    pub host: Box<dyn Host>,
}

/// How a run ended.
pub enum Outcome {
    /// `_start` returned or the module called `proc_exit(0)`.
    Ok,
    Exit(i32),
    Timeout,
    Memory,
    OutputTooLarge,
    StackOverflow,
    Trap(String),
    /// The module could not be instantiated (e.g. a missing import).
    Instantiate(String),
}

pub struct Finished {
    pub outcome: Outcome,
    pub stdout: Vec<u8>,
    /// The last `STDERR_KEPT` bytes.
    pub stderr: Vec<u8>,
    pub duration: Duration,
}

/// `proc_exit(code)`, carried out of the guest as an error.
#[derive(Debug)]
pub struct Exit(pub i32);
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}
impl std::error::Error for Exit {}

#[derive(Debug)]
pub struct OutputTooLarge;
impl std::fmt::Display for OutputTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("output over the limit")
    }
}
impl std::error::Error for OutputTooLarge {}

/// Per-run memory cap; remembers that it refused, so the run is reported
/// as a memory failure whatever the guest does next.
pub struct Limits {
    memory: usize,
    hit: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.hit = true;
            // A trap rather than `memory.grow` returning -1: a module that
            // ignores the failure would otherwise go on to fail obscurely.
            return Err(wasmtime::Error::msg("memory limit exceeded"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

pub struct HostState {
    pub(super) stdin: Vec<u8>,
    pub(super) stdin_pos: usize,
    pub(super) stdout: Vec<u8>,
    pub(super) max_output: usize,
    pub(super) output_exceeded: bool,
    stderr: Vec<u8>,
    pub(super) env: Vec<String>,
    pub(super) args: Vec<String>,
    pub(super) started: Instant,
    pub(super) host: Box<dyn Host>,
    limits: Limits,
}

impl HostState {
    /// Appends to stderr, keeping only the last `STDERR_KEPT` bytes.
    pub(super) fn write_stderr(&mut self, bytes: &[u8]) {
        self.stderr.extend_from_slice(bytes);
        if self.stderr.len() > 2 * STDERR_KEPT {
            let cut = self.stderr.len() - STDERR_KEPT;
            self.stderr.drain(..cut);
        }
    }
}

pub struct Runtime {
    engine: Engine,
    ticker: Arc<Ticker>,
    linker: Linker<HostState>,
    cache_dir: PathBuf,
    /// Identifies this engine's compilation settings in cache file names.
    engine_id: String,
}

impl Runtime {
    pub fn new(options: &RuntimeOptions) -> std::result::Result<Runtime, String> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.max_wasm_stack(options.max_stack);
        // The fiber a run executes on: the wasm stack plus room for host
        // calls (wasmtime requires more than `max_wasm_stack`).
        config.async_stack_size(options.max_stack + HOST_STACK);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(options.max_concurrency)
            .total_memories(options.max_concurrency)
            .total_tables(options.max_concurrency)
            .total_stacks(options.max_concurrency)
            .max_memory_size(usize::try_from(options.max_memory).unwrap_or(usize::MAX));
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| format!("wasmtime engine: {e}"))?;
        let mut linker = Linker::new(&engine);
        super::wasi::add_to_linker(&mut linker).map_err(|e| e.to_string())?;
        super::host::add_to_linker(&mut linker).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&options.cache_dir)
            .map_err(|e| format!("{}: {e}", options.cache_dir.display()))?;
        let engine_id = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            format!("{:016x}", h.finish())
        };
        let ticker = Arc::new(Ticker::default());
        let (ticking, engine_ticked) = (ticker.clone(), engine.clone());
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || ticking.run(&engine_ticked))
            .map_err(|e| e.to_string())?;
        Ok(Runtime {
            engine,
            linker,
            cache_dir: options.cache_dir.clone(),
            engine_id,
            ticker,
        })
    }

    /// Validates and compiles `wasm` (blocking): wasmtime's reason on a
    /// module that is not valid WebAssembly, and refusal of modules that
    /// are not WASI commands. Returns the artifact, for the cache.
    pub fn check(&self, wasm: &[u8]) -> Result<Vec<u8>> {
        let module = Module::new(&self.engine, wasm)
            .map_err(|e| Error::invalid("module", format!("{e:#}")))?;
        if !matches!(
            module.get_export("_start"),
            Some(wasmtime::ExternType::Func(_))
        ) {
            return Err(Error::invalid(
                "module",
                "must be a WASI command: it exports no `_start` function",
            ));
        }
        for import in module.imports() {
            if !matches!(import.module(), "wasi_snapshot_preview1" | "flagbase") {
                return Err(Error::invalid(
                    "module",
                    format!(
                        "imports {}::{}; only wasi_snapshot_preview1 and flagbase are provided",
                        import.module(),
                        import.name()
                    ),
                ));
            }
        }
        module.serialize().map_err(Error::internal)
    }

    fn cache_path(&self, sha256: &str) -> PathBuf {
        self.cache_dir
            .join(format!("{sha256}-{}.cwasm", self.engine_id))
    }

    /// Stores a compiled artifact (atomically) under the module's hash.
    pub fn store_artifact(&self, sha256: &str, artifact: &[u8]) -> Result<()> {
        let path = self.cache_path(sha256);
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(artifact)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::internal(format!("{}: {e}", path.display()))
        })
    }

    /// The module ready to run: from the artifact cache when it holds one
    /// for this engine, otherwise compiled from `wasm` (and cached).
    pub fn prepare(
        &self,
        sha256: &str,
        wasm: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Prepared> {
        let path = self.cache_path(sha256);
        let module = match Self::load_artifact(&self.engine, &path) {
            Some(module) => module,
            None => {
                let artifact = self.check(&wasm()?)?;
                self.store_artifact(sha256, &artifact)?;
                // SAFETY: as in `load_artifact`; these bytes were just
                // produced by this engine's `serialize`.
                unsafe { Module::deserialize(&self.engine, &artifact) }.map_err(Error::internal)?
            }
        };
        let mut linker = self.linker.clone();
        linker
            .define_unknown_imports_as_traps(&module)
            .map_err(Error::internal)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| Error::invalid("module", format!("cannot be linked: {e:#}")))?;
        Ok(Prepared { pre })
    }

    fn load_artifact(engine: &Engine, path: &Path) -> Option<Module> {
        if !path.exists() {
            return None;
        }
        // SAFETY: deserializing runs native code compiled into the file, so
        // it must come from a trusted source: only Flagbase writes this
        // directory (under storage.base_path, named by the module's hash
        // and this engine's settings), and anyone who can write there can
        // already replace the binary's data. wasmtime still checks the
        // header and refuses an artifact from another engine or version.
        match unsafe { Module::deserialize_file(engine, path) } {
            Ok(module) => Some(module),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding an unusable compiled artifact");
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }

    /// Runs the module's `_start` once.
    pub async fn run(&self, prepared: &Prepared, input: Input) -> Finished {
        let started = Instant::now();
        let state = HostState {
            stdin: input.stdin,
            stdin_pos: 0,
            stdout: Vec::new(),
            max_output: input.max_output,
            output_exceeded: false,
            stderr: Vec::new(),
            env: input.env,
            args: vec![input.program],
            started,
            host: input.host,
            limits: Limits {
                memory: usize::try_from(input.memory_limit).unwrap_or(usize::MAX),
                hit: false,
            },
        };
        let _ticking = self.ticker.running();
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        // Each tick yields to the executor; the tick that ends the
        // timeout traps instead.
        let mut ticks_left = input.timeout.as_millis().div_ceil(TICK.as_millis()) as u64 + 1;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            ticks_left = ticks_left.saturating_sub(1);
            if ticks_left == 0 {
                Ok(wasmtime::UpdateDeadline::Interrupt)
            } else {
                Ok(wasmtime::UpdateDeadline::Yield(1))
            }
        });

        let result = match prepared.pre.instantiate_async(&mut store).await {
            Ok(instance) => match instance.get_typed_func::<(), ()>(&mut store, "_start") {
                Ok(start) => start
                    .call_async(&mut store, ())
                    .await
                    .map_err(|e| (e, false)),
                Err(e) => Err((e, true)),
            },
            Err(e) => Err((e, true)),
        };
        let data = store.data();
        let outcome = match result {
            Ok(()) => Outcome::Ok,
            Err((e, instantiating)) => {
                if let Some(Exit(code)) = e.downcast_ref::<Exit>() {
                    if *code == 0 {
                        Outcome::Ok
                    } else {
                        Outcome::Exit(*code)
                    }
                } else if data.limits.hit {
                    Outcome::Memory
                } else if data.output_exceeded || e.is::<OutputTooLarge>() {
                    Outcome::OutputTooLarge
                } else if let Some(trap) = e.downcast_ref::<Trap>() {
                    match trap {
                        Trap::Interrupt => Outcome::Timeout,
                        Trap::StackOverflow => Outcome::StackOverflow,
                        other => Outcome::Trap(other.to_string()),
                    }
                } else if instantiating {
                    Outcome::Instantiate(format!("{e:#}"))
                } else {
                    Outcome::Trap(format!("{e:#}"))
                }
            }
        };
        let mut data = store.into_data();
        let keep = data.stderr.len().saturating_sub(STDERR_KEPT);
        data.stderr.drain(..keep);
        Finished {
            outcome,
            stdout: data.stdout,
            stderr: data.stderr,
            duration: started.elapsed(),
        }
    }
}

/// Bumps the engine's epoch every `TICK` while at least one run is in
/// progress, and sleeps otherwise, so an idle server is not woken a hundred
/// times a second. A run's deadline counts ticks from its own start, so a
/// pause between runs shortens no timeout.
#[derive(Default)]
struct Ticker {
    running: Mutex<usize>,
    started: Condvar,
}

impl Ticker {
    fn running(&self) -> TickerGuard<'_> {
        *self.running.lock().expect("ticker lock") += 1;
        self.started.notify_one();
        TickerGuard(self)
    }

    /// The ticker thread's loop; it lives as long as the process.
    fn run(&self, engine: &Engine) {
        loop {
            {
                let mut running = self.running.lock().expect("ticker lock");
                while *running == 0 {
                    running = self.started.wait(running).expect("ticker lock");
                }
            }
            std::thread::sleep(TICK);
            engine.increment_epoch();
        }
    }
}

struct TickerGuard<'a>(&'a Ticker);

impl Drop for TickerGuard<'_> {
    fn drop(&mut self) {
        *self.0.running.lock().expect("ticker lock") -= 1;
    }
}
