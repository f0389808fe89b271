//! One connection's outbound buffer: publishers append encoded ops without
//! waiting for the socket, one writer drains it, and a client whose backlog
//! passes `max_pending` is cut off as a slow consumer instead of blocking
//! publishers or growing memory.
//!
//! Before that point there is flow control, as in nats-server: once the
//! backlog passes the high-water mark (`Options::high_water`, at most half
//! of `max_pending`, nats-server's mark), a publisher
//! that delivered to it stops reading its own socket until the backlog
//! drains below the mark or a short stall limit passes, so a fast publisher
//! is slowed to its subscriber's pace instead of getting it cut off.
//!
//! Who writes: a connection's own writer task, or, when it is idle, the
//! connection that just delivered to it. At the end of each read, a reader
//! writes what it queued for an idle destination itself, with one
//! non-blocking `writev` (as nats-server flushes from the reading
//! goroutine); only what the socket does not take at once is left to the
//! writer task. That saves a task wake-up per hop, which is what a
//! request/reply round trip with one request in flight is made of. One
//! writer at a time (`State::writing` is non-zero while one holds the socket),
//! so bytes leave in the order queued.
//!
//! The backlog is a queue of 64 KiB chunks, not one growing buffer: the
//! writer takes at most about 1 MiB of them per `writev`, so memory is the
//! backlog itself (no second buffer being written, no doubling slack), and a
//! stalled publisher resumes as soon as the writer has drained below the
//! mark instead of after the whole backlog.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex};

use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{watch, Notify};

use super::Message;
use crate::codec::{encode_hmsg, encode_msg};

/// Size of the chunks the backlog is made of; a larger message gets a chunk
/// of its own size.
const CHUNK: usize = 64 * 1024;
/// Bytes the writer takes per `writev`, so the high-water mark is checked
/// again soon.
const MAX_WRITE: usize = 1024 * 1024;
/// Slices per `writev` (Linux takes up to 1024).
const MAX_SLICES: usize = 64;
/// Written chunks a connection keeps for reuse; the rest are freed, so an
/// idle connection holds at most this many.
const KEEP_CHUNKS: usize = 2;

pub(crate) struct Outbox {
    id: u64,
    max_pending: usize,
    high_water: usize,
    state: Mutex<State>,
    /// The socket's write half, shared by the writer task and direct
    /// flushes; taken (and so, once the last flush has let go of it, shut
    /// down) when the writer is done.
    socket: Mutex<Option<Arc<OwnedWriteHalf>>>,
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
    /// The backlog is now past the high-water mark.
    pub over_high_water: bool,
}

struct State {
    /// The backlog, oldest first; the writer takes from the front.
    chunks: VecDeque<Vec<u8>>,
    /// Bytes in `chunks`.
    queued: usize,
    /// Bytes the writer task or a direct flush has taken and not finished
    /// writing; while it is non-zero nobody else may write to the socket.
    writing: usize,
    /// Empty chunks for reuse.
    spare: Vec<Vec<u8>>,
    closed: bool,
}

impl State {
    /// What counts against `max_pending`: queued or being written.
    fn pending(&self) -> usize {
        self.queued + self.writing
    }
}

