//! The SSE stream (`GET /api/v1/stream`), OFREP change notifications
//! (`GET /ofrep/v1/events`), client tokens and the evaluation context rule,
//! against the real binary. Streams are read as they arrive; nothing here
//! sleeps or measures time.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Flagbase, Options};

/// Generous bound on waiting for one event, so a broken stream fails the
/// test instead of hanging it.
const WAIT: Duration = Duration::from_secs(60);

/// One SSE block: its fields, or a comment.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub event: Option<String>,
    pub id: Option<u64>,
    pub data: Option<String>,
    pub retry: Option<u64>,
    pub comment: Option<String>,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("a data line")).expect("JSON data")
    }
}

fn parse_block(block: &str) -> Event {
    let mut e = Event::default();
    for line in block.lines() {
        if let Some(c) = line.strip_prefix(':') {
            e.comment = Some(c.trim().to_string());
        } else if let Some((field, value)) = line.split_once(':') {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => e.event = Some(value.to_string()),
                "id" => e.id = Some(value.parse().expect("numeric id")),
                "data" => e.data = Some(value.to_string()),
                "retry" => e.retry = Some(value.parse().expect("numeric retry")),
                other => panic!("unexpected field {other:?} in {block:?}"),
            }
        }
    }
    e
}

/// A stream read through reqwest, block by block.
pub struct Sse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    pub async fn open(fb: &Flagbase, path: &str, token: Option<&str>, last: Option<u64>) -> Sse {
        let mut req = fb.http.get(fb.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(id) = last {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let response = tokio::time::timeout(WAIT, req.send())
            .await
            .expect("the stream's head arrives at once")
            .expect("request");
        Sse {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            response,
            buffer: String::new(),
        }
    }

    /// The next block, comments and `retry:` included; `None` at the end.
    pub async fn next_block(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_block(&block));
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("an event within the wait");
            match chunk {
                Ok(Some(bytes)) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next named event, skipping comments and `retry:`.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            let block = self.next_block().await?;
            if block.event.is_some() || block.data.is_some() {
                return Some(block);
            }
        }
    }
}

fn flag(key: &str) -> Value {
    json!({"key": key, "enabled": true, "default_value": false, "rollout_percentage": 50})
}

async fn token(fb: &Flagbase, by: &str, kind: &str) -> (String, String) {
    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": format!("{kind} token"), "role": "user", "kind": kind}),
            Some(by),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["kind"], kind);
    (
        r.body["id"].as_str().unwrap().to_string(),
        r.body["token"].as_str().unwrap().to_string(),
    )
}

