//! Calls as a client sees them: what control reports about a call and its
//! participants, what a client needs to join one, and the media
//! negotiation messages relayed over the client's control WebSocket.
//!
//! Control stays the only server a client talks to for signaling: it
//! forwards these to and from the rtcd node that hosts the call (see
//! [`crate::rtcd`]).
//!
//! The conversation of a join:
//!
//! 1. `POST /api/v1/channels/{id}/call` starts the channel's call, or joins
//!    the running one, and returns [`JoinInfo`] with a fresh session id.
//! 2. The client sends [`ClientSignal::Offer`] in a
//!    `ClientMessage::CallSignal` on its control WebSocket; the answer and
//!    rtcd's candidates come back as [`ServerSignal`]s in
//!    `ServerMessage::CallSignal`. rtcd may later offer (new tracks to
//!    receive); the client answers with the same negotiation number.
//! 3. Participant changes arrive as durable call events (`call_*` in
//!    [`crate::events::Event`]); voice activity and reactions as ephemeral
//!    messages.
//! 4. [`ServerSignal::Reconnect`] means the session's media must start
//!    over (its rtcd node died or drained and control moved the call):
//!    close the peer connection and send a fresh offer for the same
//!    session. The call, the participants and their states carry on.

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
    /// The call as it is after this join (absent from older servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<CallInfo>,
}

/// A call in a channel. At most one call runs per channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallInfo {
    pub id: CallId,
    pub channel_id: String,
    /// The user who started it (its first host).
    pub started_by: String,
    pub started_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
    /// The post in the channel that stands for the call; the call's
    /// thread hangs off it and it shows the duration once the call ends.
    pub post_id: String,
    /// The people in the call now, in the order they joined.
    #[serde(default)]
    pub participants: Vec<Participant>,
    /// Limit of participants (the operator's `[calls] max_participants`).
    pub max_participants: u32,
    /// A recording runs (the offloader sets it).
    #[serde(default)]
    pub recording: bool,
}

/// One session in a call. A user with two clients in the call has two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub session_id: SessionId,
    pub user_id: String,
    pub joined_at: i64,
    #[serde(default)]
    pub host: bool,
    /// Microphone not forwarded (rtcd enforces it).
    #[serde(default)]
    pub muted: bool,
    #[serde(default)]
    pub camera: bool,
    /// Sharing the screen; at most one participant per call.
    #[serde(default)]
    pub screen: bool,
    #[serde(default)]
    pub hand_raised: bool,
    /// Media connected through rtcd (ICE and DTLS up).
    #[serde(default)]
    pub connected: bool,
    /// A receive-only bot (the recorder, the captioner): shown as the
    /// call's recording state, not as a person; never a host, never
    /// counted against the call's size.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bot: bool,
}

/// A participant's own change (`PATCH /api/v1/calls/{call}/sessions/{session}`).
/// Fields left out stay as they are. A host may change another
/// participant only towards less: `muted: true`, `screen: false`,
/// `camera: false`, `hand_raised: false`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand_raised: Option<bool>,
}

/// Why a participant is no longer in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// The participant left.
    Left,
    /// A host removed them; they cannot rejoin this call.
    Removed,
    /// Their media did not come back within the reconnect window.
    Disconnected,
    /// The call ended.
    CallEnded,
}

/// Why a ringing stopped for one callee of a direct or group call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RingEnd {
    Joined,
    Declined,
    /// Nobody answered within the ring timeout.
    Timeout,
    CallEnded,
}

/// Why a session's media must start over ([`ServerSignal::Reconnect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconnectReason {
    /// The rtcd node hosting the call stopped answering; the call moved.
    NodeFailed,
    /// The node is draining; the call moved.
    NodeDrained,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerSignal {
    Offer {
        offer: Sdp,
    },
    Answer {
        answer: Sdp,
    },
    Candidate {
        candidate: IceCandidate,
    },
    /// Close the peer connection and send a fresh [`ClientSignal::Offer`]
    /// (negotiation 0) for the same session.
    Reconnect {
        reason: ReconnectReason,
    },
}
