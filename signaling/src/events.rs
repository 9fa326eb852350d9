//! Client ⇄ control: the chat event stream carried over the client's one
//! control WebSocket, and the chat objects the REST API returns.
//!
//! The conversation:
//!
//! 1. The client opens the socket (authenticated by its session cookie or
//!    bearer token) and sends [`ClientMessage::Hello`], with a [`Resume`]
//!    when it reconnects.
//! 2. Control answers [`ServerMessage::Hello`] with the connection's id
//!    and the newest sequence number. On a resume within the replay
//!    window it then sends every event the client missed, in order;
//!    beyond the window it sends [`ServerMessage::Resync`] and the client
//!    reloads what it shows over REST.
//! 3. Durable events arrive as [`ServerMessage::Event`] with `seq`, which
//!    is global, strictly increasing and gap-free for what a client may
//!    read: a client keeps the last `seq` it handled and resumes from it.
//!    Ephemeral ones (typing, presence) carry no `seq`, are never replayed
//!    and are the first to be dropped for a slow socket.
//!
//! Every message is JSON, internally tagged by `"type"` in `snake_case`.
//! [`EVENTS_VERSION`] is exchanged in the hellos; control refuses a version
//! it does not speak. Times are Unix milliseconds; ids are control's opaque
//! strings.

use serde::{Deserialize, Serialize};

use crate::call::{CallInfo, ClientSignal, LeaveReason, Participant, RingEnd, ServerSignal};
use crate::ids::{CallId, SessionId};

/// Version of the client ⇄ control event protocol. Bump on any
/// incompatible change.
pub const EVENTS_VERSION: u32 = 1;

/// What a client sends on its control WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Hello {
        version: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<Resume>,
    },
    Ping {
        nonce: u64,
    },
    /// The user is typing in a channel (or a thread of it).
    Typing {
        channel_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root_id: Option<String>,
    },
    /// Media negotiation for one of this user's sessions in a call.
    CallSignal {
        call_id: CallId,
        session_id: SessionId,
        signal: ClientSignal,
    },
}

/// Where a reconnecting client left off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The id of the connection that dropped, from its hello.
    pub connection_id: String,
    /// The last `seq` the client handled.
    pub last_seq: u64,
}

/// What control sends on a client's WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(
    clippy::large_enum_variant,
    reason = "`Event` is the common variant, and a message is built and serialised at once, \
              never held in bulk: boxing would add an allocation to most messages to save none"
)]
pub enum ServerMessage {
    Hello {
        version: u32,
        connection_id: String,
        /// The newest sequence number at the time of the hello.
        last_seq: u64,
        /// True when the missed events follow; false on a fresh start or
        /// when a resync follows.
        resumed: bool,
    },
    Event {
        seq: u64,
        event: Event,
    },
    /// The missed events cannot be replayed: reload over REST, then carry
    /// on from the hello's `last_seq`.
    Resync {
        reason: ResyncReason,
    },
    Pong {
        nonce: u64,
    },
    /// Ephemeral: someone is typing.
    Typing {
        channel_id: String,
        user_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root_id: Option<String>,
    },
    /// Ephemeral: someone's presence changed.
    Presence {
        user_id: String,
        status: PresenceStatus,
    },
    /// Media negotiation for one of this client's sessions in a call.
    CallSignal {
        call_id: CallId,
        session_id: SessionId,
        signal: ServerSignal,
    },
    /// Ephemeral: a participant started or stopped speaking (from rtcd).
    CallVoice {
        call_id: CallId,
        session_id: SessionId,
        speaking: bool,
    },
    /// Ephemeral: an emoji reaction in a call.
    CallReaction {
        call_id: CallId,
        session_id: SessionId,
        user_id: String,
        emoji: String,
    },
    /// Ephemeral: a live caption of what a participant just said.
    CallCaption {
        call_id: CallId,
        session_id: SessionId,
        user_id: String,
        /// Milliseconds since the captioner joined the call.
        start_ms: u64,
        end_ms: u64,
        text: String,
    },
    /// The last message before control closes the socket.
    Closing {
        reason: CloseReason,
    },
    /// A client message was refused; the socket stays open.
    Error {
        code: String,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResyncReason {
    /// The client's last seq is older than the replay window.
    OutsideWindow,
    /// The client's last seq is newer than anything control knows.
    UnknownSeq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The socket fell too far behind; reconnect and resume.
    TooSlow,
    /// The session ended (logout, revocation, timeout).
    SessionEnded,
    /// The node is shutting down; reconnect (to another node) and resume.
    ServerShutdown,
    /// The client broke the protocol (bad hello, unknown version).
    ProtocolError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    Online,
    /// Connected but idle, or set by the user.
    Away,
    /// Do not disturb: connected, set by the user.
    Dnd,
    Offline,
}

/// A durable event: stored with a sequence number and replayable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    PostCreated {
        post: Post,
    },
    PostEdited {
        post: Post,
    },
    PostDeleted {
        post_id: String,
        channel_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root_id: Option<String>,
    },
    ReactionAdded {
        reaction: Reaction,
        channel_id: String,
    },
    ReactionRemoved {
        reaction: Reaction,
        channel_id: String,
    },
    PostPinned {
        post_id: String,
        channel_id: String,
        pinned: bool,
    },
    ChannelCreated {
        channel: Channel,
    },
    MemberJoined {
        channel_id: String,
        user_id: String,
    },
    MemberLeft {
        channel_id: String,
        user_id: String,
    },
    /// The user read a channel (on any of their clients): clear its counts.
    ChannelViewed {
        channel_id: String,
        user_id: String,
    },
    /// A call started in a channel. In a direct or group channel the
    /// other members' clients ring until a `call_ring_ended` for them.
    CallStarted {
        call: CallInfo,
    },
    CallJoined {
        call_id: CallId,
        channel_id: String,
        participant: Participant,
    },
    CallLeft {
        call_id: CallId,
        channel_id: String,
        session_id: SessionId,
        user_id: String,
        reason: LeaveReason,
    },
    /// Mute, camera, screen, hand, host or connection state changed.
    CallParticipantChanged {
        call_id: CallId,
        channel_id: String,
        participant: Participant,
    },
    CallRingEnded {
        call_id: CallId,
        channel_id: String,
        user_id: String,
        reason: RingEnd,
    },
    CallEnded {
        call_id: CallId,
        channel_id: String,
        ended_at: i64,
        duration_ms: i64,
        /// The host who ended it for everyone; absent when the last
        /// participant left.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ended_by: Option<String>,
    },
}

