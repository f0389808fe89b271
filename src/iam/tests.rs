//! Unit tests of `Iam` against a real SQLite store: guess limits under
//! concurrency, the work each failure path does, registration and setup.

use super::*;
use crate::config::Config;
use crate::storage::sqlite::{SqliteOptions, SqliteStore};

async fn iam_with(dir: &std::path::Path, config: IamConfig) -> Arc<Iam> {
    let store = SqliteStore::open(&SqliteOptions {
        path: dir.join("t.db"),
        readers: 2,
        busy_timeout: Duration::from_secs(1),
    })
    .unwrap();
    Arc::new(
        Iam::new(Arc::new(store), Arc::default(), &config)
            .await
            .unwrap(),
    )
}

async fn iam(dir: &std::path::Path) -> Arc<Iam> {
    iam_with(dir, Config::default().iam).await
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

/// Both failure paths must run one full verification and say the same
/// thing; timing equality follows from doing the same work. The counter
/// moves only after argon2 has returned inside the blocking work.
#[tokio::test]
async fn regression_unknown_email_and_wrong_password_both_run_a_full_verification() {
    let dir = tempfile::tempdir().unwrap();
    let iam = iam(dir.path()).await;
    iam.create_user(
        "ada@example.com".into(),
        "correct horse",
        Role::User,
        "test",
    )
    .await
    .unwrap();

    let before = iam.passwords().verifications();
    let wrong = iam
        .login("ada@example.com", "wrong horse", None)
        .await
        .unwrap_err();
    assert_eq!(iam.passwords().verifications(), before + 1);
    let unknown = iam
        .login("bob@example.com", "wrong horse", None)
        .await
        .unwrap_err();
    assert_eq!(iam.passwords().verifications(), before + 2);
    assert_eq!(wrong.to_string(), unknown.to_string());
    assert!(matches!(wrong, Error::Unauthenticated(_)));
    assert!(iam
        .login("ADA@example.com", "correct horse", None)
        .await
        .is_ok());
    assert_eq!(iam.passwords().verifications(), before + 3);
}

#[tokio::test]
async fn regression_concurrent_logins_verify_at_most_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = IamConfig {
        login_max_failures: 5,
        login_max_failures_per_ip: 1000,
        ..Config::default().iam
    };
    let iam = iam_with(dir.path(), config).await;
    iam.create_user(
        "ada@example.com".into(),
        "correct horse",
        Role::User,
        "test",
    )
    .await
    .unwrap();
    let before = iam.passwords().verifications();
    let storm: Vec<_> = (0..120)
        .map(|n| {
            let iam = iam.clone();
            tokio::spawn(async move {
                iam.login("ada@example.com", &format!("guess {n}"), ip("203.0.113.9"))
                    .await
            })
        })
        .collect();
    let (mut refused, mut throttled) = (0, 0);
    for task in storm {
        match task.await.unwrap() {
            Err(Error::Unauthenticated(_)) => refused += 1,
            Err(Error::Throttled { .. }) => throttled += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((refused, throttled), (5, 115));
    assert_eq!(iam.passwords().verifications(), before + 5);

    // The right password, sent many times at once from the same address,
    // is never verified past the limit.
    let right: Vec<_> = (0..20)
        .map(|_| {
            let iam = iam.clone();
            tokio::spawn(async move {
                iam.login("ada@example.com", "correct horse", ip("203.0.113.9"))
                    .await
            })
        })
        .collect();
    for task in right {
        assert!(matches!(task.await.unwrap(), Err(Error::Throttled { .. })));
    }
    assert_eq!(iam.passwords().verifications(), before + 5);

    // The owner, elsewhere, is not locked out.
    iam.login("ada@example.com", "correct horse", ip("198.51.100.7"))
        .await
        .unwrap();
}

#[tokio::test]
async fn regression_invalid_emails_never_become_throttle_keys_or_hash() {
    let dir = tempfile::tempdir().unwrap();
    let config = IamConfig {
        login_max_failures_per_ip: 3,
        ..Config::default().iam
    };
    let iam = iam_with(dir.path(), config).await;
    let before = iam.passwords().verifications();
    let huge = format!("{}@example.com", "a".repeat(1 << 20));
    for _ in 0..3 {
        assert!(matches!(
            iam.login(&huge, "whatever", ip("10.0.0.1")).await,
            Err(Error::Unauthenticated(_))
        ));
    }
    // Counted against the address all the same.
    assert!(matches!(
        iam.login("ada@example.com", "whatever", ip("10.0.0.1"))
            .await,
        Err(Error::Throttled { .. })
    ));
    assert_eq!(iam.passwords().verifications(), before);
}

#[tokio::test]
async fn regression_registration_before_setup_cannot_squat_the_admin_email() {
    let dir = tempfile::tempdir().unwrap();
    let iam = iam(dir.path()).await;
    let token = iam.pending_setup_token().unwrap();
    let squat = iam
        .register(
            None,
            "admin@example.com",
            "long password",
            None,
            ip("10.0.0.9"),
        )
        .await;
    assert!(matches!(squat, Err(Error::Forbidden(_))), "{squat:?}");
    iam.complete_setup(&token, "admin@example.com", "long password")
        .await
        .unwrap();
    iam.register(
        None,
        "ada@example.com",
        "long password",
        None,
        ip("10.0.0.9"),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn regression_refused_registrations_do_no_argon2_work() {
    let dir = tempfile::tempdir().unwrap();
    let iam = iam(dir.path()).await;
    let token = iam.pending_setup_token().unwrap();
    iam.complete_setup(&token, "admin@example.com", "long password")
        .await
        .unwrap();
    let before = iam.passwords().hashes();
    for (email, password) in [
        ("admin@example.com", "long password"),
        ("ADMIN@example.com", "long password"),
        ("not-an-email", "long password"),
        ("b@example.com", "short"),
    ] {
        assert!(iam
            .register(None, email, password, None, ip("10.0.0.9"))
            .await
            .is_err());
    }
    assert_eq!(iam.passwords().hashes(), before);
}

#[tokio::test]
async fn regression_registrations_are_throttled_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = IamConfig {
        register_max_per_ip: 2,
        ..Config::default().iam
    };
    let iam = iam_with(dir.path(), config).await;
    let token = iam.pending_setup_token().unwrap();
    iam.complete_setup(&token, "admin@example.com", "long password")
        .await
        .unwrap();
    let register = |email: &'static str, from: &'static str| {
        let iam = iam.clone();
        async move {
            iam.register(None, email, "long password", None, ip(from))
                .await
        }
    };
    register("a@example.com", "10.0.0.1").await.unwrap();
    assert!(register("admin@example.com", "10.0.0.1").await.is_err());
    assert!(matches!(
        register("c@example.com", "10.0.0.1").await,
        Err(Error::Throttled { .. })
    ));
    register("c@example.com", "10.0.0.2").await.unwrap();
}

#[tokio::test]
async fn setup_token_is_single_use() {
    let dir = tempfile::tempdir().unwrap();
    let iam = iam(dir.path()).await;
    let token = iam
        .pending_setup_token()
        .expect("a fresh database needs setup");
    assert!(matches!(
        iam.complete_setup("not-it", "root@example.com", "long password")
            .await,
        Err(Error::Unauthenticated(_))
    ));
    iam.complete_setup(&token, "root@example.com", "long password")
        .await
        .unwrap();
    assert!(matches!(
        iam.complete_setup(&token, "root2@example.com", "long password")
            .await,
        Err(Error::Conflict(_))
    ));
    assert!(!iam.needs_setup().await.unwrap());
}
