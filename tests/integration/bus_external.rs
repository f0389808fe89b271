//! External mode (`events.url`): Flagbase publishes to a real `nats-server`
//! it did not start, retries the first connection, queues changes while the
//! server is away and sends them in order when it is back, and never shows
//! the credential it connects with.
//!
//! Which of two clients reconnects first after a restart is a race, so the
//! tests hold Flagbase out with the server's own authorisation: the server
//! comes back knowing only the test's subscriber, which subscribes, and
//! only then a reload admits Flagbase's user.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::bus::bus_addr_of_banner;
use crate::harness::{Flagbase, Options};
use crate::nats_server::{free_port, NatsServer};

const PATIENCE: Duration = Duration::from_secs(30);
const FLAGBASE_PASSWORD: &str = "fb-Secret-pw-4471";

/// nats-server users: the subscriber, and Flagbase once `admit_flagbase`.
fn conf(admit_flagbase: bool) -> String {
    let flagbase = if admit_flagbase {
        format!(
            r#"{{user: flagbase, password: "{FLAGBASE_PASSWORD}", permissions: {{publish: ["flagbase.>", "_INBOX.>"], subscribe: ["_INBOX.>"]}}}}"#
        )
    } else {
        String::new()
    };
    format!(
        r#"authorization {{
  users = [
    {{user: watcher, password: "watcher-pw", permissions: {{publish: ["_INBOX.>"], subscribe: ["flagbase.>", "_INBOX.>"]}}}}
    {flagbase}
  ]
}}
"#
    )
}

async fn watcher(server: &NatsServer) -> (async_nats::Client, async_nats::Subscriber) {
    let nc =
        async_nats::ConnectOptions::with_user_and_password("watcher".into(), "watcher-pw".into())
            .connect(server.url())
            .await
            .expect("the watcher connects to nats-server");
    let sub = nc.subscribe("flagbase.>").await.unwrap();
    // Through the server and back: it has the subscription now.
    let inbox = nc.new_inbox();
    let mut echo = nc.subscribe(inbox.clone()).await.unwrap();
    nc.publish(inbox, "".into()).await.unwrap();
    tokio::time::timeout(PATIENCE, echo.next())
        .await
        .expect("a round trip through nats-server")
        .unwrap();
    (nc, sub)
}

/// The next `n` events as (subject, body).
async fn events(sub: &mut async_nats::Subscriber, n: usize) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let msg = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .unwrap_or_else(|_| panic!("gave up waiting for event {} of {n}", out.len() + 1))
            .expect("subscription open");
        out.push((
            msg.subject.to_string(),
            serde_json::from_slice(&msg.payload).expect("JSON payload"),
        ));
    }
    out
}

fn seqs(events: &[(String, Value)]) -> Vec<u64> {
    events
        .iter()
        .map(|(_, b)| b["seq"].as_u64().expect("seq"))
        .collect()
}

fn subjects(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(s, _)| s.as_str()).collect()
}

fn consecutive(seqs: &[u64]) -> bool {
    seqs.windows(2).all(|w| w[1] == w[0] + 1)
}

fn external(port: u16) -> Options {
    Options::default().set(
        "events.url",
        &format!("nats://flagbase:{FLAGBASE_PASSWORD}@127.0.0.1:{port}"),
    )
}

