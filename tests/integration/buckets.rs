//! The buckets API end to end: objects in and out with content-hash ETags,
//! listing by prefix, roles, size limits, and names that try to escape.

use serde_json::json;

use crate::harness::{Flagbase, Options};

#[tokio::test]
async fn buckets_store_list_and_delete_objects() {
    let fb = Flagbase::start_with(Options::default().set("storage.max_object_bytes", "1000")).await;
    let admin = fb.setup_admin("root@example.com").await;
    let (_, dev) = fb.user("dev@example.com", "developer", Some(&admin)).await;
    let (_, user) = fb.user("user@example.com", "user", None).await;
    let put = |name: &str, body: &'static str, token: &str| {
        fb.http
            .put(fb.url(&format!("/api/v1/buckets/reports/objects/{name}")))
            .bearer_auth(token)
            .body(body)
    };
    let r = fb.send(put("2026/q1.csv", "a,b\n", &dev)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let etag = r.header("etag").unwrap().to_string();
    assert_eq!(etag.len(), 66, "the content hash, quoted: {etag}");
    assert_eq!(fb.send(put("2026/q2.csv", "c\n", &dev)).await.status, 200);
    fb.send(put("x", "no", &user)).await.error(403);
    fb.send(
        fb.http
            .put(fb.url("/api/v1/buckets/reports/objects/big"))
            .bearer_auth(&dev)
            .body("x".repeat(1001)),
    )
    .await
    .error(413);

    let got = fb
        .get("/api/v1/buckets/reports/objects/2026/q1.csv", Some(&user))
        .await;
    assert_eq!((got.status, got.body.clone()), (200, json!("a,b\n")));
    assert_eq!(got.header("etag"), Some(etag.as_str()));
    let same = fb
        .send(
            fb.http
                .get(fb.url("/api/v1/buckets/reports/objects/2026/q1.csv"))
                .bearer_auth(&user)
                .header("if-none-match", &etag),
        )
        .await;
    assert_eq!(same.status, 304);

    let list = fb
        .get("/api/v1/buckets/reports/objects?prefix=2026/q", Some(&user))
        .await;
    let names: Vec<&str> = list.body["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["2026/q1.csv", "2026/q2.csv"]);
    assert_eq!(
        fb.delete("/api/v1/buckets/reports/objects/2026/q1.csv", Some(&dev))
            .await
            .status,
        204
    );
    fb.get("/api/v1/buckets/reports/objects/2026/q1.csv", Some(&user))
        .await
        .error(404);
    fb.delete("/api/v1/buckets/reports/objects/2026/q2.csv", Some(&user))
        .await
        .error(403);
}

#[tokio::test]
async fn buckets_refuse_names_that_try_to_escape_the_base_path() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    std::fs::write(fb.dir().join("secret.txt"), "top secret").unwrap();
    for path in [
        "/api/v1/buckets/b/objects/..%2F..%2F..%2Fsecret.txt",
        "/api/v1/buckets/b/objects/a/%2E%2E/%2E%2E/%2E%2E/%2E%2E/secret.txt",
        "/api/v1/buckets/%2E%2E/objects/secret.txt",
        "/api/v1/buckets/b/objects/%2Fetc%2Fpasswd",
        "/api/v1/buckets/b/objects/a%5C..%5C..%5Csecret.txt",
        "/api/v1/buckets/b/objects/a%00b",
        "/api/v1/buckets/_functions/objects/modules",
    ] {
        let r = fb.get(path, Some(&admin)).await;
        assert!(
            r.status == 400 || r.status == 404,
            "{path}: {} {}",
            r.status,
            r.body
        );
        assert!(!r.body.to_string().contains("top secret"), "{path}");
        let w = fb
            .send(
                fb.http
                    .put(fb.url(path))
                    .bearer_auth(&admin)
                    .body("overwritten"),
            )
            .await;
        assert!(
            w.status == 400 || w.status == 404,
            "{path}: {} {}",
            w.status,
            w.body
        );
    }
    assert_eq!(
        std::fs::read_to_string(fb.dir().join("secret.txt")).unwrap(),
        "top secret"
    );
    let long = format!("/api/v1/buckets/b/objects/{}", "n".repeat(600));
    fb.send(fb.http.put(fb.url(&long)).bearer_auth(&admin).body("x"))
        .await
        .error(400);
}

async fn next_event(sub: &mut async_nats::Subscriber) -> (String, serde_json::Value) {
    use futures_util::StreamExt;
    // A safety net against a hung test, not a timing assertion.
    let msg = tokio::time::timeout(std::time::Duration::from_secs(30), sub.next())
        .await
        .expect("gave up waiting for a bucket event")
        .expect("subscription open");
    let body = serde_json::from_slice(&msg.payload).expect("JSON payload");
    (msg.subject.to_string(), body)
}

#[tokio::test]
async fn buckets_writes_and_deletes_reach_the_bus() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let (dev_id, dev) = fb.user("dev@example.com", "developer", Some(&admin)).await;
    let nc = async_nats::ConnectOptions::with_token(dev.clone())
        .connect(format!("nats://{}", crate::bus::bus_addr(&fb)))
        .await
        .expect("connect with a Flagbase token");
    let mut sub = nc.subscribe("flagbase.bucket.>").await.unwrap();
    crate::bus::round_trip(&nc).await;

    let r = fb
        .send(
            fb.http
                .put(fb.url("/api/v1/buckets/notes/objects/a/b.txt"))
                .bearer_auth(&dev)
                .body("hello"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (subject, body) = next_event(&mut sub).await;
    assert_eq!(subject, "flagbase.bucket.notes.created");
    assert_eq!(body["bucket"], "notes");
    assert_eq!(body["name"], "a/b.txt");
    assert_eq!(body["size"], 5);
    assert_eq!(
        format!("\"{}\"", body["sha256"].as_str().unwrap()),
        r.header("etag").unwrap()
    );
    assert_eq!(body["actor"], dev_id.as_str());

    let r = fb
        .send(
            fb.http
                .delete(fb.url("/api/v1/buckets/notes/objects/a/b.txt"))
                .bearer_auth(&dev),
        )
        .await;
    assert!(r.status < 300, "{} {}", r.status, r.body);
    let (subject, body) = next_event(&mut sub).await;
    assert_eq!(subject, "flagbase.bucket.notes.deleted");
    assert_eq!(body["name"], "a/b.txt");
    assert_eq!(body["actor"], dev_id.as_str());
}
