//! WebSocket events against a real server on a loopback port: live
//! delivery to members only, resume with replay, resync outside the
//! window, typing, protocol errors, revocation, members who leave; and two nodes on one
//! PostgreSQL sharing events through LISTEN/NOTIFY.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Kind, Server, TestApp, TestDb, TestUser};
use control::db::users::SystemRole;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect_with(
    addr: SocketAddr,
    header: (&'static str, String),
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{addr}/api/v1/websocket")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert(header.0, header.1.parse().unwrap());
    Ok(tokio_tungstenite::connect_async(req).await?.0)
}

async fn connect(addr: SocketAddr, who: &TestUser) -> Ws {
    connect_with(addr, ("authorization", format!("Bearer {}", who.token)))
        .await
        .expect("websocket connects")
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next JSON message (pings, and presence changes, which
/// tests/presence.rs covers, are skipped); panics after 5 s.
async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("socket open")
            .expect("no socket error");
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] != "presence" {
                    return v;
                }
            }
            Message::Close(f) => return json!({"type": "__closed", "frame": format!("{f:?}")}),
            _ => continue,
        }
    }
}

async fn hello(ws: &mut Ws, resume: Option<(&str, u64)>) -> Value {
    let mut h = json!({"type": "hello", "version": 1});
    if let Some((conn, seq)) = resume {
        h["resume"] = json!({"connection_id": conn, "last_seq": seq});
    }
    send(ws, h).await;
    let r = next(ws).await;
    assert_eq!(r["type"], "hello", "{r}");
    r
}

/// Asserts nothing but the pong comes back: no event is pending.
async fn nothing_pending(ws: &mut Ws) {
    send(ws, json!({"type": "ping", "nonce": 77})).await;
    let r = next(ws).await;
    assert_eq!(
        r,
        json!({"type": "pong", "nonce": 77}),
        "expected only a pong"
    );
}

async fn setup(app: &TestApp) -> (TestUser, TestUser, TestUser, String) {
    let alice = app.user("alice", SystemRole::User).await;
    let bob = app.user("bob", SystemRole::User).await;
    let mallory = app.user("mallory", SystemRole::User).await;
    let team = app.team("eng", &alice, &[&bob, &mallory]).await;
    let ch = app.channel(&team, "general", "open", &alice).await;
    app.post(&format!("/api/v1/channels/{ch}/join"), &bob, json!({}))
        .await;
    (alice, bob, mallory, ch)
}

async fn events_reach_members_live_and_only_members(app: TestApp) {
    let (alice, bob, mallory, ch) = setup(&app).await;
    let server = Server::start(app.state.clone()).await;
    let mut a = connect(server.addr, &alice).await;
    let mut m = connect(server.addr, &mallory).await;
    let ha = hello(&mut a, None).await;
    hello(&mut m, None).await;
    assert_eq!(ha["resumed"], false);
    let p = app.say(&ch, &bob, "hello <b>team</b>").await;
    let ev = next(&mut a).await;
    assert_eq!(ev["type"], "event");
    assert_eq!(ev["event"]["type"], "post_created");
    assert_eq!(ev["event"]["post"]["id"], p["id"]);
    assert_eq!(ev["event"]["post"]["message"], "hello <b>team</b>");
    assert!(ev["seq"].as_u64().unwrap() > ha["last_seq"].as_u64().unwrap());
    nothing_pending(&mut m).await;
    nothing_pending(&mut a).await;
    // Joining brings mallory the channel's events from then on.
    app.post(&format!("/api/v1/channels/{ch}/join"), &mallory, json!({}))
        .await;
    assert_eq!(next(&mut m).await["event"]["type"], "member_joined");
    assert_eq!(next(&mut a).await["event"]["type"], "member_joined");
    app.say(&ch, &bob, "welcome").await;
    assert_eq!(next(&mut m).await["event"]["post"]["message"], "welcome");
    assert_eq!(app.state.hub.connection_count(), 2);
    server.stop().await;
}

