//! The HTTP face's streams, as Server-Sent Events: the fleet's `ps` rows
//! whenever they change, bus events matching patterns, a plugin's log as it
//! grows, and a streamed call's chunks. Each holds only what it is about to
//! send: a reader that goes away drops its stream, which closes what it
//! read from (the bus's event stream, the plugin's producer).

use std::convert::Infallible;
use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::Face;
use super::failure::Failure;
use crate::calls::Upstream;

/// How often a watched fleet is read.
const FLEET_EVERY: Duration = Duration::from_secs(1);
/// How often a followed log is looked at.
const LOG_EVERY: Duration = Duration::from_millis(250);
/// Most bytes of log read per look (the rest comes at the next).
const LOG_READ: u64 = 256 * 1024;
/// Lines of log sent before following, by default and at most.
const LOG_LINES: (usize, usize) = (100, 10_000);

type Events = Sse<
    axum::response::sse::KeepAliveStream<
        std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>,
    >,
>;

fn sse(stream: impl Stream<Item = Event> + Send + 'static) -> Events {
    Sse::new(stream.map(Ok).boxed()).keep_alive(KeepAlive::default())
}

fn data(kind: &str, value: &impl serde::Serialize) -> Event {
    Event::default()
        .event(kind)
        .json_data(value)
        .unwrap_or_else(|_| Event::default().event(kind).data("null"))
}

/// `GET /api/plugins?watch=1`: `ps --json` rows, sent at once and again
/// whenever they change (read every second).
pub(super) fn fleet(face: Face) -> Events {
    let rows = stream::unfold((face, None::<String>), |(face, last)| async move {
        loop {
            // The first rows go at once; later ones only when they changed.
            if last.is_some() {
                tokio::time::sleep(FLEET_EVERY).await;
            }
            let rows = face.supervisor.ps().await;
            let text = serde_json::to_string(&rows).unwrap_or_default();
            if last.as_deref() != Some(text.as_str()) {
                let event = Event::default().event("ps").data(text.clone());
                return Some((event, (face, Some(text))));
            }
        }
    });
    sse(rows)
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
    let events = stream::unfold(Some(bus), move |bus| async move {
        let bus = bus?;
        match bus.next_in_stream(id, Duration::from_secs(1)).await {
            Ok(batch) => {
                let events: Vec<Event> = batch
                    .iter()
                    .map(|e| data("event", &e.to_json_line()))
                    .collect();
                Some((stream::iter(events), Some(bus)))
            }
            // The stream was closed (the supervisor is going down): say so, end.
            Err(e) => Some((stream::iter(vec![data("error", &e)]), None)),
        }
    })
    .flatten();
    Ok(sse(events))
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
    let tail_path = path.clone();
    let lines = tokio::task::spawn_blocking(move || {
        crate::cli::tail::tail_of(&tail_path, n, 8 * 1024 * 1024).unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    if q.follow.is_none_or(|f| f == 0) {
        return Ok(Json(lines).into_response());
    }
    let start = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
    let first = stream::iter(
        lines
            .into_iter()
            .map(|l| Event::default().event("line").data(l)),
    );
    Ok(sse(first.chain(follow(path, start))).into_response())
}

/// The lines written to `path` from `offset` on, looked for every 250 ms;
/// a file that shrank was rotated, and is read again from its start.
fn follow(path: PathBuf, offset: u64) -> impl Stream<Item = Event> + Send {
    let state = (path, offset, String::new());
    stream::unfold(state, |(path, mut offset, mut partial)| async move {
        loop {
            tokio::time::sleep(LOG_EVERY).await;
            let Ok(meta) = tokio::fs::metadata(&path).await else {
                continue;
            };
            if meta.len() < offset {
                offset = 0;
                partial.clear();
            }
            if meta.len() == offset {
                continue;
            }
            let Ok(mut file) = tokio::fs::File::open(&path).await else {
                continue;
            };
            let mut chunk = Vec::new();
            let read = async {
                file.seek(SeekFrom::Start(offset)).await?;
                (&mut file).take(LOG_READ).read_to_end(&mut chunk).await
            };
            let Ok(n) = read.await else {
                continue;
            };
            offset += n as u64;
            partial.push_str(&String::from_utf8_lossy(&chunk));
            let Some(cut) = partial.rfind('\n') else {
                continue;
            };
            let rest = partial.split_off(cut + 1);
            let events: Vec<Event> = partial
                .lines()
                .map(|l| Event::default().event("line").data(l))
                .collect();
            return Some((stream::iter(events), (path, offset, rest)));
        }
    })
    .flatten()
}

/// A streamed call's chunks (`chunk`), then its end (`end` with the final
/// value, or `error` with the error).
pub(super) fn call(upstream: Upstream) -> Events {
    let parts = stream::unfold(Some(upstream), |upstream| async move {
        let mut upstream = upstream?;
        let mut out: Vec<Event> = Vec::new();
        let done = match upstream.next().await {
            Ok(part) => {
                for chunk in part.chunks {
                    out.push(data(
                        "chunk",
                        &chunk.to_json::<Value>().unwrap_or(Value::Null),
                    ));
                }
                match part.end {
                    None => false,
                    Some(Ok(value)) => {
                        out.push(data(
                            "end",
                            &value.to_json::<Value>().unwrap_or(Value::Null),
                        ));
                        true
                    }
                    Some(Err(e)) => {
                        out.push(data("error", &e));
                        true
                    }
                }
            }
            Err(e) => {
                out.push(data("error", &e));
                true
            }
        };
        Some((stream::iter(out), (!done).then_some(upstream)))
    })
    .flatten();
    sse(parts)
}
