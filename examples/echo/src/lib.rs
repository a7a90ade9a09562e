//! The example plugin every corral SDK implements, so one conformance suite
//! can run against each language. Its actions exercise what a supervisor must
//! survive: slow handlers, exits, crashes, hangs and memory growth.
//!
//! | action | payload | reply |
//! |---|---|---|
//! | `ping` | – | `{"pong": true, "pid": <pid>}` |
//! | `echo` | anything | the payload |
//! | `sleep` | `{"ms": N}` | `{"slept_ms": N}` after N ms (heartbeats keep flowing) |
//! | `exit` | `{"code": N}` | the process exits with code N |
//! | `crash` | – | the process aborts (SIGABRT) |
//! | `hang` | – | the process stops answering anything, heartbeats included |
//! | `alloc` | `{"mb": N}` | allocates and touches N MiB and keeps it; `{"held_mb": total}` |
//! | `config` | – | the config it was loaded with |
//! | `log` | `{"count": N, "text": T}` | writes N numbered lines of T to stdout; `{"logged": N}` |
//! | `publish` | `{"topic": T, "payload": P, "count": N, "retain": bool}` | publishes N events on T (payload P, or `{"i": i}` when P is absent), then flushes; `{"published": N}` or the refusal |
//! | `publish_raw` | `{"topic": T, "bytes": [b, ...]}` | publishes one event whose payload is those bytes as they are, JSON or not (a hostile bincode publisher, for the bus's checks), then flushes; `{"published": 1}` or the refusal |
//! | `flood` | `{"prefix": P, "count": N, "bytes": B, "retain": bool}` | publishes N events, event i on `P.i` with a string payload of B bytes (retained if asked), then flushes; `{"published": N}` or the refusal |
//! | `subscribe` / `unsubscribe` | `{"patterns": [..]}` | changes its subscriptions at run time |
//! | `received` | `{"limit": N}` | events received so far: `{"count", "in_order", "events": [first N (default 1000)]}`, of the first 10,000 within 8 MiB of payload |
//! | `spawn` | `{"count": N, "mb": M}` | starts N child processes, each holding M MiB (default 0) until killed; `{"spawned": k, "error": null or why the next one failed}` |
//! | `ticks` | – | `{"ticks": N, "tasks_started": K}`: runs of the `ticker_ms` job so far, and how many times this process started its background work (1 once loaded, whatever reloads came) |
//! | `handled` | – | the names of the `ordered_handlers` run so far, in the order they ran |
//! | `read` | `{"path": P}` | `{"bytes": N}`, or the error's code (`EACCES`, `ENOENT`, …) |
//! | `write` | `{"path": P, "text": T}` | writes T to P: `{"written": N}`, or the error's code |
//! | `connect` | `{"host": H, "port": N}` | a TCP connection (2 s at most): `{"connected": true}`, or the error's code |
//! | `signal` | `{"pid": P, "signal": N}` | sends signal N (0: only checks) to P: `{"signalled": P}`, or the error's code (`EPERM`) |
//! | `relay` | `{"plugin", "action", "payload", "payload_bytes"?, "timeout_ms"?, "wait"?, "stream"?, "abandon"?, "repeat"?}` | calls that plugin's action through the supervisor (with `payload_bytes`, a string payload of that many bytes): its reply, or its error with its code; with `"stream": true`, reads its streamed reply: `{"chunks": N, "in_order": bool, "end": final}`; with `"abandon": true`, opens `repeat` streams and drops each after its first piece: `{"abandoned": N}`; with `repeat` alone, makes the call N times: `{"calls": N, "us": [µs each]}` |
//! | `stream` | `{"count": N, "delay_ms"?, "pad"?}` | a streamed reply: N chunks `{"i": n}` (with a `pad` string of that many bytes), then `{"done": N}` (called for one value: `streamed`) |
//! | `plugins` | – | the fleet: `[{"name", "state", "actions"}]` |
//!
//! Config key `crash_after_ms` (integer) makes it abort that long after
//! loading: a crash loop on demand, for restart tests. Config key
//! `event_delay_us` makes each received event take that long: a slow
//! subscriber on demand. Config keys `load_subscribe` (patterns) and
//! `load_publish` (a topic) make `on_load` itself subscribe, and publish one
//! event `{"from": "on_load"}` and flush: the bus works while loading.
//! Config key `refuse_reload` (text) makes `on_reload` refuse the config it
//! is handed with that text: a failing reload hook on demand.
//!
//! Its background work counts itself started, and with config key
//! `ticker_ms` (integer) runs a job that often, publishing nothing and
//! counting ticks; when the plugin stops, the job writes `background task
//! stopped` to stderr (before `unloading`). Config key `ordered_handlers:
//! true` adds two event handlers on `>`, `low` (priority 1, added first) and
//! `high` (priority 10), each noting its name for `handled`: every event
//! runs `high`, then `low`.

