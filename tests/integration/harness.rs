//! A small harness that runs the real `flagbase` binary in a temporary
//! directory on a free port and talks HTTP to it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_flagbase");
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Lines a child printed, with a condition variable to await new ones.
#[derive(Default)]
pub struct Lines {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

impl Lines {
    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
        self.changed.notify_all();
    }

    /// Waits for a line matching `pred` (lines already seen count too).
    pub fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut lines = self.lines.lock().unwrap();
        loop {
            if let Some(found) = lines.iter().find(|l| pred(l)) {
                return found.clone();
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "timed out waiting for {what}; output so far:\n{}",
                lines.join("\n")
            );
            lines = self.changed.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    /// How many lines have been seen so far; a starting point for
    /// `wait_for_count`.
    pub fn mark(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Waits until at least `count` lines from index `from` on match `pred`.
    pub fn wait_for_count(
        &self,
        what: &str,
        from: usize,
        count: usize,
        pred: impl Fn(&str) -> bool,
    ) {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut lines = self.lines.lock().unwrap();
        loop {
            let seen = lines.iter().skip(from).filter(|l| pred(l)).count();
            if seen >= count {
                return;
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "timed out waiting for {count} × {what} (saw {seen}); output so far:\n{}",
                lines.join("\n")
            );
            lines = self.changed.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    pub fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

fn pump(stream: impl std::io::Read + Send + 'static, sink: Arc<Lines>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(l) => sink.push(l),
                Err(_) => break,
            }
        }
        sink.push("<eof>".into());
    });
}

/// Follows the output of another program a test started (a `nats-server`),
/// line by line, like Flagbase's own.
pub fn follow(child: &mut Child) -> (Arc<Lines>, Arc<Lines>) {
    let (stdout, stderr) = (Arc::new(Lines::default()), Arc::new(Lines::default()));
    if let Some(out) = child.stdout.take() {
        pump(out, stdout.clone());
    }
    if let Some(err) = child.stderr.take() {
        pump(err, stderr.clone());
    }
    (stdout, stderr)
}

/// How to start an instance.
#[derive(Default, Clone)]
pub struct Options {
    pub config_yaml: Option<String>,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

impl Options {
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.args.push("--set".into());
        self.args.push(format!("{key}={value}"));
        self
    }
}

pub struct Flagbase {
    child: Option<Child>,
    dir: Arc<tempfile::TempDir>,
    options: Options,
    pub base: String,
    pub stdout: Arc<Lines>,
    pub stderr: Arc<Lines>,
    pub setup_token: Option<String>,
    pub http: reqwest::Client,
    /// A client whose connections carry gateway requests only, as a
    /// browser's or an application's to the gateway's host would: the
    /// gateway's own HTTP/1 path reads a connection until its first
    /// request it does not carry, and after one API request hyper serves
    /// the connection for good. `get`, `post`, `put` and `delete` send
    /// `/gateway` paths through it.
    pub gw: reqwest::Client,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and the shared error shape; returns the code.
    pub fn error(&self, status: u16) -> &str {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        assert!(
            self.body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "no error message: {}",
            self.body
        );
        self.body["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code: {}", self.body))
    }
}

