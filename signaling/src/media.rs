//! Media vocabulary shared by every conversation.

use serde::{Deserialize, Serialize};

/// Where a track comes from. rtcd enforces mute and screen-off per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    Microphone,
    Camera,
    ScreenVideo,
    ScreenAudio,
}

impl TrackSource {
    pub fn is_audio(self) -> bool {
        matches!(self, TrackSource::Microphone | TrackSource::ScreenAudio)
    }

    pub fn is_screen(self) -> bool {
        matches!(self, TrackSource::ScreenVideo | TrackSource::ScreenAudio)
    }
}

/// A client's declaration of what the m-line `mid` of its offer carries.
/// m-lines it does not declare default to microphone (audio) or camera (video).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackDeclaration {
    pub mid: String,
    pub source: TrackSource,
}

/// Simulcast quality a subscriber asks for. `Auto` lets rtcd pick from the
/// subscriber's bandwidth estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VideoQuality {
    Low,
    Medium,
    High,
    #[default]
    Auto,
}

/// What a session may do. Control decides; rtcd enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    /// May send microphone audio.
    pub audio: bool,
    /// May send camera video.
    pub video: bool,
    /// May send a screen share (video and its audio).
    pub screen: bool,
    /// Receives the other participants' media.
    pub subscribe: bool,
}

impl Permissions {
    /// A full participant.
    pub const PARTICIPANT: Permissions = Permissions {
        audio: true,
        video: true,
        screen: true,
        subscribe: true,
    };

    /// A receive-only participant, e.g. the recording bot.
    pub const RECEIVE_ONLY: Permissions = Permissions {
        audio: false,
        video: false,
        screen: false,
        subscribe: true,
    };
}

impl Default for Permissions {
    fn default() -> Self {
        Self::PARTICIPANT
    }
}

/// An ICE candidate as browsers exchange it (`RTCIceCandidateInit`).
/// An empty `candidate` marks the end of candidates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u16>,
}

/// An SDP offer or answer, with the number of the negotiation it belongs to.
///
/// Negotiations started by rtcd are numbered per session; a client answers
/// with the same number, and an answer to a superseded offer is ignored.
/// Client-initiated offers carry `0` and are answered with `0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sdp {
    pub sdp: String,
    #[serde(default)]
    pub negotiation: u64,
}
