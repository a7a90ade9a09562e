//! `corral top`'s reading, on a task of its own so the screen answers keys
//! while the supervisor is asked: every interval one `ps` for the whole
//! fleet and one `inspect` of the selected plugin only, and the tail of that
//! plugin's log file, which is read from the file and costs the supervisor
//! nothing (every [`LOG_EVERY`] while the log pane is open). A new
//! selection is inspected at once.
//!
//! Lifecycle requests run on tasks of their own, so a slow stop delays no
//! refresh. When the connection breaks, the fetcher connects again; when
//! nothing answers any more it reports the supervisor gone and ends.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corral_proto::ControlApiClient;
use tarpc::client::RpcError;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use super::model::{Sample, Update, Verb};
use crate::cli::{client, tail};

/// How often the log pane re-reads the log file.
pub const LOG_EVERY: Duration = Duration::from_millis(250);
/// How long `ps` and `inspect` may take before the screen says so.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// Log lines read for the detail and the log pane (at most a screen's worth
/// is shown).
const LOG_LINES: usize = 200;
/// How far back in a log file those lines are looked for.
const LOG_BYTES: u64 = 256 * 1024;

/// What the screen wants read: the selected plugin, and whether its log
/// is followed in the log pane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wants {
    /// The selected plugin.
    pub selected: Option<String>,
    /// Whether the log pane is open.
    pub log_pane: bool,
}

/// What the screen asks of the fetcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// Refresh now.
    Refresh,
    /// Ask the supervisor to do `Verb` to a plugin.
    Request(Verb, String),
}

/// What the fetcher sends the screen.
#[derive(Debug)]
pub enum Fetched {
    /// Something for the model.
    Update(Update),
    /// Nothing answers on the control socket any more; why.
    Gone(String),
}

/// Where the supervisor is, and the connection to it.
pub struct Connection {
    /// The control socket.
    pub socket: PathBuf,
    /// Where its path came from, for errors.
    pub via: String,
    /// The connection.
    pub client: ControlApiClient,
}

/// The fetcher's state.
struct Fetcher {
    connection: Connection,
    wants: watch::Receiver<Wants>,
    out: mpsc::UnboundedSender<Fetched>,
    /// The selected plugin's log file, as its last `inspect` said.
    log_file: Option<(String, PathBuf)>,
}

/// Starts the fetcher: it reads every `interval` what `wants` says, takes
/// `asks`, and sends what it read on `out` until the supervisor is gone or
/// the screen hangs up.
pub fn spawn(
    connection: Connection,
    interval: Duration,
    wants: watch::Receiver<Wants>,
    asks: mpsc::UnboundedReceiver<Ask>,
    out: mpsc::UnboundedSender<Fetched>,
) -> tokio::task::JoinHandle<()> {
    let fetcher = Fetcher {
        connection,
        wants,
        out,
        log_file: None,
    };
    tokio::spawn(fetcher.run(interval, asks))
}

fn context(timeout: Duration) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + timeout;
    ctx
}

impl Fetcher {
    async fn run(mut self, interval: Duration, mut asks: mpsc::UnboundedReceiver<Ask>) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut log_tick = tokio::time::interval(LOG_EVERY);
        log_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let log_pane = self.wants.borrow().log_pane;
            let go_on = tokio::select! {
                _ = tick.tick() => self.refresh().await,
                changed = self.wants.changed() => match changed {
                    Ok(()) => {
                        self.detail().await;
                        true
                    }
                    Err(_) => false, // the screen is gone
                },
                ask = asks.recv() => match ask {
                    Some(Ask::Refresh) => self.refresh().await,
                    Some(Ask::Request(verb, name)) => {
                        self.request(verb, name);
                        true
                    }
                    None => false,
                },
                _ = log_tick.tick(), if log_pane => {
                    self.read_log();
                    true
                }
            };
            if !go_on {
                return;
            }
        }
    }

    fn send(&self, update: Update) -> bool {
        self.out.send(Fetched::Update(update)).is_ok()
    }

    /// One `ps`, then the selected plugin's detail; `false` once the
    /// supervisor is gone (or the screen is).
    async fn refresh(&mut self) -> bool {
        match self.connection.client.ps(context(ANSWER_WITHIN)).await {
            Ok(rows) => {
                let sample = Sample {
                    at: Instant::now(),
                    rows,
                };
                if !self.send(Update::Sample(sample)) {
                    return false;
                }
            }
            Err(RpcError::DeadlineExceeded) => {
                let note = format!(
                    "the supervisor did not answer within {}",
                    humantime::format_duration(ANSWER_WITHIN)
                );
                return self.send(Update::Note(note));
            }
            Err(e) => return self.reconnect(&e).await,
        }
        self.detail().await;
        true
    }

    /// Connects again after `lost`; `false` (the supervisor reported gone)
    /// when nothing answers.
    async fn reconnect(&mut self, lost: &RpcError) -> bool {
        let Connection { socket, via, .. } = &self.connection;
        match client::connect(socket, via).await {
            Ok(client) => {
                self.connection.client = client;
                self.send(Update::Note(format!(
                    "reconnected to the supervisor (the connection was lost: {lost})"
                )))
            }
            Err(e) => {
                let why = match e {
                    crate::Error::NotRunning { socket, .. } => {
                        format!("nothing answers at {} any more", socket.display())
                    }
                    other => other.to_string(),
                };
                let _ = self.out.send(Fetched::Gone(why));
                false
            }
        }
    }

    /// `inspect` of the selected plugin, and its log's tail.
    async fn detail(&mut self) {
        let Some(name) = self.wants.borrow().selected.clone() else {
            return;
        };
        let answer = self
            .connection
            .client
            .inspect(context(ANSWER_WITHIN), name.clone())
            .await;
        // A plugin removed meanwhile, or a lost connection: the next
        // refresh tells.
        let Ok(Ok(info)) = answer else { return };
        let settings: serde_json::Value = info.settings.to_json().unwrap_or_default();
        self.log_file = settings["log_file"]
            .as_str()
            .map(|path| (name.clone(), PathBuf::from(path)));
        self.send(Update::Detail(Box::new(info)));
        self.read_log();
    }

    /// Reads the selected plugin's log tail, if its log file is known.
    fn read_log(&self) {
        let selected = self.wants.borrow().selected.clone();
        let Some((name, path)) = &self.log_file else {
            return;
        };
        if selected.as_deref() != Some(name.as_str()) {
            return;
        }
        let lines = read_tail(path);
        self.send(Update::Log {
            name: name.clone(),
            lines,
        });
    }

    /// Runs a lifecycle request on a task of its own; its outcome comes
    /// back as [`Update::Done`].
    fn request(&self, verb: Verb, name: String) {
        let client = self.connection.client.clone();
        let out = self.out.clone();
        tokio::spawn(async move {
            let names = vec![name.clone()];
            let ctx = context(Duration::from_secs(3600));
            let answer = match verb {
                Verb::Start => client.start(ctx, names).await,
                Verb::Stop => client.stop(ctx, names).await,
                Verb::Restart => client.restart(ctx, names).await,
            };
            let result = match answer {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("{}: {}", e.code, e.message)),
                Err(e) => Err(e.to_string()),
            };
            let _ = out.send(Fetched::Update(Update::Done { verb, name, result }));
        });
    }
}

/// A log file's last lines; a file that cannot be read says why in place.
fn read_tail(path: &Path) -> Vec<String> {
    match tail::tail_of(path, LOG_LINES, LOG_BYTES) {
        Ok(lines) => lines,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => vec![format!("(cannot read {}: {e})", path.display())],
    }
}