impl Event {
    /// The `"type"` tag, for logs, metrics and storage.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::PostCreated { .. } => "post_created",
            Event::PostEdited { .. } => "post_edited",
            Event::PostDeleted { .. } => "post_deleted",
            Event::ReactionAdded { .. } => "reaction_added",
            Event::ReactionRemoved { .. } => "reaction_removed",
            Event::PostPinned { .. } => "post_pinned",
            Event::ChannelCreated { .. } => "channel_created",
            Event::MemberJoined { .. } => "member_joined",
            Event::MemberLeft { .. } => "member_left",
            Event::ChannelViewed { .. } => "channel_viewed",
            Event::CallStarted { .. } => "call_started",
            Event::CallJoined { .. } => "call_joined",
            Event::CallLeft { .. } => "call_left",
            Event::CallParticipantChanged { .. } => "call_participant_changed",
            Event::CallRingEnded { .. } => "call_ring_ended",
            Event::CallEnded { .. } => "call_ended",
        }
    }
}

/// A post. `message` is plain text as the author typed it: clients render
/// it as text (markup is theirs to interpret safely), never as HTML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    pub id: String,
    pub channel_id: String,
    pub user_id: String,
    /// The thread's first post, for a reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_id: Option<String>,
    pub message: String,
    /// The author's client id for this post, echoed so the client can
    /// match its pending copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
    /// A deleted post keeps its place (and its thread) with an empty message.
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub pinned: bool,
    #[serde(default)]
    pub reply_count: i64,
    /// Posted by a bot account or an integration (webhook), not a person.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_bot: bool,
    /// The name an integration asked to show instead of its owner's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_username: Option<String>,
    /// The icon (an http or https URL) an integration asked to show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_icon_url: Option<String>,
    /// Files attached when the post was made, in the order given. Empty
    /// (and absent on the wire) for a post without files or a deleted one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileInfo>,
}

/// An uploaded file's metadata. The bytes are fetched from
/// `/api/v1/files/{id}` (or its `thumbnail` and `preview`) by members of
/// its channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub id: String,
    pub channel_id: String,
    /// The uploader.
    pub user_id: String,
    /// The post it is attached to; absent until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_id: Option<String>,
    /// The file name, normalised (no path, no control characters).
    pub name: String,
    /// The type read from the file's bytes (`application/octet-stream`
    /// when unknown).
    pub mime_type: String,
    pub size: i64,
    /// Pixel size, for images control could read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
    /// A thumbnail and a preview (JPEG) exist.
    #[serde(default)]
    pub has_thumbnail: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    pub post_id: String,
    pub user_id: String,
    pub emoji: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Any team member may find and join it.
    Open,
    /// Members are added by members.
    Private,
    /// Two users, no team.
    Direct,
    /// Three to eight users, no team.
    Group,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Open => "open",
            ChannelKind::Private => "private",
            ChannelKind::Direct => "direct",
            ChannelKind::Group => "group",
        }
    }

    pub fn parse(s: &str) -> Option<ChannelKind> {
        Some(match s {
            "open" => ChannelKind::Open,
            "private" => ChannelKind::Private,
            "direct" => ChannelKind::Direct,
            "group" => ChannelKind::Group,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    pub kind: ChannelKind,
    pub name: String,
    pub display_name: String,
    #[serde(default)]
    pub purpose: String,
    pub created_by: String,
    pub created_at: i64,
    pub last_post_at: i64,
    pub total_msg_count: i64,
}