async fn toggle(fb: &Flagbase, by: &str, key: &str) -> Value {
    let r = fb
        .send(
            fb.http
                .patch(fb.url(&format!("/api/v1/flags/{key}/toggle")))
                .bearer_auth(by),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// Every flag as the REST API lists it, by key.
async fn server_state(fb: &Flagbase, by: &str) -> BTreeMap<String, Value> {
    let r = fb.get("/api/v1/flags?limit=1000", Some(by)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["key"].as_str().unwrap().to_string(), f.clone()))
        .collect()
}

/// Applies one stream event to a client's copy of the flags; returns its id.
fn apply(state: &mut BTreeMap<String, Value>, e: &Event) -> u64 {
    let data = e.json();
    match e.event.as_deref() {
        Some("snapshot") => {
            state.clear();
            for f in data["flags"].as_array().unwrap() {
                state.insert(f["key"].as_str().unwrap().to_string(), f.clone());
            }
        }
        Some("flag_updated") => {
            let f = &data["flag"];
            state.insert(f["key"].as_str().unwrap().to_string(), f.clone());
        }
        Some("flag_deleted") => {
            state.remove(data["key"].as_str().unwrap());
        }
        other => panic!("unexpected event {other:?}: {e:?}"),
    }
    assert_eq!(data["seq"].as_u64(), e.id, "data.seq equals the id: {e:?}");
    e.id.expect("every event has an id")
}

#[tokio::test]
async fn stream_sends_a_snapshot_then_every_change_in_order() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    for key in ["a", "b"] {
        assert_eq!(
            fb.post("/api/v1/flags", flag(key), Some(&admin))
                .await
                .status,
            201
        );
    }
    let (_, server) = token(&fb, &admin, "server").await;
    let mut sse = Sse::open(&fb, "/api/v1/stream", Some(&server), None).await;
    assert_eq!(sse.status, 200);
    let header = |name: &str| {
        sse.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
    assert_eq!(header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(header("x-accel-buffering").as_deref(), Some("no"));
    let first = sse.next_block().await.unwrap();
    assert_eq!(first.retry, Some(3000), "{first:?}");
    let snapshot = sse.next().await.unwrap();
    assert_eq!(snapshot.event.as_deref(), Some("snapshot"));
    let mut mine = BTreeMap::new();
    let mut last = apply(&mut mine, &snapshot);
    assert_eq!(mine, server_state(&fb, &admin).await);

    assert_eq!(
        fb.post("/api/v1/flags", flag("c"), Some(&admin))
            .await
            .status,
        201
    );
    toggle(&fb, &admin, "a").await;
    assert_eq!(fb.delete("/api/v1/flags/b", Some(&admin)).await.status, 204);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let e = sse.next().await.unwrap();
        let id = apply(&mut mine, &e);
        assert!(id > last, "ids increase: {id} after {last}");
        last = id;
        seen.push(e.event.clone().unwrap());
    }
    assert_eq!(seen, ["flag_updated", "flag_updated", "flag_deleted"]);
    // Each flag arrives exactly as GET /api/v1/flags/{key} shows it.
    for (key, shown) in &mine {
        assert_eq!(
            &fb.get(&format!("/api/v1/flags/{key}"), Some(&admin))
                .await
                .body,
            shown
        );
    }
    assert_eq!(mine, server_state(&fb, &admin).await);
}

#[tokio::test]
async fn a_client_that_drops_during_a_burst_resumes_to_exactly_the_servers_state() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let (_, server) = token(&fb, &admin, "server").await;
    let mut sse = Sse::open(&fb, "/api/v1/stream", Some(&server), None).await;
    let mut mine = BTreeMap::new();
    let mut last = apply(&mut mine, &sse.next().await.unwrap());

    // 100 changes from another task: ten flags created, toggled,
    // deleted, created again... and a few refused ones in between.
    let burst = {
        let (base, admin) = (fb.base.clone(), admin.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0..100 {
                let key = format!("f{}", i % 10);
                let req = match (i / 10) % 3 {
                    0 => http.post(format!("{base}/api/v1/flags")).json(&flag(&key)),
                    1 => http.patch(format!("{base}/api/v1/flags/{key}/toggle")),
                    _ => http.delete(format!("{base}/api/v1/flags/{key}")),
                };
                let status = req.bearer_auth(&admin).send().await.unwrap().status();
                assert!(status.is_success(), "change {i}: {status}");
                if i % 25 == 0 {
                    // Refused changes take no number and send nothing.
                    let missing = http.patch(format!("{base}/api/v1/flags/nope/toggle"));
                    missing.bearer_auth(&admin).send().await.unwrap();
                }
            }
        })
    };
    // Read a few changes, then hang up in the middle of the burst.
    for _ in 0..10 {
        last = apply(&mut mine, &sse.next().await.unwrap());
    }
    drop(sse);
    burst.await.unwrap();
    assert_eq!(
        fb.post("/api/v1/flags", flag("marker"), Some(&admin))
            .await
            .status,
        201
    );

    let mut sse = Sse::open(&fb, "/api/v1/stream", Some(&server), Some(last)).await;
    assert_eq!(sse.next_block().await.unwrap().retry, Some(3000));
    loop {
        let e = sse.next().await.unwrap();
        assert_ne!(
            e.event.as_deref(),
            Some("snapshot"),
            "the history holds the missed changes"
        );
        let id = apply(&mut mine, &e);
        assert!(id > last, "replayed in order");
        last = id;
        if mine.contains_key("marker") {
            break;
        }
    }
    assert_eq!(mine, server_state(&fb, &admin).await);
}

#[tokio::test]
async fn a_resume_older_than_the_history_gets_a_fresh_snapshot() {
    let fb = Flagbase::start_with(Options::default().set("stream.history", "3")).await;
    let admin = fb.setup_admin("root@example.com").await;
    let mut sse = Sse::open(&fb, "/api/v1/stream", Some(&admin), None).await;
    let first = sse.next().await.unwrap();
    drop(sse);
    for i in 0..6 {
        assert_eq!(
            fb.post("/api/v1/flags", flag(&format!("h{i}")), Some(&admin))
                .await
                .status,
            201
        );
    }
    let mut sse = Sse::open(&fb, "/api/v1/stream", Some(&admin), first.id).await;
    let e = sse.next().await.unwrap();
    assert_eq!(e.event.as_deref(), Some("snapshot"), "{e:?}");
    let mut mine = BTreeMap::new();
    apply(&mut mine, &e);
    assert_eq!(mine, server_state(&fb, &admin).await);
    // Within the history, the same server replays instead.
    let resumed_from = e.id.unwrap();
    toggle(&fb, &admin, "h0").await;
    let mut again = Sse::open(&fb, "/api/v1/stream", Some(&admin), Some(resumed_from)).await;
    assert_eq!(
        again.next().await.unwrap().event.as_deref(),
        Some("flag_updated")
    );
}

