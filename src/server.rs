//! `flagbase start`: opens the store, builds the services, binds the
//! listeners, prints the banner, and runs every long-lived part until one
//! shared shutdown signal (SIGINT or SIGTERM) stops them in order.

use std::future::IntoFuture;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::flags::Flags;
use crate::http::{self, AppState, HttpOptions};
use crate::iam::Iam;
use crate::storage::sqlite::{OpenError, SqliteOptions};
use crate::storage::{SqliteStore, Store};
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
    #[error("cannot initialise identity and access: {0}")]
    Iam(crate::error::Error),
    #[error("cannot load flags: {0}")]
    Flags(crate::error::Error),
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
    let store: Arc<dyn Store> = Arc::new(
        tokio::task::spawn_blocking(move || SqliteStore::open(&db_options))
            .await
            .expect("database open task")?,
    );
    let iam = Arc::new(
        Iam::new(store.clone(), &config.iam)
            .await
            .map_err(StartError::Iam)?,
    );
    let flags = Arc::new(
        Flags::load(store.clone())
            .await
            .map_err(StartError::Flags)?,
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
    print_banner(&config, local, &iam);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(wait_for_signal(shutdown_tx));

    let state = AppState {
        iam,
        flags,
        store: store.clone(),
    };
    let router = http::router(
        state,
        &HttpOptions {
            max_body_bytes: usize::try_from(config.server.max_body_bytes).unwrap_or(usize::MAX),
        },
    );
    let result = serve_http(
        listener,
        router,
        shutdown_rx,
        config.server.shutdown_timeout.get(),
    )
    .await;
    store.close().await;
    tracing::info!("shutdown complete");
    result
}

/// Serves until shutdown, then lets in-flight requests finish for at most
/// `grace` before giving up on them.
async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    shutdown: watch::Receiver<bool>,
    grace: std::time::Duration,
) -> Result<(), StartError> {
    let mut signalled = shutdown.clone();
    let serving = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = signalled.wait_for(|stop| *stop).await;
    });
    let serving = serving.into_future();
    tokio::pin!(serving);
    let mut deadline = shutdown;
    tokio::select! {
        result = &mut serving => return result.map_err(StartError::Serve),
        _ = deadline.wait_for(|stop| *stop) => {}
    }
    match tokio::time::timeout(grace, serving).await {
        Ok(result) => result.map_err(StartError::Serve),
        Err(_) => {
            tracing::warn!(grace = ?grace, "in-flight requests did not finish in time; closing them");
            Ok(())
        }
    }
}

async fn wait_for_signal(tx: watch::Sender<bool>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
    let _ = tx.send(true);
}

fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// The short start-up summary on stdout (logs go to stderr).
fn print_banner(config: &Config, http: SocketAddr, iam: &Iam) {
    let reachable = if http.ip().is_unspecified() {
        format!("127.0.0.1:{}", http.port())
    } else {
        http.to_string()
    };
    let mut out = String::new();
    out.push_str(&format!("{}\n", version::long()));
    out.push_str(&format!("  http:     http://{http}\n"));
    out.push_str(&format!(
        "  bus:      nats://{}:{} (reserved; the embedded bus is not in this build yet)\n",
        config.server.host, config.events.nats_port
    ));
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
    }
    out.push_str("Ready. Stop with Ctrl-C.\n");
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}
