//! `flagbase start`: opens the store, builds the services, binds the
//! listeners, prints the banner, and runs every long-lived part until one
//! shared shutdown signal (SIGINT or SIGTERM) stops them in order.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::anomaly::decide::{Action, Guard};
use crate::anomaly::{Detector, DetectorOptions};
use crate::config::Config;
use crate::events::publisher::PublisherOptions;
use crate::events::target::BusTarget;
use crate::events::{self, ChangeFeed};
use crate::flags::Flags;
use crate::gateway::Gateway;
use crate::http::{self, AppState, HttpOptions, ServeOptions};
use crate::iam::Iam;
use crate::storage::sqlite::{OpenError, SqliteOptions};
use crate::storage::{AnomalyStore, MetricStore, SqliteStore, Store};
use crate::version;

/// Why Flagbase could not start (as opposed to a failing request).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open database {0}")]
    Database(#[from] OpenError),
    #[error("cannot create storage directory {path}: {source}")]
    Storage {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("cannot start the event bus on {addr}: {reason}")]
    Bus { addr: String, reason: String },
    #[error("cannot initialise identity and access: {0}")]
    Iam(crate::error::Error),
    #[error("cannot load flags: {0}")]
    Flags(crate::error::Error),
    #[error("cannot load gateway routes: {0}")]
    Gateway(crate::error::Error),
    #[error("cannot start the function runtime: {0}")]
    Functions(String),
    #[error("cannot serve the console from ui.dev_dir {path}: {source}")]
    Console {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::AddrInUse => "address already in use".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        ErrorKind::AddrNotAvailable => "address not available on this machine".into(),
        _ => e.to_string(),
    }
}