#[tokio::test]
async fn a_slow_consumer_is_told_to_resync_and_closed() {
    let fb = Flagbase::start_with(Options::default().set("stream.client_buffer", "4")).await;
    let admin = fb.setup_admin("root@example.com").await;
    // A large flag, so a few dozen changes overflow every socket buffer.
    let users: Vec<String> = (0..4000).map(|i| format!("user-{i:020}")).collect();
    let big =
        json!({"key": "big", "enabled": true, "default_value": false, "targeted_users": users});
    assert_eq!(
        fb.post("/api/v1/flags", big, Some(&admin)).await.status,
        201
    );

    let host = fb.base.trim_start_matches("http://").to_string();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(host.parse().unwrap()).await.unwrap();
    let request = format!(
        "GET /api/v1/stream HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {admin}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // Not reading: the server's buffers fill while changes keep coming.
    for _ in 0..80 {
        toggle(&fb, &admin, "big").await;
    }
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("the server closes the stream")
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    let body = dechunk(text.split_once("\r\n\r\n").expect("a response head").1);
    let last = body.trim_end().rsplit("\n\n").next().unwrap().to_string();
    assert_eq!(
        last, "event: resync\ndata: {\"reason\":\"slow_consumer\"}",
        "the last event before the close"
    );
    assert!(
        body.matches("event: flag_updated").count() < 80,
        "it was behind"
    );
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

#[tokio::test]
async fn revoking_the_credential_closes_its_stream() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let (id, server) = token(&fb, &admin, "server").await;
    let mut by_token = Sse::open(&fb, "/api/v1/stream", Some(&server), None).await;
    assert_eq!(
        by_token.next().await.unwrap().event.as_deref(),
        Some("snapshot")
    );
    let (user_id, session) = fb.user("ada@example.com", "user", Some(&admin)).await;
    let mut by_session = Sse::open(&fb, "/api/v1/stream", Some(&session), None).await;
    assert_eq!(
        by_session.next().await.unwrap().event.as_deref(),
        Some("snapshot")
    );

    assert_eq!(
        fb.delete(&format!("/api/v1/tokens/{id}"), Some(&admin))
            .await
            .status,
        204
    );
    assert!(
        by_token.next().await.is_none(),
        "the revoked token's stream ends"
    );
    assert_eq!(
        fb.delete(&format!("/api/v1/users/{user_id}"), Some(&admin))
            .await
            .status,
        204
    );
    assert!(
        by_session.next().await.is_none(),
        "the deleted user's stream ends"
    );
    // And neither credential opens a new one.
    assert_eq!(
        Sse::open(&fb, "/api/v1/stream", Some(&server), None)
            .await
            .status,
        401
    );
    assert_eq!(
        Sse::open(&fb, "/api/v1/stream", Some(&session), None)
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn an_expiring_tokens_stream_ends_when_the_token_expires() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "short", "role": "user", "expires_in": "1500ms"}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let short = r.body["token"].as_str().unwrap();
    let mut sse = Sse::open(&fb, "/api/v1/stream", Some(short), None).await;
    assert_eq!(sse.next().await.unwrap().event.as_deref(), Some("snapshot"));
    assert!(sse.next().await.is_none(), "the stream ends at the expiry");
    assert_eq!(
        Sse::open(&fb, "/api/v1/stream", Some(short), None)
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn shutdown_closes_open_streams() {
    let mut fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let mut sse = Sse::open(&fb, "/api/v1/stream", Some(&admin), None).await;
    assert_eq!(sse.next().await.unwrap().event.as_deref(), Some("snapshot"));
    fb.signal(libc::SIGTERM);
    assert!(sse.next().await.is_none(), "the stream ends cleanly");
    let status = tokio::task::spawn_blocking(move || fb.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn an_idle_stream_outlives_the_idle_timeout_on_heartbeats() {
    // The heartbeat (15s by default) is lowered under the 1s idle timeout.
    let fb = Flagbase::start_with(Options::default().set("server.idle_timeout", "1s")).await;
    let admin = fb.setup_admin("root@example.com").await;
    let url = fb.url(&format!("/api/v1/stream?token={admin}"));
    let response = fb.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "?token= works for EventSource");
    let mut sse = Sse {
        status: 200,
        headers: response.headers().clone(),
        response,
        buffer: String::new(),
    };
    let mut beats = 0;
    while beats < 4 {
        let block = sse.next_block().await.expect("still open");
        if block.comment.as_deref() == Some("heartbeat") {
            beats += 1;
        }
    }
    // Four beats of at most half the idle timeout each: longer than it.
    toggle_after_create(&fb, &admin).await;
    assert_eq!(
        sse.next().await.unwrap().event.as_deref(),
        Some("flag_updated")
    );
}

async fn toggle_after_create(fb: &Flagbase, admin: &str) {
    assert_eq!(
        fb.post("/api/v1/flags", flag("late"), Some(admin))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn a_client_token_evaluates_but_never_reads_a_definition() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let spec = json!({"key": "beta", "enabled": true, "default_value": false,
        "targeted_users": ["end-user-7"], "description": "secret targeting"});
    assert_eq!(
        fb.post("/api/v1/flags", spec, Some(&admin)).await.status,
        201
    );
    let (client_id, client) = token(&fb, &admin, "client").await;
    let refused = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "x", "role": "developer", "kind": "client"}),
            Some(&admin),
        )
        .await;
    assert_eq!(refused.error(400), "invalid");
    let listed = fb.get("/api/v1/tokens", Some(&admin)).await;
    let kinds: Vec<&str> = listed.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["client"]);

    // Definitions and writes: 403 everywhere.
    for path in [
        "/api/v1/flags",
        "/api/v1/flags/beta",
        "/api/v1/flags/beta/evaluate",
        "/api/v1/flags/beta/history",
        "/api/v1/tokens",
        "/api/v1/users",
        "/api/v1/audit",
        "/api/v1/stream",
    ] {
        assert_eq!(
            fb.get(path, Some(&client)).await.error(403),
            "forbidden",
            "GET {path}"
        );
    }
    let stream_by_query = fb
        .send(
            fb.http
                .get(fb.url(&format!("/api/v1/stream?token={client}"))),
        )
        .await;
    assert_eq!(stream_by_query.error(403), "forbidden");
    let writes = [
        fb.post("/api/v1/flags", flag("x"), Some(&client)).await,
        fb.put("/api/v1/flags/beta", flag("beta"), Some(&client))
            .await,
        fb.delete("/api/v1/flags/beta", Some(&client)).await,
        fb.post(
            "/api/v1/tokens",
            json!({"name": "n", "role": "user"}),
            Some(&client),
        )
        .await,
        fb.delete(&format!("/api/v1/tokens/{client_id}"), Some(&client))
            .await,
        fb.post(
            "/auth/register",
            json!({"email": "eve@example.com", "password": "long enough pw", "role": "admin"}),
            Some(&client),
        )
        .await,
    ];
    for r in &writes {
        assert_eq!(r.error(403), "forbidden", "{}", r.body);
    }
    // The client token can't reach the bus either (flag events carry definitions):
    // covered by BusAuth refusing it; here, evaluation works for the supplied context.
    let r = fb
        .post(
            "/api/v1/evaluate",
            json!({"context": {"targetingKey": "end-user-7"}}),
            Some(&client),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["flags"][0]["value"], true);
    assert_eq!(r.body["flags"][0]["reason"], "TARGETING_MATCH");
    let r = fb
        .post(
            "/ofrep/v1/evaluate/flags",
            json!({"context": {"targetingKey": "end-user-7"}}),
            Some(&client),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["flags"][0]["value"], true);
    let text = r.body.to_string();
    assert!(
        !text.contains("secret targeting") && !text.contains("targeted_users"),
        "{text}"
    );

    // The advertised change stream carries refetch notices and nothing else.
    let streams = r.body["eventStreams"].as_array().expect("eventStreams");
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0]["type"], "sse");
    let uri = streams[0]["endpoint"]["requestUri"].as_str().unwrap();
    assert!(uri.starts_with("/ofrep/v1/events?"), "{uri}");
    let mut events = Sse::open(&fb, uri, None, None).await;
    assert_eq!(events.status, 200);
    toggle(&fb, &admin, "beta").await;
    let e = events.next().await.unwrap();
    assert_eq!(e.event, None, "an unnamed (message) event");
    let data = e.json();
    assert_eq!(data["type"], "refetchEvaluation");
    let etag = data["etag"].as_str().unwrap();
    assert_eq!(data.as_object().unwrap().len(), 2, "{data}");
    // Every bulk ETag after the change starts with the notice's etag.
    let after = fb
        .post(
            "/ofrep/v1/evaluate/flags",
            json!({"context": {"targetingKey": "end-user-7"}}),
            Some(&client),
        )
        .await;
    let bulk_etag = after.header("etag").unwrap();
    assert!(
        bulk_etag.starts_with(&format!("\"{etag}-")),
        "{bulk_etag} vs {etag}"
    );
    assert_eq!(after.body["flags"][0]["value"], false, "toggled off");
}