mod calling;
mod probes;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_sdk::{Chunks, Context, Event, Payload, Plugin, PluginError, Router, Stop, Value};
use serde_json::json;

/// The echo plugin's state: what it was configured with and what it holds.
#[derive(Debug, Default)]
pub struct Echo {
    config: Mutex<Value>,
    held: Mutex<Vec<Vec<u8>>>,
    children: Mutex<Vec<std::process::Child>>,
    received: Mutex<Received>,
    /// Runs of the `ticker_ms` job.
    ticks: AtomicU64,
    /// Times the background work started in this process.
    tasks_started: AtomicU64,
    /// With `ordered_handlers`: the handlers on `>`, and what they noted.
    router: Mutex<Option<Arc<Router<Echo>>>>,
    handled: Mutex<Vec<&'static str>>,
}

/// What the plugin has received from the bus.
#[derive(Debug, Default)]
struct Received {
    count: u64,
    last_seq: u64,
    in_order: bool,
    events: Vec<Value>,
    /// Bytes of the payloads kept in `events`.
    kept_bytes: usize,
}

/// Events kept in full by `received`: the first this many, within
/// [`KEEP_BYTES`] of payload, so a flood of large events cannot grow the
/// plugin past its memory cap (the count goes on).
const KEEP_EVENTS: usize = 10_000;
/// Payload bytes kept by `received`.
const KEEP_BYTES: usize = 8 * 1024 * 1024;

/// The environment variable that turns `echo-plugin` into one of its own
/// `spawn`ed children: hold that many MiB, then sleep until killed.
pub const CHILD_ENV: &str = "ECHO_PLUGIN_CHILD_MB";

/// Microseconds since the Unix epoch.
fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Allocates and touches `mb` MiB, returned so the caller keeps it resident.
pub fn touch_mib(mb: u64) -> Vec<Vec<u8>> {
    const MIB: usize = 1024 * 1024;
    (0..mb)
        .map(|_| {
            // Touch every page so the memory is resident, not just reserved.
            let mut block = vec![0u8; MIB];
            for page in block.chunks_mut(4096) {
                page[0] = 1;
            }
            block
        })
        .collect()
}

fn field_u64(payload: &Value, key: &str) -> Result<u64, PluginError> {
    payload.get(key).and_then(Value::as_u64).ok_or_else(|| {
        PluginError::bad_payload(format!("expected {{\"{key}\": <non-negative integer>}}"))
    })
}

impl Echo {
    /// The `ordered_handlers` handler of priority 10.
    async fn high(&self, _ctx: &Context, _event: &Event) {
        self.handled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push("high");
    }

    /// The `ordered_handlers` handler of priority 1.
    async fn low(&self, _ctx: &Context, _event: &Event) {
        self.handled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push("low");
    }

