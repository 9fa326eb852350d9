//! Two-phase shutdown of the real binary: SIGTERM stops new calls and
//! flips /readyz while running calls go on; the process exits 0 once the
//! last call ends, or when the drain deadline passes, closing what is left.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::{
    Client, Control, Proc, binary_env, call_id, http, metric, publish, rtcd_command, running_call,
};
use signaling::rtcd::{CloseReason, ErrorCode, FromRtcd, SessionState, ToRtcd};
use str0m::media::MediaKind;

async fn readyz(api: std::net::SocketAddr) -> u16 {
    http(api, "GET", "/readyz", &[], b"")
        .await
        .expect("GET /readyz")
        .status
}

/// A WHIP token minted by `rtcd token`, as an operator would.
fn cli_token(env: &[(String, String)], call: &str, role: &str) -> String {
    let out = rtcd_command(env)
        .args(["token", "--call", call, "--role", role])
        .output()
        .expect("rtcd token");
    assert!(out.status.success(), "rtcd token: {out:?}");
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_when_the_last_call_ends() {
    let env = binary_env(2, 20);
    let mut proc = Proc::spawn(&env).expect("rtcd runs");
    let api = proc.api;
    let control = Control::connect(api).await.expect("handshake");
    let call = call_id("before-drain");
    let (publisher, subs) = running_call(
        &control,
        &call,
        Client::udp("alice"),
        vec![Client::udp("bob")],
    )
    .await
    .expect("call set up");
    let bob = &subs[0];
    let _sending = publish(&publisher);
    assert!(
        bob.wait_received(MediaKind::Audio, 10, Duration::from_secs(3))
            .await,
        "media flows"
    );
    assert_eq!(readyz(api).await, 200);

    proc.signal(libc::SIGTERM);
    let until = Instant::now() + Duration::from_secs(2);
    while readyz(api).await != 503 {
        assert!(Instant::now() < until, "/readyz did not turn 503");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A new call is refused; the running one may still be "created".
    let request = control.request();
    control.send(&ToRtcd::CreateCall {
        call_id: call_id("after-drain"),
        request: Some(request),
    });
    let err = control
        .error_for(request, Duration::from_secs(2))
        .await
        .expect("a new call is refused");
    assert_eq!(err.code, ErrorCode::Draining, "{err:?}");
    control
        .create_call(&call)
        .await
        .expect("the running call is not new");
    // So is a WHIP publisher for a new call.
    let token = cli_token(&env, "whip-after-drain", "publish");
    let auth = format!("Bearer {token}");
    let offer_client = Client::udp("late");
    let (offer, _) = offer_client.offer(&[(MediaKind::Audio, None)], &[], false);
    let r = http(
        api,
        "POST",
        "/whip/whip-after-drain",
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &auth),
        ],
        offer.as_bytes(),
    )
    .await
    .expect("POST");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    control.send(&ToRtcd::GetLoad);
    let draining = control
        .wait_for(Duration::from_secs(2), |e| match e {
            FromRtcd::Load(l) if l.draining => Some(l.drain_remaining_ms),
            _ => None,
        })
        .await;
    // …and says how long its calls have left, for control to move them.
    let left = draining
        .expect("the load says draining")
        .expect("with the time left before the drain deadline");
    assert!(left > 0 && left <= 20_000, "{left} ms");
    // Which calls it holds, for control to end copies that moved away.
    control.send(&ToRtcd::ListCalls);
    let held = control
        .wait_for(Duration::from_secs(2), |e| match e {
            FromRtcd::Calls { calls } => Some(calls.clone()),
            _ => None,
        })
        .await;
    assert_eq!(held, Some(vec![call.clone()]));
    assert_eq!(metric(api, "rtcd_draining").await, 1.0);
    assert!(metric(api, r#"rtcd_rejected_total{reason="draining"}"#).await >= 2.0);

    // The running call keeps flowing.
    for _ in 0..3 {
        let before = bob.count(MediaKind::Audio);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let got = bob.count(MediaKind::Audio) - before;
        assert!(
            got >= 40,
            "only {got} audio packets in a second while draining"
        );
    }
    assert!(
        proc.wait_exit(Duration::ZERO).await.is_none(),
        "still running"
    );

    // The last call ends: rtcd exits cleanly, promptly.
    let ended = Instant::now();
    control.end_call(&call).await.expect("call ended");
    let status = proc
        .wait_exit(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("rtcd did not exit; log:\n{}", proc.log()));
    assert!(status.success(), "{status:?}; log:\n{}", proc.log());
    let took = ended.elapsed();
    eprintln!("exited {took:?} after the last call ended");
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_deadline_closes_calls_that_never_end() {
    let mut proc = Proc::spawn(&binary_env(2, 2)).expect("rtcd runs");
    let control = Control::connect(proc.api).await.expect("handshake");
    let call = call_id("endless");
    let (publisher, subs) = running_call(
        &control,
        &call,
        Client::udp("alice"),
        vec![Client::udp("bob")],
    )
    .await
    .expect("call set up");
    let bob = &subs[0];
    let _sending = publish(&publisher);
    assert!(
        bob.wait_received(MediaKind::Audio, 10, Duration::from_secs(3))
            .await
    );

    let signalled = Instant::now();
    proc.signal(libc::SIGTERM);
    let status = proc
        .wait_exit(Duration::from_secs(8))
        .await
        .unwrap_or_else(|| panic!("rtcd did not exit; log:\n{}", proc.log()));
    let took = signalled.elapsed();
    eprintln!("exited {took:?} after SIGTERM (deadline 2 s)");
    assert!(status.success(), "{status:?}; log:\n{}", proc.log());
    assert!(
        took >= Duration::from_millis(1_900),
        "exited after {took:?}, before the 2 s deadline"
    );
    assert!(took < Duration::from_secs(6), "exit took {took:?}");
    // Media flowed until the deadline.
    let last = bob.state().received.last().map(|r| r.at).expect("media");
    assert!(
        last.saturating_duration_since(signalled) >= Duration::from_millis(1_500),
        "media stopped {:?} after SIGTERM",
        last.saturating_duration_since(signalled)
    );
    // Control was told why each session went away.
    let closed = control
        .wait_events(Duration::from_secs(1), |events| {
            let drained: Vec<&str> = events
                .iter()
                .filter_map(|e| match e {
                    FromRtcd::SessionState {
                        session_id,
                        state:
                            SessionState::Closed {
                                reason: CloseReason::Drained,
                            },
                    } => Some(session_id.as_str()),
                    _ => None,
                })
                .collect();
            (drained.contains(&"alice") && drained.contains(&"bob")).then_some(())
        })
        .await;
    assert!(
        closed.is_some(),
        "no drained close for both sessions: {:?}",
        control.events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_no_call_exits_at_once() {
    let mut proc = Proc::spawn(&binary_env(1, 300)).expect("rtcd runs");
    assert_eq!(readyz(proc.api).await, 200);
    let signalled = Instant::now();
    proc.signal(libc::SIGTERM);
    let status = proc
        .wait_exit(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("rtcd did not exit; log:\n{}", proc.log()));
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "{:?}",
        signalled.elapsed()
    );
}

/// Once rtcd says it started (and /readyz answers 200), a SIGTERM must
/// drain, not kill: orchestrators stop freshly started nodes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_start_still_drains() {
    for _ in 0..5 {
        let mut proc = Proc::spawn(&binary_env(1, 300)).expect("rtcd runs");
        proc.signal(libc::SIGTERM);
        let status = proc
            .wait_exit(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("rtcd did not exit; log:\n{}", proc.log()));
        assert!(status.success(), "killed instead of drained: {status:?}");
    }
}
