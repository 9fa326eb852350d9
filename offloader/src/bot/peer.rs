//! The bot's peer connection: str0m, receive-only, on a UDP socket of its
//! own, driven by one task. Every whole frame it receives goes into the
//! job's capture log with its arrival time and RTP time; rtcd's offers
//! say, in each m-line's `msid`, whose track it is.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use signaling::media::Sdp;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec as RtcCodec;
use str0m::media::{Direction, MediaData, MediaKind as RtcKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::BotError;
use super::captions::Heard;
use crate::record::CaptureWriter;
use crate::record::capture::{Codec, MediaKind, Source, TrackMeta};
use std::sync::mpsc::SyncSender;

/// How much capture a crash may lose: the log is made durable this often.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// What the negotiation side asks of the peer.
pub enum Command {
    /// rtcd's answer to our offer.
    Answer(String),
    /// rtcd offers new or changed tracks: answer it (with its number).
    Offer(Sdp),
}

/// What the peer tells the negotiation side.
pub enum Note {
    Answer(Sdp),
    Connected,
    /// Frames so far, for progress.
    Frames(u64),
}

/// Who is behind each session, refreshed from the call's view.
pub type Names = Arc<Mutex<HashMap<String, String>>>;

pub struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    /// mid → (publisher session, source), from rtcd's offers.
    owners: HashMap<Mid, (String, Source)>,
    /// mid → capture track id, once its first frame came.
    tracks: HashMap<Mid, u32>,
    next_track: u32,
    writer: CaptureWriter,
    names: Names,
    frames: u64,
    /// Audio for live captions, when the job makes them.
    heard: Option<SyncSender<Heard>>,
    joined: Instant,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Peer {
    /// A peer on `ip` (an address rtcd can reach) and its first offer: one
    /// receive-only audio m-line, so rtcd has something to answer; every
    /// track comes in rtcd's own offers after that.
    pub async fn new(
        ip: IpAddr,
        writer: CaptureWriter,
        next_track: u32,
        names: Names,
        heard: Option<SyncSender<Heard>>,
    ) -> Result<(Peer, String), BotError> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
            .await
            .map_err(|e| BotError::Setup(format!("media socket on {ip}: {e}")))?;
        let local = socket
            .local_addr()
            .map_err(|e| BotError::Setup(e.to_string()))?;
        let mut rtc = Rtc::builder().build(Instant::now());
        let cand = Candidate::host(local, "udp").map_err(|e| BotError::Setup(e.to_string()))?;
        rtc.add_local_candidate(cand);
        let mut api = rtc.sdp_api();
        api.add_media(RtcKind::Audio, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| BotError::Setup("the first offer is empty".into()))?;
        Ok((
            Peer {
                rtc,
                socket,
                local,
                pending: Some(pending),
                owners: HashMap::new(),
                tracks: HashMap::new(),
                next_track,
                writer,
                names,
                frames: 0,
                heard,
                joined: Instant::now(),
            },
            offer.to_sdp_string(),
        ))
    }

    /// Runs until `commands` closes or the connection fails; returns the
    /// capture writer, flushed.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        notes: mpsc::Sender<Note>,
    ) -> Result<CaptureWriter, BotError> {
        let mut buf = vec![0u8; 65_536];
        let mut last_flush = Instant::now();
        loop {
            let deadline = self.drain(&notes)?;
            let wait = deadline.saturating_duration_since(Instant::now());
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(c) => self.command(c, &notes).await?,
                    None => break,
                },
                r = self.socket.recv_from(&mut buf) => {
                    let (n, source) = r.map_err(|e| BotError::Media(e.to_string()))?;
                    if let Ok(contents) = buf[..n].try_into() {
                        let input = Input::Receive(Instant::now(), Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: self.local,
                            contents,
                        });
                        // A packet str0m cannot take is dropped, not fatal.
                        if let Err(e) = self.rtc.handle_input(input) {
                            tracing::debug!(error = %e, "bot: packet refused");
                        }
                    }
                }
                _ = tokio::time::sleep(wait) => {
                    self.rtc
                        .handle_input(Input::Timeout(Instant::now()))
                        .map_err(|e| BotError::Media(e.to_string()))?;
                }
            }
            if last_flush.elapsed() >= FLUSH_EVERY {
                self.writer.flush().map_err(BotError::Capture)?;
                last_flush = Instant::now();
                let _ = notes.try_send(Note::Frames(self.frames));
            }
        }
        self.writer.flush().map_err(BotError::Capture)?;
        Ok(self.writer)
    }

    async fn command(&mut self, c: Command, notes: &mpsc::Sender<Note>) -> Result<(), BotError> {
        match c {
            Command::Answer(sdp) => {
                let answer = SdpAnswer::from_sdp_string(&sdp)
                    .map_err(|e| BotError::Media(format!("rtcd's answer: {e}")))?;
                let pending = self
                    .pending
                    .take()
                    .ok_or_else(|| BotError::Media("an answer with no offer pending".into()))?;
                self.rtc
                    .sdp_api()
                    .accept_answer(pending, answer)
                    .map_err(|e| BotError::Media(format!("rtcd's answer: {e}")))?;
            }
            Command::Offer(Sdp { sdp, negotiation }) => {
                self.owners.extend(owners(&sdp));
                let offer = SdpOffer::from_sdp_string(&sdp)
                    .map_err(|e| BotError::Media(format!("rtcd's offer: {e}")))?;
                let answer = self
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .map_err(|e| BotError::Media(format!("rtcd's offer: {e}")))?;
                let answer = Sdp {
                    sdp: answer.to_sdp_string(),
                    negotiation,
                };
                let _ = notes.send(Note::Answer(answer)).await;
            }
        }
        Ok(())
    }

    /// Lets str0m say everything it has to; returns its next deadline.
    fn drain(&mut self, notes: &mpsc::Sender<Note>) -> Result<Instant, BotError> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Ok(t),
                Ok(Output::Transmit(t)) => {
                    // UDP: a send that fails is a lost packet.
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::Connected)) => {
                    let _ = notes.try_send(Note::Connected);
                }
                Ok(Output::Event(Event::MediaData(d))) => self.frame(d)?,
                Ok(Output::Event(_)) => {}
                Err(e) => return Err(BotError::Media(e.to_string())),
            }
        }
    }

    fn frame(&mut self, d: MediaData) -> Result<(), BotError> {
        let track = match self.tracks.get(&d.mid) {
            Some(t) => *t,
            None => {
                let Some(meta) = self.meta(&d) else {
                    return Ok(());
                };
                let id = meta.id;
                self.writer.track(meta).map_err(BotError::Capture)?;
                self.tracks.insert(d.mid, id);
                id
            }
        };
        self.frames += 1;
        if let Some(heard) = &self.heard
            && let Some(session) = self.audio_session(&d)
        {
            // Full: captions fall behind, so this frame is skipped.
            let _ = heard.try_send(Heard {
                session,
                at_ms: self.joined.elapsed().as_millis() as u64,
                opus: d.data.clone(),
            });
        }
        self.writer
            .frame(track, now_us(), d.time.numer(), d.is_keyframe(), &d.data)
            .map_err(BotError::Capture)
    }

    /// The speaker of an Opus frame (microphone tracks only).
    fn audio_session(&self, d: &MediaData) -> Option<String> {
        if d.params.spec().codec != RtcCodec::Opus {
            return None;
        }
        match self.owners.get(&d.mid) {
            Some((session, Source::Microphone)) => Some(session.clone()),
            _ => None,
        }
    }

    /// A new track's description, or None for one we do not record.
    fn meta(&mut self, d: &MediaData) -> Option<TrackMeta> {
        let (kind, codec) = match d.params.spec().codec {
            RtcCodec::Opus => (MediaKind::Audio, Codec::Opus),
            RtcCodec::Vp8 => (MediaKind::Video, Codec::Vp8),
            RtcCodec::Vp9 => (MediaKind::Video, Codec::Vp9),
            RtcCodec::H264 => (MediaKind::Video, Codec::H264),
            _ => return None,
        };
        let (session, source) = self.owners.get(&d.mid).cloned().unwrap_or_else(|| {
            let source = if kind == MediaKind::Audio {
                Source::Microphone
            } else {
                Source::Camera
            };
            (format!("unknown-{}", d.mid), source)
        });
        let speaker = self
            .names
            .lock()
            .map(|n| n.get(&session).cloned())
            .ok()
            .flatten()
            .unwrap_or_else(|| session.clone());
        let id = self.next_track;
        self.next_track += 1;
        Some(TrackMeta {
            id,
            kind,
            codec,
            clock_rate: d.time.denom(),
            source,
            session_id: session,
            speaker,
            started_us: now_us(),
        })
    }
}

