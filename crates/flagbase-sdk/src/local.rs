//! The local-evaluation client: every flag definition in memory, kept
//! current through `GET /api/v1/stream`, evaluated in process by the engine.
//!
//! Stream rules (the server's side is documented in the README's "Flag
//! stream" section): the first connection gets a `snapshot`; every later
//! one sends `Last-Event-ID` (the sequence number of the last change
//! applied) and gets either exactly the missed changes or a fresh
//! `snapshot`. A `resync` event, a closed connection, an error or a silence
//! longer than [`LocalOptions::idle_timeout`] (heartbeats arrive every 15 s)
//! all lead to a reconnect after a backoff with jitter. Meanwhile the last
//! known definitions keep serving.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use flagbase_engine::{compile, Context, FlagSpec, Snapshot};
use rand::Rng;
use reqwest::{header, Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::remote::{check, Client, Evaluation};
use crate::sse::{Event, Parser};

/// How to connect and what to do while the server is away.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// The server, e.g. `http://localhost:8080`.
    pub base_url: String,
    /// A `server` API token (or a session JWT).
    pub token: String,
    /// A file written by [`LocalClient::save_bootstrap`]: when the server
    /// cannot be reached at `init`, these definitions serve until it can.
    /// A missing file is not an error (first start).
    pub bootstrap: Option<PathBuf>,
    /// How long `init` waits for the first snapshot.
    pub init_timeout: Duration,
    /// First reconnect delay, unless the server sent a `retry:` hint (then
    /// that, bounded by `backoff_max`); doubles per failed attempt up to
    /// `backoff_max`.
    /// Each delay is drawn at random from its upper half (jitter), so a
    /// fleet of clients does not reconnect in step after a restart.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// A connection silent for this long (no event, no heartbeat) is
    /// considered dead and replaced.
    pub idle_timeout: Duration,
}

impl LocalOptions {
    /// Defaults: 10 s to initialise, backoff 250 ms to 30 s, 45 s idle
    /// timeout (three missed heartbeats), no bootstrap file.
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Self {
        LocalOptions {
            base_url: base_url.into(),
            token: token.into(),
            bootstrap: None,
            init_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(45),
        }
    }

    /// Sets the bootstrap file.
    pub fn bootstrap(mut self, path: impl Into<PathBuf>) -> Self {
        self.bootstrap = Some(path.into());
        self
    }
}

/// Where the client's link to the server stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connecting (first time, or again after a failure).
    Connecting,
    /// The stream is open: definitions are current.
    Connected,
    /// The stream is down; the last known definitions serve, and the client
    /// keeps reconnecting.
    Disconnected,
    /// The server refused the credential (401/403); the client retries at
    /// the longest backoff in case the token comes back.
    Rejected,
    /// [`LocalClient::close`] was called.
    Closed,
}

/// What happened to one flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created, updated or toggled: the new definition is in place.
    Updated,
    /// Deleted.
    Deleted,
}

/// One flag change, as passed to [`LocalClient::on_change`] after it is
/// applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The flag key.
    pub key: String,
    /// What happened.
    pub kind: ChangeKind,
    /// The change's number in the server's commit sequence.
    pub seq: u64,
}

/// The definitions in force.
struct Defs {
    /// Sequence number of the last change applied (`Last-Event-ID`).
    seq: u64,
    /// Each flag as the API shows it (for change detection and bootstrap).
    flags: BTreeMap<String, Value>,
    snapshot: Snapshot,
}

impl Defs {
    #[inline]
    fn is_enabled(&self, key: &str, ctx: &Context) -> bool {
        matches!(self.snapshot.evaluate(key, ctx).value, Value::Bool(true))
    }

    fn variant(&self, key: &str, ctx: &Context) -> Option<String> {
        self.snapshot.evaluate(key, ctx).variant.map(str::to_string)
    }

    fn value(&self, key: &str, ctx: &Context) -> Value {
        self.snapshot.evaluate(key, ctx).value.clone()
    }

