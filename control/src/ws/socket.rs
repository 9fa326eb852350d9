//! One client's WebSocket: hello, resume or resync, then events out and
//! pings, typing in. Authentication happens before the upgrade (the
//! session cookie or a bearer token on the upgrade request).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use signaling::events::{
    ClientMessage, CloseReason, EVENTS_VERSION, Resume, ResyncReason, ServerMessage,
};

use super::Conn;
use crate::AppState;
use crate::auth::{AuthVia, CurrentUser};
use crate::bus::{Audience, Ephemeral};
use crate::db::{channels, events, new_id, teams};
use crate::error::AppError;
use crate::presence;

/// A client must say hello within this long.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A resume that would replay more than this gets a resync instead.
pub const MAX_REPLAY: usize = 5_000;
/// Largest message a client may send. A call's SDP answer lists every
/// track the client receives (about 1.8 KB per m-line from Chromium), so
/// three people already pass 16 KiB; this leaves room for large calls.
const MAX_CLIENT_MESSAGE: usize = 256 << 10;
/// Typing notices a socket may send per second.
const TYPING_PER_SEC: u32 = 4;

/// Browsers send the session cookie on a WebSocket handshake from any
/// page of the same site and enforce no CORS on it, so a cookie-
/// authenticated upgrade must come from our own origin (its `Origin` host
/// is the `Host` it was sent to). Clients that are not browsers send no
/// `Origin`, and bearer tokens are never sent by a browser on its own.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let origin_host = origin
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    !origin_host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    user: CurrentUser,
    ws: WebSocketUpgrade,
) -> Result<Response, AppError> {
    if state.is_draining() {
        return Err(AppError::Unavailable);
    }
    if matches!(user.via, AuthVia::Cookie { .. }) && !same_origin(&headers) {
        return Err(AppError::Forbidden(
            "cross-origin WebSocket with a session cookie",
        ));
    }
    Ok(ws
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            if let Err(e) = serve(socket, state, user).await {
                tracing::debug!(error = %e, "socket ended");
            }
        }))
}

async fn send(socket: &mut WebSocket, msg: &ServerMessage) -> Result<(), axum::Error> {
    // Our own message types always encode.
    let json = serde_json::to_string(msg).unwrap_or_default();
    socket.send(Message::Text(json.into())).await
}

async fn close(socket: &mut WebSocket, reason: CloseReason) {
    let _ = send(socket, &ServerMessage::Closing { reason }).await;
    let code = match reason {
        CloseReason::ServerShutdown => 1001,
        CloseReason::ProtocolError => 1002,
        CloseReason::TooSlow => 1013,
        CloseReason::SessionEnded => 1008,
    };
    let reason_text = serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason_text),
        })))
        .await;
}

async fn read_hello(socket: &mut WebSocket) -> Option<(u32, Option<Resume>)> {
    let msg = tokio::time::timeout(HELLO_TIMEOUT, socket.recv())
        .await
        .ok()??
        .ok()?;
    let Message::Text(text) = msg else {
        return None;
    };
    match serde_json::from_str::<ClientMessage>(&text).ok()? {
        ClientMessage::Hello { version, resume } => Some((version, resume)),
        _ => None,
    }
}

/// Where a (re)connecting socket starts and what it must be sent first.
struct Start {
    hello_seq: i64,
    resumed: bool,
    resync: Option<ResyncReason>,
    replay: Vec<(i64, String)>,
}

