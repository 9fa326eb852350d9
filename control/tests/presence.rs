//! Presence and typing over real sockets: statuses derived from
//! connections, activity and the user's choice, announced only to users
//! who share a channel; and two nodes on one PostgreSQL, where typing and
//! presence cross nodes through the bus and a node that dies takes its
//! users offline once its heartbeat is stale.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::socket::{self, Ws};
use common::{Kind, Server, TestApp, TestDb, TestUser};
use control::clock::ManualClock;
use control::db::users::SystemRole;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The next message, whatever it is.
async fn next(ws: &mut Ws) -> Value {
    socket::read(ws, Duration::from_secs(5)).await
}

/// The next presence message about `user`, skipping anything else.
async fn presence_of(ws: &mut Ws, user: &TestUser) -> String {
    loop {
        let m = next(ws).await;
        if m["type"] == "presence" && m["user_id"] == user.id.as_str() {
            return m["status"].as_str().unwrap().to_owned();
        }
    }
}

/// Nothing but the pong comes back: no message was pending.
async fn nothing_pending(ws: &mut Ws) {
    ws.send(Message::Text(
        json!({"type": "ping", "nonce": 5}).to_string().into(),
    ))
    .await
    .unwrap();
    assert_eq!(next(ws).await, json!({"type": "pong", "nonce": 5}));
}

