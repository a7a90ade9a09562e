//! Connecting to the supervisor and serving [`PluginApi`] until told to stop.
//!
//! [`run`] reads the environment, opens the plugin and bus connections
//! (the handshake's client step is proto's
//! [`introduce`](corral_proto::introduce)) and hands the plugin connection
//! to the serve loop. The serve loop works on any byte stream, so the
//! `testing` harness drives this same code over an in-memory one; the bus
//! behind a [`Context`] is a [`Link`], this module's being the wire. The
//! plugin's background work is started after its first successful load and
//! stopped before its unload, through [`Background`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use corral_proto::codec::{self, Codec};
use corral_proto::{
    BusApiClient, ErrorReply, Hello, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, Payload, PluginApi,
    Role, StreamPart, env, introduce,
};
use futures::StreamExt;
use interprocess::local_socket::tokio::{Stream, prelude::*};
use interprocess::local_socket::{GenericFilePath, ToFsName};
use tarpc::server::{BaseChannel, Channel};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::background::{Background, STOP_GRACE};
use crate::calls::DEADLINE;
use crate::link::{BusLink, Link};
use crate::stream::Producers;
use crate::{Context, Event, Plugin, RunError};

/// Serves `plugin` until the supervisor stops it, then returns.
///
/// This is the whole of a plugin's `main`. If the plugin cannot start
/// serving (not launched by corral, socket unreachable, handshake refused) it
/// prints why to stderr and exits with status 1.
pub fn run<P: Plugin>(plugin: P) {
    if let Err(e) = try_run(plugin) {
        eprintln!("corral plugin: {e}");
        std::process::exit(1);
    }
}

/// Serves `plugin` until the supervisor stops it or the connection closes.
pub fn try_run<P: Plugin>(plugin: P) -> Result<(), RunError> {
    let settings = Settings::from_env()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?
        .block_on(serve(plugin, settings))
}

/// What the supervisor told this process through its environment.
struct Settings {
    name: String,
    socket: String,
    secret: String,
    codec: Codec,
    max_frame: usize,
}

impl Settings {
    fn from_env() -> Result<Self, RunError> {
        let var = |name: &'static str| std::env::var(name).map_err(|_| RunError::MissingEnv(name));
        let codec = var(env::PLUGIN_CODEC)?
            .parse()
            .map_err(|detail| RunError::BadEnv {
                name: env::PLUGIN_CODEC,
                detail,
            })?;
        // The handshake picks the version; an older supervisor than any
        // version this SDK speaks is told apart before it is tried.
        if let Ok(theirs) = std::env::var(env::PROTOCOL_VERSION)
            && theirs
                .parse::<u32>()
                .is_ok_and(|v| v < MIN_PROTOCOL_VERSION)
        {
            return Err(RunError::BadEnv {
                name: env::PROTOCOL_VERSION,
                detail: format!(
                    "the supervisor speaks protocol versions up to {theirs} and this SDK versions {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}"
                ),
            });
        }
        let max_frame = match std::env::var(env::MAX_FRAME) {
            Ok(v) => v.parse().map_err(|e| RunError::BadEnv {
                name: env::MAX_FRAME,
                detail: format!("{e}"),
            })?,
            Err(_) => codec::MAX_FRAME_BYTES,
        };
        Ok(Self {
            name: var(env::PLUGIN_NAME)?,
            socket: var(env::PLUGIN_SOCKET)?,
            secret: var(env::PLUGIN_SECRET)?,
            codec,
            max_frame,
        })
    }
}

async fn serve<P: Plugin>(plugin: P, settings: Settings) -> Result<(), RunError> {
    let (framed, _) = open(&settings, false).await?;
    // The second connection, for publishing, subscribing and calling other
    // plugins, opened before `load` is answered as the protocol asks.
    let (bus, agreed) = open(&settings, true).await?;
    let tarpc::client::NewClient { client, dispatch } = BusApiClient::new(
        tarpc::client::Config::default(),
        codec::into_transport(bus, settings.codec),
    );
    tokio::spawn(dispatch);
    let link: Arc<dyn Link> = Arc::new(BusLink::new(client, &agreed.features));
    let ctx = Context::new(settings.name, Some(link), settings.max_frame);
    serve_connection(Arc::new(plugin), ctx, framed, settings.codec, STOP_GRACE).await;
    Ok(())
}

