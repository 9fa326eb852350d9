//! Whole calls on a fake clock: str0m clients ⇄ the SFU core, in memory.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{Net, Verdict, opus, vp8};
use rtcd_core::DropReason;
use signaling::SessionId;
use signaling::media::{Permissions, TrackSource, VideoQuality};
use signaling::rtcd::{CloseReason, FromRtcd, SessionState, ToRtcd};
use str0m::media::MediaKind;

/// Publisher with microphone and camera, two receive-only subscribers.
fn call_with_two_listeners() -> Net {
    let mut net = Net::new();
    net.join(
        "alice",
        Permissions::PARTICIPANT,
        &[
            (MediaKind::Audio, None, None),
            (MediaKind::Video, None, None),
        ],
    );
    net.join("bob", Permissions::RECEIVE_ONLY, &[]);
    net.join("carol", Permissions::RECEIVE_ONLY, &[]);
    net.connect_all();
    net
}

fn publish(net: &mut Net, from: usize, packets: u32, first_seq: u64) {
    let audio = net.send_mid(from, MediaKind::Audio, 0);
    let video = net.send_mid(from, MediaKind::Video, 0);
    for i in 0..packets {
        let seq = first_seq + i as u64;
        net.send(from, audio, None, seq, 960 * i, opus(i), Some(-30));
        net.send(from, video, None, seq, 3000 * i, vp8(i == 0, 0xAA, i), None);
        net.advance(Duration::from_millis(20));
    }
}

#[test]
fn publisher_reaches_every_subscriber_intact() {
    let mut net = call_with_two_listeners();
    // Each subscriber was offered alice's two tracks.
    for ci in [1, 2] {
        let kinds: Vec<_> = net.clients[ci].received_mids.values().copied().collect();
        assert!(
            kinds.contains(&MediaKind::Audio) && kinds.contains(&MediaKind::Video),
            "{kinds:?}"
        );
    }
    publish(&mut net, 0, 50, 1000);
    for ci in [1, 2] {
        let audio = net.received_payloads(ci, MediaKind::Audio);
        let video = net.received_payloads(ci, MediaKind::Video);
        let want_audio: Vec<_> = (0..50).map(opus).collect();
        let want_video: Vec<_> = (0..50).map(|i| vp8(i == 0, 0xAA, i)).collect();
        assert_eq!(audio, want_audio, "client {ci} audio");
        assert_eq!(video, want_video, "client {ci} video");
        // Sequence numbers are continuous per stream.
        let mut by_ssrc = std::collections::HashMap::<_, Vec<u64>>::new();
        for p in &net.clients[ci].received {
            by_ssrc.entry(p.header.ssrc).or_default().push(*p.seq_no);
        }
        for seqs in by_ssrc.values() {
            assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "gap: {seqs:?}");
        }
    }
    // The publisher hears nothing of its own.
    assert!(net.clients[0].received.is_empty());
    let stats = net.sfu.stats();
    assert_eq!(
        stats.forwarded_packets[0], 100,
        "audio packets forwarded (2 × 50)"
    );
    assert_eq!(
        stats.forwarded_packets[1], 100,
        "video packets forwarded (2 × 50)"
    );
    // Voice activity came from the audio-level extension.
    assert!(net.events.iter().any(|e| matches!(e,
        FromRtcd::VoiceActivity { session_id, speaking: true } if session_id.as_str() == "alice")));
}

#[test]
fn mute_stops_audio_in_rtcd_whatever_the_client_sends() {
    let mut net = call_with_two_listeners();
    publish(&mut net, 0, 10, 1);
    net.sfu.handle_command(
        net.now,
        ToRtcd::SetMuted {
            session_id: SessionId::new("alice").unwrap(),
            muted: true,
        },
    );
    publish(&mut net, 0, 10, 11);
    for ci in [1, 2] {
        assert_eq!(
            net.received_payloads(ci, MediaKind::Audio).len(),
            10,
            "audio after mute"
        );
        assert_eq!(
            net.received_payloads(ci, MediaKind::Video).len(),
            20,
            "video continues"
        );
    }
    assert_eq!(net.sfu.stats().dropped(DropReason::Muted), 10);
    net.sfu.handle_command(
        net.now,
        ToRtcd::SetMuted {
            session_id: SessionId::new("alice").unwrap(),
            muted: false,
        },
    );
    publish(&mut net, 0, 5, 21);
    assert_eq!(
        net.received_payloads(1, MediaKind::Audio).len(),
        15,
        "audio after unmute"
    );
}

