//! The real-client bus suites (`@nats-io/transport-node` in
//! tests/interop/node/bus.test.mjs, `nats-py` in
//! tests/interop/python/test_bus.py) run against a live Flagbase. A suite
//! asks for a restart by publishing on `interop.control.restart`; this side
//! then restarts Flagbase on the same bus port, so the suite can check that
//! its client reconnects and resubscribes.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use crate::bus::{bus_addr, round_trip};
use crate::harness::{output_within, Flagbase, Options};
use crate::nats_server::free_port;

const INSTALL_HINT: &str = "run scripts/install-test-deps.sh";
/// A safety net for a hung suite, not a timing assertion.
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);
const RESTART_SUBJECT: &str = "interop.control.restart";

fn repo_root() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

/// Starts Flagbase on a pinned bus port (a restart must find it again),
/// with a developer's API token for the suite.
async fn flagbase() -> (Flagbase, String) {
    let port = free_port().to_string();
    let fb = Flagbase::start_with(Options::default().set("events.nats_port", &port)).await;
    let admin = fb.setup_admin("root@example.com").await;
    let (_, dev) = fb.user("dev@example.com", "developer", Some(&admin)).await;
    let r = fb
        .post(
            "/api/v1/tokens",
            json!({"name": "interop", "role": "developer"}),
            Some(&dev),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    (fb, r.body["token"].as_str().unwrap().to_string())
}

/// Runs `cmd` (a suite) against `fb`, restarting Flagbase whenever the
/// suite asks; returns the suite's output.
async fn run_suite(mut fb: Flagbase, token: &str, mut cmd: Command, what: &str) -> Output {
    let nats_url = format!("nats://{}", bus_addr(&fb));
    // Anonymous on loopback: `interop.*` is nobody's reserved space.
    let control = async_nats::ConnectOptions::new()
        .max_reconnects(None)
        .connect(nats_url.as_str())
        .await
        .expect("the control connection");
    let mut restarts = control.subscribe(RESTART_SUBJECT).await.unwrap();
    round_trip(&control).await;

    cmd.current_dir(repo_root())
        .env("FLAGBASE_URL", &fb.base)
        .env("FLAGBASE_NATS_URL", &nats_url)
        .env("FLAGBASE_TOKEN", token)
        // A proxy configured for the machine must not see loopback traffic.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what} ({e}); {INSTALL_HINT}"));
    let mut suite = tokio::task::spawn_blocking(move || output_within(child, SUITE_TIMEOUT));
    loop {
        tokio::select! {
            out = &mut suite => {
                drop(fb);
                return out.unwrap();
            }
            Some(_) = restarts.next() => {
                fb = tokio::task::block_in_place(|| fb.restart());
                assert_eq!(format!("nats://{}", bus_addr(&fb)), nats_url, "same bus port");
            }
        }
    }
}

fn show(out: &Output) -> String {
    format!(
        "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn require_node_client() {
    let client = std::path::Path::new(repo_root())
        .join("tests/interop/node/node_modules/@nats-io/transport-node/package.json");
    assert!(
        client.is_file(),
        "@nats-io/transport-node is not installed (no {}); {INSTALL_HINT}",
        client.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_js_transport_node_suite_passes_against_the_embedded_bus() {
    require_node_client();
    let (fb, token) = flagbase().await;
    let mut cmd = Command::new("node");
    cmd.args(["--test", "tests/interop/node/bus.test.mjs"]);
    let out = run_suite(fb, &token, cmd, "node").await;
    assert!(
        out.status.success(),
        "the @nats-io/transport-node bus suite failed:\n{}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_suite_passes_against_the_embedded_bus() {
    let probe = Command::new("python3")
        .args(["-c", "import nats, pytest, requests"])
        .output()
        .unwrap_or_else(|e| panic!("`python3` is not installed ({e}); {INSTALL_HINT}"));
    assert!(
        probe.status.success(),
        "nats-py is not importable ({}); {INSTALL_HINT}",
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    let (fb, token) = flagbase().await;
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/interop/python/test_bus.py",
    ]);
    let out = run_suite(fb, &token, cmd, "python3").await;
    assert!(
        out.status.success(),
        "the nats-py bus suite failed:\n{}",
        show(&out)
    );
}
