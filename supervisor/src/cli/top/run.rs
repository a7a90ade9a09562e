//! `corral top`'s loop: takes the terminal (raw mode, alternate screen),
//! then waits on three things at once: keys and resizes from the terminal,
//! what the [fetcher](super::fetch) read, and SIGTERM/SIGHUP. Each goes to
//! the [`Model`], whose [`Effect`] the loop carries out: draw, tell the
//! fetcher what is selected, pass a request on, or leave. The terminal is
//! given back as it was on every way out, a panic included.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crossterm::event::{Event, EventStream};
use futures::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use super::fetch::{self, Ask, Connection, Fetched, Wants};
use super::model::{Effect, Model, Sample, Update, action_for};
use super::view::View;
use crate::Error;
use crate::cli::args::Target;
use crate::cli::client;
use crate::cli::client::socket_of;

/// How `corral top` ended.
enum End {
    /// The user left.
    Quit,
    /// The supervisor went away; why.
    Gone(String),
}

/// Gives the terminal back (raw mode off, main screen) when dropped.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Runs `corral top` against the supervisor `target` names, refreshing
/// every `interval`.
pub async fn run(target: &Target, interval: Duration) -> Result<ExitCode, Error> {
    if !std::io::stdout().is_terminal() {
        return Ok(crate::cli::fail(
            "corral top draws on a terminal, and stdout is not one; \
             use `corral ps` (or `corral ps --json`) in scripts",
        ));
    }
    let (socket, via) = socket_of(target)?;
    let client = client::connect(&socket, &via).await?;
    // The first answer before the screen is taken, so a failure reads plainly.
    let rows = client
        .ps(tarpc::context::current())
        .await
        .map_err(Error::from)?;
    let mut model = Model::new();
    model.update(Update::Sample(Sample {
        at: Instant::now(),
        rows,
    }));
    let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut view = View::new(interval, colour);
    let connection = Connection {
        socket,
        via,
        client,
    };
    // The guard first: a terminal half taken is given back too.
    let restore = Restore;
    let terminal = ratatui::try_init().map_err(Error::io("cannot take the terminal"))?;
    let end = screen(terminal, &mut model, &mut view, connection, interval).await;
    drop(restore);
    match end? {
        End::Quit => Ok(ExitCode::SUCCESS),
        End::Gone(why) => {
            println!("corral top: the supervisor went down; {why}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The loop over keys, fetched updates and signals, until the user leaves
/// or the supervisor is gone.
async fn screen(
    mut terminal: ratatui::DefaultTerminal,
    model: &mut Model,
    view: &mut View,
    connection: Connection,
    interval: Duration,
) -> Result<End, Error> {
    let wants = Wants {
        selected: model.selected().map(String::from),
        log_pane: model.log_pane(),
    };
    let (wants_tx, wants_rx) = watch::channel(wants);
    let (asks, asks_rx) = mpsc::unbounded_channel();
    let (out, mut fetched) = mpsc::unbounded_channel();
    let fetcher = fetch::spawn(connection, interval, wants_rx, asks_rx, out);
    let mut keys = EventStream::new();
    let mut term =
        signal(SignalKind::terminate()).map_err(Error::io("cannot watch for SIGTERM"))?;
    let mut hup = signal(SignalKind::hangup()).map_err(Error::io("cannot watch for SIGHUP"))?;
    let mut draw = true;
    let end = loop {
        if draw {
            terminal
                .draw(|frame| view.draw(frame, model))
                .map_err(Error::io("cannot draw on the terminal"))?;
        }
        let effect = tokio::select! {
            event = keys.next() => match event {
                Some(Ok(Event::Key(key))) => action_for(key).map_or(Effect::Nothing, |a| model.apply(a)),
                Some(Ok(Event::Resize(..))) => Effect::Redraw,
                Some(Ok(_)) => Effect::Nothing,
                // The terminal is gone: nothing more can be shown.
                Some(Err(_)) | None => Effect::Quit,
            },
            got = fetched.recv() => match got {
                Some(Fetched::Update(update)) => model.update(update),
                Some(Fetched::Gone(why)) => break End::Gone(why),
                None => break End::Gone("the connection ended".into()),
            },
            _ = term.recv() => Effect::Quit,
            _ = hup.recv() => Effect::Quit,
        };
        draw = effect != Effect::Nothing;
        match effect {
            Effect::Quit => break End::Quit,
            Effect::Request(verb, name) => {
                let _ = asks.send(Ask::Request(verb, name));
            }
            Effect::Refresh => {
                let _ = asks.send(Ask::Refresh);
            }
            Effect::Nothing | Effect::Redraw => {}
        }
        wants_tx.send_if_modified(|w| {
            let now = Wants {
                selected: model.selected().map(String::from),
                log_pane: model.log_pane(),
            };
            let changed = *w != now;
            *w = now;
            changed
        });
    };
    fetcher.abort();
    Ok(end)
}