    fn evaluate(&self, key: &str, ctx: &Context) -> Evaluation {
        let e = self.snapshot.evaluate(key, ctx);
        Evaluation {
            key: key.to_string(),
            value: e.value.clone(),
            variant: e.variant.map(str::to_string),
            reason: e.reason.as_str().to_string(),
            error_code: e.error_code.map(|c| c.as_str().to_string()),
        }
    }
}

/// The definitions a `LocalClient` held when `LocalClient::snapshot` was
/// called; it answers like the client, from that one set of flags.
#[derive(Clone)]
pub struct LocalSnapshot(Arc<Defs>);

impl LocalSnapshot {
    /// Whether boolean flag `key` is on for `ctx` (false for unknown flags
    /// and non-boolean values).
    #[inline]
    pub fn is_enabled(&self, key: &str, ctx: &Context) -> bool {
        self.0.is_enabled(key, ctx)
    }

    /// The variant served to `ctx`, when the value came from a named variant.
    pub fn variant(&self, key: &str, ctx: &Context) -> Option<String> {
        self.0.variant(key, ctx)
    }

    /// The value served to `ctx` (`null` for an unknown flag).
    pub fn value(&self, key: &str, ctx: &Context) -> Value {
        self.0.value(key, ctx)
    }

    /// The whole evaluation, shaped as the REST API returns it.
    pub fn evaluate(&self, key: &str, ctx: &Context) -> Evaluation {
        self.0.evaluate(key, ctx)
    }

    /// The sequence number of the last change these definitions include.
    pub fn seq(&self) -> u64 {
        self.0.seq
    }
}

type Listener = Arc<dyn Fn(&Change) + Send + Sync>;

struct Shared {
    /// Which client this is, for the per-thread pin (never reused).
    id: u64,
    defs: ArcSwap<Defs>,
    /// Bumped after every store to `defs`: a thread whose pin holds an
    /// older generation loads the definitions afresh.
    generation: AtomicU64,
    /// Whether `defs` came from the server (or only from a bootstrap file).
    state: watch::Sender<ConnectionState>,
    listeners: Mutex<Vec<Listener>>,
}

/// The definitions a thread used last, and whose they were.
///
/// Why: pinning the definitions through `ArcSwap::load` costs two atomic
/// read-modify-writes per check (its debt slot taken and paid back), about
/// 5 ns, as much as the whole evaluation of a flag without rules. A thread
/// that keeps its own reference instead needs only to read the client's
/// generation: the same ordering guarantee (a check that starts after a
/// change was published sees it), no shared cache line written. The cost
/// is memory: until a thread's next check, its pin keeps the definitions
/// it last used alive, at most one superseded set per thread.
struct Pin {
    client: u64,
    generation: u64,
    /// An `Rc` around the `Arc`: a check counts its use without an atomic
    /// instruction (the point of the pin); the `Arc` is what the client's
    /// `ArcSwap` and snapshots share.
    #[allow(clippy::redundant_allocation)]
    defs: Option<Rc<Arc<Defs>>>,
}

thread_local! {
    static PIN: RefCell<Pin> = const {
        RefCell::new(Pin { client: 0, generation: 0, defs: None })
    };
}

/// Client ids start at 1, so an empty pin never matches.
static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

