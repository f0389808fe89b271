//! A raw-socket NATS load generator for comparing the bus with nats-server
//! (bench/bus.sh): the same client against both, so only the server differs.
//!
//! Usage:
//!   `loadgen pubsub <host:port> <payload bytes> <subscribers> <warm-up s> <seconds> [window]`
//!   `loadgen reqrep <host:port> <payload bytes> <in flight> <warm-up s> <seconds>`
//!
//! `pubsub`: one publisher floods `bench` in 64 KiB writes; every subscriber
//! counts the bytes that arrive (all `MSG` frames have the same length, so
//! bytes / frame length is the message count without parsing). The rate is
//! the deliveries counted at the subscribers during the measured window
//! (summed over subscribers), after the warm-up. When the publisher stops it
//! flushes with PING/PONG, then each subscriber must reach exactly
//! `published` messages: anything missing (a cut-off slow consumer, a drop)
//! is reported as lost. Unpaced (no `window`, or 0), the publisher relies on
//! the server to hold it back when the subscriber falls behind, as
//! nats-server does by stalling fast producers. With a `window`, each batch is
//! followed by a PING and at most `window` batches may be unanswered, so the
//! client paces itself and no server needs flow control.
//!
//! `reqrep`: a responder subscribed to `bench.req` echoes each payload to the
//! reply subject; the requester keeps `<in flight>` requests outstanding
//! (1 = strictly sequential), each with its own reply subject
//! `_INBOX.bench.<slot>` under one wildcard subscription, as NATS clients do.
//! The rate is round trips completed during the measured window. At the end
//! the outstanding requests must all be answered.
//!
//! Prints one `RESULT key=value ...` line for the script, on stdout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long the drain at the end may go without progress before whatever is
/// missing counts as lost.
const DRAIN_PATIENCE: Duration = Duration::from_secs(5);

fn connect(addr: &str, ops: &str) -> (BufReader<TcpStream>, TcpStream) {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::with_capacity(256 * 1024, stream.try_clone().unwrap());
    let mut info = String::new();
    reader.read_line(&mut info).unwrap();
    assert!(info.starts_with("INFO "), "no INFO: {info:?}");
    let mut writer = stream;
    writer.write_all(ops.as_bytes()).unwrap();
    let mut pong = String::new();
    reader.read_line(&mut pong).unwrap();
    assert_eq!(pong, "PONG\r\n", "no PONG after the setup ops");
    (reader, writer)
}

