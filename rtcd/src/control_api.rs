//! The control nodes' channel: one WebSocket each, authenticated by API
//! key on the upgrade, then a `hello`/`welcome` exchange of protocol
//! versions, then `signaling::rtcd` messages both ways.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use signaling::PROTOCOL_VERSION;
use signaling::rtcd::{ErrorCode, FromRtcd, RtcdError, ToRtcd};
use tokio::sync::mpsc;

use crate::auth::{bearer, check_api_key};
use crate::node::Node;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const LOAD_EVERY: Duration = Duration::from_secs(5);
/// Events queued towards one control node before they are dropped.
const CONN_QUEUE: usize = 65_536;

pub async fn upgrade(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let presented = bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok()),
    );
    if let Err(e) = presented.and_then(|k| check_api_key(&node.config.api.keys, k)) {
        node.rejections
            .unauthenticated
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e, "control connection refused");
        return (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response();
    }
    let max = node.config.api.max_message_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| session(node, socket))
}

fn error(code: ErrorCode, message: String) -> FromRtcd {
    FromRtcd::Error(RtcdError {
        code,
        message,
        call_id: None,
        session_id: None,
        request: None,
    })
}

async fn send(
    ws: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    msg: &FromRtcd,
) -> bool {
    let text = serde_json::to_string(msg).expect("wire types serialize");
    ws.send(Message::Text(text.into())).await.is_ok()
}

async fn session(node: Arc<Node>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    // Hello first, with a version we speak.
    let hello = tokio::time::timeout(HELLO_TIMEOUT, stream.next()).await;
    let node_id = match hello {
        Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<ToRtcd>(&t) {
            Ok(ToRtcd::Hello { version, node_id }) if version == PROTOCOL_VERSION => node_id,
            Ok(ToRtcd::Hello { version, .. }) => {
                node.rejections.version.fetch_add(1, Ordering::Relaxed);
                let msg = format!(
                    "protocol version {version} is not supported; this node speaks {PROTOCOL_VERSION}"
                );
                send(&mut sink, &error(ErrorCode::Version, msg)).await;
                return;
            }
            Ok(_) => {
                node.rejections.bad_message.fetch_add(1, Ordering::Relaxed);
                send(
                    &mut sink,
                    &error(
                        ErrorCode::BadMessage,
                        "the first message must be hello".into(),
                    ),
                )
                .await;
                return;
            }
            Err(e) => {
                node.rejections.bad_message.fetch_add(1, Ordering::Relaxed);
                send(
                    &mut sink,
                    &error(ErrorCode::BadMessage, format!("invalid hello: {e}")),
                )
                .await;
                return;
            }
        },
        _ => {
            node.rejections.bad_message.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let welcome = FromRtcd::Welcome {
        version: PROTOCOL_VERSION,
        node_id: node.config.node_id.clone(),
        load: node.load(),
    };
    if !send(&mut sink, &welcome).await {
        return;
    }
    tracing::info!(control = %node_id, "control node connected");
    let (tx, mut rx) = mpsc::channel::<FromRtcd>(CONN_QUEUE);
    let conn = node.register_conn(tx);
    let mut load_tick = tokio::time::interval(LOAD_EVERY);
    loop {
        tokio::select! {
            incoming = stream.next() => {
                let reply = match incoming {
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<ToRtcd>(&t) {
                        Ok(ToRtcd::GetLoad) => Some(FromRtcd::Load(node.load())),
                        Ok(ToRtcd::ListCalls) => Some(FromRtcd::Calls { calls: node.call_ids() }),
                        Ok(ToRtcd::Hello { .. }) => None,
                        Ok(msg) => node.command(conn, msg).err().map(FromRtcd::Error),
                        Err(e) => {
                            node.rejections.bad_message.fetch_add(1, Ordering::Relaxed);
                            Some(error(ErrorCode::BadMessage, e.to_string()))
                        }
                    },
                    Some(Ok(Message::Binary(_))) => {
                        node.rejections.bad_message.fetch_add(1, Ordering::Relaxed);
                        Some(error(ErrorCode::BadMessage, "binary messages are not part of the protocol".into()))
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        // A message over the limit ends the connection here; a
                        // control node that merely went away is not a rejection.
                        if is_too_large(&e) {
                            node.rejections.oversized.fetch_add(1, Ordering::Relaxed);
                        }
                        tracing::warn!(control = %node_id, error = %e, "control connection failed");
                        break;
                    }
                };
                if let Some(r) = reply && !send(&mut sink, &r).await {
                    break;
                }
            }
            event = rx.recv() => match event {
                Some(e) => if !send(&mut sink, &e).await { break },
                None => break,
            },
            _ = load_tick.tick() => {
                if !send(&mut sink, &FromRtcd::Load(node.load())).await {
                    break;
                }
            }
        }
    }
    node.unregister_conn(conn);
    tracing::info!(control = %node_id, "control node disconnected");
}

/// Whether a WebSocket read failed because a message or frame exceeded the
/// configured limit (the WebSocket library reports it as a capacity error).
fn is_too_large(e: &axum::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if text.contains("Space limit exceeded")
            || text.contains("too long")
            || text.contains("too big")
        {
            return true;
        }
        cur = err.source();
    }
    false
}
