//! Teams activity notifications through a local fake of Entra's token
//! endpoint and Microsoft Graph (common/fake_graph.rs), on SQLite and
//! PostgreSQL: who gets one (the mentioned Teams user; the other members
//! of a direct or group channel; whoever a call rings — never the author,
//! a non-member, a bot or someone who never used the tab), what it says
//! (no text of the message under `preview = "none"`, a cut preview under
//! `short`, the deep link to the post), retries after `Retry-After`, one
//! token per tenant reused until it nears expiry, and a restart that sends
//! what was queued.

mod common;
#[path = "common/fake_graph.rs"]
mod fake_graph;

use axum::http::StatusCode;
use common::{TestApp, TestDb, TestUser};
use control::Config;
use control::db::m365_outbox;
use control::db::users::SystemRole;
use control::m365::Preview;
use control::m365::graph::Graph;
use control::oidc::http::HttpClient;
use fake_graph::{Expect, FakeGraph};
use serde_json::json;

const CLIENT_ID: &str = "00000000-1111-2222-3333-444444444444";
const SECRET: &str = "fake-client-secret";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OTHER_TENANT: &str = "0d2c5e8a-3b4f-4c6d-9e1a-7f8b9c0d1e2f";
/// Expires in an hour: renewed five minutes before.
const EXPIRES_IN: i64 = 3600;

async fn fake() -> FakeGraph {
    FakeGraph::start(Expect {
        client_id: CLIENT_ID.into(),
        client_secret: SECRET.into(),
        scope: "https://graph.microsoft.com/.default".into(),
        teams_host: "teams.microsoft.com".into(),
        app_id: CLIENT_ID.into(),
        expires_in: EXPIRES_IN,
    })
    .await
}

fn config(fake: &FakeGraph, preview: Preview, preview_chars: usize) -> Config {
    let mut c = Config::default();
    c.m365.enabled = true;
    c.m365.public_url = "https://enclave.example.org".into();
    c.m365.client_id = CLIENT_ID.into();
    c.m365.allowed_tenants = vec![TENANT.into(), OTHER_TENANT.into()];
    let n = &mut c.m365.notifications;
    n.enabled = true;
    n.client_secret = SECRET.into();
    n.login_url = fake.url();
    n.graph_url = fake.url();
    n.preview = preview;
    n.preview_chars = preview_chars;
    n.timeout_ms = 2000;
    n.max_attempts = 3;
    n.retry_base_ms = 1000;
    n.poll_ms = 20;
    c.validate().expect("a valid configuration");
    c
}

/// `app`'s database under a configuration that sends to `fake`.
async fn with_fake(app: TestApp, fake: &FakeGraph, preview: Preview, chars: usize) -> TestApp {
    TestApp::on(app.tdb, config(fake, preview, chars), false).await
}

fn graph(app: &TestApp) -> Graph {
    Graph::new(&app.state.config.m365, HttpClient::new().unwrap())
}

/// `oid` for the n-th Teams user.
fn oid(n: u8) -> String {
    format!("9a0c2b7e-5d41-4f2a-8e3b-1c6d7f8a9b{n:02x}")
}

/// Marks `u` as signed in through the Teams tab, as `oid` of `tenant`.
async fn teams_user(app: &TestApp, u: &str, tenant: &str, oid: &str) {
    sqlx::query(
        "INSERT INTO m365_users (user_id, tenant, object_id, host, first_seen_at, last_seen_at)
         VALUES ($1, $2, $3, 'Teams', $4, $4)",
    )
    .bind(u)
    .bind(tenant)
    .bind(oid)
    .bind(common::T0)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
}

async fn deliver(app: &TestApp, graph: &Graph) -> usize {
    control::m365::notify::deliver_due(&app.state, graph)
        .await
        .unwrap()
}

fn count(app: &TestApp, outcome: &str) -> u64 {
    app.state
        .metrics
        .teams_notifications
        .with_label_values(&[outcome])
        .get()
}

/// An open channel of a team: `people[0]` made both, the others joined.
async fn open_channel(app: &TestApp, people: &[&TestUser]) -> String {
    let team = app.team("eng", people[0], &people[1..]).await;
    let ch = app.channel(&team, "general", "open", people[0]).await;
    for p in &people[1..] {
        let r = app
            .post(&format!("/api/v1/channels/{ch}/join"), p, json!({}))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    }
    ch
}

