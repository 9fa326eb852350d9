//! Golden JSON: every message kind has a file under `tests/golden/`. A test
//! fails when the encoding drifts, so a wire change is always deliberate.
//! `UPDATE_GOLDEN=1 cargo test -p signaling` rewrites the files.

mod common;

use serde::Serialize;
use serde::de::DeserializeOwned;
use signaling::call::{
    CallInfo, ClientSignal, IceServer, JoinInfo, Participant, ParticipantChange, ReconnectReason,
    ServerSignal,
};
use signaling::media::{
    IceCandidate, Permissions, Sdp, TrackDeclaration, TrackSource, VideoQuality,
};
use signaling::rtcd::{
    CloseReason, ErrorCode, FromRtcd, NodeLoad, RtcdError, SessionState, ToRtcd,
};
use signaling::{CallId, PROTOCOL_VERSION, SessionId};

fn call() -> CallId {
    CallId::new("call-1").unwrap()
}
fn session() -> SessionId {
    SessionId::new("sess-a").unwrap()
}
fn sdp(n: u64) -> Sdp {
    Sdp {
        sdp: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n".into(),
        negotiation: n,
    }
}
fn candidate() -> IceCandidate {
    IceCandidate {
        candidate: "candidate:1 1 udp 2130706431 127.0.0.1 8443 typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    }
}

fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(name: &str, value: T) {
    common::check("", name, value)
}

#[test]
fn to_rtcd() {
    check(
        "to_rtcd_hello",
        ToRtcd::Hello {
            version: PROTOCOL_VERSION,
            node_id: "control-1".into(),
        },
    );
    check(
        "to_rtcd_create_call",
        ToRtcd::CreateCall {
            call_id: call(),
            request: Some(7),
        },
    );
    check(
        "to_rtcd_end_call",
        ToRtcd::EndCall {
            call_id: call(),
            request: None,
        },
    );
    check(
        "to_rtcd_add_session",
        ToRtcd::AddSession {
            call_id: call(),
            session_id: session(),
            permissions: Permissions::RECEIVE_ONLY,
            request: Some(8),
        },
    );
    check(
        "to_rtcd_remove_session",
        ToRtcd::RemoveSession {
            session_id: session(),
            request: None,
        },
    );
    check(
        "to_rtcd_offer",
        ToRtcd::Offer {
            session_id: session(),
            offer: sdp(0),
            tracks: vec![TrackDeclaration {
                mid: "2".into(),
                source: TrackSource::ScreenVideo,
            }],
        },
    );
    check(
        "to_rtcd_answer",
        ToRtcd::Answer {
            session_id: session(),
            answer: sdp(3),
        },
    );
    check(
        "to_rtcd_candidate",
        ToRtcd::Candidate {
            session_id: session(),
            candidate: candidate(),
        },
    );
    check(
        "to_rtcd_set_muted",
        ToRtcd::SetMuted {
            session_id: session(),
            muted: true,
        },
    );
    check(
        "to_rtcd_set_video",
        ToRtcd::SetVideo {
            session_id: session(),
            enabled: false,
        },
    );
    check(
        "to_rtcd_set_screen",
        ToRtcd::SetScreen {
            session_id: session(),
            enabled: false,
        },
    );
    check(
        "to_rtcd_set_quality",
        ToRtcd::SetQuality {
            session_id: session(),
            publisher: SessionId::new("sess-b").unwrap(),
            source: TrackSource::Camera,
            quality: VideoQuality::Low,
        },
    );
    check(
        "to_rtcd_ice_restart",
        ToRtcd::IceRestart {
            session_id: session(),
        },
    );
    check("to_rtcd_get_load", ToRtcd::GetLoad);
    check("to_rtcd_list_calls", ToRtcd::ListCalls);
}

fn load() -> NodeLoad {
    NodeLoad {
        calls: 2,
        sessions: 5,
        workers: 2,
        cpu: 0.25,
        draining: false,
        drain_remaining_ms: None,
    }
}

#[test]
fn from_rtcd() {
    check(
        "from_rtcd_welcome",
        FromRtcd::Welcome {
            version: PROTOCOL_VERSION,
            node_id: "rtcd-a".into(),
            load: load(),
        },
    );
    check(
        "from_rtcd_answer",
        FromRtcd::Answer {
            session_id: session(),
            answer: sdp(0),
        },
    );
    check(
        "from_rtcd_offer",
        FromRtcd::Offer {
            session_id: session(),
            offer: sdp(4),
        },
    );
    check(
        "from_rtcd_candidate",
        FromRtcd::Candidate {
            session_id: session(),
            candidate: candidate(),
        },
    );
    check(
        "from_rtcd_session_connected",
        FromRtcd::SessionState {
            session_id: session(),
            state: SessionState::Connected,
        },
    );
    check(
        "from_rtcd_session_closed",
        FromRtcd::SessionState {
            session_id: session(),
            state: SessionState::Closed {
                reason: CloseReason::Timeout,
            },
        },
    );
    check(
        "from_rtcd_track",
        FromRtcd::Track {
            session_id: session(),
            source: TrackSource::Microphone,
            active: true,
        },
    );
    check(
        "from_rtcd_voice_activity",
        FromRtcd::VoiceActivity {
            session_id: session(),
            speaking: true,
        },
    );
    check(
        "from_rtcd_call_ended",
        FromRtcd::CallEnded { call_id: call() },
    );
    // Without the drain deadline this is the load report as the first
    // nodes sent it: the file predates the field and must still decode.
    check("from_rtcd_load", FromRtcd::Load(load()));
    check(
        "from_rtcd_load_draining",
        FromRtcd::Load(NodeLoad {
            draining: true,
            drain_remaining_ms: Some(240_000),
            ..load()
        }),
    );
    check(
        "from_rtcd_calls",
        FromRtcd::Calls {
            calls: vec![call(), CallId::new("call-2").unwrap()],
        },
    );
    check(
        "from_rtcd_error",
        FromRtcd::Error(RtcdError {
            code: ErrorCode::UnknownSession,
            message: "no session sess-a".into(),
            call_id: None,
            session_id: Some(session()),
            request: Some(9),
        }),
    );
}

#[test]
fn client_signals() {
    check(
        "join_info",
        JoinInfo {
            call_id: call(),
            session_id: session(),
            ice_servers: vec![IceServer {
                urls: vec!["turn:turn.example.internal:3478?transport=udp".into()],
                username: Some("u".into()),
                credential: Some("p".into()),
            }],
            call: None,
        },
    );
    check(
        "join_info_with_call",
        JoinInfo {
            call_id: call(),
            session_id: session(),
            ice_servers: vec![],
            call: Some(call_info()),
        },
    );
    check(
        "participant_change",
        ParticipantChange {
            muted: Some(true),
            hand_raised: Some(false),
            ..ParticipantChange::default()
        },
    );
    check(
        "client_offer",
        ClientSignal::Offer {
            offer: sdp(0),
            tracks: vec![],
        },
    );
    check("client_answer", ClientSignal::Answer { answer: sdp(2) });
    check(
        "client_candidate",
        ClientSignal::Candidate {
            candidate: candidate(),
        },
    );
    check("client_ice_restart", ClientSignal::IceRestart);
    check(
        "client_set_quality",
        ClientSignal::SetQuality {
            publisher: session(),
            source: TrackSource::ScreenVideo,
            quality: VideoQuality::Auto,
        },
    );
    check("server_offer", ServerSignal::Offer { offer: sdp(1) });
    check("server_answer", ServerSignal::Answer { answer: sdp(0) });
    check(
        "server_candidate",
        ServerSignal::Candidate {
            candidate: candidate(),
        },
    );
    check(
        "server_reconnect",
        ServerSignal::Reconnect {
            reason: ReconnectReason::NodeFailed,
        },
    );
}

fn call_info() -> CallInfo {
    CallInfo {
        id: call(),
        channel_id: "c4a2kq3m5n6o7p2q3r4s5t6u7v".into(),
        started_by: "u1a2kq3m5n6o7p2q3r4s5t6u7v".into(),
        started_at: 1_764_000_000_000,
        ended_at: None,
        post_id: "p9a2kq3m5n6o7p2q3r4s5t6u7v".into(),
        participants: vec![Participant {
            session_id: session(),
            user_id: "u1a2kq3m5n6o7p2q3r4s5t6u7v".into(),
            joined_at: 1_764_000_000_000,
            host: true,
            muted: false,
            camera: true,
            screen: false,
            hand_raised: false,
            connected: true,
            bot: false,
        }],
        max_participants: 100,
        recording: false,
    }
}

#[test]
fn a_participant_change_refuses_unknown_fields() {
    let err = serde_json::from_str::<ParticipantChange>(r#"{"host":true}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn malformed_messages_are_refused_with_a_reason() {
    let unknown = serde_json::from_str::<ToRtcd>(r#"{"type":"format_disk"}"#).unwrap_err();
    assert!(unknown.to_string().contains("unknown variant"), "{unknown}");

    let extra = serde_json::from_str::<ToRtcd>(
        r#"{"type":"set_muted","session_id":"a","muted":true,"x":1}"#,
    )
    .unwrap_err();
    assert!(extra.to_string().contains("unknown field"), "{extra}");

    let bad_id =
        serde_json::from_str::<ToRtcd>(r#"{"type":"end_call","call_id":"../../x"}"#).unwrap_err();
    assert!(
        bad_id.to_string().contains("only ASCII letters"),
        "{bad_id}"
    );

    let missing =
        serde_json::from_str::<ToRtcd>(r#"{"type":"set_muted","session_id":"a"}"#).unwrap_err();
    assert!(
        missing.to_string().contains("missing field `muted`"),
        "{missing}"
    );
}
