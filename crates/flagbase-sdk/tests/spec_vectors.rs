//! Every evaluation vector in `spec/evaluation` through the SDK's own path:
//! the flag goes in as a bootstrap file (as the API shows flags, with the
//! server-kept fields), the client starts offline, and `evaluate` must give
//! the expected value, variant, reason and error code.

use std::path::PathBuf;
use std::time::Duration;

use flagbase_sdk::{Context, LocalClient, LocalOptions};
use serde_json::{json, Value};

fn spec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../spec/evaluation")
}

#[tokio::test]
async fn every_evaluation_vector() {
    let dir = tempfile_dir();
    // Nothing listens here: every client serves its bootstrap file.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut checked = 0;
    for file in ["order.json", "rules.json", "rollout.json", "variants.json"] {
        let cases: Vec<Value> =
            serde_json::from_slice(&std::fs::read(spec_dir().join(file)).unwrap()).unwrap();
        assert!(!cases.is_empty(), "{file} is empty");
        for case in cases {
            let what = format!("{file}: {}", case["description"]);
            let mut flag = case["flag"].clone();
            flag["version"] = json!(1);
            flag["updated_by"] = json!("spec");
            let path = dir.join("bootstrap.json");
            std::fs::write(&path, json!({"seq": 1, "flags": [flag]}).to_string()).unwrap();
            let mut options = LocalOptions::new(&url, "spec").bootstrap(&path);
            options.init_timeout = Duration::from_secs(5);
            options.backoff_min = Duration::from_secs(60);
            let sdk = LocalClient::init(options).await.expect(&what);
            let key = case["key"]
                .as_str()
                .or(case["flag"]["key"].as_str())
                .unwrap();
            let ctx = Context::from_json(case["context"].clone()).expect(&what);
            let e = sdk.evaluate(key, &ctx);
            let want = &case["expected"];
            assert!(
                same_number_aware(&e.value, &want["value"]),
                "{what}: value {} != {}",
                e.value,
                want["value"]
            );
            assert_eq!(json!(e.variant), want["variant"], "{what}");
            assert_eq!(e.reason, want["reason"].as_str().unwrap(), "{what}");
            assert_eq!(json!(e.error_code), want["error_code"], "{what}");
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked} cases");
    std::fs::remove_dir_all(&dir).ok();
}

/// Numbers compare numerically (`1` = `1.0`), as spec/README.md says.
fn same_number_aware(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_number_aware(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_number_aware(v, w)))
        }
        _ => a == b,
    }
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flagbase-sdk-spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
