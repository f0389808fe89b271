//! Flagbase's own bus connection: every change of the feed goes out on its
//! subject through one `async_nats` client, the same code whether the bus is
//! the embedded one or an external NATS server (`BusTarget`).
//!
//! Never blocking a write, never losing silently. Changes wait in a bounded
//! `Outbox` and leave it only once the bus has confirmed them: after each
//! batch the client publishes a marker to its own inbox, and NATS handles a
//! connection's messages in order, so the marker coming back means the
//! server has routed the batch. While the bus is unreachable (not yet
//! reached, restarting, a network cut) nothing is sent, the client
//! reconnects with backoff for ever, and the queue is sent in order once
//! it is back. A full queue drops its oldest change; every loss is counted
//! and logged with its size. A batch that failed half-way is sent again,
//! so around an outage a subscriber may see a change twice: `seq` tells.
//!
//! On an external server Flagbase's user therefore needs to publish on
//! `flagbase.>` and `_INBOX.>` and to subscribe to `_INBOX.>`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::Notify;

use super::outbox::Outbox;
use super::target::BusTarget;
use super::{ChangeEvent, Received, Subscription};

/// Changes sent before one delivery confirmation.
const BATCH: usize = 256;
/// The longest pause between reconnection attempts and between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct PublisherOptions {
    /// Changes kept while the bus is unreachable; then the oldest go.
    pub queue_capacity: usize,
    /// How long a batch may wait for the bus to confirm it.
    pub confirm_timeout: Duration,
}

/// The bus message of one change: the payload's fields with `seq`, `at`
/// and `actor` beside them.
pub fn message(event: &ChangeEvent) -> Value {
    let mut body = match &event.payload {
        Value::Object(map) => map.clone(),
        other => {
            let mut map = serde_json::Map::new();
            map.insert("payload".into(), other.clone());
            map
        }
    };
    body.insert("seq".into(), event.seq.into());
    body.insert(
        "at".into(),
        serde_json::to_value(event.at).unwrap_or(Value::Null),
    );
    body.insert("actor".into(), event.actor.clone().into());
    Value::Object(body)
}

/// The pause before reconnection attempt `attempts` (1-based): at once,
/// then doubling from 50 ms up to `MAX_BACKOFF`.
pub fn backoff(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exp = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(16);
    Duration::from_millis(50u64.saturating_mul(1 << exp)).min(MAX_BACKOFF)
}

/// Connects to `target` (in the background: this returns at once and the
/// client keeps trying), publishes every change of `changes` until `stop`
/// completes or the feed closes, then sends what is still queued if the bus
/// is reachable and reports what could not be.
pub async fn run(
    target: BusTarget,
    changes: Subscription,
    options: PublisherOptions,
    stop: impl Future<Output = ()>,
) {
    let wake = Arc::new(Notify::new());
    let client = match connect(&target, wake.clone()).await {
        Ok(client) => client,
        Err(e) => {
            // Only an address async-nats cannot use gets here; the
            // configuration was validated, so this is a bug to report.
            tracing::error!(bus = %target.display(), error = %e, "cannot set up the event bus connection; changes will not be published on it");
            return;
        }
    };
    let mut publisher = match Publisher::new(client, options, wake).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the event bus connection; changes will not be published on it");
            return;
        }
    };
    publisher.run(changes, stop).await;
}

async fn connect(
    target: &BusTarget,
    wake: Arc<Notify>,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let shown = target.display().to_string();
    let ever_connected = Arc::new(AtomicBool::new(false));
    target
        .connect_options()
        .name("flagbase")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(backoff)
        .event_callback(move |event| {
            let (wake, shown, ever) = (wake.clone(), shown.clone(), ever_connected.clone());
            async move {
                log_event(&shown, &event, &ever);
                wake.notify_one();
            }
        })
        .connect(target.address.as_str())
        .await
}

fn log_event(shown: &str, event: &async_nats::Event, ever_connected: &AtomicBool) {
    use async_nats::Event;
    match event {
        Event::Connected => {
            ever_connected.store(true, Ordering::Relaxed);
            tracing::info!(bus = shown, "connected to the event bus");
        }
        Event::Disconnected => tracing::warn!(
            bus = shown,
            "lost the event bus connection; changes are queued until it is back"
        ),
        Event::ClientError(e) => {
            if ever_connected.load(Ordering::Relaxed) {
                tracing::debug!(bus = shown, error = %e, "event bus reconnection attempt failed");
            } else {
                tracing::warn!(bus = shown, error = %e, "cannot reach the event bus yet; retrying");
            }
        }
        Event::ServerError(e) => {
            tracing::warn!(bus = shown, error = %e, "the event bus reported an error")
        }
        other => tracing::info!(bus = shown, event = %other, "event bus connection"),
    }
}

struct Publisher {
    client: async_nats::Client,
    outbox: Outbox<Arc<ChangeEvent>>,
    confirm_timeout: Duration,
    /// Woken on every connection event.
    wake: Arc<Notify>,
    marker_subject: String,
    markers: async_nats::Subscriber,
    marker: u64,
    /// Set from the first failed or impossible send until one succeeds.
    interrupted: bool,
    /// Set from the first overflow drop until the losses are reported.
    overflowing: bool,
}

