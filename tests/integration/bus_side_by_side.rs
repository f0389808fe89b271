//! Side by side: the same raw client script runs against a real
//! `nats-server` (the Debian package, configured with permissions
//! equivalent to an anonymous Flagbase client's) and against Flagbase's
//! embedded bus, and both must answer the same, byte for byte once the
//! INFO line is reduced to the fields that must agree.
//!
//! Where the two differ on purpose (a non-admin wildcard that could match
//! user events is refused here, filtered there) the script does not go.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::bus::bus_addr;
use crate::harness::Flagbase;
use crate::nats_server::{free_port, NatsServer};

/// A safety net against a hung test, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

/// An anonymous client gets what Flagbase gives role `user` without a
/// credential: no publishing under `flagbase.>`, no user or token events.
const NATS_CONF: &str = r#"
max_payload: 1048576
max_control_line: 4096
no_auth_user: anon
authorization {
  users = [
    {user: anon, password: "not-used-pw", permissions: {
      publish: {deny: ["flagbase.>"]},
      subscribe: {deny: ["flagbase.user.>", "flagbase.token.>"]}
    }}
  ]
}
"#;

struct Raw {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// The INFO line, reduced.
    info: String,
}

impl Raw {
    async fn connect(addr: &str, connect: &str) -> Raw {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (reader, writer) = stream.into_split();
        let mut raw = Raw {
            reader: BufReader::new(reader),
            writer,
            info: String::new(),
        };
        let info = raw.line().await.expect("INFO");
        raw.info = reduce_info(&info);
        raw.writer
            .write_all(format!("CONNECT {connect}\r\n").as_bytes())
            .await
            .unwrap();
        raw
    }

    async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(PATIENCE, self.reader.read_line(&mut line))
            .await
            .expect("a line from the server")
            .unwrap();
        (n > 0).then(|| line.trim_end_matches("\r\n").to_string())
    }

    /// Sends `text` then PING; returns every line before the PONG.
    async fn step(&mut self, text: &str) -> Vec<String> {
        self.writer
            .write_all(format!("{text}PING\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        loop {
            match self.line().await {
                Some(l) if l == "PONG" => return out,
                Some(l) => out.push(l),
                None => {
                    out.push("<closed>".into());
                    return out;
                }
            }
        }
    }

    /// Sends `text`, which the server must answer by closing; returns all
    /// it said before.
    async fn closing(&mut self, text: &[u8]) -> Vec<String> {
        // The server may close before taking all of it.
        let _ = self.writer.write_all(text).await;
        let mut rest = Vec::new();
        tokio::time::timeout(PATIENCE, self.reader.read_to_end(&mut rest))
            .await
            .expect("the server to close the connection")
            .ok();
        let mut out: Vec<String> = String::from_utf8_lossy(&rest)
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        out.push("<closed>".into());
        out
    }
}

/// The INFO fields both servers must agree on.
fn reduce_info(line: &str) -> String {
    let json: Value = serde_json::from_str(line.strip_prefix("INFO ").expect("INFO")).unwrap();
    let keep = ["proto", "headers", "max_payload"];
    let kept: Vec<String> = keep.iter().map(|k| format!("{k}={}", json[*k])).collect();
    format!("INFO {}", kept.join(" "))
}

/// MSG/HMSG lines with their payloads, sorted: one published message
/// matching several subscriptions of a connection may be delivered to them
/// in any order.
fn unordered(lines: Vec<String>) -> Vec<String> {
    let mut items = Vec::new();
    let mut it = lines.into_iter();
    while let Some(l) = it.next() {
        if l.starts_with("MSG ") || l.starts_with("HMSG ") {
            let payload = it.next().unwrap_or_default();
            items.push(format!("{l} | {payload}"));
        } else {
            items.push(l);
        }
    }
    items.sort();
    items
}

/// nats-server 2.11 and later name the dead subject in the 503 status
/// (`Nats-Subject: <subject>`), as the embedded bus does; Debian's 2.9
/// does not. Both are valid answers clients accept, so the header and the
/// sizes it changes are left out of the comparison.
fn without_nats_subject(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .filter(|l| l != "Nats-Subject: nobody.home")
        .map(|l| match l.strip_prefix("HMSG _INBOX.sbs 6 ") {
            Some(_) => "HMSG _INBOX.sbs 6 <sizes>".to_string(),
            None => l,
        })
        .collect()
}

