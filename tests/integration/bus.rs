//! The embedded NATS bus of `flagbase start`: Flagbase's changes arrive on
//! their subjects in commit order, Flagbase credentials decide who may do
//! what, and revocation cuts connections. Clients are `async-nats` (a real
//! client we did not write) and, where the exact protocol bytes matter, a
//! raw socket.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::harness::{run_cli, stderr_of, Flagbase, Options};

/// A safety net against a hung test, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

/// The bus address the banner shows, as `host:port`.
pub fn bus_addr(fb: &Flagbase) -> String {
    let line = fb
        .stdout
        .wait_for("the banner's bus line", |l| l.contains("bus:"));
    line.split_whitespace()
        .last()
        .unwrap()
        .strip_prefix("nats://")
        .unwrap_or_else(|| panic!("no nats:// address in {line:?}"))
        .to_string()
}

/// What the banner's bus line says after `bus:`.
pub fn bus_addr_of_banner(fb: &Flagbase) -> String {
    let line = fb
        .stdout
        .wait_for("the banner's bus line", |l| l.contains("bus:"));
    line.split_once("bus:").unwrap().1.trim().to_string()
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("gave up waiting for {what}"))
}

async fn nats(fb: &Flagbase, token: Option<&str>) -> async_nats::Client {
    let options = match token {
        Some(t) => async_nats::ConnectOptions::with_token(t.to_string()),
        None => async_nats::ConnectOptions::new(),
    };
    options
        .connect(format!("nats://{}", bus_addr(fb)))
        .await
        .expect("connect to the bus")
}

/// Returns once the server has applied everything `nc` sent before (its
/// subscriptions included): a message to the client's own inbox came back.
pub async fn round_trip(nc: &async_nats::Client) {
    let inbox = nc.new_inbox();
    let mut sub = nc.subscribe(inbox.clone()).await.unwrap();
    nc.publish(inbox, "".into()).await.unwrap();
    within("a round trip", sub.next()).await.unwrap();
}

async fn next_event(sub: &mut async_nats::Subscriber) -> (String, Value) {
    let msg = within("a bus event", sub.next())
        .await
        .expect("subscription open");
    let body: Value = serde_json::from_slice(&msg.payload).expect("JSON payload");
    (msg.subject.to_string(), body)
}

/// A client speaking the protocol by hand.
struct Raw {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Raw {
    async fn connect(fb: &Flagbase, connect: Value) -> Raw {
        let stream = TcpStream::connect(bus_addr(fb)).await.unwrap();
        let (reader, writer) = stream.into_split();
        let mut raw = Raw {
            reader: BufReader::new(reader),
            writer,
        };
        let info = raw.line().await;
        assert!(info.starts_with("INFO "), "{info}");
        raw.send(&format!("CONNECT {connect}\r\n")).await;
        raw
    }

    async fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).await.unwrap();
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        within("a line from the bus", self.reader.read_line(&mut line))
            .await
            .unwrap();
        line.trim_end_matches("\r\n").to_string()
    }

    async fn expect(&mut self, wanted: &str) {
        let got = self.line().await;
        assert_eq!(got, wanted);
    }

    /// PING answered by PONG: the connection is open and admitted.
    async fn alive(&mut self) {
        self.send("PING\r\n").await;
        self.expect("PONG").await;
    }

    async fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        within(
            "the bus to close the connection",
            self.reader.read_to_end(&mut rest),
        )
        .await
        .unwrap();
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }
}

fn quiet() -> Value {
    json!({"verbose": false, "pedantic": false})
}

fn quiet_with(token: &str) -> Value {
    json!({"verbose": false, "pedantic": false, "auth_token": token})
}

async fn api_token(fb: &Flagbase, owner: &str, role: &str) -> (String, String) {
    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "bus", "role": role}),
            Some(owner),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    (
        r.body["id"].as_str().unwrap().to_string(),
        r.body["token"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn bus_delivers_flag_changes_in_commit_order_with_consecutive_seq() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let (_, dev) = fb.user("dev@example.com", "developer", Some(&admin)).await;
    // Any role may follow flags: a user-role API token here.
    let (_, reader) = api_token(&fb, &dev, "user").await;
    let nc = nats(&fb, Some(&reader)).await;
    let mut sub = nc.subscribe("flagbase.flag.>").await.unwrap();
    round_trip(&nc).await;

    let created = fb
        .post(
            "/api/v1/flags",
            json!({"key": "checkout", "enabled": true, "default_value": false}),
            Some(&dev),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let toggled = fb
        .send(
            fb.http
                .patch(fb.url("/api/v1/flags/checkout/toggle"))
                .bearer_auth(&dev),
        )
        .await;
    assert_eq!(toggled.status, 200, "{}", toggled.body);
    assert_eq!(
        fb.delete("/api/v1/flags/checkout", Some(&dev)).await.status,
        204
    );

    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_event(&mut sub).await);
    }
    let subjects: Vec<&str> = seen.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "flagbase.flag.created",
            "flagbase.flag.toggled",
            "flagbase.flag.deleted"
        ]
    );
    let first = seen[0].1["seq"].as_u64().expect("seq");
    for (i, (_, body)) in seen.iter().enumerate() {
        assert_eq!(body["seq"].as_u64(), Some(first + i as u64), "{body}");
        assert_eq!(body["key"], "checkout", "{body}");
        assert_eq!(body["flag"]["key"], "checkout", "{body}");
        assert!(body["at"].is_string(), "{body}");
        assert!(body["actor"].is_string(), "{body}");
    }
    assert_eq!(seen[1].1["flag"]["enabled"], false);
}