#[tokio::test]
async fn the_context_rule_sessions_for_their_person_machines_for_what_they_supply() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let (user_id, session) = fb.user("ada@example.com", "user", Some(&admin)).await;
    let (_, dev) = fb.user("dev@example.com", "developer", Some(&admin)).await;
    let spec = json!({"key": "beta", "enabled": true, "default_value": false,
        "targeted_users": ["end-user-7", user_id]});
    assert_eq!(
        fb.post("/api/v1/flags", spec, Some(&admin)).await.status,
        201
    );
    let (_, server) = token(&fb, &admin, "server").await;
    let value = |r: &crate::harness::Resp| r.body["flags"][0]["value"].clone();
    let ask = |ctx: Value| json!({"context": ctx});

    // Regression: a machine token's targetingKey/userId used to be ignored.
    let r = fb
        .post(
            "/api/v1/evaluate",
            ask(json!({"targetingKey": "end-user-7"})),
            Some(&server),
        )
        .await;
    assert_eq!(value(&r), true, "{}", r.body);
    let r = fb
        .post(
            "/api/v1/evaluate",
            ask(json!({"userId": "end-user-7"})),
            Some(&server),
        )
        .await;
    assert_eq!(value(&r), true, "{}", r.body);
    let r = fb
        .post(
            "/api/v1/evaluate",
            ask(json!({"targetingKey": "someone"})),
            Some(&server),
        )
        .await;
    assert_eq!(value(&r), false, "{}", r.body);
    // A session is its person, whatever it supplies.
    let r = fb
        .post(
            "/api/v1/evaluate",
            ask(json!({"targetingKey": "someone"})),
            Some(&session),
        )
        .await;
    assert_eq!(value(&r), true, "{}", r.body);
    let r = fb
        .post(
            "/api/v1/evaluate",
            ask(json!({"targetingKey": "end-user-7"})),
            Some(&dev),
        )
        .await;
    assert_eq!(value(&r), false, "{}", r.body);
    // Developers preview another context with `as`; users may not.
    let preview = json!({"as": {"targetingKey": "end-user-7"}});
    let r = fb
        .post("/api/v1/evaluate", preview.clone(), Some(&dev))
        .await;
    assert_eq!(value(&r), true, "{}", r.body);
    assert_eq!(
        fb.post("/api/v1/evaluate", preview.clone(), Some(&session))
            .await
            .error(403),
        "forbidden"
    );
    assert_eq!(
        fb.post("/api/v1/evaluate", preview, Some(&server))
            .await
            .error(400),
        "invalid"
    );
    // OFREP follows the same rule.
    let r = fb
        .post(
            "/ofrep/v1/evaluate/flags/beta",
            ask(json!({"targetingKey": "someone"})),
            Some(&session),
        )
        .await;
    assert_eq!(r.body["value"], true, "{}", r.body);
}

