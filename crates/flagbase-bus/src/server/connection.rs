//! One client connection: sends `INFO`, decodes the client's ops, applies
//! them (authorisation, subscriptions, publishing, keepalive), and writes the
//! answers through the connection's [`Outbox`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::Interest;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::time::{interval_at, Instant};

use super::outbox::Outbox;
use super::routes::RouteCache;
use super::{Destinations, Message, Permissions, Shared, Subscription};
use crate::codec::{
    encode_err, encode_info, encode_ok, encode_ping, encode_pong, Connect, Decoder, Info, OpRef,
};
use crate::subject::{is_valid_publish_subject, is_valid_subject};

const READ_BUFFER: usize = 64 * 1024;
/// How long a publisher waits for one stalled subscriber before reading on
/// (nats-server stalls a producer for at most a second too); past that the
/// subscriber's backlog grows to `max_pending` and it is cut off.
const MAX_STALL: std::time::Duration = std::time::Duration::from_secs(1);

/// What a `CONNECT` settled.
struct Session {
    permissions: Arc<dyn Permissions>,
    verbose: bool,
    pedantic: bool,
    echo: bool,
    headers: bool,
    no_responders: bool,
}

struct Connection {
    shared: Arc<Shared>,
    outbox: Arc<Outbox>,
    session: Option<Session>,
    subs: HashMap<String, Arc<Subscription>>,
    pings_out: u32,
    /// Subscribers past their high-water mark that this connection's last
    /// messages reached: it reads nothing more until they drain.
    stalled: Vec<Arc<Outbox>>,
    /// Connections this one delivered to whose writers are not woken yet.
    wake: Vec<Arc<Outbox>>,
    /// Where this connection's recent subjects go.
    routes: RouteCache,
}

pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let options = &shared.options;
    let high_water = options.high_water.min(options.max_pending / 2);
    let (reader, writer) = stream.into_split();
    let outbox = Arc::new(Outbox::new(id, options.max_pending, high_water, writer));

    let mut info = Info::new(shared.server_id.clone(), shared.options.version.clone());
    info.server_name = shared.options.server_name.clone();
    info.host = shared.options.addr.ip().to_string();
    info.port = shared.options.addr.port();
    info.max_payload = shared.options.limits.max_payload;
    info.client_id = id;
    info.client_ip = Some(peer.ip().to_string());
    info.auth_required = shared.authorise.auth_required();
    outbox.push(|out| encode_info(&info, out));

    let mut connection = Connection {
        shared,
        outbox: outbox.clone(),
        session: None,
        subs: HashMap::new(),
        pings_out: 0,
        stalled: Vec::new(),
        wake: Vec::new(),
        routes: RouteCache::default(),
    };
    // Reading and writing run in this one task. Dropping it (on server
    // shutdown) closes the read half; the write half, which direct flushes
    // share through the outbox, shuts down when the last holder lets go.
    tokio::join!(connection.read_loop(reader), outbox.write_loop());
}

impl Connection {
    async fn read_loop(&mut self, reader: OwnedReadHalf) {
        let mut decoder = Decoder::new(self.shared.options.limits);
        let mut buffer = vec![0u8; READ_BUFFER];
        let period = self.shared.options.ping_interval;
        let mut pings = interval_at(Instant::now() + period, period);
        let mut closed = self.outbox.closed();
        // Only armed when credentials are required, as in nats-server; a
        // CONNECT (or any op, decided as one) disarms it.
        let auth_required = self.shared.authorise.auth_required();
        let auth_deadline = tokio::time::sleep(self.shared.options.auth_timeout);
        tokio::pin!(auth_deadline);
        loop {
            let read = tokio::select! {
                read = read_some(&reader, &mut buffer) => read,
                _ = &mut auth_deadline, if auth_required && self.session.is_none() => {
                    self.outbox.push(|out| encode_err("Authentication Timeout", out));
                    break;
                }
                _ = pings.tick() => {
                    if self.pings_out >= self.shared.options.max_pings_out {
                        self.outbox.push(|out| encode_err("Stale Connection", out));
                        break;
                    }
                    self.pings_out += 1;
                    self.outbox.push(encode_ping);
                    continue;
                }
                _ = closed.wait_for(|closed| *closed) => break,
            };
            let n = match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut at = 0;
            let mut stop = false;
            loop {
                let op = match decoder.next(&buffer[..n], &mut at) {
                    Ok(Some(op)) => op,
                    Ok(None) => break,
                    Err(err) => {
                        if let Some(text) = err.err_text() {
                            self.outbox.push(|out| encode_err(text, out));
                        }
                        stop = true;
                        break;
                    }
                };
                if self.apply(op).is_break() {
                    stop = true;
                    break;
                }
                // Flow control, op by op: a read can hold many messages, and
                // not reading on is what slows the publisher. The writers of
                // what this read delivered are woken first, so they drain.
                if !self.stalled.is_empty() {
                    self.wake_writers();
                    for outbox in std::mem::take(&mut self.stalled) {
                        let _ = tokio::time::timeout(MAX_STALL, outbox.below_high_water()).await;
                    }
                }
            }
            // One wake-up per destination for the whole read, not one per
            // message.
            self.wake_writers();
            if stop {
                break;
            }
        }
        self.unsubscribe_all();
        self.shared.forget(self.outbox.id());
        self.outbox.close();
    }