async fn users(app: &TestApp, names: &[&str]) -> Vec<TestUser> {
    let mut v = Vec::new();
    for n in names {
        v.push(app.user(n, SystemRole::User).await);
    }
    v
}

// ------------------------------------------------------------- mentions

async fn a_mention_reaches_only_the_mentioned_teams_user(app: TestApp) {
    let fake = fake().await;
    let app = with_fake(app, &fake, Preview::None, 100).await;
    let p = users(&app, &["alice", "bob", "carol", "dave", "erin"]).await;
    let (alice, bob, carol, dave, erin) = (&p[0], &p[1], &p[2], &p[3], &p[4]);
    // carol is not in the channel; dave never opened the tab.
    let ch = open_channel(&app, &[alice, bob, dave, erin]).await;
    let admin = app.user("root", SystemRole::Admin).await;
    let r = app
        .post(
            "/api/v1/bots",
            &admin,
            json!({"username": "ci-bot", "owner_id": alice.id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let bot = r.body["user_id"].as_str().unwrap().to_owned();
    sqlx::query(
        "INSERT INTO channel_members (channel_id, user_id, role, created_at)
         VALUES ($1, $2, 'member', $3)",
    )
    .bind(&ch)
    .bind(&bot)
    .bind(common::T0)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    for (i, id) in [&alice.id, &bob.id, &carol.id, &erin.id, &bot]
        .into_iter()
        .enumerate()
    {
        teams_user(&app, id, TENANT, &oid(i as u8)).await;
    }

    // Nothing is sent for a post that names nobody.
    app.say(&ch, alice, "good morning").await;
    let post = app
        .say(
            &ch,
            alice,
            "@bob @Bob and @carol, @dave, @alice, @ci-bot: have a look",
        )
        .await;
    let post_id = post["id"].as_str().unwrap();
    assert_eq!(deliver(&app, &graph(&app)).await, 1);
    let sent = fake.delivered();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let n = &sent[0];
    assert_eq!(n.object_id, oid(1), "bob, once");
    assert_eq!(n.tenant.as_deref(), Some(TENANT));
    assert_eq!(n.activity_type(), "mention");
    assert_eq!(n.sub_entity_id(), format!("post_{post_id}"));
    assert_eq!(n.parameter("actor"), Some("alice"));
    assert_eq!(n.parameter("place"), Some("general"));
    assert_eq!(n.preview(), "New message");
    assert!(fake.rejected().is_empty(), "{:?}", fake.rejected());
    let tokens = fake.tokens();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].tenant, TENANT);
    assert_eq!(tokens[0].form["grant_type"], "client_credentials");
    assert_eq!(tokens[0].form["client_id"], CLIENT_ID);
    assert_eq!(tokens[0].form["client_secret"], SECRET);
    assert_eq!(
        tokens[0].form["scope"],
        "https://graph.microsoft.com/.default"
    );
    assert_eq!(count(&app, "sent"), 1);
    assert_eq!(m365_outbox::counts(&app.state.db).await.unwrap(), (0, 1, 0));
    // Sent is sent: another round finds nothing.
    assert_eq!(deliver(&app, &graph(&app)).await, 0);

    // With notifications off, a mention queues nothing at all.
    let mut off = (*app.state.config).clone();
    off.m365.notifications.enabled = false;
    let app = TestApp::on(app.tdb, off, false).await;
    app.say(&ch, alice, "@bob again").await;
    assert_eq!(m365_outbox::counts(&app.state.db).await.unwrap(), (0, 1, 0));
}

// ------------------------------------------------------ direct messages

async fn direct_and_group_messages_reach_the_other_members(app: TestApp) {
    let fake = fake().await;
    let app = with_fake(app, &fake, Preview::None, 100).await;
    let p = users(&app, &["alice", "bob", "carol", "dave"]).await;
    teams_user(&app, &p[0].id, TENANT, &oid(0)).await;
    teams_user(&app, &p[1].id, TENANT, &oid(1)).await;
    // carol lives in another allowed tenant; dave never opened the tab.
    teams_user(&app, &p[2].id, OTHER_TENANT, &oid(2)).await;

    let r = app
        .post(
            "/api/v1/channels/direct",
            &p[0],
            json!({"user_id": p[1].id}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let dm = r.body["id"].as_str().unwrap().to_owned();
    // A mention in a direct channel is still one notification.
    let post = app.say(&dm, &p[0], "hello @bob").await;
    assert_eq!(deliver(&app, &graph(&app)).await, 1);
    let sent = fake.delivered();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].object_id, oid(1));
    assert_eq!(sent[0].activity_type(), "direct_message");
    assert_eq!(
        sent[0].sub_entity_id(),
        format!("post_{}", post["id"].as_str().unwrap())
    );
    assert_eq!(sent[0].parameter("place"), Some("Enclave"));

    let r = app
        .post(
            "/api/v1/channels/group",
            &p[1],
            json!({"user_ids": [p[0].id, p[2].id, p[3].id]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let group = r.body["id"].as_str().unwrap().to_owned();
    app.say(&group, &p[1], "standup in five").await;
    let g = graph(&app);
    assert_eq!(deliver(&app, &g).await, 2);
    let mut sent: Vec<(String, Option<String>, String)> = fake.delivered()[1..]
        .iter()
        .map(|n| {
            (
                n.object_id.clone(),
                n.tenant.clone(),
                n.activity_type().to_owned(),
            )
        })
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        vec![
            (oid(0), Some(TENANT.into()), "direct_message".into()),
            (oid(2), Some(OTHER_TENANT.into()), "direct_message".into()),
        ],
        "alice and carol, each through a token of their own tenant"
    );
    assert_eq!(fake.delivered()[1].parameter("actor"), Some("bob"));
    assert_eq!(
        fake.delivered()[1].parameter("place"),
        Some("a group conversation")
    );
    let tenants: Vec<String> = fake.tokens().into_iter().map(|t| t.tenant).collect();
    assert_eq!(tenants.len(), 3, "one per tenant per client: {tenants:?}");
    assert!(fake.rejected().is_empty(), "{:?}", fake.rejected());
}

// -------------------------------------------------------------- preview

const MARKER: &str = "Zebra-Orchid-4471";

async fn preview_none_sends_no_text_of_the_message(app: TestApp) {
    let fake = fake().await;
    let app = with_fake(app, &fake, Preview::None, 150).await;
    let p = users(&app, &["alice", "bob"]).await;
    teams_user(&app, &p[1].id, TENANT, &oid(1)).await;
    let ch = open_channel(&app, &[&p[0], &p[1]]).await;
    app.say(&ch, &p[0], &format!("@bob the code is {MARKER}"))
        .await;
    let r = app
        .post(
            "/api/v1/channels/direct",
            &p[0],
            json!({"user_id": p[1].id}),
        )
        .await;
    let dm = r.body["id"].as_str().unwrap().to_owned();
    app.say(&dm, &p[0], MARKER).await;
    assert_eq!(deliver(&app, &graph(&app)).await, 2);
    let sent = fake.delivered();
    assert_eq!(sent.len(), 2);
    for n in &sent {
        assert_eq!(n.preview(), "New message");
    }
    let all = fake.all_bodies();
    assert!(!all.contains(MARKER), "message text left the site: {all}");
    assert!(!all.contains("Zebra"), "no part of it either");
    // Nor is it kept in the outbox.
    let rows: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM m365_outbox WHERE activity LIKE '%Zebra%'
             OR last_error LIKE '%Zebra%'",
    )
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(rows, 0);
}

async fn preview_short_is_cut_to_the_configured_length(app: TestApp) {
    let fake = fake().await;
    let app = with_fake(app, &fake, Preview::Short, 12).await;
    let p = users(&app, &["alice", "bob"]).await;
    teams_user(&app, &p[1].id, TENANT, &oid(1)).await;
    let r = app
        .post(
            "/api/v1/channels/direct",
            &p[0],
            json!({"user_id": p[1].id}),
        )
        .await;
    let dm = r.body["id"].as_str().unwrap().to_owned();
    app.say(&dm, &p[0], "Déjà vu 🚀🚀 and then the rest of it")
        .await;
    deliver(&app, &graph(&app)).await;
    // Longer than Teams shows: cut at 150 characters.
    let app = with_fake(app, &fake, Preview::Short, 150).await;
    app.say(&dm, &p[0], &"ü".repeat(400)).await;
    deliver(&app, &graph(&app)).await;
    let sent = fake.delivered();
    assert_eq!(sent.len(), 2);
    // Twelve characters, the last two emoji whole.
    assert_eq!(sent[0].preview(), "Déjà vu 🚀🚀 a");
    assert_eq!(sent[1].preview(), "ü".repeat(150));
    assert!(fake.rejected().is_empty(), "{:?}", fake.rejected());
}

// -------------------------------------------------------------- retries

async fn throttling_is_retried_after_retry_after(app: TestApp) {
    let fake = fake().await;
    let app = with_fake(app, &fake, Preview::None, 100).await;
    let p = users(&app, &["alice", "bob", "carol"]).await;
    teams_user(&app, &p[1].id, TENANT, &oid(1)).await;
    teams_user(&app, &p[2].id, TENANT, &oid(2)).await;
    let ch = open_channel(&app, &[&p[0], &p[1], &p[2]]).await;
    let g = graph(&app);

    fake.fail_next(1, 429, Some("7"));
    app.say(&ch, &p[0], "@bob ping").await;
    assert_eq!(deliver(&app, &g).await, 1);
    assert_eq!(fake.requests()[0].status, 429);
    assert_eq!((count(&app, "failed"), count(&app, "sent")), (1, 0));
    // Not a moment before Graph asked.
    app.clock.advance_ms(6_999);
    assert_eq!(deliver(&app, &g).await, 0);
    app.clock.advance_ms(1);
    assert_eq!(deliver(&app, &g).await, 1);
    assert_eq!(fake.delivered().len(), 1);
    assert_eq!(count(&app, "sent"), 1);

    // 503 without Retry-After: the configured backoff (1 s, then 2 s),
    // then given up at max_attempts (3).
    fake.fail_next(3, 503, None);
    app.say(&ch, &p[0], "@carol ping").await;
    assert_eq!(deliver(&app, &g).await, 1);
    app.clock.advance_ms(999);
    assert_eq!(deliver(&app, &g).await, 0);
    app.clock.advance_ms(1);
    assert_eq!(deliver(&app, &g).await, 1);
    app.clock.advance_ms(1_999);
    assert_eq!(deliver(&app, &g).await, 0);
    app.clock.advance_ms(1);
    assert_eq!(deliver(&app, &g).await, 1);
    assert_eq!(count(&app, "given_up"), 1);
    app.clock.advance_ms(3_600_000);
    assert_eq!(deliver(&app, &g).await, 0, "given up is final");

    // Any other 4xx (the app is not installed for the user) ends at once.
    fake.fail_next(1, 403, None);
    app.say(&ch, &p[0], "@bob and again").await;
    assert_eq!(deliver(&app, &g).await, 1);
    app.clock.advance_ms(3_600_000);
    assert_eq!(deliver(&app, &g).await, 0);
    assert_eq!(count(&app, "given_up"), 2);
    assert_eq!(m365_outbox::counts(&app.state.db).await.unwrap(), (0, 1, 2));
    assert_eq!(fake.delivered().len(), 1);
}

async fn a_token_is_fetched_once_and_reused(app: TestApp) {
    let fake = fake().await;
    let app = with_fake(app, &fake, Preview::None, 100).await;
    let p = users(&app, &["alice", "bob", "carol"]).await;
    teams_user(&app, &p[1].id, TENANT, &oid(1)).await;
    teams_user(&app, &p[2].id, TENANT, &oid(2)).await;
    let ch = open_channel(&app, &[&p[0], &p[1], &p[2]]).await;
    let g = graph(&app);
    // Sent together (concurrently) and apart.
    app.say(&ch, &p[0], "@bob @carol one").await;
    app.say(&ch, &p[0], "@bob two").await;
    assert_eq!(deliver(&app, &g).await, 3);
    app.clock.advance_ms(60_000);
    app.say(&ch, &p[0], "@carol three").await;
    assert_eq!(deliver(&app, &g).await, 1);
    assert_eq!(fake.delivered().len(), 4);
    assert_eq!(fake.tokens().len(), 1, "one token for all four");

    // Five minutes before it expires a new one is fetched.
    app.clock
        .advance_ms((EXPIRES_IN - 5 * 60) * 1000 - 60_000 - 1);
    app.say(&ch, &p[0], "@bob four").await;
    deliver(&app, &g).await;
    assert_eq!(fake.tokens().len(), 1);
    app.clock.advance_ms(1);
    app.say(&ch, &p[0], "@bob five").await;
    deliver(&app, &g).await;
    assert_eq!(fake.tokens().len(), 2);
    let bearers: Vec<Option<String>> = fake.delivered().iter().map(|n| n.tenant.clone()).collect();
    assert!(bearers.iter().all(|t| t.as_deref() == Some(TENANT)));
    assert_eq!(fake.delivered().len(), 6);
}

// -------------------------------------------------------------- restart

async fn a_restart_sends_what_was_queued(app: TestApp) {
    let fake = fake().await;
    let app = with_fake(app, &fake, Preview::None, 100).await;
    let p = users(&app, &["alice", "bob"]).await;
    teams_user(&app, &p[1].id, TENANT, &oid(1)).await;
    let ch = open_channel(&app, &[&p[0], &p[1]]).await;
    // Queued; the node goes away before its worker sends anything.
    let post = app.say(&ch, &p[0], "@bob before the restart").await;
    assert_eq!(m365_outbox::counts(&app.state.db).await.unwrap(), (1, 0, 0));
    let config = (*app.state.config).clone();
    drop(app.state);
    let tdb: TestDb = app.tdb;
    let app = TestApp::on(tdb, config, false).await;
    // The new node's own worker, as `control::run` starts it.
    let worker = tokio::spawn(control::m365::notify::run(app.state.clone()));
    let sent = fake.wait_delivered(1).await;
    assert_eq!(sent[0].object_id, oid(1));
    assert_eq!(
        sent[0].sub_entity_id(),
        format!("post_{}", post["id"].as_str().unwrap())
    );
    // And it is woken by the next post at once (poll is 20 ms; either way
    // it goes out without a call of ours).
    app.say(&ch, &p[0], "@bob after").await;
    fake.wait_delivered(2).await;
    worker.abort();
    assert_eq!(m365_outbox::counts(&app.state.db).await.unwrap(), (0, 2, 0));
}

// ---------------------------------------------------------- call ringing

async fn a_ringing_call_notifies_whom_it_rings(app: TestApp) {
    let fake = fake().await;
    let mut config = config(&fake, Preview::None, 100);
    config.rtcd = control::nodes::RtcdConfig::loopback();
    let app = TestApp::on(app.tdb, config, false).await;
    app.state
        .nodes
        .start()
        .await
        .expect("the embedded media node starts");
    let p = users(&app, &["alice", "bob", "carol", "dave"]).await;
    for (i, u) in p[..3].iter().enumerate() {
        teams_user(&app, &u.id, TENANT, &oid(i as u8)).await;
    }
    let r = app
        .post(
            "/api/v1/channels/group",
            &p[0],
            json!({"user_ids": [p[1].id, p[2].id, p[3].id]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let ch = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .post(&format!("/api/v1/channels/{ch}/call"), &p[0], json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let call = r.body["call_id"].as_str().unwrap().to_owned();
    // bob declines before the notification goes out: carol's alone is
    // worth sending. The call's own post ("alice started a call") is no
    // direct message.
    let r = app
        .post(&format!("/api/v1/calls/{call}/decline"), &p[1], json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(deliver(&app, &graph(&app)).await, 2);
    let sent = fake.delivered();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].object_id, oid(2));
    assert_eq!(sent[0].activity_type(), "call_ringing");
    assert_eq!(sent[0].sub_entity_id(), format!("call_{ch}"));
    assert_eq!(sent[0].parameter("actor"), Some("alice"));
    assert_eq!(sent[0].preview(), "Incoming call");
    assert_eq!(count(&app, "given_up"), 1, "bob's ring had ended");
    assert!(fake.rejected().is_empty(), "{:?}", fake.rejected());
    app.state.nodes.stop().await;
}

on_both_databases!(
    a_mention_reaches_only_the_mentioned_teams_user,
    direct_and_group_messages_reach_the_other_members,
    preview_none_sends_no_text_of_the_message,
    preview_short_is_cut_to_the_configured_length,
    throttling_is_retried_after_retry_after,
    a_token_is_fetched_once_and_reused,
    a_restart_sends_what_was_queued,
    a_ringing_call_notifies_whom_it_rings,
);
