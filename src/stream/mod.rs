//! The stream hub: turns the change feed into Server-Sent Events frames for
//! every connected client (`GET /api/v1/stream` with definitions, and the
//! OFREP change stream with `refetchEvaluation` notices), keeps a bounded
//! history for `Last-Event-ID` replay, and tells connections when their
//! credential was revoked or the server stops.
//!
//! One task (`run`) consumes the feed. Each change is encoded once, as
//! shared bytes, and handed to every client through one bounded broadcast
//! ring (`stream.client_buffer` messages): a client that falls further
//! behind than that is told to resync and closed, so a slow client never
//! slows the others and never grows memory. The hub also keeps the current
//! definition of every flag, so a new client's snapshot, its `seq` and its
//! subscription are taken at one point under one lock: nothing falls between
//! a snapshot and the first live event.
//!
//! Ids are the store's change numbers (`seq`). The history holds every flag
//! change with `seq > floor`; a client resuming from an id at or above the
//! floor gets exactly the changes it missed, otherwise a fresh snapshot.

mod config;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::error::Result;
use crate::events::{ChangeEvent, ChangeFeed, Received, Subject, Subscription};
use crate::flags::Flags;
use crate::model::AuditQuery;
use crate::storage::Store;
pub use config::StreamConfig;

/// One flag change, encoded once for every client.
#[derive(Debug)]
pub struct FlagChange {
    pub seq: u64,
    /// `event: flag_updated|flag_deleted`, for definition streams.
    pub frame: Bytes,
    /// The OFREP `refetchEvaluation` notice for this change.
    pub refetch: Bytes,
}

/// What the hub tells every connection.
#[derive(Debug)]
pub enum Message {
    Flag(Arc<FlagChange>),
    /// A credential stopped working: connections of this user (all of
    /// them) or of this token close.
    Revoked {
        user: Option<String>,
        token: Option<String>,
    },
    /// The hub lost track (it fell behind the feed): every client must
    /// resync.
    Resync,
    /// The server is stopping: every stream ends.
    Shutdown,
}

/// How a new connection starts.
pub enum Start {
    /// A full snapshot (`event: snapshot`), with its `seq`.
    Snapshot { seq: u64, frame: Bytes },
    /// Exactly the changes after the client's `Last-Event-ID`, in order.
    Replay(Vec<Arc<FlagChange>>),
}

struct State {
    /// The last change number the hub has seen (any subject).
    head: u64,
    /// The history holds every flag change with a larger `seq`.
    floor: u64,
    history: VecDeque<Arc<FlagChange>>,
    /// Every flag as the API shows it, by key.
    flags: BTreeMap<String, Value>,
    /// The snapshot frame for `head`, built on first demand.
    snapshot: Option<(u64, Bytes)>,
}

pub struct Hub {
    state: Mutex<State>,
    sender: broadcast::Sender<Arc<Message>>,
    config: StreamConfig,
}

