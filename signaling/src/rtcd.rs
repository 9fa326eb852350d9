//! control ⇄ rtcd: one authenticated WebSocket per control node.
//!
//! The control node authenticates on the HTTP upgrade (`Authorization:
//! Bearer <key>`), then sends [`ToRtcd::Hello`]; rtcd answers
//! [`FromRtcd::Welcome`] or closes. After that both sides stream messages.
//! Requests that can fail name the call or session they concern and, when
//! the sender set one, echo its `request` number in [`FromRtcd::Error`].

use serde::{Deserialize, Serialize};

use crate::ids::{CallId, SessionId};
use crate::media::{IceCandidate, Permissions, Sdp, TrackDeclaration, TrackSource, VideoQuality};

/// Messages from a control node to rtcd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ToRtcd {
    /// First message on a connection.
    Hello { version: u32, node_id: String },
    /// Make room for a call on this node. Idempotent.
    CreateCall {
        call_id: CallId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<u64>,
    },
    /// End a call: every session in it is closed.
    EndCall {
        call_id: CallId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<u64>,
    },
    /// Admit a participant. rtcd creates the session and waits for its offer.
    AddSession {
        call_id: CallId,
        session_id: SessionId,
        #[serde(default)]
        permissions: Permissions,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<u64>,
    },
    /// Remove a participant: its media stops at once.
    RemoveSession {
        session_id: SessionId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<u64>,
    },
    /// The client's SDP offer (negotiation 0), with what each m-line carries.
    Offer {
        session_id: SessionId,
        offer: Sdp,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tracks: Vec<TrackDeclaration>,
    },
    /// The client's answer to an offer rtcd made.
    Answer { session_id: SessionId, answer: Sdp },
    /// A trickled ICE candidate from the client.
    Candidate {
        session_id: SessionId,
        candidate: IceCandidate,
    },
    /// Server-enforced: a muted session's microphone is not forwarded.
    SetMuted { session_id: SessionId, muted: bool },
    /// Server-enforced: camera forwarding on or off.
    SetVideo {
        session_id: SessionId,
        enabled: bool,
    },
    /// Server-enforced: screen share (video and its audio) on or off.
    SetScreen {
        session_id: SessionId,
        enabled: bool,
    },
    /// A subscriber picks the simulcast quality of one publisher's video.
    SetQuality {
        session_id: SessionId,
        publisher: SessionId,
        source: TrackSource,
        quality: VideoQuality,
    },
    /// The client's network changed: rtcd offers new ICE credentials.
    IceRestart { session_id: SessionId },
    /// Ask for a [`FromRtcd::Load`] now.
    GetLoad,
    /// Ask which calls the node holds ([`FromRtcd::Calls`]), e.g. after a
    /// reconnection, to end copies of calls that moved away meanwhile.
    /// Nodes older than this message answer `bad_message`.
    ListCalls,
}

/// Messages from rtcd to a control node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FromRtcd {
    Welcome {
        version: u32,
        node_id: String,
        load: NodeLoad,
    },
    /// Answer to a client offer.
    Answer {
        session_id: SessionId,
        answer: Sdp,
    },
    /// rtcd renegotiates: new tracks to receive, ICE restart.
    Offer {
        session_id: SessionId,
        offer: Sdp,
    },
    /// A local candidate rtcd gathered after its SDP (e.g. ICE-TCP).
    Candidate {
        session_id: SessionId,
        candidate: IceCandidate,
    },
    SessionState {
        session_id: SessionId,
        state: SessionState,
    },
    /// A publisher started or stopped a track.
    Track {
        session_id: SessionId,
        source: TrackSource,
        active: bool,
    },
    /// Voice activity from the audio-level header extension, with hysteresis.
    VoiceActivity {
        session_id: SessionId,
        speaking: bool,
    },
    CallEnded {
        call_id: CallId,
    },
    Load(NodeLoad),
    /// Answer to [`ToRtcd::ListCalls`]: every call the node holds.
    Calls {
        calls: Vec<CallId>,
    },
    Error(RtcdError),
}

/// Connection state of one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SessionState {
    /// Created, waiting for ICE and DTLS.
    Connecting,
    /// ICE and DTLS up; media may flow.
    Connected,
    /// Connectivity lost; rtcd keeps the session until its timeout.
    Disconnected,
    /// Gone for good.
    Closed { reason: CloseReason },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Control removed it.
    Removed,
    /// The call ended.
    CallEnded,
    /// No connectivity within the timeout.
    Timeout,
    /// The peer closed DTLS.
    PeerClosed,
    /// rtcd's drain deadline passed.
    Drained,
    /// An internal error in this session's WebRTC stack; others unharmed.
    Failed,
}

/// How busy a node is. Control places new calls on the least-loaded
/// healthy node and none on a draining one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NodeLoad {
    pub calls: u32,
    pub sessions: u32,
    pub workers: u32,
    /// Fraction of the workers' wall time spent working, 0.0..=1.0 each, summed.
    pub cpu: f32,
    pub draining: bool,
    /// While draining: milliseconds left, as of this report, before the
    /// node's drain deadline closes the calls it still holds. Relative, so
    /// the two machines' clocks need not agree. Absent when not draining
    /// and from nodes older than this field (control then leaves their
    /// calls in place until they end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_remaining_ms: Option<u64>,
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtcdError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<CallId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The message was not valid JSON or not a known message.
    BadMessage,
    /// Unsupported protocol version.
    Version,
    UnknownCall,
    UnknownSession,
    /// The id is already in use by another call or session.
    Conflict,
    /// The SDP could not be parsed or negotiated.
    BadSdp,
    BadCandidate,
    /// The node is draining and takes no new calls.
    Draining,
    /// A limit (sessions, calls, message size) would be exceeded.
    Limit,
    Internal,
}
