//! Integration tests: the real binary, real HTTP, temporary directories,
//! free ports. One test binary keeps link time down.

mod anomaly;
mod buckets;
mod bus;
mod change_feed;
mod cli;
mod consistency;
mod errors;
mod flags;
mod function_triggers;
mod functions;
mod hangup;
mod harness;
mod iam;
mod iam_abuse;
mod lifecycle;
mod ofrep_interop;
mod store_contract;