async fn plan_start(
    state: &AppState,
    user_id: &str,
    resume: Option<Resume>,
) -> Result<Start, crate::db::DbError> {
    let latest = events::latest_seq(&state.db).await?;
    let fresh = |resync| Start {
        hello_seq: latest,
        resumed: false,
        resync,
        replay: Vec::new(),
    };
    let Some(r) = resume else {
        return Ok(fresh(None));
    };
    let last = i64::try_from(r.last_seq).unwrap_or(i64::MAX);
    if last > latest {
        return Ok(fresh(Some(ResyncReason::UnknownSeq)));
    }
    if last == latest {
        return Ok(Start {
            hello_seq: latest,
            resumed: true,
            resync: None,
            replay: Vec::new(),
        });
    }
    let window_start = state.clock.now_ms() - state.config.events.replay_window_secs as i64 * 1000;
    match events::get(&state.db, last + 1).await? {
        Some(first) if first.created_at >= window_start => {}
        _ => return Ok(fresh(Some(ResyncReason::OutsideWindow))),
    }
    // What the user may read, as of now.
    let my_channels: HashSet<String> = channels::list_mine(&state.db, user_id)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    let my_teams: HashSet<String> = teams::list_for_user(&state.db, user_id)
        .await?
        .into_iter()
        .map(|t| t.id)
        .collect();
    let mut replay = Vec::new();
    let mut cursor = last;
    let mut seen = 0usize;
    loop {
        let batch = events::since(&state.db, cursor, 500).await?;
        if batch.is_empty() {
            break;
        }
        for ev in batch {
            cursor = ev.seq;
            seen += 1;
            if seen > MAX_REPLAY {
                return Ok(fresh(Some(ResyncReason::OutsideWindow)));
            }
            let visible = match (&ev.user_id, &ev.channel_id, &ev.team_id) {
                (Some(u), _, _) => u == user_id,
                (_, Some(c), _) => my_channels.contains(c),
                (_, _, Some(t)) => my_teams.contains(t),
                _ => false,
            };
            if visible {
                let msg = ServerMessage::Event {
                    seq: ev.seq as u64,
                    event: ev.event,
                };
                replay.push((ev.seq, serde_json::to_string(&msg).unwrap_or_default()));
            }
        }
    }
    Ok(Start {
        hello_seq: cursor.max(latest),
        resumed: true,
        resync: None,
        replay,
    })
}

async fn serve(mut socket: WebSocket, state: AppState, user: CurrentUser) -> anyhow::Result<()> {
    let Some((version, resume)) = read_hello(&mut socket).await else {
        close(&mut socket, CloseReason::ProtocolError).await;
        return Ok(());
    };
    if version != EVENTS_VERSION {
        let _ = send(
            &mut socket,
            &ServerMessage::Error {
                code: "unsupported_version".into(),
                message: format!("this server speaks event protocol version {EVENTS_VERSION}"),
            },
        )
        .await;
        close(&mut socket, CloseReason::ProtocolError).await;
        return Ok(());
    }
    let conn_id = new_id();
    let (conn, mut rx) = Conn::new(
        conn_id.clone(),
        user.user.id.clone(),
        user.via.session_id().map(str::to_owned),
        state.config.events.socket_queue,
    );
    // Register before reading the log: anything committed after the read
    // arrives live, anything before is in the replay; seq filters overlap.
    state.hub.register(conn.clone());
    if let Err(e) = presence::connected(&state, &conn.id, user.id()).await {
        tracing::warn!(error = %e, "presence: recording a socket failed");
    }
    let result = run_socket(&mut socket, &state, &user, &conn, &mut rx, resume).await;
    state.hub.unregister(&conn);
    if let Err(e) = presence::disconnected(&state, &conn.id, user.id()).await {
        // The row goes with this node's heartbeat if it stops; until then
        // the user may show as connected.
        tracing::warn!(error = %e, "presence: removing a socket failed");
    }
    result
}

