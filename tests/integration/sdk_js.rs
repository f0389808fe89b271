//! The JavaScript SDK (`sdks/js`): its `node --test` suite (every spec/
//! vector, the SSE parser), its live suite against this binary (local mode
//! with a server token, client mode with a client token), and the headless
//! Chromium run. `node`, Chromium and playwright-core come from
//! `scripts/install-test-deps.sh`; when missing, the tests fail and say so.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub const INSTALL_HINT: &str = "run `scripts/install-test-deps.sh` from the repository root";
const SUITE_TIMEOUT: Duration = Duration::from_secs(180);

pub fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sdks/js")
}

pub fn node_test(args: &[&str], env: &[(&str, String)]) -> Output {
    let child = Command::new("node")
        .arg("--test")
        .args(args)
        .current_dir(sdk_dir())
        .envs(env.iter().map(|(k, v)| (k, v)))
        // A proxy configured for the machine must not see loopback traffic.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `node` ({e}); {INSTALL_HINT}"));
    crate::harness::output_within(child, SUITE_TIMEOUT)
}

pub fn assert_passed(out: &Output, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("# fail 0") && !stdout.contains("# pass 0"),
        "{what} failed: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn js_sdk_unit_suite_passes_every_spec_vector() {
    assert_passed(&node_test(&["test/"], &[]), "sdks/js node --test");
}