impl Hub {
    /// Loads every flag and the current change number under the feed's
    /// commit turn, subscribed at that same point, and starts the task that
    /// follows the feed. `shutdown` turning true ends every stream.
    pub async fn start(
        feed: Arc<ChangeFeed>,
        store: Arc<dyn Store>,
        flags: Arc<Flags>,
        config: StreamConfig,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Arc<Hub>> {
        let (sender, _) = broadcast::channel(config.client_buffer.max(1));
        let hub = Arc::new(Hub {
            state: Mutex::new(State {
                head: 0,
                floor: 0,
                history: VecDeque::new(),
                flags: BTreeMap::new(),
                snapshot: None,
            }),
            sender,
            config,
        });
        let changes = hub.reload(&feed, store.as_ref(), None).await?;
        let follower = hub.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = follower.follow(changes, feed, store, flags) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
            follower.send(Message::Shutdown);
        });
        Ok(hub)
    }

    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// Registers a client: how it starts and its subscription, taken at one
    /// point. `last_event_id` is the id it has seen, if it resumes.
    pub fn join(&self, last_event_id: Option<u64>) -> (Start, broadcast::Receiver<Arc<Message>>) {
        let mut state = self.state.lock().expect("hub lock");
        let receiver = self.sender.subscribe();
        let start = match last_event_id {
            Some(id) if id >= state.floor && id <= state.head => Start::Replay(
                state
                    .history
                    .iter()
                    .filter(|c| c.seq > id)
                    .cloned()
                    .collect(),
            ),
            _ => {
                let head = state.head;
                let frame = match &state.snapshot {
                    Some((seq, frame)) if *seq == head => frame.clone(),
                    _ => {
                        let frame = snapshot_frame(head, &state.flags);
                        state.snapshot = Some((head, frame.clone()));
                        frame
                    }
                };
                Start::Snapshot { seq: head, frame }
            }
        };
        (start, receiver)
    }

    /// The last change number the hub has seen.
    pub fn head(&self) -> u64 {
        self.state.lock().expect("hub lock").head
    }

    /// Connected receivers (for logs and benchmarks).
    pub fn clients(&self) -> usize {
        self.sender.receiver_count()
    }

    fn send(&self, message: Message) {
        // An error only means nobody is connected.
        let _ = self.sender.send(Arc::new(message));
    }

    /// Follows the feed until it closes.
    async fn follow(
        &self,
        mut changes: Subscription,
        feed: Arc<ChangeFeed>,
        store: Arc<dyn Store>,
        flags: Arc<Flags>,
    ) {
        while let Some(received) = changes.recv().await {
            match received {
                Received::Event(event) => self.apply(&event, &flags),
                Received::Missed(n) => {
                    tracing::warn!(
                        missed = n,
                        "the stream hub fell behind the change feed; reloading and telling every client to resync"
                    );
                    match self.reload(&feed, store.as_ref(), Some(changes)).await {
                        Ok(fresh) => changes = fresh,
                        Err(e) => {
                            tracing::error!(error = %e, "the stream hub cannot reload the flags; streams stop");
                            self.send(Message::Shutdown);
                            return;
                        }
                    }
                    self.send(Message::Resync);
                }
            }
        }
    }

    /// Reads every flag and the current change number while holding the
    /// commit turn (no change can commit meanwhile), and subscribes at that
    /// point; the history restarts empty there.
    async fn reload(
        &self,
        feed: &ChangeFeed,
        store: &dyn Store,
        previous: Option<Subscription>,
    ) -> Result<Subscription> {
        let turn = feed.begin().await;
        drop(previous);
        let changes = feed.subscribe();
        let records = store.flags().await?;
        let head = store
            .audit(AuditQuery {
                limit: 1,
                ..AuditQuery::default()
            })
            .await?
            .first()
            .and_then(|r| r.seq)
            .unwrap_or(0);
        drop(turn);
        let mut state = self.state.lock().expect("hub lock");
        state.head = head.max(state.head);
        state.floor = state.head;
        state.history.clear();
        state.snapshot = None;
        state.flags = records
            .iter()
            .map(|r| (r.key.clone(), r.api_json()))
            .collect();
        Ok(changes)
    }

    /// Takes one change into the state and hands it to every client.
    fn apply(&self, event: &ChangeEvent, flags: &Flags) {
        let mut state = self.state.lock().expect("hub lock");
        state.head = state.head.max(event.seq);
        let message = match event.subject {
            Subject::FlagCreated
            | Subject::FlagUpdated
            | Subject::FlagToggled
            // The detector's disabling is a flag change like any other.
            | Subject::FlagDisabled
            | Subject::FlagDeleted => {
                let Some(key) = event.payload["key"].as_str() else {
                    return;
                };
                let frame = if event.subject == Subject::FlagDeleted {
                    state.flags.remove(key);
                    frame(
                        Some("flag_deleted"),
                        event.seq,
                        &json!({"seq": event.seq, "key": key, "version": event.payload["version"]}),
                    )
                } else {
                    let flag = &event.payload["flag"];
                    state.flags.insert(key.to_string(), flag.clone());
                    frame(
                        Some("flag_updated"),
                        event.seq,
                        &json!({"seq": event.seq, "flag": flag}),
                    )
                };
                // The snapshot was swapped before the change was published,
                // so the live tag already includes it.
                let refetch = refetch_frame(event.seq, &flags.live().tag);
                let change = Arc::new(FlagChange {
                    seq: event.seq,
                    frame,
                    refetch,
                });
                state.history.push_back(change.clone());
                while state.history.len() > self.config.history {
                    if let Some(old) = state.history.pop_front() {
                        state.floor = old.seq;
                    }
                }
                Message::Flag(change)
            }
            Subject::TokenDeleted => Message::Revoked {
                user: None,
                token: event.payload["id"].as_str().map(str::to_string),
            },
            Subject::UserDeleted => Message::Revoked {
                user: event.payload["id"].as_str().map(str::to_string),
                token: None,
            },
            // Every role may stream, so a role change never closes one;
            // creations change nothing here.
            _ => return,
        };
        // Sent under the lock, so `join` never sees a state without the
        // messages that led to it, nor messages already in its start.
        self.send(message);
    }
}

/// One SSE event: `event:` (if named), `id:` and one `data:` line of JSON.
fn frame(event: Option<&str>, id: u64, data: &Value) -> Bytes {
    let mut out = Vec::with_capacity(256);
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(format!("id: {id}\ndata: ").as_bytes());
    // Compact JSON never contains a raw line break, so one data line holds it.
    serde_json::to_writer(&mut out, data).expect("JSON values serialise");
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn snapshot_frame(seq: u64, flags: &BTreeMap<String, Value>) -> Bytes {
    let flags: Vec<&Value> = flags.values().collect();
    frame(Some("snapshot"), seq, &json!({"seq": seq, "flags": flags}))
}

/// The OFREP notice: an unnamed (`message`) event, as `EventSource`
/// listeners and the OFREP providers expect. `etag` is the flag
/// configuration's tag: every bulk `ETag` served after the change starts
/// with it.
pub fn refetch_frame(seq: u64, tag: &str) -> Bytes {
    frame(
        None,
        seq,
        &json!({"type": "refetchEvaluation", "etag": tag}),
    )
}

/// What a definition stream sends before it closes a client that fell
/// behind.
pub const RESYNC_SLOW: &[u8] = b"event: resync\ndata: {\"reason\":\"slow_consumer\"}\n\n";
/// What it sends when the hub itself lost track.
pub const RESYNC_RELOAD: &[u8] = b"event: resync\ndata: {\"reason\":\"reload\"}\n\n";
pub const HEARTBEAT: &[u8] = b": heartbeat\n\n";