impl Outbox {
    pub(crate) fn new(
        id: u64,
        max_pending: usize,
        high_water: usize,
        socket: OwnedWriteHalf,
    ) -> Self {
        Outbox {
            id,
            max_pending,
            high_water,
            state: Mutex::new(State {
                chunks: VecDeque::new(),
                queued: 0,
                writing: 0,
                spare: Vec::new(),
                closed: false,
            }),
            socket: Mutex::new(Some(Arc::new(socket))),
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
        // Control ops (PONG, +OK, -ERR...) are short; a longer one may grow
        // its chunk, which is rare.
        match self.append(256, encode) {
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
    /// `size` is about what `encode` writes: the chunk it goes to has room
    /// for it, so a chunk is never reallocated (and copied) by growing.
    fn append(&self, size: usize, encode: impl FnOnce(&mut Vec<u8>)) -> Option<Pushed> {
        let mut state = self.state.lock().expect("outbox lock");
        if state.closed {
            return None;
        }
        let first = state.chunks.is_empty();
        let state = &mut *state;
        let chunk = match state.chunks.back_mut() {
            Some(chunk) if chunk.capacity() - chunk.len() >= size => chunk,
            _ => {
                let chunk = match state.spare.pop() {
                    Some(chunk) if size <= CHUNK => chunk,
                    _ => Vec::with_capacity(size.max(CHUNK)),
                };
                state.chunks.push_back(chunk);
                state.chunks.back_mut().expect("just pushed")
            }
        };
        let before = chunk.len();
        encode(chunk);
        state.queued += chunk.len() - before;
        let pending = state.pending();
        if pending > self.max_pending {
            // The backlog is dropped, not flushed: it is what overflowed.
            state.chunks = VecDeque::new();
            state.spare = Vec::new();
            state.queued = 0;
            state.closed = true;
            self.closed.send_replace(true);
            self.wake();
            return None;
        }
        Some(Pushed {
            first,
            over_high_water: pending > self.high_water,
        })
    }

    /// Lets the writer run: output is pending.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Whether the backlog is past the high-water mark on an open
    /// connection.
    pub(crate) fn over_high_water(&self) -> bool {
        let state = self.state.lock().expect("outbox lock");
        !state.closed && state.pending() > self.high_water
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
        let size = msg.subject.len()
            + sid.len()
            + msg.reply.map_or(0, str::len)
            + msg.headers.map_or(0, <[u8]>::len)
            + msg.payload.len()
            + 48;
        self.append(size, |out| match msg.headers {
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

    /// Writes what is queued now from the caller's task, if nobody is
    /// writing and the socket takes it without waiting; whatever it does
    /// not take (or everything, if the writer task is busy) is left to the
    /// writer task, which is woken for it.
    pub(crate) fn flush_or_wake(&self) {
        let Some(socket) = self.socket.lock().expect("outbox socket lock").clone() else {
            return;
        };
        let mut batch = {
            let mut state = self.state.lock().expect("outbox lock");
            if state.writing > 0 || state.chunks.is_empty() {
                drop(state);
                self.wake();
                return;
            }
            take_batch(&mut state)
        };
        let written = try_write_batch(&socket, &batch);
        let mut state = self.state.lock().expect("outbox lock");
        state.writing = 0;
        match written {
            Ok(written) => {
                // What the socket did not take goes back to the front, in
                // order, for the writer task.
                let mut left = written;
                let mut unwritten = Vec::new();
                for mut chunk in batch.drain(..) {
                    if left >= chunk.len() {
                        left -= chunk.len();
                        recycle(&mut state, chunk);
                    } else {
                        chunk.drain(..left);
                        left = 0;
                        unwritten.push(chunk);
                    }
                }
                for chunk in unwritten.into_iter().rev() {
                    state.queued += chunk.len();
                    state.chunks.push_front(chunk);
                }
                let more = !state.chunks.is_empty() || state.closed;
                drop(state);
                self.drained.notify_waiters();
                if more {
                    self.wake();
                }
            }
            Err(_) => {
                drop(state);
                self.close();
                self.drained.notify_waiters();
            }
        }
    }

    /// Writes pending output until the outbox is closed and drained, or the
    /// socket fails.
    pub(crate) async fn write_loop(&self) {
        let Some(socket) = self.socket.lock().expect("outbox socket lock").clone() else {
            return;
        };
        loop {
            let (mut batch, closed) = {
                let mut state = self.state.lock().expect("outbox lock");
                if state.writing > 0 {
                    // A direct flush is writing; it wakes us when done.
                    (Vec::new(), false)
                } else {
                    (take_batch(&mut state), state.closed)
                }
            };
            if !batch.is_empty() {
                let result = write_all_vectored(&socket, &batch).await;
                let mut state = self.state.lock().expect("outbox lock");
                state.writing = 0;
                if result.is_err() {
                    drop(state);
                    self.close();
                    self.drained.notify_waiters();
                    break;
                }
                for chunk in batch.drain(..) {
                    recycle(&mut state, chunk);
                }
                drop(state);
                self.drained.notify_waiters();
            } else if closed {
                break;
            } else {
                self.wake.notified().await;
            }
        }
        // The write half shuts down once the last direct flush holding it
        // lets go (tokio shuts it down when it is dropped).
        self.socket.lock().expect("outbox socket lock").take();
    }
}

/// Takes up to `MAX_WRITE` bytes (at most `MAX_SLICES` chunks) from the
/// front of the backlog; they count as being written.
fn take_batch(state: &mut State) -> Vec<Vec<u8>> {
    let mut batch = Vec::new();
    let mut size = 0;
    while size < MAX_WRITE && batch.len() < MAX_SLICES {
        let Some(chunk) = state.chunks.pop_front() else {
            break;
        };
        size += chunk.len();
        batch.push(chunk);
    }
    state.queued -= size;
    state.writing = size;
    batch
}

/// Keeps a written chunk for reuse, up to `KEEP_CHUNKS`; chunks grown by
/// a large message are not kept.
fn recycle(state: &mut State, mut chunk: Vec<u8>) {
    if state.spare.len() < KEEP_CHUNKS && chunk.capacity() == CHUNK {
        chunk.clear();
        state.spare.push(chunk);
    }
}

/// One non-blocking `writev` of the batch: how many bytes the socket took
/// (0 when it is full).
fn try_write_batch(socket: &OwnedWriteHalf, chunks: &[Vec<u8>]) -> io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); MAX_SLICES];
    for (slice, chunk) in slices.iter_mut().zip(chunks) {
        *slice = IoSlice::new(chunk);
    }
    match socket.try_write_vectored(&slices[..chunks.len().min(MAX_SLICES)]) {
        Ok(0) => Err(io::ErrorKind::WriteZero.into()),
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

/// Writes every byte of `chunks`, in order, with as few `writev` calls as
/// the socket allows.
async fn write_all_vectored(socket: &OwnedWriteHalf, chunks: &[Vec<u8>]) -> io::Result<()> {
    // Position: chunk `index`, byte `offset` in it.
    let (mut index, mut offset) = (0, 0);
    loop {
        while index < chunks.len() && offset == chunks[index].len() {
            index += 1;
            offset = 0;
        }
        if index == chunks.len() {
            return Ok(());
        }
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let mut count = 0;
        for (at, chunk) in chunks[index..].iter().enumerate().take(MAX_SLICES) {
            let from = if at == 0 { offset } else { 0 };
            slices[count] = IoSlice::new(&chunk[from..]);
            count += 1;
        }
        socket.writable().await?;
        let mut written = match socket.try_write_vectored(&slices[..count]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        while written > 0 {
            let left = chunks[index].len() - offset;
            if written < left {
                offset += written;
                written = 0;
            } else {
                written -= left;
                index += 1;
                offset = 0;
            }
        }
    }
}
