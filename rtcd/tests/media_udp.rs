//! A whole call over real UDP on loopback: a str0m publisher and str0m
//! subscribers joined through the control API, media checked end to end.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{
    Client, Control, assert_stream, call_id, config, metrics, publish, running_call,
    socket_landing_on, start, sum_of, ufrag_worker,
};
use signaling::media::TrackSource;
use signaling::rtcd::{CloseReason, FromRtcd, SessionState};
use str0m::media::MediaKind;

/// How long the publisher sends while the subscribers are checked.
const SEND_FOR: Duration = Duration::from_millis(2_200);

async fn call_delivers_every_packet_intact(workers: usize) {
    let rtcd = start(config(workers)).await;
    let api = rtcd.api_addr;
    let control = Control::connect(api).await.expect("handshake");
    let call = call_id("udp-call");
    // With two workers the call lands on worker 0 (the first of the
    // emptiest). The kernel spreads client paths over the workers' sockets
    // by a hash of the 4-tuple: put the publisher on worker 1's socket, so
    // that every packet it sends must be steered, and bob on worker 0's.
    let (alice, bob) = if workers > 1 {
        (
            Client::udp_on("alice", socket_landing_on(api, rtcd.media_addr, 1).await),
            Client::udp_on("bob", socket_landing_on(api, rtcd.media_addr, 0).await),
        )
    } else {
        (Client::udp("alice"), Client::udp("bob"))
    };
    let steered_before = sum_of(&metrics(api).await, "rtcd_worker_steered_datagrams");
    let (publisher, subscribers) =
        running_call(&control, &call, alice, vec![bob, Client::udp("carol")])
            .await
            .expect("call set up");
    for c in [&publisher, &subscribers[0]] {
        assert_eq!(
            ufrag_worker(c),
            Some(0),
            "{}'s session is on worker 0",
            c.name()
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

    if workers > 1 {
        let (m, ok) = common::wait_metrics(api, Duration::from_secs(2), |m| {
            sum_of(m, "rtcd_worker_steered_datagrams") >= steered_before + audio as f64
        })
        .await;
        assert!(
            ok,
            "the publisher's packets were not steered: {}",
            sum_of(&m, "rtcd_worker_steered_datagrams") - steered_before
        );
    }
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
    // Each video packet's fan-out is timed once, however many it reaches
    // (the publisher's first packet, which reaches no one, included).
    let (v, ok) = common::wait_metric(
        api,
        "rtcd_video_fanout_seconds_count",
        Duration::from_secs(2),
        |v| v >= video as f64,
    )
    .await;
    assert!(
        ok && v <= video as f64 + 1.0,
        "timed video fan-outs: {v} of {video}"
    );
    let m = metrics(api).await;
    assert_eq!(
        m.get(r#"rtcd_video_fanout_seconds_bucket{le="+Inf"}"#),
        m.get("rtcd_video_fanout_seconds_count"),
        "every fan-out fell in a bucket"
    );
    // A session is given a release pass only after something was written
    // to it, and every subscriber had one.
    let passes = m.get("rtcd_release_passes_total").copied().unwrap_or(0.0);
    let forwarded = sum_of(&m, "rtcd_forwarded_packets_total");
    assert!(
        passes >= n && passes <= forwarded,
        "{passes} release passes for {forwarded} forwarded packets to {n} subscribers"
    );
    // Each session's first connection was timed, once.
    for key in [
        "rtcd_session_connect_seconds_count",
        r#"rtcd_session_connect_seconds_bucket{le="+Inf"}"#,
    ] {
        assert_eq!(m.get(key), Some(&(n + 1.0)), "{key}");
    }
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

/// A client whose network changed gets new ICE credentials from rtcd.
/// The new ufrag must still name the session's worker: the clients here
/// sit on the other worker's socket, so their checks with the new
/// credentials, and every packet after them, only arrive if steered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_restart_keeps_media_flowing_through_the_steering_worker() {
    use signaling::rtcd::ToRtcd;

    let rtcd = start(config(2)).await;
    let api = rtcd.api_addr;
    let control = Control::connect(api).await.expect("handshake");
    let alice = Client::udp_on("alice", socket_landing_on(api, rtcd.media_addr, 1).await);
    let bob = Client::udp_on("bob", socket_landing_on(api, rtcd.media_addr, 1).await);
    let (publisher, subscribers) = running_call(&control, &call_id("restart"), alice, vec![bob])
        .await
        .expect("call set up");
    let bob = &subscribers[0];
    let sending = publish(&publisher);
    assert!(
        bob.wait_received(MediaKind::Audio, 25, Duration::from_secs(3))
            .await
    );

    let clients = [&publisher, bob];
    let old: Vec<Option<String>> = clients
        .iter()
        .map(|c| c.state().remote_ufrag.clone())
        .collect();
    for c in clients {
        control.send(&ToRtcd::IceRestart {
            session_id: c.session_id(),
        });
    }
    // rtcd offers new credentials; the clients answer through control.
    let restarted = common::eventually(Duration::from_secs(3), || {
        clients
            .iter()
            .zip(&old)
            .all(|(c, o)| c.state().remote_ufrag != *o)
            .then_some(())
    })
    .await;
    assert!(restarted.is_some(), "no new ICE credentials offered");
    for c in clients {
        assert_eq!(
            ufrag_worker(c),
            Some(0),
            "{}'s new ufrag names worker 0",
            c.name()
        );
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let unknown_before =
        common::metric(api, r#"rtcd_dropped_total{reason="unknown_source"}"#).await;

    // Media goes on for two more seconds, none of it lost to steering.
    let before = bob.count(MediaKind::Audio);
    assert!(
        bob.wait_received(MediaKind::Audio, before + 100, Duration::from_secs(3))
            .await,
        "media stopped after the ICE restart"
    );
    let (audio, video) = sending.stop();
    bob.wait_received(MediaKind::Audio, audio as usize, Duration::from_secs(1))
        .await;
    bob.wait_received(MediaKind::Video, video as usize, Duration::from_secs(1))
        .await;
    assert_stream(bob, MediaKind::Audio, audio, 5);
    assert_stream(bob, MediaKind::Video, video, 3);
    let (unknown, ok) = common::wait_metric(
        api,
        r#"rtcd_dropped_total{reason="unknown_source"}"#,
        Duration::from_millis(700),
        |v| v > unknown_before + 5.0,
    )
    .await;
    assert!(!ok, "packets went unrouted after the restart: {unknown}");
    let errors: Vec<_> = control
        .events()
        .into_iter()
        .filter(|e| matches!(e, FromRtcd::Error(_)))
        .collect();
    assert_eq!(errors, vec![], "rtcd refused part of the restart");
    assert_eq!(control.failures(), Vec::<String>::new());
    assert_eq!(publisher.error(), None);
    drop(subscribers);
    drop(publisher);
    rtcd.stop().await;
}
