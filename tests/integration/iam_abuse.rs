//! Abuse resistance and hang-up safety of identity and access, end to end:
//! concurrent guessing, strangers' storms, registration abuse, setup
//! squatting, look-alike emails, tokens stronger or longer-lived than their
//! creator, and state changes whose clients hang up right after sending.

use std::net::IpAddr;

use serde_json::{json, Value};

use crate::hangup::{hang_up_while_writes_wait, RawRequest};
use crate::harness::{run_cli, stderr_of, Flagbase, Options, PASSWORD};

/// A client whose connections come from another loopback address, so the
/// server sees a different peer.
fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn login_from(fb: &Flagbase, client: &reqwest::Client, email: &str, password: &str) -> u16 {
    fb.send(
        client
            .post(fb.url("/auth/login"))
            .json(&json!({"email": email, "password": password})),
    )
    .await
    .status
}

/// Counts of each status among `statuses`.
fn tally(statuses: &[u16]) -> std::collections::BTreeMap<u16, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for s in statuses {
        *counts.entry(*s).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn regression_concurrent_wrong_logins_verify_at_most_the_limit() {
    let fb = Flagbase::start_with(
        Options::default()
            .set("iam.login_max_failures", "5")
            .set("iam.login_max_failures_per_ip", "1000"),
    )
    .await;
    fb.setup_admin("root@example.com").await;
    fb.user("ada@example.com", "user", None).await;

    let login = |password: String| {
        fb.http
            .post(fb.url("/auth/login"))
            .json(&json!({"email": "ada@example.com", "password": password}))
    };
    let statuses = all_at_once((0..120).map(|n| login(format!("guess {n}")))).await;
    // Exactly the limit was verified (401); every other guess was refused
    // before any hashing (429).
    assert_eq!(tally(&statuses), [(401, 5), (429, 115)].into());

    // The right password, many times at once, never succeeds past the limit.
    let statuses = all_at_once((0..20).map(|_| login(PASSWORD.to_string()))).await;
    assert_eq!(tally(&statuses), [(429, 20)].into());
}

#[tokio::test]
async fn regression_the_owner_logs_in_from_another_address_during_a_strangers_storm() {
    let fb = Flagbase::start_with(Options::default().set("iam.login_max_failures", "3")).await;
    fb.setup_admin("root@example.com").await;
    fb.user("ada@example.com", "user", None).await;
    let stranger = client_from("127.0.0.1");
    let owner = client_from("127.0.0.2");

    let storm = all_at_once((0..200).map(|n| {
        stranger
            .post(fb.url("/auth/login"))
            .json(&json!({"email": "ada@example.com", "password": format!("guess {n}")}))
    }));
    let owner_logs_in = async {
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(login_from(&fb, &owner, "ada@example.com", PASSWORD).await);
        }
        statuses
    };
    let (storm, owner_statuses) = tokio::join!(storm, owner_logs_in);
    assert_eq!(owner_statuses, [200, 200, 200]);
    let counts = tally(&storm);
    assert_eq!(counts.get(&401), Some(&3), "{counts:?}");
    assert_eq!(counts.get(&200), None, "{counts:?}");
    // And after the storm, still.
    assert_eq!(
        login_from(&fb, &owner, "ada@example.com", PASSWORD).await,
        200
    );
    assert_eq!(
        login_from(&fb, &stranger, "ada@example.com", PASSWORD).await,
        429
    );
}

