//! Upstream connections of the gateway's own HTTP/1 path (`h1`): plain
//! sockets with their read buffers, driven by the request that holds one,
//! so an exchange costs no task of its own, no channel and no wake-up
//! between tasks. Idle ones are reused last-in first-out, at most
//! `max_idle` per upstream, for at most `idle_timeout`.
//!
//! Nobody reads an idle socket, so an upstream's close (its keep-alive
//! timeout) is found two ways: a connection idle long enough for that to
//! be likely is probed on checkout (one non-blocking read), and a sweeper
//! task probes every idle connection now and then, so closed ones do not
//! linger in CLOSE_WAIT. A close the probe cannot see (it crosses the
//! request) is `h1`'s to retry.

use std::io;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::BytesMut;
use hyper::http::uri::Authority;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A connection idle this long is probed before it is used: keep-alive
/// timeouts are a second or more, and a probe is a system call the busy
/// path should not pay.
const PROBE_AFTER_IDLE: Duration = Duration::from_millis(100);
/// How often the sweeper probes the idle connections.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Read buffer of a new connection; it grows for larger heads.
const BUFFER: usize = 8 * 1024;

/// One upstream connection and what was read from it.
pub(super) struct Conn {
    pub stream: TcpStream,
    pub buf: BytesMut,
    /// Whether it served an exchange before this one.
    pub reused: bool,
}

pub(super) struct Conns {
    shared: Arc<Shared>,
    connect_timeout: Duration,
}

struct Shared {
    /// Per upstream; a list, not a map: a gateway has few upstreams, and
    /// comparing an authority costs less than hashing it.
    idle: Mutex<Vec<(Authority, Vec<Idle>)>>,
    max_idle: usize,
    idle_timeout: Duration,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

impl Conns {
    pub fn new(max_idle: usize, idle_timeout: Duration, connect_timeout: Duration) -> Conns {
        let shared = Arc::new(Shared {
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep(Arc::downgrade(&shared)));
        }
        Conns {
            shared,
            connect_timeout,
        }
    }

    /// The most recently used idle connection to `authority` that is
    /// still open, as far as can be told without sending.
    pub fn checkout(&self, authority: &Authority) -> Option<Conn> {
        let mut idle = self.shared.idle.lock().expect("pool lock");
        let list = list_of(&mut idle, authority)?;
        let now = Instant::now();
        while let Some(entry) = list.pop() {
            let idle_for = now.duration_since(entry.since);
            if idle_for >= self.shared.idle_timeout {
                // Everything below is older still.
                list.clear();
                return None;
            }
            if idle_for < PROBE_AFTER_IDLE || still_open(&entry.conn.stream) {
                let mut conn = entry.conn;
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// A new connection, within the connect timeout.
    pub async fn connect(&self, authority: &Authority) -> io::Result<Conn> {
        let stream = dial(authority, self.connect_timeout).await?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(BUFFER),
            reused: false,
        })
    }

    /// Keeps a connection whose last exchange ended cleanly.
    pub fn checkin(&self, authority: &Authority, mut conn: Conn) {
        conn.buf.clear();
        let mut idle = self.shared.idle.lock().expect("pool lock");
        let at = match idle.iter().position(|(a, _)| same(a, authority)) {
            Some(at) => at,
            None => {
                idle.push((authority.clone(), Vec::new()));
                idle.len() - 1
            }
        };
        let list = &mut idle[at].1;
        if list.len() >= self.shared.max_idle {
            // The oldest goes: LIFO reuse means it is the least useful.
            list.remove(0);
        }
        list.push(Idle {
            conn,
            since: Instant::now(),
        });
    }
}

/// A TCP connection to an upstream (`TCP_NODELAY`: heads and small
/// bodies go out at once), within `timeout`; both pools connect with it.
pub(super) async fn dial(authority: &Authority, timeout: Duration) -> io::Result<TcpStream> {
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out after {timeout:?}"),
            )
        })??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The idle connections to `authority`.
fn list_of<'a>(
    idle: &'a mut [(Authority, Vec<Idle>)],
    authority: &Authority,
) -> Option<&'a mut Vec<Idle>> {
    idle.iter_mut()
        .find(|(a, _)| same(a, authority))
        .map(|(_, list)| list)
}

/// The same upstream, as routes spell it. `Authority`'s own `==` ignores
/// case byte by byte, on every checkout and checkin; two routes that spell
/// one host in different cases merely get a list each.
fn same(a: &Authority, b: &Authority) -> bool {
    a.as_str() == b.as_str()
}

/// An idle connection has nothing to read; a readable one was closed (end
/// of stream, reset) or broke the protocol (bytes nobody asked for).
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Drops idle connections that timed out or were closed, until the pool
/// itself is gone.
async fn sweep(shared: Weak<Shared>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut idle = shared.idle.lock().expect("pool lock");
        for (_, list) in idle.iter_mut() {
            list.retain(|entry| {
                now.duration_since(entry.since) < shared.idle_timeout
                    && still_open(&entry.conn.stream)
            });
        }
        idle.retain(|(_, list)| !list.is_empty());
    }
}
