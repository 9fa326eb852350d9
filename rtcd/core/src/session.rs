//! One participant's peer connection and what rtcd knows about its media.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use signaling::media::{Permissions, TrackSource, VideoQuality};
use signaling::{CallId, SessionId};
use str0m::Rtc;
use str0m::change::SdpPendingOffer;
use str0m::format::PayloadParams;
use str0m::media::Pt;
use str0m::media::{MediaKind, Mid, Rid};
use str0m::rtp::Ssrc;

use crate::demux::SessionKey;
use crate::fanout::{Rewriter, pick_layer, rank_layers};
use crate::fasthash::FastMap;
use crate::sfu::Protocol;
use crate::vad::Vad;

/// How a session negotiates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionKind {
    /// Through control: the client offers first, rtcd renegotiates to add
    /// and remove the tracks it receives.
    Signaled,
    /// A WHIP publisher: one offer, one answer, never renegotiated.
    Whip,
    /// A WHEP player: its recvonly m-lines are bound to one publisher.
    Whep { publisher: Option<SessionId> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connectivity {
    Connecting,
    Connected,
    Disconnected(Instant),
}

/// A simulcast layer (or the only encoding) of a published track.
#[derive(Debug)]
pub(crate) struct Layer {
    pub rid: Option<Rid>,
    pub active: bool,
    window_start: Option<Instant>,
    window_bytes: u64,
    /// Bits per second over the last full window; 0 until measured.
    pub bitrate: u64,
    pub last_keyframe_request: Option<Instant>,
    /// A request that arrived within the interval, sent when it ends.
    pub keyframe_pending: Option<str0m::media::KeyframeRequestKind>,
}

const BITRATE_WINDOW: Duration = Duration::from_secs(1);

impl Layer {
    pub fn new(rid: Option<Rid>) -> Self {
        Layer {
            rid,
            active: true,
            window_start: None,
            window_bytes: 0,
            bitrate: 0,
            last_keyframe_request: None,
            keyframe_pending: None,
        }
    }

    pub fn observe(&mut self, now: Instant, bytes: usize) {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= BITRATE_WINDOW {
            self.bitrate = self.window_bytes * 8 * 1000 / elapsed.as_millis().max(1) as u64;
            self.window_start = Some(now);
            self.window_bytes = 0;
        }
        self.window_bytes += bytes as u64;
        self.active = true;
    }
}

/// A track this session publishes.
#[derive(Debug)]
pub(crate) struct InTrack {
    pub mid: Mid,
    pub kind: MediaKind,
    pub source: TrackSource,
    pub layers: Vec<Layer>,
    /// Who receives it: (subscriber, its m-line).
    pub subscribers: Vec<(SessionKey, Mid)>,
    pub active: bool,
    /// A packet that may be forwarded has arrived. Browsers declare
    /// transceivers for a camera or screen that is off and send nothing on
    /// them; offering those to everyone would give each of N participants
    /// 3(N-1) silent m-lines, each with its own sender reports.
    pub flowing: bool,
    /// Payload types seen on this track, with their codec.
    pub formats: Vec<(Pt, PayloadParams)>,
}

impl InTrack {
    /// Offered to subscribers: negotiated as sending, with media seen.
    pub fn live(&self) -> bool {
        self.active && self.flowing
    }

    pub fn ranked_layers(&self) -> Vec<usize> {
        let rids: Vec<Option<String>> = self
            .layers
            .iter()
            .map(|l| l.rid.map(|r| r.to_string()))
            .collect();
        let bitrates: Vec<u64> = self.layers.iter().map(|l| l.bitrate).collect();
        rank_layers(&rids, &bitrates)
    }

    pub fn layer_for(&self, quality: VideoQuality) -> Option<usize> {
        let active: Vec<bool> = self.layers.iter().map(|l| l.active).collect();
        pick_layer(&self.ranked_layers(), &active, quality)
    }
}

/// A track this session receives from another.
#[derive(Debug)]
pub(crate) struct OutTrack {
    pub kind: MediaKind,
    /// (publisher, index of its InTrack). `None` while unbound (a WHEP
    /// m-line waiting for a publisher, or a publisher that left).
    pub publisher: Option<(SessionKey, usize)>,
    pub quality: VideoQuality,
    pub current_layer: Option<usize>,
    pub target_layer: Option<usize>,
    pub rewriter: Rewriter,
    /// Last (incoming pt → outgoing pt) mapping, the common case cached.
    pub pt_map: Option<(Pt, Pt)>,
    /// rtcd added this m-line by renegotiation (so it may stop it).
    pub ours: bool,
    /// The window the outgoing stream's resend cache was last given; `None`
    /// before the first packet.
    pub resend_window: Option<Duration>,
}

impl OutTrack {
    pub fn new(kind: MediaKind, publisher: Option<(SessionKey, usize)>, ours: bool) -> Self {
        let clock = if kind == MediaKind::Audio {
            48_000
        } else {
            90_000
        };
        OutTrack {
            kind,
            publisher,
            quality: VideoQuality::Auto,
            current_layer: None,
            target_layer: None,
            rewriter: Rewriter::new(clock),
            pt_map: None,
            ours,
            resend_window: None,
        }
    }
}

/// An offer rtcd sent and awaits the answer to.
pub(crate) struct PendingOffer {
    pub negotiation: u64,
    pub offer: SdpPendingOffer,
    /// m-lines added: (mid, publisher, its InTrack index).
    pub added: Vec<(Mid, SessionKey, usize)>,
    pub stopped: Vec<Mid>,
    /// Credentials to install when the answer to an ICE restart arrives.
    pub ice_restart: Option<str0m::ice::IceCreds>,
}

pub(crate) struct Session {
    pub id: SessionId,
    pub call: CallId,
    pub kind: SessionKind,
    pub permissions: Permissions,
    pub rtc: Rtc,
    /// The current local ICE ufrag.
    pub ufrag: String,
    /// Every ufrag this session has had (ICE restarts), for routing cleanup.
    pub ufrags: Vec<String>,
    pub connectivity: Connectivity,
    pub created: Instant,
    pub remote_addrs: Vec<(Protocol, SocketAddr)>,
    pub muted: bool,
    pub video_enabled: bool,
    pub screen_enabled: bool,
    pub inputs: Vec<InTrack>,
    pub ssrc_map: HashMap<Ssrc, (usize, usize)>,
    pub outputs: FastMap<Mid, OutTrack>,
    /// What the client said each of its m-lines carries.
    pub declared: HashMap<String, TrackSource>,
    pub remote_described: bool,
    pub pending: Option<PendingOffer>,
    pub next_negotiation: u64,
    /// rtcd has changes to offer once the current negotiation completes.
    pub dirty: bool,
    pub vad: Vad,
    /// Last cumulative NACK count per outgoing m-line (str0m reports totals).
    pub egress_nacks: HashMap<Mid, u64>,
    /// Deadline of the str0m instance.
    pub rtc_deadline: Instant,
    /// The earliest entry this session has in the timer heap.
    pub scheduled: Option<Instant>,
    /// Has packets written since the last [`crate::Sfu::flush`].
    pub touched: bool,
}

impl Session {
    /// May this session's `source` be forwarded right now?
    pub fn may_forward(&self, source: TrackSource) -> bool {
        match source {
            TrackSource::Microphone => self.permissions.audio && !self.muted,
            TrackSource::Camera => self.permissions.video && self.video_enabled,
            TrackSource::ScreenVideo | TrackSource::ScreenAudio => {
                self.permissions.screen && self.screen_enabled
            }
        }
    }

    pub fn source_for(&self, mid: Mid, kind: MediaKind) -> TrackSource {
        match self.declared.get(&mid.to_string()) {
            Some(s) if s.is_audio() == (kind == MediaKind::Audio) => *s,
            _ if kind == MediaKind::Audio => TrackSource::Microphone,
            _ => TrackSource::Camera,
        }
    }

    pub fn connected(&self) -> bool {
        self.connectivity == Connectivity::Connected
    }
}

impl Session {
    /// Whether control allows this source at all (muted or not).
    pub fn permissions_allow(&self, source: TrackSource) -> bool {
        match source {
            TrackSource::Microphone => self.permissions.audio,
            TrackSource::Camera => self.permissions.video,
            TrackSource::ScreenVideo | TrackSource::ScreenAudio => self.permissions.screen,
        }
    }
}
