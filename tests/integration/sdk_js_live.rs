//! The JavaScript SDK against this binary: its live suite (local mode with a
//! server token, client mode with a client token) and the headless Chromium
//! run (`sdks/js/test-browser`).

use serde_json::json;

use crate::harness::Flagbase;
use crate::sdk_js::{assert_passed, node_test, sdk_dir, INSTALL_HINT};
use crate::sdk_rust::{sample_flags, seeded};

/// A live instance for the JS suites: the sample flags plus `browser-flag`,
/// an admin session, a server token and a client token.
async fn live() -> (Flagbase, String, String, String) {
    let mut flags = sample_flags();
    flags.push(json!({"key": "browser-flag", "enabled": true,
                      "rules": [{"attribute": "plan", "operator": "equals", "value": "pro", "variant": true}]}));
    let (fb, admin, server) = seeded(&flags).await;
    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "js-client", "role": "user", "kind": "client"}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let client = r.body["token"].as_str().unwrap().to_string();
    (fb, admin, server, client)
}

#[tokio::test]
async fn js_sdk_against_a_live_flagbase() {
    let (fb, admin, server, client) = live().await;
    let env = [
        ("FLAGBASE_URL", fb.base.clone()),
        ("FLAGBASE_ADMIN", admin),
        ("FLAGBASE_SERVER_TOKEN", server),
        ("FLAGBASE_CLIENT_TOKEN", client),
    ];
    let out = tokio::task::spawn_blocking(move || node_test(&["test-live/"], &env))
        .await
        .unwrap();
    assert_passed(&out, "sdks/js/test-live");
}

#[tokio::test]
async fn js_sdk_in_headless_chromium() {
    let chromium = "/usr/bin/chromium";
    assert!(
        std::path::Path::new(chromium).is_file(),
        "Chromium is not installed at {chromium}; {INSTALL_HINT}"
    );
    assert!(
        sdk_dir()
            .join("test-browser/node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is not installed in sdks/js/test-browser; {INSTALL_HINT}"
    );
    let (fb, admin, _server, client) = live().await;
    let env = [
        ("FLAGBASE_URL", fb.base.clone()),
        ("FLAGBASE_ADMIN", admin),
        ("FLAGBASE_CLIENT_TOKEN", client),
        ("CHROMIUM", chromium.to_string()),
    ];
    let out =
        tokio::task::spawn_blocking(move || node_test(&["test-browser/browser.test.js"], &env))
            .await
            .unwrap();
    assert_passed(&out, "sdks/js/test-browser in Chromium");
}