#[test]
fn screen_off_stops_the_screen_share() {
    let mut net = Net::new();
    net.join(
        "alice",
        Permissions::PARTICIPANT,
        &[(MediaKind::Video, None, Some(TrackSource::ScreenVideo))],
    );
    net.join("bob", Permissions::RECEIVE_ONLY, &[]);
    net.connect_all();
    let mid = net.send_mid(0, MediaKind::Video, 0);
    assert!(net.events.iter().any(|e| matches!(
        e,
        FromRtcd::Track {
            source: TrackSource::ScreenVideo,
            active: true,
            ..
        }
    )));
    for i in 0..5 {
        net.send(
            0,
            mid,
            None,
            100 + i,
            3000 * i as u32,
            vp8(i == 0, 1, i as u32),
            None,
        );
        net.advance(Duration::from_millis(33));
    }
    net.sfu.handle_command(
        net.now,
        ToRtcd::SetScreen {
            session_id: SessionId::new("alice").unwrap(),
            enabled: false,
        },
    );
    for i in 5..10 {
        net.send(
            0,
            mid,
            None,
            100 + i,
            3000 * i as u32,
            vp8(false, 1, i as u32),
            None,
        );
        net.advance(Duration::from_millis(33));
    }
    assert_eq!(net.received_payloads(1, MediaKind::Video).len(), 5);
}

#[test]
fn simulcast_layer_switches_on_request_at_a_keyframe() {
    let mut net = Net::new();
    net.join(
        "alice",
        Permissions::PARTICIPANT,
        &[(MediaKind::Video, Some(&["l", "h"]), None)],
    );
    net.join("bob", Permissions::RECEIVE_ONLY, &[]);
    net.connect_all();
    let mid = net.send_mid(0, MediaKind::Video, 0);
    // Both layers flow; layer tag 0x01 = low, 0x02 = high.
    let send_round = |net: &mut Net, i: u32, key_l: bool, key_h: bool| {
        net.send(
            0,
            mid,
            Some("l"),
            500 + i as u64,
            3000 * i,
            vp8(key_l, 0x01, i),
            None,
        );
        net.send(
            0,
            mid,
            Some("h"),
            9000 + i as u64,
            3000 * i,
            vp8(key_h, 0x02, i),
            None,
        );
        net.advance(Duration::from_millis(33));
    };
    for i in 0..10 {
        send_round(&mut net, i, i == 0, i == 0);
    }
    let got = net.received_payloads(1, MediaKind::Video);
    assert_eq!(got.len(), 10, "one layer only");
    assert!(
        got.iter().all(|p| p[2] == 0x02),
        "auto quality gets the high layer"
    );

    net.sfu.handle_command(
        net.now,
        ToRtcd::SetQuality {
            session_id: SessionId::new("bob").unwrap(),
            publisher: SessionId::new("alice").unwrap(),
            source: TrackSource::Camera,
            quality: VideoQuality::Low,
        },
    );
    // Until the low layer sends a keyframe, bob stays on high.
    for i in 10..13 {
        send_round(&mut net, i, false, false);
    }
    send_round(&mut net, 13, true, false);
    for i in 14..16 {
        send_round(&mut net, i, false, false);
    }
    let got = net.received_payloads(1, MediaKind::Video);
    let tags: Vec<u8> = got.iter().map(|p| p[2]).collect();
    let switch = tags
        .iter()
        .position(|t| *t == 0x01)
        .expect("switched to low");
    assert!(switch >= 13, "high until the switch: {tags:?}");
    assert!(tags[..switch].iter().all(|t| *t == 0x02), "{tags:?}");
    assert_eq!(tags[switch..], [0x01; 3], "low from the keyframe on");
    assert_eq!(
        got[switch],
        vp8(true, 0x01, 13),
        "the switch happens on the low keyframe"
    );
    // The outgoing sequence numbers stayed continuous across the switch.
    let seqs: Vec<u64> = net.clients[1].received.iter().map(|p| *p.seq_no).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    // rtcd asked the publisher for that keyframe.
    assert!(net.sfu.stats().keyframe_requests_forwarded >= 1);
}

