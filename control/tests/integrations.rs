//! Integrations: bot accounts and their tokens, incoming webhooks (JSON and
//! form payloads, secrets, limits, permissions, live delivery to a
//! WebSocket), outgoing webhooks against a real HTTP receiver on loopback
//! (trigger matching, answers posted back, retries, giving up, restarts,
//! the host allow-list). Each test runs on SQLite and on PostgreSQL.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use common::{TestApp, TestUser};
use control::bus::LocalBus;
use control::clock::Clock as _;
use control::db::outbox;
use control::db::users::SystemRole;
use control::oidc::http::HttpClient;
use control::{AppState, Config};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

// ---------------------------------------------------------------- helpers

/// A webhook receiver on a loopback port: records every request and
/// answers with `reply` (JSON) or `status`.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<(String, String)>>>,
    reply: Arc<Mutex<Value>>,
}

impl Receiver {
    async fn start_on(self, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
        let r = self.clone();
        let app = axum::Router::new().route(
            "/in",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let r = r.clone();
                async move {
                    let ct = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    r.seen.lock().unwrap().push((ct, body));
                    let reply = r.reply.lock().unwrap().clone();
                    axum::Json(reply)
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn bind() -> (tokio::net::TcpListener, SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

fn config(receiver: SocketAddr) -> Config {
    let mut c = Config::default();
    c.integrations.allowed_hosts = vec![format!("127.0.0.1:{}", receiver.port())];
    c.integrations.timeout_ms = 2000;
    c.integrations.max_attempts = 3;
    c.integrations.retry_base_ms = 1000;
    c.integrations.poll_ms = 20;
    c.integrations.max_payload_bytes = 8 << 10;
    c.integrations.incoming_rate_per_minute = 8;
    c
}

/// Rebuilds `app` with `config` on the same database.
async fn with_config(app: TestApp, config: Config) -> TestApp {
    TestApp::on(app.tdb, config, false).await
}

/// A team where alice is admin and bob a member, with an open channel
/// both are in.
async fn setup(app: &TestApp) -> (TestUser, TestUser, String, String) {
    let alice = app.user("alice", SystemRole::User).await;
    let bob = app.user("bob", SystemRole::User).await;
    let team = app.team("eng", &alice, &[&bob]).await;
    let ch = app.channel(&team, "general", "open", &alice).await;
    let r = app
        .post(&format!("/api/v1/channels/{ch}/join"), &bob, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    (alice, bob, team, ch)
}

async fn posts(app: &TestApp, ch: &str, who: &TestUser) -> Vec<Value> {
    let r = app.get(&format!("/api/v1/channels/{ch}/posts"), who).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body.as_array().unwrap().clone()
}

async fn hook_post(app: &TestApp, url: &str, content_type: &str, body: Vec<u8>) -> common::Resp {
    let req = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    app.send(req).await
}

fn deliveries(app: &TestApp, outcome: &str) -> u64 {
    app.state
        .metrics
        .webhook_deliveries
        .with_label_values(&[outcome])
        .get()
}

// ------------------------------------------------------------------- bots

async fn bots_and_their_tokens(app: TestApp) {
    let admin = app.user("root", SystemRole::Admin).await;
    let (alice, bob, team, ch) = setup(&app).await;

    let r = app
        .post("/api/v1/bots", &alice, json!({"username": "ci-bot"}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "only system admins");
    let r = app
        .post(
            "/api/v1/bots",
            &admin,
            json!({"username": "ci-bot", "display_name": "CI", "owner_id": alice.id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let bot_id = r.body["user_id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["owner_id"], alice.id.as_str());
    let r = app
        .post("/api/v1/bots", &admin, json!({"username": "ci-bot"}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "username_taken")
    );
    let r = app
        .post(
            "/api/v1/bots",
            &admin,
            json!({"username": "x", "owner_id": "nobody"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // No password: a login as the bot fails like a wrong password.
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "ci-bot", "password": ""})),
        )
        .await;
    assert_eq!(r.code(), "invalid_credentials");

    // Its owner and system admins see it; anyone else gets 404.
    assert_eq!(
        app.get(&format!("/api/v1/bots/{bot_id}"), &alice)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/api/v1/bots/{bot_id}"), &bob)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = app
        .post(
            &format!("/api/v1/bots/{bot_id}/tokens"),
            &bob,
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/bots", &bob).await.body, json!([]));
    assert_eq!(
        app.get("/api/v1/bots", &alice)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let r = app
        .post(
            &format!("/api/v1/bots/{bot_id}/tokens"),
            &alice,
            json!({"name": "deploy"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let bot = TestUser {
        id: bot_id.clone(),
        username: "ci-bot".into(),
        password: String::new(),
        token: r.body["token"].as_str().unwrap().to_owned(),
    };
    assert_eq!(
        app.get("/api/v1/users/me", &bot).await.body["id"],
        bot_id.as_str()
    );

    // In the team and channel like anyone; its posts are marked.
    let r = app
        .post(
            &format!("/api/v1/teams/{team}/members"),
            &alice,
            json!({"user_id": bot_id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.post(&format!("/api/v1/channels/{ch}/join"), &bot, json!({}))
        .await;
    let p = app.say(&ch, &bot, "build green").await;
    assert_eq!(p["from_bot"], true);
    let p = app.say(&ch, &bob, "thanks").await;
    assert!(p.get("from_bot").is_none(), "{p}");

    // Disabling revokes its tokens; a disabled bot gets none.
    let r = app
        .post(&format!("/api/v1/bots/{bot_id}/disable"), &bob, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .post(&format!("/api/v1/bots/{bot_id}/disable"), &alice, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["disabled_at"].is_i64());
    assert_eq!(
        app.get("/api/v1/users/me", &bot).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .post(
            &format!("/api/v1/bots/{bot_id}/tokens"),
            &admin,
            json!({"name": "again"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "bot_disabled")
    );
    let r = app
        .post(&format!("/api/v1/bots/{bot_id}/enable"), &admin, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.get("disabled_at").is_none());
    assert_eq!(
        app.get("/api/v1/users/me", &bot).await.status,
        StatusCode::UNAUTHORIZED,
        "enabling gives no revoked token back"
    );
}

// -------------------------------------------------------- incoming hooks

async fn incoming_webhooks_post_into_their_channel(app: TestApp) {
    let (_, recv_addr) = bind().await;
    let app = with_config(app, config(recv_addr)).await;
    let (alice, bob, team, ch) = setup(&app).await;
    let r = app
        .post(
            &format!("/api/v1/channels/{ch}/incoming-webhooks"),
            &bob,
            json!({"display_name": "Alerts", "username": "alertmanager"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let hook_id = r.body["id"].as_str().unwrap().to_owned();
    let url = r.body["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("/hooks/whk_") && url.len() > 60, "{url}");

    // A live member socket sees the post.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(control::run(listener, app.state.clone(), async move {
        let _ = stopped.await;
    }));
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{addr}/api/v1/websocket"),
    )
    .unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", alice.token).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    use futures_util::SinkExt as _;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"type": "hello", "version": 1}).to_string().into(),
    ))
    .await
    .unwrap();
    // Events reach a socket from its hello answer on: post only after it.
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("the hello answer within 5 s")
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "hello" {
                break;
            }
        }
    }

    let r = hook_post(
        &app,
        &url,
        "application/json",
        json!({"text": "disk 91% on db-1", "icon_url": "https://icons.example/x.png", "attachments": []})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let post = loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .unwrap();
        let tokio_tungstenite::tungstenite::Message::Text(t) = msg else {
            continue;
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["event"]["type"] == "post_created" {
            break v["event"]["post"].clone();
        }
    };
    assert_eq!(post["message"], "disk 91% on db-1");
    assert_eq!(post["channel_id"], ch.as_str());
    assert_eq!(
        post["user_id"],
        bob.id.as_str(),
        "posted as the hook's creator"
    );
    assert_eq!(post["from_bot"], true);
    assert_eq!(post["override_username"], "alertmanager");
    assert_eq!(post["override_icon_url"], "https://icons.example/x.png");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;

    // The form encoding, with the payload's own name.
    let form = format!(
        "payload={}",
        json!({"text": "form works", "username": "pager"})
            .to_string()
            .replace('%', "%25")
            .replace('&', "%26")
            .replace('+', "%2B")
            .replace(' ', "+")
    );
    let r = hook_post(
        &app,
        &url,
        "application/x-www-form-urlencoded",
        form.into_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let list = posts(&app, &ch, &alice).await;
    assert_eq!(list[0]["message"], "form works");
    assert_eq!(list[0]["override_username"], "pager");
    let count = list.len();

    // Bad input: precise errors, nothing posted.
    let bad_secret = format!("/hooks/whk_{}", "0".repeat(64));
    let cases: Vec<(String, &str, Vec<u8>, StatusCode, &str)> = vec![
        (
            bad_secret,
            "application/json",
            br#"{"text":"x"}"#.to_vec(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            url.clone(),
            "application/json",
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            url.clone(),
            "application/json",
            br#"{"username":"x"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_payload",
        ),
        (
            url.clone(),
            "application/json",
            br#"{"text":"  "}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_payload",
        ),
        (
            url.clone(),
            "application/json",
            br#"{"text":"x","icon_url":"javascript:alert(1)"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_payload",
        ),
        (
            url.clone(),
            "application/x-www-form-urlencoded",
            b"text=hi".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_payload",
        ),
        (
            url.clone(),
            "text/plain",
            b"hi".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            url.clone(),
            "application/json",
            json!({"text": "x".repeat(9 << 10)})
                .to_string()
                .into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (u, ct, body, status, code) in cases {
        let r = hook_post(&app, &u, ct, body).await;
        assert_eq!(
            (r.status, r.code()),
            (status, code),
            "{ct} to {u}: {:?}",
            r.body
        );
    }
    assert_eq!(
        posts(&app, &ch, &alice).await.len(),
        count,
        "nothing posted"
    );

    // The rate limit per hook: 8 a minute, and 2 + 6 bad requests counted
    // so far (the 404 named no hook); the next is refused.
    let ok = br#"{"text":"again"}"#.to_vec();
    let r = hook_post(&app, &url, "application/json", ok.clone()).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    assert!(r.headers.contains_key("retry-after"));
    app.clock.advance_ms(61_000);
    let r = hook_post(&app, &url, "application/json", ok.clone()).await;
    assert_eq!(r.status, StatusCode::OK);

    // Manage: update, new secret (old URL dead), delete (URL dead).
    let r = app
        .call(
            Method::PUT,
            &format!("/api/v1/incoming-webhooks/{hook_id}"),
            Some(&bob),
            Some(json!({"display_name": "Alerts 2", "description": "prod"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["display_name"], "Alerts 2");
    let r = app
        .post(
            &format!("/api/v1/incoming-webhooks/{hook_id}/secret"),
            &bob,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let new_url = r.body["url"].as_str().unwrap().to_owned();
    assert_ne!(new_url, url);
    assert_eq!(
        hook_post(&app, &url, "application/json", ok.clone())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        hook_post(&app, &new_url, "application/json", ok.clone())
            .await
            .status,
        StatusCode::OK
    );

    // Permissions by id guessing: a member who did not make it, an
    // outsider, a guest.
    let carol = app.user("carol", SystemRole::User).await;
    let outsider = app.user("mallory", SystemRole::User).await;
    app.team("other", &outsider, &[]).await;
    let r = app
        .post(
            &format!("/api/v1/teams/{team}/members"),
            &alice,
            json!({"user_id": carol.id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.post(&format!("/api/v1/channels/{ch}/join"), &carol, json!({}))
        .await;
    for who in [&carol, &outsider] {
        for (m, path) in [
            (Method::GET, format!("/api/v1/incoming-webhooks/{hook_id}")),
            (
                Method::DELETE,
                format!("/api/v1/incoming-webhooks/{hook_id}"),
            ),
            (
                Method::POST,
                format!("/api/v1/incoming-webhooks/{hook_id}/secret"),
            ),
        ] {
            let r = app.call(m.clone(), &path, Some(who), None).await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{} {m} {path}",
                who.username
            );
        }
    }
    let r = app
        .get(&format!("/api/v1/channels/{ch}/incoming-webhooks"), &carol)
        .await;
    assert_eq!(r.body, json!([]), "members see only their own hooks");
    let r = app
        .get(&format!("/api/v1/channels/{ch}/incoming-webhooks"), &alice)
        .await;
    assert_eq!(
        r.body.as_array().unwrap().len(),
        1,
        "the team admin sees all"
    );
    let r = app
        .post(
            &format!("/api/v1/channels/{ch}/incoming-webhooks"),
            &outsider,
            json!({"display_name": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        hook_post(&app, &new_url, "application/json", ok.clone())
            .await
            .status,
        StatusCode::OK,
        "still alive"
    );

    // The team admin deletes bob's hook; its URL is gone.
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/incoming-webhooks/{hook_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        hook_post(&app, &new_url, "application/json", ok)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

// -------------------------------------------------------- outgoing hooks

async fn create_outgoing(app: &TestApp, who: &TestUser, team: &str, body: Value) -> common::Resp {
    app.post(
        &format!("/api/v1/teams/{team}/outgoing-webhooks"),
        who,
        body,
    )
    .await
}

async fn outgoing_webhooks_deliver_and_answer(app: TestApp) {
    let (listener, recv_addr) = bind().await;
    let receiver = Receiver::default();
    *receiver.reply.lock().unwrap() = json!({"text": "deploying @bob", "username": "deployer"});
    let _recv = receiver.clone().start_on(listener).await;
    let app = with_config(app, config(recv_addr)).await;
    let (alice, bob, team, ch) = setup(&app).await;
    let callback = format!("http://127.0.0.1:{}/in", recv_addr.port());

    // Who may create, and where callbacks may point.
    let body = json!({"display_name": "Deploy", "trigger_words": ["#deploy"], "callback_urls": [callback], "reply_in_thread": true});
    let r = create_outgoing(&app, &bob, &team, body.clone()).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "team members are not team admins"
    );
    let outsider = app.user("mallory", SystemRole::User).await;
    let r = create_outgoing(&app, &outsider, &team, body.clone()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    for bad in [
        "http://127.0.0.1:1/in",
        "http://10.0.0.7/in",
        "http://localhost/in",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let mut b = body.clone();
        b["callback_urls"] = json!([bad]);
        let r = create_outgoing(&app, &alice, &team, b).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "callback_host_not_allowed"),
            "{bad}"
        );
    }
    let mut b = body.clone();
    b["trigger_words"] = json!(["two words"]);
    assert_eq!(
        create_outgoing(&app, &alice, &team, b).await.code(),
        "bad_request"
    );
    assert_eq!(
        app.get(&format!("/api/v1/teams/{team}/outgoing-webhooks"), &alice)
            .await
            .body,
        json!([])
    );

    let r = create_outgoing(&app, &alice, &team, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let hook = r.body.clone();
    let r = create_outgoing(
        &app,
        &alice,
        &team,
        json!({"display_name": "Build", "trigger_words": ["build"], "trigger_when": "prefix",
               "callback_urls": [callback], "content_type": "form", "channel_id": ch}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        app.get(
            &format!("/api/v1/outgoing-webhooks/{}", hook["id"].as_str().unwrap()),
            &bob
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    // Deliveries run off the request path, in the node's worker.
    let worker = tokio::spawn(control::delivery::run(app.state.clone()));
    app.say(&ch, &bob, "hello #deploy").await; // not the first word
    app.say(&ch, &bob, "#deployed it").await; // exact match only
    let trigger = app.say(&ch, &bob, "#deploy api v2").await;
    app.say(&ch, &bob, "builds are slow").await; // prefix hook
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while receiver.seen().len() < 2 || deliveries(&app, "ok") < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries: {:?}",
            receiver.seen()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.abort();
    let seen = receiver.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (ct, json_body) = seen
        .iter()
        .find(|(ct, _)| ct == "application/json")
        .expect("a JSON delivery");
    assert_eq!(ct, "application/json");
    let got: Value = serde_json::from_str(json_body).unwrap();
    assert_eq!(got["token"], hook["token"]);
    assert_eq!(got["trigger_word"], "#deploy");
    assert_eq!(got["text"], "#deploy api v2");
    assert_eq!(got["post_id"], trigger["id"]);
    assert_eq!(got["channel_id"], ch.as_str());
    assert_eq!(got["team_id"], team.as_str());
    assert_eq!(got["user_id"], bob.id.as_str());
    assert_eq!(got["user_name"], "bob");
    let (_, form) = seen
        .iter()
        .find(|(ct, _)| ct == "application/x-www-form-urlencoded")
        .expect("a form delivery");
    assert!(
        form.contains("trigger_word=build") && form.contains("text=builds+are+slow"),
        "{form}"
    );

    // The answers are posted back: the JSON hook's into the thread.
    let list = posts(&app, &ch, &alice).await;
    let answers: Vec<&Value> = list.iter().filter(|p| p["from_bot"] == true).collect();
    assert_eq!(answers.len(), 2, "{list:?}");
    let threaded = answers
        .iter()
        .find(|p| p["root_id"] == trigger["id"])
        .expect("an answer in the trigger's thread");
    assert_eq!(threaded["message"], "deploying @bob");
    assert_eq!(threaded["override_username"], "deployer");
    assert_eq!(
        threaded["user_id"],
        alice.id.as_str(),
        "as the hook's creator"
    );
    // Answers fire no hook themselves.
    assert_eq!(receiver.seen().len(), 2);
    assert_eq!(outbox::counts(&app.state.db).await.unwrap(), (0, 2, 0));
    let metrics = app.call(Method::GET, "/metrics", None, None).await;
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    assert!(
        text.contains("enclave_control_webhook_deliveries_total{outcome=\"ok\"} 2"),
        "{text}"
    );

    // A deleted hook fires no more.
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/outgoing-webhooks/{}", hook["id"].as_str().unwrap()),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.say(&ch, &bob, "#deploy again").await;
    assert_eq!(outbox::counts(&app.state.db).await.unwrap(), (0, 2, 0));
}

/// Makes a hook whose receiver is down and a post that fires it; returns
/// the app, the channel, the receiver's address and the poster.
async fn fire_at_dead_receiver(
    app: TestApp,
    max_attempts: u32,
) -> (TestApp, String, SocketAddr, TestUser) {
    let (listener, recv_addr) = bind().await;
    drop(listener); // nothing listens: connections are refused
    let mut cfg = config(recv_addr);
    cfg.integrations.max_attempts = max_attempts;
    let app = with_config(app, cfg).await;
    let (alice, bob, team, ch) = setup(&app).await;
    let r = create_outgoing(
        &app,
        &alice,
        &team,
        json!({"display_name": "D", "trigger_words": ["!ping"],
               "callback_urls": [format!("http://127.0.0.1:{}/in", recv_addr.port())]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let p = app.say(&ch, &bob, "!ping").await;
    assert_eq!(
        p["message"], "!ping",
        "the post is made whatever the receiver does"
    );
    assert_eq!(outbox::counts(&app.state.db).await.unwrap(), (1, 0, 0));
    (app, ch, recv_addr, bob)
}

async fn outgoing_retries_then_gives_up(app: TestApp) {
    let (app, ch, _, bob) = fire_at_dead_receiver(app, 3).await;
    let client = HttpClient::new().unwrap();
    let state = &app.state;
    assert_eq!(
        control::delivery::deliver_due(state, &client)
            .await
            .unwrap(),
        1
    );
    assert_eq!(deliveries(&app, "retry"), 1);
    // Not due again before the back-off (1 s, then 2 s) has passed.
    assert_eq!(
        control::delivery::deliver_due(state, &client)
            .await
            .unwrap(),
        0
    );
    app.clock.advance_ms(1000);
    assert_eq!(
        control::delivery::deliver_due(state, &client)
            .await
            .unwrap(),
        1
    );
    assert_eq!(deliveries(&app, "retry"), 2);
    app.clock.advance_ms(1999);
    assert_eq!(
        control::delivery::deliver_due(state, &client)
            .await
            .unwrap(),
        0
    );
    app.clock.advance_ms(1);
    assert_eq!(
        control::delivery::deliver_due(state, &client)
            .await
            .unwrap(),
        1
    );
    assert_eq!((deliveries(&app, "failed"), deliveries(&app, "ok")), (1, 0));
    assert_eq!(outbox::counts(&state.db).await.unwrap(), (0, 0, 1));
    app.clock.advance_ms(3_600_000);
    assert_eq!(
        control::delivery::deliver_due(state, &client)
            .await
            .unwrap(),
        0,
        "given up for good"
    );
    let list = posts(&app, &ch, &bob).await;
    assert_eq!(list.len(), 1, "the post stays, and nothing was answered");
    assert_eq!(list[0]["message"], "!ping");
}

async fn outgoing_survives_a_restart(app: TestApp) {
    let (app, ch, recv_addr, bob) = fire_at_dead_receiver(app, 5).await;
    let client = HttpClient::new().unwrap();
    assert_eq!(
        control::delivery::deliver_due(&app.state, &client)
            .await
            .unwrap(),
        1
    );
    assert_eq!(deliveries(&app, "retry"), 1);

    // "Restart": a new node state over the same database, and the receiver
    // comes up on the port the hook names.
    let listener = tokio::net::TcpListener::bind(recv_addr).await.unwrap();
    let receiver = Receiver::default();
    *receiver.reply.lock().unwrap() = json!({"text": "pong"});
    let _recv = receiver.clone().start_on(listener).await;
    let node2 = AppState::new(
        (*app.state.config).clone(),
        app.state.db.clone(),
        app.clock.clone(),
        LocalBus::new(),
    );
    app.clock.advance_ms(1000);
    let worker = tokio::spawn(control::delivery::run(node2.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // The row is marked done just before the metric counts it: wait for both.
    let delivered_ok = || {
        node2
            .metrics
            .webhook_deliveries
            .with_label_values(&["ok"])
            .get()
    };
    while outbox::counts(&app.state.db).await.unwrap() != (0, 1, 0) || delivered_ok() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.abort();
    assert_eq!(receiver.seen().len(), 1);
    assert_eq!(
        node2
            .metrics
            .webhook_deliveries
            .with_label_values(&["ok"])
            .get(),
        1
    );
    let list = posts(&app, &ch, &bob).await;
    assert_eq!(list[0]["message"], "pong", "the answer is posted back");

    // A node that dies holding a claim: the row waits out the claim, then
    // another node delivers it, and the answer is not posted twice.
    let p = app.say(&ch, &bob, "!ping twice").await;
    assert_eq!(p["message"], "!ping twice");
    let claimed = outbox::claim(&app.state.db, app.clock.now_ms(), 5000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the dead node's claim");
    assert_eq!(
        control::delivery::deliver_due(&node2, &client)
            .await
            .unwrap(),
        0,
        "still claimed"
    );
    app.clock.advance_ms(5000);
    assert_eq!(
        control::delivery::deliver_due(&node2, &client)
            .await
            .unwrap(),
        1
    );
    assert_eq!(outbox::counts(&app.state.db).await.unwrap(), (0, 2, 0));
    let answers = posts(&app, &ch, &bob)
        .await
        .into_iter()
        .filter(|p| p["message"] == "pong")
        .count();
    assert_eq!(answers, 2, "one answer per trigger");
}

/// Replacing a hook's settings: team admins only, the allow-list checked
/// again, the token kept, the new triggers in force at once, queued
/// deliveries to a URL the hook dropped given up, and an audit record.
async fn outgoing_webhooks_are_updated(app: TestApp) {
    let (listener, recv_addr) = bind().await;
    let receiver = Receiver::default();
    let _recv = receiver.clone().start_on(listener).await;
    let (_, other_addr) = bind().await; // allowed, but nothing listens
    let mut cfg = config(recv_addr);
    cfg.integrations
        .allowed_hosts
        .push(format!("127.0.0.1:{}", other_addr.port()));
    let app = with_config(app, cfg).await;
    let (alice, bob, team, ch) = setup(&app).await;
    let audit = common::audit::AuditLog::capture();
    let old_url = format!("http://127.0.0.1:{}/in", other_addr.port());
    let new_url = format!("http://127.0.0.1:{}/in", recv_addr.port());
    let r = create_outgoing(
        &app,
        &alice,
        &team,
        json!({"display_name": "Deploy", "trigger_words": ["#deploy"], "callback_urls": [old_url]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let hook = r.body.clone();
    let id = hook["id"].as_str().unwrap().to_owned();
    let uri = format!("/api/v1/outgoing-webhooks/{id}");
    let made = audit.one("outgoing_webhook_create", "success");
    assert!(
        made["detail"].as_str().unwrap().contains(&old_url),
        "{made}"
    );
    // A post queued for the old URL before the update.
    app.say(&ch, &bob, "#deploy v1").await;
    assert_eq!(outbox::counts(&app.state.db).await.unwrap(), (1, 0, 0));

    let update = json!({"display_name": "Ship", "trigger_words": ["!ship", "!go"],
                        "trigger_when": "prefix", "callback_urls": [new_url],
                        "channel_id": ch, "content_type": "form"});
    // Members who are not team admins, and outsiders, see no such hook.
    let outsider = app.user("mallory", SystemRole::User).await;
    for who in [&bob, &outsider] {
        let r = app
            .call(Method::PUT, &uri, Some(who), Some(update.clone()))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    // The allow-list, the channel and the words are checked as at creation.
    let other_team = app.team("ops", &alice, &[]).await;
    let elsewhere = app.channel(&other_team, "ops", "open", &alice).await;
    for (field, bad, code) in [
        (
            "callback_urls",
            json!(["http://169.254.169.254/latest"]),
            "callback_host_not_allowed",
        ),
        ("callback_urls", json!([]), "bad_request"),
        ("channel_id", json!(elsewhere), "bad_request"),
        ("trigger_words", json!(["two words"]), "bad_request"),
    ] {
        let mut b = update.clone();
        b[field] = bad;
        let r = app.call(Method::PUT, &uri, Some(&alice), Some(b)).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{field}"
        );
    }
    assert_eq!(app.get(&uri, &alice).await.body, hook, "unchanged");

    app.clock.advance_ms(5_000);
    let r = app
        .call(Method::PUT, &uri, Some(&alice), Some(update))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["display_name"], "Ship");
    assert_eq!(r.body["trigger_words"], json!(["!ship", "!go"]));
    assert_eq!(r.body["trigger_when"], "prefix");
    assert_eq!(r.body["callback_urls"], json!([new_url]));
    assert_eq!(r.body["channel_id"], ch.as_str());
    assert_eq!(r.body["content_type"], "form");
    assert_eq!(r.body["token"], hook["token"], "the receiver's token stays");
    assert_eq!(r.body["created_at"], hook["created_at"]);
    assert_eq!(r.body["updated_at"], common::T0 + 5_000);
    assert_eq!(app.get(&uri, &alice).await.body, r.body);
    let rec = audit.one("outgoing_webhook_update", "success");
    assert_eq!(rec["actor_id"], alice.id.as_str());
    let detail = rec["detail"].as_str().unwrap();
    assert!(
        detail.contains(&new_url) && detail.contains(&old_url),
        "{detail}"
    );

    // The old trigger fires no more, the new ones do.
    app.say(&ch, &bob, "#deploy v2").await;
    app.say(&ch, &bob, "!shipit now").await;
    assert_eq!(outbox::counts(&app.state.db).await.unwrap(), (2, 0, 0));
    // The delivery queued for the dropped URL is given up, not sent there;
    // the new one reaches the new URL.
    let client = HttpClient::new().unwrap();
    assert_eq!(
        control::delivery::deliver_due(&app.state, &client)
            .await
            .unwrap(),
        2
    );
    assert_eq!(outbox::counts(&app.state.db).await.unwrap(), (0, 1, 1));
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].1.contains("text=%21shipit+now"), "{seen:?}");

    // A deleted hook cannot be updated.
    let r = app.call(Method::DELETE, &uri, Some(&alice), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .call(
            Method::PUT,
            &uri,
            Some(&alice),
            Some(json!({"display_name": "x", "trigger_words": ["x"], "callback_urls": [new_url]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// Bots are disabled, never deleted: there is no DELETE, a disabled bot's
/// account shows it, its posts keep their author, and its name stays taken.
async fn bots_are_disabled_not_deleted(app: TestApp) {
    let admin = app.user("root", SystemRole::Admin).await;
    let (alice, _, team, ch) = setup(&app).await;
    let r = app
        .post(
            "/api/v1/bots",
            &admin,
            json!({"username": "ci-bot", "owner_id": alice.id}),
        )
        .await;
    let bot_id = r.body["user_id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            &format!("/api/v1/bots/{bot_id}/tokens"),
            &alice,
            json!({"name": "t"}),
        )
        .await;
    let bot = TestUser {
        id: bot_id.clone(),
        username: "ci-bot".into(),
        password: String::new(),
        token: r.body["token"].as_str().unwrap().to_owned(),
    };
    app.post(
        &format!("/api/v1/teams/{team}/members"),
        &alice,
        json!({"user_id": bot_id}),
    )
    .await;
    app.post(&format!("/api/v1/channels/{ch}/join"), &bot, json!({}))
        .await;
    let p = app.say(&ch, &bot, "build green").await;

    let audit = common::audit::AuditLog::capture();
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/bots/{bot_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = app
        .post(&format!("/api/v1/bots/{bot_id}/disable"), &alice, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let rec = audit.one("bot_disable", "success");
    assert!(
        rec["detail"].as_str().unwrap().contains("1 tokens revoked"),
        "{rec}"
    );
    let u = app.get(&format!("/api/v1/users/{bot_id}"), &alice).await;
    assert_eq!(u.body["disabled_at"], r.body["disabled_at"], "one switch");
    let list = posts(&app, &ch, &alice).await;
    let kept = list
        .iter()
        .find(|x| x["id"] == p["id"])
        .expect("its post stays");
    assert_eq!(kept["user_id"], bot_id.as_str());
    let r = app
        .post("/api/v1/bots", &admin, json!({"username": "ci-bot"}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "username_taken")
    );
    let r = app
        .post(&format!("/api/v1/bots/{bot_id}/enable"), &alice, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    audit.one("bot_enable", "success");
    let u = app.get(&format!("/api/v1/users/{bot_id}"), &alice).await;
    assert!(u.body.get("disabled_at").is_none(), "{:?}", u.body);
}

on_both_databases!(
    bots_and_their_tokens,
    incoming_webhooks_post_into_their_channel,
    outgoing_webhooks_deliver_and_answer,
    outgoing_retries_then_gives_up,
    outgoing_survives_a_restart,
    outgoing_webhooks_are_updated,
    bots_are_disabled_not_deleted,
);
