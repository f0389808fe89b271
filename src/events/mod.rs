//! The in-process change feed: every change committed through the services
//! leaves here as a `ChangeEvent`, in commit order, numbered by the store's
//! change sequence. It is the port the NATS bus (`bus`) and the SSE stream
//! (not built yet) consume, each holding a `Subscription`.
//!
//! Order. A writer takes the feed's commit turn (`begin`) before it writes
//! to the store and publishes while still holding it, so no two changes made
//! in this process can commit in one order and leave in the other: events
//! leave in `seq` order. Every service that changes state (flags, IAM) takes
//! the same turn inside its "commit + follow-up" unit of work, which runs to
//! completion even if the client hangs up, so a committed change is always
//! published.
//!
//! Never blocking a write. Publishing is a send on a bounded
//! `tokio::sync::broadcast` channel: it never waits and never fails the
//! write. A subscriber that falls more than `capacity` events behind loses
//! the oldest ones and is told how many (`Received::Missed`); it can also
//! see the jump in `seq`. Changes made by another process on the same
//! database (the `flagbase user create` CLI) take numbers too but are not
//! published here, so they show as such a jump; a consumer that must not
//! miss anything re-reads the store when it sees one.

pub mod bus;
mod change;
mod outbox;
pub mod publisher;
pub mod target;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{broadcast, watch, Mutex, MutexGuard};

pub use change::{ChangeEvent, Subject};

/// How many events a subscriber may fall behind before it misses some.
pub const DEFAULT_CAPACITY: usize = 4096;

pub struct ChangeFeed {
    turn: Mutex<()>,
    sender: broadcast::Sender<Arc<ChangeEvent>>,
    /// The highest `seq` published, 0 before any.
    last_seq: AtomicU64,
    /// How many commit turns have been taken; lets a test wait until a
    /// change is under way instead of sleeping.
    turns: watch::Sender<u64>,
}

/// The right to commit one change and publish it; held from before the
/// store write until after the publish. Dropping it without publishing
/// (the change failed) publishes nothing.
pub struct CommitTurn<'a> {
    feed: &'a ChangeFeed,
    _turn: MutexGuard<'a, ()>,
}

/// What a subscriber receives next.
#[derive(Clone, Debug, PartialEq)]
pub enum Received {
    Event(Arc<ChangeEvent>),
    /// The subscriber fell behind and this many events were dropped for it;
    /// the next event's `seq` says from where it resumes.
    Missed(u64),
}

/// One consumer's view of the feed, from the moment it subscribed.
pub struct Subscription {
    receiver: broadcast::Receiver<Arc<ChangeEvent>>,
}

impl ChangeFeed {
    /// A feed whose subscribers may each fall `capacity` events behind.
    pub fn new(capacity: usize) -> ChangeFeed {
        let (sender, _) = broadcast::channel(capacity.max(1));
        ChangeFeed {
            turn: Mutex::new(()),
            sender,
            last_seq: AtomicU64::new(0),
            turns: watch::Sender::new(0),
        }
    }

    /// Waits for the commit turn. While it is held no other change made
    /// through this feed commits, so a consumer may also take it to read the
    /// store and `subscribe` at one consistent point.
    pub async fn begin(&self) -> CommitTurn<'_> {
        let turn = self.turn.lock().await;
        self.turns.send_modify(|n| *n += 1);
        CommitTurn {
            feed: self,
            _turn: turn,
        }
    }

    /// Events published from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            receiver: self.sender.subscribe(),
        }
    }

    /// The `seq` of the last event published by this process, 0 before any.
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// Counts commit turns taken (see the field).
    pub fn turns_taken(&self) -> watch::Receiver<u64> {
        self.turns.subscribe()
    }
}

impl Default for ChangeFeed {
    fn default() -> Self {
        ChangeFeed::new(DEFAULT_CAPACITY)
    }
}

impl CommitTurn<'_> {
    /// Hands the committed change to every subscriber; never waits.
    pub fn publish(self, event: ChangeEvent) {
        let previous = self.feed.last_seq.swap(event.seq, Ordering::AcqRel);
        // Numbers are taken in commit order and commits happen under this
        // turn, so they can only grow (by more than one when another
        // process wrote in between).
        if event.seq <= previous {
            tracing::error!(
                seq = event.seq,
                previous,
                subject = event.subject.as_str(),
                "change published out of sequence order"
            );
        }
        // An error only means nobody is subscribed: nothing to deliver.
        let _ = self.feed.sender.send(Arc::new(event));
    }
}

impl Subscription {
    /// The next event, or how many were missed; `None` once the feed is
    /// gone (the process is shutting down).
    pub async fn recv(&mut self) -> Option<Received> {
        match self.receiver.recv().await {
            Ok(event) => Some(Received::Event(event)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Received::Missed(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// Like `recv`, without waiting: `None` when nothing is pending.
    pub fn try_recv(&mut self) -> Option<Received> {
        match self.receiver.try_recv() {
            Ok(event) => Some(Received::Event(event)),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Received::Missed(n)),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests;
