//! What a client needs from control to join a call, and the media
//! negotiation messages relayed over the client's control WebSocket.
//!
//! Control stays the only server a client talks to for signaling: it
//! forwards these to and from the rtcd node that hosts the call (see
//! [`crate::rtcd`]).

use serde::{Deserialize, Serialize};

use crate::ids::{CallId, SessionId};
use crate::media::{IceCandidate, Sdp, TrackDeclaration, TrackSource, VideoQuality};

/// Control's answer to a successful join request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinInfo {
    pub call_id: CallId,
    pub session_id: SessionId,
    /// STUN/TURN servers inside the operator's network; empty when rtcd is
    /// reachable directly. Never a public server.
    #[serde(default)]
    pub ice_servers: Vec<IceServer>,
}

/// `RTCIceServer` as the browser takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Client → control, for its session in a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientSignal {
    Offer {
        offer: Sdp,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tracks: Vec<TrackDeclaration>,
    },
    Answer {
        answer: Sdp,
    },
    Candidate {
        candidate: IceCandidate,
    },
    IceRestart,
    SetQuality {
        publisher: SessionId,
        source: TrackSource,
        quality: VideoQuality,
    },
}

/// Control → client, for its session in a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerSignal {
    Offer { offer: Sdp },
    Answer { answer: Sdp },
    Candidate { candidate: IceCandidate },
}