async fn toggle(fb: &Flagbase, key: &str, token: &str) {
    let r = fb
        .send(
            fb.http
                .patch(fb.url(&format!("/api/v1/flags/{key}/toggle")))
                .bearer_auth(token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn bus_external_nats_server_gets_every_change_in_order_across_its_restart() {
    let port = free_port();
    // Flagbase starts first: the bus is not there yet, and it retries.
    let fb = Flagbase::start_with(external(port)).await;
    assert_eq!(
        bus_addr_of_banner(&fb),
        format!("external nats://127.0.0.1:{port}")
    );
    let admin = fb.setup_admin("root@example.com").await;
    let created = fb
        .post(
            "/api/v1/flags",
            json!({"key": "ext", "enabled": true, "default_value": false}),
            Some(&admin),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);

    let mut server = NatsServer::start(port, &conf(false));
    let (_nc, mut sub) = watcher(&server).await;
    let connected = fb.stderr.mark();
    server.reload(&conf(true));
    fb.stderr
        .wait_for_count("Flagbase to reach nats-server", connected, 1, |l| {
            l.contains("connected to the event bus")
        });
    // Queued before the server existed: the admin's creation, then the flag.
    let first = events(&mut sub, 2).await;
    assert_eq!(
        subjects(&first),
        ["flagbase.user.created", "flagbase.flag.created"]
    );
    assert!(consecutive(&seqs(&first)), "{first:?}");
    // Live.
    toggle(&fb, "ext", &admin).await;
    let live = events(&mut sub, 1).await;
    assert_eq!(subjects(&live), ["flagbase.flag.toggled"]);
    assert_eq!(seqs(&live)[0], seqs(&first)[1] + 1);

    // nats-server goes away; the API does not notice.
    let lost = fb.stderr.mark();
    server.stop();
    fb.stderr
        .wait_for_count("Flagbase to notice", lost, 1, |l| {
            l.contains("lost the event bus connection")
        });
    for _ in 0..3 {
        toggle(&fb, "ext", &admin).await;
    }
    let updated = fb
        .put(
            "/api/v1/flags/ext",
            json!({"key": "ext", "enabled": true, "default_value": true}),
            Some(&admin),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(
        fb.delete("/api/v1/flags/ext", Some(&admin)).await.status,
        204
    );

    // Back on the same port; the queue arrives in order, without a gap.
    server.start_again(&conf(false));
    let (_nc, mut sub) = watcher(&server).await;
    server.reload(&conf(true));
    let replayed = events(&mut sub, 5).await;
    assert_eq!(
        subjects(&replayed),
        [
            "flagbase.flag.toggled",
            "flagbase.flag.toggled",
            "flagbase.flag.toggled",
            "flagbase.flag.updated",
            "flagbase.flag.deleted"
        ]
    );
    let replayed_seqs = seqs(&replayed);
    assert_eq!(replayed_seqs[0], seqs(&live)[0] + 1, "{replayed_seqs:?}");
    assert!(consecutive(&replayed_seqs), "{replayed_seqs:?}");
    assert_eq!(replayed[4].1["key"], "ext");

    // No embedded bus was started beside the external one.
    assert!(
        !fb.stderr.all().iter().any(|l| l.contains("bus listening")),
        "an embedded bus started in external mode"
    );
    // The credential never shows, in the banner or any log line.
    for line in fb.stdout.all().iter().chain(fb.stderr.all().iter()) {
        assert!(!line.contains(FLAGBASE_PASSWORD), "secret leaked: {line}");
    }
}

#[tokio::test]
async fn bus_external_full_queue_drops_the_oldest_and_says_how_many() {
    let port = free_port();
    let fb = Flagbase::start_with(external(port).set("events.queue_capacity", "2")).await;
    let admin = fb.setup_admin("root@example.com").await;
    for key in ["q1", "q2", "q3", "q4"] {
        let r = fb
            .post(
                "/api/v1/flags",
                json!({"key": key, "enabled": true, "default_value": false}),
                Some(&admin),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let full = fb.stderr.wait_for("the overflow warning", |l| {
        l.contains("the event bus queue is full")
    });
    assert!(full.contains("WARN"), "{full}");

    let mut server = NatsServer::start(port, &conf(false));
    let (_nc, mut sub) = watcher(&server).await;
    let from = fb.stderr.mark();
    server.reload(&conf(true));
    // The newest two of five changes (admin, q1..q4) survive, in order.
    let kept = events(&mut sub, 2).await;
    let keys: Vec<&str> = kept
        .iter()
        .map(|(_, b)| b["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["q3", "q4"]);
    assert!(consecutive(&seqs(&kept)));
    fb.stderr.wait_for_count("the loss report", from, 1, |l| {
        l.contains("changes were dropped before reaching the event bus") && l.contains("\"lost\":3")
    });
}
