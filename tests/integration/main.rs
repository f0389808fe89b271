//! Integration tests: the real binary, real HTTP, temporary directories,
//! free ports. One test binary keeps link time down.

/// Runs a test against both paths a bodyless request can take: the
/// gateway's own HTTP/1 path and hyper's (`gateway.fast_path: false`).
/// Each keeps its own upstream connections. The test is an `async fn(fast: bool)`.
macro_rules! both_paths {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn own_http1() {
                super::$name(true).await
            }

            #[tokio::test]
            async fn hyper() {
                super::$name(false).await
            }
        }
    };
}

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
mod console_ui;
mod console_ui_platform;
mod errors;
mod flags;
mod function_triggers;
mod functions;
mod gateway;
mod gateway_direct;
mod gateway_functions;
mod gateway_h1;
mod gateway_pool;
mod gateway_upstream;
mod hangup;
mod harness;
mod iam;
mod iam_abuse;
mod lifecycle;
mod metrics_series;
mod metrics_tokens;
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
mod stream_expiry;