/// The whole script against one server; returns its transcript.
async fn script(addr: &str) -> Vec<(String, Vec<String>)> {
    let mut t: Vec<(String, Vec<String>)> = Vec::new();
    let quiet = r#"{"verbose":false,"pedantic":false,"headers":true,"no_responders":true}"#;

    let mut a = Raw::connect(addr, quiet).await;
    t.push(("info".into(), vec![a.info.clone()]));
    t.push(("ping".into(), a.step("").await));
    t.push((
        "wildcards".into(),
        unordered(
            a.step(
                "SUB w.* 1\r\nSUB w.> 2\r\nSUB w.a 3\r\nPUB w.a 2\r\nhi\r\nPUB w.a.b 3\r\nabc\r\n",
            )
            .await,
        ),
    ));
    t.push((
        "unsub after N".into(),
        a.step("SUB n 4\r\nUNSUB 4 2\r\nPUB n 1\r\n1\r\nPUB n 1\r\n2\r\nPUB n 1\r\n3\r\n")
            .await,
    ));
    // Which member gets a message is the server's choice: count per group.
    let queued = a
        .step("SUB q g 10\r\nSUB q g 11\r\nPUB q 1\r\nx\r\nPUB q 1\r\ny\r\nPUB q 1\r\nz\r\n")
        .await;
    let queued: Vec<String> = queued
        .into_iter()
        .map(|l| {
            l.replace("MSG q 10 ", "MSG q <member> ")
                .replace("MSG q 11 ", "MSG q <member> ")
        })
        .collect();
    t.push(("queue group".into(), unordered(queued)));
    t.push((
        "headers".into(),
        a.step("SUB h 5\r\nHPUB h 20 22\r\nNATS/1.0\r\nX-A: 1\r\n\r\nhi\r\n")
            .await,
    ));
    let no_responders = a
        .step("SUB _INBOX.sbs 6\r\nPUB nobody.home _INBOX.sbs 0\r\n\r\n")
        .await;
    t.push(("no responders".into(), without_nats_subject(no_responders)));
    t.push((
        "publish permission".into(),
        a.step("PUB flagbase.flag.disabled 2\r\nhi\r\n").await,
    ));
    t.push((
        "subscribe permission".into(),
        a.step("SUB flagbase.user.> 7\r\nSUB flagbase.flag.> 8\r\n")
            .await,
    ));

    let mut quiet_peer =
        Raw::connect(addr, r#"{"verbose":false,"pedantic":false,"echo":false}"#).await;
    quiet_peer.step("SUB e 1\r\n").await;
    t.push((
        "echo false: own message".into(),
        quiet_peer.step("PUB e 3\r\nown\r\n").await,
    ));
    a.step("PUB e 5\r\nother\r\n").await;
    t.push((
        "echo false: other's message".into(),
        quiet_peer.step("").await,
    ));

    let mut verbose = Raw::connect(addr, r#"{"verbose":true,"pedantic":false}"#).await;
    t.push((
        "verbose".into(),
        verbose
            .step("SUB v 1\r\nPUB v 2\r\nok\r\nUNSUB 1\r\nPUB flagbase.x 0\r\n\r\n")
            .await,
    ));

    let mut big = Raw::connect(addr, quiet).await;
    big.step("").await;
    t.push((
        "max_payload".into(),
        big.closing(b"PUB big 1048577\r\n").await,
    ));
    let mut long = Raw::connect(addr, quiet).await;
    long.step("").await;
    let mut line = b"PUB ".to_vec();
    line.extend(std::iter::repeat_n(b'a', 5000));
    t.push(("control line too long".into(), long.closing(&line).await));
    let mut unknown = Raw::connect(addr, quiet).await;
    unknown.step("").await;
    t.push(("unknown op".into(), unknown.closing(b"FOO bar\r\n").await));
    t
}

#[tokio::test]
async fn bus_side_by_side_embedded_bus_answers_as_nats_server_does() {
    let reference = NatsServer::start(free_port(), NATS_CONF);
    let fb = Flagbase::start().await;
    let theirs = script(&format!("127.0.0.1:{}", reference.port)).await;
    let ours = script(&bus_addr(&fb)).await;
    let mut differences = Vec::new();
    for ((step, expected), (_, got)) in theirs.iter().zip(&ours) {
        if expected != got {
            differences.push(format!(
                "{step}:\n  nats-server: {expected:?}\n  flagbase:    {got:?}"
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "the embedded bus differs from nats-server:\n{}",
        differences.join("\n")
    );
    // The reference really was exercised (a silent empty transcript would pass).
    let permission = &theirs
        .iter()
        .find(|(s, _)| s == "publish permission")
        .unwrap()
        .1;
    assert_eq!(
        permission,
        &[r#"-ERR 'Permissions Violation for Publish to "flagbase.flag.disabled"'"#]
    );
}
