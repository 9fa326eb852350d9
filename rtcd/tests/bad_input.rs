//! Hostile and broken input against a node with a call running: every
//! refusal is counted in /metrics under its reason, and the call's media
//! keeps flowing intact through it all.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{
    API_KEY, Client, Control, Publishing, assert_stream, call_id, config, metrics, noise, publish,
    running_call, session_id, start, stun_binding_request, value, wait_metrics, ws_connect,
    ws_next, ws_send,
};
use signaling::media::{Permissions, Sdp};
use signaling::rtcd::{ErrorCode, FromRtcd, ToRtcd};
use str0m::media::MediaKind;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const UNKNOWN_SOURCE: &str = r#"rtcd_dropped_total{reason="unknown_source"}"#;
const REJECTED: &str = r#"rtcd_dropped_total{reason="rejected"}"#;
const OVERSIZED: &str = r#"rtcd_dropped_total{reason="oversized"}"#;
const BAD_SDP: &str = r#"rtcd_dropped_total{reason="bad_sdp"}"#;

/// A call with alice publishing to bob, media already flowing.
async fn flowing_call(control: &Control) -> (Client, Client, Publishing) {
    let (publisher, mut subs) = running_call(
        control,
        &call_id("target"),
        Client::udp("alice"),
        vec![Client::udp("bob")],
    )
    .await
    .expect("call set up");
    let bob = subs.pop().expect("bob");
    let sending = publish(&publisher);
    assert!(
        bob.wait_received(MediaKind::Audio, 10, Duration::from_secs(3))
            .await,
        "media flows before the test starts"
    );
    (publisher, bob, sending)
}