async fn run_socket(
    socket: &mut WebSocket,
    state: &AppState,
    user: &CurrentUser,
    conn: &Arc<Conn>,
    rx: &mut super::ConnRx,
    resume: Option<Resume>,
) -> anyhow::Result<()> {
    let start = plan_start(state, user.id(), resume).await?;
    send(
        socket,
        &ServerMessage::Hello {
            version: EVENTS_VERSION,
            connection_id: conn.id.clone(),
            last_seq: start.hello_seq as u64,
            resumed: start.resumed,
        },
    )
    .await?;
    if let Some(reason) = start.resync {
        send(socket, &ServerMessage::Resync { reason }).await?;
    }
    let mut sent_upto = start.hello_seq;
    for (seq, json) in start.replay {
        socket.send(Message::Text(json.into())).await?;
        state
            .metrics
            .events_sent
            .with_label_values(&["replay"])
            .inc();
        sent_upto = sent_upto.max(seq);
    }

    let ping_every = Duration::from_secs(state.config.events.ping_interval_secs);
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    let mut heard_since_ping = true;
    let mut typing_window = (tokio::time::Instant::now(), 0u32);
    loop {
        tokio::select! {
            biased;
            _ = rx.close.changed() => {
                let reason = (*rx.close.borrow()).unwrap_or(CloseReason::ServerShutdown);
                close(socket, reason).await;
                return Ok(());
            }
            Some((seq, json)) = rx.durable.recv() => {
                if seq <= sent_upto {
                    continue;
                }
                socket.send(Message::Text(Utf8Bytes::from(&*json))).await?;
                state.metrics.events_sent.with_label_values(&["durable"]).inc();
                sent_upto = seq;
            }
            Some(json) = rx.signals.recv() => {
                socket.send(Message::Text(Utf8Bytes::from(&*json))).await?;
                state.metrics.events_sent.with_label_values(&["call_signal"]).inc();
            }
            Some(json) = rx.ephemeral.recv() => {
                socket.send(Message::Text(Utf8Bytes::from(&*json))).await?;
                state.metrics.events_sent.with_label_values(&["ephemeral"]).inc();
            }
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else { return Ok(()) };
                heard_since_ping = true;
                match msg {
                    Message::Text(text) => {
                        handle_client(socket, state, user, conn, &text, &mut typing_window).await?;
                    }
                    Message::Close(_) => return Ok(()),
                    _ => {}
                }
            }
            _ = ping.tick() => {
                if !heard_since_ping {
                    return Ok(());
                }
                heard_since_ping = false;
                if !session_alive(state, user).await {
                    close(socket, CloseReason::SessionEnded).await;
                    return Ok(());
                }
                socket.send(Message::Ping(Default::default())).await?;
            }
        }
    }
}

/// The socket's credential still stands (see [`crate::auth::extract::still_valid`]).
/// A database error closes it, as a failed check would.
async fn session_alive(state: &AppState, user: &CurrentUser) -> bool {
    crate::auth::extract::still_valid(state, user)
        .await
        .unwrap_or(false)
}

async fn handle_client(
    socket: &mut WebSocket,
    state: &AppState,
    user: &CurrentUser,
    conn: &Arc<Conn>,
    text: &str,
    typing_window: &mut (tokio::time::Instant, u32),
) -> anyhow::Result<()> {
    let msg = match serde_json::from_str::<ClientMessage>(text) {
        Ok(m) => m,
        Err(e) => {
            send(
                socket,
                &ServerMessage::Error {
                    code: "invalid_message".into(),
                    message: e.to_string(),
                },
            )
            .await?;
            return Ok(());
        }
    };
    match msg {
        ClientMessage::Ping { nonce } => send(socket, &ServerMessage::Pong { nonce }).await?,
        ClientMessage::Hello { .. } => {
            send(
                socket,
                &ServerMessage::Error {
                    code: "already_greeted".into(),
                    message: "hello is sent once per connection".into(),
                },
            )
            .await?
        }
        ClientMessage::Typing {
            channel_id,
            root_id,
        } => {
            let now = tokio::time::Instant::now();
            if now.duration_since(typing_window.0) >= Duration::from_secs(1) {
                *typing_window = (now, 0);
            }
            typing_window.1 += 1;
            if typing_window.1 > TYPING_PER_SEC {
                return Ok(());
            }
            if channels::membership_of(&state.db, &channel_id, user.id())
                .await?
                .is_none()
            {
                return Ok(());
            }
            presence::activity(state, user.id()).await?;
            // Through the bus: the channel's members on every node get it.
            let msg = ServerMessage::Typing {
                channel_id: channel_id.clone(),
                user_id: user.id().to_owned(),
                root_id,
            };
            state.bus.publish_ephemeral(Ephemeral {
                audience: Audience::Channel { channel_id },
                except_conn: Some(conn.id.clone()),
                kind: "typing".into(),
                message: serde_json::to_string(&msg).unwrap_or_default(),
            });
        }
        ClientMessage::CallSignal {
            call_id,
            session_id,
            signal,
        } => {
            let r = crate::calls::relay::client_signal(
                state,
                user.id(),
                &conn.id,
                call_id,
                session_id,
                signal,
            )
            .await;
            if let Err(e) = r {
                send(
                    socket,
                    &ServerMessage::Error {
                        code: e.code.into(),
                        message: e.message,
                    },
                )
                .await?
            }
        }
    }
    Ok(())
}
