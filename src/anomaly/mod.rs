//! The anomaly detector.

pub mod decide;
pub mod stats;