pub async fn start(config: Config) -> Result<(), StartError> {
    let storage_path = &config.storage.base_path;
    std::fs::create_dir_all(storage_path).map_err(|source| StartError::Storage {
        path: storage_path.clone(),
        source,
    })?;
    let db_options = SqliteOptions {
        path: config.database.path.clone(),
        readers: config.database.readers,
        busy_timeout: config.database.busy_timeout.get(),
    };
    let sqlite: Arc<SqliteStore> = Arc::new(
        tokio::task::spawn_blocking(move || SqliteStore::open(&db_options))
            .await
            .expect("database open task")?,
    );
    let store: Arc<dyn Store> = sqlite.clone();
    let gateway_store: Arc<dyn crate::storage::gateway::GatewayStore> = sqlite.clone();
    let session_store: Arc<dyn crate::storage::sessions::SessionStore> = sqlite.clone();
    let usage_store: Arc<dyn crate::storage::usage::UsageStore> = sqlite.clone();
    // The change feed every service publishes its committed changes to.
    let feed = Arc::new(ChangeFeed::default());
    let iam = Arc::new(
        Iam::new(store.clone(), feed.clone(), &config.iam)
            .await
            .map_err(StartError::Iam)?,
    );
    let flags = Arc::new(
        Flags::load(store.clone(), feed.clone())
            .await
            .map_err(StartError::Flags)?,
    );

    // Request paths count into memory; a task moves the counts to the store.
    let metrics = Arc::new(
        crate::metrics::Recorder::new(config.metrics.bucket.get().as_secs())
            .counting_exposures(config.metrics.count_exposures),
    );
    let (buckets, functions) =
        start_functions(&config, sqlite.clone(), flags.clone(), metrics.clone()).await?;
    let gateway = Arc::new(
        Gateway::load(
            gateway_store,
            feed.clone(),
            flags.clone(),
            metrics.clone(),
            functions.clone(),
            usize::try_from(config.server.max_body_bytes).unwrap_or(usize::MAX),
            &config.gateway,
        )
        .await
        .map_err(StartError::Gateway)?,
    );

    let addr = format!("{}:{}", config.server.host, config.server.port);
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| StartError::Listen {
            addr: addr.clone(),
            reason: io_reason(&e),
        })?;
    let local = listener.local_addr().map_err(StartError::Serve)?;
    tracing::info!(addr = %local, "http listening");

    // Subscribed before anything can change, so every change reaches the bus.
    let to_publish = feed.subscribe();
    // An external NATS server, or the embedded bus started here.
    let (target, embedded) = match config.events.external() {
        Some(target) => {
            let target = target.expect("events.url was validated with the configuration");
            tracing::info!(
                bus = target.display(),
                "publishing to an external NATS server"
            );
            (target, None)
        }
        None => {
            let internal_token = random_token();
            let bus = bind_bus(&config, iam.clone(), internal_token.clone()).await?;
            let bus_addr = bus.local_addr().map_err(StartError::Serve)?;
            tracing::info!(addr = %format!("nats://{bus_addr}"), "bus listening");
            let target = BusTarget::embedded(&reachable(bus_addr), internal_token);
            (target, Some((bus, bus_addr)))
        }
    };
    let bus_shown = match &embedded {
        Some((_, addr)) => format!("nats://{addr}"),
        None => format!("external {}", target.display()),
    };
    print_banner(&config, local, &bus_shown, &iam);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(wait_for_signal(shutdown_tx));

    // The bus outlives HTTP: it stops once the last changes are published.
    let (bus_stop, bus_stopped) = tokio::sync::oneshot::channel::<()>();
    let bus_task = embedded.map(|(bus, _)| {
        tokio::spawn(events::bus::cut_revoked(bus.handle(), feed.subscribe()));
        tokio::spawn(bus.run(async move {
            let _ = bus_stopped.await;
        }))
    });
    // Function triggers subscribe with Flagbase's own credential, on the
    // same bus the publisher uses (embedded or external); the client keeps
    // trying in the background if that bus is not reachable yet.
    let trigger_client = target
        .connect_options()
        .name("flagbase-triggers")
        .retry_on_initial_connect()
        .connect(target.address.as_str())
        .await
        .map_err(|e| tracing::error!(error = %e, "cannot connect to the event bus; subject triggers will not run"))
        .ok();
    if let Some(client) = &trigger_client {
        buckets.attach_bus(client.clone());
    }
    let triggers = crate::functions::triggers::Triggers::start(
        functions.clone(),
        sqlite.clone(),
        trigger_client,
    )
    .await
    .map_err(|e| StartError::Functions(e.to_string()))?;
    let mut publisher_stop = shutdown_rx.clone();
    let publisher_options = PublisherOptions {
        queue_capacity: usize::try_from(config.events.queue_capacity).unwrap_or(usize::MAX),
        confirm_timeout: BUS_CONFIRM_TIMEOUT,
    };
    let publisher = tokio::spawn(events::publisher::run(
        target,
        to_publish,
        publisher_options,
        async move {
            let _ = publisher_stop.wait_for(|stop| *stop).await;
        },
    ));

    // The heartbeat must beat the listener's stall timeout, or an idle
    // stream would be cut as stalled.
    let mut stream_config = config.stream.clone();
    let idle = config.server.idle_timeout.get();
    if stream_config.heartbeat.get() >= idle {
        stream_config.heartbeat =
            crate::duration::HumanDuration::from_millis((idle.as_millis() / 2).max(1) as u64);
        tracing::info!(heartbeat = ?stream_config.heartbeat.get(), "stream.heartbeat lowered below server.idle_timeout");
    }
    let stream = crate::stream::Hub::start(
        feed.clone(),
        store.clone(),
        flags.clone(),
        stream_config,
        shutdown_rx.clone(),
    )
    .await
    .map_err(StartError::Flags)?;
    // A task moves the recorder's counts to the store until HTTP has
    // stopped, then once more.
    let (metric_store, anomaly_store): (Arc<dyn MetricStore>, Arc<dyn AnomalyStore>) =
        (sqlite.clone(), sqlite);
    let (flush_stop, flush_stopped) = tokio::sync::oneshot::channel::<()>();
    let flusher = tokio::spawn(crate::metrics::flush::run(
        metrics.clone(),
        metric_store.clone(),
        crate::metrics::flush::FlushOptions {
            interval: config.metrics.flush_interval.get(),
            retention: config.metrics.retention.get(),
        },
        async move {
            let _ = flush_stopped.await;
        },
    ));
    let metric_store_for_usage = metric_store.clone();
    let detector = Arc::new(Detector::new(
        store.clone(),
        metric_store,
        anomaly_store,
        flags.clone(),
        metrics.clone(),
        feed.clone(),
        detector_options(&config),
    ));
    if config.anomaly.enabled {
        let mut stop = shutdown_rx.clone();
        tokio::spawn(detector.clone().run(async move {
            let _ = stop.wait_for(|stop| *stop).await;
        }));
    }
    let ui = match &config.ui.dev_dir {
        Some(dir) => {
            let assets = http::UiAssets::new(Some(dir)).map_err(|source| StartError::Console {
                path: dir.clone(),
                source,
            })?;
            tracing::info!(dir = %dir.display(), "serving the console from ui.dev_dir");
            assets
        }
        None => http::UiAssets::default(),
    };
    let iam_for_sessions = iam.clone();
    let state = AppState {
        iam,
        flags,
        store: store.clone(),
        stream,
        buckets,
        functions,
        triggers,
        max_module_bytes: usize::try_from(config.functions.max_module_bytes).unwrap_or(usize::MAX),
        max_body_bytes: usize::try_from(config.server.max_body_bytes).unwrap_or(usize::MAX),
        metrics: metrics.clone(),
        detector,
        gateway,
        ui: Arc::new(ui),
        sessions: Arc::new(crate::iam::browser::BrowserSessions::new(
            iam_for_sessions,
            session_store,
            config.ui.session_ttl.get(),
        )),
        secure_cookie: config.ui.secure_cookie,
        usage: usage_store,
        metric_store: metric_store_for_usage,
    };
    let gateway_direct = http::GatewayDirect::new(state.clone());
    let router = http::router(
        state,
        &HttpOptions {
            max_body_bytes: usize::try_from(config.server.max_body_bytes).unwrap_or(usize::MAX),
        },
    );
    let serve_options = ServeOptions {
        header_read_timeout: config.server.header_read_timeout.get(),
        idle_timeout: config.server.idle_timeout.get(),
        max_connections: connection_cap(config.server.max_connections, open_file_limit()),
        shutdown_timeout: config.server.shutdown_timeout.get(),
        gateway_fast_path: config.gateway.fast_path,
    };
    http::serve(
        listener,
        router,
        Some(gateway_direct),
        serve_options,
        shutdown_rx,
    )
    .await;
    // No request records events any more: store the last of them.
    let _ = flush_stop.send(());
    let _ = flusher.await;
    // HTTP is done, so no more changes: publish what is left, then stop
    // the bus with its clients.
    // Bounded: a wedged client must not keep the process from exiting.
    if tokio::time::timeout(config.server.shutdown_timeout.get(), publisher)
        .await
        .is_err()
    {
        tracing::warn!(
            "the bus publisher did not finish in time; its last changes may be unpublished"
        );
    }
    let _ = bus_stop.send(());
    if let Some(bus_task) = bus_task {
        let _ = bus_task.await;
    }
    store.close().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// How long the bus may take to confirm a batch of changes before it is