impl Shared {
    fn new(defs: Defs) -> Shared {
        Shared {
            id: NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed),
            defs: ArcSwap::from_pointee(defs),
            generation: AtomicU64::new(1),
            state: watch::Sender::new(ConnectionState::Connecting),
            listeners: Mutex::new(Vec::new()),
        }
    }

    /// Makes `next` the definitions in force for every later check.
    fn publish(&self, next: Defs) {
        self.defs.store(Arc::new(next));
        // Release after the store: a check that reads the new generation
        // (Acquire) loads `next` or later when it refreshes its pin.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// This thread's pin of the definitions in force, or `None` when the
    /// thread is exiting (its locals are gone) or its pin is already
    /// borrowed.
    ///
    /// Why an `Rc` handed out rather than a closure run inside the pin: a
    /// closure carries the caller's key through memory, and when the caller
    /// had just stored that key (a `&str` is two words, reloaded as one),
    /// the processor could not forward the store: 10 ns lost per check.
    #[inline(always)]
    #[allow(clippy::redundant_allocation)]
    fn pinned(&self) -> Option<Rc<Arc<Defs>>> {
        let generation = self.generation.load(Ordering::Acquire);
        PIN.try_with(|cell| {
            let mut pin = cell.try_borrow_mut().ok()?;
            if pin.client != self.id || pin.generation != generation {
                self.repin(&mut pin, generation);
            }
            pin.defs.clone()
        })
        .ok()
        .flatten()
    }

    /// Runs `f` on the definitions in force.
    #[inline(always)]
    fn with_defs<R>(&self, f: impl FnOnce(&Defs) -> R) -> R {
        match self.pinned() {
            Some(defs) => f(&defs),
            None => f(&self.defs.load()),
        }
    }

    #[cold]
    #[inline(never)]
    fn repin(&self, pin: &mut Pin, generation: u64) {
        // A concurrent publish may already be in `defs` with the generation
        // not yet bumped: then the next check loads it again, harmlessly.
        pin.defs = Some(Rc::new(self.defs.load_full()));
        pin.client = self.id;
        pin.generation = generation;
    }
}

/// A client that evaluates locally. Dropping it stops its stream.
pub struct LocalClient {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl LocalClient {
    /// Loads the definitions (from the stream's first snapshot, or from the
    /// bootstrap file when the server cannot be reached in
    /// `init_timeout`), then keeps them current in the background.
    ///
    /// Fails when the server refuses the credential, or when it cannot be
    /// reached and there is no bootstrap file.
    pub async fn init(options: LocalOptions) -> Result<LocalClient> {
        // No overall timeout: the stream stays open. Connecting has one.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::Invalid(format!("HTTP client: {e}")))?;
        let client = Client::with_http(http, &options.base_url, &options.token)?;
        let bootstrap = match &options.bootstrap {
            Some(path) => read_bootstrap(path).await?,
            None => None,
        };
        let has_bootstrap = bootstrap.is_some();
        let shared = Arc::new(Shared::new(bootstrap.unwrap_or_else(|| Defs {
            seq: 0,
            flags: BTreeMap::new(),
            snapshot: Snapshot::new(),
        })));
        let (first_tx, first_rx) = oneshot::channel();
        let task = tokio::spawn(run(shared.clone(), client, options.clone(), Some(first_tx)));
        let this = LocalClient { shared, task };
        let outcome = tokio::time::timeout(options.init_timeout, first_rx).await;
        let failure = match outcome {
            Ok(Ok(Ok(()))) => return Ok(this),
            Ok(Ok(Err(e))) => e,
            Ok(Err(_)) => Error::Unavailable("the stream task stopped".into()),
            Err(_) => Error::Unavailable(format!(
                "no snapshot from {} within {:?}",
                options.base_url, options.init_timeout
            )),
        };
        let refused = matches!(
            failure,
            Error::Api {
                status: 401 | 403,
                ..
            }
        );
        if has_bootstrap && !refused {
            return Ok(this);
        }
        this.task.abort();
        Err(failure)
    }

    /// Whether boolean flag `key` is on for `ctx` (false for unknown flags
    /// and non-boolean values).
    #[inline]
    pub fn is_enabled(&self, key: &str, ctx: &Context) -> bool {
        self.shared.with_defs(|d| d.is_enabled(key, ctx))
    }

    /// The variant served to `ctx`, when the value came from a named variant.
    pub fn variant(&self, key: &str, ctx: &Context) -> Option<String> {
        self.shared.with_defs(|d| d.variant(key, ctx))
    }

    /// The value served to `ctx` (`null` for an unknown flag).
    pub fn value(&self, key: &str, ctx: &Context) -> Value {
        self.shared.with_defs(|d| d.value(key, ctx))
    }

    /// The whole evaluation, shaped as the REST API returns it.
    pub fn evaluate(&self, key: &str, ctx: &Context) -> Evaluation {
        self.shared.with_defs(|d| d.evaluate(key, ctx))
    }

