//! When rtcd offers a published track to the rest of the call: once media
//! arrives on it, not when the publisher declares it. A browser declares
//! its camera and screen transceivers while they are off.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{Net, opus, vp8};
use signaling::SessionId;
use signaling::media::{Permissions, TrackSource};
use signaling::rtcd::{FromRtcd, ToRtcd};
use str0m::media::MediaKind;

/// Alice declares a microphone, a camera and a screen, as the web client
/// does; receive-only bob. Both connected, nobody has sent anything.
fn browser_and_viewer() -> Net {
    let mut net = Net::new();
    net.join(
        "alice",
        Permissions::PARTICIPANT,
        &[
            (MediaKind::Audio, None, Some(TrackSource::Microphone)),
            (MediaKind::Video, None, Some(TrackSource::Camera)),
            (MediaKind::Video, None, Some(TrackSource::ScreenVideo)),
        ],
    );
    net.join("bob", Permissions::RECEIVE_ONLY, &[]);
    net.connect();
    net
}

fn offers_to(net: &Net, name: &str) -> usize {
    net.events
        .iter()
        .filter(|e| matches!(e, FromRtcd::Offer { session_id, .. } if session_id.as_str() == name))
        .count()
}

fn mids_of(net: &Net, ci: usize, kind: MediaKind) -> usize {
    net.clients[ci]
        .received_mids
        .values()
        .filter(|k| **k == kind)
        .count()
}

#[test]
fn a_declared_track_is_offered_when_its_first_packet_arrives() {
    let mut net = browser_and_viewer();
    // Control still learns of all three tracks at once.
    let declared = net
        .events
        .iter()
        .filter(|e| matches!(e, FromRtcd::Track { active: true, .. }))
        .count();
    assert_eq!(declared, 3);
    assert_eq!(offers_to(&net, "bob"), 0, "nothing flows yet");
    assert!(net.clients[1].received_mids.is_empty());

    let audio = net.send_mid(0, MediaKind::Audio, 0);
    let camera = net.send_mid(0, MediaKind::Video, 0);
    net.send(0, audio, None, 1, 0, opus(0), None);
    net.advance(Duration::from_millis(20));
    assert_eq!(offers_to(&net, "bob"), 1);
    assert_eq!(mids_of(&net, 1, MediaKind::Audio), 1);
    assert_eq!(
        mids_of(&net, 1, MediaKind::Video),
        0,
        "camera and screen are silent"
    );

    // The first packet went to no one; what follows arrives.
    for i in 1..6 {
        net.send(0, audio, None, 1 + i as u64, 960 * i, opus(i), None);
        net.advance(Duration::from_millis(20));
    }
    let heard = net.received_payloads(1, MediaKind::Audio);
    assert_eq!(heard, (1..6).map(opus).collect::<Vec<_>>());

    // The camera comes on: bob is offered it, and alice is asked for a
    // keyframe so that bob's picture can start.
    let asked_before = net.clients[0].keyframe_requests;
    net.send(0, camera, None, 1, 0, vp8(false, 7, 0), None);
    net.advance(Duration::from_millis(50));
    assert_eq!(offers_to(&net, "bob"), 2);
    assert_eq!(
        mids_of(&net, 1, MediaKind::Video),
        1,
        "the screen stays unoffered"
    );
    assert!(net.clients[0].keyframe_requests > asked_before);
    for i in 1..4 {
        let frame = vp8(i == 1, 7, i);
        net.send(0, camera, None, 1 + i as u64, 3000 * i, frame, None);
        net.advance(Duration::from_millis(33));
    }
    let seen = net.received_payloads(1, MediaKind::Video);
    assert_eq!(seen, (1..4).map(|i| vp8(i == 1, 7, i)).collect::<Vec<_>>());
}

#[test]
fn a_muted_microphone_is_offered_only_once_unmuted() {
    let mut net = browser_and_viewer();
    let alice = SessionId::new("alice").unwrap();
    let audio = net.send_mid(0, MediaKind::Audio, 0);
    net.sfu.handle_command(
        net.now,
        ToRtcd::SetMuted {
            session_id: alice.clone(),
            muted: true,
        },
    );
    // A browser's disabled microphone still sends (silence).
    for i in 0..5 {
        net.send(0, audio, None, 1 + i as u64, 960 * i, opus(i), None);
        net.advance(Duration::from_millis(20));
    }
    assert_eq!(offers_to(&net, "bob"), 0);
    net.sfu.handle_command(
        net.now,
        ToRtcd::SetMuted {
            session_id: alice,
            muted: false,
        },
    );
    for i in 5..10 {
        net.send(0, audio, None, 1 + i as u64, 960 * i, opus(i), None);
        net.advance(Duration::from_millis(20));
    }
    assert_eq!(offers_to(&net, "bob"), 1);
    assert_eq!(
        net.received_payloads(1, MediaKind::Audio),
        (6..10).map(opus).collect::<Vec<_>>(),
        "everything after the packet that made it flow"
    );
}

#[test]
fn a_late_joiner_is_offered_only_what_flows() {
    let mut net = browser_and_viewer();
    let audio = net.send_mid(0, MediaKind::Audio, 0);
    net.send(0, audio, None, 1, 0, opus(0), None);
    net.advance(Duration::from_millis(20));
    net.join("carol", Permissions::RECEIVE_ONLY, &[]);
    net.connect();
    assert_eq!(mids_of(&net, 2, MediaKind::Audio), 1);
    assert_eq!(mids_of(&net, 2, MediaKind::Video), 0);
}

#[test]
fn a_track_that_flowed_stays_offered_when_it_goes_quiet() {
    let mut net = browser_and_viewer();
    let camera = net.send_mid(0, MediaKind::Video, 0);
    net.send(0, camera, None, 1, 0, vp8(true, 1, 0), None);
    net.advance(Duration::from_millis(50));
    assert_eq!(offers_to(&net, "bob"), 1);
    // The camera goes off and on again: no renegotiation either way.
    let alice = SessionId::new("alice").unwrap();
    for enabled in [false, true] {
        net.sfu.handle_command(
            net.now,
            ToRtcd::SetVideo {
                session_id: alice.clone(),
                enabled,
            },
        );
        net.advance(Duration::from_secs(2));
    }
    net.send(0, camera, None, 2, 3000, vp8(true, 1, 1), None);
    net.advance(Duration::from_millis(50));
    assert_eq!(offers_to(&net, "bob"), 1);
    assert_eq!(
        net.received_payloads(1, MediaKind::Video),
        vec![vp8(true, 1, 1)]
    );
}
