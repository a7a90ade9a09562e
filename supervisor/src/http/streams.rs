//! The HTTP face's streams, as Server-Sent Events: the fleet's `ps` rows
//! whenever they change, bus events matching patterns, a plugin's log as it
//! grows, and a streamed call's chunks. Each holds only what it is about to
//! send: a reader that goes away drops its stream, which closes what it
//! read from (the bus's event stream, the plugin's producer).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::watch;

use super::Face;
use super::failure::Failure;
use crate::calls::{Piece, Upstream};
use crate::os::log_read::Follower;

/// How often a watched fleet is read (by one reader for all watchers).
const FLEET_EVERY: Duration = Duration::from_secs(1);
/// How often a followed log is looked at.
const LOG_EVERY: Duration = Duration::from_millis(250);
/// Most bytes of log read per look (the rest comes at the next).
const LOG_READ: usize = 256 * 1024;
/// Most bytes read back for a log's last lines.
const LOG_TAIL_BYTES: u64 = 8 * 1024 * 1024;
/// Lines of log sent before following, by default and at most.
const LOG_LINES: (usize, usize) = (100, 10_000);

type Events = Sse<
    axum::response::sse::KeepAliveStream<
        std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>,
    >,
>;

/// `stream` as Server-Sent Events, ended when the face shuts down.
fn sse(face: &Face, stream: impl Stream<Item = Event> + Send + 'static) -> Events {
    let closing = face.closing.clone().cancelled_owned();
    Sse::new(stream.take_until(closing).map(Ok).boxed()).keep_alive(KeepAlive::default())
}

fn data(kind: &str, value: &impl serde::Serialize) -> Event {
    Event::default()
        .event(kind)
        .json_data(value)
        .unwrap_or_else(|_| Event::default().event(kind).data("null"))
}

/// The fleet's `ps --json` rows, read every second while anyone watches
/// and shared by every watcher (one reader of the plugin actors, however
/// many dashboards are open).
pub(super) fn fleet_feed(
    supervisor: crate::supervisor::SupervisorHandle,
    closing: tokio_util::sync::CancellationToken,
) -> watch::Receiver<Option<Arc<str>>> {
    let (feed, read) = watch::channel(None);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = closing.cancelled() => return,
                () = tokio::time::sleep(FLEET_EVERY) => {}
            }
            // The face's own receiver is always there; more are watchers.
            if feed.receiver_count() <= 1 {
                continue;
            }
            let rows = supervisor.ps().await;
            let text = serde_json::to_string(&rows).unwrap_or_default();
            feed.send_if_modified(|now| {
                let changed = now.as_deref() != Some(text.as_str());
                if changed {
                    *now = Some(text.into());
                }
                changed
            });
        }
    });
    read
}

/// `GET /api/plugins?watch=1`: `ps --json` rows, sent at once and again
/// whenever they change.
pub(super) async fn fleet(face: Face) -> Events {
    let rows = face.supervisor.ps().await;
    let first = Event::default()
        .event("ps")
        .data(serde_json::to_string(&rows).unwrap_or_default());
    let mut feed = face.fleet.clone();
    feed.mark_unchanged();
    let changes = stream::unfold(feed, |mut feed| async move {
        feed.changed().await.ok()?;
        let text = feed
            .borrow_and_update()
            .clone()
            .unwrap_or_else(|| "[]".into());
        Some((Event::default().event("ps").data(&*text), feed))
    });
    sse(&face, stream::once(async { first }).chain(changes))
}

/// An open bus stream, closed when its reader goes away.
struct BusStream {
    bus: crate::bus::BusHandle,
    id: u64,
}

impl Drop for BusStream {
    fn drop(&mut self) {
        self.bus.close_stream(self.id);
    }
}

