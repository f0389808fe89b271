//! The change feed as the services drive it: `Flags` and `Iam` over one
//! temporary SQLite store and one feed, checked against the audit log. Each
//! committed change must leave exactly one event, in sequence order, with
//! the number its audit record carries: under concurrent writers and when
//! the caller went away mid-change.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::config::Config;
use crate::flags::Flags;
use crate::iam::{Caller, Credential, Iam};
use crate::model::{AuditQuery, Role, TokenKind};
use crate::storage::sqlite::{SqliteOptions, SqliteStore};
use crate::storage::Store;

struct Services {
    dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    feed: Arc<ChangeFeed>,
    flags: Arc<Flags>,
    iam: Arc<Iam>,
}

async fn services(busy_timeout: Duration) -> Services {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&SqliteOptions {
            path: dir.path().join("flagbase.db"),
            readers: 2,
            busy_timeout,
        })
        .unwrap(),
    );
    let feed = Arc::new(ChangeFeed::new(1024));
    let iam = Arc::new(
        Iam::new(store.clone(), feed.clone(), &Config::default().iam)
            .await
            .unwrap(),
    );
    let flags = Arc::new(Flags::load(store.clone(), feed.clone()).await.unwrap());
    Services {
        dir,
        store,
        feed,
        flags,
        iam,
    }
}

impl Services {
    async fn admin(&self, email: &str) -> Caller {
        let user = self
            .iam
            .create_user(email.into(), "correct horse battery", Role::Admin, "test")
            .await
            .unwrap();
        Caller {
            role: user.role,
            user,
            credential: Credential::Session {
                expires_at: chrono::DateTime::<chrono::Utc>::MAX_UTC,
            },
        }
    }

    /// `(seq, action, target)` of every audit record, in sequence order.
    async fn audited(&self) -> Vec<(u64, String, String)> {
        let mut all = self
            .store
            .audit(AuditQuery {
                limit: 100_000,
                ..Default::default()
            })
            .await
            .unwrap();
        all.sort_by_key(|r| r.seq);
        all.into_iter()
            .map(|r| (r.seq.expect("numbered"), r.action, r.target))
            .collect()
    }
}

fn flag(key: &str) -> serde_json::Value {
    json!({"key": key, "enabled": true, "default_value": false})
}

/// The audit target an event's change was recorded under.
fn target(event: &ChangeEvent) -> String {
    let p = &event.payload;
    match event.subject {
        Subject::FlagCreated
        | Subject::FlagUpdated
        | Subject::FlagToggled
        | Subject::FlagDeleted
        | Subject::FlagDisabled
        | Subject::GuardUpdated => {
            format!("flag:{}", p["key"].as_str().unwrap())
        }
        Subject::UserCreated | Subject::UserRoleChanged | Subject::UserDeleted => {
            format!("user:{}", p["id"].as_str().unwrap())
        }
        Subject::TokenCreated | Subject::TokenDeleted => {
            format!("token:{}", p["id"].as_str().unwrap())
        }
        Subject::AnomalyResolved => format!("anomaly:{}", p["id"].as_str().unwrap()),
        Subject::GatewayRouteCreated
        | Subject::GatewayRouteUpdated
        | Subject::GatewayRouteDeleted => {
            format!("gateway_route:{}", p["id"].as_str().unwrap())
        }
    }
}

