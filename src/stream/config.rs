//! `stream.*`: the SSE stream's settings, validated here by their owner.

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// A comment line this often on an idle stream, so proxies and the
    /// server's own stall timeout see it alive (kept under
    /// `server.idle_timeout`).
    pub heartbeat: HumanDuration,
    /// Flag changes kept for `Last-Event-ID` replay; a client that missed
    /// more gets a fresh snapshot.
    pub history: usize,
    /// Messages one client may fall behind before it is told to resync and
    /// closed.
    pub client_buffer: usize,
    /// The reconnection delay suggested to clients (`retry:`).
    pub retry: HumanDuration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            heartbeat: HumanDuration::from_secs(15),
            history: 10_000,
            client_buffer: 1024,
            retry: HumanDuration::from_secs(3),
        }
    }
}

impl StreamConfig {
    /// Rejects values that parse but cannot work: `(key, message)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let heartbeat = self.heartbeat.get();
        if heartbeat.is_zero() || heartbeat > std::time::Duration::from_secs(3600) {
            return Err(("stream.heartbeat", "must be between 1ms and 1h".into()));
        }
        if !(1..=1_000_000).contains(&self.history) {
            return Err(("stream.history", "must be between 1 and 1000000".into()));
        }
        if !(1..=65_536).contains(&self.client_buffer) {
            return Err(("stream.client_buffer", "must be between 1 and 65536".into()));
        }
        if self.retry.get() > std::time::Duration::from_secs(3600) {
            return Err(("stream.retry", "must be at most 1h".into()));
        }
        Ok(())
    }
}