    fn apply(&mut self, op: OpRef<'_>) -> ControlFlow<()> {
        if self.session.is_none() {
            if let OpRef::Connect(connect) = &op {
                return self.connect(connect, true);
            }
            // Like nats-server without auth, a client may skip CONNECT; it
            // then gets the defaults, and no +OK for the CONNECT it never sent.
            let defaults = serde_json::from_str::<Connect>("{}").expect("empty CONNECT parses");
            self.connect(&defaults, false)?;
        }
        match op {
            // A second CONNECT does not re-authenticate, as in nats-server.
            OpRef::Connect(_) => self.ok(),
            OpRef::Ping => {
                self.outbox.push(encode_pong);
            }
            OpRef::Pong => self.pings_out = 0,
            OpRef::Err(_) => return ControlFlow::Break(()),
            OpRef::Pub {
                subject,
                reply,
                headers,
                payload,
            } => self.publish(subject, reply, headers, payload)?,
            OpRef::Sub {
                subject,
                queue,
                sid,
            } => self.subscribe(subject, queue, sid),
            OpRef::Unsub { sid, max } => self.unsubscribe(sid, max.unwrap_or(0)),
        }
        ControlFlow::Continue(())
    }

    fn connect(&mut self, connect: &Connect, sent: bool) -> ControlFlow<()> {
        // nats-server's checks, in its order, before authentication.
        if !(0..=1).contains(&connect.protocol) {
            self.err("invalid client protocol");
            return ControlFlow::Break(());
        }
        if connect.no_responders && !connect.headers {
            self.err("no responders requires headers support");
            return ControlFlow::Break(());
        }
        let Some(permissions) = self.shared.authorise.connect(connect) else {
            self.outbox
                .push(|out| encode_err("Authorization Violation", out));
            return ControlFlow::Break(());
        };
        self.shared.admit(&self.outbox, &permissions);
        self.session = Some(Session {
            permissions,
            verbose: connect.verbose,
            pedantic: connect.pedantic,
            echo: connect.echo,
            headers: connect.headers,
            no_responders: connect.no_responders,
        });
        if sent {
            self.ok();
        }
        ControlFlow::Continue(())
    }

    fn session(&self) -> &Session {
        self.session
            .as_ref()
            .expect("ops are applied after CONNECT")
    }

    fn ok(&self) {
        if self.session().verbose {
            self.outbox.push(encode_ok);
        }
    }

    fn err(&self, text: &str) {
        self.outbox.push(|out| encode_err(text, out));
    }

