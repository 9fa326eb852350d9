//! Golden JSON for the client ⇄ control event protocol (`signaling::events`).
//! `UPDATE_GOLDEN=1 cargo test -p signaling` rewrites the files.

mod common;

use serde::Serialize;
use serde::de::DeserializeOwned;
use signaling::call::{ClientSignal, LeaveReason, Participant, RingEnd, ServerSignal};
use signaling::events::{
    Channel, ChannelKind, ClientMessage, CloseReason, EVENTS_VERSION, Event, FileInfo, Post,
    PresenceStatus, Reaction, Resume, ResyncReason, ServerMessage,
};
use signaling::{CallId, SessionId};

fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(name: &str, value: T) {
    common::check("events", name, value)
}

fn post() -> Post {
    Post {
        id: "p7d2kq3m5n6o7p2q3r4s5t6u7v".into(),
        channel_id: "c4a2kq3m5n6o7p2q3r4s5t6u7v".into(),
        user_id: "u1b2kq3m5n6o7p2q3r4s5t6u7v".into(),
        root_id: Some("r9z2kq3m5n6o7p2q3r4s5t6u7v".into()),
        message: "hello <b>@alice</b>".into(),
        pending_id: Some("tmp-1".into()),
        created_at: 1_764_000_000_000,
        updated_at: 1_764_000_000_500,
        edited_at: Some(1_764_000_000_500),
        deleted: false,
        pinned: true,
        reply_count: 0,
        from_bot: false,
        override_username: None,
        override_icon_url: None,
        files: Vec::new(),
    }
}

fn post_with_files() -> Post {
    let mut p = post();
    p.root_id = None;
    p.pending_id = None;
    p.edited_at = None;
    p.pinned = false;
    p.files = vec![
        FileInfo {
            id: "f5e2kq3m5n6o7p2q3r4s5t6u7v".into(),
            channel_id: p.channel_id.clone(),
            user_id: p.user_id.clone(),
            post_id: Some(p.id.clone()),
            name: "site plan.png".into(),
            mime_type: "image/png".into(),
            size: 48_213,
            width: Some(640),
            height: Some(480),
            has_thumbnail: true,
            created_at: 1_763_999_990_000,
        },
        FileInfo {
            id: "f6f2kq3m5n6o7p2q3r4s5t6u7v".into(),
            channel_id: p.channel_id.clone(),
            user_id: p.user_id.clone(),
            post_id: Some(p.id.clone()),
            name: "minutes.pdf".into(),
            mime_type: "application/pdf".into(),
            size: 120_004,
            width: None,
            height: None,
            has_thumbnail: false,
            created_at: 1_763_999_995_000,
        },
    ];
    p
}

fn reaction() -> Reaction {
    Reaction {
        post_id: "p7d2kq3m5n6o7p2q3r4s5t6u7v".into(),
        user_id: "u1b2kq3m5n6o7p2q3r4s5t6u7v".into(),
        emoji: "thumbsup".into(),
        created_at: 1_764_000_001_000,
    }
}

#[test]
fn client_messages() {
    check(
        "client_hello",
        ClientMessage::Hello {
            version: EVENTS_VERSION,
            resume: None,
        },
    );
    check(
        "client_hello_resume",
        ClientMessage::Hello {
            version: EVENTS_VERSION,
            resume: Some(Resume {
                connection_id: "k3j2kq3m5n6o7p2q3r4s5t6u7v".into(),
                last_seq: 41,
            }),
        },
    );
    check("client_ping", ClientMessage::Ping { nonce: 9 });
    check(
        "client_typing",
        ClientMessage::Typing {
            channel_id: "c4a2kq3m5n6o7p2q3r4s5t6u7v".into(),
            root_id: None,
        },
    );
    check(
        "client_call_signal",
        ClientMessage::CallSignal {
            call_id: call_id(),
            session_id: session_id(),
            signal: ClientSignal::IceRestart,
        },
    );
}

fn call_id() -> CallId {
    CallId::new("k7a2kq3m5n6o7p2q3r4s5t6u7v").unwrap()
}

fn session_id() -> SessionId {
    SessionId::new("s1a2kq3m5n6o7p2q3r4s5t6u7v").unwrap()
}

fn participant() -> Participant {
    Participant {
        session_id: session_id(),
        user_id: "u1a2kq3m5n6o7p2q3r4s5t6u7v".into(),
        joined_at: 1_764_000_000_000,
        host: false,
        muted: true,
        camera: false,
        screen: false,
        hand_raised: true,
        connected: true,
        bot: false,
    }
}