    /// Notes an event for `received`, after the `event_delay_us` it is
    /// configured to take.
    fn record(&self, event: &Event) {
        let delay = self
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get("event_delay_us")
            .and_then(Value::as_u64);
        if let Some(us) = delay {
            // Spin: timers are too coarse for a few microseconds.
            let until = std::time::Instant::now() + Duration::from_micros(us);
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        let mut r = self.received.lock().unwrap_or_else(|p| p.into_inner());
        r.in_order = if r.count == 0 {
            true
        } else {
            r.in_order && event.seq > r.last_seq
        };
        r.count += 1;
        r.last_seq = event.seq;
        let size = if r.events.len() < KEEP_EVENTS {
            event.payload.text().len()
        } else {
            usize::MAX
        };
        if r.kept_bytes.saturating_add(size) <= KEEP_BYTES {
            r.kept_bytes += size;
            r.events.push(json!({
                "topic": event.topic,
                "payload": event.payload.json(),
                "source": event.source,
                "seq": event.seq,
                "at_unix_us": event.at_unix_us,
                "retained": event.retained,
                "received_us": unix_us(),
            }));
        }
    }

    /// `received {"limit"?}`: what arrived through `on_event`.
    fn received(&self, payload: &Value) -> Value {
        let limit = payload.get("limit").and_then(Value::as_u64).unwrap_or(1000);
        let r = self.received.lock().unwrap_or_else(|p| p.into_inner());
        let events: Vec<Value> = r.events.iter().take(limit as usize).cloned().collect();
        json!({"count": r.count, "in_order": r.count == 0 || r.in_order, "events": events})
    }

    fn alloc(&self, mb: u64) -> Value {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for block in touch_mib(mb) {
            held.push(block);
        }
        json!({"held_mb": held.len()})
    }

    fn spawn_children(&self, count: u64, mb: u64) -> Value {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        let exe = std::env::current_exe();
        let mut spawned = 0;
        let mut error = Value::Null;
        for _ in 0..count {
            let child = exe.as_ref().map_err(|e| e.to_string()).and_then(|exe| {
                std::process::Command::new(exe)
                    .env(CHILD_ENV, mb.to_string())
                    .stdin(std::process::Stdio::null())
                    .spawn()
                    .map_err(|e| e.to_string())
            });
            match child {
                Ok(child) => {
                    children.push(child);
                    spawned += 1;
                }
                Err(e) => {
                    error = json!(e);
                    break;
                }
            }
        }
        json!({"spawned": spawned, "error": error})
    }
}

impl Plugin for Echo {
    async fn on_load(&self, ctx: &Context, config: Value) -> Result<(), PluginError> {
        if let Some(patterns) = config.get("load_subscribe").and_then(Value::as_array) {
            let patterns: Vec<&str> = patterns.iter().filter_map(Value::as_str).collect();
            ctx.subscribe(&patterns).await?;
        }
        if let Some(topic) = config.get("load_publish").and_then(Value::as_str) {
            ctx.publish(topic, &json!({"from": "on_load"})).await?;
            ctx.flush().await?;
        }
        if config.get("ordered_handlers") == Some(&Value::Bool(true)) {
            // Added low first: the priority, not the order, decides.
            let router = Router::new().on(">", 1, Echo::low).on(">", 10, Echo::high);
            *self.router.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(router));
        }
        if let Some(ms) = config.get("crash_after_ms").and_then(Value::as_u64) {
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                eprintln!("crashing {ms} ms after load, as configured");
                std::process::abort()
            });
        }
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    async fn handle(
        &self,
        ctx: &Context,
        action: &str,
        payload: Value,
    ) -> Result<Value, PluginError> {
        match action {
            "ping" => Ok(json!({"pong": true, "pid": std::process::id()})),
            "echo" => Ok(payload),
            "sleep" => {
                let ms = field_u64(&payload, "ms")?;
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                Ok(json!({"slept_ms": ms}))
            }
            "exit" => {
                let code = field_u64(&payload, "code")?;
                eprintln!("exiting with code {code} as asked");
                std::process::exit(i32::try_from(code).unwrap_or(i32::MAX))
            }
            "crash" => {
                eprintln!("crashing as asked");
                std::process::abort()
            }
            "hang" => {
                eprintln!("hanging as asked");
                // Block the only runtime thread: nothing is answered any more.
                loop {
                    std::thread::park();
                }
            }
            "alloc" => Ok(self.alloc(field_u64(&payload, "mb")?)),
            "publish" => publish(ctx, &payload).await,
            "publish_raw" => publish_raw(ctx, &payload).await,
            "flood" => flood(ctx, &payload).await,
            "subscribe" | "unsubscribe" => subscription(ctx, action, &payload).await,
            "received" => Ok(self.received(&payload)),
            "spawn" => {
                let count = field_u64(&payload, "count")?;
                let mb = payload.get("mb").and_then(Value::as_u64).unwrap_or(0);
                Ok(self.spawn_children(count, mb))
            }
            "log" => log(&payload).await,
            "read" => probes::read(&payload),
            "write" => probes::write(&payload),
            "connect" => probes::connect(&payload),
            "signal" => probes::signal(&payload),
            "relay" => calling::relay(ctx, &payload).await,
            "plugins" => calling::plugins(ctx).await,
            "stream" => Err(PluginError::streamed(action)),
            "ticks" => Ok(json!({
                "ticks": self.ticks.load(Ordering::SeqCst),
                "tasks_started": self.tasks_started.load(Ordering::SeqCst),
            })),
            "handled" => Ok(json!(
                *self.handled.lock().unwrap_or_else(|p| p.into_inner())
            )),
            "config" => Ok(self
                .config
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()),
            other => Err(PluginError::unknown_action(other)),
        }
    }

    async fn stream(
        &self,
        ctx: &Context,
        action: &str,
        payload: Value,
        out: Chunks,
    ) -> Result<Value, PluginError> {
        match action {
            "stream" => calling::stream(&payload, &out).await,
            other => self.handle(ctx, other, payload).await,
        }
    }

    async fn on_reload(&self, _ctx: &Context, config: Value) -> Result<(), PluginError> {
        if let Some(why) = config.get("refuse_reload").and_then(Value::as_str) {
            return Err(PluginError::new("refused", why));
        }
        eprintln!("config reloaded");
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    async fn background(&self, _ctx: &Context, stop: Stop) -> Result<(), PluginError> {
        self.tasks_started.fetch_add(1, Ordering::SeqCst);
        let period = self
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get("ticker_ms")
            .and_then(Value::as_u64)
            .filter(|&ms| ms > 0);
        if let Some(ms) = period {
            stop.every(Duration::from_millis(ms), || async {
                self.ticks.fetch_add(1, Ordering::SeqCst);
            })
            .await;
            eprintln!("background task stopped");
        }
        Ok(())
    }

    async fn on_event(&self, ctx: &Context, event: Event) {
        self.record(&event);
        let router = self
            .router
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(router) = router {
            router.dispatch(self, ctx, &event).await;
        }
    }

    async fn on_unload(&self, _ctx: &Context) {
        eprintln!("unloading");
    }
}

