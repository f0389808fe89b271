//! Flagbase: a single-binary, local-first platform where feature flags are
//! first-class. The binary (`main.rs`) parses the command line and builds the
//! `Config`; everything else lives in this library so tests can reach it.

pub mod anomaly;
pub mod config;
pub mod duration;
pub mod error;
pub mod evaluation_context;
pub mod events;
pub mod flags;
pub mod functions;
pub mod gateway;
pub mod http;
pub mod iam;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod objects;
pub mod request_head;
pub mod server;
pub mod storage;
pub mod stream;
pub mod unit_of_work;
pub mod version;