#[test]
fn call_messages() {
    check(
        "server_call_signal",
        ServerMessage::CallSignal {
            call_id: call_id(),
            session_id: session_id(),
            signal: ServerSignal::Reconnect {
                reason: signaling::call::ReconnectReason::NodeDrained,
            },
        },
    );
    check(
        "server_call_voice",
        ServerMessage::CallVoice {
            call_id: call_id(),
            session_id: session_id(),
            speaking: true,
        },
    );
    check(
        "server_call_reaction",
        ServerMessage::CallReaction {
            call_id: call_id(),
            session_id: session_id(),
            user_id: participant().user_id,
            emoji: "tada".into(),
        },
    );
    check(
        "server_call_caption",
        ServerMessage::CallCaption {
            call_id: call_id(),
            session_id: session_id(),
            user_id: participant().user_id,
            start_ms: 1200,
            end_ms: 2900,
            text: "hello world".into(),
        },
    );
    check(
        "event_call_joined",
        Event::CallJoined {
            call_id: call_id(),
            channel_id: "c4a2kq3m5n6o7p2q3r4s5t6u7v".into(),
            participant: participant(),
        },
    );
    check(
        "event_call_left",
        Event::CallLeft {
            call_id: call_id(),
            channel_id: "c4a2kq3m5n6o7p2q3r4s5t6u7v".into(),
            session_id: session_id(),
            user_id: participant().user_id,
            reason: LeaveReason::Removed,
        },
    );
    check(
        "event_call_participant_changed",
        Event::CallParticipantChanged {
            call_id: call_id(),
            channel_id: "c4a2kq3m5n6o7p2q3r4s5t6u7v".into(),
            participant: participant(),
        },
    );
    check(
        "event_call_ring_ended",
        Event::CallRingEnded {
            call_id: call_id(),
            channel_id: "c4a2kq3m5n6o7p2q3r4s5t6u7v".into(),
            user_id: participant().user_id,
            reason: RingEnd::Declined,
        },
    );
    check(
        "event_call_ended",
        Event::CallEnded {
            call_id: call_id(),
            channel_id: "c4a2kq3m5n6o7p2q3r4s5t6u7v".into(),
            ended_at: 1_764_000_123_000,
            duration_ms: 123_000,
            ended_by: None,
        },
    );
}

#[test]
fn server_messages() {
    check(
        "server_hello",
        ServerMessage::Hello {
            version: EVENTS_VERSION,
            connection_id: "k3j2kq3m5n6o7p2q3r4s5t6u7v".into(),
            last_seq: 42,
            resumed: true,
        },
    );
    check(
        "server_resync",
        ServerMessage::Resync {
            reason: ResyncReason::OutsideWindow,
        },
    );
    check("server_pong", ServerMessage::Pong { nonce: 9 });
    check(
        "server_typing",
        ServerMessage::Typing {
            channel_id: "c4a2kq3m5n6o7p2q3r4s5t6u7v".into(),
            user_id: "u1b2kq3m5n6o7p2q3r4s5t6u7v".into(),
            root_id: Some("r9z2kq3m5n6o7p2q3r4s5t6u7v".into()),
        },
    );
    check(
        "server_presence",
        ServerMessage::Presence {
            user_id: "u1b2kq3m5n6o7p2q3r4s5t6u7v".into(),
            status: PresenceStatus::Away,
        },
    );
    check(
        "server_closing",
        ServerMessage::Closing {
            reason: CloseReason::TooSlow,
        },
    );
    check(
        "server_error",
        ServerMessage::Error {
            code: "unknown_channel".into(),
            message: "no such channel".into(),
        },
    );
}

#[test]
fn events() {
    let ev = |seq: u64, event: Event| ServerMessage::Event { seq, event };
    check(
        "event_post_created",
        ev(43, Event::PostCreated { post: post() }),
    );
    check(
        "event_post_created_with_files",
        ev(
            43,
            Event::PostCreated {
                post: post_with_files(),
            },
        ),
    );
    check(
        "event_post_edited",
        ev(44, Event::PostEdited { post: post() }),
    );
    check(
        "event_post_deleted",
        ev(
            45,
            Event::PostDeleted {
                post_id: post().id,
                channel_id: post().channel_id,
                root_id: None,
            },
        ),
    );
    check(
        "event_reaction_added",
        ev(
            46,
            Event::ReactionAdded {
                reaction: reaction(),
                channel_id: post().channel_id,
            },
        ),
    );
    check(
        "event_reaction_removed",
        ev(
            47,
            Event::ReactionRemoved {
                reaction: reaction(),
                channel_id: post().channel_id,
            },
        ),
    );
    check(
        "event_post_pinned",
        ev(
            48,
            Event::PostPinned {
                post_id: post().id,
                channel_id: post().channel_id,
                pinned: true,
            },
        ),
    );
    check(
        "event_channel_created",
        ev(
            49,
            Event::ChannelCreated {
                channel: Channel {
                    id: "c4a2kq3m5n6o7p2q3r4s5t6u7v".into(),
                    team_id: Some("t5e2kq3m5n6o7p2q3r4s5t6u7v".into()),
                    kind: ChannelKind::Private,
                    name: "ops".into(),
                    display_name: "Operations".into(),
                    purpose: String::new(),
                    created_by: "u1b2kq3m5n6o7p2q3r4s5t6u7v".into(),
                    created_at: 1_764_000_000_000,
                    last_post_at: 0,
                    total_msg_count: 0,
                },
            },
        ),
    );
    check(
        "event_member_joined",
        ev(
            50,
            Event::MemberJoined {
                channel_id: post().channel_id,
                user_id: post().user_id,
            },
        ),
    );
    check(
        "event_member_left",
        ev(
            51,
            Event::MemberLeft {
                channel_id: post().channel_id,
                user_id: post().user_id,
            },
        ),
    );
    check(
        "event_channel_viewed",
        ev(
            52,
            Event::ChannelViewed {
                channel_id: post().channel_id,
                user_id: post().user_id,
            },
        ),
    );
}

#[test]
fn an_unknown_message_type_is_refused() {
    let err = serde_json::from_str::<ClientMessage>(r#"{"type":"shout","text":"x"}"#).unwrap_err();
    assert!(err.to_string().contains("unknown variant"), "{err}");
}

#[test]
fn kind_matches_the_tag() {
    let e = Event::ChannelViewed {
        channel_id: "c".into(),
        user_id: "u".into(),
    };
    let v: serde_json::Value = serde_json::to_value(&e).unwrap();
    assert_eq!(v["type"], e.kind());
}
