//! The control API over a real WebSocket: the handshake control relies on,
//! and the request/response shape of call management.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{Control, call_id, config, start, ws_connect, ws_next, ws_send};
use signaling::rtcd::{ErrorCode, FromRtcd, ToRtcd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_is_answered_with_a_welcome_naming_the_node_and_its_load() {
    let rtcd = start(config(2)).await;
    let control = Control::connect(rtcd.api_addr).await.expect("handshake");
    assert_eq!(control.welcome.workers, 2);
    assert_eq!(control.welcome.calls, 0);
    assert!(!control.welcome.draining);

    // The node id is ours, and a load arrives on request.
    let mut ws = ws_connect(rtcd.api_addr, Some(common::API_KEY))
        .await
        .expect("upgrade");
    ws_send(
        &mut ws,
        &ToRtcd::Hello {
            version: signaling::PROTOCOL_VERSION,
            node_id: "control-b".into(),
        },
    )
    .await;
    match ws_next(&mut ws, Duration::from_secs(5)).await {
        Some(FromRtcd::Welcome { node_id, .. }) => assert_eq!(node_id, "rtcd-test"),
        other => panic!("expected welcome, got {other:?}"),
    }
    control.send(&ToRtcd::GetLoad);
    let load = control
        .wait_for(Duration::from_secs(2), |e| match e {
            FromRtcd::Load(l) => Some(l.clone()),
            _ => None,
        })
        .await
        .expect("a load");
    assert_eq!(load.workers, 2);
    rtcd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_created_ended_and_refused_with_the_request_number() {
    let rtcd = start(config(2)).await;
    let control = Control::connect(rtcd.api_addr).await.expect("handshake");
    let call = call_id("standup");
    control.create_call(&call).await.expect("created");
    // Idempotent.
    control.create_call(&call).await.expect("created again");
    control.send(&ToRtcd::GetLoad);
    let calls = control
        .wait_for(Duration::from_secs(2), |e| match e {
            FromRtcd::Load(l) if l.calls == 1 => Some(l.calls),
            _ => None,
        })
        .await;
    assert_eq!(calls, Some(1), "the load counts the call");

    control.end_call(&call).await.expect("ended");
    let request = control.request();
    control.send(&ToRtcd::EndCall {
        call_id: call.clone(),
        request: Some(request),
    });
    let err = control
        .error_for(request, Duration::from_secs(2))
        .await
        .expect("ending an unknown call is refused");
    assert_eq!(err.code, ErrorCode::UnknownCall);
    assert_eq!(err.call_id.as_ref(), Some(&call));

    // A session for a call that does not exist.
    let request = control.request();
    control.send(&ToRtcd::AddSession {
        call_id: call_id("nowhere"),
        session_id: common::session_id("alice"),
        permissions: Default::default(),
        request: Some(request),
    });
    let err = control
        .error_for(request, Duration::from_secs(2))
        .await
        .expect("refused");
    assert_eq!(err.code, ErrorCode::UnknownCall);
    rtcd.stop().await;
}

/// AddSession with an id already in use elsewhere is refused (conflict)
/// and must leave the existing session where it is: control can still
/// mute it, and the mute is enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_add_session_leaves_the_existing_session_reachable() {
    use common::{Client, publish, running_call};
    use str0m::media::MediaKind;

    let rtcd = start(config(2)).await;
    let control = Control::connect(rtcd.api_addr).await.expect("handshake");
    // Two calls, placed on the two workers (the emptier one wins).
    let first = call_id("first");
    let (alice, subs) = running_call(
        &control,
        &first,
        Client::udp("alice"),
        vec![Client::udp("bob")],
    )
    .await
    .expect("call set up");
    let second = call_id("second");
    control.create_call(&second).await.expect("second call");
    let bob = &subs[0];
    let _sending = publish(&alice);
    assert!(
        bob.wait_received(MediaKind::Audio, 10, Duration::from_secs(3))
            .await
    );

    let request = control.request();
    control.send(&ToRtcd::AddSession {
        call_id: second.clone(),
        session_id: common::session_id("alice"),
        permissions: Default::default(),
        request: Some(request),
    });
    let err = control
        .error_for(request, Duration::from_secs(2))
        .await
        .expect("the duplicate is refused");
    assert_eq!(err.code, ErrorCode::Conflict, "{err:?}");

    control.send(&ToRtcd::SetMuted {
        session_id: common::session_id("alice"),
        muted: true,
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stray = control
        .events()
        .into_iter()
        .find(|e| matches!(e, FromRtcd::Error(err) if err.code == ErrorCode::UnknownSession));
    assert_eq!(stray, None, "the mute did not reach alice's worker");
    let before = bob.count(MediaKind::Audio);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        bob.count(MediaKind::Audio),
        before,
        "alice is still heard after being muted"
    );
    drop((alice, subs));
    rtcd.stop().await;
}
