//! Calls against the real embedded rtcd and real WebRTC peers (str0m on
//! loopback), on SQLite and PostgreSQL: join and negotiate over the
//! WebSocket until media flows, permissions (members only, removed users
//! stay out, forged or foreign session ids refused), host controls and
//! their enforcement in rtcd, one screen share, the participant limit,
//! ringing, the end of a call and its post, reaction floods; and two
//! control nodes on one PostgreSQL sharing a call.

mod common;
#[path = "common/peer.rs"]
mod peer;

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::socket::{self, Ws};
use common::{Kind, Server, TestApp, TestDb, TestUser};
use control::Config;
use control::db::users::SystemRole;
use control::nodes::RtcdConfig;
use futures_util::StreamExt as _;
use peer::Peer;
use serde_json::{Value, json};
use signaling::events::Event;
use tests::rtcd_proc::RtcdProcess;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

fn config() -> Config {
    Config {
        rtcd: RtcdConfig::loopback(),
        ..Config::default()
    }
}

/// An app with its media node up, served on a loopback port.
struct Ctx {
    app: TestApp,
    server: Server,
}

impl Ctx {
    async fn new(kind: Kind, config: Config) -> Ctx {
        let app = TestApp::with_config(kind, config).await;
        app.state
            .nodes
            .start()
            .await
            .expect("the embedded media node starts");
        let server = Server::start(app.state.clone()).await;
        Ctx { app, server }
    }

    async fn stop(self) {
        self.server.stop().await;
        self.app.state.nodes.stop().await;
    }

    async fn ws(&self, who: &TestUser) -> Ws {
        socket::connect(self.server.addr, who).await
    }

    /// Starts or joins the channel's call: (call id, session id, body).
    async fn join(&self, channel: &str, who: &TestUser) -> (String, String, Value) {
        let r = self
            .app
            .post(&format!("/api/v1/channels/{channel}/call"), who, json!({}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let call = r.body["call_id"].as_str().unwrap().to_owned();
        let session = r.body["session_id"].as_str().unwrap().to_owned();
        (call, session, r.body)
    }

    async fn patch(&self, uri: &str, who: &TestUser, body: Value) -> common::Resp {
        self.app
            .call(Method::PATCH, uri, Some(who), Some(body))
            .await
    }

    async fn delete(&self, uri: &str, who: &TestUser) -> common::Resp {
        self.app.call(Method::DELETE, uri, Some(who), None).await
    }

    /// Every event in the log, oldest first.
    async fn events(&self) -> Vec<Event> {
        control::db::events::since(&self.app.state.db, 0, 100_000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect()
    }
}

async fn send(ws: &mut Ws, v: Value) {
    socket::send(ws, v).await
}

/// The next JSON message but presence changes; panics after [`WAIT`].
async fn next(ws: &mut Ws) -> Value {
    loop {
        let v = socket::read(ws, WAIT).await;
        if v["type"] != "presence" {
            return v;
        }
    }
}

/// Reads until a message `pred` accepts (others are skipped).
async fn until(ws: &mut Ws, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no {what} in time");
        let v = next(ws).await;
        if pred(&v) {
            return v;
        }
    }
}

fn is_event(v: &Value, kind: &str) -> bool {
    v["type"] == "event" && v["event"]["type"] == kind
}

async fn signal(ws: &mut Ws, call: &str, session: &str, signal: Value) {
    send(
        ws,
        json!({"type": "call_signal", "call_id": call, "session_id": session, "signal": signal}),
    )
    .await;
}

/// The error the messages sent before a ping got (Null if none): reads
/// up to the ping's pong, so nothing is left over for the next check.
async fn error_or_pong(ws: &mut Ws) -> Value {
    send(ws, json!({"type": "ping", "nonce": 9})).await;
    let mut error = json!({});
    loop {
        let v = until(ws, "an error or the pong", |v| {
            v["type"] == "error" || v["type"] == "pong"
        })
        .await;
        if v["type"] == "pong" {
            return error;
        }
        error = v;
    }
}

/// Offers, relays the answer and waits until ICE and DTLS are up; returns
/// the offer sent. Answering rtcd's later offers is the caller's job.
async fn negotiate(ws: &mut Ws, peer: &Peer, call: &str, session: &str) -> String {
    let offer = peer.offer();
    signal(
        ws,
        call,
        session,
        json!({"type": "offer", "offer": {"sdp": offer, "negotiation": 0}}),
    )
    .await;
    let a = until(ws, "the answer", |v| {
        v["type"] == "call_signal" && v["signal"]["type"] == "answer" || v["type"] == "error"
    })
    .await;
    assert_eq!(a["type"], "call_signal", "{a}");
    assert_eq!(a["session_id"], session);
    peer.accept_answer(a["signal"]["answer"]["sdp"].as_str().unwrap())
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !peer.connected() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "peer did not connect: {:?}",
            peer.error()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    offer
}

/// Answers rtcd's offers for `session` until one is answered and audio
/// arrives, sending the publisher's audio meanwhile.
async fn receive_audio(ws: &mut Ws, listener: &Peer, call: &str, session: &str, talker: &Peer) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut n = 0;
    while listener.audio_in() < 10 {
        assert!(tokio::time::Instant::now() < deadline, "no audio arrived");
        talker.send_audio(n);
        n += 1;
        if let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(20), ws.next()).await
        {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "call_signal" && v["signal"]["type"] == "offer" {
                let answer = listener
                    .accept_offer(v["signal"]["offer"]["sdp"].as_str().unwrap())
                    .unwrap();
                let negotiation = v["signal"]["offer"]["negotiation"].clone();
                signal(
                    ws,
                    call,
                    session,
                    json!({"type": "answer", "answer": {"sdp": answer, "negotiation": negotiation}}),
                )
                .await;
            }
        }
    }
}

async fn users(app: &TestApp, names: &[&str]) -> Vec<TestUser> {
    let mut v = Vec::new();
    for n in names {
        v.push(app.user(n, SystemRole::User).await);
    }
    v
}

/// A team with an open channel that every user joined.
async fn open_channel(app: &TestApp, people: &[TestUser]) -> String {
    let others: Vec<&TestUser> = people[1..].iter().collect();
    let team = app.team("crew", &people[0], &others).await;
    let ch = app.channel(&team, "bridge", "open", &people[0]).await;
    for p in &people[1..] {
        let r = app
            .post(&format!("/api/v1/channels/{ch}/join"), p, json!({}))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    }
    ch
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(common::Kind::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if crate::common::skip_postgres() {
                        eprintln!("ENCLAVE_SKIP_POSTGRES=1: skipped");
                        return;
                    }
                    super::$name(common::Kind::Postgres).await;
                }

                use super::common;
            }
        )*
    };
}