#[test]
fn a_packet_lost_to_a_subscriber_is_retransmitted_on_nack() {
    let mut net = call_with_two_listeners();
    let video = net.send_mid(0, MediaKind::Video, 0);
    // Drop exactly one SRTP video packet to bob: the 6th sizeable datagram
    // after this point (audio packets are smaller than video ones here).
    let dropped = std::rc::Rc::new(std::cell::Cell::new(0));
    let dropped_in_filter = dropped.clone();
    let mut seen = 0;
    net.downlink_filter = Box::new(move |ci, bytes| {
        // SRTP (RTP version 2, not RTCP) of video size.
        let rtcp = (192..=223).contains(&bytes[1]);
        if ci == 1 && bytes.len() > 30 && bytes[0] >> 6 == 2 && !rtcp {
            seen += 1;
            if seen == 6 {
                dropped_in_filter.set(dropped_in_filter.get() + 1);
                return Verdict::Drop;
            }
        }
        Verdict::Deliver
    });
    for i in 0..20u32 {
        net.send(
            0,
            video,
            None,
            100 + i as u64,
            3000 * i,
            vp8(i == 0, 0xBB, i),
            None,
        );
        net.advance(Duration::from_millis(30));
    }
    net.advance(Duration::from_millis(500));
    let mut got: Vec<u32> = net
        .received_payloads(1, MediaKind::Video)
        .iter()
        .map(|p| u32::from_be_bytes([p[3], p[4], p[5], p[6]]))
        .collect();
    got.sort();
    got.dedup();
    assert_eq!(
        got,
        (0..20).collect::<Vec<_>>(),
        "every frame arrived, the lost one by NACK"
    );
    assert_eq!(dropped.get(), 1, "the network really lost one packet");
    // Carol, who lost nothing, got each frame exactly once.
    assert_eq!(net.received_payloads(2, MediaKind::Video).len(), 20);
}

#[test]
fn a_vanished_session_times_out_and_is_cleaned_up() {
    let mut net = call_with_two_listeners();
    assert_eq!(net.sfu.session_count(), 3);
    net.clients[2].offline = true;
    net.advance(Duration::from_secs(40));
    assert!(net.events.iter().any(|e| matches!(e,
        FromRtcd::SessionState { session_id, state: SessionState::Closed { reason: CloseReason::Timeout } }
            if session_id.as_str() == "carol")));
    assert_eq!(net.sfu.session_count(), 2);
    assert!(!net.sfu.has_session(&SessionId::new("carol").unwrap()));
    // The others are unharmed.
    publish(&mut net, 0, 5, 5000);
    assert_eq!(net.received_payloads(1, MediaKind::Audio).len(), 5);
}

#[test]
fn garbage_datagrams_are_counted_and_harmless() {
    let mut net = call_with_two_listeners();
    let sfu = common::sfu_addr();
    let stranger: std::net::SocketAddr = "10.9.9.9:9".parse().unwrap();
    let alice = net.clients[0].addr;
    let mut rng = 0x1234_5678u32;
    for len in 0..600usize {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 17;
                rng ^= rng << 5;
                rng as u8
            })
            .collect();
        for source in [stranger, alice] {
            let _ = net.sfu.handle_datagram(
                net.now,
                rtcd_core::Datagram {
                    proto: rtcd_core::Protocol::Udp,
                    source,
                    destination: sfu,
                    contents: &bytes,
                },
            );
        }
    }
    let oversized = vec![0x80u8; 70_000];
    assert_eq!(
        net.sfu.handle_datagram(
            net.now,
            rtcd_core::Datagram {
                proto: rtcd_core::Protocol::Udp,
                source: alice,
                destination: sfu,
                contents: &oversized
            },
        ),
        Err(DropReason::Oversized)
    );
    let stats = net.sfu.stats();
    assert!(stats.dropped(DropReason::UnknownSource) >= 600);
    publish(&mut net, 0, 5, 7000);
    assert_eq!(
        net.received_payloads(1, MediaKind::Audio).len(),
        5,
        "the call is unharmed"
    );
}