/// Receives until the event numbered `last` has arrived; a missed event is
/// a failure. Every event awaited here was committed before the call, so
/// the guard only turns a lost event into a failure instead of a hang.
async fn receive_through(subscription: &mut Subscription, last: u64) -> Vec<Arc<ChangeEvent>> {
    let mut events = Vec::new();
    while events
        .last()
        .is_none_or(|e: &Arc<ChangeEvent>| e.seq < last)
    {
        let next = tokio::time::timeout(Duration::from_secs(60), subscription.recv())
            .await
            .unwrap_or_else(|_| panic!("no event numbered {last}; got {events:?}"));
        match next {
            Some(Received::Event(event)) => events.push(event),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    events
}

/// Events and the audit log tell the same story: the same numbers, each
/// once, consecutive, with matching actions and targets.
fn assert_events_match_audit(events: &[Arc<ChangeEvent>], audited: &[(u64, String, String)]) {
    let seen: Vec<(u64, String, String)> = events
        .iter()
        .map(|e| (e.seq, e.subject.audit_action().to_string(), target(e)))
        .collect();
    assert_eq!(seen, audited, "events differ from the audit log");
    let first = audited.first().map_or(1, |(seq, _, _)| *seq);
    let expected: Vec<u64> = (first..first + audited.len() as u64).collect();
    let numbers: Vec<u64> = audited.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(numbers, expected, "the sequence has a gap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_leaves_one_event_in_sequence_order() {
    let s = services(Duration::from_secs(5)).await;
    let mut feed = s.feed.subscribe();
    let token = s.iam.pending_setup_token().unwrap();
    s.iam
        .complete_setup(&token, "root@example.com", "correct horse battery")
        .await
        .unwrap();
    let admin = s.admin("ops@example.com").await;
    s.flags.create(&admin, flag("beta")).await.unwrap();
    s.flags
        .replace(&admin, "beta", flag("beta"), None)
        .await
        .unwrap();
    s.flags
        .patch(&admin, "beta", json!({"description": "x"}), None)
        .await
        .unwrap();
    s.flags.toggle(&admin, "beta", None).await.unwrap();
    s.flags.delete(&admin, "beta", None).await.unwrap();
    let dev = s
        .iam
        .create_user(
            "dev@example.com".into(),
            "correct horse battery",
            Role::Developer,
            &admin.user.id,
        )
        .await
        .unwrap();
    s.iam.set_role(&admin, &dev.id, Role::User).await.unwrap();
    let (minted, plaintext) = s
        .iam
        .create_api_token(&admin, "ci", Role::User, TokenKind::Server, None)
        .await
        .unwrap();
    s.iam.revoke_api_token(&admin, &minted.id).await.unwrap();
    s.iam.delete_user(&admin, &dev.id).await.unwrap();
    // Failed changes publish nothing and take no number.
    assert!(s.flags.create(&admin, flag("gone")).await.is_ok());
    assert!(s.flags.create(&admin, flag("gone")).await.is_err());
    assert!(s.flags.toggle(&admin, "missing", None).await.is_err());
    s.iam.delete_user(&admin, &admin.user.id).await.unwrap();

    let audited = s.audited().await;
    let last = audited.last().unwrap().0;
    let events = receive_through(&mut feed, last).await;
    assert!(feed.try_recv().is_none(), "no event beyond the audit log");
    assert_events_match_audit(&events, &audited);
    assert_eq!(events[0].seq, 1);
    assert_eq!(s.feed.last_seq(), last);
    let subjects: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
    assert_eq!(
        subjects[..14],
        [
            "flagbase.user.created",
            "flagbase.user.created",
            "flagbase.flag.created",
            "flagbase.flag.updated",
            "flagbase.flag.updated",
            "flagbase.flag.toggled",
            "flagbase.flag.deleted",
            "flagbase.user.created",
            "flagbase.user.role_changed",
            "flagbase.token.created",
            "flagbase.token.deleted",
            "flagbase.user.deleted",
            "flagbase.flag.created",
            "flagbase.user.deleted",
        ]
    );
    let deleted = &events[6].payload;
    assert_eq!(
        (deleted["key"].as_str(), deleted["version"].as_i64()),
        (Some("beta"), Some(4))
    );
    assert_eq!(deleted["flag"]["enabled"], false, "the last version");
    assert_eq!(events[5].payload["flag"]["version"], 4);
    assert_eq!(events[5].actor, admin.user.id);
    let plain: Vec<&ChangeEvent> = events.iter().map(|e| e.as_ref()).collect();
    let text = serde_json::to_string(&plain).unwrap();
    assert!(
        !text.contains("argon2") && !text.contains(&plaintext),
        "no secrets in events"
    );
}

/// Writers of both services at once: the events arrive in sequence order,
/// consecutive, one per committed change, matching the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_of_both_services_leave_in_sequence_order() {
    let s = services(Duration::from_secs(30)).await;
    let admin = s.admin("root@example.com").await;
    s.flags.create(&admin, flag("hot")).await.unwrap();
    let mut feed = s.feed.subscribe();
    let first = s.feed.last_seq() + 1;

    let mut writers = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (flags, iam, caller) = (s.flags.clone(), s.iam.clone(), admin.clone());
        writers.spawn(async move {
            flags
                .create(&caller, flag(&format!("f{i}")))
                .await
                .map(drop)?;
            flags.toggle(&caller, "hot", None).await.map(drop)?;
            let (token, _) = iam
                .create_api_token(&caller, "t", Role::User, TokenKind::Server, None)
                .await?;
            iam.revoke_api_token(&caller, &token.id).await?;
            flags.delete(&caller, &format!("f{i}"), None).await
        });
    }
    while let Some(joined) = writers.join_next().await {
        joined.unwrap().unwrap();
    }

    let audited: Vec<_> = s
        .audited()
        .await
        .into_iter()
        .filter(|(seq, _, _)| *seq >= first)
        .collect();
    assert_eq!(audited.len(), 100);
    let events = receive_through(&mut feed, audited.last().unwrap().0).await;
    assert_events_match_audit(&events, &audited);
    let toggles: Vec<i64> = events
        .iter()
        .filter(|e| e.subject == Subject::FlagToggled)
        .map(|e| e.payload["version"].as_i64().unwrap())
        .collect();
    assert_eq!(
        toggles,
        (2..=21).collect::<Vec<_>>(),
        "versions in commit order"
    );
}

/// Regression: a change whose caller went away while it waited for the
/// database must still be published, in its place in the sequence. The
/// database is locked from outside so every change waits; once one of them
/// holds the commit turn (it is mid-change) all callers are dropped, then
/// the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_changes_whose_caller_hung_up_are_published_in_sequence_order() {
    let s = services(Duration::from_secs(60)).await;
    let admin = s.admin("root@example.com").await;
    for i in 0..10 {
        s.flags
            .create(&admin, flag(&format!("old{i}")))
            .await
            .unwrap();
    }
    let (token, _) = s
        .iam
        .create_api_token(&admin, "doomed", Role::User, TokenKind::Server, None)
        .await
        .unwrap();
    let mut feed = s.feed.subscribe();
    let first = s.feed.last_seq() + 1;

    let lock = rusqlite::Connection::open(s.dir.path().join("flagbase.db")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut turns = s.feed.turns_taken();
    let before = *turns.borrow_and_update();
    let mut callers = Vec::new();
    for i in 0..10 {
        let (flags, caller) = (s.flags.clone(), admin.clone());
        callers.push(tokio::spawn(async move {
            let _ = flags.create(&caller, flag(&format!("new{i}"))).await;
        }));
        let (flags, caller) = (s.flags.clone(), admin.clone());
        callers.push(tokio::spawn(async move {
            let _ = flags.toggle(&caller, &format!("old{i}"), None).await;
        }));
    }
    let (iam, caller, id) = (s.iam.clone(), admin.clone(), token.id.clone());
    callers.push(tokio::spawn(async move {
        let _ = iam.revoke_api_token(&caller, &id).await;
    }));
    let (iam, caller) = (s.iam.clone(), admin.clone());
    callers.push(tokio::spawn(async move {
        let _ = iam
            .create_api_token(&caller, "late", Role::User, TokenKind::Server, None)
            .await;
    }));
    // A change is now waiting for the database inside its unit of work.
    turns.wait_for(|n| *n > before).await.unwrap();
    for caller in &callers {
        caller.abort();
    }
    for caller in callers {
        assert!(
            caller.await.unwrap_err().is_cancelled(),
            "the caller hung up"
        );
    }
    lock.execute_batch("ROLLBACK").unwrap();

    // Writes queue in arrival order behind the commit turn, so once this
    // one has committed the changes queued before it have too.
    s.flags.create(&admin, flag("sentinel")).await.unwrap();
    let audited: Vec<_> = s
        .audited()
        .await
        .into_iter()
        .filter(|(seq, _, _)| *seq >= first)
        .collect();
    assert!(
        audited.len() > 1,
        "no change of a hung-up caller committed: the test did not exercise the bug"
    );
    let events = receive_through(&mut feed, audited.last().unwrap().0).await;
    assert_events_match_audit(&events, &audited);
}

#[tokio::test]
async fn a_lagging_subscriber_is_told_what_it_missed_and_never_slows_a_writer() {
    let feed = ChangeFeed::new(2);
    let mut slow = feed.subscribe();
    for seq in 1..=5 {
        feed.begin().await.publish(ChangeEvent {
            seq,
            subject: Subject::FlagCreated,
            at: chrono::Utc::now(),
            actor: "x".into(),
            payload: json!({}),
        });
    }
    assert_eq!(slow.recv().await, Some(Received::Missed(3)));
    let next: Vec<u64> = [slow.recv().await, slow.recv().await]
        .into_iter()
        .map(|r| match r {
            Some(Received::Event(e)) => e.seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        next,
        [4, 5],
        "resumes at the oldest kept; the jump shows the gap"
    );
    assert_eq!(feed.last_seq(), 5);
}
