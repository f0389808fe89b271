//! One connection's outbound buffer: publishers append encoded ops without
//! waiting for the socket, one writer drains it, and a client whose backlog
//! passes `max_pending` is cut off as a slow consumer instead of blocking
//! publishers or growing memory.
//!
//! Before that point there is flow control, as in nats-server: once the
//! backlog passes half of `max_pending` (the high-water mark), a publisher
//! that delivered to it stops reading its own socket until the backlog
//! drains below the mark or a short stall limit passes, so a fast publisher
//! is slowed to its subscriber's pace instead of getting it cut off.

use std::sync::Mutex;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Notify};

use super::Message;
use crate::codec::{encode_hmsg, encode_msg};

/// Buffer capacity a connection keeps between bursts.
const KEEP_CAPACITY: usize = 256 * 1024;

pub(crate) struct Outbox {
    id: u64,
    max_pending: usize,
    state: Mutex<State>,
    wake: Notify,
    /// Signalled each time the writer has written a batch.
    drained: Notify,
    closed: watch::Sender<bool>,
}

/// What appending to an open outbox found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pushed {
    /// Nothing was pending before: the writer may be idle and needs a wake.
    pub first: bool,
    /// The backlog is now past the high-water mark (half of `max_pending`).
    pub over_high_water: bool,
}

struct State {
    pending: Vec<u8>,
    closed: bool,
}

impl Outbox {
    pub(crate) fn new(id: u64, max_pending: usize) -> Self {
        Outbox {
            id,
            max_pending,
            state: Mutex::new(State {
                pending: Vec::new(),
                closed: false,
            }),
            wake: Notify::new(),
            drained: Notify::new(),
            closed: watch::Sender::new(false),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Appends what `encode` writes and wakes the writer; false if the
    /// connection is closed or has just been cut off as a slow consumer.
    pub(crate) fn push(&self, encode: impl FnOnce(&mut Vec<u8>)) -> bool {
        match self.append(encode) {
            Some(pushed) => {
                if pushed.first {
                    self.wake();
                }
                true
            }
            None => false,
        }
    }

    /// Appends what `encode` writes without waking the writer: when
    /// [`Pushed::first`] says so, the caller must call [`Outbox::wake`]
    /// (after a whole read's messages, say). `None` if the connection is
    /// closed or has just been cut off as a slow consumer.
    fn append(&self, encode: impl FnOnce(&mut Vec<u8>)) -> Option<Pushed> {
        let mut state = self.state.lock().expect("outbox lock");
        if state.closed {
            return None;
        }
        let first = state.pending.is_empty();
        encode(&mut state.pending);
        let pending = state.pending.len();
        if pending > self.max_pending {
            // The backlog is dropped, not flushed: it is what overflowed.
            state.pending = Vec::new();
            state.closed = true;
            drop(state);
            self.closed.send_replace(true);
            self.wake();
            return None;
        }
        Some(Pushed {
            first,
            over_high_water: pending > self.max_pending / 2,
        })
    }

    /// Lets the writer run: output is pending.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Whether the backlog is past the high-water mark (half of
    /// `max_pending`) on an open connection.
    pub(crate) fn over_high_water(&self) -> bool {
        let state = self.state.lock().expect("outbox lock");
        !state.closed && state.pending.len() > self.max_pending / 2
    }

    /// Resolves once the backlog is back under the high-water mark or the
    /// connection closed; callers bound the wait.
    pub(crate) async fn below_high_water(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            // Registered before the check, so no write is missed.
            drained.as_mut().enable();
            if !self.over_high_water() {
                return;
            }
            drained.await;
        }
    }

    /// Appends a message for subscription `sid`; see [`Outbox::append`] for
    /// waking the writer.
    pub(crate) fn push_msg(&self, sid: &str, msg: &Message<'_>) -> Option<Pushed> {
        self.append(|out| match msg.headers {
            None => encode_msg(msg.subject, sid, msg.reply, msg.payload, out),
            Some(headers) => encode_hmsg(msg.subject, sid, msg.reply, headers, msg.payload, out),
        })
    }

    /// Appends a message for subscription `sid` and wakes the writer.
    pub(crate) fn send_msg(&self, sid: &str, msg: &Message<'_>) -> bool {
        let pushed = self.push_msg(sid, msg);
        if pushed.is_some_and(|pushed| pushed.first) {
            self.wake();
        }
        pushed.is_some()
    }

    /// Stops accepting output; what is pending is still written.
    pub(crate) fn close(&self) {
        self.state.lock().expect("outbox lock").closed = true;
        self.closed.send_replace(true);
        self.wake.notify_one();
    }

    /// Resolves once the connection is closed, from either side.
    pub(crate) fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// Writes pending output until the outbox is closed and drained, or the
    /// socket fails.
    pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(&self, mut socket: W) {
        let mut writing = Vec::new();
        loop {
            let closed = {
                let mut state = self.state.lock().expect("outbox lock");
                std::mem::swap(&mut state.pending, &mut writing);
                state.closed
            };
            if !writing.is_empty() {
                if socket.write_all(&writing).await.is_err() {
                    self.close();
                    self.drained.notify_waiters();
                    return;
                }
                writing.clear();
                // A burst's buffer is not kept: an idle connection holds
                // little, however large its last backlog was.
                if writing.capacity() > KEEP_CAPACITY {
                    writing = Vec::new();
                }
                self.drained.notify_waiters();
            } else if closed {
                let _ = socket.shutdown().await;
                return;
            } else {
                self.wake.notified().await;
            }
        }
    }
}