#[tokio::test]
async fn regression_oversized_emails_are_refused_without_growing_the_throttle() {
    let fb =
        Flagbase::start_with(Options::default().set("iam.login_max_failures_per_ip", "3")).await;
    fb.setup_admin("root@example.com").await;
    let huge = format!("{}@example.com", "a".repeat(900_000));
    for _ in 0..3 {
        let r = fb
            .post(
                "/auth/login",
                json!({"email": huge, "password": "whatever it is"}),
                None,
            )
            .await;
        assert_eq!(r.error(401), "unauthenticated");
    }
    // Refused input still counts against its address.
    let r = fb
        .post(
            "/auth/login",
            json!({"email": "root@example.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(r.error(429), "throttled");
}

#[tokio::test]
async fn regression_registration_is_throttled_per_address() {
    let fb = Flagbase::start_with(Options::default().set("iam.register_max_per_ip", "3")).await;
    let admin = fb.setup_admin("root@example.com").await;
    fb.user("a@example.com", "user", None).await;
    let taken = fb
        .post(
            "/auth/register",
            json!({"email": "a@example.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(taken.error(409), "conflict");
    fb.user("b@example.com", "user", None).await;
    let r = fb
        .post(
            "/auth/register",
            json!({"email": "c@example.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(r.error(429), "throttled");
    assert!(r.header("retry-after").is_some());
    // Another address, and an admin creating users, are not affected.
    let elsewhere = client_from("127.0.0.2");
    let r = fb
        .send(
            elsewhere
                .post(fb.url("/auth/register"))
                .json(&json!({"email": "c@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    fb.user("d@example.com", "developer", Some(&admin)).await;
}

#[tokio::test]
async fn regression_registration_before_setup_cannot_block_setup() {
    let fb = Flagbase::start().await;
    let squat = fb
        .post(
            "/auth/register",
            json!({"email": "admin@example.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(squat.error(403), "forbidden");
    assert!(
        squat.body["error"].as_str().unwrap().contains("setup"),
        "{}",
        squat.body
    );
    // The operator's setup still works with the address they meant.
    let admin = fb.setup_admin("admin@example.com").await;
    assert_eq!(fb.get("/auth/me", Some(&admin)).await.status, 200);
    fb.user("ada@example.com", "user", None).await;
}

#[tokio::test]
async fn registration_opens_once_the_cli_creates_an_admin() {
    let fb = Flagbase::start().await;
    let out = run_cli(
        fb.dir(),
        &[
            "user",
            "create",
            "--email",
            "ops@example.com",
            "--role",
            "admin",
            "--password",
            PASSWORD,
        ],
        &[],
        None,
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    fb.user("ada@example.com", "user", None).await;
}

#[tokio::test]
async fn regression_nfc_and_nfd_emails_are_one_account_and_invisible_characters_are_refused() {
    let fb = Flagbase::start().await;
    fb.setup_admin("root@example.com").await;
    let nfc = "jos\u{00E9}@example.com";
    let nfd = "Jose\u{0301}@Example.com";
    fb.user(nfc, "user", None).await;
    let r = fb
        .post(
            "/auth/register",
            json!({"email": nfd, "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(r.error(409), "conflict");
    // Login applies the same normalisation.
    fb.login(nfd).await;
    for email in [
        "a\u{200B}da@example.com",
        "ada\u{00AD}@example.com",
        "\u{202E}ada@example.com",
        "ada@exam\u{2060}ple.com",
        "\u{FEFF}ada@example.com",
        "ada\u{2067}@example.com",
        "ada\u{0000}@example.com",
    ] {
        let r = fb
            .post(
                "/auth/register",
                json!({"email": email, "password": PASSWORD}),
                None,
            )
            .await;
        assert_eq!(r.error(400), "invalid", "{email:?}");
        assert_eq!(r.body["field"], "email");
    }
}

async fn create_token(fb: &Flagbase, by: &str, body: Value) -> crate::harness::Resp {
    fb.post("/api/v1/tokens", body, Some(by)).await
}

/// An admin-role API token that expires in an hour, created by `by`.
async fn short_lived_admin_token(fb: &Flagbase, by: &str) -> String {
    let body = json!({"name": "short", "role": "admin", "expires_in": "1h"});
    let r = create_token(fb, by, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn regression_an_expiring_token_cannot_mint_a_longer_lived_one() {
    let fb = Flagbase::start().await;
    let root = fb.setup_admin("root@example.com").await;
    let short = short_lived_admin_token(&fb, &root).await;

    for body in [
        json!({"name": "forever", "role": "user"}),
        json!({"name": "longer", "role": "user", "expires_in": "2h"}),
    ] {
        let r = create_token(&fb, &short, body).await;
        assert_eq!(r.error(403), "forbidden");
        assert!(
            r.body["error"].as_str().unwrap().contains("expires_in"),
            "{}",
            r.body
        );
    }
    let r = create_token(
        &fb,
        &short,
        json!({"name": "shorter", "role": "developer", "expires_in": "30m"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // A session may create a token that does not expire.
    let r = create_token(&fb, &root, json!({"name": "service", "role": "user"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body["expires_at"].is_null());
}

#[tokio::test]
async fn regression_a_token_cannot_mint_a_stronger_one() {
    let fb = Flagbase::start().await;
    let root = fb.setup_admin("root@example.com").await;
    let r = create_token(&fb, &root, json!({"name": "dev", "role": "developer"})).await;
    let dev = r.body["token"].as_str().unwrap().to_string();
    let r = create_token(&fb, &dev, json!({"name": "up", "role": "admin"})).await;
    assert_eq!(r.error(403), "forbidden");
    let r = create_token(&fb, &dev, json!({"name": "same", "role": "developer"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn regression_a_narrow_token_cannot_revoke_its_owners_broader_tokens() {
    let fb = Flagbase::start().await;
    let root = fb.setup_admin("root@example.com").await;
    let r = create_token(&fb, &root, json!({"name": "broad", "role": "admin"})).await;
    let broad = r.body["token"].as_str().unwrap().to_string();
    let broad_id = r.body["id"].as_str().unwrap().to_string();
    let r = create_token(&fb, &root, json!({"name": "narrow", "role": "user"})).await;
    let narrow = r.body["token"].as_str().unwrap().to_string();
    let narrow_id = r.body["id"].as_str().unwrap().to_string();

    let r = fb
        .delete(&format!("/api/v1/tokens/{broad_id}"), Some(&narrow))
        .await;
    assert_eq!(r.error(403), "forbidden");
    assert_eq!(fb.get("/api/v1/users", Some(&broad)).await.status, 200);
    // Listing stays allowed, and a token may revoke itself.
    assert_eq!(fb.get("/api/v1/tokens", Some(&narrow)).await.status, 200);
    assert_eq!(
        fb.delete(&format!("/api/v1/tokens/{narrow_id}"), Some(&narrow))
            .await
            .status,
        204
    );
    assert_eq!(
        fb.delete(&format!("/api/v1/tokens/{broad_id}"), Some(&root))
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn regression_an_expiring_token_cannot_grant_lasting_roles() {
    let fb = Flagbase::start().await;
    let root = fb.setup_admin("root@example.com").await;
    let short = short_lived_admin_token(&fb, &root).await;
    let r = fb
        .post(
            "/auth/register",
            json!({"email": "x@example.com", "password": PASSWORD, "role": "admin"}),
            Some(&short),
        )
        .await;
    assert_eq!(r.error(403), "forbidden");
    // A plain user account is no lasting grant: anyone may register one.
    let r = fb
        .post(
            "/auth/register",
            json!({"email": "x@example.com", "password": PASSWORD}),
            Some(&short),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let promote = |token: String| {
        let path = format!("/api/v1/users/{id}/role");
        let fb = &fb;
        async move {
            fb.put(&path, json!({"role": "developer"}), Some(&token))
                .await
        }
    };
    assert_eq!(promote(short.clone()).await.error(403), "forbidden");
    assert_eq!(promote(root.clone()).await.status, 200);
    // Lowering a role grants nothing and stays allowed.
    let r = fb
        .put(
            &format!("/api/v1/users/{id}/role"),
            json!({"role": "user"}),
            Some(&short),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Sends every request at once and returns the statuses, in order.
async fn all_at_once(requests: impl IntoIterator<Item = reqwest::RequestBuilder>) -> Vec<u16> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|r| tokio::spawn(async move { r.send().await.expect("request").status().as_u16() }))
        .collect();
    let mut statuses = Vec::with_capacity(tasks.len());
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses
}

#[tokio::test]
async fn regression_hung_up_revocations_take_effect() {
    let fb = Flagbase::start_with(Options::default().set("database.busy_timeout", "60s")).await;
    let root = fb.setup_admin("root@example.com").await;
    let mut tokens = Vec::new();
    for n in 0..150 {
        let r = create_token(&fb, &root, json!({"name": format!("t{n}"), "role": "user"})).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let secret = r.body["token"].as_str().unwrap().to_string();
        // Used once, so the token sits in the authentication cache.
        assert_eq!(fb.get("/auth/me", Some(&secret)).await.status, 200);
        tokens.push((r.body["id"].as_str().unwrap().to_string(), secret));
    }
    let from = fb.stderr.mark();
    let revocations: Vec<RawRequest> = tokens
        .iter()
        .map(|(id, _)| ("DELETE", format!("/api/v1/tokens/{id}"), String::new()))
        .collect();
    hang_up_while_writes_wait(&fb, &revocations, &root).await;

    // Each revocation runs to its end although its client is gone, and
    // logs once its cache invalidation is done.
    fb.stderr
        .wait_for_count("every revocation to finish", from, tokens.len(), |line| {
            line.contains("API token revoked")
        });
    let listed = fb.get("/api/v1/tokens", Some(&root)).await;
    assert_eq!(listed.body["tokens"], json!([]));
    for (id, secret) in &tokens {
        let r = fb.get("/auth/me", Some(secret)).await;
        assert_eq!(r.status, 401, "revoked token {id} still works");
    }
}

#[tokio::test]
async fn regression_hung_up_demotions_and_deletions_take_effect() {
    let fb = Flagbase::start_with(Options::default().set("database.busy_timeout", "60s")).await;
    let root = fb.setup_admin("root@example.com").await;
    let mut admins = Vec::new();
    let mut developers = Vec::new();
    for n in 0..12 {
        admins.push(
            fb.user(&format!("admin{n}@example.com"), "admin", Some(&root))
                .await,
        );
        developers.push(
            fb.user(&format!("dev{n}@example.com"), "developer", Some(&root))
                .await,
        );
    }
    // Cache every principal with a request that needs its role.
    for (_, jwt) in &admins {
        assert_eq!(fb.get("/api/v1/users", Some(jwt)).await.status, 200);
    }
    for (_, jwt) in &developers {
        assert_eq!(
            fb.get("/auth/me", Some(jwt)).await.body["role"],
            "developer"
        );
    }
    let demotions = admins.iter().map(|(id, _)| {
        let body = r#"{"role":"user"}"#.to_string();
        ("PUT", format!("/api/v1/users/{id}/role"), body)
    });
    let deletions = developers
        .iter()
        .map(|(id, _)| ("DELETE", format!("/api/v1/users/{id}"), String::new()));
    let from = fb.stderr.mark();
    let requests: Vec<RawRequest> = demotions.chain(deletions).collect();
    hang_up_while_writes_wait(&fb, &requests, &root).await;

    fb.stderr
        .wait_for_count("every demotion to finish", from, admins.len(), |line| {
            line.contains("role changed")
        });
    fb.stderr
        .wait_for_count("every deletion to finish", from, developers.len(), |line| {
            line.contains("user deleted")
        });
    let listed = fb.get("/api/v1/users", Some(&root)).await;
    let users = listed.body["users"].as_array().unwrap();
    for (id, jwt) in &admins {
        let stored = users.iter().find(|u| u["id"] == id.as_str()).unwrap();
        assert_eq!(stored["role"], "user");
        let r = fb.get("/api/v1/users", Some(jwt)).await;
        assert_eq!(r.status, 403, "demoted admin {id} keeps admin rights");
    }
    for (n, (id, jwt)) in developers.iter().enumerate() {
        assert!(users.iter().all(|u| u["id"] != id.as_str()));
        assert_eq!(fb.get("/auth/me", Some(jwt)).await.status, 401);
        let create = fb
            .post(
                "/api/v1/flags",
                json!({"key": format!("ghost-{n}"), "enabled": true}),
                Some(jwt),
            )
            .await;
        assert_eq!(create.status, 401, "deleted user {id} creates flags");
    }
}