/// The serve loop: answers [`PluginApi`] requests on a connection that has
/// passed its handshake, each request in a task of its own (a caller's
/// cancel or deadline drops it), until the peer closes the connection; then
/// stops the background work (waiting up to `grace` for it) and runs
/// `on_unload`, unless a `shutdown` already did. `ctx` is the context every
/// hook gets; the frame limit it bounds replies with is the connection's
/// own.
pub(crate) async fn serve_connection<P, S>(
    plugin: Arc<P>,
    ctx: Context,
    framed: codec::Framed<S>,
    codec: Codec,
    grace: Duration,
) where
    P: Plugin,
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let server = Server {
        plugin,
        ctx,
        max_frame: framed.codec().max_frame_length(),
        producers: Arc::default(),
        unloaded: Arc::new(AtomicBool::new(false)),
        background: Arc::new(Background::default()),
        grace,
    };
    let transport = codec::into_transport(framed, codec);
    BaseChannel::with_defaults(transport)
        .execute(server.clone().serve())
        .for_each(|request| async {
            tokio::spawn(request);
        })
        .await;
    // The supervisor closed the connection: after a shutdown request, or
    // because it is gone. Either way this plugin's life is over.
    server.unload_once().await;
}

/// Connects to the plugin's socket and shakes hands as the plugin itself,
/// or (`bus`) as its bus connection.
async fn open(
    settings: &Settings,
    bus: bool,
) -> Result<(codec::Framed<Stream>, corral_proto::Agreed), RunError> {
    let connect_err = |source| RunError::Connect {
        path: settings.socket.clone(),
        source,
    };
    let name = settings
        .socket
        .as_str()
        .to_fs_name::<GenericFilePath>()
        .map_err(connect_err)?;
    let stream = Stream::connect(name).await.map_err(connect_err)?;
    let mut framed = codec::framed(stream, settings.max_frame);
    let (name, secret) = (settings.name.clone(), settings.secret.clone());
    let (role, which) = if bus {
        (Role::Bus { name, secret }, "bus connection: ")
    } else {
        (Role::Plugin { name, secret }, "")
    };
    let hello = Hello::new(role);
    let agreed = introduce(&mut framed, settings.codec, &hello)
        .await
        .map_err(|e| RunError::Handshake(format!("{which}{e}")))?;
    Ok((framed, agreed))
}

/// The [`PluginApi`] server wrapping a [`Plugin`].
struct Server<P> {
    plugin: Arc<P>,
    ctx: Context,
    unloaded: Arc<AtomicBool>,
    /// The largest frame: a reply that would not fit is answered `internal`.
    max_frame: usize,
    /// Its streamed replies in progress.
    producers: Arc<Producers>,
    /// The plugin's background work, started by the first successful load.
    background: Arc<Background>,
    /// How long an unload waits for the background work to stop.
    grace: Duration,
}

impl<P> Clone for Server<P> {
    fn clone(&self) -> Self {
        Self {
            plugin: Arc::clone(&self.plugin),
            ctx: self.ctx.clone(),
            unloaded: Arc::clone(&self.unloaded),
            max_frame: self.max_frame,
            producers: Arc::clone(&self.producers),
            background: Arc::clone(&self.background),
            grace: self.grace,
        }
    }
}

impl<P: Plugin> Server<P> {
    async fn unload_once(&self) {
        if !self.unloaded.swap(true, Ordering::SeqCst) {
            self.background.stop(self.ctx.stopping(), self.grace).await;
            self.plugin.on_unload(&self.ctx).await;
        }
    }
}

/// Says on stderr (the plugin's log) that a handler was cancelled.
struct CancelNotice<'a> {
    action: &'a str,
    finished: bool,
}

