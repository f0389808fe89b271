//! The storage port's contract, written once against `Arc<dyn Store>` and
//! run for every adapter (`contract_suite!` below; PostgreSQL joins it when
//! its adapter lands).

use std::sync::Arc;
use std::time::Duration;

use flagbase::error::Error;
use flagbase::model::{NewApiToken, NewUser, Role};
use flagbase::storage::sqlite::{SqliteOptions, SqliteStore};
use flagbase::storage::Store;

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
        owner_id: owner.into(),
        secret_hash: "ab".repeat(32),
        expires_at: None,
    }
}

pub async fn users_round_trip(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    let ada = store
        .create_user(new_user("ada@example.com", Role::Developer))
        .await
        .unwrap();
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
        .create_user(new_user("ada@example.com", Role::User))
        .await;
    assert!(matches!(dup, Err(Error::Conflict(_))), "{dup:?}");
    store
        .create_user(new_user("bob@example.com", Role::User))
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
        .create_user(new_user("root@example.com", Role::Admin))
        .await
        .unwrap();
    let dev = store
        .create_user(new_user("dev@example.com", Role::Developer))
        .await
        .unwrap();
    assert!(matches!(
        store.set_user_role("missing", Role::User).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.set_user_role(&root.id, Role::User).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.delete_user(&root.id).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        store
            .set_user_role(&dev.id, Role::Admin)
            .await
            .unwrap()
            .role,
        Role::Admin
    );
    store.set_user_role(&root.id, Role::User).await.unwrap();
    assert_eq!(
        store.user(&root.id).await.unwrap().unwrap().role,
        Role::User
    );
    store.delete_user(&root.id).await.unwrap();
    assert!(store.user(&root.id).await.unwrap().is_none());
    assert!(matches!(
        store.delete_user(&root.id).await,
        Err(Error::NotFound(_))
    ));
}

pub async fn tokens_follow_their_owner(store: Arc<dyn Store>) {
    let root = store
        .create_user(new_user("root@example.com", Role::Admin))
        .await
        .unwrap();
    let dev = store
        .create_user(new_user("dev@example.com", Role::Developer))
        .await
        .unwrap();
    store
        .create_api_token(new_token("00000000000000a1", &dev.id, Role::Developer))
        .await
        .unwrap();
    store
        .create_api_token(new_token("00000000000000a2", &root.id, Role::Admin))
        .await
        .unwrap();
    let missing_owner = store
        .create_api_token(new_token("00000000000000a3", "ghost", Role::User))
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
    store.set_user_role(&dev.id, Role::User).await.unwrap();
    assert_eq!(
        store
            .api_token("00000000000000a1")
            .await
            .unwrap()
            .unwrap()
            .role,
        Role::User
    );

    store.delete_api_token("00000000000000a2").await.unwrap();
    assert!(matches!(
        store.delete_api_token("00000000000000a2").await,
        Err(Error::NotFound(_))
    ));
    store.delete_user(&dev.id).await.unwrap();
    assert!(
        store.api_token("00000000000000a1").await.unwrap().is_none(),
        "deleting a user deletes their tokens"
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
                    .create_user(new_user(&format!("u{i}@example.com"), Role::User))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.users().await.unwrap().len(), 40);
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
    ]
);
