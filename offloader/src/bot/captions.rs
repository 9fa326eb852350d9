//! Live captions: each speaker's Opus frames, as the bot receives them,
//! decoded to 16 kHz and fed to Whisper ([`LiveCaptions`]); every caption
//! goes to control, which relays it to the call. The decoding and the
//! transcription run on a thread of their own, so the bot's media loop
//! never waits for Whisper.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use signaling::CallId;
use signaling::ids::SessionId;
use signaling::jobs::Caption;
use tokio::sync::mpsc;

use super::ControlClient;
use crate::record::OpusDecoder;
use crate::transcribe::{Engine, LiveCaptions};

/// One received audio frame: whose, when (ms since the bot joined).
pub struct Heard {
    pub session: String,
    pub at_ms: u64,
    pub opus: Arc<[u8]>,
}

/// Captions going out: `heard` feeds it; it stops when `heard` closes.
pub struct Captioner {
    pub heard: std_mpsc::SyncSender<Heard>,
    thread: std::thread::JoinHandle<()>,
    poster: tokio::task::JoinHandle<u64>,
}

/// Quiet this long feeds silence to every speaker.
const IDLE: Duration = Duration::from_millis(200);

/// Frames waiting for the captioner; beyond this the newest are dropped
/// (captions late are worth less than captions now).
const BACKLOG: usize = 2000;

impl Captioner {
    pub fn start(
        engine: Arc<Engine>,
        language: Option<String>,
        client: ControlClient,
        call: CallId,
    ) -> Captioner {
        let (heard, rx) = std_mpsc::sync_channel::<Heard>(BACKLOG);
        let (out_tx, mut out_rx) = mpsc::channel::<Caption>(64);
        let thread = std::thread::spawn(move || run(engine, language, rx, out_tx));
        let poster = tokio::spawn(async move {
            let mut sent = 0;
            while let Some(c) = out_rx.recv().await {
                match client.caption(&call, &c).await {
                    Ok(()) => sent += 1,
                    // A caption that cannot go out is dropped: the next
                    // one matters more than a retry of this one.
                    Err(e) => tracing::warn!(error = %e, "caption not delivered"),
                }
            }
            sent
        });
        Captioner {
            heard,
            thread,
            poster,
        }
    }

    /// Stops after the last frame fed; returns the captions delivered.
    pub async fn finish(self) -> u64 {
        drop(self.heard);
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
        self.poster.await.unwrap_or(0)
    }
}

fn run(
    engine: Arc<Engine>,
    language: Option<String>,
    rx: std_mpsc::Receiver<Heard>,
    out: mpsc::Sender<Caption>,
) {
    let mut live = match LiveCaptions::new(engine, language.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "live captions cannot start");
            return;
        }
    };
    let mut decoders: HashMap<String, OpusDecoder> = HashMap::new();
    let send = |cs: Vec<crate::transcribe::Caption>| {
        for c in cs {
            let Ok(session_id) = SessionId::new(c.speaker) else {
                continue;
            };
            let _ = out.blocking_send(Caption {
                session_id,
                start_ms: c.start_ms,
                end_ms: c.end_ms,
                text: c.text,
            });
        }
    };
    // Where each speaker's audio has reached (ms): silence is fed from
    // there when nothing comes (a sender's DTX sends nothing), so the
    // voice detector sees the utterance end and its caption goes out.
    let mut reached: HashMap<String, u64> = HashMap::new();
    let mut last_frame = Instant::now();
    loop {
        match rx.recv_timeout(IDLE) {
            Ok(h) => {
                last_frame = Instant::now();
                let dec = match decoders.entry(h.session.clone()) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(v) => match OpusDecoder::new(16_000) {
                        Ok(d) => v.insert(d),
                        Err(e) => {
                            tracing::warn!(error = %e, "no Opus decoder");
                            return;
                        }
                    },
                };
                // A frame that does not decode is a lost frame.
                let Ok(pcm) = dec.decode(&h.opus) else {
                    continue;
                };
                reached.insert(h.session.clone(), h.at_ms + pcm.len() as u64 / 16);
                match live.push(&h.session, h.at_ms, &pcm) {
                    Ok(cs) => send(cs),
                    Err(e) => tracing::warn!(error = %e, "live captions"),
                }
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                if last_frame.elapsed() >= IDLE {
                    let ms = IDLE.as_millis() as u64;
                    let silence = vec![0.0f32; (ms * 16) as usize];
                    for (s, at) in reached.iter_mut() {
                        if let Ok(cs) = live.push(s, *at, &silence) {
                            send(cs);
                        }
                        *at += ms;
                    }
                }
                if let Ok(cs) = live.poll() {
                    send(cs);
                }
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Ok(cs) = live.finish() {
        send(cs);
    }
}