/// `GET /api/events?pattern=P&pattern=Q`: the bus's events matching the
/// patterns (all, `>`, by default), as `corral events --json` prints them.
pub(super) async fn events(
    State(face): State<Face>,
    RawQuery(query): RawQuery,
) -> Result<Events, Failure> {
    let mut patterns: Vec<String> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "pattern")
        .map(|(_, v)| v.into_owned())
        .collect();
    if patterns.is_empty() {
        patterns.push(">".into());
    }
    let bus = face.supervisor.bus().clone();
    let id = bus.open_stream(patterns).await?;
    let open = BusStream { bus, id };
    let events = stream::unfold(Some(open), move |open| async move {
        let open = open?;
        match open
            .bus
            .next_in_stream(open.id, Duration::from_secs(1))
            .await
        {
            Ok(batch) => {
                let events: Vec<Event> = batch
                    .iter()
                    .map(|e| data("event", &e.to_json_line()))
                    .collect();
                Some((stream::iter(events), Some(open)))
            }
            // The stream was closed (the supervisor is going down): say so, end.
            Err(e) => Some((stream::iter(vec![data("error", &e)]), None)),
        }
    })
    .flatten();
    Ok(sse(&face, events))
}

#[derive(Deserialize)]
pub(super) struct LogQuery {
    lines: Option<usize>,
    follow: Option<u8>,
}

/// `GET /api/plugins/{name}/logs?lines=N&follow=1`: its last lines as JSON,
/// or with `follow`, as events (`line`), then each new line as written,
/// across rotations.
pub(super) async fn logs(
    State(face): State<Face>,
    Path(name): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Response, Failure> {
    // Only a plugin of the fleet names a file: no path from the URL is used.
    let plugins = face.supervisor.plugins().await;
    if !plugins.iter().any(|p| p.name() == name) {
        return Err(Failure(corral_proto::ErrorReply::new(
            corral_proto::codes::UNKNOWN_PLUGIN,
            format!("no plugin named `{name}`"),
        )));
    }
    let path = face.settings.log_dir.join(format!("{name}.log"));
    let n = q.lines.unwrap_or(LOG_LINES.0).min(LOG_LINES.1);
    let opened = tokio::task::spawn_blocking(move || {
        let mut follower = Follower::new(path);
        let lines = follower
            .open_with_tail(n, LOG_TAIL_BYTES)
            .unwrap_or_default();
        (follower, lines)
    })
    .await;
    let Ok((follower, lines)) = opened else {
        return Ok(Json(Vec::<String>::new()).into_response());
    };
    if q.follow.is_none_or(|f| f == 0) {
        return Ok(Json(lines).into_response());
    }
    let first = stream::iter(
        lines
            .into_iter()
            .map(|l| Event::default().event("line").data(l)),
    );
    Ok(sse(&face, first.chain(follow(follower))).into_response())
}

/// The lines written after the tail `follower` read, looked for every
/// 250 ms, through rotations.
fn follow(follower: Follower) -> impl Stream<Item = Event> + Send {
    stream::unfold(Some(follower), |follower| async move {
        let mut follower = follower?;
        loop {
            tokio::time::sleep(LOG_EVERY).await;
            let polled = tokio::task::spawn_blocking(move || {
                let lines = follower.poll(LOG_READ);
                (follower, lines)
            })
            .await;
            let Ok((back, lines)) = polled else {
                return None;
            };
            follower = back;
            match lines {
                Ok(lines) if lines.is_empty() => {}
                Ok(lines) => {
                    let events: Vec<Event> = lines
                        .into_iter()
                        .map(|l| Event::default().event("line").data(l))
                        .collect();
                    return Some((stream::iter(events), Some(follower)));
                }
                Err(e) => {
                    let gone = data("error", &format!("cannot read the log: {e}"));
                    return Some((stream::iter(vec![gone]), None));
                }
            }
        }
    })
    .flatten()
}

/// A streamed call's chunks (`chunk`), then its end (`end` with the final
/// value, or `error` with the error).
pub(super) fn call(face: &Face, upstream: Upstream) -> Events {
    let json = |p: corral_proto::Payload| p.to_json::<Value>().unwrap_or(Value::Null);
    let events = upstream.pieces().map(move |piece| match piece {
        Piece::Chunk(chunk) => data("chunk", &json(chunk)),
        Piece::End(value) => data("end", &json(value)),
        Piece::Failed(e) => data("error", &e),
    });
    sse(face, events)
}
