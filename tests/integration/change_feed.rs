//! The change sequence as the API shows it: every audit record carries its
//! change's number (`seq`), and the numbers are consecutive in commit order,
//! whatever the mix of changes, failures and clients that hung up.
//! (The in-process feed that publishes the same numbers is tested at the
//! service level in `src/events/tests.rs`.)

use serde_json::{json, Value};

use crate::hangup::{hang_up_while_writes_wait, RawRequest};
use crate::harness::{Flagbase, Options};

fn flag(key: &str) -> Value {
    json!({"key": key, "enabled": true, "default_value": false})
}

/// Every audit record's `(seq, action)`, newest first, read page by page.
async fn audit_sequence(fb: &Flagbase, admin: &str) -> Vec<(u64, String)> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/audit?limit=37&cursor={c}"),
            None => "/api/v1/audit?limit=37".to_string(),
        };
        let r = fb.get(&path, Some(admin)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        for record in r.body["records"].as_array().unwrap() {
            let seq = record["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("no seq: {record}"));
            all.push((seq, record["action"].as_str().unwrap().to_string()));
        }
        match r.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return all,
        }
    }
}

/// Newest first, the numbers count down to 1 without a gap.
fn assert_consecutive(sequence: &[(u64, String)]) {
    let numbers: Vec<u64> = sequence.iter().map(|(seq, _)| *seq).collect();
    let expected: Vec<u64> = (1..=sequence.len() as u64).rev().collect();
    assert_eq!(numbers, expected, "audit seq values are not consecutive");
}

#[tokio::test]
async fn audit_records_carry_consecutive_seq_values() {
    let fb = Flagbase::start().await;
    let admin = fb.setup_admin("root@example.com").await;
    let (dev_id, dev) = fb.user("dev@example.com", "developer", Some(&admin)).await;
    assert_eq!(
        fb.post("/api/v1/flags", flag("a"), Some(&dev)).await.status,
        201
    );
    assert_eq!(
        fb.post("/api/v1/flags", flag("a"), Some(&dev)).await.status,
        409
    );
    let toggle = fb
        .send(
            fb.http
                .patch(fb.url("/api/v1/flags/a/toggle"))
                .bearer_auth(&dev),
        )
        .await;
    assert_eq!(toggle.status, 200, "{}", toggle.body);
    let missing = fb
        .send(
            fb.http
                .patch(fb.url("/api/v1/flags/nope/toggle"))
                .bearer_auth(&dev),
        )
        .await;
    assert_eq!(missing.status, 404);
    let token = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "ci", "role": "user"}),
            Some(&dev),
        )
        .await;
    assert_eq!(token.status, 201, "{}", token.body);
    let token_id = token.body["id"].as_str().unwrap();
    assert_eq!(
        fb.delete(&format!("/api/v1/tokens/{token_id}"), Some(&dev))
            .await
            .status,
        204
    );
    assert_eq!(fb.delete("/api/v1/flags/a", Some(&dev)).await.status, 204);
    let role = fb
        .put(
            &format!("/api/v1/users/{dev_id}/role"),
            json!({"role": "user"}),
            Some(&admin),
        )
        .await;
    assert_eq!(role.status, 200, "{}", role.body);
    assert_eq!(
        fb.delete(&format!("/api/v1/users/{dev_id}"), Some(&admin))
            .await
            .status,
        204
    );

    let sequence = audit_sequence(&fb, &admin).await;
    assert_consecutive(&sequence);
    let actions: Vec<&str> = sequence.iter().rev().map(|(_, a)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "user.create",
            "user.create",
            "flag.create",
            "flag.toggle",
            "token.create",
            "token.delete",
            "flag.delete",
            "user.role",
            "user.delete",
        ],
        "one number per change, none for the refused ones"
    );
}

/// Regression guard for the sequence under hang-ups: changes whose clients
/// went away mid-change are numbered like any other, with no gap, and the
/// numbers survive a restart (they live in the database, not the process).
#[tokio::test]
async fn regression_changes_whose_clients_hung_up_keep_the_sequence_gapless() {
    let fb = Flagbase::start_with(Options::default().set("database.busy_timeout", "60s")).await;
    let admin = fb.setup_admin("root@example.com").await;
    for i in 0..10 {
        let r = fb
            .post("/api/v1/flags", flag(&format!("old-{i}")), Some(&admin))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let mut requests: Vec<RawRequest> = (0..20)
        .map(|i| {
            (
                "POST",
                "/api/v1/flags".to_string(),
                flag(&format!("hung-up-{i}")).to_string(),
            )
        })
        .collect();
    for i in 0..5 {
        requests.push((
            "PATCH",
            format!("/api/v1/flags/old-{i}/toggle"),
            String::new(),
        ));
    }
    for i in 5..10 {
        requests.push(("DELETE", format!("/api/v1/flags/old-{i}"), String::new()));
    }
    requests.push((
        "POST",
        "/api/v1/tokens".to_string(),
        json!({"name": "hung-up", "role": "user"}).to_string(),
    ));
    hang_up_while_writes_wait(&fb, &requests, &admin).await;
    // Writes queue in arrival order, so once this one has committed, every
    // change queued before it has too.
    let r = fb
        .post("/api/v1/flags", flag("sentinel"), Some(&admin))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    let sequence = audit_sequence(&fb, &admin).await;
    assert_consecutive(&sequence);
    // Setup, 10 flags, the sentinel: anything beyond came from a client
    // that hung up.
    assert!(
        sequence.len() > 12,
        "no hung-up change committed: the test did not exercise the bug"
    );

    let fb = fb.restart();
    let admin = fb.login("root@example.com").await;
    let r = fb
        .post("/api/v1/flags", flag("after-restart"), Some(&admin))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let after = audit_sequence(&fb, &admin).await;
    assert_consecutive(&after);
    assert_eq!(
        after.len(),
        sequence.len() + 1,
        "the count continues after a restart"
    );
}
