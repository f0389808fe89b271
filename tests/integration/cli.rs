//! The command line: version, configuration layers and every rejected
//! configuration, listen failures, and `user create`.

use std::sync::Arc;

use serde_json::json;

use crate::harness::{run_cli, stderr_of, Flagbase, Options, PASSWORD};

#[test]
fn version_prints_version_commit_and_date() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = run_cli(dir, &["version"], &[], None);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("flagbase {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains(", built 20"), "{text}");
    let out = run_cli(dir, &["version", "--short"], &[], None);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        env!("CARGO_PKG_VERSION")
    );
}

/// Runs `start` with a bad configuration: exit code 2 and one line naming it.
fn rejected(yaml: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut all = vec![];
    if let Some(yaml) = yaml {
        std::fs::write(dir.join("config.yaml"), yaml).unwrap();
        all.extend(["--config", "config.yaml"]);
    }
    // No --port here: flags outrank the file, and some cases are about the port.
    all.push("start");
    all.extend(args);
    let out = run_cli(dir, &all, env, None);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err.trim().to_string()
}

#[test]
fn every_bad_configuration_is_refused_with_its_key() {
    assert_eq!(
        rejected(Some("server:\n  prot: 9090\n"), &[], &[]),
        "error: config.yaml: unknown key server.prot (did you mean server.port?)"
    );
    assert!(rejected(Some("server:\n  port: http\n"), &[], &[])
        .starts_with("error: config.yaml: server.port: invalid type"));
    assert!(rejected(Some("server:\n  port: 99999\n"), &[], &[]).contains("server.port:"));
    assert!(rejected(Some("iam:\n  token_ttl: forever\n"), &[], &[])
        .contains("iam.token_ttl: invalid duration \"forever\""));
    assert!(rejected(Some("iam:\n  token_ttl: 0s\n"), &[], &[])
        .contains("iam.token_ttl: must be longer than 0"));
    assert!(rejected(Some("database:\n  readers: 0\n"), &[], &[])
        .contains("database.readers: must be between 1 and 64"));
    assert!(rejected(
        Some("iam:\n  jwt_secret: change-me-in-production\n"),
        &[],
        &[]
    )
    .contains("well-known"));
    assert!(rejected(Some("iam:\n  jwt_secret: tooshort\n"), &[], &[]).contains("at least 32"));
    assert!(rejected(Some("server: [1, 2]\n"), &[], &[]).contains("server: expected a section"));
    assert!(rejected(Some("server:\n  port: [\n"), &[], &[]).contains("config.yaml: invalid YAML"));
    assert_eq!(
        rejected(None, &[("FLAGBASE_SERVER_PROT", "1")], &[]),
        "error: environment: unknown variable FLAGBASE_SERVER_PROT (did you mean FLAGBASE_SERVER_PORT?)"
    );
    assert!(
        rejected(None, &[("FLAGBASE_IAM_LOGIN_LOCKOUT", "5 minutes")], &[])
            .starts_with("error: FLAGBASE_IAM_LOGIN_LOCKOUT: iam.login_lockout: invalid duration")
    );
    assert!(rejected(None, &[], &["--set", "log.level=loud"])
        .contains("--set log.level: log.level: unknown level"));
    assert!(rejected(None, &[], &["--set", "server.nope=1"]).contains("unknown key server.nope"));
    let missing = rejected(
        None,
        &[("FLAGBASE_CONFIG", "/nonexistent/flagbase.yaml")],
        &[],
    );
    assert!(
        missing.contains("/nonexistent/flagbase.yaml: cannot read config file"),
        "{missing}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = run_cli(dir, &["start", "--bogus"], &[], None);
    assert_eq!(out.status.code(), Some(2));
    let out = user_create(dir, "a@b.co", "root", "longenough");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_busy_port_is_a_runtime_failure_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = run_cli(
        dir,
        &["start", "--host", "127.0.0.1", "--port", &port],
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.lines()
            .any(|l| l
                == format!("error: cannot listen on 127.0.0.1:{port}: address already in use")),
        "{err}"
    );
}

#[tokio::test]
async fn starts_with_no_configuration_at_all() {
    let fb = Flagbase::start().await;
    let banner = fb.stdout.all().join("\n");
    let dir = std::fs::canonicalize(fb.dir()).unwrap();
    assert!(
        banner.contains(&format!("database: {}", dir.join("flagbase.db").display())),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("storage:  {}", dir.join("data/storage").display())),
        "{banner}"
    );
    // The harness asks for a free bus port (tests run side by side); the
    // banner shows the one bound, on the default loopback host.
    let bus = crate::bus::bus_addr(&fb);
    let port: u16 = bus
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("bus address {bus}"));
    assert_ne!(port, 0, "{banner}");
    fb.stderr.wait_for("bus listening log line", |l| {
        l.contains("bus listening") && l.contains(&bus)
    });
    assert!(dir.join("data/storage").is_dir());
    assert!(fb.setup_token.is_some(), "a fresh database asks for setup");
    let r = fb.get("/health", None).await;
    assert_eq!((r.status, r.body.clone()), (200, json!({"status": "ok"})));
    assert_eq!(fb.get("/ready", None).await.status, 200);
    // The actual port is logged too.
    fb.stderr
        .wait_for("listening log line", |l| l.contains("http listening"));
}

