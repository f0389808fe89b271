//! The console's view of flag usage: when each flag was last evaluated and
//! how often recently, read from the exposure buckets the metrics recorder
//! writes (so it reaches back as far as `metrics.retention`).

use async_trait::async_trait;

use crate::error::Result;

#[derive(Clone, Debug, PartialEq)]
pub struct FlagUsage {
    pub flag_key: String,
    /// Start (unix seconds) of the newest bucket with an exposure.
    pub last_bucket: i64,
    /// Exposures in buckets starting at or after the `since` asked for.
    pub exposures_since: u64,
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Every flag with at least one stored exposure.
    async fn flag_usage(&self, since: i64) -> Result<Vec<FlagUsage>>;
}
