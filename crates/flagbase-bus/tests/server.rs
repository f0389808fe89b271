//! The server on loopback, driven by a real client we did not write
//! (`async-nats`) and by raw sockets where the exact bytes matter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flagbase_bus::codec::Connect;
use flagbase_bus::{AllowAll, Authorise, Handle, Options, Permissions, Server};
use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

struct Running {
    addr: SocketAddr,
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

async fn start_with(
    configure: impl FnOnce(&mut Options),
    authorise: Arc<dyn Authorise>,
) -> Running {
    let mut options = Options::new("127.0.0.1:0".parse().unwrap());
    configure(&mut options);
    let server = Server::bind(options, authorise).await.unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.handle();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        handle,
        _stop: stop,
    }
}

async fn start() -> Running {
    start_with(|_| {}, Arc::new(AllowAll)).await
}

async fn client(server: &Running) -> async_nats::Client {
    async_nats::connect(format!("nats://{}", server.addr))
        .await
        .unwrap()
}

/// Publishes to the client's own inbox and waits for the message: when it
/// arrives, the server has applied everything the client sent before, and the
/// client has dispatched everything the server sent it before. (async-nats'
/// `flush` only empties the socket buffer; it is no round trip.)
async fn round_trip(nc: &async_nats::Client) {
    let inbox = nc.new_inbox();
    let mut sub = nc.subscribe(inbox.clone()).await.unwrap();
    nc.publish(inbox, "".into()).await.unwrap();
    sub.next().await.unwrap();
}

/// A client speaking the protocol by hand.
struct Raw {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Raw {
    /// Connects and reads the INFO line, returning its JSON.
    async fn connect(server: &Running, connect: &str) -> (Raw, serde_json::Value) {
        let (reader, writer) = TcpStream::connect(server.addr).await.unwrap().into_split();
        let mut raw = Raw {
            reader: BufReader::new(reader),
            writer,
        };
        let info = raw.line().await;
        let json = serde_json::from_str(info.strip_prefix("INFO ").expect("INFO first")).unwrap();
        if !connect.is_empty() {
            raw.send(&format!("CONNECT {connect}\r\n")).await;
        }
        (raw, json)
    }

