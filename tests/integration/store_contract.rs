//! The storage port's contract, written once against `Arc<dyn Store>` and
//! run for every adapter (`contract_suite!` below; PostgreSQL joins it when
//! its adapter lands).

use std::sync::Arc;
use std::time::Duration;

use flagbase::error::Error;
use flagbase::model::{AuditQuery, FlagRecord, NewApiToken, NewUser, Revision, Role, TokenKind};
use flagbase::storage::sqlite::{SqliteOptions, SqliteStore};
use flagbase::storage::Store;
use serde_json::json;

fn new_user(email: &str, role: Role) -> NewUser {
    NewUser {
        email: email.into(),
        password_hash: "$argon2id$fake".into(),
        role,
    }
}

fn new_token(id: &str, owner: &str, role: Role) -> NewApiToken {
    NewApiToken {
        id: id.into(),
        name: format!("token {id}"),
        role,
        kind: TokenKind::Server,
        owner_id: owner.into(),
        secret_hash: "ab".repeat(32),
        expires_at: None,
    }
}

pub async fn users_round_trip(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    let ada = store
        .create_user(new_user("ada@example.com", Role::Developer), "tester")
        .await
        .unwrap()
        .value;
    let found = store.user(&ada.id).await.unwrap().unwrap();
    assert_eq!(
        (found.email.as_str(), found.role),
        ("ada@example.com", Role::Developer)
    );
    assert_eq!(found.password_hash, "$argon2id$fake");
    let by_email = store
        .user_by_email("ada@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_email.id, ada.id);
    assert!(store.user("missing").await.unwrap().is_none());
    assert!(store
        .user_by_email("nobody@example.com")
        .await
        .unwrap()
        .is_none());
    let dup = store
        .create_user(new_user("ada@example.com", Role::User), "tester")
        .await;
    assert!(matches!(dup, Err(Error::Conflict(_))), "{dup:?}");
    store
        .create_user(new_user("bob@example.com", Role::User), "tester")
        .await
        .unwrap();
    let all = store.users().await.unwrap();
    assert_eq!(
        all.iter().map(|u| u.email.as_str()).collect::<Vec<_>>(),
        ["ada@example.com", "bob@example.com"]
    );
}

pub async fn first_admin_only_once(store: Arc<dyn Store>) {
    assert!(!store.has_admin().await.unwrap());
    store
        .create_first_admin(new_user("root@example.com", Role::User))
        .await
        .unwrap();
    assert!(store.has_admin().await.unwrap());
    let again = store
        .create_first_admin(new_user("root2@example.com", Role::Admin))
        .await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    assert_eq!(store.users().await.unwrap().len(), 1);
}

pub async fn roles_and_the_last_admin(store: Arc<dyn Store>) {
    let root = store
        .create_user(new_user("root@example.com", Role::Admin), "tester")
        .await
        .unwrap()
        .value;
    let dev = store
        .create_user(new_user("dev@example.com", Role::Developer), "tester")
        .await
        .unwrap()
        .value;
    assert!(matches!(
        store.set_user_role("missing", Role::User, "tester").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.set_user_role(&root.id, Role::User, "tester").await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.delete_user(&root.id, "tester").await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        store
            .set_user_role(&dev.id, Role::Admin, "tester")
            .await
            .unwrap()
            .value
            .role,
        Role::Admin
    );
    store
        .set_user_role(&root.id, Role::User, "tester")
        .await
        .unwrap();
    assert_eq!(
        store.user(&root.id).await.unwrap().unwrap().role,
        Role::User
    );
    store.delete_user(&root.id, "tester").await.unwrap();
    assert!(store.user(&root.id).await.unwrap().is_none());
    assert!(matches!(
        store.delete_user(&root.id, "tester").await,
        Err(Error::NotFound(_))
    ));
}

pub async fn tokens_follow_their_owner(store: Arc<dyn Store>) {
    let root = store
        .create_user(new_user("root@example.com", Role::Admin), "tester")
        .await
        .unwrap()
        .value;
    let dev = store
        .create_user(new_user("dev@example.com", Role::Developer), "tester")
        .await
        .unwrap()
        .value;
    store
        .create_api_token(
            new_token("00000000000000a1", &dev.id, Role::Developer),
            "tester",
        )
        .await
        .unwrap();
    store
        .create_api_token(
            new_token("00000000000000a2", &root.id, Role::Admin),
            "tester",
        )
        .await
        .unwrap();
    let missing_owner = store
        .create_api_token(new_token("00000000000000a3", "ghost", Role::User), "tester")
        .await;
    assert!(
        matches!(missing_owner, Err(Error::NotFound(_))),
        "{missing_owner:?}"
    );

    let mine = store.api_tokens(Some(&dev.id)).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(store.api_tokens(None).await.unwrap().len(), 2);
    let t = store.api_token("00000000000000a1").await.unwrap().unwrap();
    assert_eq!(
        (t.role, t.owner_id.as_str(), t.secret_hash.len()),
        (Role::Developer, dev.id.as_str(), 64)
    );

    // Lowering the owner lowers tokens above the new role.
    store
        .set_user_role(&dev.id, Role::User, "tester")
        .await
        .unwrap();
    assert_eq!(
        store
            .api_token("00000000000000a1")
            .await
            .unwrap()
            .unwrap()
            .role,
        Role::User
    );

    store
        .delete_api_token("00000000000000a2", "tester")
        .await
        .unwrap();
    assert!(matches!(
        store.delete_api_token("00000000000000a2", "tester").await,
        Err(Error::NotFound(_))
    ));
    store.delete_user(&dev.id, "tester").await.unwrap();
    assert!(
        store.api_token("00000000000000a1").await.unwrap().is_none(),
        "deleting a user deletes their tokens"
    );
}

pub async fn flags_are_versioned_and_audited(store: Arc<dyn Store>) {
    let spec = json!({"key": "beta", "enabled": true});
    let created = store
        .create_flag("beta", spec.clone(), "alice")
        .await
        .unwrap()
        .value;
    assert_eq!((created.version, created.updated_by.as_str()), (1, "alice"));
    assert!(matches!(
        store.create_flag("beta", spec, "alice").await,
        Err(Error::Conflict(_))
    ));
    store
        .create_flag("alpha", json!({"key": "alpha"}), "alice")
        .await
        .unwrap();
    store
        .create_flag("gamma", json!({"key": "gamma"}), "alice")
        .await
        .unwrap();

    let keys = |v: Vec<FlagRecord>| v.into_iter().map(|f| f.key).collect::<Vec<_>>();
    assert_eq!(
        keys(store.flags().await.unwrap()),
        ["alpha", "beta", "gamma"]
    );
    assert_eq!(
        keys(store.flags_page(None, 2).await.unwrap()),
        ["alpha", "beta"]
    );
    assert_eq!(
        keys(store.flags_page(Some("beta"), 2).await.unwrap()),
        ["gamma"]
    );

    let off = json!({"key": "beta", "enabled": false});
    let at = |version| {
        Some(Revision {
            incarnation: created.incarnation.clone(),
            version,
        })
    };
    let updated = store
        .update_flag("beta", off.clone(), at(1), "flag.toggle", "bob")
        .await
        .unwrap()
        .value;
    assert_eq!(
        (updated.version, updated.updated_by.as_str(), &updated.spec),
        (2, "bob", &off)
    );
    assert_eq!(updated.created_at, created.created_at);
    let stale = store
        .update_flag("beta", off.clone(), at(1), "flag.update", "bob")
        .await;
    assert!(
        matches!(stale, Err(Error::PreconditionFailed(_))),
        "{stale:?}"
    );
    assert!(matches!(
        store
            .update_flag("nope", off.clone(), None, "flag.update", "bob")
            .await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.delete_flag("beta", at(1), "bob").await,
        Err(Error::PreconditionFailed(_))
    ));
    let other_incarnation = Some(Revision {
        incarnation: "0000000000000000".into(),
        version: 2,
    });
    assert!(matches!(
        store
            .update_flag(
                "beta",
                off.clone(),
                other_incarnation.clone(),
                "flag.update",
                "bob"
            )
            .await,
        Err(Error::PreconditionFailed(_))
    ));
    assert!(matches!(
        store.delete_flag("beta", other_incarnation, "bob").await,
        Err(Error::PreconditionFailed(_))
    ));
    store.delete_flag("beta", at(2), "bob").await.unwrap();
    assert!(store.flag("beta").await.unwrap().is_none());
    assert!(matches!(
        store.delete_flag("beta", None, "bob").await,
        Err(Error::NotFound(_))
    ));

    let history = store
        .audit(AuditQuery {
            target: Some("flag:beta".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = history.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        ["flag.delete", "flag.toggle", "flag.create"],
        "newest first"
    );
    assert_eq!(history[0].after, None);
    assert_eq!(history[1].before.as_ref().unwrap()["spec"]["enabled"], true);
    assert_eq!(history[1].after.as_ref().unwrap()["spec"]["enabled"], false);
    assert_eq!(history[1].actor, "bob");
    let page = store
        .audit(AuditQuery {
            target: Some("flag:beta".into()),
            limit: 2,
            cursor: Some(history[1].id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].action, "flag.create");
    let by_alice = store
        .audit(AuditQuery {
            actor: Some("alice".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_alice.len(), 3);
}

pub async fn iam_changes_are_audited(store: Arc<dyn Store>) {
    let root = store
        .create_user(new_user("root@example.com", Role::Admin), "cli")
        .await
        .unwrap()
        .value;
    let dev = store
        .create_user(new_user("dev@example.com", Role::Developer), &root.id)
        .await
        .unwrap()
        .value;
    store
        .set_user_role(&dev.id, Role::User, &root.id)
        .await
        .unwrap();
    store
        .create_api_token(new_token("00000000000000b1", &dev.id, Role::User), &dev.id)
        .await
        .unwrap();
    store
        .delete_api_token("00000000000000b1", &root.id)
        .await
        .unwrap();
    store.delete_user(&dev.id, &root.id).await.unwrap();
    let all = store
        .audit(AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let seen: Vec<(&str, &str)> = all
        .iter()
        .rev()
        .map(|r| (r.action.as_str(), r.actor.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("user.create", "cli"),
            ("user.create", root.id.as_str()),
            ("user.role", root.id.as_str()),
            ("token.create", dev.id.as_str()),
            ("token.delete", root.id.as_str()),
            ("user.delete", root.id.as_str()),
        ]
    );
    let text = serde_json::to_string(&all).unwrap();
    assert!(
        !text.contains("$argon2id$fake") && !text.contains(&"ab".repeat(32)),
        "no secrets in the audit log"
    );
    let role = all.iter().find(|r| r.action == "user.role").unwrap();
    assert_eq!(
        (
            role.before.as_ref().unwrap()["role"].as_str(),
            role.after.as_ref().unwrap()["role"].as_str()
        ),
        (Some("developer"), Some("user"))
    );
}

pub async fn settings_keep_the_first_value(store: Arc<dyn Store>) {
    assert_eq!(store.init_setting("k", "first").await.unwrap(), "first");
    assert_eq!(store.init_setting("k", "second").await.unwrap(), "first");
}

pub async fn concurrent_writes_all_land(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create_user(new_user(&format!("u{i}@example.com"), Role::User), "tester")
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.users().await.unwrap().len(), 40);
}

/// The change sequence, read back from the audit log: `(seq, action,
/// target)` oldest first.
async fn audited_sequence(store: &Arc<dyn Store>) -> Vec<(u64, String, String)> {
    let mut all = store
        .audit(AuditQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    all.reverse();
    all.into_iter()
        .map(|r| {
            (
                r.seq.expect("every stored change is numbered"),
                r.action,
                r.target,
            )
        })
        .collect()
}

pub async fn every_change_takes_the_next_number(store: Arc<dyn Store>) {
    let root = store
        .create_user(new_user("root@example.com", Role::Admin), "cli")
        .await
        .unwrap();
    let dev = store
        .create_user(new_user("dev@example.com", Role::Developer), &root.value.id)
        .await
        .unwrap();
    let role = store
        .set_user_role(&dev.value.id, Role::User, &root.value.id)
        .await
        .unwrap();
    let token = store
        .create_api_token(
            new_token("00000000000000c1", &dev.value.id, Role::User),
            "x",
        )
        .await
        .unwrap();
    let untoken = store
        .delete_api_token("00000000000000c1", "x")
        .await
        .unwrap();
    let created = store
        .create_flag("f", json!({"key": "f"}), "x")
        .await
        .unwrap();
    let toggled = store
        .update_flag(
            "f",
            json!({"key": "f", "enabled": true}),
            None,
            "flag.toggle",
            "x",
        )
        .await
        .unwrap();
    let deleted = store.delete_flag("f", None, "x").await.unwrap();
    let gone = store.delete_user(&dev.value.id, "x").await.unwrap();
    let first_admin = store
        .create_first_admin(new_user("late@example.com", Role::Admin))
        .await;
    assert!(first_admin.is_err(), "an admin exists");

    let returned = [
        root.seq,
        dev.seq,
        role.seq,
        token.seq,
        untoken.seq,
        created.seq,
        toggled.seq,
        deleted.seq,
        gone.seq,
    ];
    assert_eq!(
        returned,
        [1, 2, 3, 4, 5, 6, 7, 8, 9],
        "one number per change, from 1"
    );
    assert_eq!(
        deleted.value.version, 2,
        "a deletion returns the last version"
    );
    assert_eq!(
        gone.value.email, "dev@example.com",
        "a deletion returns what it deleted"
    );
    assert_eq!(untoken.value.id, "00000000000000c1");
    let audited: Vec<(u64, String)> = audited_sequence(&store)
        .await
        .into_iter()
        .map(|(seq, action, _)| (seq, action))
        .collect();
    let expected: Vec<(u64, String)> = [
        "user.create",
        "user.create",
        "user.role",
        "token.create",
        "token.delete",
        "flag.create",
        "flag.toggle",
        "flag.delete",
        "user.delete",
    ]
    .iter()
    .enumerate()
    .map(|(i, a)| (i as u64 + 1, a.to_string()))
    .collect();
    assert_eq!(
        audited, expected,
        "each audit record carries its change's number"
    );
    let records = store
        .audit(AuditQuery {
            target: Some("flag:f".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        records
            .iter()
            .map(|r| (r.seq.unwrap(), r.at))
            .collect::<Vec<_>>(),
        [
            (deleted.seq, deleted.at),
            (toggled.seq, toggled.at),
            (created.seq, created.at)
        ],
        "the returned number and time are the audit record's"
    );
}

pub async fn a_failed_change_takes_no_number(store: Arc<dyn Store>) {
    let root = store
        .create_user(new_user("root@example.com", Role::Admin), "cli")
        .await
        .unwrap();
    let flag = store
        .create_flag("f", json!({"key": "f"}), "x")
        .await
        .unwrap();
    assert_eq!((root.seq, flag.seq), (1, 2));
    let stale = Some(Revision {
        incarnation: flag.value.incarnation.clone(),
        version: 7,
    });
    let failures = [
        store
            .create_user(new_user("root@example.com", Role::User), "x")
            .await
            .map(|c| c.seq),
        store
            .create_first_admin(new_user("other@example.com", Role::Admin))
            .await
            .map(|c| c.seq),
        store
            .set_user_role(&root.value.id, Role::User, "x")
            .await
            .map(|c| c.seq),
        store.delete_user(&root.value.id, "x").await.map(|c| c.seq),
        store.delete_user("missing", "x").await.map(|c| c.seq),
        store
            .create_api_token(new_token("00000000000000d1", "ghost", Role::User), "x")
            .await
            .map(|c| c.seq),
        store.delete_api_token("missing", "x").await.map(|c| c.seq),
        store
            .create_flag("f", json!({"key": "f"}), "x")
            .await
            .map(|c| c.seq),
        store
            .update_flag("f", json!({"key": "f"}), stale.clone(), "flag.update", "x")
            .await
            .map(|c| c.seq),
        store
            .update_flag("nope", json!({"key": "nope"}), None, "flag.update", "x")
            .await
            .map(|c| c.seq),
        store.delete_flag("f", stale, "x").await.map(|c| c.seq),
        store.delete_flag("nope", None, "x").await.map(|c| c.seq),
    ];
    for (i, failure) in failures.iter().enumerate() {
        assert!(failure.is_err(), "case {i} should fail: {failure:?}");
    }
    let next = store.delete_flag("f", None, "x").await.unwrap();
    assert_eq!(next.seq, 3, "rolled-back changes consumed no number");
    let seqs: Vec<u64> = audited_sequence(&store)
        .await
        .into_iter()
        .map(|(seq, _, _)| seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
}

/// Concurrent writers: every success takes exactly one number, the numbers
/// are 1..=n with no gap (failures in the mix take none), and they follow
/// commit order, which for one flag is its version order.
pub async fn concurrent_changes_are_numbered_in_commit_order(store: Arc<dyn Store>) {
    store
        .create_flag("hot", json!({"key": "hot"}), "x")
        .await
        .unwrap();
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..30 {
        let updater = store.clone();
        writers.spawn(async move {
            let spec = json!({"key": "hot", "description": format!("writer {i}")});
            updater
                .update_flag("hot", spec, None, "flag.update", "x")
                .await
                .map(|c| (c.seq, Some(c.value.version)))
        });
        let creator = store.clone();
        writers.spawn(async move {
            creator
                .create_user(new_user(&format!("u{i}@example.com"), Role::User), "x")
                .await
                .map(|c| (c.seq, None))
        });
        // Half of these collide on a key and must fail without a number.
        let colliding = store.clone();
        writers.spawn(async move {
            let key = format!("k{}", i / 2);
            colliding
                .create_flag(&key, json!({ "key": key }), "x")
                .await
                .map(|c| (c.seq, None))
        });
    }
    let mut numbers = vec![1];
    let mut versions = Vec::new();
    let mut failures = 0;
    while let Some(joined) = writers.join_next().await {
        match joined.unwrap() {
            Ok((seq, version)) => {
                numbers.push(seq);
                if let Some(version) = version {
                    versions.push((version, seq));
                }
            }
            Err(Error::Conflict(_)) => failures += 1,
            Err(other) => panic!("unexpected failure: {other:?}"),
        }
    }
    assert_eq!(failures, 15);
    numbers.sort_unstable();
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    assert_eq!(numbers, expected, "one number per change, none skipped");
    assert_eq!(numbers.len(), 1 + 30 + 30 + 15);
    versions.sort_unstable();
    assert_eq!(
        versions.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        (2..=31).collect::<Vec<_>>()
    );
    assert!(
        versions.windows(2).all(|w| w[0].1 < w[1].1),
        "a later version of one flag has a later number: {versions:?}"
    );
    let audited: Vec<u64> = audited_sequence(&store)
        .await
        .into_iter()
        .map(|(seq, _, _)| seq)
        .collect();
    assert_eq!(audited, expected, "the audit log in commit order is 1..=n");
}

fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&SqliteOptions {
        path: dir.path().join("contract.db"),
        readers: 2,
        busy_timeout: Duration::from_secs(5),
    })
    .unwrap();
    (Arc::new(store), dir)
}

/// One test per contract case and adapter.
macro_rules! contract_suite {
    ($adapter:ident, $make:expr, [$($case:ident),* $(,)?]) => {
        mod $adapter {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _guard) = $make;
                    super::$case(store.clone()).await;
                    store.close().await;
                }
            )*
        }
    };
}

contract_suite!(
    sqlite_adapter,
    super::sqlite(),
    [
        users_round_trip,
        first_admin_only_once,
        roles_and_the_last_admin,
        tokens_follow_their_owner,
        settings_keep_the_first_value,
        concurrent_writes_all_land,
        flags_are_versioned_and_audited,
        iam_changes_are_audited,
        every_change_takes_the_next_number,
        a_failed_change_takes_no_number,
        concurrent_changes_are_numbered_in_commit_order,
    ]
);
