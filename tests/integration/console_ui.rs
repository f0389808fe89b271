//! The web console's shell and flag pages in headless Chromium
//! (tests/ui/core.test.mjs through playwright-core, with axe-core scans)
//! against this freshly built binary. `node`, Chromium and the Node packages
//! come from `scripts/install-test-deps.sh`; when missing, the test fails and
//! says so. It prints the 10,000-flag render time and the UI's size.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const INSTALL_HINT: &str = "run `scripts/install-test-deps.sh` from the repository root";
const SUITE_TIMEOUT: Duration = Duration::from_secs(600);
const CHROMIUM: &str = "/usr/bin/chromium";

fn ui_tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ui")
}

/// Runs one `node --test` file of tests/ui against this binary and asserts
/// that every test passed; returns its stdout.
pub fn run_ui_suite(file: &str) -> String {
    let dir = ui_tests_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir()
            && dir.join("node_modules/axe-core").is_dir(),
        "playwright-core / axe-core are not installed in tests/ui; {INSTALL_HINT}"
    );
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "Chromium is missing at {CHROMIUM}; {INSTALL_HINT}"
    );
    let child = Command::new("node")
        .args(["--test", "--test-concurrency=1", file])
        .current_dir(&dir)
        .env("FLAGBASE_BIN", crate::harness::BIN)
        .env_remove("FLAGBASE_UI_DIR")
        // A proxy configured for the machine must not see loopback traffic.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `node` ({e}); {INSTALL_HINT}"));
    let out = crate::harness::output_within(child, SUITE_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("# fail 0") && !stdout.contains("# pass 0"),
        "tests/ui/{file} failed: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn console_ui_core_pages_work_in_a_browser() {
    let stdout = run_ui_suite("core.test.mjs");
    // The figures the suite measured (render time with 10,000 flags, size).
    for line in stdout.lines().filter(|l| l.contains("# UI ")) {
        println!("{}", line.trim_start_matches(['#', ' ', '\\']));
    }
    assert!(
        stdout.contains("UI 10k flags:") && stdout.contains("UI size:"),
        "the suite did not report its figures:\n{stdout}"
    );
}