    /// The definitions in force now, held until the handle is dropped: for
    /// many checks in a row (a request, a page render) at the bare engine's
    /// cost, and answers that all come from one consistent set of flags
    /// even if the stream applies a change meanwhile (each check on the
    /// client itself sees the latest definitions). Take a new one per unit
    /// of work so changes are seen.
    pub fn snapshot(&self) -> LocalSnapshot {
        LocalSnapshot(self.shared.defs.load_full())
    }

    /// Calls `f` after each flag change is applied (on the stream's task:
    /// keep it short). A fresh snapshot reports every flag that differs.
    pub fn on_change(&self, f: impl Fn(&Change) + Send + Sync + 'static) {
        lock(&self.shared.listeners).push(Arc::new(f));
    }

    /// The connection state now.
    pub fn state(&self) -> ConnectionState {
        *self.shared.state.borrow()
    }

    /// A receiver that sees every state change (`changed().await`).
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.subscribe()
    }

    /// The sequence number of the last change applied (0 before any).
    pub fn seq(&self) -> u64 {
        self.shared.defs.load().seq
    }

    /// Every flag held, as the API shows it, sorted by key.
    pub fn flags(&self) -> Vec<Value> {
        self.shared.defs.load().flags.values().cloned().collect()
    }

    /// The keys of every flag held, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.shared.defs.load().flags.keys().cloned().collect()
    }

    /// Writes the definitions in force to `path` (atomically: a temporary
    /// file beside it, then a rename), for a later offline start.
    pub async fn save_bootstrap(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let defs = self.shared.defs.load_full();
        let body = json!({"seq": defs.seq, "flags": defs.flags.values().collect::<Vec<_>>()});
        let bytes = serde_json::to_vec(&body).map_err(|e| Error::Decode(e.to_string()))?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, path).await?;
        Ok(())
    }

    /// Stops the stream; evaluation keeps serving the last definitions.
    pub fn close(&self) {
        self.task.abort();
        self.shared.state.send_replace(ConnectionState::Closed);
    }
}

impl Drop for LocalClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking listener must not stop later notifications.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The definition fields of a flag as the API shows it: server-kept
/// metadata (`version`, timestamps, `updated_by`, and whatever a newer
/// server adds) is dropped, so the engine's strict reader accepts it.
fn spec_of(flag: &Value) -> Result<FlagSpec> {
    const SPEC_FIELDS: [&str; 11] = [
        "key",
        "name",
        "description",
        "enabled",
        "type",
        "default_value",
        "variants",
        "rules",
        "rollout_percentage",
        "targeted_users",
        "bucket_by",
    ];
    let Value::Object(map) = flag else {
        return Err(Error::Decode("a flag is not an object".into()));
    };
    let spec: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| SPEC_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    serde_json::from_value(Value::Object(spec)).map_err(|e| Error::Decode(format!("flag: {e}")))
}

/// Definitions from a list of flags (a snapshot or a bootstrap file).
fn defs_of(seq: u64, flags: Vec<Value>) -> Result<Defs> {
    let mut specs = Vec::with_capacity(flags.len());
    let mut by_key = BTreeMap::new();
    for flag in flags {
        let spec = spec_of(&flag)?;
        by_key.insert(spec.key.clone(), flag);
        specs.push(spec);
    }
    let snapshot = Snapshot::from_specs(specs).map_err(|e| Error::Decode(e.to_string()))?;
    Ok(Defs {
        seq,
        flags: by_key,
        snapshot,
    })
}

#[derive(Deserialize)]
struct SnapshotData {
    seq: u64,
    flags: Vec<Value>,
}

async fn read_bootstrap(path: &Path) -> Result<Option<Defs>> {
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let data: SnapshotData = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Decode(format!("{}: {e}", path.display())))?;
    defs_of(data.seq, data.flags).map(Some)
}

/// What ended one connection.
enum End {
    /// The server sent `resync`, or closed the stream: reconnect soon.
    Resync,
    /// A failure: reconnect after the next backoff step.
    Failed(Error),
}

