//! The NATS-protocol server on tokio: accepts connections, asks the binary's
//! [`Authorise`] hook who may do what, and routes messages between
//! subscriptions through the shared [`Sublist`].

mod connection;
mod outbox;
mod routes;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::codec::{Connect, Limits};
use crate::sublist::{Matches, Sublist};
use outbox::Outbox;

/// How the server listens and the limits it applies to every client.
#[derive(Debug, Clone)]
pub struct Options {
    pub addr: SocketAddr,
    /// Announced in `INFO` as `server_name`; also the prefix of `server_id`.
    pub server_name: String,
    pub version: String,
    pub limits: Limits,
    /// How often the server pings an idle client.
    pub ping_interval: Duration,
    /// Pings left unanswered before the client is cut off as stale.
    pub max_pings_out: u32,
    /// When credentials are required, how long a client has to send its
    /// `CONNECT` before it gets `-ERR 'Authentication Timeout'` and is cut
    /// off (nats-server's `auth_timeout`, 2 s by default).
    pub auth_timeout: Duration,
    /// Bytes that may wait for one client's socket before it is cut off as a
    /// slow consumer (nats-server's `max_pending`, 64 MiB by default).
    pub max_pending: usize,
    /// The high-water mark: a backlog past which a publisher delivering to
    /// the client stops being read until it drains (flow control). Capped
    /// at half of `max_pending`, nats-server's mark; 8 MiB by default, which
    /// keeps a subscriber fed while holding far less memory per slow
    /// subscriber than nats-server's 32 MiB.
    pub high_water: usize,
}

impl Options {
    pub fn new(addr: SocketAddr) -> Self {
        Options {
            addr,
            server_name: "flagbase".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            limits: Limits::default(),
            ping_interval: Duration::from_secs(120),
            max_pings_out: 2,
            auth_timeout: Duration::from_secs(2),
            max_pending: 64 * 1024 * 1024,
            high_water: 8 * 1024 * 1024,
        }
    }
}

/// The hook through which the binary decides who may connect, and what each
/// connection may publish and subscribe to.
pub trait Authorise: Send + Sync + 'static {
    /// Whether `INFO` tells clients that credentials are required.
    fn auth_required(&self) -> bool;
    /// Admits a client with the permissions it gets, or refuses it (the
    /// client then gets `-ERR 'Authorization Violation'`). A client that
    /// sends another op before any `CONNECT` is decided as `CONNECT {}`.
    fn connect(&self, connect: &Connect) -> Option<Arc<dyn Permissions>>;
}

/// What one admitted connection may do.
pub trait Permissions: Send + Sync {
    fn may_publish(&self, subject: &str) -> bool;
    fn may_subscribe(&self, subject: &str, queue: Option<&str>) -> bool;
    /// Whether the connection may ask for replies on `reply` (the reply
    /// subject of a `PUB`). A responder publishes its answer there on the
    /// requester's behalf, so by default a connection may only ask for
    /// replies where it may publish itself; otherwise it gets
    /// `Permissions Violation for Publish with Reply of "<reply>"` and the
    /// message is dropped, as nats-server does for the reply subjects it
    /// reserves.
    fn may_reply_to(&self, reply: &str) -> bool {
        self.may_publish(reply)
    }
    /// Who the connection acts for (a user id, say), so that
    /// [`Handle::disconnect`] can cut that principal's connections when its
    /// credentials are revoked. Anonymous connections have none.
    fn principal(&self) -> Option<&str> {
        None
    }
}

/// Admits everyone to everything: for tests and trusted loopback use.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authorise for AllowAll {
    fn auth_required(&self) -> bool {
        false
    }
    fn connect(&self, _: &Connect) -> Option<Arc<dyn Permissions>> {
        Some(Arc::new(AllowAll))
    }
}

impl Permissions for AllowAll {
    fn may_publish(&self, _: &str) -> bool {
        true
    }
    fn may_subscribe(&self, _: &str, _: Option<&str>) -> bool {
        true
    }
}

/// A bound, not yet running, server.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// Acts on a running server from outside it.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

/// An admitted connection, as the server tracks it for [`Handle`].
pub(crate) struct Admitted {
    outbox: Arc<Outbox>,
    permissions: Arc<dyn Permissions>,
}

/// One subscription of one connection, as filed in the shared index.
pub(crate) struct Subscription {
    outbox: Arc<Outbox>,
    sid: String,
    subject: String,
    queue: Option<String>,
    /// 0 for no maximum; set by `UNSUB <sid> <max>`.
    max: AtomicU64,
    delivered: AtomicU64,
}

impl PartialEq for Subscription {
    fn eq(&self, other: &Self) -> bool {
        self.outbox.id() == other.outbox.id() && self.sid == other.sid
    }
}

/// What every connection task shares.
pub(crate) struct Shared {
    options: Options,
    authorise: Arc<dyn Authorise>,
    server_id: String,
    subs: RwLock<Sublist<Arc<Subscription>>>,
    /// Bumped by every change to `subs`, so that connections know when what
    /// they cached from it is stale.
    generation: AtomicU64,
    admitted: Mutex<HashMap<u64, Admitted>>,
    next_client_id: AtomicU64,
    /// Round-robin over queue-group members.
    next_member: AtomicUsize,
}