impl Publisher {
    async fn new(
        client: async_nats::Client,
        options: PublisherOptions,
        wake: Arc<Notify>,
    ) -> Result<Publisher, async_nats::SubscribeError> {
        let marker_subject = client.new_inbox();
        let markers = client.subscribe(marker_subject.clone()).await?;
        Ok(Publisher {
            client,
            outbox: Outbox::new(options.queue_capacity),
            confirm_timeout: options.confirm_timeout,
            wake,
            marker_subject,
            markers,
            marker: 0,
            interrupted: false,
            overflowing: false,
        })
    }

    async fn run(&mut self, mut changes: Subscription, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut retries = 0usize;
        loop {
            while let Some(received) = changes.try_recv() {
                self.absorb(received);
            }
            if !self.outbox.is_empty() && self.connected() {
                if self.send_batch().await {
                    retries = 0;
                    continue;
                }
                retries += 1;
            }
            let retry = if self.outbox.is_empty() {
                None
            } else if self.connected() {
                Some(backoff(retries + 2))
            } else {
                // Connection events wake us; this only covers one that the
                // client dropped, or that came before its state changed.
                Some(Duration::from_secs(1))
            };
            tokio::select! {
                received = changes.recv() => match received {
                    Some(received) => self.absorb(received),
                    None => break,
                },
                () = self.wake.notified() => {}
                () = sleep_or_never(retry) => {}
                () = &mut stop => break,
            }
        }
        while let Some(received) = changes.try_recv() {
            self.absorb(received);
        }
        while !self.outbox.is_empty() && self.connected() && self.send_batch().await {}
        let unsent = self.outbox.len();
        let lost = self.outbox.lost_since_report();
        if unsent > 0 || lost > 0 {
            tracing::warn!(
                unsent,
                lost,
                "stopping with changes that never reached the event bus; bus subscribers will see a gap in seq"
            );
        }
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn absorb(&mut self, received: Received) {
        match received {
            Received::Event(event) => {
                if self.outbox.push(event) && !self.overflowing {
                    self.overflowing = true;
                    tracing::warn!(
                        queued = self.outbox.len(),
                        "the event bus queue is full (events.queue_capacity); dropping the oldest queued changes until the bus takes them"
                    );
                }
            }
            Received::Missed(n) => {
                self.outbox.count_lost(n);
                tracing::warn!(
                    missed = n,
                    "the bus publisher fell behind the change feed; {n} changes were not published"
                );
            }
        }
    }

    /// Sends the oldest queued changes and waits for the bus to confirm
    /// them; true when it did (they leave the queue).
    async fn send_batch(&mut self) -> bool {
        let batch = self.outbox.front(BATCH);
        match tokio::time::timeout(self.confirm_timeout, self.deliver(&batch)).await {
            Ok(Ok(())) => {
                self.outbox.confirm(batch.len());
                if self.interrupted {
                    self.interrupted = false;
                    tracing::info!(
                        sent = batch.len(),
                        queued = self.outbox.len(),
                        "the event bus takes changes again; sending the queued ones in order"
                    );
                }
                let lost = self.outbox.lost_since_report();
                if lost > 0 {
                    self.overflowing = false;
                    tracing::warn!(
                        lost,
                        lost_total = self.outbox.lost_total(),
                        "{lost} changes were dropped before reaching the event bus; bus subscribers see the gap in seq"
                    );
                }
                true
            }
            Ok(Err(reason)) => self.failed(reason),
            // Also what a server that refuses Flagbase's `_INBOX.>` traffic
            // looks like: the marker never comes back.
            Err(_) => self.failed(
                "the bus did not confirm the changes in time (Flagbase's NATS user must be allowed to publish and subscribe on _INBOX.>)".into(),
            ),
        }
    }

    fn failed(&mut self, reason: String) -> bool {
        if !self.interrupted {
            self.interrupted = true;
            tracing::warn!(
                queued = self.outbox.len(),
                reason,
                "cannot publish changes on the event bus; they stay queued and are retried"
            );
        }
        false
    }

    async fn deliver(&mut self, batch: &[Arc<ChangeEvent>]) -> Result<(), String> {
        for event in batch {
            let body = serde_json::to_vec(&message(event)).expect("JSON values serialise");
            self.client
                .publish(event.subject.as_str(), body.into())
                .await
                .map_err(|e| e.to_string())?;
        }
        self.marker += 1;
        let marker = self.marker.to_string();
        self.client
            .publish(self.marker_subject.clone(), marker.clone().into())
            .await
            .map_err(|e| e.to_string())?;
        // Markers of an earlier, abandoned batch may still arrive: skip them.
        loop {
            let msg = self
                .markers
                .next()
                .await
                .ok_or("the bus connection was closed")?;
            if msg.payload.as_ref() == marker.as_bytes() {
                return Ok(());
            }
        }
    }
}

async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_starts_at_once_and_is_capped() {
        assert_eq!(backoff(1), Duration::ZERO);
        assert_eq!(backoff(2), Duration::from_millis(50));
        assert_eq!(backoff(3), Duration::from_millis(100));
        assert_eq!(backoff(10), Duration::from_secs(5));
        assert_eq!(backoff(usize::MAX), Duration::from_secs(5));
    }
}
