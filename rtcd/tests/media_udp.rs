//! A whole call over real UDP on loopback: a str0m publisher and str0m
//! subscribers joined through the control API, media checked end to end.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{
    Client, Control, assert_stream, call_id, config, metrics, publish, running_call, start, sum_of,
};
use signaling::media::{Permissions, TrackSource};
use signaling::rtcd::{CloseReason, FromRtcd, SessionState};
use str0m::media::MediaKind;

/// How long the publisher sends while the subscribers are checked.
const SEND_FOR: Duration = Duration::from_millis(2_200);

async fn call_delivers_every_packet_intact(workers: usize) {
    let rtcd = start(config(workers)).await;
    let api = rtcd.api_addr;
    let control = Control::connect(api).await.expect("handshake");
    let call = call_id("udp-call");
    let (publisher, mut subscribers) = running_call(
        &control,
        &call,
        Client::udp("alice"),
        vec![Client::udp("bob"), Client::udp("carol")],
    )
    .await
    .expect("call set up");

    if workers > 1 {
        // The kernel spreads client paths over the workers' sockets by a
        // hash of the 4-tuple; a path that lands on the worker not owning
        // the call must be steered. Add listeners until one is (each has
        // an even chance), so the steering path is always exercised.
        let mut steered = 0.0;
        for i in 0..8 {
            tokio::time::sleep(Duration::from_millis(600)).await;
            steered = sum_of(&metrics(api).await, "rtcd_worker_steered_datagrams");
            if steered > 0.0 {
                break;
            }
            let extra = Client::udp(&format!("extra-{i}"));
            control
                .join(&call, &extra, Permissions::RECEIVE_ONLY, &[])
                .await
                .expect("extra listener joins");
            extra
                .wait_connected(Duration::from_secs(5))
                .await
                .expect("extra listener connects");
            common::wait_subscribed(&extra).await.expect("subscribed");
            subscribers.push(extra);
        }
        assert!(
            steered > 0.0,
            "no datagram was ever steered between workers"
        );
    }

    let sending = publish(&publisher);
    tokio::time::sleep(SEND_FOR).await;
    let (audio, video) = sending.stop();
    assert!(
        audio >= 100 && video >= 50,
        "sent {audio} audio, {video} video"
    );
    // Let the last packets arrive.
    for s in &subscribers {
        s.wait_received(MediaKind::Audio, audio as usize, Duration::from_secs(1))
            .await;
        s.wait_received(MediaKind::Video, video as usize, Duration::from_secs(1))
            .await;
    }
    for s in &subscribers {
        assert_eq!(s.error(), None, "{}", s.name());
        assert_stream(s, MediaKind::Audio, audio, 5);
        assert_stream(s, MediaKind::Video, video, 3);
    }
    // The publisher hears nothing of its own.
    assert!(publisher.state().received.is_empty());
    assert_eq!(control.failures(), Vec::<String>::new());

    // Control heard what it needs: both tracks, and voice activity from
    // the audio-level extension.
    let events = control.events();
    for source in [TrackSource::Microphone, TrackSource::Camera] {
        assert!(
            events.iter().any(
                |e| matches!(e, FromRtcd::Track { session_id, source: s, active: true }
                if session_id.as_str() == "alice" && *s == source)
            ),
            "no track event for {source:?}"
        );
    }
    assert!(events.iter().any(|e| matches!(e,
        FromRtcd::VoiceActivity { session_id, speaking: true } if session_id.as_str() == "alice")));

    // The metrics count what was forwarded (snapshots lag up to 500 ms).
    let n = subscribers.len() as f64;
    let (v, ok) = common::wait_metric(
        api,
        r#"rtcd_forwarded_packets_total{kind="audio"}"#,
        Duration::from_secs(2),
        |v| v >= n * (audio as f64 - 5.0),
    )
    .await;
    assert!(ok, "forwarded audio packets: {v}");
    let m = metrics(api).await;
    assert_eq!(m.get("rtcd_sessions"), Some(&(n + 1.0)));
    assert_eq!(m.get("rtcd_calls"), Some(&1.0));

    control.end_call(&call).await.expect("call ended");
    let closed = control
        .wait_events(Duration::from_secs(2), |events| {
            let closed = events
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        FromRtcd::SessionState {
                            state: SessionState::Closed {
                                reason: CloseReason::CallEnded
                            },
                            ..
                        }
                    )
                })
                .count();
            (closed == subscribers.len() + 1).then_some(())
        })
        .await;
    assert!(closed.is_some(), "every session is closed with the call");
    drop(subscribers);
    drop(publisher);
    rtcd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_call_on_two_workers_delivers_every_packet_intact() {
    call_delivers_every_packet_intact(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_call_on_one_worker_delivers_every_packet_intact() {
    call_delivers_every_packet_intact(1).await;
}