async fn resume_replays_exactly_what_was_missed(app: TestApp) {
    let (alice, bob, _mallory, ch) = setup(&app).await;
    let team = app.get("/api/v1/teams", &bob).await.body[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let elsewhere = app.channel(&team, "bobs-room", "private", &bob).await;
    let server = Server::start(app.state.clone()).await;
    let mut a = connect(server.addr, &alice).await;
    let h = hello(&mut a, None).await;
    let conn = h["connection_id"].as_str().unwrap().to_owned();
    app.say(&ch, &bob, "one").await;
    let first = next(&mut a).await;
    let last_seq = first["seq"].as_u64().unwrap();
    drop(a);

    app.say(&ch, &bob, "two").await;
    app.say(&elsewhere, &bob, "not for alice").await;
    app.say(&ch, &bob, "three").await;

    let mut a = connect(server.addr, &alice).await;
    let h = hello(&mut a, Some((&conn, last_seq))).await;
    assert_eq!(h["resumed"], true, "{h}");
    let two = next(&mut a).await;
    let three = next(&mut a).await;
    assert_eq!(two["event"]["post"]["message"], "two");
    assert_eq!(three["event"]["post"]["message"], "three");
    assert!(two["seq"].as_u64() < three["seq"].as_u64());
    nothing_pending(&mut a).await;
    // Live events continue after the replay, without duplicates.
    app.say(&ch, &bob, "four").await;
    assert_eq!(next(&mut a).await["event"]["post"]["message"], "four");
    nothing_pending(&mut a).await;
    drop(a);

    // Up to date: resumed, nothing to replay.
    let latest = three["seq"].as_u64().unwrap() + 1;
    let mut a = connect(server.addr, &alice).await;
    let h = hello(&mut a, Some((&conn, latest))).await;
    assert_eq!(h["resumed"], true);
    nothing_pending(&mut a).await;

    // Outside the replay window: an explicit resync.
    app.clock.advance_ms(301_000);
    let mut a = connect(server.addr, &alice).await;
    let h = hello(&mut a, Some((&conn, last_seq))).await;
    assert_eq!(h["resumed"], false);
    assert_eq!(
        next(&mut a).await,
        json!({"type": "resync", "reason": "outside_window"})
    );
    // A seq from the future (another deployment?): resync too.
    let mut a = connect(server.addr, &alice).await;
    hello(&mut a, Some((&conn, 1_000_000))).await;
    assert_eq!(
        next(&mut a).await,
        json!({"type": "resync", "reason": "unknown_seq"})
    );
    server.stop().await;
}

async fn typing_reaches_the_other_members(app: TestApp) {
    let (alice, bob, mallory, ch) = setup(&app).await;
    let server = Server::start(app.state.clone()).await;
    let mut a = connect(server.addr, &alice).await;
    let mut b = connect(server.addr, &bob).await;
    let mut m = connect(server.addr, &mallory).await;
    for ws in [&mut a, &mut b, &mut m] {
        hello(ws, None).await;
    }
    send(&mut a, json!({"type": "typing", "channel_id": ch})).await;
    let t = next(&mut b).await;
    assert_eq!(
        t,
        json!({"type": "typing", "channel_id": ch, "user_id": alice.id})
    );
    nothing_pending(&mut a).await;
    nothing_pending(&mut m).await;
    // Typing into a channel one is not in goes nowhere.
    send(&mut m, json!({"type": "typing", "channel_id": ch})).await;
    nothing_pending(&mut m).await;
    nothing_pending(&mut b).await;
    // A malformed message gets an error; the socket stays.
    send(&mut a, json!({"type": "shout"})).await;
    let e = next(&mut a).await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["code"], "invalid_message");
    nothing_pending(&mut a).await;
    server.stop().await;
}