/// `publish {"topic", "payload"?, "count"?, "retain"?, "interval_us"?}`.
async fn publish(ctx: &Context, payload: &Value) -> Result<Value, PluginError> {
    let topic = payload
        .get("topic")
        .and_then(Value::as_str)
        .ok_or_else(|| PluginError::bad_payload("expected {\"topic\": <string>}"))?;
    let count = payload.get("count").and_then(Value::as_u64).unwrap_or(1);
    let retain = payload.get("retain").and_then(Value::as_bool) == Some(true);
    // Paced publishing, for latency: event i leaves at start + i × interval
    // (in the timer's 1 ms steps) and carries the time it left.
    let interval = payload
        .get("interval_us")
        .and_then(Value::as_u64)
        .filter(|&us| us > 0)
        .map(std::time::Duration::from_micros);
    // A given payload is encoded once and shared by every event.
    let fixed = payload.get("payload").map(encode).transpose()?;
    let start = tokio::time::Instant::now();
    for i in 0..count {
        let body = match (&fixed, interval) {
            (Some(body), _) => body.clone(),
            (None, Some(every)) => {
                let n = u32::try_from(i).unwrap_or(u32::MAX);
                tokio::time::sleep_until(start + every.saturating_mul(n)).await;
                encode(&json!({"i": i, "sent_us": unix_us()}))?
            }
            (None, None) => encode(&json!({"i": i}))?,
        };
        ctx.publish_payload(topic, body, retain).await?;
    }
    ctx.flush().await?;
    Ok(json!({"published": count}))
}