/// sent again.
const BUS_CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Bucket storage under `storage.base_path` and the function runtime (its
/// compiled-artifact cache beside the buckets); active functions are
/// prepared before the listener opens, so the first call is warm.
async fn start_functions(
    config: &Config,
    sqlite: Arc<SqliteStore>,
    flags: Arc<Flags>,
    metrics: Arc<crate::metrics::Recorder>,
) -> Result<
    (
        Arc<crate::objects::Buckets>,
        Arc<crate::functions::Functions>,
    ),
    StartError,
> {
    use crate::functions::runtime::{Runtime, RuntimeOptions};
    let base = config.storage.base_path.clone();
    let objects: Arc<dyn crate::objects::ObjectStore> = Arc::new(
        crate::objects::fs::FsObjectStore::open(&base).map_err(|source| StartError::Storage {
            path: base.clone(),
            source,
        })?,
    );
    let f = &config.functions;
    let runtime = Runtime::new(&RuntimeOptions {
        max_concurrency: f.max_concurrency,
        max_memory: f.max_memory_limit,
        max_stack: usize::try_from(f.max_stack_bytes).unwrap_or(usize::MAX),
        cache_dir: base.join("cache").join("functions"),
    })
    .map_err(StartError::Functions)?;
    let functions = Arc::new(
        crate::functions::Functions::load(
            sqlite,
            objects.clone(),
            flags,
            Arc::new(runtime),
            metrics,
            f.clone(),
        )
        .await
        .map_err(|e| StartError::Functions(e.to_string()))?,
    );
    functions.warm().await;
    let buckets = Arc::new(crate::objects::Buckets::new(
        objects,
        usize::try_from(config.storage.max_object_bytes).unwrap_or(usize::MAX),
    ));
    Ok((buckets, functions))
}

fn detector_options(config: &Config) -> DetectorOptions {
    let a = &config.anomaly;
    DetectorOptions {
        interval: a.interval.get(),
        window: a.window.get(),
        retention: config.metrics.retention.get(),
        accept_unknown_flags: config.metrics.accept_unknown_flags,
        defaults: Guard {
            metric: crate::metrics::ERROR.into(),
            max_count: a.max_errors,
            min_sample: a.min_sample,
            alpha: a.alpha,
            action: Action::Disable,
            control: None,
            treatment: None,
        },
    }
}

/// Binds the embedded bus on `events.host:events.nats_port`.
async fn bind_bus(
    config: &Config,
    iam: Arc<Iam>,
    internal_token: String,
) -> Result<flagbase_bus::Server, StartError> {
    let addr = format!("{}:{}", config.events.host, config.events.nats_port);
    let fail = |reason: String| StartError::Bus {
        addr: addr.clone(),
        reason,
    };
    let socket = tokio::net::lookup_host(&addr)
        .await
        .map_err(|e| fail(io_reason(&e)))?
        .next()
        .ok_or_else(|| fail("the host resolves to no address".into()))?;
    let anonymous = config.events.allow_anonymous.allows(socket.ip());
    if anonymous && !socket.ip().is_loopback() {
        tracing::warn!(addr = %socket, "the event bus admits anonymous clients on a non-loopback address (events.allow_anonymous: true)");
    }
    let mut options = flagbase_bus::Options::new(socket);
    options.version = version::VERSION.to_string();
    options.limits.max_payload = usize::try_from(config.events.max_payload).unwrap_or(usize::MAX);
    let auth = events::bus::BusAuth::new(iam, anonymous, internal_token);
    flagbase_bus::Server::bind(options, Arc::new(auth))
        .await
        .map_err(|e| fail(io_reason(&e)))
}

/// The credential Flagbase's own bus connection presents; new each start.
fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a client on this machine reaches a listener bound to `addr`.
fn reachable(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// File descriptors kept back from connections: the database and its WAL,
/// the listener, logs, and a margin for what later components open.
const RESERVED_FILES: u64 = 64;

/// The configured connection cap, lowered to what the open-file limit
/// allows: past it `accept` fails and nobody, not even `/health`, gets in;
/// under it excess connections are closed and the rest keep working.
fn connection_cap(configured: u32, open_files: Option<u64>) -> u32 {
    let Some(limit) = open_files else {
        return configured;
    };
    let allowed = u32::try_from(limit.saturating_sub(RESERVED_FILES).max(1)).unwrap_or(u32::MAX);
    if allowed < configured {
        tracing::warn!(
            configured,
            serving = allowed,
            open_file_limit = limit,
            "server.max_connections is above what the open-file limit allows; raise `ulimit -n` to serve more"
        );
        return allowed;
    }
    configured
}

/// The soft limit on open files, where the platform tells us (Linux).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&limits)
}

fn parse_open_file_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    // "Max open files  1024  524288  files": the soft limit comes first.
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

async fn wait_for_signal(tx: watch::Sender<bool>) {
    #[cfg(unix)]
    let term = async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?
            .recv()
            .await;
        Ok(())
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<std::io::Result<()>>();
    tokio::select! {
        _ = signal("SIGINT", tokio::signal::ctrl_c()) => {}
        _ = signal("SIGTERM", term) => {}
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
    let _ = tx.send(true);
}

/// Resolves when `received` does. A handler that cannot be installed is
/// logged and never resolves: the server keeps serving, and the other
/// signal may still stop it.
async fn signal(name: &str, received: impl Future<Output = std::io::Result<()>>) {
    if let Err(e) = received.await {
        tracing::warn!(signal = name, error = %e, "cannot listen for {name}; it will not stop the server");
        std::future::pending::<()>().await;
    }
}

fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// The short start-up summary on stdout (logs go to stderr).
fn print_banner(config: &Config, http: SocketAddr, bus: &str, iam: &Iam) {
    let reachable = reachable(http);
    let mut out = String::new();
    out.push_str(&format!("{}\n", version::long()));
    out.push_str(&format!("  http:     http://{http}\n"));
    out.push_str(&format!("  bus:      {bus}\n"));
    out.push_str(&format!("  console:  http://{reachable}/ui/\n"));
    out.push_str(&format!(
        "  database: {}\n",
        absolute(&config.database.path)
    ));
    out.push_str(&format!(
        "  storage:  {}\n",
        absolute(&config.storage.base_path)
    ));
    if let Some(token) = iam.pending_setup_token() {
        out.push_str(&format!(
            "\nNo admin exists yet. Create the first one within {} with this one-time setup token:\n  setup token: {token}\n  curl -X POST http://{reachable}/setup -H 'Content-Type: application/json' \\\n    -d '{{\"token\":\"{token}\",\"email\":\"admin@example.com\",\"password\":\"<at least 8 characters>\"}}'\nor, from a shell on this machine: flagbase user create --role admin --email admin@example.com --password-stdin\n",
            crate::duration::HumanDuration(iam.setup_token_ttl())
        ));
        out.push_str(&format!(
            "or open the console: http://{reachable}/ui/setup?token={token}\n"
        ));
    }
    out.push_str("Ready. Stop with Ctrl-C.\n");
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn regression_a_signal_handler_that_fails_to_install_does_not_stop_the_server() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut waiting = std::pin::pin!(async {
            tokio::select! {
                _ = signal("SIGINT", async { Err(std::io::Error::other("no handler")) }) => {}
                _ = signal("SIGTERM", async { rx.await.map_err(std::io::Error::other) }) => {}
            }
        });
        // The failed handler resolves at once; before the fix that was
        // taken as a signal. A correct wait is still pending after it.
        assert!(futures_poll_once(waiting.as_mut()).await.is_pending());
        tx.send(()).unwrap();
        waiting.await;
    }

    /// Polls a future exactly once.
    async fn futures_poll_once<F: Future + Unpin>(f: F) -> std::task::Poll<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut f).poll(cx))).await
    }

    #[test]
    fn the_connection_cap_stays_under_the_open_file_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_open_file_limit(limits), Some(1024));
        assert_eq!(connection_cap(10_000, Some(1024)), 1024 - 64);
        assert_eq!(connection_cap(100, Some(1024)), 100);
        assert_eq!(connection_cap(100, Some(10)), 1);
        assert_eq!(connection_cap(100, None), 100);
    }
}