fn secs(arg: &str) -> Duration {
    Duration::from_secs_f64(arg.parse().expect("seconds"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match &args[1..] {
        [mode, addr, size, n, warmup, duration, window @ ..] if mode == "pubsub" && window.len() < 2 => pubsub(
            addr,
            size.parse().unwrap(),
            n.parse().unwrap(),
            window.first().map_or(0, |w| w.parse().unwrap()),
            secs(warmup),
            secs(duration),
        ),
        [mode, addr, size, n, warmup, duration] if mode == "reqrep" => reqrep(
            addr,
            size.parse().unwrap(),
            n.parse().unwrap(),
            secs(warmup),
            secs(duration),
        ),
        _ => panic!(
            "usage: loadgen pubsub|reqrep <host:port> <payload bytes> <subscribers|in flight> <warm-up s> <seconds> [window]"
        ),
    }
}

struct Subscriber {
    bytes: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
}

fn pubsub(
    addr: &str,
    size: usize,
    subscribers: usize,
    window: usize,
    warmup: Duration,
    duration: Duration,
) {
    assert!(subscribers > 0, "at least one subscriber");
    let payload = "x".repeat(size);
    let frame = format!("MSG bench 1 {size}\r\n{payload}\r\n").len() as u64;

    let subs: Vec<Subscriber> = (0..subscribers)
        .map(|_| {
            let (mut reader, writer) = connect(
                addr,
                "CONNECT {\"verbose\":false}\r\nSUB bench 1\r\nPING\r\n",
            );
            let bytes = Arc::new(AtomicU64::new(0));
            let closed = Arc::new(AtomicBool::new(false));
            let (b, c) = (bytes.clone(), closed.clone());
            thread::spawn(move || {
                let _keep_open = writer;
                let mut buffer = vec![0u8; 256 * 1024];
                loop {
                    match reader.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            b.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                }
                c.store(true, Ordering::Relaxed);
            });
            Subscriber { bytes, closed }
        })
        .collect();
    let received = |subs: &[Subscriber]| -> u64 {
        subs.iter()
            .map(|s| s.bytes.load(Ordering::Relaxed) / frame)
            .sum()
    };

    let (mut pub_reader, mut publisher) = connect(addr, "CONNECT {\"verbose\":false}\r\nPING\r\n");
    let one = format!("PUB bench {size}\r\n{payload}\r\n");
    let batch_len = (64 * 1024 / one.len()).max(1);
    let mut batch = one.repeat(batch_len);
    if window > 0 {
        batch.push_str("PING\r\n");
    }
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (published, stop) = (published.clone(), stop.clone());
        thread::spawn(move || {
            // Paced: at most `window` batches not yet acknowledged by the
            // PONG that follows each of them.
            let mut unacknowledged = 0;
            while !stop.load(Ordering::Relaxed) {
                if window > 0 && unacknowledged == window {
                    if !pong(&mut pub_reader, &mut publisher) {
                        break;
                    }
                    unacknowledged -= 1;
                }
                if publisher.write_all(batch.as_bytes()).is_err() {
                    break;
                }
                published.fetch_add(batch_len as u64, Ordering::Relaxed);
                if window > 0 {
                    unacknowledged += 1;
                }
            }
            // Everything published is in the server once it answers this
            // PING (and those still owed).
            publisher.write_all(b"PING\r\n").is_ok()
                && (0..=unacknowledged).all(|_| pong(&mut pub_reader, &mut publisher))
        })
    };

    thread::sleep(warmup);
    let (start, received_at_start) = (Instant::now(), received(&subs));
    thread::sleep(duration);
    let (elapsed, received_in_window) = (start.elapsed(), received(&subs) - received_at_start);
    stop.store(true, Ordering::Relaxed);
    let flushed = sender.join().unwrap();
    let published = published.load(Ordering::Relaxed);

    // Everything published is in the server once it answers this PING.
    let expected = published * subscribers as u64;
    let (mut last, mut since) = (received(&subs), Instant::now());
    while last < expected && since.elapsed() < DRAIN_PATIENCE {
        if subs.iter().all(|s| s.closed.load(Ordering::Relaxed)) {
            break;
        }
        thread::sleep(Duration::from_millis(20));
        let now = received(&subs);
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    let total = received(&subs);
    let cut = subs
        .iter()
        .filter(|s| s.closed.load(Ordering::Relaxed))
        .count();
    println!(
        "RESULT mode=pubsub size={size} subscribers={subscribers} window={window} rate={:.0} published={published} expected={expected} received={total} lost={} cut_off={cut} flushed={flushed}",
        received_in_window as f64 / elapsed.as_secs_f64(),
        expected.saturating_sub(total),
    );
}

/// Reads lines up to the server's PONG, answering its PINGs on the way.
fn pong(reader: &mut BufReader<TcpStream>, writer: &mut TcpStream) -> bool {
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line == "PONG\r\n" => return true,
            Ok(_) if line == "PING\r\n" => {
                if writer.write_all(b"PONG\r\n").is_err() {
                    return false;
                }
            }
            Ok(_) => eprintln!("loadgen: publisher got {}", line.trim_end()),
        }
    }
}

/// Splits complete `MSG` frames off the front of `buffer`, calling `on_msg`
/// with each frame's subject, reply subject (empty when none) and payload, and
/// answering server PINGs into `out`. Returns how many bytes were consumed.
fn parse_frames(
    buffer: &[u8],
    out: &mut Vec<u8>,
    mut on_msg: impl FnMut(&[u8], &[u8], &[u8]),
) -> usize {
    let mut at = 0;
    while let Some(eol) = memchr(&buffer[at..]) {
        let line = &buffer[at..at + eol];
        if let Some(rest) = line.strip_prefix(b"MSG ") {
            let fields: Vec<&[u8]> = rest.split(|&b| b == b' ').collect();
            let len: usize = std::str::from_utf8(fields[fields.len() - 1])
                .ok()
                .and_then(|n| n.parse().ok())
                .expect("MSG size");
            let reply: &[u8] = if fields.len() == 4 { fields[2] } else { b"" };
            let body = at + eol + 2;
            if buffer.len() < body + len + 2 {
                break;
            }
            on_msg(fields[0], reply, &buffer[body..body + len]);
            at = body + len + 2;
        } else {
            if line == b"PING" {
                out.extend_from_slice(b"PONG\r\n");
            } else if line.starts_with(b"-ERR") {
                eprintln!("loadgen: server said {}", String::from_utf8_lossy(line));
            }
            at += eol + 2;
        }
    }
    at
}

fn memchr(haystack: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, b"\r\n")
}

