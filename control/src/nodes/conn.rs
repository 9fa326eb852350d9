//! One node's connection: WebSocket to `/api/v1/control` with the API key,
//! `hello`/`welcome`, then messages both ways and a `get_load` every
//! heartbeat. Silence for `node_timeout_ms` or a closed socket is down;
//! reconnection backs off up to `reconnect_max_ms`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use signaling::PROTOCOL_VERSION;
use signaling::rtcd::{FromRtcd, ToRtcd};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use super::{MediaNodes, NodeKey};

const FIRST_RETRY: Duration = Duration::from_millis(100);

/// Runs until the node is forgotten (gone from DNS) or the task is aborted.
pub(super) async fn run(nodes: Arc<MediaNodes>, key: NodeKey) {
    let max = Duration::from_millis(nodes.config.reconnect_max_ms);
    let mut backoff = FIRST_RETRY;
    loop {
        let (reason, was_up) = match session(&nodes, &key).await {
            Ok(reason) => (reason, true),
            Err(reason) => (reason, false),
        };
        if !nodes.mark_down(&key, reason) {
            return;
        }
        if was_up {
            backoff = FIRST_RETRY;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max);
    }
}

/// `Err`: never got up (why); `Ok`: was up, then ended (why).
async fn session(nodes: &MediaNodes, key: &str) -> Result<String, String> {
    let timeout = Duration::from_millis(nodes.config.node_timeout_ms);
    let url = format!("ws://{}/api/v1/control", key.trim_start_matches("http://"));
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad node URL {url}: {e}"))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", nodes.api_key))
        .map_err(|_| "rtcd.api_key is not a valid header value".to_string())?;
    req.headers_mut().insert("authorization", bearer);
    // Without TCP_NODELAY a signaling message sent right after another
    // waits for rtcd's delayed ACK (~40 ms on Linux).
    let connect = tokio_tungstenite::connect_async_with_config(req, None, true);
    let (mut ws, _) = match tokio::time::timeout(timeout, connect).await {
        Err(_) => return Err(format!("no connection within {} ms", timeout.as_millis())),
        Ok(Err(tungstenite::Error::Http(resp))) if resp.status().as_u16() == 401 => {
            return Err("the node refused rtcd.api_key (HTTP 401): the key must be one of the node's api.keys".into());
        }
        Ok(Err(tungstenite::Error::Http(resp))) => {
            return Err(format!(
                "the node answered HTTP {} instead of opening the control channel",
                resp.status()
            ));
        }
        Ok(Err(e)) => return Err(format!("connecting: {e}")),
        Ok(Ok(ws)) => ws,
    };
    let hello = ToRtcd::Hello {
        version: PROTOCOL_VERSION,
        node_id: nodes.control_id.clone(),
    };
    ws.send(text(&hello))
        .await
        .map_err(|e| format!("sending hello: {e}"))?;
    let first = tokio::time::timeout(timeout, ws.next())
        .await
        .map_err(|_| format!("no welcome within {} ms", timeout.as_millis()))?;
    let (node_id, load) = match first {
        Some(Ok(Message::Text(t))) => match serde_json::from_str::<FromRtcd>(&t) {
            Ok(FromRtcd::Welcome {
                version,
                node_id,
                load,
            }) if version == PROTOCOL_VERSION => (node_id, load),
            Ok(FromRtcd::Welcome { version, .. }) => {
                return Err(format!(
                    "the node speaks protocol version {version}, this control node {PROTOCOL_VERSION}"
                ));
            }
            Ok(FromRtcd::Error(e)) => return Err(format!("the node refused hello: {}", e.message)),
            Ok(other) => return Err(format!("expected welcome, got {other:?}")),
            Err(e) => return Err(format!("unreadable welcome: {e}")),
        },
        Some(Ok(other)) => return Err(format!("expected welcome, got {other:?}")),
        Some(Err(e)) => return Err(format!("reading welcome: {e}")),
        None => return Err("closed before welcome".into()),
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<ToRtcd>();
    nodes.mark_up(key, node_id, load, tx);

    let mut heartbeat = tokio::time::interval(Duration::from_millis(nodes.config.heartbeat_ms));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(t))) => {
                    last_heard = Instant::now();
                    match serde_json::from_str::<FromRtcd>(&t) {
                        Ok(msg) => nodes.on_message(key, msg),
                        Err(e) => tracing::warn!(node = %key, error = %e, "unreadable message from media node"),
                    }
                }
                Some(Ok(Message::Close(_))) | None => return Ok("the node closed the connection".into()),
                Some(Ok(_)) => last_heard = Instant::now(),
                Some(Err(e)) => return Ok(format!("connection failed: {e}")),
            },
            out = rx.recv() => {
                // The pool holds the sender while the node is up.
                let Some(msg) = out else { return Ok("closed by the pool".into()) };
                if let Err(e) = ws.send(text(&msg)).await {
                    return Ok(format!("sending: {e}"));
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() >= timeout {
                    return Ok(format!("silent for {} ms", timeout.as_millis()));
                }
                if let Err(e) = ws.send(text(&ToRtcd::GetLoad)).await {
                    return Ok(format!("sending: {e}"));
                }
            }
        }
    }
}

fn text(msg: &ToRtcd) -> Message {
    Message::Text(
        serde_json::to_string(msg)
            .expect("wire types serialize")
            .into(),
    )
}