/// mid → (publisher session, source) from an SDP's `a=msid:<session>
/// <session>-<source>` lines.
fn owners(sdp: &str) -> Vec<(Mid, (String, Source))> {
    let mut out = Vec::new();
    let mut mid: Option<String> = None;
    for line in sdp.lines() {
        if line.starts_with("m=") {
            mid = None;
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.trim().to_owned());
        } else if let (Some(rest), Some(m)) = (line.strip_prefix("a=msid:"), &mid) {
            let mut parts = rest.split_whitespace();
            let (Some(stream), Some(track)) = (parts.next(), parts.next()) else {
                continue;
            };
            // `-`: a track in no stream, nobody's.
            if stream == "-" {
                continue;
            }
            let source = match track
                .strip_prefix(stream)
                .map(|s| s.trim_start_matches('-'))
            {
                Some("camera") => Source::Camera,
                Some("screen_video") | Some("screen_audio") => Source::Screen,
                _ => Source::Microphone,
            };
            out.push((Mid::from(m.as_str()), (stream.to_owned(), source)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_come_from_msid_lines() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=msid:s1 s1-camera\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=msid:s2 s2-microphone\r\nm=video 9 x 96\r\na=mid:3\r\na=msid:- -\r\n";
        let o = owners(sdp);
        assert_eq!(
            o.len(),
            2,
            "{:?}",
            o.iter().map(|(m, _)| m.to_string()).collect::<Vec<_>>()
        );
        assert_eq!(o[0].1, ("s1".to_owned(), Source::Camera));
        assert_eq!(o[1].1, ("s2".to_owned(), Source::Microphone));
    }
}
