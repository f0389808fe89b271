//! Runs the bus alone, admitting everyone: for trying it with any NATS client
//! and for benchmarks against nats-server.
//! Usage: `cargo run --release -p flagbase-bus --example serve -- 127.0.0.1:4222`

use std::sync::Arc;

use flagbase_bus::{AllowAll, Options, Server};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4222".into())
        .parse()
        .expect("usage: serve <host:port>");
    let server = Server::bind(Options::new(addr), Arc::new(AllowAll)).await?;
    eprintln!("listening on {}", server.local_addr()?);
    server
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
