//! ICE-TCP (RFC 6544, RFC 4571 framing) on the media port number, for
//! clients whose network blocks UDP: str0m clients with only an active TCP
//! candidate, one TCP stream each to rtcd.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{
    Client, Control, assert_stream, call_id, config, metric, publish, running_call, start,
};
use signaling::rtcd::FromRtcd;
use str0m::media::MediaKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_flows_intact_over_ice_tcp() {
    let rtcd = start(config(2)).await;
    let api = rtcd.api_addr;
    let media = rtcd.media_addr;
    let control = Control::connect(api).await.expect("handshake");
    let call = call_id("tcp-call");
    // A TCP-only publisher, a TCP-only subscriber and a UDP subscriber.
    let (publisher, subscribers) = running_call(
        &control,
        &call,
        Client::tcp("alice", media),
        vec![Client::tcp("bob", media), Client::udp("carol")],
    )
    .await
    .expect("call set up over TCP");

    // rtcd advertised a passive TCP candidate on the UDP port's number.
    let answer = control
        .wait_for(Duration::from_secs(1), |e| match e {
            FromRtcd::Answer { session_id, answer } if session_id.as_str() == "alice" => {
                Some(answer.sdp.clone())
            }
            _ => None,
        })
        .await
        .expect("alice's answer");
    let tcp_candidate = answer
        .lines()
        .find(|l| l.starts_with("a=candidate:") && l.to_ascii_lowercase().contains(" tcp "))
        .unwrap_or_else(|| panic!("no TCP candidate in:\n{answer}"));
    assert!(
        tcp_candidate.contains(&format!(" {} ", media.port())) && tcp_candidate.contains("passive"),
        "{tcp_candidate}"
    );
    let (v, ok) = common::wait_metric(
        api,
        "rtcd_ice_tcp_connections",
        Duration::from_secs(2),
        |v| v == 2.0,
    )
    .await;
    assert!(ok, "ICE-TCP connections: {v}");

    let sending = publish(&publisher);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let (audio, video) = sending.stop();
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
    // Everything the TCP clients got came in RFC 4571 frames.
    for c in [&publisher, &subscribers[0]] {
        let st = c.state();
        assert!(st.tcp_frames > 0, "{} received no TCP frame", c.name());
        assert!(!st.eof, "{}'s stream was closed", c.name());
    }
    assert_eq!(control.failures(), Vec::<String>::new());
    assert_eq!(metric(api, "rtcd_calls").await, 1.0);
    drop(subscribers);
    drop(publisher);
    rtcd.stop().await;
}