    fn publish(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> ControlFlow<()> {
        let session = self.session();
        // nats-server closes a client that sends HPUB without announcing
        // headers.
        if headers.is_some() && !session.headers {
            return ControlFlow::Break(());
        }
        // An empty header block is relayed as a plain MSG, as nats-server does.
        let headers = headers.filter(|headers| !headers.is_empty());
        // nats-server only complains (when pedantic) and still routes the
        // message, its tokens taken literally: `*.x` reaches `*.x` and `>`
        // subscribers, never `flagbase.x`. Checked against nats-server 2.9.
        if session.pedantic && !is_valid_publish_subject(subject) {
            self.err("Invalid Publish Subject");
        }
        if !session.permissions.may_publish(subject) {
            self.err(&format!("Permissions Violation for Publish to {subject:?}"));
            return ControlFlow::Continue(());
        }
        if let Some(reply) = reply {
            if !session.permissions.may_reply_to(reply) {
                self.err(&format!(
                    "Permissions Violation for Publish with Reply of {reply:?}"
                ));
                return ControlFlow::Continue(());
            }
        }
        self.ok();
        let msg = Message {
            subject,
            reply,
            headers,
            payload,
        };
        let (echo, no_responders) = (session.echo, session.headers && session.no_responders);
        let matches = self.routes.matches(&self.shared, subject);
        let delivered = self.shared.route(
            matches,
            &msg,
            self.outbox.id(),
            echo,
            &mut Destinations {
                wake: &mut self.wake,
                stalled: &mut self.stalled,
            },
        );
        if delivered == 0 && no_responders {
            if let Some(reply) = reply {
                self.no_responders(subject, reply);
            }
        }
        ControlFlow::Continue(())
    }

    /// Flushes (or, when their writer is busy, wakes the writer of) every
    /// connection this one delivered to since the last call.
    fn wake_writers(&mut self) {
        for outbox in self.wake.drain(..) {
            outbox.flush_or_wake();
        }
    }

    /// Tells a requester at once that nobody will answer, on the first of its
    /// own (non-queue) subscriptions that matches the reply subject, with the
    /// header block nats-server sends.
    fn no_responders(&self, subject: &str, reply: &str) {
        let matches = self
            .shared
            .subs
            .read()
            .expect("sublist lock")
            .matches(reply);
        let Some(sub) = matches
            .plain
            .iter()
            .find(|sub| sub.outbox.id() == self.outbox.id())
        else {
            return;
        };
        let headers = format!("NATS/1.0 503\r\nNats-Subject: {subject}\r\n\r\n");
        let msg = Message {
            subject: reply,
            reply: None,
            headers: Some(headers.as_bytes()),
            payload: &[],
        };
        sub.outbox.send_msg(&sub.sid, &msg);
    }

    fn subscribe(&mut self, subject: &str, queue: Option<&str>, sid: &str) {
        // Queue names are not checked, as in nats-server.
        if !is_valid_subject(subject) {
            self.err("Invalid Subject");
            return;
        }
        if !self.session().permissions.may_subscribe(subject, queue) {
            let text = match &queue {
                None => format!("Permissions Violation for Subscription to {subject:?}"),
                Some(queue) => format!(
                    "Permissions Violation for Subscription to {subject:?} using queue {queue:?}"
                ),
            };
            self.err(&text);
            return;
        }
        // A repeated sid keeps the first subscription, as in nats-server,
        // unless that one has had its last message (UNSUB with a maximum).
        let live = self.subs.get(sid).is_some_and(|sub| {
            let max = sub.max.load(Ordering::Relaxed);
            max == 0 || sub.delivered.load(Ordering::Relaxed) < max
        });
        if !live {
            let sub = Arc::new(Subscription {
                outbox: self.outbox.clone(),
                sid: sid.into(),
                subject: subject.into(),
                queue: queue.map(Into::into),
                max: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
            });
            self.shared.edit_subs(|subs| {
                subs.insert(&sub.subject, sub.queue.as_deref(), sub.clone())
                    .expect("subject validated above");
            });
            self.subs.insert(sid.into(), sub);
        }
        self.ok();
    }

    fn unsubscribe(&mut self, sid: &str, max: u64) {
        if let Some(sub) = self.subs.get(sid) {
            if max > 0 && max > sub.delivered.load(Ordering::Relaxed) {
                sub.max.store(max, Ordering::Relaxed);
            } else if let Some(sub) = self.subs.remove(sid) {
                self.shared.edit_subs(|subs| {
                    subs.remove(&sub.subject, sub.queue.as_deref(), &sub);
                });
            }
        }
        self.ok();
    }

    fn unsubscribe_all(&mut self) {
        if self.subs.is_empty() {
            return;
        }
        let subs = &mut self.subs;
        self.shared.edit_subs(|index| {
            for (_, sub) in subs.drain() {
                index.remove(&sub.subject, sub.queue.as_deref(), &sub);
            }
        });
    }
}

/// Reads what the socket holds, waiting until it holds something.
///
/// A read that comes back shorter than the buffer has emptied the socket's
/// receive queue, so it also clears the socket's readiness: the next call
/// waits for the poller straight away instead of first asking the kernel
/// again only to hear "would block". That saves a system call per read on
/// request/reply, where every read is one small message. Nothing is lost:
/// bytes that arrive after the read raise a new readiness event (tokio's
/// poller is edge-triggered), which clearing the older one leaves in place.
async fn read_some(reader: &OwnedReadHalf, buffer: &mut [u8]) -> std::io::Result<usize> {
    loop {
        reader.readable().await?;
        let mut read = 0;
        let outcome = reader.as_ref().try_io(Interest::READABLE, || {
            read = reader.try_read(buffer)?;
            if read > 0 && read < buffer.len() {
                // Drained: report "would block" so the readiness is cleared.
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            Ok(read)
        });
        match outcome {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && read > 0 => return Ok(read),
            // Spurious readiness: nothing to read after all; wait again.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}