/// A payload for the bus.
fn encode(body: &Value) -> Result<Payload, PluginError> {
    Payload::from_json(body).map_err(|e| PluginError::bad_payload(format!("payload: {e}")))
}

/// `publish_raw {"topic", "bytes"}`: one event whose payload is `bytes`
/// unchecked. A payload travels as raw bytes in bincode, so it is built the
/// way the codec would decode it from a peer.
async fn publish_raw(ctx: &Context, payload: &Value) -> Result<Value, PluginError> {
    let topic = payload
        .get("topic")
        .and_then(Value::as_str)
        .ok_or_else(|| PluginError::bad_payload("expected {\"topic\": <string>}"))?;
    let raw: Vec<u8> = payload
        .get("bytes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect()
        })
        .ok_or_else(|| PluginError::bad_payload("expected {\"bytes\": [<0..255>, ...]}"))?;
    // A byte sequence is written exactly as a byte string in bincode.
    let wire = corral_proto::Codec::Bincode
        .encode(&raw)
        .map_err(|e| PluginError::internal(format!("cannot build the payload: {e}")))?;
    let body: corral_proto::Payload = corral_proto::Codec::Bincode
        .decode(&bytes::BytesMut::from(&wire[..]))
        .map_err(|e| PluginError::internal(format!("cannot build the payload: {e}")))?;
    ctx.publish_payload(topic, body, false).await?;
    ctx.flush().await?;
    Ok(json!({"published": 1}))
}

/// `flood {"prefix", "count", "bytes", "retain"?}`: event i on `prefix.i`.
async fn flood(ctx: &Context, payload: &Value) -> Result<Value, PluginError> {
    let prefix = payload
        .get("prefix")
        .and_then(Value::as_str)
        .ok_or_else(|| PluginError::bad_payload("expected {\"prefix\": <string>}"))?;
    let count = field_u64(payload, "count")?;
    let bytes = field_u64(payload, "bytes")?;
    let retain = payload.get("retain").and_then(Value::as_bool) == Some(true);
    let body = Value::String("x".repeat(usize::try_from(bytes).unwrap_or(0)));
    for i in 0..count {
        let topic = format!("{prefix}.{i}");
        // Let heartbeats through: the plugin runs on one thread.
        tokio::task::yield_now().await;
        if retain {
            ctx.publish_retained(&topic, &body).await?;
        } else {
            ctx.publish(&topic, &body).await?;
        }
    }
    ctx.flush().await?;
    Ok(json!({"published": count}))
}

/// `subscribe {"patterns"}` / `unsubscribe {"patterns"}`.
async fn subscription(ctx: &Context, action: &str, payload: &Value) -> Result<Value, PluginError> {
    let patterns: Vec<&str> = payload
        .get("patterns")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if action == "subscribe" {
        ctx.subscribe(&patterns).await?;
    } else {
        ctx.unsubscribe(&patterns).await?;
    }
    Ok(json!({"patterns": patterns}))
}

/// `log {"count", "text"?}`: that many lines on stdout.
async fn log(payload: &Value) -> Result<Value, PluginError> {
    let count = field_u64(payload, "count")?;
    let text = payload
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("line")
        .to_string();
    // Writing blocks while the supervisor drains the pipe: off
    // the runtime thread, so heartbeats keep being answered.
    tokio::task::spawn_blocking(move || {
        let mut out = std::io::stdout().lock();
        for i in 0..count {
            let _ = writeln!(out, "{text} {i}");
        }
        let _ = out.flush();
    })
    .await
    .map_err(|e| PluginError::internal(format!("log writer failed: {e}")))?;
    Ok(json!({"logged": count}))
}
