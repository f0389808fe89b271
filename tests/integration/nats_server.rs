//! A real `nats-server` (the Debian package) run by a test on a port of its
//! choosing, with a configuration file the test can rewrite and reload:
//! the peer our external mode connects to and our embedded bus is compared
//! with.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{follow, Lines};

pub const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A port that was free a moment ago, for a server that must come back on
/// the same one.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    conf: PathBuf,
    _dir: tempfile::TempDir,
    pub stderr: Arc<Lines>,
}

impl NatsServer {
    /// Starts `nats-server` on `port` with `conf` (nats-server's own
    /// configuration format; empty for none) and waits until it is ready.
    pub fn start(port: u16, conf: &str) -> NatsServer {
        assert!(
            std::path::Path::new(NATS_SERVER).exists(),
            "{NATS_SERVER} is not installed: run scripts/install-test-deps.sh (as root it installs the Debian package nats-server)"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nats.conf");
        std::fs::write(&path, conf).unwrap();
        let mut server = NatsServer {
            child: None,
            port,
            conf: path,
            _dir: dir,
            stderr: Arc::new(Lines::default()),
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let mut child = Command::new(NATS_SERVER)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-c"])
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nats-server");
        let (_, stderr) = follow(&mut child);
        self.child = Some(child);
        let line = stderr.wait_for("nats-server to be ready", |l| {
            l.contains("Server is ready") || l == "<eof>"
        });
        assert!(
            line != "<eof>",
            "nats-server exited before it was ready:\n{}",
            stderr.all().join("\n")
        );
        self.stderr = stderr;
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM) and waits until it has exited.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "nats-server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again on the same port with `conf`.
    pub fn start_again(&mut self, conf: &str) {
        std::fs::write(&self.conf, conf).unwrap();
        self.launch();
    }

    /// Rewrites the configuration and has the running server reload it
    /// (SIGHUP); returns once it says it has.
    pub fn reload(&mut self, conf: &str) {
        std::fs::write(&self.conf, conf).unwrap();
        let from = self.stderr.mark();
        let pid = self.child.as_ref().expect("running").id() as i32;
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        self.stderr
            .wait_for_count("nats-server to reload", from, 1, |l| {
                l.contains("Reloaded server configuration")
            });
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