/// The official OpenFeature OFREP web provider (`@openfeature/ofrep-web-provider`
/// 0.4.3, the first released provider that follows `eventStreams`) refetches
/// on our change stream: polling is off, so only the stream can tell it.
#[tokio::test]
async fn official_ofrep_web_provider_refetches_on_the_change_stream() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let provider =
        root.join("tests/interop/node/node_modules/@openfeature/ofrep-web-provider/package.json");
    assert!(
        provider.is_file(),
        "the Node OpenFeature packages are not installed (no {}); run scripts/install-test-deps.sh",
        provider.display()
    );
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let spec = json!({"key": "beta", "enabled": true, "default_value": false,
        "targeted_users": ["end-user-7"]});
    assert_eq!(
        fb.post("/api/v1/flags", spec, Some(&admin)).await.status,
        201
    );
    let (_, client) = token(&fb, &admin, "client").await;
    let mut cmd = std::process::Command::new("node");
    cmd.current_dir(&root)
        .args([
            "--experimental-eventsource",
            "--test",
            "tests/interop/node/ofrep-events.test.mjs",
        ])
        .env("FLAGBASE_URL", &fb.base)
        .env("FLAGBASE_TOKEN", &client)
        .env("FLAGBASE_ADMIN", &admin)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node ({e}); run scripts/install-test-deps.sh"));
    let out = tokio::task::spawn_blocking(move || {
        crate::harness::output_within(child, Duration::from_secs(120))
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the OFREP web provider suite failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
