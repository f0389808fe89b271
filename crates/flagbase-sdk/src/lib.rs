//! Flagbase Rust SDK.
//!
//! Two clients:
//! * [`Client`] evaluates remotely (one HTTP request per call) and records
//!   metric events, for services that want no local state;
//! * [`LocalClient`] holds every flag definition in memory, kept current
//!   through `GET /api/v1/stream`, and evaluates in process with the same
//!   engine the server uses: no network per check. It needs a `server`
//!   token (definitions never go to `client` tokens).
//!
//! ```no_run
//! # async fn demo() -> flagbase_sdk::Result<()> {
//! use flagbase_sdk::{Context, LocalClient, LocalOptions};
//! let flags = LocalClient::init(LocalOptions::new("http://localhost:8080", "fbk_...")).await?;
//! let ctx = Context::with_targeting_key("user-42").with("plan", "pro");
//! if flags.is_enabled("new-checkout-ui", &ctx) { /* ... */ }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod local;
mod remote;
pub mod sse;

pub use error::{Error, Result};
pub use flagbase_engine::Context;
pub use local::{Change, ChangeKind, ConnectionState, LocalClient, LocalOptions, LocalSnapshot};
pub use remote::{Client, Evaluation};