/// The stream task: connect, apply, reconnect, forever.
async fn run(
    shared: Arc<Shared>,
    client: Client,
    options: LocalOptions,
    mut first: Option<oneshot::Sender<Result<()>>>,
) {
    let mut attempt: u32 = 0;
    // Set once a snapshot from this server is applied: only then is there
    // a position to resume from (bootstrap definitions are replaced whole).
    let mut resumable = false;
    // The server's `retry:` hint, once one arrived: the base reconnect delay.
    let mut hint: Option<Duration> = None;
    loop {
        let end = connect_once(
            &shared,
            &client,
            &options,
            &mut first,
            &mut attempt,
            &mut resumable,
            &mut hint,
        )
        .await;
        let delay = match end {
            End::Resync => {
                shared.state.send_replace(ConnectionState::Connecting);
                jitter(reconnect_delay(hint, &options, 0))
            }
            End::Failed(e) => {
                let rejected = matches!(
                    e,
                    Error::Api {
                        status: 401 | 403,
                        ..
                    }
                );
                shared.state.send_replace(if rejected {
                    ConnectionState::Rejected
                } else {
                    ConnectionState::Disconnected
                });
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(e));
                }
                if rejected {
                    jitter(options.backoff_max)
                } else {
                    let step = reconnect_delay(hint, &options, attempt);
                    attempt = attempt.saturating_add(1);
                    jitter(step)
                }
            }
        };
        tokio::time::sleep(delay).await;
        if *shared.state.borrow() != ConnectionState::Rejected {
            shared.state.send_replace(ConnectionState::Connecting);
        }
    }
}

/// The delay before reconnect number `attempt` (0 after a clean end): the
/// server's `retry:` hint if it sent one, else `backoff_min`, doubled per
/// failed attempt up to `backoff_max` (the hint is already bounded by it).
fn reconnect_delay(hint: Option<Duration>, options: &LocalOptions, attempt: u32) -> Duration {
    let base = hint.unwrap_or(options.backoff_min);
    base.saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(options.backoff_max)
}

/// A delay drawn from `[d/2, d]`.
fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

async fn connect_once(
    shared: &Shared,
    client: &Client,
    options: &LocalOptions,
    first: &mut Option<oneshot::Sender<Result<()>>>,
    attempt: &mut u32,
    resumable: &mut bool,
    hint: &mut Option<Duration>,
) -> End {
    let mut req = client
        .request(Method::GET, "/api/v1/stream")
        .header(header::ACCEPT, "text/event-stream");
    if *resumable {
        req = req.header("Last-Event-ID", shared.defs.load().seq.to_string());
    }
    let resp = match tokio::time::timeout(options.idle_timeout, req.send()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return End::Failed(e.into()),
        Err(_) => return End::Failed(Error::Transport("connect timed out".into())),
    };
    let mut resp = match check(resp).await {
        Ok(r) if r.status() == StatusCode::OK => r,
        Ok(r) => {
            return End::Failed(Error::Decode(format!(
                "stream answered {}",
                r.status().as_u16()
            )))
        }
        Err(e) => return End::Failed(e),
    };
    if *resumable {
        // A resumed stream may stay silent (nothing missed): the open
        // response is what says the definitions are current.
        shared.state.send_replace(ConnectionState::Connected);
        *attempt = 0;
    }
    let mut parser = Parser::new();
    loop {
        let chunk = match tokio::time::timeout(options.idle_timeout, resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => return End::Resync,
            Ok(Err(e)) => return End::Failed(e.into()),
            Err(_) => return End::Failed(Error::Transport("stream idle".into())),
        };
        let parsed = match parser.feed(&chunk) {
            Ok(p) => p,
            Err(e) => return End::Failed(Error::Decode(e.to_string())),
        };
        if let Some(ms) = parsed.retry_ms {
            // Bounded so a hostile hint cannot park the client for ever.
            *hint = Some(Duration::from_millis(ms).min(options.backoff_max));
        }
        for event in parsed.events {
            if event.event == "resync" {
                return End::Resync;
            }
            if let Err(e) = apply(shared, &event) {
                return End::Failed(e);
            }
            if event.event == "snapshot" {
                *resumable = true;
                if let Some(tx) = first.take() {
                    let _ = tx.send(Ok(()));
                }
                shared.state.send_replace(ConnectionState::Connected);
                *attempt = 0;
            }
        }
    }
}