/// Asserts bob still receives fresh media, then that everything he got
/// from the start was intact and continuous.
async fn assert_still_flowing(bob: &Client, sending: Publishing) {
    let before = bob.count(MediaKind::Audio);
    assert!(
        bob.wait_received(MediaKind::Audio, before + 25, Duration::from_secs(2))
            .await,
        "bob stopped receiving after the bad input ({before} packets)"
    );
    let (audio, video) = sending.stop();
    bob.wait_received(MediaKind::Audio, audio as usize, Duration::from_secs(1))
        .await;
    bob.wait_received(MediaKind::Video, video as usize, Duration::from_secs(1))
        .await;
    assert_eq!(bob.error(), None);
    assert_stream(bob, MediaKind::Audio, audio, 5);
    assert_stream(bob, MediaKind::Video, video, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_media_port_is_counted_and_the_call_keeps_flowing() {
    let rtcd = start(config(2)).await;
    let (api, media) = (rtcd.api_addr, rtcd.media_addr);
    let control = Control::connect(api).await.expect("handshake");
    let (alice, bob, sending) = flowing_call(&control).await;
    let ufrag = alice.state().remote_ufrag.clone().expect("rtcd's ufrag");

    // Counters before, once the workers' snapshots caught up.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = metrics(api).await;

    let stranger = UdpSocket::bind("127.0.0.1:0").expect("bind");
    // 1. Random datagrams from an address rtcd never saw.
    let random = 300;
    for i in 0..random {
        let mut d = noise(i, 1 + (i as usize * 37) % 1400);
        d[0] |= 0x80; // never STUN-shaped
        stranger.send_to(&d, media).expect("send");
    }
    // 2. Valid-looking binding requests for a ufrag no session has, one
    //    naming each worker, so steering sees them too.
    let unknown = 10;
    for i in 0..unknown {
        let username = format!("{:02x}nosuchufrag:peer", i % 2);
        stranger
            .send_to(&stun_binding_request(&username, "whatever-password"), media)
            .expect("send");
    }
    // 3. A known ufrag with a MESSAGE-INTEGRITY keyed by the wrong password.
    let forged = 10;
    for _ in 0..forged {
        let req = stun_binding_request(&format!("{ufrag}:peer"), "not-the-ice-password");
        stranger.send_to(&req, media).expect("send");
    }
    // 4. That request truncated at every length.
    let req = stun_binding_request(&format!("{ufrag}:peer"), "not-the-ice-password");
    let truncated = req.len() - 1;
    for n in 1..req.len() {
        stranger.send_to(&req[..n], media).expect("send");
    }
    // 5. Datagrams larger than any rtcd accepts.
    let big = 3;
    for i in 0..big {
        stranger
            .send_to(&noise(1000 + i, 5_000), media)
            .expect("send");
    }
    let want_unknown = value(&before, UNKNOWN_SOURCE) + (random + unknown) as f64;
    let want_rejected = value(&before, REJECTED) + forged as f64;
    let want_either = value(&before, UNKNOWN_SOURCE)
        + value(&before, REJECTED)
        + (random + unknown + forged) as f64
        + truncated as f64;
    let want_oversized = value(&before, OVERSIZED) + big as f64;
    let (after, ok) = wait_metrics(api, Duration::from_secs(3), |m| {
        value(m, UNKNOWN_SOURCE) >= want_unknown
            && value(m, REJECTED) >= want_rejected
            && value(m, UNKNOWN_SOURCE) + value(m, REJECTED) >= want_either
            && value(m, OVERSIZED) >= want_oversized
    })
    .await;
    assert!(
        ok,
        "unknown_source {} (want ≥ {want_unknown}), rejected {} (want ≥ {want_rejected}), \
         both {} (want ≥ {want_either}), oversized {} (want ≥ {want_oversized})",
        value(&after, UNKNOWN_SOURCE),
        value(&after, REJECTED),
        value(&after, UNKNOWN_SOURCE) + value(&after, REJECTED),
        value(&after, OVERSIZED),
    );

    // 6. Garbage from the publisher's own, established address.
    for i in 0..100 {
        alice.send_raw(media, &noise(5000 + i, 20 + i as usize * 11));
    }
    // 7. ICE-TCP: a first frame that is not STUN, one that names no
    //    worker, and a frame longer than any datagram: each connection is
    //    closed.
    let zz = stun_binding_request("zznosuchufrag:peer", "x");
    for frame in [vec![1, 2, 3, 4, 5], zz] {
        let mut s = tokio::net::TcpStream::connect(media).await.expect("tcp");
        let mut framed = (frame.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&frame);
        s.write_all(&framed).await.expect("write");
        assert_closed(&mut s).await;
    }
    let mut s = tokio::net::TcpStream::connect(media).await.expect("tcp");
    let req = stun_binding_request(&format!("{ufrag}:peer"), "not-the-ice-password");
    let mut framed = 60_000u16.to_be_bytes().to_vec();
    framed.extend_from_slice(&req);
    s.write_all(&framed).await.expect("write");
    assert_closed(&mut s).await;

    assert_still_flowing(&bob, sending).await;
    assert_eq!(alice.error(), None);
    drop((alice, bob));
    rtcd.stop().await;
}

async fn assert_closed(s: &mut tokio::net::TcpStream) {
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "rtcd kept a bad ICE-TCP connection open: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_control_input_is_refused_counted_and_harmless() {
    let mut cfg = config(2);
    cfg.api.max_message_bytes = 16 << 10;
    let rtcd = start(cfg).await;
    let api = rtcd.api_addr;
    let control = Control::connect(api).await.expect("handshake");
    let (alice, bob, sending) = flowing_call(&control).await;

    // Unauthenticated: no key, a wrong key. The upgrade is refused.
    for key in [None, Some("0123456789abcdef0123456789abcdef-wrong!!")] {
        match ws_connect(api, key).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status(), 401, "key {key:?}")
            }
            Err(e) => panic!("key {key:?}: unexpected error {e}"),
            Ok(_) => panic!("key {key:?}: connection accepted"),
        }
    }

    // A protocol version rtcd does not speak.
    let mut ws = ws_connect(api, Some(API_KEY)).await.expect("upgrade");
    ws_send(
        &mut ws,
        &ToRtcd::Hello {
            version: 99,
            node_id: "from-the-future".into(),
        },
    )
    .await;
    match ws_next(&mut ws, Duration::from_secs(2)).await {
        Some(FromRtcd::Error(e)) => assert_eq!(e.code, ErrorCode::Version, "{e:?}"),
        other => panic!("expected a version error, got {other:?}"),
    }
    assert_eq!(
        ws_next(&mut ws, Duration::from_secs(2)).await,
        None,
        "closed"
    );

    // Invalid JSON and an unknown message: refused, connection usable.
    let other = Control::connect(api).await.expect("handshake");
    other.send_text("{this is not json".into());
    other.send_text(r#"{"type":"launch_rockets","call_id":"x"}"#.into());
    let bad = other
        .wait_events(Duration::from_secs(2), |events| {
            let n = events
                .iter()
                .filter(|e| common::error_code(e) == Some(ErrorCode::BadMessage))
                .count();
            (n == 2).then_some(())
        })
        .await;
    assert!(
        bad.is_some(),
        "two bad_message errors: {:?}",
        other.events()
    );
    other.send(&ToRtcd::GetLoad);
    let load = other
        .wait_for(Duration::from_secs(2), |e| match e {
            FromRtcd::Load(l) if l.calls == 1 => Some(()),
            _ => None,
        })
        .await;
    assert!(load.is_some(), "the connection still answers");
    assert!(!other.is_closed());

    // A message over api.max_message_bytes: the connection is closed.
    let mut ws = ws_connect(api, Some(API_KEY)).await.expect("upgrade");
    ws_send(
        &mut ws,
        &ToRtcd::Hello {
            version: signaling::PROTOCOL_VERSION,
            node_id: "chatty".into(),
        },
    )
    .await;
    assert!(matches!(
        ws_next(&mut ws, Duration::from_secs(2)).await,
        Some(FromRtcd::Welcome { .. })
    ));
    let huge = ToRtcd::Offer {
        session_id: session_id("bob"),
        offer: Sdp {
            sdp: "a".repeat(32 << 10),
            negotiation: 0,
        },
        tracks: vec![],
    };
    use futures_util::SinkExt as _;
    let _ = ws
        .send(tokio_tungstenite::tungstenite::Message::text(
            serde_json::to_string(&huge).expect("serializes"),
        ))
        .await;
    assert_eq!(
        ws_next(&mut ws, Duration::from_secs(3)).await,
        None,
        "an oversized message closes the connection"
    );

    // Malformed SDP: an offer for a new session, an answer for bob's.
    let request = control.request();
    control.send(&ToRtcd::AddSession {
        call_id: call_id("target"),
        session_id: session_id("mallory"),
        permissions: Permissions::PARTICIPANT,
        request: Some(request),
    });
    control.send(&ToRtcd::Offer {
        session_id: session_id("mallory"),
        offer: Sdp {
            sdp: "v=0\r\nthis is not sdp\r\n".into(),
            negotiation: 0,
        },
        tracks: vec![],
    });
    control.send(&ToRtcd::Answer {
        session_id: session_id("bob"),
        answer: Sdp {
            sdp: "v=0\r\nm=garbage\r\n".into(),
            negotiation: 1,
        },
    });
    let bad_sdp = control
        .wait_events(Duration::from_secs(2), |events| {
            let who: Vec<String> = events
                .iter()
                .filter_map(|e| match e {
                    FromRtcd::Error(err) if err.code == ErrorCode::BadSdp => {
                        err.session_id.as_ref().map(|s| s.to_string())
                    }
                    _ => None,
                })
                .collect();
            (who.contains(&"mallory".to_string()) && who.contains(&"bob".to_string())).then_some(())
        })
        .await;
    assert!(
        bad_sdp.is_some(),
        "bad_sdp for both: {:?}",
        control.events()
    );

    let rejected = |r: &str| format!(r#"rtcd_rejected_total{{reason="{r}"}}"#);
    let (m, ok) = wait_metrics(api, Duration::from_secs(3), |m| {
        value(m, &rejected("unauthenticated")) >= 2.0
            && value(m, &rejected("version")) >= 1.0
            && value(m, &rejected("bad_message")) >= 2.0
            && value(m, &rejected("oversized")) >= 1.0
            && value(m, BAD_SDP) >= 2.0
    })
    .await;
    assert!(
        ok,
        "unauthenticated {}, version {}, bad_message {}, oversized {}, bad_sdp {}",
        value(&m, &rejected("unauthenticated")),
        value(&m, &rejected("version")),
        value(&m, &rejected("bad_message")),
        value(&m, &rejected("oversized")),
        value(&m, BAD_SDP),
    );

    assert_still_flowing(&bob, sending).await;
    assert_eq!(control.failures(), Vec::<String>::new());
    drop((alice, bob));
    rtcd.stop().await;
}

/// A control node whose TCP connection simply drops (crash, network cut)
/// is not an oversized message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_control_node_is_not_counted_as_oversized() {
    let rtcd = start(config(1)).await;
    let api = rtcd.api_addr;
    let mut ws = ws_connect(api, Some(API_KEY)).await.expect("upgrade");
    ws_send(
        &mut ws,
        &ToRtcd::Hello {
            version: signaling::PROTOCOL_VERSION,
            node_id: "crashy".into(),
        },
    )
    .await;
    assert!(matches!(
        ws_next(&mut ws, Duration::from_secs(2)).await,
        Some(FromRtcd::Welcome { .. })
    ));
    // Drop the TCP connection without a WebSocket close frame.
    drop(ws);
    let gone = common::wait_metric(
        api,
        "rtcd_control_connections",
        Duration::from_secs(2),
        |v| v == 0.0,
    )
    .await;
    assert!(gone.1, "the connection was noticed as gone");
    let oversized = common::metric(api, r#"rtcd_rejected_total{reason="oversized"}"#).await;
    assert_eq!(oversized, 0.0, "a dropped connection counted as oversized");
    rtcd.stop().await;
}
