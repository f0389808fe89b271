//! The flush task: moves what the `Recorder` aggregated in memory into the
//! metric store every `metrics.flush_interval`, and deletes buckets older
//! than `metrics.retention`. A failed write puts the counts back, so they
//! are retried with the next flush instead of lost; the last flush runs
//! after HTTP has stopped, so a clean restart loses no recorded event.

use std::sync::Arc;
use std::time::Duration;

use super::{now_secs, Recorder};
use crate::error::Result;
use crate::storage::MetricStore;

pub struct FlushOptions {
    pub interval: Duration,
    pub retention: Duration,
}

/// How often old buckets are looked for: retention is usually days, so a
/// minute late is nothing; a short retention (tests) is checked oftener.
fn prune_every(retention: Duration) -> Duration {
    Duration::from_secs(60).min(retention / 4)
}

/// Stores everything recorded so far; returns how many aggregates.
pub async fn flush(recorder: &Recorder, store: &dyn MetricStore) -> Result<usize> {
    let (deltas, dropped) = recorder.drain();
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "metric events were dropped: too many distinct (flag, variant, type, bucket) keys between two flushes"
        );
    }
    let n = deltas.len();
    if n == 0 {
        return Ok(0);
    }
    if let Err(e) = store.add_buckets(deltas.clone()).await {
        recorder.restore(deltas);
        return Err(e);
    }
    Ok(n)
}

/// Deletes buckets that ended before `retention` ago.
pub async fn prune(store: &dyn MetricStore, retention: Duration) -> Result<u64> {
    let keep = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    store.prune_buckets(now_secs().saturating_sub(keep)).await
}

/// Flushes every `interval` until `stop` resolves, then once more.
pub async fn run(
    recorder: Arc<Recorder>,
    store: Arc<dyn MetricStore>,
    options: FlushOptions,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    let mut ticker = tokio::time::interval(options.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = &mut stop => break,
        }
        if let Err(e) = flush(&recorder, store.as_ref()).await {
            tracing::warn!(error = %e, "cannot store metric events; retrying with the next flush");
        }
        if last_prune.is_none_or(|t| t.elapsed() >= prune_every(options.retention)) {
            last_prune = Some(tokio::time::Instant::now());
            match prune(store.as_ref(), options.retention).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "old metric buckets deleted"),
                Err(e) => tracing::warn!(error = %e, "cannot delete old metric buckets"),
            }
        }
    }
    if let Err(e) = flush(&recorder, store.as_ref()).await {
        tracing::error!(error = %e, "cannot store the last metric events before shutdown; they are lost");
    }
}