impl Flagbase {
    pub async fn start() -> Flagbase {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Flagbase {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Self::launch(dir, options)
    }

    /// Starts again on the same directory (and so the same database).
    pub fn restart(mut self) -> Flagbase {
        let status = self.stop();
        assert!(status.success(), "clean stop before restart: {status}");
        Self::launch(self.dir.clone(), self.options.clone())
    }

    pub fn relaunch_after_kill(&self) -> Flagbase {
        Self::launch(self.dir.clone(), self.options.clone())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn launch(dir: Arc<tempfile::TempDir>, options: Options) -> Flagbase {
        let mut cmd = command(dir.path());
        cmd.args(["--log-format", "json", "-l", "debug"]);
        if let Some(yaml) = &options.config_yaml {
            let path = dir.path().join("config.yaml");
            std::fs::write(&path, yaml).unwrap();
            cmd.arg("--config").arg(&path);
        }
        cmd.args(["start", "--host", "127.0.0.1", "--port", "0"]);
        cmd.args(&options.args);
        cmd.envs(options.env.iter().map(|(k, v)| (k, v)));
        Self::spawn(cmd, dir, options)
    }

    /// Runs `flagbase` in `dir` with exactly `args` and nothing added (no
    /// host, log or config flags), for tests of what users get by default.
    pub fn start_plain(dir: Arc<tempfile::TempDir>, args: &[&str]) -> Flagbase {
        let mut cmd = command(dir.path());
        cmd.args(args);
        Self::spawn(cmd, dir, Options::default())
    }

    /// Starts `cmd` (a `flagbase … start`) and waits for its banner.
    fn spawn(mut cmd: Command, dir: Arc<tempfile::TempDir>, options: Options) -> Flagbase {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flagbase");
        let (stdout, stderr) = (Arc::new(Lines::default()), Arc::new(Lines::default()));
        pump(child.stdout.take().unwrap(), stdout.clone());
        pump(child.stderr.take().unwrap(), stderr.clone());
        let last = stdout.wait_for("the end of the banner", |l| {
            l.starts_with("Ready.") || l == "<eof>"
        });
        if last == "<eof>" {
            let status = child.wait().unwrap();
            stderr.wait_for("stderr to close", |l| l == "<eof>");
            panic!(
                "flagbase exited ({status}) before listening:\n{}",
                stderr.all().join("\n")
            );
        }
        let line = stdout.wait_for("the banner's http line", |l| l.contains("http:"));
        // A server on every interface is reached through loopback.
        let base = line
            .split_whitespace()
            .last()
            .unwrap()
            .replace("//0.0.0.0:", "//127.0.0.1:");
        let setup_token = stdout
            .all()
            .iter()
            .find_map(|l| l.trim().strip_prefix("setup token: ").map(str::to_string));
        Flagbase {
            child: Some(child),
            dir,
            options,
            base,
            stdout,
            stderr,
            setup_token,
            http: reqwest::Client::new(),
            gw: reqwest::Client::new(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({sig})");
    }

    /// SIGTERM and wait for exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait()
    }

    /// SIGKILL and wait: no chance to clean up.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait();
    }

    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "flagbase did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    /// `gw` for gateway paths, `http` for the rest.
    pub fn client(&self, path: &str) -> &reqwest::Client {
        if path.starts_with("/gateway") {
            &self.gw
        } else {
            &self.http
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.send(auth(self.client(path).get(self.url(path)), token))
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.send(auth(self.client(path).delete(self.url(path)), token))
            .await
    }

    pub async fn post(&self, path: &str, body: Value, token: Option<&str>) -> Resp {
        self.send(auth(
            self.client(path).post(self.url(path)).json(&body),
            token,
        ))
        .await
    }

    pub async fn put(&self, path: &str, body: Value, token: Option<&str>) -> Resp {
        self.send(auth(
            self.client(path).put(self.url(path)).json(&body),
            token,
        ))
        .await
    }

    /// Completes first-admin setup and returns the admin's JWT.
    pub async fn setup_admin(&self, email: &str) -> String {
        let token = self
            .setup_token
            .clone()
            .expect("banner shows a setup token");
        let r = self
            .post(
                "/setup",
                serde_json::json!({"token": token, "email": email, "password": PASSWORD}),
                None,
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["token"].as_str().unwrap().to_string()
    }

    /// Registers (as `by`, if given) and logs in; returns (user id, JWT).
    pub async fn user(&self, email: &str, role: &str, by: Option<&str>) -> (String, String) {
        let r = self
            .post(
                "/auth/register",
                serde_json::json!({"email": email, "password": PASSWORD, "role": role}),
                by,
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.body["id"].as_str().unwrap().to_string();
        (id, self.login(email).await)
    }

    pub async fn login(&self, email: &str) -> String {
        let r = self
            .post(
                "/auth/login",
                serde_json::json!({"email": email, "password": PASSWORD}),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["token"].as_str().unwrap().to_string()
    }
}

pub const PASSWORD: &str = "correct horse battery";

fn auth(req: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}

impl Drop for Flagbase {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `flagbase` command in `dir` with no inherited `FLAGBASE_*` settings.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("FLAGBASE_") || k == "NO_COLOR" {
            cmd.env_remove(k);
        }
    }
    // Tests run side by side: each bus takes a free port, not 4222
    // (a test's own `--set events.nats_port=...` still wins).
    cmd.env("FLAGBASE_EVENTS_NATS_PORT", "0");
    cmd
}

/// Runs the CLI to completion with optional stdin.
pub fn run_cli(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = command(dir);
    cmd.args(args).envs(env.iter().copied());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn flagbase");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    // A command that should have exited but serves instead must not hang
    // the suite: it is killed after a generous bound, and the test fails.
    let out = output_within(child, START_TIMEOUT);
    assert!(
        out.status.code().is_some(),
        "flagbase {args:?} did not exit by itself: {}",
        stderr_of(&out)
    );
    out
}

/// Waits for a child's output, killing it if it runs longer than `limit`.
pub fn output_within(child: Child, limit: Duration) -> Output {
    let pid = child.id() as i32;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if done_rx.recv_timeout(limit).is_err() {
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().expect("child output");
    let _ = done_tx.send(());
    out
}

pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