/// Token lifetime is visible in `expires_at`, so it shows which layer won.
async fn token_hours(options: Options) -> i64 {
    let fb = Flagbase::start_with(options).await;
    let token = fb.setup_token.clone().unwrap();
    let r = fb
        .post(
            "/setup",
            json!({"token": token, "email": "root@example.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let expires: chrono::DateTime<chrono::Utc> =
        r.body["expires_at"].as_str().unwrap().parse().unwrap();
    (expires - chrono::Utc::now()).num_minutes().div_euclid(60) + 1
}

#[tokio::test]
async fn flags_beat_environment_beat_file_beat_defaults() {
    assert_eq!(token_hours(Options::default()).await, 24);
    let file = Options {
        config_yaml: Some("iam:\n  token_ttl: 1h\n".into()),
        ..Default::default()
    };
    assert_eq!(token_hours(file.clone()).await, 1);
    let env = Options {
        env: vec![("FLAGBASE_IAM_TOKEN_TTL".into(), "2h".into())],
        ..file
    };
    assert_eq!(token_hours(env.clone()).await, 2);
    assert_eq!(token_hours(env.set("iam.token_ttl", "3h")).await, 3);
}

#[tokio::test]
async fn user_create_bootstraps_an_admin_with_or_without_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = run_cli(
        dir,
        &[
            "user",
            "create",
            "--email",
            "Ops@Example.com",
            "--role",
            "admin",
            "--password-stdin",
        ],
        &[],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created admin user ops@example.com"));

    let again = user_create(dir, "ops@example.com", "user", PASSWORD);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr_of(&again).contains("already exists"),
        "{}",
        stderr_of(&again)
    );
    let bad = user_create(dir, "nope", "user", PASSWORD);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr_of(&bad).contains("email: is not a valid email address"),
        "{}",
        stderr_of(&bad)
    );
    let short = user_create(dir, "x@example.com", "user", "short");
    assert_eq!(short.status.code(), Some(2));

    // Start the server on that database: no setup needed, the admin logs in.
    let fb = launch_in(dir).await;
    assert!(fb.setup_token.is_none());
    assert_eq!(
        fb.get("/setup/status", None).await.body,
        json!({"needs_setup": false})
    );
    let admin = fb.login("ops@example.com").await;

    // And while it runs, the CLI can still add users.
    let out = user_create(dir, "dev@example.com", "developer", PASSWORD);
    assert!(out.status.success(), "{}", stderr_of(&out));
    fb.login("dev@example.com").await;
    let users = fb.get("/api/v1/users", Some(&admin)).await;
    assert_eq!(users.body["users"].as_array().unwrap().len(), 2);
}

/// `flagbase user create` with a password on the command line.
fn user_create(
    dir: &std::path::Path,
    email: &str,
    role: &str,
    password: &str,
) -> std::process::Output {
    run_cli(
        dir,
        &[
            "user",
            "create",
            "--email",
            email,
            "--role",
            role,
            "--password",
            password,
        ],
        &[],
        None,
    )
}

/// The harness starts in its own temp dir; this runs the binary in `dir`.
async fn launch_in(dir: &std::path::Path) -> Flagbase {
    let db = dir.join("flagbase.db");
    Flagbase::start_with(Options::default().set("database.path", db.to_str().unwrap())).await
}

/// What the README promises with no configuration at all: `flagbase.db` in
/// the working directory and every interface. Only `--port 0` is given,
/// because 8080 may be taken where the tests run.
#[tokio::test]
async fn with_no_configuration_the_database_is_created_in_the_working_directory() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let fb = Flagbase::start_plain(dir.clone(), &["start", "--port", "0"]);
    let cwd = std::fs::canonicalize(dir.path()).unwrap();
    assert!(cwd.join("flagbase.db").is_file(), "flagbase.db in the cwd");
    let banner = fb.stdout.all().join("\n");
    assert!(
        banner.contains(&format!("database: {}", cwd.join("flagbase.db").display())),
        "{banner}"
    );
    assert!(banner.contains("http:     http://0.0.0.0:"), "{banner}");
    assert_eq!(fb.get("/health", None).await.status, 200);
}

/// A CLI client reads FLAGBASE_SERVER and FLAGBASE_TOKEN; a server started
/// in the same shell must not refuse them as unknown configuration.
#[tokio::test]
async fn regression_client_variables_in_the_environment_do_not_stop_start() {
    let fb = Flagbase::start_with(Options {
        env: vec![
            ("FLAGBASE_TOKEN".into(), "x".into()),
            ("FLAGBASE_SERVER".into(), "http://x".into()),
        ],
        ..Default::default()
    })
    .await;
    assert_eq!(fb.get("/health", None).await.status, 200);
    for name in ["FLAGBASE_TOKEN", "FLAGBASE_SERVER"] {
        let line = fb.stderr.wait_for("a warning about {name}", |l| {
            l.contains(&format!("ignoring environment variable {name}:"))
        });
        assert!(line.contains("\"level\":\"WARN\""), "{line}");
    }
}