/// A message as it is routed.
pub(crate) struct Message<'a> {
    pub subject: &'a str,
    pub reply: Option<&'a str>,
    pub headers: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

impl Server {
    /// Binds the listener (port 0 picks a free port; see [`Server::local_addr`]).
    pub async fn bind(options: Options, authorise: Arc<dyn Authorise>) -> io::Result<Server> {
        let listener = TcpListener::bind(options.addr).await?;
        let server_id = format!("{}-{}", options.server_name, std::process::id());
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                options,
                authorise,
                server_id,
                subs: RwLock::new(Sublist::new()),
                generation: AtomicU64::new(0),
                admitted: Mutex::new(HashMap::new()),
                next_client_id: AtomicU64::new(1),
                next_member: AtomicUsize::new(0),
            }),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Serves clients until `shutdown` completes; then every connection is
    /// dropped.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(connection::serve(self.shared.clone(), stream, peer));
                    }
                    // Out of descriptors and the like: the listener itself is
                    // fine, so pause instead of spinning, then keep accepting.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                },
                // Reap finished connections so the set does not grow.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        connections.shutdown().await;
    }
}

impl Handle {
    /// Closes every connection acting for `principal` (its token was revoked
    /// or its user deleted), after telling it `Authorization Violation`.
    /// Returns how many were closed.
    pub fn disconnect(&self, principal: &str) -> usize {
        let admitted = self.shared.admitted.lock().expect("admitted lock");
        let mut closed = 0;
        for connection in admitted.values() {
            if connection.permissions.principal() == Some(principal) {
                connection
                    .outbox
                    .push(|out| crate::codec::encode_err("Authorization Violation", out));
                connection.outbox.close();
                closed += 1;
            }
        }
        closed
    }

    /// How many connections have been admitted and are still open.
    pub fn connections(&self) -> usize {
        self.shared.admitted.lock().expect("admitted lock").len()
    }
}

impl Shared {
    pub(crate) fn admit(&self, outbox: &Arc<Outbox>, permissions: &Arc<dyn Permissions>) {
        let admitted = Admitted {
            outbox: outbox.clone(),
            permissions: permissions.clone(),
        };
        self.admitted
            .lock()
            .expect("admitted lock")
            .insert(outbox.id(), admitted);
    }

    pub(crate) fn forget(&self, id: u64) {
        self.admitted.lock().expect("admitted lock").remove(&id);
    }

    /// Changes the subscription index, and tells every connection's route
    /// cache (through the generation) that it did.
    pub(crate) fn edit_subs<R>(
        &self,
        edit: impl FnOnce(&mut Sublist<Arc<Subscription>>) -> R,
    ) -> R {
        let mut subs = self.subs.write().expect("sublist lock");
        let result = edit(&mut subs);
        // Bumped under the lock, after the change: a reader that still sees
        // the old generation read the index before the change or is about to
        // drop what it read.
        self.generation.fetch_add(1, Ordering::Release);
        result
    }

    /// Delivers `msg` to `matches` (one member per queue group) and returns
    /// how many got it. `from` is the publisher, skipped when it asked for
    /// `echo: false`. Destinations whose writers need waking, and those past
    /// their high-water mark (for the publisher to wait on), are added to
    /// `to`.
    pub(crate) fn route(
        &self,
        matches: &Matches<Arc<Subscription>>,
        msg: &Message<'_>,
        from: u64,
        echo: bool,
        to: &mut Destinations<'_>,
    ) -> usize {
        if matches.is_empty() {
            return 0;
        }
        let mut delivered = 0;
        let mut finished = Vec::new();
        let choose = |n: usize| self.next_member.fetch_add(1, Ordering::Relaxed) % n;
        for sub in matches.deliveries(choose) {
            if !echo && sub.outbox.id() == from {
                continue;
            }
            let max = sub.max.load(Ordering::Relaxed);
            let count = sub.delivered.fetch_add(1, Ordering::Relaxed) + 1;
            if max > 0 && count > max {
                continue;
            }
            if let Some(pushed) = sub.outbox.push_msg(&sub.sid, msg) {
                delivered += 1;
                if pushed.first {
                    to.wake.push(sub.outbox.clone());
                }
                if pushed.over_high_water
                    && sub.outbox.id() != from
                    && !to.stalled.iter().any(|o| o.id() == sub.outbox.id())
                {
                    to.stalled.push(sub.outbox.clone());
                }
            }
            if max > 0 && count == max {
                finished.push(sub.clone());
            }
        }
        if !finished.is_empty() {
            self.edit_subs(|subs| {
                for sub in finished {
                    subs.remove(&sub.subject, sub.queue.as_deref(), &sub);
                }
            });
        }
        delivered
    }
}

/// Where a publisher notes the connections it delivered to.
pub(crate) struct Destinations<'a> {
    /// Writers to wake once the publisher's read is routed.
    pub wake: &'a mut Vec<Arc<Outbox>>,
    /// Destinations past their high-water mark.
    pub stalled: &'a mut Vec<Arc<Outbox>>,
}