async fn sockets_need_auth_a_known_version_and_a_live_session(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let server = Server::start(app.state.clone()).await;
    let err = connect_with(server.addr, ("authorization", "Bearer forged".into()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    let mut a = connect(server.addr, &alice).await;
    send(&mut a, json!({"type": "hello", "version": 99})).await;
    assert_eq!(next(&mut a).await["code"], "unsupported_version");
    assert_eq!(
        next(&mut a).await,
        json!({"type": "closing", "reason": "protocol_error"})
    );

    // A socket on a session closes when the session is revoked.
    let r = app
        .call(
            axum::http::Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "alice", "password": common::PASSWORD})),
        )
        .await;
    let cookie = r.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let session = r.body["session_id"].as_str().unwrap().to_owned();
    // A page of another origin cannot ride the cookie.
    let mut req = format!("ws://{}/api/v1/websocket", server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let mut req = format!("ws://{}/api/v1/websocket", server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut()
        .insert("origin", format!("http://{}", server.addr).parse().unwrap());
    drop(
        tokio_tungstenite::connect_async(req)
            .await
            .expect("same origin is fine"),
    );
    let mut s = connect_with(server.addr, ("cookie", cookie)).await.unwrap();
    hello(&mut s, None).await;
    let r = app
        .call(
            axum::http::Method::DELETE,
            &format!("/api/v1/users/me/sessions/{session}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, axum::http::StatusCode::NO_CONTENT);
    assert_eq!(
        next(&mut s).await,
        json!({"type": "closing", "reason": "session_ended"})
    );
    server.stop().await;
}

async fn shutdown_tells_sockets_to_move(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let server = Server::start(app.state.clone()).await;
    let mut a = connect(server.addr, &alice).await;
    hello(&mut a, None).await;
    let ready = app
        .call(axum::http::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(ready.status, axum::http::StatusCode::OK);
    server.stop().await;
    assert_eq!(
        next(&mut a).await,
        json!({"type": "closing", "reason": "server_shutdown"})
    );
    let ready = app
        .call(axum::http::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(ready.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
}

/// Whoever leaves a channel, or is taken out of it by a team removal,
/// stops getting its events at once, and is told they left (the
/// dispatcher keeps channel members cached; every change must reach it).
async fn members_who_leave_stop_getting_events(app: TestApp) {
    let (alice, bob, mallory, ch) = setup(&app).await;
    app.post(&format!("/api/v1/channels/{ch}/join"), &mallory, json!({}))
        .await;
    let team = app.get("/api/v1/teams", &alice).await.body[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let server = Server::start(app.state.clone()).await;
    let mut a = connect(server.addr, &alice).await;
    let mut b = connect(server.addr, &bob).await;
    let mut m = connect(server.addr, &mallory).await;
    for ws in [&mut a, &mut b, &mut m] {
        hello(ws, None).await;
    }
    // Everyone gets this one: the members are now cached.
    app.say(&ch, &alice, "one").await;
    for ws in [&mut a, &mut b, &mut m] {
        assert_eq!(next(ws).await["event"]["post"]["message"], "one");
    }
    // Bob leaves the channel himself.
    let r = app
        .post(&format!("/api/v1/channels/{ch}/leave"), &bob, json!({}))
        .await;
    assert!(r.status.is_success(), "{:?}", r.status);
    let left = next(&mut b).await;
    assert_eq!(left["event"]["type"], "member_left");
    assert_eq!(left["event"]["user_id"], bob.id);
    assert_eq!(next(&mut a).await["event"]["type"], "member_left");
    assert_eq!(next(&mut m).await["event"]["type"], "member_left");
    app.say(&ch, &alice, "two").await;
    assert_eq!(next(&mut a).await["event"]["post"]["message"], "two");
    assert_eq!(next(&mut m).await["event"]["post"]["message"], "two");
    nothing_pending(&mut b).await;
    // Alice (team admin) removes mallory from the team, and with it from
    // the team's channels: mallory and the channel hear of it.
    let r = app
        .call(
            axum::http::Method::DELETE,
            &format!("/api/v1/teams/{team}/members/{}", mallory.id),
            Some(&alice),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.status);
    let left = next(&mut m).await;
    assert_eq!(left["event"]["type"], "member_left");
    assert_eq!(left["event"]["channel_id"], ch);
    assert_eq!(left["event"]["user_id"], mallory.id);
    let left = next(&mut a).await;
    assert_eq!(left["event"]["type"], "member_left");
    assert_eq!(left["event"]["user_id"], mallory.id);
    app.say(&ch, &alice, "three").await;
    assert_eq!(next(&mut a).await["event"]["post"]["message"], "three");
    nothing_pending(&mut m).await;
    nothing_pending(&mut b).await;
    // Joining again brings the events back.
    app.post(&format!("/api/v1/channels/{ch}/join"), &bob, json!({}))
        .await;
    assert_eq!(next(&mut b).await["event"]["type"], "member_joined");
    assert_eq!(next(&mut a).await["event"]["type"], "member_joined");
    app.say(&ch, &alice, "four").await;
    assert_eq!(next(&mut b).await["event"]["post"]["message"], "four");
    assert_eq!(next(&mut a).await["event"]["post"]["message"], "four");
    nothing_pending(&mut m).await;
    server.stop().await;
}

on_both_databases!(
    events_reach_members_live_and_only_members,
    resume_replays_exactly_what_was_missed,
    typing_reaches_the_other_members,
    sockets_need_auth_a_known_version_and_a_live_session,
    shutdown_tells_sockets_to_move,
    members_who_leave_stop_getting_events,
);

/// Two control nodes on one PostgreSQL: a post made through node A reaches
/// a socket on node B (LISTEN/NOTIFY wakes B, B reads the log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_on_one_node_reaches_a_socket_on_another() {
    if common::skip_postgres() {
        eprintln!("ENCLAVE_SKIP_POSTGRES=1: skipped");
        return;
    }
    let tdb = TestDb::new(Kind::Postgres).await;
    let url = tdb.url.clone();
    let node_a = TestApp::on(tdb, control::Config::default(), true).await;
    let (alice, bob, _mallory, ch) = setup(&node_a).await;

    let db_b = control::db::Db::connect(&url, 5).await.unwrap();
    let bus_b = control::bus::PgBus::connect(&url, "node-b").await.unwrap();
    let state_b = control::AppState::new(
        control::Config::default(),
        db_b,
        node_a.clock.clone(),
        bus_b,
    );
    let server_b = Server::start(state_b.clone()).await;
    let mut a = connect(server_b.addr, &alice).await;
    hello(&mut a, None).await;

    // Well under the 2 s poll: the wake-up must come through NOTIFY.
    let started = std::time::Instant::now();
    let p = node_a.say(&ch, &bob, "across nodes").await;
    let ev = next(&mut a).await;
    assert_eq!(ev["event"]["post"]["id"], p["id"]);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    // Bob, on node B too, leaves through node A: node B's dispatcher must
    // stop sending him the channel's events (its member cache follows the
    // log, whichever node wrote it).
    let mut b = connect(server_b.addr, &bob).await;
    hello(&mut b, None).await;
    node_a.say(&ch, &alice, "both").await;
    assert_eq!(next(&mut a).await["event"]["post"]["message"], "both");
    assert_eq!(next(&mut b).await["event"]["post"]["message"], "both");
    node_a
        .post(&format!("/api/v1/channels/{ch}/leave"), &bob, json!({}))
        .await;
    assert_eq!(next(&mut b).await["event"]["type"], "member_left");
    assert_eq!(next(&mut a).await["event"]["type"], "member_left");
    node_a.say(&ch, &alice, "alice only").await;
    assert_eq!(next(&mut a).await["event"]["post"]["message"], "alice only");
    nothing_pending(&mut b).await;
    server_b.stop().await;
}