both!(
    media_flows_and_host_mute_is_enforced,
    only_members_and_never_the_removed,
    signals_for_other_sessions_are_refused,
    host_controls,
    one_screen_share_at_a_time,
    the_participant_limit,
    ringing_ends_on_decline_join_and_timeout,
    the_last_one_out_ends_the_call,
    a_reaction_flood_is_rate_limited,
    a_repeated_offer_leaves_the_media_alone,
);

/// A client that sends its offer twice (a retry, a double click) gets the
/// second one refused or answered, never a broken session: the media it
/// already sends keeps reaching the others.
async fn a_repeated_offer_leaves_the_media_alone(kind: Kind) {
    let cx = Ctx::new(kind, config()).await;
    let p = users(&cx.app, &["alice", "bob"]).await;
    let ch = open_channel(&cx.app, &p).await;
    let (mut wa, mut wb) = (cx.ws(&p[0]).await, cx.ws(&p[1]).await);
    let (call, sa, _) = cx.join(&ch, &p[0]).await;
    let alice = Peer::new();
    negotiate(&mut wa, &alice, &call, &sa).await;
    let (_, sb, _) = cx.join(&ch, &p[1]).await;
    let bob = Peer::new();
    let offer = negotiate(&mut wb, &bob, &call, &sb).await;
    receive_audio(&mut wa, &alice, &call, &sa, &bob).await;

    signal(
        &mut wb,
        &call,
        &sb,
        json!({"type": "offer", "offer": {"sdp": offer, "negotiation": 0}}),
    )
    .await;
    let reply = until(&mut wb, "a reply to the repeated offer", |v| {
        v["type"] == "error" || v["type"] == "call_signal" && v["signal"]["type"] == "answer"
    })
    .await;
    eprintln!("the repeated offer got: {}", reply["type"]);

    let before = alice.audio_in();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut n = 10_000;
    while alice.audio_in() < before + 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob's audio stopped reaching alice after his repeated offer ({reply})"
        );
        bob.send_audio(n);
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        bob.connected() && bob.error().is_none(),
        "{:?}",
        bob.error()
    );
    cx.stop().await;
}

