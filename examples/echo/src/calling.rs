//! The actions that reach other plugins: `relay` (a call through the
//! supervisor, or a streamed one read to its end) and `stream` (a streamed
//! reply of numbered chunks).

use std::time::Duration;

use corral_sdk::{Chunks, Context, Piece, PluginError, Value};
use serde_json::json;

/// `relay {"plugin", "action", "payload", "timeout_ms"?, "wait"?,
/// "stream"?}`: the target's reply, or its error as it came. With
/// `"stream": true` the reply is streamed and read to its end:
/// `{"chunks": N, "in_order": bool, "end": final}` (chunks in order when
/// each is `{"i": i}` counting from 0). With `"abandon": true`, opens
/// `repeat` streams one after the other and drops each after its first
/// piece: `{"abandoned": N}`. With `repeat` alone, makes the same call N
/// times: `{"calls": N, "us": [each call's µs]}`.
pub(crate) async fn relay(ctx: &Context, payload: &Value) -> Result<Value, PluginError> {
    let text = |key: &str| {
        payload
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| PluginError::bad_payload(format!("`{key}` (a string) is required")))
    };
    let (plugin, action) = (text("plugin")?, text("action")?);
    let flag = |key: &str| payload.get(key).and_then(Value::as_bool) == Some(true);
    // `payload_bytes`: a string payload of that many bytes instead.
    let padded = payload
        .get("payload_bytes")
        .and_then(Value::as_u64)
        .map(|n| json!("x".repeat(usize::try_from(n).unwrap_or(0))));
    let call = || {
        let inner = padded
            .as_ref()
            .unwrap_or_else(|| payload.get("payload").unwrap_or(&Value::Null));
        let mut call = ctx.call(plugin, action, inner);
        if let Some(ms) = payload.get("timeout_ms").and_then(Value::as_u64) {
            call = call.timeout(Duration::from_millis(ms));
        }
        if flag("wait") {
            call = call.wait();
        }
        call
    };
    if flag("abandon") {
        // Open streams and walk away from each after its first piece.
        let repeat = payload.get("repeat").and_then(Value::as_u64).unwrap_or(1);
        for _ in 0..repeat {
            let mut replies = call().stream().await?;
            replies.next().await.transpose()?;
        }
        return Ok(json!({"abandoned": repeat}));
    }
    if let Some(repeat) = payload
        .get("repeat")
        .and_then(Value::as_u64)
        .filter(|_| !flag("stream"))
    {
        // The same call `repeat` times, each one timed, for benchmarks.
        let mut micros = Vec::new();
        for _ in 0..repeat {
            let started = std::time::Instant::now();
            call().await?;
            micros.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        }
        return Ok(json!({"calls": repeat, "us": micros}));
    }
    if !flag("stream") {
        return call().await;
    }
    let mut replies = call().stream().await?;
    let (mut chunks, mut in_order) = (0u64, true);
    while let Some(piece) = replies.next().await {
        match piece? {
            Piece::Chunk(chunk) => {
                in_order &= chunk.get("i").and_then(Value::as_u64) == Some(chunks);
                chunks += 1;
            }
            Piece::End(end) => {
                return Ok(json!({"chunks": chunks, "in_order": in_order, "end": end}));
            }
        }
    }
    Err(PluginError::internal(
        "the stream ended without its final value",
    ))
}

/// `stream {"count", "delay_ms"?, "pad"?}`: `count` chunks `{"i": n}`
/// (each after `delay_ms`, with a `pad` string of that many bytes), then
/// `{"done": count}`.
pub(crate) async fn stream(payload: &Value, out: &Chunks) -> Result<Value, PluginError> {
    let count = payload
        .get("count")
        .and_then(Value::as_u64)
        .ok_or_else(|| PluginError::bad_payload("`count` (an integer) is required"))?;
    let delay = payload.get("delay_ms").and_then(Value::as_u64).unwrap_or(0);
    let pad = payload.get("pad").and_then(Value::as_u64).unwrap_or(0);
    let pad = "x".repeat(usize::try_from(pad).unwrap_or(0));
    for i in 0..count {
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let chunk = if pad.is_empty() {
            json!({"i": i})
        } else {
            json!({"i": i, "pad": pad})
        };
        out.send(&chunk).await?;
    }
    Ok(json!({"done": count}))
}

/// `plugins`: the fleet as this plugin sees it.
pub(crate) async fn plugins(ctx: &Context) -> Result<Value, PluginError> {
    let plugins = ctx.plugins().await?;
    serde_json::to_value(plugins).map_err(|e| PluginError::internal(e.to_string()))
}