    async fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).await.unwrap();
    }

    /// The next line without its CRLF; empty at end of stream.
    async fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).await.unwrap();
        line.trim_end_matches("\r\n").to_string()
    }

    async fn expect(&mut self, line: &str) {
        assert_eq!(self.line().await, line);
    }

    /// Sends PING and waits for its PONG, so everything sent before has been
    /// applied by the server.
    async fn sync(&mut self) {
        self.send("PING\r\n").await;
        self.expect("PONG").await;
    }

    async fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).await.unwrap();
        assert!(
            rest.is_empty(),
            "more after the end: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

const QUIET: &str = r#"{"verbose":false,"pedantic":false}"#;

#[tokio::test]
async fn async_nats_publish_subscribe_with_wildcards() {
    let server = start().await;
    let nc = client(&server).await;
    let mut one = nc.subscribe("a.*").await.unwrap();
    let mut all = nc.subscribe("a.>").await.unwrap();
    nc.publish("a.b", "1".into()).await.unwrap();
    nc.publish("a.b.c", "2".into()).await.unwrap();
    nc.publish("z", "3".into()).await.unwrap();
    round_trip(&nc).await;
    assert_eq!(one.next().await.unwrap().payload, "1");
    assert_eq!(all.next().await.unwrap().payload, "1");
    assert_eq!(all.next().await.unwrap().payload, "2");
    round_trip(&nc).await;
    assert!(
        one.next().now_or_never().is_none(),
        "a.* must not match a.b.c"
    );
}

#[tokio::test]
async fn async_nats_queue_group_delivers_each_message_to_one_member() {
    let server = start().await;
    let nc = client(&server).await;
    let mut q1 = nc.queue_subscribe("jobs", "workers".into()).await.unwrap();
    let mut q2 = nc.queue_subscribe("jobs", "workers".into()).await.unwrap();
    let mut plain = nc.subscribe("jobs").await.unwrap();
    round_trip(&nc).await;
    let publisher = client(&server).await;
    for i in 0..20 {
        publisher
            .publish("jobs", i.to_string().into())
            .await
            .unwrap();
    }
    round_trip(&publisher).await;
    for _ in 0..20 {
        plain.next().await.unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let msg = tokio::select! {
            m = q1.next() => m.unwrap(),
            m = q2.next() => m.unwrap(),
        };
        seen.push(String::from_utf8(msg.payload.to_vec()).unwrap());
    }
    round_trip(&nc).await;
    assert!(
        q1.next().now_or_never().is_none() && q2.next().now_or_never().is_none(),
        "delivered twice"
    );
    seen.sort_by_key(|s| s.parse::<u32>().unwrap());
    assert_eq!(seen, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[tokio::test]
async fn async_nats_headers_round_trip() {
    let server = start().await;
    let nc = client(&server).await;
    let mut sub = nc.subscribe("h").await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Flag", "on");
    nc.publish_with_headers("h", headers, "body".into())
        .await
        .unwrap();
    let msg = sub.next().await.unwrap();
    assert_eq!(msg.payload, "body");
    assert_eq!(msg.headers.unwrap().get("X-Flag").unwrap().as_str(), "on");
}

#[tokio::test]
async fn async_nats_request_reply_and_no_responders() {
    let server = start().await;
    let responder = client(&server).await;
    let mut service = responder.subscribe("svc.echo").await.unwrap();
    // Only once the SUB has been applied may another connection count on it.
    round_trip(&responder).await;
    tokio::spawn(async move {
        while let Some(msg) = service.next().await {
            responder
                .publish(msg.reply.unwrap(), msg.payload)
                .await
                .unwrap();
        }
    });
    let nc = client(&server).await;
    let reply = nc.request("svc.echo", "ping".into()).await.unwrap();
    assert_eq!(reply.payload, "ping");

    for subject in ["nobody.home", "$JS.API.INFO"] {
        let err = nc.request(subject, "x".into()).await.unwrap_err();
        assert_eq!(
            err.kind(),
            async_nats::RequestErrorKind::NoResponders,
            "{subject}"
        );
    }
}

#[tokio::test]
async fn async_nats_unsubscribe_after_n_messages() {
    let server = start().await;
    let nc = client(&server).await;
    let mut sub = nc.subscribe("n").await.unwrap();
    sub.unsubscribe_after(3).await.unwrap();
    for i in 0..5 {
        nc.publish("n", i.to_string().into()).await.unwrap();
    }
    let got: Vec<_> = sub.map(|m| m.payload).collect().await;
    assert_eq!(got, vec!["0", "1", "2"]);
}

#[tokio::test]
async fn info_announces_headers_and_no_jetstream_then_verbose_ok_and_pong() {
    let server = start().await;
    let (mut raw, info) = Raw::connect(&server, "{}").await;
    assert_eq!(info["proto"], 1);
    assert_eq!(info["headers"], true);
    assert_eq!(info["max_payload"], 1024 * 1024);
    assert!(info["client_id"].as_u64().unwrap() > 0);
    assert!(info.get("jetstream").is_none());
    raw.expect("+OK").await;
    raw.send("sub foo 1\r\nPUB foo 2\r\nhi\r\n").await;
    raw.expect("+OK").await;
    raw.expect("+OK").await;
    raw.expect("MSG foo 1 2").await;
    raw.expect("hi").await;
    raw.sync().await;
}

#[tokio::test]
async fn echo_false_skips_the_publishers_own_subscriptions() {
    let server = start().await;
    let (mut me, _) = Raw::connect(&server, r#"{"verbose":false,"echo":false}"#).await;
    me.send("SUB foo 1\r\nPUB foo 2\r\nhi\r\n").await;
    me.sync().await;
    let (mut other, _) = Raw::connect(&server, QUIET).await;
    other.send("PUB foo 5\r\nthere\r\n").await;
    other.sync().await;
    me.expect("MSG foo 1 5").await;
    me.expect("there").await;
}

#[tokio::test]
async fn unsub_with_max_delivers_that_many_then_stops() {
    let server = start().await;
    let (mut sub, _) = Raw::connect(&server, QUIET).await;
    sub.send("SUB foo 1\r\nUNSUB 1 2\r\n").await;
    sub.sync().await;
    let (mut publisher, _) = Raw::connect(&server, QUIET).await;
    publisher.send(&"PUB foo 1\r\nx\r\n".repeat(3)).await;
    publisher.sync().await;
    for _ in 0..2 {
        sub.expect("MSG foo 1 1").await;
        sub.expect("x").await;
    }
    sub.sync().await;
}

#[tokio::test]
async fn oversized_payload_and_control_line_and_garbage_are_refused_like_nats_server() {
    let server = start().await;
    let cases = [
        (
            "PUB foo 1048577\r\n".to_string(),
            "-ERR 'Maximum Payload Violation'",
        ),
        (
            format!("SUB {} 1\r\n", "a".repeat(5000)),
            "-ERR 'maximum control line exceeded'",
        ),
        ("FOO\r\n".to_string(), "-ERR 'Unknown Protocol Operation'"),
    ];
    for (input, answer) in cases {
        let (mut raw, _) = Raw::connect(&server, QUIET).await;
        raw.send(&input).await;
        raw.expect(answer).await;
        raw.expect_closed().await;
    }
    let (mut raw, _) = Raw::connect(&server, QUIET).await;
    raw.send("SUB foo..bar 1\r\n").await;
    raw.expect("-ERR 'Invalid Subject'").await;
    raw.sync().await;
    // HPUB from a client that did not announce headers closes it silently.
    raw.send("HPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n").await;
    raw.expect_closed().await;
}

struct Tokens;
/// The rights of the user a token belongs to.
struct Restricted(&'static str);

impl Authorise for Tokens {
    fn auth_required(&self) -> bool {
        true
    }
    fn connect(&self, connect: &Connect) -> Option<Arc<dyn Permissions>> {
        let user = match connect.auth_token.as_deref()? {
            "secret" => "alice",
            "other" => "bob",
            _ => return None,
        };
        Some(Arc::new(Restricted(user)))
    }
}

impl Permissions for Restricted {
    fn may_publish(&self, subject: &str) -> bool {
        !flagbase_bus::subject::matches("flagbase.>", subject)
    }
    fn may_subscribe(&self, subject: &str, _: Option<&str>) -> bool {
        !subject.starts_with("private.")
    }
    fn principal(&self) -> Option<&str> {
        Some(self.0)
    }
}

#[tokio::test]
async fn revoking_a_principal_cuts_its_connections_only() {
    let server = start_with(|_| {}, Arc::new(Tokens)).await;
    let alice = r#"{"verbose":false,"auth_token":"secret"}"#;
    let (mut first, _) = Raw::connect(&server, alice).await;
    first.sync().await;
    let (mut second, _) = Raw::connect(&server, alice).await;
    second.sync().await;
    let (mut bob, _) = Raw::connect(&server, r#"{"verbose":false,"auth_token":"other"}"#).await;
    bob.sync().await;
    assert_eq!(server.handle.connections(), 3);
    assert_eq!(server.handle.disconnect("carol"), 0);
    assert_eq!(server.handle.disconnect("alice"), 2);
    for raw in [&mut first, &mut second] {
        raw.expect("-ERR 'Authorization Violation'").await;
        raw.expect_closed().await;
    }
    bob.sync().await;
}

#[tokio::test]
async fn authorisation_hook_decides_connect_publish_and_subscribe() {
    let server = start_with(|_| {}, Arc::new(Tokens)).await;
    let (mut anonymous, info) = Raw::connect(&server, QUIET).await;
    assert_eq!(info["auth_required"], true);
    anonymous.expect("-ERR 'Authorization Violation'").await;
    anonymous.expect_closed().await;
    let (mut silent, _) = Raw::connect(&server, "").await;
    silent.send("PING\r\n").await;
    silent.expect("-ERR 'Authorization Violation'").await;

    let (mut raw, _) = Raw::connect(&server, r#"{"verbose":false,"auth_token":"secret"}"#).await;
    raw.send("PUB flagbase.flag.created 0\r\n\r\n").await;
    raw.expect(r#"-ERR 'Permissions Violation for Publish to "flagbase.flag.created"'"#)
        .await;
    raw.send("SUB private.a 1\r\nSUB private.b q 2\r\n").await;
    raw.expect(r#"-ERR 'Permissions Violation for Subscription to "private.a"'"#)
        .await;
    raw.expect(r#"-ERR 'Permissions Violation for Subscription to "private.b" using queue "q"'"#)
        .await;
    // The connection survives permission errors.
    raw.sync().await;

    let nc = async_nats::ConnectOptions::with_token("secret".into())
        .connect(format!("nats://{}", server.addr))
        .await
        .unwrap();
    round_trip(&nc).await;
}

#[tokio::test]
async fn no_responders_only_for_clients_that_asked_for_it() {
    let server = start().await;
    let (mut asking, _) = Raw::connect(
        &server,
        r#"{"verbose":false,"headers":true,"no_responders":true}"#,
    )
    .await;
    asking
        .send("SUB _INBOX.x.* 1\r\nPUB nobody _INBOX.x.1 0\r\n\r\n")
        .await;
    asking.expect("HMSG _INBOX.x.1 1 38 38").await;
    asking.expect("NATS/1.0 503").await;
    asking.expect("Nats-Subject: nobody").await;
    asking.expect("").await; // end of the header block
    asking.expect("").await; // the empty payload
    asking.sync().await;

    let (mut plain, _) = Raw::connect(&server, r#"{"verbose":false,"headers":true}"#).await;
    plain
        .send("SUB _INBOX.y.* 1\r\nPUB nobody _INBOX.y.1 0\r\n\r\n")
        .await;
    plain.sync().await;

    let (mut headless, _) =
        Raw::connect(&server, r#"{"verbose":false,"no_responders":true}"#).await;
    headless
        .expect("-ERR 'no responders requires headers support'")
        .await;
    headless.expect_closed().await;
}

#[tokio::test]
async fn slow_consumer_is_cut_off_without_blocking_the_publisher() {
    let max_pending = 64 * 1024;
    let server = start_with(|o| o.max_pending = max_pending, Arc::new(AllowAll)).await;
    let (mut slow, _) = Raw::connect(&server, QUIET).await;
    slow.send("SUB big 1\r\n").await;
    slow.sync().await;

    // Far more than the socket buffers and max_pending together hold.
    let payload = "x".repeat(16 * 1024);
    let count = 4096;
    let (mut publisher, _) = Raw::connect(&server, QUIET).await;
    let publish = format!("PUB big {}\r\n{payload}\r\n", payload.len());
    for _ in 0..count {
        publisher.send(&publish).await;
    }
    // Answered while the subscriber reads nothing: the publisher is not blocked.
    publisher.sync().await;

    let mut received = Vec::new();
    slow.reader.read_to_end(&mut received).await.unwrap();
    assert!(
        received.len() < count * publish.len(),
        "cut off before everything arrived"
    );
}

/// Flow control: a publisher far faster than its subscriber is slowed to
/// the subscriber's pace (its socket is not read while the subscriber's
/// backlog is past the high-water mark), so a subscriber that keeps
/// reading gets every message instead of being cut off.
#[tokio::test]
async fn a_fast_publisher_is_slowed_to_a_reading_subscriber_and_nothing_is_lost() {
    let max_pending = 64 * 1024;
    let server = start_with(|o| o.max_pending = max_pending, Arc::new(AllowAll)).await;
    let (mut sub, _) = Raw::connect(&server, QUIET).await;
    sub.send("SUB flow 1\r\n").await;
    sub.sync().await;

    // 16 × max_pending in all, each message numbered so that order is
    // checked too: part of the stream is written directly by the
    // publisher's reader, part by the subscriber's writer task.
    let size = 1024;
    let count = 1024;
    let (mut publisher, _) = Raw::connect(&server, QUIET).await;
    let sending = tokio::spawn(async move {
        for i in 0..count {
            let payload = format!("{i:08}{}", "y".repeat(size - 8));
            publisher
                .send(&format!("PUB flow {size}\r\n{payload}\r\n"))
                .await;
        }
        publisher.sync().await;
    });

    let mut received = 0;
    while received < count {
        let line = sub.line().await;
        assert!(
            line.starts_with("MSG flow 1 1024"),
            "got {line:?} after {received}"
        );
        let mut body = vec![0u8; size + 2];
        sub.reader.read_exact(&mut body).await.unwrap();
        assert_eq!(
            &body[..8],
            format!("{received:08}").as_bytes(),
            "message {received} out of order"
        );
        received += 1;
        // A slow reader: it yields between messages.
        if received % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    sending.await.unwrap();
    assert_eq!(received, count);
}

/// On a multi-threaded runtime two publishers' readers and the
/// subscriber's writer task all write to the subscriber's socket in turns;
/// whatever one of them leaves unwritten must go out before anything queued
/// after it, or messages would be cut in two or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_publishers_to_one_slow_subscriber_keep_framing_and_order() {
    let server = start_with(|o| o.max_pending = 4 << 20, Arc::new(AllowAll)).await;
    let (mut sub, _) = Raw::connect(&server, QUIET).await;
    sub.send("SUB order 1\r\n").await;
    sub.sync().await;

    let (size, count) = (1024, 2000);
    let mut senders = Vec::new();
    for name in ["a", "b"] {
        let (mut publisher, _) = Raw::connect(&server, QUIET).await;
        senders.push(tokio::spawn(async move {
            for i in 0..count {
                let payload = format!("{name}{i:07}{}", "y".repeat(size - 8));
                publisher
                    .send(&format!("PUB order {size}\r\n{payload}\r\n"))
                    .await;
            }
            publisher.sync().await;
        }));
    }

    let mut next = std::collections::HashMap::from([(b'a', 0u32), (b'b', 0u32)]);
    for received in 0..2 * count {
        let line = sub.line().await;
        assert_eq!(
            line,
            format!("MSG order 1 {size}"),
            "after {received} messages"
        );
        let mut body = vec![0u8; size + 2];
        sub.reader.read_exact(&mut body).await.unwrap();
        assert_eq!(&body[size..], b"\r\n", "message {received} is not whole");
        let expected = next.get_mut(&body[0]).expect("a publisher's name");
        let number: u32 = std::str::from_utf8(&body[1..8]).unwrap().parse().unwrap();
        assert_eq!(
            number, *expected,
            "publisher {} out of order",
            body[0] as char
        );
        *expected += 1;
        if received % 128 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    for sender in senders {
        sender.await.unwrap();
    }
}

#[tokio::test]
async fn unanswered_pings_close_a_stale_connection() {
    let server = start_with(
        |o| {
            o.ping_interval = Duration::from_millis(20);
            o.max_pings_out = 2;
        },
        Arc::new(AllowAll),
    )
    .await;
    let (mut raw, _) = Raw::connect(&server, QUIET).await;
    raw.expect("PING").await;
    raw.expect("PING").await;
    raw.expect("-ERR 'Stale Connection'").await;
    raw.expect_closed().await;
}

/// Takes every message already delivered to `sub` (the caller has made a
/// round trip on the subscriber's connection, so they are all in its channel). Unconstrained,
/// or tokio's cooperative budget would end the loop after 127 polls.
fn drain(sub: &mut async_nats::Subscriber) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(Some(msg)) = tokio::task::unconstrained(sub.next()).now_or_never() {
        got.push(String::from_utf8(msg.payload.to_vec()).unwrap());
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_reach_each_queue_group_once_and_unsub_max_exactly() {
    let server = start().await;
    let mut members = Vec::new();
    let mut member_clients = Vec::new();
    for _ in 0..3 {
        let nc = client(&server).await;
        members.push(nc.queue_subscribe("work", "pool".into()).await.unwrap());
        round_trip(&nc).await;
        member_clients.push(nc);
    }
    let capped_client = client(&server).await;
    let mut capped = capped_client.subscribe("work").await.unwrap();
    capped.unsubscribe_after(100).await.unwrap();
    round_trip(&capped_client).await;

    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let addr = server.addr;
            tokio::spawn(async move {
                let nc = async_nats::connect(format!("nats://{addr}")).await.unwrap();
                for i in 0..250 {
                    nc.publish("work", format!("{p}-{i}").into()).await.unwrap();
                }
                // After the round trip every message has been routed.
                round_trip(&nc).await;
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    for nc in member_clients.iter().chain([&capped_client]) {
        round_trip(nc).await;
    }

    let mut all: Vec<String> = members.iter_mut().flat_map(drain).collect();
    assert_eq!(all.len(), 1000);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 1000, "a message reached the group twice");
    // The stream ends after its maximum: exactly 100 arrive, none after.
    let capped: Vec<async_nats::Message> = capped.collect().await;
    assert_eq!(capped.len(), 100);
}

/// Checked against nats-server 2.9.10: without auth a client may skip
/// CONNECT, gets verbose defaults, and no +OK for the CONNECT it never sent.
#[tokio::test]
async fn client_that_skips_connect_gets_defaults_without_an_ok_for_it() {
    let server = start().await;
    let (mut raw, _) = Raw::connect(&server, "").await;
    raw.send("SUB foo 1\r\nPUB foo 2\r\nhi\r\n").await;
    raw.expect("+OK").await;
    raw.expect("+OK").await;
    raw.expect("MSG foo 1 2").await;
    raw.expect("hi").await;
    raw.sync().await;
}

/// Checked against nats-server 2.9.10: a wildcard in a published subject
/// draws `Invalid Publish Subject` (pedantic) but the message is still routed
/// with its tokens taken literally, so `*.x` never reaches `flagbase.>`; an
/// empty token matches nothing; an empty header block is relayed as MSG.
#[tokio::test]
async fn published_wildcards_are_literal_tokens_like_nats_server() {
    let server = start().await;
    let (mut raw, _) = Raw::connect(&server, r#"{"verbose":false,"headers":true}"#).await;
    raw.send("SUB flagbase.> 1\r\nSUB > 2\r\nPUB *.x 1\r\nx\r\n")
        .await;
    raw.expect("-ERR 'Invalid Publish Subject'").await;
    raw.expect("MSG *.x 2 1").await;
    raw.expect("x").await;
    raw.send("PUB a..b 1\r\nx\r\n").await;
    raw.expect("-ERR 'Invalid Publish Subject'").await;
    raw.send("HPUB e 0 1\r\ny\r\n").await;
    raw.expect("MSG e 2 1").await;
    raw.expect("y").await;
    raw.sync().await;
}

#[tokio::test]
async fn a_client_silent_past_the_auth_timeout_is_cut_off_like_nats_server() {
    let quick = |o: &mut Options| {
        o.auth_timeout = Duration::from_millis(20);
        // The server's first PING comes well after the auth timeout: a
        // connection that gets it has outlived the timeout.
        o.ping_interval = Duration::from_millis(300);
    };
    let server = start_with(quick, Arc::new(Tokens)).await;
    let (mut silent, info) = Raw::connect(&server, "").await;
    assert_eq!(info["auth_required"], true);
    silent.expect("-ERR 'Authentication Timeout'").await;
    silent.expect_closed().await;

    // CONNECT in time disarms it.
    let (mut prompt, _) = Raw::connect(&server, r#"{"verbose":false,"auth_token":"secret"}"#).await;
    prompt.expect("PING").await;
    prompt.send("PONG\r\n").await;
    prompt.sync().await;

    // Without credentials required there is no auth timeout, as in
    // nats-server: a silent client is only pinged.
    let open = start_with(quick, Arc::new(AllowAll)).await;
    let (mut silent, _) = Raw::connect(&open, "").await;
    silent.expect("PING").await;
    silent.sync().await;
}

#[tokio::test]
async fn a_reply_subject_the_client_may_not_publish_to_is_refused_like_nats_servers_reserved_ones()
{
    let server = start_with(|_| {}, Arc::new(Tokens)).await;
    let (mut raw, _) = Raw::connect(&server, r#"{"verbose":false,"auth_token":"secret"}"#).await;
    let (mut responder, _) =
        Raw::connect(&server, r#"{"verbose":false,"auth_token":"other"}"#).await;
    responder.send("SUB svc 1\r\n").await;
    responder.sync().await;
    // A responder would publish its answer to flagbase.flag.created on
    // the requester's behalf: refused, the message dropped, the
    // connection kept.
    raw.send("PUB svc flagbase.flag.created 2\r\nhi\r\nPUB svc _INBOX.ok 2\r\nok\r\nPING\r\n")
        .await;
    raw.expect(r#"-ERR 'Permissions Violation for Publish with Reply of "flagbase.flag.created"'"#)
        .await;
    raw.expect("PONG").await;
    responder.expect("MSG svc 1 _INBOX.ok 2").await;
    responder.expect("ok").await;
    responder.sync().await;
}

/// The route cache: a publisher that has already sent to a subject (and
/// cached where it goes) must see subscriptions made and removed after that.
#[tokio::test]
async fn a_publishers_cached_routes_follow_later_subscribe_and_unsubscribe() {
    let server = start().await;
    let (mut publisher, _) = Raw::connect(&server, QUIET).await;
    publisher.send("PUB cache.x 1\r\na\r\n").await;
    publisher.sync().await;

    let (mut sub, _) = Raw::connect(&server, QUIET).await;
    sub.send("SUB cache.* 1\r\nSUB cache.x q 2\r\n").await;
    sub.sync().await;
    publisher.send("PUB cache.x 1\r\nb\r\n").await;
    publisher.sync().await;
    // Routed before the publisher's PONG, so ahead of this PONG: a missing
    // message shows as PONG instead of hanging.
    sub.send("PING\r\n").await;
    sub.expect("MSG cache.x 1 1").await;
    sub.expect("b").await;
    sub.expect("MSG cache.x 2 1").await;
    sub.expect("b").await;
    sub.expect("PONG").await;

    sub.send("UNSUB 1\r\n").await;
    sub.sync().await;
    publisher.send("PUB cache.x 1\r\nc\r\n").await;
    publisher.sync().await;
    sub.send("PING\r\n").await;
    sub.expect("MSG cache.x 2 1").await;
    sub.expect("c").await;
    sub.expect("PONG").await;

    // A subscriber that goes away is dropped from the routes too.
    drop(sub);
    let (mut other, _) = Raw::connect(&server, QUIET).await;
    other.send("SUB cache.> 9\r\n").await;
    other.sync().await;
    publisher.send("PUB cache.x 1\r\nd\r\n").await;
    publisher.sync().await;
    other.send("PING\r\n").await;
    other.expect("MSG cache.x 9 1").await;
    other.expect("d").await;
    other.expect("PONG").await;
}