/// Applies one stream event and tells the listeners.
fn apply(shared: &Shared, event: &Event) -> Result<()> {
    let bad = |e: serde_json::Error| Error::Decode(format!("{} event: {e}", event.event));
    let current = shared.defs.load_full();
    let (next, changes) = match event.event.as_str() {
        "snapshot" => {
            let data: SnapshotData = serde_json::from_str(&event.data).map_err(bad)?;
            let next = defs_of(data.seq, data.flags)?;
            let mut changes: Vec<Change> = next
                .flags
                .iter()
                .filter(|(k, v)| current.flags.get(*k) != Some(*v))
                .map(|(k, _)| change(k, ChangeKind::Updated, data.seq))
                .collect();
            changes.extend(
                current
                    .flags
                    .keys()
                    .filter(|k| !next.flags.contains_key(*k))
                    .map(|k| change(k, ChangeKind::Deleted, data.seq)),
            );
            (next, changes)
        }
        "flag_updated" => {
            #[derive(Deserialize)]
            struct Updated {
                seq: u64,
                flag: Value,
            }
            let data: Updated = serde_json::from_str(&event.data).map_err(bad)?;
            if data.seq <= current.seq {
                return Ok(());
            }
            let spec = spec_of(&data.flag)?;
            let key = spec.key.clone();
            let compiled = compile(spec).map_err(|e| Error::Decode(format!("flag {key}: {e}")))?;
            let mut flags = current.flags.clone();
            flags.insert(key.clone(), data.flag);
            let next = Defs {
                seq: data.seq,
                flags,
                snapshot: current.snapshot.with_flag(Arc::new(compiled)),
            };
            (next, vec![change(&key, ChangeKind::Updated, data.seq)])
        }
        "flag_deleted" => {
            #[derive(Deserialize)]
            struct Deleted {
                seq: u64,
                key: String,
            }
            let data: Deleted = serde_json::from_str(&event.data).map_err(bad)?;
            if data.seq <= current.seq {
                return Ok(());
            }
            let mut flags = current.flags.clone();
            flags.remove(&data.key);
            let next = Defs {
                seq: data.seq,
                flags,
                snapshot: current.snapshot.without_flag(&data.key),
            };
            (next, vec![change(&data.key, ChangeKind::Deleted, data.seq)])
        }
        // Unknown events are for newer clients.
        _ => return Ok(()),
    };
    // Only this task writes `defs`, so load-then-store loses nothing.
    shared.publish(next);
    let listeners: Vec<Listener> = lock(&shared.listeners).clone();
    for c in &changes {
        for f in &listeners {
            f(c);
        }
    }
    Ok(())
}