#[test]
fn bad_signaling_is_refused_with_a_reason() {
    let mut net = call_with_two_listeners();
    let id = SessionId::new("alice").unwrap();
    net.sfu.handle_command(
        net.now,
        ToRtcd::Offer {
            session_id: id.clone(),
            offer: signaling::media::Sdp {
                sdp: "v=0\r\nthis is not sdp".into(),
                negotiation: 0,
            },
            tracks: vec![],
        },
    );
    net.sfu.handle_command(
        net.now,
        ToRtcd::Candidate {
            session_id: id,
            candidate: signaling::media::IceCandidate {
                candidate: "candidate:garbage".into(),
                sdp_mid: None,
                sdp_m_line_index: None,
            },
        },
    );
    net.sfu.handle_command(
        net.now,
        ToRtcd::SetMuted {
            session_id: SessionId::new("nobody").unwrap(),
            muted: true,
        },
    );
    net.pump();
    let codes: Vec<_> = net
        .events
        .iter()
        .filter_map(|e| match e {
            FromRtcd::Error(err) => Some(err.code),
            _ => None,
        })
        .collect();
    use signaling::rtcd::ErrorCode::*;
    assert_eq!(codes, vec![BadSdp, BadCandidate, UnknownSession]);
    publish(&mut net, 0, 3, 9000);
    assert_eq!(
        net.received_payloads(2, MediaKind::Video).len(),
        3,
        "the call is unharmed"
    );
}

#[test]
fn a_client_that_changes_network_restarts_ice_and_media_resumes() {
    let mut net = call_with_two_listeners();
    publish(&mut net, 0, 5, 100);
    assert_eq!(net.received_payloads(1, MediaKind::Audio).len(), 5);
    // Bob's network changes: the old address goes dark, a new one appears.
    let new_addr = "10.0.2.2:6000".parse().unwrap();
    net.move_and_restart(1, new_addr);
    let answer = net
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            FromRtcd::Answer { session_id, answer } if session_id.as_str() == "bob" => {
                Some(answer.sdp.clone())
            }
            _ => None,
        })
        .expect("rtcd answered the restart");
    // New credentials, still naming worker 0 so steering keeps working.
    let ufrag = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap();
    assert!(ufrag.starts_with("00"), "{ufrag}");
    net.advance(Duration::from_millis(500));
    publish(&mut net, 0, 10, 105);
    let audio = net.received_payloads(1, MediaKind::Audio);
    assert!(
        audio.len() >= 14,
        "media resumed on the new path: {}",
        audio.len()
    );
    assert_eq!(audio.last(), Some(&opus(9)));
}

#[test]
fn rtcd_initiated_ice_restart_keeps_the_call() {
    let mut net = call_with_two_listeners();
    net.sfu.handle_command(
        net.now,
        ToRtcd::IceRestart {
            session_id: SessionId::new("carol").unwrap(),
        },
    );
    net.pump();
    let offer = net
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            FromRtcd::Offer { session_id, offer } if session_id.as_str() == "carol" => {
                Some(offer.sdp.clone())
            }
            _ => None,
        })
        .expect("rtcd offered a restart");
    let ufrag = offer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap();
    assert!(ufrag.starts_with("00"), "{ufrag}");
    net.advance(Duration::from_millis(500));
    publish(&mut net, 0, 10, 300);
    assert_eq!(net.received_payloads(2, MediaKind::Audio).len(), 10);
}

#[test]
fn a_session_s_first_connection_is_timed_from_its_offer() {
    let mut net = Net::new();
    net.join(
        "alice",
        Permissions::PARTICIPANT,
        &[(MediaKind::Audio, None, None)],
    );
    net.join("bob", Permissions::RECEIVE_ONLY, &[]);
    // Bob's network drops what he sends for his first 300 ms.
    net.uplink_held = Some(1);
    net.advance(Duration::from_millis(300));
    net.drop_held();
    net.connect();
    let h = &net.sfu.stats().session_connect;
    assert_eq!(h.count, 2, "one observation per session");
    let upto = |bound: f64| {
        let i = h.bounds.iter().position(|b| *b == bound).unwrap();
        h.counts[..=i].iter().sum::<u64>()
    };
    assert_eq!(upto(0.25), 1, "alice, within 250 ms: {h:?}");
    assert_eq!(upto(1.0), 2, "bob, between 300 ms and 1 s: {h:?}");
    assert!(h.sum >= 0.3, "{h:?}");
}