impl Drop for CancelNotice<'_> {
    fn drop(&mut self) {
        if !self.finished {
            eprintln!(
                "corral plugin: action `{}` cancelled: its deadline passed or its caller went away",
                self.action
            );
        }
    }
}

/// A reply encoded for the wire, or `internal` when it cannot be sent.
fn encode_reply(reply: &serde_json::Value, max_frame: usize) -> Result<Payload, ErrorReply> {
    let reply = Payload::from_json(reply)
        .map_err(|e| ErrorReply::internal(format!("reply does not encode as JSON: {e}")))?;
    // Room for the response around it; past that the frame could not be
    // sent and the connection would end.
    let size = reply.as_bytes().len();
    if size + 1024 > max_frame {
        return Err(ErrorReply::internal(format!(
            "the reply is too large: {size} bytes, and a frame holds {max_frame}"
        )));
    }
    Ok(reply)
}

fn decode(payload: &Payload) -> Result<serde_json::Value, ErrorReply> {
    payload
        .to_json()
        .map_err(|e| ErrorReply::bad_payload(format!("payload is not JSON: {e}")))
}

impl<P: Plugin> PluginApi for Server<P> {
    async fn load(self, _: tarpc::context::Context, config: Payload) -> Result<(), ErrorReply> {
        self.plugin.on_load(&self.ctx, decode(&config)?).await?;
        // Once per process: a second load (there is none under corral) or
        // a reload finds it started.
        self.background.start(&self.plugin, &self.ctx);
        Ok(())
    }

    async fn ping(self, _: tarpc::context::Context, seq: u64) -> u64 {
        seq
    }

    async fn handle(
        self,
        ctx: tarpc::context::Context,
        action: String,
        payload: Payload,
    ) -> Result<Payload, ErrorReply> {
        let payload = decode(&payload)?;
        // tarpc drops this future when the caller's deadline passes or the
        // caller cancels: the handler is cancelled at its next `.await`.
        let mut guard = CancelNotice {
            action: &action,
            finished: false,
        };
        let handler = self.plugin.handle(&self.ctx, &action, payload);
        let reply = DEADLINE.scope(ctx.deadline, handler).await;
        guard.finished = true;
        encode_reply(&reply?, self.max_frame)
    }

    async fn shutdown(self, _: tarpc::context::Context) {
        self.unload_once().await;
    }

    async fn reload(self, _: tarpc::context::Context, config: Payload) -> Result<(), ErrorReply> {
        self.plugin.on_reload(&self.ctx, decode(&config)?).await
    }

    async fn stream(
        self,
        ctx: tarpc::context::Context,
        id: u64,
        action: String,
        payload: Payload,
    ) -> Result<(), ErrorReply> {
        let payload = decode(&payload)?;
        let (plugin, hooks, max_frame) =
            (Arc::clone(&self.plugin), self.ctx.clone(), self.max_frame);
        let deadline = ctx.deadline;
        self.producers
            .start(id, deadline, max_frame - 1024, move |out| async move {
                let mut guard = CancelNotice {
                    action: &action,
                    finished: false,
                };
                let producer = plugin.stream(&hooks, &action, payload, out);
                let end = DEADLINE.scope(deadline, producer).await;
                guard.finished = true;
                encode_reply(&end?, max_frame)
            })
    }

    async fn pull(self, _: tarpc::context::Context, id: u64) -> StreamPart {
        self.producers.pull(id).await
    }

    async fn close(self, _: tarpc::context::Context, id: u64) {
        self.producers.close(id);
    }

    async fn deliver(self, _: tarpc::context::Context, events: corral_proto::Deliveries) {
        for event in events.into_events() {
            let event = Event {
                payload: event.payload.into(),
                topic: event.topic,
                source: event.source,
                seq: event.seq,
                at_unix_us: event.at_unix_us,
                retained: event.retained,
            };
            self.plugin.on_event(&self.ctx, event).await;
        }
    }
}
