//! The receive-only bot a job sends into a call: it joins through
//! control's signaling like any client (so it works whichever rtcd node
//! holds the call), takes every track rtcd offers and writes each frame
//! to the job's capture log as it arrives. It leaves when control takes
//! it out of the call (the job was stopped, the call ended), when the job
//! is cancelled or when its time is up.

mod captions;
mod control;
mod peer;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use signaling::call::{ClientSignal, ServerSignal};
use signaling::events::{ClientMessage, ServerMessage};
use signaling::jobs::JobSpec;
use signaling::media::Sdp;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use captions::Captioner;
pub use control::ControlClient;
use peer::{Command, Names, Note, Peer};

use crate::record::{CaptureWriter, read_capture};

/// How often the bot reads its call's view (names, whether it is still in).
const VIEW_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// Control refused the job's credential or the request.
    #[error("control refused the bot: {0}")]
    Refused(String),
    /// The call does not exist or has ended.
    #[error("the call is not running: {0}")]
    CallGone(String),
    /// Control could not be reached or answered oddly: worth a retry.
    #[error("control is unreachable: {0}")]
    Unreachable(String),
    #[error("bot setup: {0}")]
    Setup(String),
    #[error("media: {0}")]
    Media(String),
    #[error("capture: {0}")]
    Capture(#[from] crate::record::CaptureError),
}

impl BotError {
    /// Whether another attempt may succeed.
    pub fn transient(&self) -> bool {
        matches!(self, BotError::Unreachable(_) | BotError::Media(_))
    }
}

/// Live captions for a job that makes them: the Whisper model, loaded.
pub struct LiveSetup {
    pub engine: std::sync::Arc<crate::transcribe::Engine>,
    pub language: Option<String>,
}

/// What a capture run saw.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    pub frames: u64,
    /// Live captions delivered to control.
    pub captions: u64,
    pub connected: bool,
    /// Why it stopped: `left_call`, `cancelled`, `time_limit`.
    pub ended_by: &'static str,
}

/// Joins the call of `spec` and captures into `dir` until the bot is out
/// of the call, `cancel` fires or `limit` passes. A capture already in
/// `dir` (an attempt before a crash) is continued, never rewritten.
pub async fn capture(
    spec: &JobSpec,
    dir: &Path,
    ip: IpAddr,
    cancel: CancellationToken,
    limit: Duration,
    live: Option<LiveSetup>,
) -> Result<Captured, BotError> {
    let client = ControlClient::new(&spec.control)?;
    let call = &spec.call_id;
    let names: Names = Default::default();
    refresh(&client, call, &names).await?;
    let next_track = if dir.exists() {
        read_capture(dir)?.next_track_id()
    } else {
        1
    };
    let writer = CaptureWriter::open(dir)?;
    let mut ws = client.socket().await?;
    let join = client.join(call).await?;
    let session = join.session_id.clone();
    let captioner =
        live.map(|l| Captioner::start(l.engine, l.language, client.clone(), call.clone()));
    let heard = captioner.as_ref().map(|c| c.heard.clone());
    let (peer, offer) = Peer::new(ip, writer, next_track, names.clone(), heard).await?;
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let (note_tx, mut note_rx) = mpsc::channel(64);
    let media = tokio::spawn(peer.run(cmd_rx, note_tx));
    let signal = |signal: ClientSignal| ClientMessage::CallSignal {
        call_id: call.clone(),
        session_id: session.clone(),
        signal,
    };
    let first = ClientSignal::Offer {
        offer: Sdp {
            sdp: offer,
            negotiation: 0,
        },
        tracks: Vec::new(),
    };
    send(&mut ws, &signal(first)).await?;

    let started = Instant::now();
    let mut out = Captured::default();
    let mut view_at = tokio::time::interval(VIEW_EVERY);
    out.ended_by = loop {
        tokio::select! {
            _ = cancel.cancelled() => break "cancelled",
            _ = tokio::time::sleep(limit.saturating_sub(started.elapsed())) => break "time_limit",
            _ = view_at.tick() => {
                match refresh(&client, call, &names).await {
                    Ok(true) => {}
                    // Out of the call, or the credential no longer
                    // admits it: the job was stopped.
                    Ok(false) | Err(BotError::CallGone(_) | BotError::Refused(_)) => break "left_call",
                    // Control may be restarting: keep capturing.
                    Err(e) => tracing::warn!(error = %e, "bot: reading the call"),
                }
            }
            note = note_rx.recv() => match note {
                Some(Note::Answer(answer)) => {
                    send(&mut ws, &signal(ClientSignal::Answer { answer })).await?;
                }
                Some(Note::Connected) => out.connected = true,
                Some(Note::Frames(n)) => out.frames = n,
                // The media task ended: its error is reported below.
                None => break "media_ended",
            },
            msg = ws.next() => {
                let Some(Ok(msg)) = msg else {
                    return Err(BotError::Unreachable("control's WebSocket closed".into()));
                };
                let Message::Text(text) = msg else { continue };
                let Ok(ServerMessage::CallSignal { session_id, signal, .. }) =
                    serde_json::from_str::<ServerMessage>(&text)
                else {
                    continue;
                };
                if session_id != session {
                    continue;
                }
                let cmd = match signal {
                    ServerSignal::Answer { answer } => Command::Answer(answer.sdp),
                    ServerSignal::Offer { offer } => Command::Offer(offer),
                    // Host candidates come in the SDP; rtcd trickles none.
                    ServerSignal::Candidate { .. } => continue,
                    ServerSignal::Reconnect { reason } => {
                        return Err(BotError::Media(format!(
                            "control asked for a new connection ({reason:?}); the job starts over"
                        )));
                    }
                };
                if cmd_tx.send(cmd).await.is_err() {
                    break "media_ended";
                }
            }
        }
    };
    drop(cmd_tx);
    let _ = ws.close(None).await;
    let media = media.await;
    if let Some(c) = captioner {
        out.captions = c.finish().await;
    }
    match media {
        Ok(Ok(_writer)) => Ok(out),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(BotError::Media(format!("the media task failed: {e}"))),
    }
}

async fn send(ws: &mut control::Socket, msg: &ClientMessage) -> Result<(), BotError> {
    let text = serde_json::to_string(msg).map_err(|e| BotError::Setup(e.to_string()))?;
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|e| BotError::Unreachable(format!("control's WebSocket: {e}")))
}

/// Reads the call's view: refreshes session → name, and says whether the
/// bot is (or may still become) part of the call.
async fn refresh(
    client: &ControlClient,
    call: &signaling::CallId,
    names: &Names,
) -> Result<bool, BotError> {
    let view = client.view(call).await?;
    if let Ok(mut n) = names.lock() {
        for p in &view.call.participants {
            let name = view
                .names
                .get(&p.user_id)
                .cloned()
                .unwrap_or_else(|| p.user_id.clone());
            n.insert(p.session_id.to_string(), name);
        }
    }
    Ok(view.call.ended_at.is_none() && (view.session_id.is_none() || view.in_call))
}
