//! The Rust SDK's `LocalClient::snapshot`: a handle that answers from the
//! definitions in force when it was taken, at the bare engine's cost, while
//! the client itself moves on with the stream.

use std::time::Duration;

use flagbase_sdk::{Context, LocalClient, LocalOptions};
use tokio::sync::mpsc;

use crate::sdk_rust::{sample_flags, seeded};

#[tokio::test]
async fn a_snapshot_keeps_its_definitions_while_the_client_follows_the_stream() {
    let (fb, admin, token) = seeded(&sample_flags()).await;
    let sdk = LocalClient::init(LocalOptions::new(&fb.base, &token))
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    sdk.on_change(move |c| {
        let _ = tx.send(c.clone());
    });
    let anyone = Context::with_targeting_key("u");
    let pro = Context::with_targeting_key("u").with("plan", "pro");

    let before = sdk.snapshot();
    assert_eq!(before.seq(), sdk.seq());
    // The snapshot answers exactly as the client does on the same flags.
    for ctx in [&anyone, &pro] {
        for key in ["new-checkout-ui", "rollout", "banner", "off", "missing"] {
            assert_eq!(
                before.is_enabled(key, ctx),
                sdk.is_enabled(key, ctx),
                "{key}"
            );
            assert_eq!(before.variant(key, ctx), sdk.variant(key, ctx), "{key}");
            assert_eq!(before.value(key, ctx), sdk.value(key, ctx), "{key}");
            assert_eq!(before.evaluate(key, ctx), sdk.evaluate(key, ctx), "{key}");
        }
    }
    assert!(!before.is_enabled("off", &anyone));

    let r = fb
        .send(
            fb.http
                .patch(fb.url("/api/v1/flags/off/toggle"))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let change = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let c = rx.recv().await.expect("listener alive");
            if c.key == "off" {
                return c;
            }
        }
    })
    .await
    .expect("the toggle reaches the client");

    assert!(
        sdk.is_enabled("off", &anyone),
        "the client follows the change"
    );
    assert!(
        sdk.snapshot().is_enabled("off", &anyone),
        "a new snapshot sees it"
    );
    assert_eq!(sdk.snapshot().seq(), change.seq);
    assert!(
        !before.is_enabled("off", &anyone),
        "the old snapshot does not"
    );
    assert!(before.seq() < change.seq);
    assert!(before.value("banner", &anyone).is_string());
}
