//! A WebSocket to a protocol plugin's handler: each message the client
//! sends is a call of the plugin's `corral.ws` action with a
//! [`WsMessage`]; the reply (unless `null`), or each chunk of a streamed
//! reply, goes back as a message (a string as its text, any other value
//! as JSON). The socket stays with the instance it opened on; when that
//! instance stops answering, the socket is closed with 1011 and why.
//! Binary messages are refused (1003): the calls carry JSON.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use corral_proto::{Payload, WS_ACTION, WsMessage, codes};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use futures::StreamExt;

use super::Target;
use crate::calls::Piece;

/// Socket numbers, unique for the supervisor's lifetime.
static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

/// Accepts the upgrade and serves the socket until either side closes,
/// it is idle for [`SOCKET_IDLE`](super::proxy::SOCKET_IDLE), or the face
/// shuts down; it holds `slot` meanwhile.
pub(super) fn open(
    upgrade: WebSocketUpgrade,
    target: Target,
    closing: CancellationToken,
    slot: OwnedSemaphorePermit,
) -> Response {
    upgrade
        .max_message_size(1 << 20)
        .max_frame_size(1 << 20)
        .on_upgrade(move |mut socket| async move {
            tokio::select! {
                () = serve(&mut socket, target) => {}
                () = closing.cancelled() => {
                    close(&mut socket, close_code::AWAY, "the supervisor is going down").await;
                }
            }
            drop(slot);
        })
}

async fn serve(socket: &mut WebSocket, target: Target) {
    let id = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
    let path = target
        .inner
        .split_once('?')
        .map_or(target.inner.as_str(), |(p, _)| p)
        .to_string();
    loop {
        let message = match tokio::time::timeout(super::proxy::SOCKET_IDLE, socket.recv()).await {
            Ok(Some(Ok(message))) => message,
            Ok(_) => return,
            Err(_) => {
                close(socket, close_code::AWAY, "idle too long").await;
                return;
            }
        };
        let value = match message {
            Message::Text(text) => serde_json::from_str(text.as_str())
                .unwrap_or_else(|_| serde_json::Value::String(text.to_string())),
            Message::Binary(_) => {
                close(
                    socket,
                    close_code::UNSUPPORTED,
                    "binary messages are not carried; send JSON or text",
                )
                .await;
                return;
            }
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        let message = WsMessage {
            path: path.clone(),
            socket: id,
            message: value,
        };
        if let Err(why) = answer(socket, &target, &message).await {
            close(socket, close_code::ERROR, &why).await;
            return;
        }
    }
}

/// Calls the handler with one message and sends what it answers.
async fn answer(
    socket: &mut WebSocket,
    target: &Target,
    message: &WsMessage,
) -> Result<(), String> {
    let payload = serde_json::to_value(message)
        .map_err(|e| e.to_string())
        .and_then(|v| Payload::from_json(&v).map_err(|e| e.to_string()))?;
    let deadline = Some(Instant::now() + target.call_timeout);
    let action = WS_ACTION.to_string();
    match target
        .instance
        .call(action.clone(), payload.clone(), deadline)
        .await
    {
        Ok(reply) => send(socket, &reply).await,
        Err(e) if e.code == codes::STREAMED => {
            let upstream = target
                .instance
                .stream(action, payload, deadline)
                .await
                .map_err(|e| format!("`{}`: {}", target.plugin, e.message))?;
            let mut pieces = std::pin::pin!(upstream.pieces());
            while let Some(piece) = pieces.next().await {
                match piece {
                    Piece::Chunk(chunk) => send(socket, &chunk).await?,
                    Piece::End(_) => return Ok(()),
                    Piece::Failed(e) => return Err(format!("`{}`: {}", target.plugin, e.message)),
                }
            }
            Ok(())
        }
        Err(e) => Err(format!("`{}`: {} ({})", target.plugin, e.message, e.code)),
    }
}

async fn send(socket: &mut WebSocket, value: &Payload) -> Result<(), String> {
    let text = match value.to_json::<serde_json::Value>() {
        Ok(serde_json::Value::Null) => return Ok(()),
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(e) => return Err(format!("a reply that is not JSON: {e}")),
    };
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|e| format!("the client went away: {e}"))
}

async fn close(socket: &mut WebSocket, code: u16, why: &str) {
    // A close reason is at most 123 bytes.
    let mut reason = why.to_string();
    while reason.len() > 123 {
        reason.pop();
    }
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}
