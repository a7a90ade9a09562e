//! [`NatsServer`]: a real `nats-server` (Debian's package, installed when
//! missing) on a free loopback port, with JetStream and a store dir of its
//! own when asked; stopped, killed and started again on the same port by
//! the tests of fleets joined through NATS, and killed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait::wait_until;

/// One nats-server.
#[derive(Debug)]
pub struct NatsServer {
    port: u16,
    store: Option<tempfile::TempDir>,
    child: Option<Child>,
    program: PathBuf,
}

impl NatsServer {
    /// A server on a free port; with JetStream when `jetstream`.
    pub fn start(jetstream: bool) -> Self {
        let program = crate::system::program("nats-server", "nats-server");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let store = jetstream.then(crate::paths::tempdir);
        let mut server = Self {
            port,
            store,
            child: None,
            program,
        };
        server.resume();
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL: no goodbye to its clients) and waits until its
    /// port is closed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let port = self.port;
        wait_until(Duration::from_secs(10), "nats-server to be gone", || {
            TcpStream::connect(("127.0.0.1", port))
                .is_err()
                .then_some(())
        });
    }

    /// Starts it again on the same port (and store), once it accepts.
    pub fn resume(&mut self) {
        let mut cmd = Command::new(&self.program);
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(store) = &self.store {
            cmd.arg("-js").arg("-sd").arg(store.path());
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server");
        self.child = Some(child);
        let port = self.port;
        wait_until(Duration::from_secs(10), "nats-server to accept", || {
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
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
