//! The `async-nats` suite against the embedded bus of a running Flagbase:
//! the same list the Node (`@nats-io/transport-node`) and `nats-py` suites
//! cover, with Flagbase's credentials and permissions in the way. (The
//! bus crate's own tests run `async-nats` against the bare server; flag
//! events in order and the permission texts are in `bus.rs`.)

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use crate::bus::{bus_addr, round_trip};
use crate::harness::{Flagbase, Options};
use crate::nats_server::free_port;

/// A safety net against a hung test, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("gave up waiting for {what}"))
}

/// Flagbase with a developer's API token.
async fn flagbase(options: Options) -> (Flagbase, String) {
    let fb = Flagbase::start_with(options).await;
    let admin = fb.setup_admin("root@example.com").await;
    let (_, dev) = fb.user("dev@example.com", "developer", Some(&admin)).await;
    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "async-nats", "role": "developer"}),
            Some(&dev),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    (fb, r.body["token"].as_str().unwrap().to_string())
}

async fn client(fb: &Flagbase, token: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_token(token.to_string())
        .connect(format!("nats://{}", bus_addr(fb)))
        .await
        .expect("connect with a Flagbase token")
}

#[tokio::test]
async fn async_nats_token_auth_pub_sub_wildcards_headers_and_unsubscribe_after_n() {
    let (fb, token) = flagbase(Options::default().set("events.allow_anonymous", "false")).await;
    let refused = async_nats::ConnectOptions::with_token("fbk_nope_nope".into())
        .connect(format!("nats://{}", bus_addr(&fb)))
        .await
        .expect_err("a wrong token is refused");
    assert_eq!(
        refused.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation
    );
    let nc = client(&fb, &token).await;
    assert!(nc.server_info().headers);

    let mut star = nc.subscribe("rs.*.x").await.unwrap();
    let mut full = nc.subscribe("rs.>").await.unwrap();
    round_trip(&nc).await;
    for subject in ["rs.a.x", "rs.a.b.c", "rs.b.x"] {
        nc.publish(subject, subject.into()).await.unwrap();
    }
    let mut starred = Vec::new();
    for _ in 0..2 {
        starred.push(
            within("star", star.next())
                .await
                .unwrap()
                .subject
                .to_string(),
        );
    }
    assert_eq!(starred, ["rs.a.x", "rs.b.x"]);
    let mut all = Vec::new();
    for _ in 0..3 {
        all.push(
            within("full", full.next())
                .await
                .unwrap()
                .subject
                .to_string(),
        );
    }
    assert_eq!(all, ["rs.a.x", "rs.a.b.c", "rs.b.x"]);

    let mut headed = nc.subscribe("rs.h").await.unwrap();
    round_trip(&nc).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Flag", "checkout");
    headers.append("X-Multi", "a");
    headers.append("X-Multi", "b");
    nc.publish_with_headers("rs.h", headers, "payload".into())
        .await
        .unwrap();
    let msg = within("a message with headers", headed.next())
        .await
        .unwrap();
    assert_eq!(msg.payload, "payload");
    let got = msg.headers.unwrap();
    assert_eq!(got.get("X-Flag").unwrap().as_str(), "checkout");
    let multi: Vec<&str> = got.get_all("X-Multi").map(|v| v.as_str()).collect();
    assert_eq!(multi, ["a", "b"]);

    let mut limited = nc.subscribe("rs.max").await.unwrap();
    limited.unsubscribe_after(3).await.unwrap();
    for i in 0..5 {
        nc.publish("rs.max", i.to_string().into()).await.unwrap();
    }
    let got: Vec<_> = within(
        "three messages and the end",
        limited.map(|m| m.payload).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(got, ["0", "1", "2"]);
}

#[tokio::test]
async fn async_nats_queue_groups_request_reply_and_no_responders() {
    let (fb, token) = flagbase(Options::default()).await;
    let nc = client(&fb, &token).await;
    let members = [
        nc.queue_subscribe("rs.q", "workers".into()).await.unwrap(),
        nc.queue_subscribe("rs.q", "workers".into()).await.unwrap(),
    ];
    let mut plain = nc.subscribe("rs.q").await.unwrap();
    round_trip(&nc).await;
    for i in 0..20 {
        nc.publish("rs.q", i.to_string().into()).await.unwrap();
    }
    for _ in 0..20 {
        within("the plain subscriber", plain.next()).await.unwrap();
    }
    // The plain subscriber has all 20, so the members have theirs too: each
    // message was delivered to the group once (nothing more is pending).
    round_trip(&nc).await;
    let mut delivered = Vec::new();
    for mut member in members {
        member.unsubscribe().await.unwrap();
        while let Some(msg) = member.next().await {
            delivered.push(String::from_utf8(msg.payload.to_vec()).unwrap());
        }
    }
    delivered.sort_by_key(|s| s.parse::<u32>().unwrap());
    let sent: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    assert_eq!(delivered, sent);

    let responder = client(&fb, &token).await;
    let mut service = responder.subscribe("rs.echo").await.unwrap();
    round_trip(&responder).await;
    tokio::spawn(async move {
        while let Some(msg) = service.next().await {
            let reply = format!("echo:{}", String::from_utf8_lossy(&msg.payload));
            responder
                .publish(msg.reply.unwrap(), reply.into())
                .await
                .unwrap();
        }
    });
    let reply = within("a reply", nc.request("rs.echo", "hi".into()))
        .await
        .unwrap();
    assert_eq!(reply.payload, "echo:hi");
    let err = within("no-responders", nc.request("rs.nobody.home", "x".into()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

#[tokio::test]
async fn async_nats_permission_errors_leave_the_connection_open() {
    let (fb, token) = flagbase(Options::default()).await;
    let (errors_tx, mut errors) = tokio::sync::mpsc::unbounded_channel();
    let nc = async_nats::ConnectOptions::with_token(token)
        .event_callback(move |event| {
            let errors_tx = errors_tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = errors_tx.send(e.to_string());
                }
            }
        })
        .connect(format!("nats://{}", bus_addr(&fb)))
        .await
        .unwrap();
    nc.publish("flagbase.flag.disabled", "forged".into())
        .await
        .unwrap();
    let err = within("the publish violation", errors.recv())
        .await
        .unwrap();
    assert_eq!(
        err.to_lowercase(),
        r#"nats: permissions violation for publish to "flagbase.flag.disabled""#,
        "{err}"
    );
    let _forbidden = nc.subscribe("flagbase.user.>").await.unwrap();
    let err = within("the subscription violation", errors.recv())
        .await
        .unwrap();
    assert_eq!(
        err.to_lowercase(),
        r#"nats: permissions violation for subscription to "flagbase.user.>""#,
        "{err}"
    );
    round_trip(&nc).await;
    assert_eq!(
        nc.connection_state(),
        async_nats::connection::State::Connected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_reconnects_after_flagbase_restarts_on_the_same_port() {
    let port = free_port().to_string();
    let (fb, token) = flagbase(Options::default().set("events.nats_port", &port)).await;
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let nc = async_nats::ConnectOptions::with_token(token)
        .reconnect_delay_callback(|_| Duration::from_millis(50))
        .event_callback(move |event| {
            let events_tx = events_tx.clone();
            async move {
                let _ = events_tx.send(event.to_string());
            }
        })
        .connect(format!("nats://{}", bus_addr(&fb)))
        .await
        .unwrap();
    let mut sub = nc.subscribe("rs.after").await.unwrap();
    round_trip(&nc).await;
    let fb = tokio::task::block_in_place(|| fb.restart());
    assert_eq!(bus_addr(&fb), format!("127.0.0.1:{port}"));
    loop {
        let event = within("a reconnection", events.recv()).await.unwrap();
        if event == "connected" {
            break;
        }
    }
    // The subscription came back with the connection.
    round_trip(&nc).await;
    nc.publish("rs.after", "still here".into()).await.unwrap();
    let msg = within("a message after the restart", sub.next())
        .await
        .unwrap();
    assert_eq!(msg.payload, "still here");
}
