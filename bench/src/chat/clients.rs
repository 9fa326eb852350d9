//! The WebSocket clients: one tokio task per socket, all in this process.
//! Each says hello, then reads events until told to stop, recording for
//! every `post_created` the delivery delay (the post's pending id carries
//! its send time) and which post arrived with which seq, so the run can
//! check afterwards that every member got every post exactly once and in
//! order.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use signaling::events::{Event, ServerMessage};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::payload::{clock, ns_since_epoch};

/// Control must answer the hello within this long.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-socket read buffer: events are small, and ten thousand sockets
/// with tungstenite's 128 KiB default would cost the generator 1.3 GB.
const READ_BUFFER: usize = 8 << 10;

/// A post's pending id: its index and its send time (µs since the run's
/// epoch), which every receiver reads back.
pub fn pending_id(index: u32, sent_us: u64) -> String {
    format!("b{index}-{sent_us}")
}

/// The index and send time (µs) in a pending id made by [`pending_id`].
pub fn parse_pending_id(p: &str) -> Option<(u32, u64)> {
    let (i, t) = p.strip_prefix('b')?.split_once('-')?;
    Some((i.parse().ok()?, t.parse().ok()?))
}

/// What every socket adds to, shared.
pub struct Recorder {
    /// Delivery delay, µs (send → event read by the member's socket).
    pub delay_us: Mutex<hdrhistogram::Histogram<u64>>,
    /// The same, by the second (since the window started) the post was
    /// sent in.
    pub delay_by_second: Mutex<Vec<hdrhistogram::Histogram<u64>>>,
    /// Post events read, by every socket.
    pub deliveries: AtomicU64,
    /// Where the window starts, µs since the epoch (0 until it does).
    pub window_start_us: AtomicU64,
}

pub fn histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3)
        .expect("constant bounds (1 µs to 10 minutes, 3 digits) are valid")
}

impl Recorder {
    pub fn new(seconds: usize) -> Recorder {
        Recorder {
            delay_us: Mutex::new(histogram()),
            delay_by_second: Mutex::new((0..seconds.max(1)).map(|_| histogram()).collect()),
            deliveries: AtomicU64::new(0),
            window_start_us: AtomicU64::new(0),
        }
    }

    fn record(&self, sent_us: u64, now_us: u64) {
        let d = now_us.saturating_sub(sent_us).max(1);
        // A poisoned lock only means another socket task panicked mid-record:
        // the histogram is still usable.
        let _ = self
            .delay_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(d);
        let start = self.window_start_us.load(Ordering::Relaxed);
        let sec = (sent_us.saturating_sub(start) / 1_000_000) as usize;
        let mut by = self
            .delay_by_second
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(h) = by.get_mut(sec) {
            let _ = h.record(d);
        }
        self.deliveries.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one socket saw.
#[derive(Debug, Default)]
pub struct ClientLog {
    pub connected: bool,
    pub error: Option<String>,
    /// (post index, seq) of every bench post event read, in arrival order.
    pub posts: Vec<(u32, u64)>,
    /// Events whose seq was not above the one before.
    pub out_of_order: u64,
    /// Other durable events read after the hello (memberships etc.).
    pub other_events: u64,
    /// The socket was closed by control before the end.
    pub closed_early: bool,
}

/// Connects user `token`'s socket, says hello, reports `connected` (or the
/// error) through `ready`, then reads until `stop` turns true.
pub async fn run_client(
    addr: SocketAddr,
    token: String,
    recorder: &Recorder,
    ready: tokio::sync::mpsc::UnboundedSender<Result<(), String>>,
    mut stop: watch::Receiver<bool>,
) -> ClientLog {
    let mut log = ClientLog::default();
    let mut ws = match connect(addr, &token).await {
        Ok(ws) => ws,
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            log.error = Some(e);
            return log;
        }
    };
    log.connected = true;
    let _ = ready.send(Ok(()));
    let mut last_seq = 0u64;
    loop {
        let msg = tokio::select! {
            biased;
            m = ws.next() => m,
            _ = stop.changed() => break,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None => {
                log.closed_early = true;
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                log.closed_early = true;
                log.error = Some(e.to_string());
                break;
            }
        };
        let now_us = ns_since_epoch(clock()) / 1_000;
        let Ok(ServerMessage::Event { seq, event }) = serde_json::from_str(&text) else {
            continue;
        };
        if seq <= last_seq {
            log.out_of_order += 1;
        }
        last_seq = last_seq.max(seq);
        match event {
            Event::PostCreated { post } => {
                match post.pending_id.as_deref().and_then(parse_pending_id) {
                    Some((index, sent_us)) => {
                        recorder.record(sent_us, now_us);
                        log.posts.push((index, seq));
                    }
                    None => log.other_events += 1,
                }
            }
            _ => log.other_events += 1,
        }
    }
    let _ = ws.close(None).await;
    log
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr, token: &str) -> Result<Ws, String> {
    let mut req = format!("ws://{addr}/api/v1/websocket")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let auth = format!("Bearer {token}").parse().map_err(
        |e: tokio_tungstenite::tungstenite::http::header::InvalidHeaderValue| e.to_string(),
    )?;
    req.headers_mut().insert("authorization", auth);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), true)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    ws.send(Message::Text(
        serde_json::json!({"type": "hello", "version": signaling::events::EVENTS_VERSION})
            .to_string()
            .into(),
    ))
    .await
    .map_err(|e| format!("hello: {e}"))?;
    let answer = tokio::time::timeout(HELLO_TIMEOUT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return Ok(t),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("hello answer: {e}")),
                None => return Err("closed before the hello answer".to_string()),
            }
        }
    })
    .await
    .map_err(|_| "no hello answer in 30 s".to_string())??;
    match serde_json::from_str::<ServerMessage>(&answer) {
        Ok(ServerMessage::Hello { .. }) => Ok(ws),
        _ => Err(format!("unexpected hello answer: {answer}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_ids_round_trip() {
        assert_eq!(
            parse_pending_id(&pending_id(42, 123_456)),
            Some((42, 123_456))
        );
        assert_eq!(parse_pending_id("x1-2"), None);
        assert_eq!(parse_pending_id("b1"), None);
        assert!(pending_id(u32::MAX, u64::MAX).len() <= 64);
    }
}
