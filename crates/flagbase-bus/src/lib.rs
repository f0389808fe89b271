//! The NATS client-protocol server behind Flagbase's embedded bus (issue 7),
//! self-contained: it never depends on the `flagbase` package, which supplies
//! authorisation through the [`Authorise`] hook.
//!
//! Implemented:
//! - [`codec`]: an incremental, allocation-bounded decoder of the client ops
//!   (`CONNECT` with its JSON, `PUB`, `HPUB`, `SUB` with queue groups, `UNSUB`
//!   with a maximum, `PING`, `PONG`, and the `INFO`/`+OK`/`-ERR` nats-server
//!   tolerates from clients) fed arbitrary chunks; control lines over 4096
//!   bytes, payloads over `max_payload` and bad sizes are refused as
//!   nats-server refuses them. The encoder of the server ops `INFO`, `MSG`,
//!   `HMSG`, `+OK`, `-ERR`, `PING`, `PONG`. No I/O.
//! - [`subject`]: subject and wildcard validation as nats-server does it.
//! - [`sublist`]: the subscription index matching a literal subject against
//!   subscriptions with `*` and `>`, with queue groups.
//! - [`server`]: the tokio server. `INFO` (proto 1, headers, no JetStream),
//!   authorisation of `CONNECT` and per-subject publish/subscribe permissions
//!   through the hook (with nats-server's `Authorization Violation` and
//!   `Permissions Violation for ...` errors, `... for Publish with Reply of`
//!   included; permission errors keep the connection), the
//!   `Authentication Timeout` for a client that sends no `CONNECT` in time
//!   when credentials are required, routing with wildcards and queue groups (one member per
//!   group, round robin), `echo: false`, verbose `+OK`, `PING`/`PONG` both
//!   ways with stale-connection cut-off, `UNSUB` with a maximum, the
//!   no-responders 503 for requests nobody subscribes to (so a JetStream
//!   request fails at once instead of hanging), a bounded outbound buffer per
//!   client with slow consumers cut off, and [`Handle::disconnect`] to cut a
//!   revoked principal's connections.
//!
//! Not implemented: JetStream, clustering, routes, gateways, leaf nodes,
//! websockets, MQTT, TLS, accounts, nkeys/JWT verification (the hook decides
//! credentials). Names (subjects, sids, queues) must be UTF-8, where nats-server
//! accepts any bytes.

pub mod codec;
pub mod server;
pub mod subject;
pub mod sublist;

pub use server::{AllowAll, Authorise, Handle, Options, Permissions, Server};