/// Reads from `reader` into `pending`, handing complete frames to `on_msg`;
/// returns false when the connection is gone.
fn pump(
    reader: &mut impl Read,
    pending: &mut Vec<u8>,
    out: &mut Vec<u8>,
    on_msg: impl FnMut(&[u8], &[u8], &[u8]),
) -> bool {
    let old = pending.len();
    pending.resize(old + 256 * 1024, 0);
    let n = match reader.read(&mut pending[old..]) {
        Ok(0) | Err(_) => {
            pending.truncate(old);
            return false;
        }
        Ok(n) => n,
    };
    pending.truncate(old + n);
    let used = parse_frames(pending, out, on_msg);
    pending.drain(..used);
    true
}

fn reqrep(addr: &str, size: usize, in_flight: usize, warmup: Duration, duration: Duration) {
    assert!(in_flight > 0, "at least one request in flight");
    let payload = "x".repeat(size);

    let (resp_reader, mut responder) = connect(
        addr,
        "CONNECT {\"verbose\":false}\r\nSUB bench.req 1\r\nPING\r\n",
    );
    thread::spawn(move || answer(resp_reader, &mut responder));

    let (mut req_reader, mut requester) = connect(
        addr,
        "CONNECT {\"verbose\":false}\r\nSUB _INBOX.bench.* 1\r\nPING\r\n",
    );
    let completed = Arc::new(AtomicU64::new(0));
    let outstanding = Arc::new(AtomicU64::new(in_flight as u64));
    let stop = Arc::new(AtomicBool::new(false));
    let mut first = Vec::new();
    for slot in 0..in_flight {
        request(&mut first, slot.to_string().as_bytes(), payload.as_bytes());
    }
    requester.write_all(&first).unwrap();
    let worker = {
        let (completed, outstanding, stop) = (completed.clone(), outstanding.clone(), stop.clone());
        let payload = payload.clone();
        thread::spawn(move || {
            let (mut pending, mut out) = (Vec::new(), Vec::new());
            while outstanding.load(Ordering::Relaxed) > 0 {
                let stopping = stop.load(Ordering::Relaxed);
                let mut next = Vec::new();
                let alive = pump(
                    req_reader.get_mut(),
                    &mut pending,
                    &mut out,
                    |subject, _, _| {
                        completed.fetch_add(1, Ordering::Relaxed);
                        if stopping {
                            outstanding.fetch_sub(1, Ordering::Relaxed);
                        } else {
                            let slot = subject.rsplit(|&b| b == b'.').next().unwrap();
                            request(&mut next, slot, payload.as_bytes());
                        }
                    },
                );
                next.extend_from_slice(&out);
                out.clear();
                if !alive || (!next.is_empty() && requester.write_all(&next).is_err()) {
                    break;
                }
            }
        })
    };

    thread::sleep(warmup);
    let (start, at_start) = (Instant::now(), completed.load(Ordering::Relaxed));
    thread::sleep(duration);
    let (elapsed, in_window) = (
        start.elapsed(),
        completed.load(Ordering::Relaxed) - at_start,
    );
    stop.store(true, Ordering::Relaxed);
    // The requester only notices `stop` after its next read, which a reply
    // always provides while requests are outstanding; if none comes, they
    // are lost.
    let deadline = Instant::now() + DRAIN_PATIENCE;
    while !worker.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    println!(
        "RESULT mode=reqrep size={size} in_flight={in_flight} rate={:.0} completed={} lost={}",
        in_window as f64 / elapsed.as_secs_f64(),
        completed.load(Ordering::Relaxed),
        outstanding.load(Ordering::Relaxed),
    );
}

/// Appends a request from reply slot `slot`.
fn request(out: &mut Vec<u8>, slot: &[u8], payload: &[u8]) {
    out.extend_from_slice(b"PUB bench.req _INBOX.bench.");
    out.extend_from_slice(slot);
    out.extend_from_slice(format!(" {}\r\n", payload.len()).as_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

fn out_reply(out: &mut Vec<u8>, reply: &[u8], body: &[u8]) {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(reply);
    out.extend_from_slice(format!(" {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n");
}

/// The responder loop: echoes every request to its reply subject, all the
/// replies parsed from one read going out in one write.
fn answer(mut reader: BufReader<TcpStream>, writer: &mut TcpStream) {
    // The BufReader holds nothing past the setup PONG: requests only start
    // once the requester has connected, after this connection's setup.
    let (mut pending, mut out) = (Vec::new(), Vec::new());
    loop {
        let mut replies = Vec::new();
        let alive = pump(
            reader.get_mut(),
            &mut pending,
            &mut out,
            |_, reply, body| out_reply(&mut replies, reply, body),
        );
        replies.extend_from_slice(&out);
        out.clear();
        if !alive || (!replies.is_empty() && writer.write_all(&replies).is_err()) {
            return;
        }
    }
}