#[test]
fn a_session_that_loses_connectivity_briefly_recovers() {
    let mut net = call_with_two_listeners();
    let joins = net.sfu.stats().session_connect.count;
    net.clients[1].offline = true;
    // Long enough for ICE to notice (~15 s for an ICE-lite agent), shorter
    // than that plus the disconnect timeout.
    net.advance(Duration::from_secs(17));
    assert!(
        net.events.iter().any(|e| matches!(e,
        FromRtcd::SessionState { session_id, state: SessionState::Disconnected }
            if session_id.as_str() == "bob")),
        "rtcd noticed the loss"
    );
    net.clients[1].offline = false;
    net.advance(Duration::from_secs(3));
    let states: Vec<_> = net
        .events
        .iter()
        .filter_map(|e| match e {
            FromRtcd::SessionState { session_id, state } if session_id.as_str() == "bob" => {
                Some(state.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(states.last(), Some(&SessionState::Connected), "{states:?}");
    assert_eq!(
        net.sfu.stats().session_connect.count,
        joins,
        "a reconnection is not timed as a join"
    );
    // Still there well past the disconnect timeout, and receiving.
    net.advance(Duration::from_secs(20));
    assert!(net.sfu.has_session(&SessionId::new("bob").unwrap()));
    publish(&mut net, 0, 5, 800);
    assert!(net.received_payloads(1, MediaKind::Audio).len() >= 5);
}

#[test]
fn keyframe_requests_within_the_interval_are_coalesced_not_lost() {
    let mut net = call_with_two_listeners();
    publish(&mut net, 0, 3, 40);
    // Let the keyframe requests of joining settle past the interval.
    net.advance(Duration::from_secs(1));
    let before = net.clients[0].keyframe_requests;
    let pli = |net: &mut Net, ci: usize| {
        let ssrc = net.clients[ci]
            .received
            .iter()
            .find(|p| p.payload.len() > 5)
            .map(|p| p.header.ssrc)
            .expect("receives video");
        let c = &mut net.clients[ci];
        c.rtc
            .direct_api()
            .stream_rx(&ssrc)
            .expect("a receive stream")
            .request_keyframe(str0m::media::KeyframeRequestKind::Pli);
        net.advance(Duration::from_millis(5));
    };
    pli(&mut net, 1);
    net.advance(Duration::from_millis(100));
    pli(&mut net, 2);
    assert_eq!(
        net.clients[0].keyframe_requests,
        before + 1,
        "the first goes at once"
    );
    net.advance(Duration::from_millis(600));
    assert_eq!(
        net.clients[0].keyframe_requests,
        before + 2,
        "the second goes when the interval ends, not never"
    );
}

#[test]
fn subscribers_get_no_send_side_extensions_publishers_keep_transport_cc() {
    use str0m::rtp::Extension;
    let mut net = call_with_two_listeners();
    publish(&mut net, 0, 10, 1);
    for ci in [1, 2] {
        let received = &net.clients[ci].received;
        assert_eq!(received.len(), 20, "client {ci}");
        for p in received {
            // rtcd estimates no bandwidth: nothing to stamp for it.
            assert_eq!(p.header.ext_vals.transport_cc, None, "client {ci}");
            assert_eq!(p.header.ext_vals.abs_send_time, None, "client {ci}");
        }
        // What the subscriber's m-lines negotiated, as str0m on its side sees it.
        for mid in net.clients[ci].received_mids.keys() {
            let exts = net.clients[ci].rtc.media(*mid).unwrap().remote_extmap();
            assert_eq!(exts.id_of(Extension::TransportSequenceNumber), None);
            assert_eq!(exts.id_of(Extension::AbsoluteSendTime), None);
            assert!(exts.id_of(Extension::RtpMid).is_some(), "mid stays");
        }
    }
    // Audio levels still reach the subscribers (and rtcd's voice activity).
    let audio_level = net.clients[1]
        .received
        .iter()
        .filter_map(|p| p.header.ext_vals.audio_level)
        .next();
    assert_eq!(audio_level, Some(-30));
    // The publisher's own m-lines keep transport-wide feedback, which its
    // bandwidth estimate needs.
    for (_, mid) in &net.clients[0].send_mids {
        let exts = net.clients[0].rtc.media(*mid).unwrap().remote_extmap();
        assert!(exts.id_of(Extension::TransportSequenceNumber).is_some());
    }
}