#[tokio::test]
async fn bus_client_cannot_publish_under_flagbase_and_keeps_its_connection() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    // Not even an admin: only Flagbase itself publishes its events.
    let mut raw = Raw::connect(&fb, quiet_with(&admin)).await;
    raw.alive().await;
    raw.send("PUB flagbase.flag.disabled 2\r\nhi\r\n").await;
    raw.expect(r#"-ERR 'Permissions Violation for Publish to "flagbase.flag.disabled"'"#)
        .await;
    raw.alive().await;

    // Other subjects are the clients' own.
    let nc = nats(&fb, None).await;
    let mut sub = nc.subscribe("orders.>").await.unwrap();
    round_trip(&nc).await;
    raw.send("PUB orders.new 2\r\nhi\r\n").await;
    raw.alive().await;
    let msg = within("a client message", sub.next()).await.unwrap();
    assert_eq!(msg.subject.as_str(), "orders.new");
}

#[tokio::test]
async fn bus_user_and_token_events_need_an_admin_credential() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let (_, user) = fb.user("plain@example.com", "user", Some(&admin)).await;

    let mut raw = Raw::connect(&fb, quiet_with(&user)).await;
    for subject in ["flagbase.user.>", "flagbase.>", ">", "*.token.created"] {
        raw.send(&format!("SUB {subject} 1\r\n")).await;
        raw.expect(&format!(
            "-ERR 'Permissions Violation for Subscription to \"{subject}\"'"
        ))
        .await;
    }
    raw.send("SUB flagbase.flag.> 2\r\n").await;
    raw.alive().await;
    // Anonymous clients have the rights of role `user`.
    let mut anonymous = Raw::connect(&fb, quiet()).await;
    anonymous.send("SUB flagbase.token.> 1\r\n").await;
    anonymous
        .expect("-ERR 'Permissions Violation for Subscription to \"flagbase.token.>\"'")
        .await;

    let nc = nats(&fb, Some(&admin)).await;
    let mut sub = nc.subscribe("flagbase.>").await.unwrap();
    round_trip(&nc).await;
    fb.user("late@example.com", "user", Some(&admin)).await;
    let (subject, body) = next_event(&mut sub).await;
    assert_eq!(subject, "flagbase.user.created");
    assert_eq!(body["user"]["email"], "late@example.com", "{body}");
    assert!(
        !body.to_string().contains("password"),
        "no secrets on the bus: {body}"
    );
}

#[tokio::test]
async fn bus_anonymous_clients_allowed_on_loopback_unless_disabled() {
    let open = Flagbase::start().await;
    let mut raw = Raw::connect(&open, quiet()).await;
    raw.alive().await;

    let closed =
        Flagbase::start_with(Options::default().set("events.allow_anonymous", "false")).await;
    let mut raw = Raw::connect(&closed, quiet()).await;
    raw.expect("-ERR 'Authorization Violation'").await;
    raw.expect_closed().await;
    let mut bad = Raw::connect(&closed, quiet_with("fbk_nope_nope")).await;
    bad.expect("-ERR 'Authorization Violation'").await;
    bad.expect_closed().await;
    let admin = closed.setup_admin("root@example.com").await;
    let mut raw = Raw::connect(&closed, quiet_with(&admin)).await;
    raw.alive().await;
}

#[tokio::test]
async fn bus_revoking_a_token_closes_the_connections_using_it() {
    let fb = Flagbase::start_with(Options::default().set("events.allow_anonymous", "false")).await;
    let admin = fb.setup_admin("root@example.com").await;
    let (_, dev) = fb.user("dev@example.com", "developer", Some(&admin)).await;
    let (id, secret) = api_token(&fb, &dev, "user").await;
    let mut raw = Raw::connect(&fb, quiet_with(&secret)).await;
    raw.alive().await;
    assert_eq!(
        fb.delete(&format!("/api/v1/tokens/{id}"), Some(&dev))
            .await
            .status,
        204
    );
    raw.expect("-ERR 'Authorization Violation'").await;
    raw.expect_closed().await;
    let mut again = Raw::connect(&fb, quiet_with(&secret)).await;
    again.expect("-ERR 'Authorization Violation'").await;
    again.expect_closed().await;
}

#[tokio::test]
async fn bus_deleting_a_user_closes_their_session_connections() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let (id, session) = fb.user("gone@example.com", "user", Some(&admin)).await;
    let mut raw = Raw::connect(&fb, quiet_with(&session)).await;
    raw.alive().await;
    let mut bystander = Raw::connect(&fb, quiet_with(&admin)).await;
    bystander.alive().await;
    assert_eq!(
        fb.delete(&format!("/api/v1/users/{id}"), Some(&admin))
            .await
            .status,
        204
    );
    raw.expect("-ERR 'Authorization Violation'").await;
    raw.expect_closed().await;
    bystander.alive().await;
}

#[test]
fn bus_port_in_use_is_a_start_up_error_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let set = format!("events.nats_port={port}");
    let out = run_cli(
        tmp.path(),
        &["start", "--host", "127.0.0.1", "--port", "0", "--set", &set],
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.lines().any(|l| l
            == format!(
                "error: cannot start the event bus on 127.0.0.1:{port}: address already in use"
            )),
        "{err}"
    );
}
