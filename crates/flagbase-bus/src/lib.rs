//! The NATS client-protocol pieces of Flagbase's embedded bus (issue 7).
//!
//! Implemented so far:
//! - [`codec`]: an incremental, allocation-bounded decoder of the client ops
//!   (`CONNECT` with its JSON, `PUB`, `HPUB`, `SUB` with queue groups, `UNSUB`
//!   with a maximum, `PING`, `PONG`, and the `INFO`/`+OK`/`-ERR` nats-server
//!   tolerates from clients) fed arbitrary chunks, refusing long control
//!   lines, big payloads and bad sizes with nats-server's `-ERR` texts; and
//!   the encoder of the server ops `INFO`, `MSG`, `HMSG`, `+OK`, `-ERR`,
//!   `PING`, `PONG`.
//! - [`subject`]: subject and wildcard validation as nats-server does it.
//! - [`sublist`]: the subscription index matching a literal subject against
//!   subscriptions with `*` and `>`, with queue groups.
//!
//! Not implemented yet: the tokio server (accepting connections, routing
//! messages, permissions through the binary's authorisation hook, keepalive,
//! slow-consumer cut-off, no-responders), and, by design, JetStream,
//! clustering, leaf nodes and TLS.
//!
//! The crate never depends on the `flagbase` package, and its codec does no
//! I/O: it turns bytes into ops and ops into bytes.

pub mod codec;
pub mod server;
pub mod subject;
pub mod sublist;

pub use server::{AllowAll, Authorise, Options, Permissions, Server};
