//! Identity and access end to end: setup, registration, login, throttling,
//! roles, API tokens, and rights that change at once.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Flagbase, Options, PASSWORD};

#[tokio::test]
async fn setup_token_works_once() {
    let fb = Flagbase::start().await;
    assert_eq!(
        fb.get("/setup/status", None).await.body,
        json!({"needs_setup": true})
    );
    let token = fb.setup_token.clone().unwrap();
    let wrong = fb
        .post("/setup", json!({"token": "x".repeat(token.len()), "email": "root@example.com", "password": PASSWORD}), None)
        .await;
    assert_eq!(wrong.error(401), "unauthenticated");
    let weak = fb
        .post(
            "/setup",
            json!({"token": token, "email": "root@example.com", "password": "short"}),
            None,
        )
        .await;
    assert_eq!(weak.error(400), "invalid");

    let admin = fb.setup_admin("root@example.com").await;
    let me = fb.get("/auth/me", Some(&admin)).await;
    assert_eq!(
        (me.body["email"].as_str(), me.body["role"].as_str()),
        (Some("root@example.com"), Some("admin"))
    );
    assert_eq!(
        fb.get("/setup/status", None).await.body,
        json!({"needs_setup": false})
    );
    let again = fb
        .post(
            "/setup",
            json!({"token": token, "email": "other@example.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(again.error(409), "conflict");
}

#[tokio::test]
async fn setup_token_expires() {
    let fb = Flagbase::start_with(Options::default().set("iam.setup_token_ttl", "300ms")).await;
    let token = fb.setup_token.clone().unwrap();
    // Expiry is a matter of time passing; there is no event to await.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = fb
        .post(
            "/setup",
            json!({"token": token, "email": "root@example.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(r.error(401), "unauthenticated");
    assert!(
        r.body["error"].as_str().unwrap().contains("expired"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn register_and_login() {
    let fb = Flagbase::start().await;
    fb.setup_admin("root@example.com").await;
    let r = fb
        .post(
            "/auth/register",
            json!({"email": "Ada@Example.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["email"], "ada@example.com");
    assert_eq!(r.body["role"], "user");
    assert!(r.body["id"].is_string() && r.body["created_at"].is_string());
    assert!(r.body.get("password_hash").is_none() && r.body.get("password").is_none());

    let dup = fb
        .post(
            "/auth/register",
            json!({"email": "ADA@example.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(dup.error(409), "conflict");
    for (email, password, field) in [
        ("not-an-email", PASSWORD, "email"),
        ("b@example.com", "seven77", "password"),
        ("b@example.com", &"p".repeat(1025)[..], "password"),
    ] {
        let r = fb
            .post(
                "/auth/register",
                json!({"email": email, "password": password}),
                None,
            )
            .await;
        assert_eq!(r.error(400), "invalid");
        assert_eq!(r.body["field"], field);
    }

    let r = fb
        .post(
            "/auth/login",
            json!({"email": "ada@EXAMPLE.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    assert!(r.body["expires_at"].is_string());
    let me = fb.get("/auth/me", r.body["token"].as_str()).await;
    assert_eq!(me.body["email"], "ada@example.com");
    assert_eq!(me.body["credential"]["type"], "session");
}

#[tokio::test]
async fn unknown_email_and_wrong_password_are_indistinguishable() {
    let fb = Flagbase::start().await;
    fb.setup_admin("root@example.com").await;
    fb.user("ada@example.com", "user", None).await;
    let wrong = fb
        .post(
            "/auth/login",
            json!({"email": "ada@example.com", "password": "wrong password"}),
            None,
        )
        .await;
    let unknown = fb
        .post(
            "/auth/login",
            json!({"email": "bob@example.com", "password": "wrong password"}),
            None,
        )
        .await;
    assert_eq!(wrong.error(401), "unauthenticated");
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(
        wrong.body,
        json!({"error": "invalid credentials", "code": "unauthenticated"})
    );
}

#[tokio::test]
async fn only_an_admin_assigns_roles() {
    let fb = Flagbase::start().await;
    let r = fb
        .post(
            "/auth/register",
            json!({"email": "x@example.com", "password": PASSWORD, "role": "admin"}),
            None,
        )
        .await;
    assert_eq!(r.error(403), "forbidden");
    assert!(r.body["error"]
        .as_str()
        .unwrap()
        .contains("only an admin can assign the admin role"));
    let admin = fb.setup_admin("root@example.com").await;
    let (_, dev) = fb.user("dev@example.com", "developer", Some(&admin)).await;
    let r = fb
        .post(
            "/auth/register",
            json!({"email": "y@example.com", "password": PASSWORD, "role": "developer"}),
            Some(&dev),
        )
        .await;
    assert_eq!(r.error(403), "forbidden");
    let r = fb
        .post(
            "/auth/register",
            json!({"email": "y@example.com", "password": PASSWORD, "role": "root"}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.error(400), "invalid");
    assert_eq!(
        fb.get("/auth/me", Some(&dev)).await.body["role"],
        "developer"
    );
}

#[tokio::test]
async fn failed_logins_are_throttled_per_account_and_per_address() {
    let fb = Flagbase::start_with(
        Options::default()
            .set("iam.login_max_failures", "3")
            .set("iam.login_max_failures_per_ip", "6"),
    )
    .await;
    fb.setup_admin("root@example.com").await;
    fb.user("ada@example.com", "user", None).await;
    let attempt = |email: &'static str, password: &'static str| {
        fb.post(
            "/auth/login",
            json!({"email": email, "password": password}),
            None,
        )
    };
    for _ in 0..3 {
        assert_eq!(
            attempt("ada@example.com", "wrong password").await.status,
            401
        );
    }
    let locked = attempt("ada@example.com", PASSWORD).await;
    assert_eq!(locked.error(429), "throttled");
    let retry: u64 = locked.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");

    // Three more failures on other accounts exhaust the address's budget.
    for email in ["b@example.com", "c@example.com", "d@example.com"] {
        assert_eq!(attempt(email, "wrong password").await.status, 401);
    }
    assert_eq!(
        attempt("e@example.com", "wrong password").await.error(429),
        "throttled"
    );
}

#[tokio::test]
async fn expired_sessions_are_refused() {
    let fb = Flagbase::start_with(Options::default().set("iam.token_ttl", "1s")).await;
    let admin = fb.setup_admin("root@example.com").await;
    assert_eq!(fb.get("/auth/me", Some(&admin)).await.status, 200);
    // JWT expiry has one-second resolution; wait it out.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = fb.get("/auth/me", Some(&admin)).await;
    assert_eq!(r.error(401), "unauthenticated");
    assert!(r.body["error"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn role_changes_and_deletion_take_effect_at_once() {
    let fb = Flagbase::start().await;
    let root = fb.setup_admin("root@example.com").await;
    let (second_id, second) = fb.user("second@example.com", "admin", Some(&root)).await;
    assert_eq!(fb.get("/api/v1/users", Some(&second)).await.status, 200);

    let r = fb
        .put(
            &format!("/api/v1/users/{second_id}/role"),
            json!({"role": "developer"}),
            Some(&root),
        )
        .await;
    assert_eq!(
        (r.status, r.body["role"].as_str()),
        (200, Some("developer"))
    );
    assert_eq!(
        fb.get("/api/v1/users", Some(&second)).await.error(403),
        "forbidden"
    );
    assert_eq!(
        fb.get("/auth/me", Some(&second)).await.body["role"],
        "developer"
    );

    assert_eq!(
        fb.delete(&format!("/api/v1/users/{second_id}"), Some(&root))
            .await
            .status,
        204
    );
    assert_eq!(
        fb.get("/auth/me", Some(&second)).await.error(401),
        "unauthenticated"
    );
    assert_eq!(
        fb.delete(&format!("/api/v1/users/{second_id}"), Some(&root))
            .await
            .error(404),
        "not_found"
    );

    // The last admin can be neither demoted nor deleted.
    let me = fb.get("/auth/me", Some(&root)).await;
    let root_id = me.body["id"].as_str().unwrap();
    let r = fb
        .put(
            &format!("/api/v1/users/{root_id}/role"),
            json!({"role": "user"}),
            Some(&root),
        )
        .await;
    assert_eq!(r.error(409), "conflict");
    assert_eq!(
        fb.delete(&format!("/api/v1/users/{root_id}"), Some(&root))
            .await
            .error(409),
        "conflict"
    );
    let list = fb.get("/api/v1/users", Some(&root)).await;
    let users = list.body["users"].as_array().unwrap();
    assert_eq!(users.len(), 1);
    assert!(users[0].get("password_hash").is_none());
}

#[tokio::test]
async fn api_tokens_are_shown_once_bounded_by_their_creator_and_revocable() {
    let fb = Flagbase::start().await;
    let root = fb.setup_admin("root@example.com").await;
    let (dev_id, dev) = fb.user("dev@example.com", "developer", Some(&root)).await;

    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "ci", "role": "admin"}),
            Some(&dev),
        )
        .await;
    assert_eq!(r.error(403), "forbidden");
    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "", "role": "user"}),
            Some(&dev),
        )
        .await;
    assert_eq!(r.error(400), "invalid");
    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "ci", "role": "user", "expires_in": "soon"}),
            Some(&dev),
        )
        .await;
    assert_eq!(r.error(400), "invalid");

    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "ci", "role": "developer"}),
            Some(&dev),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let secret = r.body["token"].as_str().unwrap().to_string();
    let id = r.body["id"].as_str().unwrap().to_string();
    assert!(
        secret.starts_with("fbk_") && secret.len() > 4 + 32,
        "{secret}"
    );
    assert!(r.body.get("secret_hash").is_none());

    let me = fb.get("/auth/me", Some(&secret)).await;
    assert_eq!(
        (
            me.body["role"].as_str(),
            me.body["credential"]["type"].as_str()
        ),
        (Some("developer"), Some("api_token"))
    );
    let via_header = fb
        .send(fb.http.get(fb.url("/auth/me")).header("x-api-key", &secret))
        .await;
    assert_eq!(via_header.status, 200);

    let listed = fb.get("/api/v1/tokens", Some(&dev)).await;
    let tokens = listed.body["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1);
    assert!(tokens[0].get("token").is_none() && tokens[0].get("secret_hash").is_none());
    assert!(!listed.body.to_string().contains(&secret[12..]));

    // Lowering the owner lowers the token with it.
    fb.put(
        &format!("/api/v1/users/{dev_id}/role"),
        json!({"role": "user"}),
        Some(&root),
    )
    .await;
    assert_eq!(fb.get("/auth/me", Some(&secret)).await.body["role"], "user");

    // An admin's user-role token cannot do admin things.
    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "narrow", "role": "user"}),
            Some(&root),
        )
        .await;
    let narrow = r.body["token"].as_str().unwrap().to_string();
    assert_eq!(
        fb.get("/api/v1/users", Some(&narrow)).await.error(403),
        "forbidden"
    );

    // Revocation is immediate; someone else's token is not found.
    assert_eq!(
        fb.delete(&format!("/api/v1/tokens/{id}"), Some(&narrow))
            .await
            .error(404),
        "not_found"
    );
    assert_eq!(
        fb.delete(&format!("/api/v1/tokens/{id}"), Some(&dev))
            .await
            .status,
        204
    );
    assert_eq!(
        fb.get("/auth/me", Some(&secret)).await.error(401),
        "unauthenticated"
    );

    // A deleted owner takes their tokens along.
    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "again", "role": "user"}),
            Some(&dev),
        )
        .await;
    let orphan = r.body["token"].as_str().unwrap().to_string();
    fb.delete(&format!("/api/v1/users/{dev_id}"), Some(&root))
        .await;
    assert_eq!(
        fb.get("/auth/me", Some(&orphan)).await.error(401),
        "unauthenticated"
    );
}

#[tokio::test]
async fn api_tokens_expire() {
    let fb = Flagbase::start().await;
    let root = fb.setup_admin("root@example.com").await;
    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "short", "role": "user", "expires_in": "1s"}),
            Some(&root),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let secret = r.body["token"].as_str().unwrap().to_string();
    assert_eq!(fb.get("/auth/me", Some(&secret)).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = fb.get("/auth/me", Some(&secret)).await;
    assert_eq!(r.error(401), "unauthenticated");
    assert!(r.body["error"].as_str().unwrap().contains("expired"));
}