async fn status(app: &TestApp, who: &TestUser, ids: &[&TestUser]) -> Vec<(String, String)> {
    let ids: Vec<&str> = ids.iter().map(|u| u.id.as_str()).collect();
    let r = app
        .get(&format!("/api/v1/users/status?ids={}", ids.join(",")), who)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["user_id"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn setup(app: &TestApp) -> (TestUser, TestUser, TestUser, String) {
    let alice = app.user("alice", SystemRole::User).await;
    let bob = app.user("bob", SystemRole::User).await;
    let mallory = app.user("mallory", SystemRole::User).await;
    let team = app.team("eng", &alice, &[&bob, &mallory]).await;
    let ch = app.channel(&team, "general", "open", &alice).await;
    let r = app
        .post(&format!("/api/v1/channels/{ch}/join"), &bob, json!({}))
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    (alice, bob, mallory, ch)
}

on_both_databases!(statuses_follow_sockets_activity_and_choice);

async fn statuses_follow_sockets_activity_and_choice(app: TestApp) {
    let (alice, bob, mallory, ch) = setup(&app).await;
    let server = Server::start(app.state.clone()).await;
    let pairs = |l: &[(&TestUser, &str)]| {
        l.iter()
            .map(|(u, s)| (u.id.clone(), (*s).to_owned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        status(&app, &alice, &[&alice, &bob]).await,
        pairs(&[(&alice, "offline"), (&bob, "offline")])
    );

    let mut a = socket::connect(server.addr, &alice).await;
    let mut m = socket::connect(server.addr, &mallory).await;
    let mut b = socket::connect(server.addr, &bob).await;
    // Alice shares a channel with bob: she hears he came online.
    assert_eq!(presence_of(&mut a, &bob).await, "online");
    assert_eq!(
        status(&app, &mallory, &[&alice, &bob, &mallory]).await,
        pairs(&[(&alice, "online"), (&bob, "online"), (&mallory, "online")])
    );

    // Bob chooses do-not-disturb.
    let r = app
        .call(
            Method::PUT,
            "/api/v1/users/me/status",
            Some(&bob),
            Some(json!({"status": "dnd"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(presence_of(&mut a, &bob).await, "dnd");
    let r = app.get("/api/v1/users/me/status", &bob).await;
    assert_eq!(
        r.body,
        json!({"user_id": bob.id, "status": "dnd", "manual": "dnd"})
    );

    // Idle past presence.away_after_secs: alice is away (bob hears it).
    app.clock
        .advance_ms(app.state.config.presence.away_after_secs as i64 * 1000 + 1);
    control::presence::sweep(&app.state).await.unwrap();
    assert_eq!(presence_of(&mut b, &alice).await, "away");
    // Typing is activity: she is back.
    a.send(Message::Text(
        json!({"type": "typing", "channel_id": ch})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(presence_of(&mut b, &alice).await, "online");

    // Bob leaves: offline, told to alice.
    b.close(None).await.unwrap();
    assert_eq!(presence_of(&mut a, &bob).await, "offline");
    // Mallory shares no channel with either: she was told nothing about
    // them (only about herself).
    loop {
        let msg = tokio::time::timeout(Duration::from_millis(300), m.next()).await;
        let Ok(Some(Ok(Message::Text(t)))) = msg else {
            break;
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v["user_id"], mallory.id.as_str(), "mallory heard {v}");
    }
    nothing_pending(&mut m).await;

    // Bad input.
    for (uri, why) in [
        ("/api/v1/users/status?ids=", "no ids"),
        ("/api/v1/users/status", "missing"),
    ] {
        let r = app.get(uri, &alice).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{why}"
        );
    }
    let many: Vec<String> = (0..201).map(|i| format!("u{i}")).collect();
    let r = app
        .get(
            &format!("/api/v1/users/status?ids={}", many.join(",")),
            &alice,
        )
        .await;
    assert_eq!(r.code(), "bad_request");
    // Unknown ids are left out, not invented.
    let r = app
        .get(
            &format!("/api/v1/users/status?ids=nobody,{}", alice.id),
            &alice,
        )
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    let r = app
        .call(
            Method::PUT,
            "/api/v1/users/me/status",
            Some(&bob),
            Some(json!({"status": "busy"})),
        )
        .await;
    assert_eq!(r.code(), "bad_request");
    assert_eq!(
        app.get("/api/v1/users/me/status", &bob).await.body["status"],
        "offline"
    );
    server.stop().await;
}

/// Node B in a runtime of its own, so that dropping the runtime kills it
/// the way a crash would: its sockets vanish without any goodbye and it
/// stops beating.
struct Node {
    addr: SocketAddr,
    kill: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

fn spawn_node(url: String, clock: Arc<ManualClock>, config: control::Config) -> Node {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (kill, kill_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let db = control::db::Db::connect(&url, 5).await.unwrap();
            let bus = control::bus::PgBus::connect(&url, "node-b").await.unwrap();
            let state = control::AppState::new(config, db, clock, bus);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            tokio::spawn(control::run(listener, state, std::future::pending()));
            let _ = tokio::task::spawn_blocking(move || kill_rx.recv()).await;
        });
        rt.shutdown_background();
    });
    Node {
        addr: addr_rx.recv_timeout(Duration::from_secs(30)).unwrap(),
        kill,
        thread,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_and_presence_cross_nodes_and_a_dead_node_goes_offline() {
    if common::skip_postgres() {
        eprintln!("ENCLAVE_SKIP_POSTGRES=1: skipped");
        return;
    }
    let mut config = control::Config::default();
    config.presence.heartbeat_secs = 1;
    config.presence.node_timeout_secs = 3;
    let tdb = TestDb::new(Kind::Postgres).await;
    let url = tdb.url.clone();
    let mut config_a = config.clone();
    config_a.server.node_id = "node-a".into();
    let node_a = TestApp::on(tdb, config_a, true).await;
    let (alice, bob, mallory, ch) = setup(&node_a).await;
    let server_a = Server::start(node_a.state.clone()).await;
    let mut config_b = config;
    config_b.server.node_id = "node-b".into();
    let node_b = spawn_node(url, node_a.clock.clone(), config_b);

    let mut a = socket::connect(server_a.addr, &alice).await;
    let mut m = socket::connect(server_a.addr, &mallory).await;
    let mut b = socket::connect(node_b.addr, &bob).await;
    // Bob came online on B: alice, on A, hears it.
    assert_eq!(presence_of(&mut a, &bob).await, "online");

    // Bob types on B: alice gets it on A, well within the 2 s event poll
    // (typing is not in the event log: only the bus carries it).
    let started = std::time::Instant::now();
    b.send(Message::Text(
        json!({"type": "typing", "channel_id": ch})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    loop {
        let t = next(&mut a).await;
        if t["type"] == "typing" {
            assert_eq!(
                t,
                json!({"type": "typing", "channel_id": ch, "user_id": bob.id})
            );
            break;
        }
    }
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    // Alice types on A: bob gets it on B; mallory, not a member, nowhere.
    a.send(Message::Text(
        json!({"type": "typing", "channel_id": ch})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    loop {
        let t = next(&mut b).await;
        if t["type"] == "typing" {
            assert_eq!(t["user_id"], alice.id.as_str());
            break;
        }
    }
    loop {
        let msg = tokio::time::timeout(Duration::from_millis(300), m.next()).await;
        let Ok(Some(Ok(Message::Text(t)))) = msg else {
            break;
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_ne!(v["type"], "typing", "mallory got {v}");
        assert_eq!(v["user_id"], mallory.id.as_str(), "mallory heard {v}");
    }
    nothing_pending(&mut m).await;
    assert_eq!(
        status(&node_a, &alice, &[&bob]).await,
        vec![(bob.id.clone(), "online".to_owned())]
    );

    // Node B dies: no socket closes cleanly, no goodbye is written. While
    // its last beat is fresh, bob still counts as connected.
    node_b.kill.send(()).unwrap();
    node_b.thread.join().unwrap();
    drop(b);
    control::presence::sweep(&node_a.state).await.unwrap();
    assert_eq!(
        status(&node_a, &alice, &[&bob]).await,
        vec![(bob.id.clone(), "online".to_owned())]
    );
    // Once B's beat is older than presence.node_timeout_secs, node A's
    // sweep forgets B's sockets and tells alice.
    node_a.clock.advance_ms(4_000);
    control::presence::sweep(&node_a.state).await.unwrap();
    assert_eq!(presence_of(&mut a, &bob).await, "offline");
    assert_eq!(
        status(&node_a, &alice, &[&bob, &alice]).await,
        vec![
            (bob.id.clone(), "offline".to_owned()),
            (alice.id.clone(), "online".to_owned())
        ]
    );
    server_a.stop().await;
}