async fn media_flows_and_host_mute_is_enforced(kind: Kind) {
    let cx = Ctx::new(kind, config()).await;
    let p = users(&cx.app, &["alice", "bob"]).await;
    let ch = open_channel(&cx.app, &p).await;
    let (mut wa, mut wb) = (cx.ws(&p[0]).await, cx.ws(&p[1]).await);

    let (call, sa, body) = cx.join(&ch, &p[0]).await;
    assert_eq!(body["call"]["participants"][0]["host"], true, "{body}");
    let alice = Peer::new();
    negotiate(&mut wa, &alice, &call, &sa).await;
    // rtcd reports the media up; everyone in the channel hears of it.
    let ev = until(&mut wb, "alice connected", |v| {
        is_event(v, "call_participant_changed")
            && v["event"]["participant"]["session_id"] == sa.as_str()
            && v["event"]["participant"]["connected"] == true
    })
    .await;
    assert_eq!(ev["event"]["call_id"], call.as_str());

    let (call_b, sb, _) = cx.join(&ch, &p[1]).await;
    assert_eq!(call_b, call, "bob joins alice's call");
    let bob = Peer::new();
    negotiate(&mut wb, &bob, &call, &sb).await;
    // Bob talks; rtcd offers alice his track over her socket.
    receive_audio(&mut wa, &alice, &call, &sa, &bob).await;

    // The host mutes bob: rtcd stops forwarding him, whatever he sends.
    let r = cx
        .patch(
            &format!("/api/v1/calls/{call}/sessions/{sb}"),
            &p[0],
            json!({"muted": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["muted"], true);
    // Let the change reach rtcd and what was in flight arrive.
    let mut n = 10_000;
    for _ in 0..25 {
        bob.send_audio(n);
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = alice.audio_in();
    for _ in 0..50 {
        bob.send_audio(n);
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        alice.audio_in(),
        before,
        "a muted participant is not forwarded"
    );
    // Unmuted by himself, he is heard again.
    let r = cx
        .patch(
            &format!("/api/v1/calls/{call}/sessions/{sb}"),
            &p[1],
            json!({"muted": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let deadline = tokio::time::Instant::now() + WAIT;
    while alice.audio_in() < before + 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "audio did not resume"
        );
        bob.send_audio(n);
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cx.stop().await;
}

async fn only_members_and_never_the_removed(kind: Kind) {
    let cx = Ctx::new(kind, config()).await;
    let p = users(&cx.app, &["alice", "bob", "carol", "dave"]).await;
    let ch = open_channel(&cx.app, &p[..2]).await;
    // carol is in no team: the channel does not exist for her.
    let r = cx
        .app
        .post(&format!("/api/v1/channels/{ch}/call"), &p[2], json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let (call, _sa, _) = cx.join(&ch, &p[0]).await;
    let r = cx.app.get(&format!("/api/v1/calls/{call}"), &p[2]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // dave is in the team but not in the channel.
    let team = control::db::channels::get(&cx.app.state.db, &ch)
        .await
        .unwrap()
        .team_id
        .unwrap();
    let r = cx
        .app
        .post(
            &format!("/api/v1/teams/{team}/members"),
            &p[0],
            json!({"user_id": p[3].id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = cx
        .app
        .post(&format!("/api/v1/channels/{ch}/call"), &p[3], json!({}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.body["message"], "not_a_member");

    // The host removes bob: he is out and stays out.
    let (_, sb, _) = cx.join(&ch, &p[1]).await;
    let r = cx
        .delete(&format!("/api/v1/calls/{call}/sessions/{sb}"), &p[0])
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = cx
        .app
        .post(&format!("/api/v1/channels/{ch}/call"), &p[1], json!({}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.code(), "removed_from_call");
    // Replaying his old session over the socket gets him nowhere either.
    let mut wb = cx.ws(&p[1]).await;
    signal(&mut wb, &call, &sb, json!({"type": "ice_restart"})).await;
    let e = error_or_pong(&mut wb).await;
    assert_eq!(e["code"], "removed_from_call", "{e}");
    let left = cx.events().await.into_iter().any(|e| {
        matches!(e, Event::CallLeft { session_id, reason: signaling::call::LeaveReason::Removed, .. }
            if session_id.as_str() == sb)
    });
    assert!(left, "call_left with reason removed");
    // The call goes on with alice.
    let r = cx
        .app
        .get(&format!("/api/v1/channels/{ch}/call"), &p[0])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["participants"].as_array().unwrap().len(), 1);
    cx.stop().await;
}

async fn signals_for_other_sessions_are_refused(kind: Kind) {
    let cx = Ctx::new(kind, config()).await;
    let p = users(&cx.app, &["alice", "bob", "carol"]).await;
    let ch = open_channel(&cx.app, &p).await;
    let (call, sa, _) = cx.join(&ch, &p[0]).await;
    let (_, sb, _) = cx.join(&ch, &p[1]).await;
    let mut wa = cx.ws(&p[0]).await;
    let alice = Peer::new();
    negotiate(&mut wa, &alice, &call, &sa).await;

    let mut wc = cx.ws(&p[2]).await;
    // Someone else's session.
    signal(&mut wc, &call, &sa, json!({"type": "ice_restart"})).await;
    assert_eq!(error_or_pong(&mut wc).await["code"], "not_your_session");
    // A forged one.
    signal(
        &mut wc,
        &call,
        "forged0000000000000000000000",
        json!({"type": "ice_restart"}),
    )
    .await;
    assert_eq!(error_or_pong(&mut wc).await["code"], "unknown_session");
    // Not even an id.
    signal(&mut wc, &call, "../../etc", json!({"type": "ice_restart"})).await;
    assert_eq!(error_or_pong(&mut wc).await["code"], "invalid_message");
    // Bob's own session, named with another call.
    let mut wb = cx.ws(&p[1]).await;
    signal(
        &mut wb,
        "othercall00000000000000000",
        &sb,
        json!({"type": "ice_restart"}),
    )
    .await;
    assert_eq!(error_or_pong(&mut wb).await["code"], "not_in_call");
    // An answer nobody asked for reaches rtcd, which refuses it; the
    // refusal comes back to bob alone.
    signal(
        &mut wb,
        &call,
        &sb,
        json!({"type": "answer", "answer": {"sdp": "v=0\r\n", "negotiation": 7}}),
    )
    .await;
    let e = until(&mut wb, "rtcd's refusal", |v| v["type"] == "error").await;
    assert!(e["code"].as_str().unwrap().starts_with("media_"), "{e}");
    // An offer that is not SDP: refused by rtcd, to bob alone; alice's
    // media and the call are untouched.
    signal(
        &mut wb,
        &call,
        &sb,
        json!({"type": "offer", "offer": {"sdp": "not sdp", "negotiation": 0}}),
    )
    .await;
    let e = until(&mut wb, "a bad offer refused", |v| v["type"] == "error").await;
    assert!(e["code"].as_str().unwrap().starts_with("media_"), "{e}");
    assert!(alice.connected() && alice.error().is_none());
    let r = cx.app.get(&format!("/api/v1/calls/{call}"), &p[0]).await;
    assert_eq!(
        r.body["participants"].as_array().unwrap().len(),
        2,
        "{}",
        r.body
    );
    cx.stop().await;
}

async fn host_controls(kind: Kind) {
    let cx = Ctx::new(kind, config()).await;
    let p = users(&cx.app, &["alice", "bob", "carol"]).await;
    let ch = open_channel(&cx.app, &p).await;
    let (call, sa, _) = cx.join(&ch, &p[0]).await;
    let (_, sb, _) = cx.join(&ch, &p[1]).await;
    let s = |id: &str| format!("/api/v1/calls/{call}/sessions/{id}");

    // Not a host: hands off others.
    let r = cx.patch(&s(&sa), &p[1], json!({"muted": true})).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_host"));
    // Not in the call at all.
    let r = cx.patch(&s(&sa), &p[2], json!({"muted": true})).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_in_call"));
    // Bob raises his hand and turns his camera on; the host lowers the
    // hand and stops the camera, but cannot turn anything on.
    let r = cx
        .patch(&s(&sb), &p[1], json!({"hand_raised": true, "camera": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = cx
        .patch(
            &s(&sb),
            &p[0],
            json!({"hand_raised": false, "camera": false, "muted": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (&r.body["hand_raised"], &r.body["camera"], &r.body["muted"]),
        (&json!(false), &json!(false), &json!(true))
    );
    let r = cx.patch(&s(&sb), &p[0], json!({"muted": false})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "host_cannot_enable")
    );
    let r = cx.patch(&s(&sb), &p[0], json!({"volume": 3})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // Bob becomes a host, then mutes everyone else and ends the call.
    let r = cx
        .app
        .post(&format!("{}/host", s(&sb)), &p[1], json!({}))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_host"));
    let r = cx
        .app
        .post(&format!("{}/host", s(&sb)), &p[0], json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["host"], true);
    let r = cx
        .app
        .post(
            &format!("/api/v1/calls/{call}/mute-others"),
            &p[1],
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(r.body[0]["session_id"], sa.as_str());
    let r = cx
        .app
        .post(&format!("/api/v1/calls/{call}/end"), &p[2], json!({}))
        .await;
    assert_eq!(r.code(), "not_in_call");
    let r = cx
        .app
        .post(&format!("/api/v1/calls/{call}/end"), &p[1], json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

    let evs = cx.events().await;
    let changes: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            Event::CallParticipantChanged { participant, .. } => Some(participant.clone()),
            _ => None,
        })
        .collect();
    assert!(
        changes
            .iter()
            .any(|c| c.session_id.as_str() == sb && c.hand_raised)
    );
    assert!(
        changes
            .iter()
            .any(|c| c.session_id.as_str() == sb && c.host)
    );
    assert!(
        changes
            .iter()
            .any(|c| c.session_id.as_str() == sa && c.muted)
    );
    let ended_left = evs
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::CallLeft {
                    reason: signaling::call::LeaveReason::CallEnded,
                    ..
                }
            )
        })
        .count();
    assert_eq!(ended_left, 2, "everyone leaves with the end");
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::CallEnded { ended_by: Some(b), .. } if b == &p[1].id))
    );
    let r = cx.patch(&s(&sa), &p[0], json!({"muted": false})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "call_ended"));
    cx.stop().await;
}

async fn one_screen_share_at_a_time(kind: Kind) {
    let cx = Ctx::new(kind, config()).await;
    let p = users(&cx.app, &["alice", "bob"]).await;
    let ch = open_channel(&cx.app, &p).await;
    let (call, sa, _) = cx.join(&ch, &p[0]).await;
    let (_, sb, _) = cx.join(&ch, &p[1]).await;
    let s = |id: &str| format!("/api/v1/calls/{call}/sessions/{id}");
    let r = cx.patch(&s(&sa), &p[0], json!({"screen": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = cx.patch(&s(&sb), &p[1], json!({"screen": true})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "screen_share_taken")
    );
    // The host stops alice's share... alice is the host; bob is not and
    // cannot stop it for her.
    let r = cx.patch(&s(&sa), &p[1], json!({"screen": false})).await;
    assert_eq!(r.code(), "not_host");
    let r = cx.patch(&s(&sa), &p[0], json!({"screen": false})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = cx.patch(&s(&sb), &p[1], json!({"screen": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Leaving ends a share: the next one may start.
    let r = cx.delete(&s(&sb), &p[1]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = cx.patch(&s(&sa), &p[0], json!({"screen": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    cx.stop().await;
}

async fn the_participant_limit(kind: Kind) {
    let mut c = config();
    c.calls.max_participants = 2;
    let cx = Ctx::new(kind, c).await;
    let p = users(&cx.app, &["alice", "bob", "carol"]).await;
    let ch = open_channel(&cx.app, &p).await;
    let (call, _, _) = cx.join(&ch, &p[0]).await;
    let (_, sb, _) = cx.join(&ch, &p[1]).await;
    let r = cx
        .app
        .post(&format!("/api/v1/channels/{ch}/call"), &p[2], json!({}))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "call_full"));
    assert_eq!(
        cx.app
            .get(&format!("/api/v1/calls/{call}"), &p[0])
            .await
            .body["max_participants"],
        2
    );
    // A seat frees up.
    cx.delete(&format!("/api/v1/calls/{call}/sessions/{sb}"), &p[1])
        .await;
    let (again, _, _) = cx.join(&ch, &p[2]).await;
    assert_eq!(again, call);
    cx.stop().await;
}

async fn ringing_ends_on_decline_join_and_timeout(kind: Kind) {
    let cx = Ctx::new(kind, config()).await;
    let p = users(&cx.app, &["alice", "bob", "carol", "dave"]).await;
    let r = cx
        .app
        .post(
            "/api/v1/channels/group",
            &p[0],
            json!({"user_ids": [p[1].id, p[2].id, p[3].id]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let ch = r.body["id"].as_str().unwrap().to_owned();
    let mut wb = cx.ws(&p[1]).await;
    let (call, _, _) = cx.join(&ch, &p[0]).await;
    let started = until(&mut wb, "the call to ring", |v| is_event(v, "call_started")).await;
    assert_eq!(started["event"]["call"]["id"], call.as_str());

    let decline = format!("/api/v1/calls/{call}/decline");
    let r = cx.app.post(&decline, &p[1], json!({})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = cx.app.post(&decline, &p[1], json!({})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "not_ringing"));
    let r = cx.app.post(&decline, &p[0], json!({})).await;
    assert_eq!(r.code(), "not_ringing", "the caller never rings");
    cx.join(&ch, &p[2]).await;
    // Nobody answers for dave: not yet, then past the timeout.
    cx.app.clock.advance_ms(29_000);
    control::calls::sweep::once(&cx.app.state).await.unwrap();
    cx.app.clock.advance_ms(2_000);
    control::calls::sweep::once(&cx.app.state).await.unwrap();
    control::calls::sweep::once(&cx.app.state).await.unwrap();

    use signaling::call::RingEnd;
    let ends: Vec<(String, RingEnd)> = cx
        .events()
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::CallRingEnded {
                user_id, reason, ..
            } => Some((user_id, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        ends,
        vec![
            (p[1].id.clone(), RingEnd::Declined),
            (p[2].id.clone(), RingEnd::Joined),
            (p[3].id.clone(), RingEnd::Timeout),
        ]
    );
    // In an open channel nothing rings.
    let ch2 = open_channel(&cx.app, &p[..2]).await;
    cx.join(&ch2, &p[0]).await;
    let (_, _, body) = cx.join(&ch2, &p[1]).await;
    let r = cx
        .app
        .post(
            &format!(
                "/api/v1/calls/{}/decline",
                body["call_id"].as_str().unwrap()
            ),
            &p[1],
            json!({}),
        )
        .await;
    assert_eq!(r.code(), "not_ringing");
    cx.stop().await;
}

async fn the_last_one_out_ends_the_call(kind: Kind) {
    let cx = Ctx::new(kind, config()).await;
    let p = users(&cx.app, &["alice", "bob"]).await;
    let ch = open_channel(&cx.app, &p).await;
    let (call, sa, body) = cx.join(&ch, &p[0]).await;
    let post_id = body["call"]["post_id"].as_str().unwrap().to_owned();
    let (_, sb, _) = cx.join(&ch, &p[1]).await;
    cx.app.clock.advance_ms(65_000);
    // The host leaves first: bob hosts what is left.
    let r = cx
        .delete(&format!("/api/v1/calls/{call}/sessions/{sa}"), &p[0])
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = cx.app.get(&format!("/api/v1/calls/{call}"), &p[1]).await;
    assert_eq!(r.body["participants"][0]["host"], true, "{}", r.body);
    assert!(r.body["ended_at"].is_null());
    let r = cx
        .delete(&format!("/api/v1/calls/{call}/sessions/{sb}"), &p[1])
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

    let r = cx.app.get(&format!("/api/v1/calls/{call}"), &p[0]).await;
    assert_eq!(r.body["ended_at"], json!(common::T0 + 65_000), "{}", r.body);
    let r = cx
        .app
        .get(&format!("/api/v1/channels/{ch}/call"), &p[0])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = cx.app.get(&format!("/api/v1/posts/{post_id}"), &p[0]).await;
    assert_eq!(
        r.body["message"], "Call ended after 1:05 with alice, bob",
        "{}",
        r.body
    );
    let evs = cx.events().await;
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::PostEdited { post } if post.id == post_id))
    );
    assert!(evs.iter().any(|e| matches!(
        e,
        Event::CallEnded {
            duration_ms: 65_000,
            ended_by: None,
            ..
        }
    )));
    // A new call starts afresh, with a new post.
    let (again, _, body) = cx.join(&ch, &p[1]).await;
    assert_ne!(again, call);
    assert_ne!(body["call"]["post_id"], post_id.as_str());
    cx.stop().await;
}

async fn a_reaction_flood_is_rate_limited(kind: Kind) {
    let mut c = config();
    c.calls.reactions_per_minute = 5;
    let cx = Ctx::new(kind, c).await;
    let p = users(&cx.app, &["alice", "bob", "carol"]).await;
    let ch = open_channel(&cx.app, &p).await;
    let (call, sa, _) = cx.join(&ch, &p[0]).await;
    cx.join(&ch, &p[1]).await;
    let mut wb = cx.ws(&p[1]).await;
    let mut wc = cx.ws(&p[2]).await;
    let react = format!("/api/v1/calls/{call}/reactions");
    let mut limited = 0;
    for _ in 0..40 {
        let r = cx.app.post(&react, &p[0], json!({"emoji": "tada"})).await;
        match r.status {
            StatusCode::NO_CONTENT => {}
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(r.code(), "reaction_rate_limited");
                limited += 1;
            }
            s => panic!("{s}: {}", r.body),
        }
    }
    assert_eq!(limited, 35);
    let r = cx
        .app
        .post(&react, &p[0], json!({"emoji": "two words"}))
        .await;
    assert_eq!(r.code(), "invalid_emoji");
    let r = cx.app.post(&react, &p[2], json!({"emoji": "tada"})).await;
    assert_eq!(r.code(), "not_in_call");
    // Bob, in the call, gets the five; carol, not in it, gets none.
    for _ in 0..5 {
        let v = until(&mut wb, "a reaction", |v| v["type"] == "call_reaction").await;
        assert_eq!(
            (&v["emoji"], &v["session_id"]),
            (&json!("tada"), &json!(sa))
        );
    }
    send(&mut wb, json!({"type": "ping", "nonce": 1})).await;
    let v = until(&mut wb, "the pong", |v| {
        v["type"] == "call_reaction" || v["type"] == "pong"
    })
    .await;
    assert_eq!(v["type"], "pong", "no sixth reaction: {v}");
    send(&mut wc, json!({"type": "ping", "nonce": 2})).await;
    let v = until(&mut wc, "the pong", |v| {
        v["type"] == "call_reaction" || v["type"] == "pong"
    })
    .await;
    assert_eq!(v["type"], "pong", "{v}");
    // The call is undisturbed; a minute later reactions flow again.
    let r = cx.app.get(&format!("/api/v1/calls/{call}"), &p[0]).await;
    assert_eq!(r.body["participants"].as_array().unwrap().len(), 2);
    cx.app.clock.advance_ms(61_000);
    let r = cx.app.post(&react, &p[0], json!({"emoji": "tada"})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    cx.stop().await;
}

/// Two control nodes on one PostgreSQL and one external rtcd: alice
/// joins through node A, bob through node B; each sees the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_control_nodes_share_a_call() {
    if common::skip_postgres() {
        eprintln!("ENCLAVE_SKIP_POSTGRES=1: skipped");
        return;
    }
    let key = "k".repeat(control::nodes::config::MIN_SECRET_LEN);
    let mut rc = rtcd::Config {
        rtc: RtcdConfig::loopback().media,
        ..rtcd::Config::default()
    };
    rc.api.listen = "127.0.0.1:0".parse().unwrap();
    rc.api.keys = vec![key.clone()];
    let rtcd = rtcd::Rtcd::start(rc).await.expect("rtcd starts");
    let external = || {
        let mut c = Config::default();
        c.rtcd.mode = control::nodes::RtcdMode::External;
        c.rtcd.nodes = vec![format!("http://{}", rtcd.api_addr)];
        c.rtcd.api_key = key.clone();
        c
    };
    let tdb = TestDb::new(Kind::Postgres).await;
    let url = tdb.url.clone();
    let a = TestApp::on(tdb, external(), true).await;
    let db_b = control::db::Db::connect(&url, 5).await.unwrap();
    let bus_b = control::bus::PgBus::connect(&url, "b").await.unwrap();
    let state_b = control::AppState::new(external(), db_b, a.clock.clone(), bus_b);
    for s in [&a.state, &state_b] {
        s.nodes.start().await.unwrap();
        assert!(s.nodes.wait_up(1, WAIT).await, "the node is up");
    }
    let (srv_a, srv_b) = (
        Server::start(a.state.clone()).await,
        Server::start(state_b.clone()).await,
    );
    let p = users(&a, &["alice", "bob"]).await;
    let ch = open_channel(&a, &p).await;
    let mut wa = socket::connect(srv_a.addr, &p[0]).await;
    let mut wb = socket::connect(srv_b.addr, &p[1]).await;

    let ja = request(
        a.state.clone(),
        Method::POST,
        &format!("/api/v1/channels/{ch}/call"),
        &p[0],
        Some(json!({})),
    )
    .await;
    assert_eq!(ja.0, StatusCode::OK, "{}", ja.1);
    let call = ja.1["call_id"].as_str().unwrap().to_owned();
    let sa = ja.1["session_id"].as_str().unwrap().to_owned();
    a.clock.advance_ms(1000);
    let jb = request(
        state_b.clone(),
        Method::POST,
        &format!("/api/v1/channels/{ch}/call"),
        &p[1],
        Some(json!({})),
    )
    .await;
    assert_eq!(jb.0, StatusCode::OK, "{}", jb.1);
    assert_eq!(jb.1["call_id"], call.as_str(), "one call, whichever node");
    let sb = jb.1["session_id"].as_str().unwrap().to_owned();
    let participants: Vec<_> = jb.1["call"]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["session_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(participants, vec![sa.clone(), sb.clone()]);
    // Node A's socket hears of bob's join on node B, and the other way.
    until(&mut wa, "bob's join", |v| {
        is_event(v, "call_joined") && v["event"]["participant"]["session_id"] == sb.as_str()
    })
    .await;
    // Both negotiate media through their own node.
    let (alice, bob) = (Peer::new(), Peer::new());
    negotiate(&mut wa, &alice, &call, &sa).await;
    negotiate(&mut wb, &bob, &call, &sb).await;
    until(&mut wa, "bob connected", |v| {
        is_event(v, "call_participant_changed")
            && v["event"]["participant"]["session_id"] == sb.as_str()
            && v["event"]["participant"]["connected"] == true
    })
    .await;
    // The host on A mutes bob, whose session node B owns.
    let r = request(
        a.state.clone(),
        Method::PATCH,
        &format!("/api/v1/calls/{call}/sessions/{sb}"),
        &p[0],
        Some(json!({"muted": true})),
    )
    .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    until(&mut wb, "bob muted", |v| {
        is_event(v, "call_participant_changed") && v["event"]["participant"]["muted"] == true
    })
    .await;
    srv_a.stop().await;
    srv_b.stop().await;
    a.state.nodes.stop().await;
    state_b.nodes.stop().await;
    rtcd.stop().await;
}

/// A request to one node's router (`TestApp::call` serves its own app).
async fn request(
    state: control::AppState,
    method: Method,
    uri: &str,
    who: &TestUser,
    body: Option<Value>,
) -> (StatusCode, Value) {
    use tower::ServiceExt as _;
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {}", who.token));
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            axum::body::Body::from(v.to_string())
        }
        None => axum::body::Body::empty(),
    };
    let mut req = req.body(body).unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(SocketAddr::from((
            [192, 0, 2, 10],
            5000,
        ))));
    let resp = control::app(state).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

const NODE_KEY: &str = "calls-failover-test-key-0123456789abcdef";

/// Control on external media nodes `nodes`, with heartbeats fast enough
/// that a lost node is noticed within a second and found again soon.
fn external_nodes(nodes: Vec<String>) -> Config {
    Config {
        rtcd: RtcdConfig {
            mode: control::nodes::RtcdMode::External,
            nodes,
            api_key: NODE_KEY.into(),
            heartbeat_ms: 200,
            node_timeout_ms: 1000,
            reconnect_max_ms: 500,
            ..RtcdConfig::default()
        },
        ..Config::default()
    }
}

both!(a_call_survives_its_media_node);

/// Two media nodes, each an rtcd process; the one hosting a call of three
/// is killed (SIGKILL). The call moves to the other, each client is told to
/// start its media over, offers again and hears the others again.
async fn a_call_survives_its_media_node(kind: Kind) {
    let mut nodes = [
        RtcdProcess::start("media-1", NODE_KEY, 5).expect("rtcd process"),
        RtcdProcess::start("media-2", NODE_KEY, 5).expect("rtcd process"),
    ];
    let config = external_nodes(nodes.iter().map(RtcdProcess::url).collect());
    let cx = Ctx::new(kind, config).await;
    assert!(cx.app.state.nodes.wait_up(2, WAIT).await);
    let p = users(&cx.app, &["alice", "bob", "carol"]).await;
    let ch = open_channel(&cx.app, &p).await;
    let mut ws = [cx.ws(&p[0]).await, cx.ws(&p[1]).await, cx.ws(&p[2]).await];
    let mut call = String::new();
    let mut sessions = Vec::new();
    let mut peers = Vec::new();
    for (i, who) in p.iter().enumerate() {
        let (c, s, _) = cx.join(&ch, who).await;
        call = c;
        let peer = Peer::new();
        negotiate(&mut ws[i], &peer, &call, &s).await;
        sessions.push(s);
        peers.push(peer);
    }
    // Everyone hears the next one.
    for i in 0..3 {
        let talker = (i + 1) % 3;
        receive_audio(&mut ws[i], &peers[i], &call, &sessions[i], &peers[talker]).await;
    }
    let host = control::db::calls::get(&cx.app.state.db, &call)
        .await
        .unwrap()
        .node;
    let at = nodes
        .iter()
        .position(|n| n.url() == host)
        .expect("the call is on one of the nodes");
    let survivor = nodes[1 - at].url();

    let died = std::time::Instant::now();
    nodes[at].kill();
    for i in 0..3 {
        let r = until(&mut ws[i], "the reconnect", |v| {
            v["type"] == "call_signal" && v["signal"]["type"] == "reconnect"
        })
        .await;
        assert_eq!(r["signal"]["reason"], "node_failed", "{r}");
        assert_eq!(r["session_id"], sessions[i].as_str());
    }
    let moved = control::db::calls::get(&cx.app.state.db, &call)
        .await
        .unwrap();
    assert_eq!(moved.node, survivor);
    assert!(moved.ended_at.is_none());
    // Each client starts its media over on the same session.
    let mut fresh = Vec::new();
    for i in 0..3 {
        let peer = Peer::new();
        negotiate(&mut ws[i], &peer, &call, &sessions[i]).await;
        fresh.push(peer);
    }
    for i in 0..3 {
        let talker = (i + 1) % 3;
        receive_audio(&mut ws[i], &fresh[i], &call, &sessions[i], &fresh[talker]).await;
    }
    let outage = died.elapsed();
    eprintln!("media node killed: all three hear each other again after {outage:?}");
    assert!(outage < Duration::from_secs(10), "{outage:?}");
    cx.stop().await;
}

/// Answers rtcd's offers on `ws` until `listener` has `more` audio packets
/// than now (its talkers speak on their own, see [`Peer::talk`]). A
/// reconnect before that is a failure: the media was to keep flowing.
async fn hear(ws: &mut Ws, listener: &Peer, call: &str, session: &str, more: usize) {
    let want = listener.audio_in() + more;
    let deadline = tokio::time::Instant::now() + WAIT;
    while listener.audio_in() < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no audio arrived: {} of {want}",
            listener.audio_in()
        );
        if let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(20), ws.next()).await
        {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] != "call_signal" {
                continue;
            }
            assert_ne!(
                v["signal"]["type"], "reconnect",
                "the media moved early: {v}"
            );
            if v["signal"]["type"] == "offer" {
                let answer = listener
                    .accept_offer(v["signal"]["offer"]["sdp"].as_str().unwrap())
                    .unwrap();
                let negotiation = v["signal"]["offer"]["negotiation"].clone();
                signal(
                    ws,
                    call,
                    session,
                    json!({"type": "answer", "answer": {"sdp": answer, "negotiation": negotiation}}),
                )
                .await;
            }
        }
    }
}

both!(a_call_leaves_a_draining_node);

/// rtcd's drain deadline in the drain test, and how long before it
/// control moves the calls: the move comes 8 s after SIGTERM.
const DRAIN_SECS: u64 = 40;
const DRAIN_MARGIN_SECS: u64 = 32;

/// Two media nodes; the one hosting a call of three gets SIGTERM. The
/// call's audio keeps flowing there, a new call goes to the other node,
/// and before the drain deadline control moves the call: each client is
/// told `node_drained`, offers again, and all hear each other on the other
/// node. The old node, empty, exits long before its deadline.
async fn a_call_leaves_a_draining_node(kind: Kind) {
    let mut nodes = [
        RtcdProcess::start("media-1", NODE_KEY, DRAIN_SECS).expect("rtcd process"),
        RtcdProcess::start("media-2", NODE_KEY, DRAIN_SECS).expect("rtcd process"),
    ];
    let mut config = external_nodes(nodes.iter().map(RtcdProcess::url).collect());
    config.rtcd.drain_move_margin_secs = DRAIN_MARGIN_SECS;
    let cx = Ctx::new(kind, config).await;
    assert!(cx.app.state.nodes.wait_up(2, WAIT).await);
    let p = users(&cx.app, &["alice", "bob", "carol", "dave"]).await;
    let ch = open_channel(&cx.app, &p[..3]).await;
    let mut ws = [cx.ws(&p[0]).await, cx.ws(&p[1]).await, cx.ws(&p[2]).await];
    let mut call = String::new();
    let mut sessions = Vec::new();
    let mut peers = Vec::new();
    for (i, who) in p[..3].iter().enumerate() {
        let (c, s, _) = cx.join(&ch, who).await;
        call = c;
        let peer = Peer::new();
        negotiate(&mut ws[i], &peer, &call, &s).await;
        peer.talk();
        sessions.push(s);
        peers.push(peer);
    }
    for i in 0..3 {
        hear(&mut ws[i], &peers[i], &call, &sessions[i], 20).await;
    }
    let host = control::db::calls::get(&cx.app.state.db, &call)
        .await
        .unwrap()
        .node;
    let at = nodes
        .iter()
        .position(|n| n.url() == host)
        .expect("the call is on one of the nodes");
    let (old, other) = (nodes[at].url(), nodes[1 - at].url());

    let sigterm = std::time::Instant::now();
    nodes[at].terminate();
    let pool = &cx.app.state.nodes;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !pool.is_draining(&old) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            pool.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The draining node keeps carrying its call…
    for i in 0..3 {
        hear(&mut ws[i], &peers[i], &call, &sessions[i], 100).await;
    }
    let still = control::db::calls::get(&cx.app.state.db, &call)
        .await
        .unwrap();
    assert_eq!(still.node, old, "the call stays until the move");
    // …and a new call goes to the other one.
    let team = cx.app.team("ops", &p[3], &[]).await;
    let deck = cx.app.channel(&team, "deck", "open", &p[3]).await;
    let (second, _, _) = cx.join(&deck, &p[3]).await;
    let placed = control::db::calls::get(&cx.app.state.db, &second)
        .await
        .unwrap();
    assert_eq!(placed.node, other);

    // Before the deadline the call moves, and everyone is told why.
    for i in 0..3 {
        let r = until(&mut ws[i], "the reconnect", |v| {
            v["type"] == "call_signal" && v["signal"]["type"] == "reconnect"
        })
        .await;
        assert_eq!(r["signal"]["reason"], "node_drained", "{r}");
        assert_eq!(r["session_id"], sessions[i].as_str());
    }
    let moved_after = sigterm.elapsed();
    let moved = control::db::calls::get(&cx.app.state.db, &call)
        .await
        .unwrap();
    assert_eq!(moved.node, other);
    assert!(moved.ended_at.is_none());
    let mut fresh = Vec::new();
    for i in 0..3 {
        let peer = Peer::new();
        negotiate(&mut ws[i], &peer, &call, &sessions[i]).await;
        peer.talk();
        fresh.push(peer);
    }
    for i in 0..3 {
        hear(&mut ws[i], &fresh[i], &call, &sessions[i], 20).await;
    }
    let mut outages = Vec::new();
    for i in 0..3 {
        let last = peers[i].last_audio_at().expect("audio on the old node");
        let first = fresh[i].first_audio_at().expect("audio on the new node");
        outages.push(first.saturating_duration_since(last));
        eprintln!(
            "listener {i}: audio on the draining node until {:?} after SIGTERM",
            last - sigterm
        );
    }
    outages.sort();
    eprintln!(
        "drain move: call moved {moved_after:?} after SIGTERM (deadline {DRAIN_SECS} s, margin {DRAIN_MARGIN_SECS} s); \
         outage (last packet on the old node to first on the new) per listener: {outages:?}"
    );

    // The old node, empty now, exits without waiting for its deadline.
    let exit_by = sigterm + Duration::from_secs(DRAIN_SECS);
    while !nodes[at].exited() {
        assert!(
            std::time::Instant::now() < exit_by,
            "the drained node is still running at its deadline"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("drained node exited {:?} after SIGTERM", sigterm.elapsed());
    cx.stop().await;
}

/// Waits until the call's node, as stored, is `want`.
async fn stored_node_becomes(cx: &Ctx, call: &str, want: &str) -> control::db::calls::CallRow {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let c = control::db::calls::get(&cx.app.state.db, call)
            .await
            .unwrap();
        if c.node == want {
            return c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call stayed on {:?}, not {want:?}",
            c.node
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two users in a call on the pool's nodes, talking: (users, sockets,
/// call, sessions, peers).
async fn two_talking(cx: &Ctx) -> (Vec<TestUser>, Vec<Ws>, String, Vec<String>, Vec<Peer>) {
    let p = users(&cx.app, &["alice", "bob"]).await;
    let ch = open_channel(&cx.app, &p).await;
    let mut ws = vec![cx.ws(&p[0]).await, cx.ws(&p[1]).await];
    let mut call = String::new();
    let mut sessions = Vec::new();
    let mut peers = Vec::new();
    for (i, who) in p.iter().enumerate() {
        let (c, s, _) = cx.join(&ch, who).await;
        call = c;
        let peer = Peer::new();
        negotiate(&mut ws[i], &peer, &call, &s).await;
        peer.talk();
        sessions.push(s);
        peers.push(peer);
    }
    for i in 0..2 {
        hear(&mut ws[i], &peers[i], &call, &sessions[i], 20).await;
    }
    (p, ws, call, sessions, peers)
}

/// Each client is told to start over (`reason`), offers again on its
/// session with a new peer, and hears the other again. The new peers.
async fn start_over(ws: &mut [Ws], call: &str, sessions: &[String], reason: &str) -> Vec<Peer> {
    for i in 0..ws.len() {
        let r = until(&mut ws[i], "the reconnect", |v| {
            v["type"] == "call_signal" && v["signal"]["type"] == "reconnect"
        })
        .await;
        assert_eq!(r["signal"]["reason"], reason, "{r}");
        assert_eq!(r["session_id"], sessions[i].as_str());
    }
    let mut fresh = Vec::new();
    for i in 0..ws.len() {
        let peer = Peer::new();
        negotiate(&mut ws[i], &peer, call, &sessions[i]).await;
        peer.talk();
        fresh.push(peer);
    }
    for i in 0..ws.len() {
        hear(&mut ws[i], &fresh[i], call, &sessions[i], 20).await;
    }
    fresh
}

both!(a_call_waits_for_a_media_node);

/// The only media node dies: the call does not end, it waits (its people
/// shown as without media, nobody told to offer yet). A node starts
/// where the old one was: the call moves there, the clients are told,
/// offer again and hear each other.
async fn a_call_waits_for_a_media_node(kind: Kind) {
    let mut node = RtcdProcess::start("media-1", NODE_KEY, 5).expect("rtcd process");
    let (api, url) = (node.api, node.url());
    let config = external_nodes(vec![url.clone()]);
    let cx = Ctx::new(kind, config).await;
    assert!(cx.app.state.nodes.wait_up(1, WAIT).await);
    let (_, mut ws, call, sessions, peers) = two_talking(&cx).await;

    let died = std::time::Instant::now();
    node.kill();
    let waiting = stored_node_becomes(&cx, &call, control::calls::failover::NO_NODE).await;
    assert!(waiting.ended_at.is_none());
    let db = &cx.app.state.db;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let live = control::db::calls::live_sessions(db, &call).await.unwrap();
        assert_eq!(live.len(), 2);
        if live
            .iter()
            .all(|s| s.media_lost_at.is_some() && !s.participant.connected)
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{live:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nobody is told to offer again while there is nowhere to offer to.
    for w in ws.iter_mut() {
        send(w, json!({"type": "ping", "nonce": 7})).await;
        until(w, "the pong", |v| {
            assert!(
                !(v["type"] == "call_signal" && v["signal"]["type"] == "reconnect"),
                "told to reconnect with no node up: {v}"
            );
            v["type"] == "pong"
        })
        .await;
    }
    // Another process takes the address.
    let _node = RtcdProcess::start_at("media-1-again", NODE_KEY, 5, api).expect("rtcd process");
    let fresh = start_over(&mut ws, &call, &sessions, "node_failed").await;
    let resumed = control::db::calls::get(db, &call).await.unwrap();
    assert_eq!(resumed.node, url);
    assert!(resumed.ended_at.is_none());
    let last = peers.iter().filter_map(Peer::last_audio_at).max().unwrap();
    let first = fresh.iter().filter_map(Peer::first_audio_at).min().unwrap();
    eprintln!(
        "only media node killed and started again: audio back {:?} after the last packet ({:?} after the kill)",
        first - last,
        first - died
    );
    cx.stop().await;
}

both!(a_node_back_from_a_false_down_drops_what_moved);

/// A node's control connection freezes (its machine hangs, its network
/// drops): control marks it down and moves its call to the other node,
/// though the node still runs it and its old peers still talk through
/// it. When the connection thaws, control asks what the node holds and
/// ends the copy; the moved call goes on undisturbed.
async fn a_node_back_from_a_false_down_drops_what_moved(kind: Kind) {
    let start = |name: &str| {
        let mut c = rtcd::Config {
            node_id: name.into(),
            ..rtcd::Config::default()
        };
        c.rtc.bind_ip = [127, 0, 0, 1].into();
        c.rtc.port = 0;
        c.rtc.allow_loopback = true;
        c.rtc.workers = 1;
        c.api.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        c.api.keys = vec![NODE_KEY.into()];
        rtcd::Rtcd::start(c)
    };
    let a = start("media-a").await.unwrap();
    let b = start("media-b").await.unwrap();
    let relay = tests::relay::FreezableRelay::start(a.api_addr).unwrap();
    let (a_key, b_key) = (
        format!("http://{}", relay.addr),
        format!("http://{}", b.api_addr),
    );
    let config = external_nodes(vec![a_key.clone(), b_key.clone()]);
    let cx = Ctx::new(kind, config).await;
    let pool = &cx.app.state.nodes;
    assert!(pool.wait_up(2, WAIT).await);
    // A call of nobody's on b, so that the people's call goes to a.
    let warm = signaling::CallId::new("warm-up").unwrap();
    assert_eq!(
        pool.place(&warm, std::slice::from_ref(&a_key))
            .await
            .unwrap(),
        b_key
    );
    let (_, mut ws, call, sessions, peers) = two_talking(&cx).await;
    let db = &cx.app.state.db;
    assert_eq!(
        control::db::calls::get(db, &call).await.unwrap().node,
        a_key
    );

    relay.freeze();
    let fresh = start_over(&mut ws, &call, &sessions, "node_failed").await;
    assert_eq!(
        control::db::calls::get(db, &call).await.unwrap().node,
        b_key
    );
    // a never stopped: it still holds the old copy, and forwards the old
    // peers' audio to each other.
    assert_eq!(
        a.node.call_ids(),
        vec![signaling::CallId::new(call.clone()).unwrap()]
    );
    let before = peers[0].audio_in();
    let deadline = tokio::time::Instant::now() + WAIT;
    while peers[0].audio_in() < before + 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old copy forwards"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    relay.thaw();
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.node.call_count() > 0 || a.node.load().sessions > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a still holds {:?}",
            a.node.call_ids()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(pool.is_up(&a_key));
    // The moved call is untouched: everyone connected on b, hearing.
    for i in 0..2 {
        hear(&mut ws[i], &fresh[i], &call, &sessions[i], 20).await;
    }
    for s in control::db::calls::live_sessions(db, &call).await.unwrap() {
        assert!(s.participant.connected, "{s:?}");
        assert!(s.media_lost_at.is_none(), "{s:?}");
    }
    assert_eq!(
        control::db::calls::get(db, &call).await.unwrap().node,
        b_key
    );
    // Nobody's call on b was not control's to end.
    assert_eq!(b.node.call_ids().len(), 2, "{:?}", b.node.call_ids());
    cx.stop().await;
    a.stop().await;
    b.stop().await;
}

both!(the_only_node_back_from_a_false_down_takes_its_call_again);

/// The only node's control connection freezes: its call waits, though
/// the node still runs it. When the connection thaws the call resumes
/// there; the sessions the node still held are replaced by the clients'
/// new ones, so their offers are answered and they hear each other.
async fn the_only_node_back_from_a_false_down_takes_its_call_again(kind: Kind) {
    let mut c = rtcd::Config {
        node_id: "media-a".into(),
        ..rtcd::Config::default()
    };
    c.rtc.bind_ip = [127, 0, 0, 1].into();
    c.rtc.port = 0;
    c.rtc.allow_loopback = true;
    c.rtc.workers = 1;
    c.api.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.api.keys = vec![NODE_KEY.into()];
    let a = rtcd::Rtcd::start(c).await.unwrap();
    let relay = tests::relay::FreezableRelay::start(a.api_addr).unwrap();
    let a_key = format!("http://{}", relay.addr);
    let config = external_nodes(vec![a_key.clone()]);
    let cx = Ctx::new(kind, config).await;
    assert!(cx.app.state.nodes.wait_up(1, WAIT).await);
    let (_, mut ws, call, sessions, _peers) = two_talking(&cx).await;

    relay.freeze();
    stored_node_becomes(&cx, &call, control::calls::failover::NO_NODE).await;
    assert_eq!(a.node.load().sessions, 2, "the node still runs the call");
    relay.thaw();
    let _fresh = start_over(&mut ws, &call, &sessions, "node_failed").await;
    let db = &cx.app.state.db;
    assert_eq!(
        control::db::calls::get(db, &call).await.unwrap().node,
        a_key
    );
    assert_eq!(
        a.node.call_ids(),
        vec![signaling::CallId::new(call.clone()).unwrap()]
    );
    assert_eq!(a.node.load().sessions, 2, "the old sessions were replaced");
    cx.stop().await;
    a.stop().await;
}