fn change(key: &str, kind: ChangeKind, seq: u64) -> Change {
    Change {
        key: key.to_string(),
        kind,
        seq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> LocalOptions {
        // The documented defaults: 250 ms to 30 s.
        LocalOptions::new("http://localhost", "t")
    }

    #[test]
    fn the_servers_retry_hint_is_the_reconnect_delay() {
        let o = options();
        let hint = Some(Duration::from_millis(3000));
        assert_eq!(reconnect_delay(hint, &o, 0), Duration::from_millis(3000));
        assert_eq!(reconnect_delay(None, &o, 0), Duration::from_millis(250));
    }

    #[test]
    fn repeated_failures_back_off_from_the_hint_up_to_the_maximum() {
        let o = options();
        let hint = Some(Duration::from_millis(3000));
        assert_eq!(reconnect_delay(hint, &o, 1), Duration::from_millis(6000));
        assert_eq!(reconnect_delay(hint, &o, 2), Duration::from_millis(12000));
        assert_eq!(reconnect_delay(hint, &o, 5), Duration::from_secs(30));
        assert_eq!(reconnect_delay(hint, &o, u32::MAX), Duration::from_secs(30));
        assert_eq!(reconnect_delay(None, &o, 3), Duration::from_millis(2000));
    }

    /// Definitions holding one boolean flag `f`, on or off.
    fn defs(seq: u64, on: bool) -> Defs {
        defs_of(
            seq,
            vec![json!({"key": "f", "enabled": true, "default_value": on})],
        )
        .unwrap()
    }

    fn on(shared: &Shared) -> bool {
        shared.with_defs(|d| d.is_enabled("f", &Context::with_targeting_key("u")))
    }

    #[test]
    fn a_thread_that_pinned_the_definitions_sees_the_next_publish_at_its_next_check() {
        let shared = Shared::new(defs(1, false));
        assert!(!on(&shared));
        shared.publish(defs(2, true));
        assert!(on(&shared));
        shared.publish(defs(3, false));
        assert!(!on(&shared));
        assert_eq!(shared.with_defs(|d| d.seq), 3);
    }

    #[test]
    fn a_publish_on_another_thread_reaches_a_thread_that_already_pinned() {
        let shared = Arc::new(Shared::new(defs(1, false)));
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let (tell, told) = std::sync::mpsc::channel::<bool>();
        let reader = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for () in asked {
                    tell.send(on(&shared)).unwrap();
                }
            })
        };
        ask.send(()).unwrap();
        assert!(!told.recv().unwrap());
        shared.publish(defs(2, true));
        ask.send(()).unwrap();
        assert!(told.recv().unwrap(), "the reader's pin was not refreshed");
        drop(ask);
        reader.join().unwrap();
    }

    #[test]
    fn checks_on_many_threads_during_publishes_never_go_back_and_end_on_the_last() {
        use std::sync::atomic::AtomicBool;
        let shared = Arc::new(Shared::new(defs(1, false)));
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (shared, done) = (shared.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut last = 0;
                    loop {
                        // Read `done` first: a check after it must see the last publish.
                        let finished = done.load(Ordering::Acquire);
                        let seq = shared.with_defs(|d| d.seq);
                        assert!(seq >= last, "went back from {last} to {seq}");
                        last = seq;
                        if finished {
                            return last;
                        }
                    }
                })
            })
            .collect();
        for seq in 2..=2000 {
            shared.publish(defs(seq, seq % 2 == 0));
        }
        done.store(true, Ordering::Release);
        for r in readers {
            assert_eq!(r.join().unwrap(), 2000);
        }
    }

    #[test]
    fn two_clients_checked_in_turn_on_one_thread_each_answer_from_their_own_flags() {
        let a = Shared::new(defs(1, true));
        let b = Shared::new(defs(1, false));
        for _ in 0..3 {
            assert!(on(&a));
            assert!(!on(&b));
        }
        b.publish(defs(2, true));
        assert!(on(&b));
        a.publish(defs(2, false));
        assert!(!on(&a));
    }

    #[test]
    fn a_check_made_while_the_thread_exits_answers_without_its_pin() {
        // A thread-local whose destructor checks a flag: it is registered
        // before the pin, so it is destroyed after it, when `PIN` is gone.
        struct CheckOnExit(Arc<Shared>, std::sync::mpsc::Sender<bool>);
        impl Drop for CheckOnExit {
            fn drop(&mut self) {
                let _ = self.1.send(on(&self.0));
            }
        }
        thread_local! {
            static ON_EXIT: RefCell<Option<CheckOnExit>> = const { RefCell::new(None) };
        }
        let shared = Arc::new(Shared::new(defs(1, true)));
        let (tx, rx) = std::sync::mpsc::channel();
        let s = shared.clone();
        std::thread::spawn(move || {
            ON_EXIT.with(|slot| *slot.borrow_mut() = Some(CheckOnExit(s.clone(), tx)));
            assert!(on(&s));
            s.publish(defs(2, false));
        })
        .join()
        .unwrap();
        assert!(!rx.recv().unwrap());
    }
}
