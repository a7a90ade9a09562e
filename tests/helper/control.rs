//! The typed control client: the fleet's control socket reached through the
//! supervisor crate's own client, with corral_proto's types, behind blocking
//! methods for synchronous tests. It owns a small current-thread tokio
//! runtime per connection; it knows nothing of temp dirs or processes
//! ([`crate::fleet`] does) and never waits on a condition ([`crate::wait`]
//! does).
//!
//! The connection is opened on first use and kept. A request that breaks it
//! drops it, and the next request connects again. [`Control::disconnect`]
//! closes it at once: a supervisor going down waits a grace period for its
//! open control connections, so one is closed before the supervisor is told
//! to stop. Requests from several threads through one client take turns.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use corral_proto::{ControlApiClient, ErrorReply, Payload, PluginInfo, PluginStatus, ReloadReport};
use serde_json::Value;
use tarpc::client::RpcError;
use tarpc::context::Context;

/// How long a query (`ps`, `inspect`) may take, as in the CLI.
const QUERY: Duration = Duration::from_secs(10);
/// How long a request that waits on plugins (calls, start, stop, down) may take.
const LONG: Duration = Duration::from_secs(600);

/// A blocking, typed client of one control socket.
pub struct Control {
    socket: PathBuf,
    conn: Mutex<Option<Conn>>,
}

/// One open connection and the runtime that drives it; dropping the runtime
/// closes the socket.
struct Conn {
    rt: tokio::runtime::Runtime,
    client: ControlApiClient,
}

impl Control {
    /// A client of the supervisor listening at `socket`; connects on first use.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            conn: Mutex::new(None),
        }
    }

    /// The control socket it talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Closes the connection now (the next request opens a new one).
    pub fn disconnect(&self) {
        drop(self.lock().take());
    }

    fn lock(&self) -> MutexGuard<'_, Option<Conn>> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn connect(&self) -> Result<Conn, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build a runtime: {e}"))?;
        let via = "the test fleet's runtime dir";
        // The one place the supervisor crate's client is reached.
        let client = rt
            .block_on(corral::cli::client::connect(&self.socket, via))
            .map_err(|e| e.to_string())?;
        Ok(Conn { rt, client })
    }

    /// Sends one request; `Err` says why it got no answer (the connection is
    /// dropped then, so the next request connects again).
    fn request<T, F>(
        &self,
        timeout: Duration,
        send: impl FnOnce(ControlApiClient, Context) -> F,
    ) -> Result<T, String>
    where
        F: Future<Output = Result<T, RpcError>>,
    {
        let mut guard = self.lock();
        if guard.is_none() {
            *guard = Some(self.connect()?);
        }
        let conn = guard.as_ref().expect("connected just now");
        let mut ctx = tarpc::context::current();
        ctx.deadline = Instant::now() + timeout;
        let answer = conn.rt.block_on(send(conn.client.clone(), ctx));
        answer.map_err(|e| {
            drop(guard.take());
            format!("control request to {} failed: {e}", self.socket.display())
        })
    }

    /// A query that may be sent again: a connection found broken (a
    /// supervisor restarted under it) is replaced once.
    fn query<T, F>(&self, send: impl Fn(ControlApiClient, Context) -> F) -> Result<T, String>
    where
        F: Future<Output = Result<T, RpcError>>,
    {
        self.request(QUERY, &send)
            .or_else(|_| self.request(QUERY, &send))
    }

    /// `ps`, or why the supervisor did not answer.
    pub fn try_ps(&self) -> Result<Vec<PluginStatus>, String> {
        self.query(|c, ctx| async move { c.ps(ctx).await })
    }

    /// One status row per configured plugin, in config order.
    pub fn ps(&self) -> Vec<PluginStatus> {
        self.try_ps().unwrap_or_else(|e| panic!("ps: {e}"))
    }

    /// One plugin's status row.
    pub fn status(&self, name: &str) -> PluginStatus {
        let rows = self.ps();
        rows.iter()
            .find(|r| r.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no plugin {name} in ps: {rows:?}"))
    }

    /// `inspect NAME`: the supervisor's answer.
    pub fn try_inspect(&self, name: &str) -> Result<PluginInfo, ErrorReply> {
        self.query(|c, ctx| {
            let name = name.to_string();
            async move { c.inspect(ctx, name).await }
        })
        .unwrap_or_else(|e| panic!("inspect {name}: {e}"))
    }

    /// Status, settings in force and history of one plugin.
    pub fn inspect(&self, name: &str) -> PluginInfo {
        self.try_inspect(name)
            .unwrap_or_else(|e| panic!("inspect {name}: {e}"))
    }

    /// Calls a plugin's action with a JSON payload: its reply, or the error
    /// the supervisor or the plugin answered.
    pub fn call(&self, name: &str, action: &str, payload: &Value) -> Result<Value, ErrorReply> {
        let payload = Payload::from_json(payload).expect("a JSON payload");
        let (n, a) = (name.to_string(), action.to_string());
        let reply = self
            .request(
                LONG,
                |c, ctx| async move { c.call(ctx, n, a, payload).await },
            )
            .unwrap_or_else(|e| panic!("call {name} {action}: {e}"))?;
        Ok(reply.to_json().expect("the reply is JSON"))
    }

    /// Starts the named plugins (clearing `failed` and the restart count).
    pub fn start(&self, names: &[&str]) -> Result<(), ErrorReply> {
        let names = owned(names);
        self.request(LONG, |c, ctx| async move { c.start(ctx, names).await })
            .unwrap_or_else(|e| panic!("start: {e}"))
    }

    /// Stops the named plugins.
    pub fn stop(&self, names: &[&str]) -> Result<(), ErrorReply> {
        let names = owned(names);
        self.request(LONG, |c, ctx| async move { c.stop(ctx, names).await })
            .unwrap_or_else(|e| panic!("stop: {e}"))
    }

    /// Stops then starts the named plugins.
    pub fn restart(&self, names: &[&str]) -> Result<(), ErrorReply> {
        let names = owned(names);
        self.request(LONG, |c, ctx| async move { c.restart(ctx, names).await })
            .unwrap_or_else(|e| panic!("restart: {e}"))
    }

    /// Re-reads the fleet config: what changed, or why it was refused.
    pub fn reload(&self) -> Result<ReloadReport, ErrorReply> {
        self.request(LONG, |c, ctx| async move { c.reload(ctx).await })
            .unwrap_or_else(|e| panic!("reload: {e}"))
    }

    /// Publishes one event from outside the fleet (source `cli`).
    pub fn publish(&self, topic: &str, payload: &Value, retain: bool) -> Result<(), ErrorReply> {
        let payload = Payload::from_json(payload).expect("a JSON payload");
        let topic = topic.to_string();
        self.request(LONG, |c, ctx| async move {
            c.publish(ctx, topic, payload, retain).await
        })
        .unwrap_or_else(|e| panic!("publish: {e}"))
    }

    /// Stops every plugin; returns once all are reaped. The connection is
    /// closed then, so the supervisor need not wait for it to exit.
    pub fn down(&self) {
        self.request(LONG, |c, ctx| async move { c.down(ctx).await })
            .unwrap_or_else(|e| panic!("down: {e}"));
        self.disconnect();
    }
}

fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}
