//! Integration tests: the real binary, real HTTP, temporary directories,
//! free ports. One test binary keeps link time down.

mod anomaly;
mod anomaly_audit;
mod buckets;
mod bus;
mod bus_async_nats;
mod bus_external;
mod bus_interop;
mod bus_side_by_side;
mod change_feed;
mod cli;
mod consistency;
mod console_api;
mod errors;
mod flags;
mod function_triggers;
mod functions;
mod gateway;
mod gateway_functions;
mod gateway_upstream;
mod hangup;
mod harness;
mod iam;
mod iam_abuse;
mod lifecycle;
mod nats_server;
mod ofrep_interop;
mod sdk_cross_check;
mod sdk_js;
mod sdk_js_live;
mod sdk_rust;
mod sdk_rust_stream;
mod sdk_snapshot;
mod store_contract;
mod stream;
