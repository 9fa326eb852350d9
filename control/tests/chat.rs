//! Chat REST API: teams, channels, posts, threads, edits, deletes,
//! reactions, pins, idempotent posting, unread and mention counts, access
//! control and bad input. Each test runs on SQLite and on PostgreSQL.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::TestApp;
use control::db::events;
use control::db::users::SystemRole;
use serde_json::{Value, json};

async fn posts_threads_edits_deletes(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let bob = app.user("bob", SystemRole::User).await;
    let team = app.team("eng", &alice, &[&bob]).await;
    let ch = app.channel(&team, "general", "open", &alice).await;
    let r = app
        .post(&format!("/api/v1/channels/{ch}/join"), &bob, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);

    let root = app.say(&ch, &alice, "release at five").await;
    let root_id = root["id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/api/v1/channels/{ch}/posts"),
            &bob,
            json!({"message": "ok", "root_id": root_id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let reply_id = r.body["id"].as_str().unwrap().to_owned();
    // A reply to a reply joins the root's thread.
    let r = app
        .post(
            &format!("/api/v1/channels/{ch}/posts"),
            &alice,
            json!({"message": "thanks", "root_id": reply_id}),
        )
        .await;
    assert_eq!(r.body["root_id"], root_id);

    let thread = app
        .get(&format!("/api/v1/posts/{reply_id}/thread"), &alice)
        .await
        .body;
    let texts: Vec<&str> = thread
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["message"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["release at five", "ok", "thanks"]);
    assert_eq!(thread[0]["reply_count"], 2);

    // Edits keep their history; only the author edits.
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/v1/posts/{root_id}"),
            Some(&bob),
            Some(json!({"message": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for text in ["release at six", "release at seven"] {
        let r = app
            .call(
                Method::PATCH,
                &format!("/api/v1/posts/{root_id}"),
                Some(&alice),
                Some(json!({"message": text})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert!(r.body["edited_at"].is_i64());
    }
    let h = app
        .get(&format!("/api/v1/posts/{root_id}/history"), &bob)
        .await
        .body;
    let old: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(old, ["release at five", "release at six"]);

    // Soft delete: gone from the channel, the thread keeps its place.
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/posts/{root_id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a member deletes only their own posts"
    );
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/posts/{reply_id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let p = app
        .get(&format!("/api/v1/posts/{reply_id}"), &alice)
        .await
        .body;
    assert_eq!(
        (p["deleted"].as_bool(), p["message"].as_str()),
        (Some(true), Some(""))
    );
    let list = app
        .get(&format!("/api/v1/channels/{ch}/posts"), &alice)
        .await
        .body;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["message"], "thanks", "newest first");
    let thread = app
        .get(&format!("/api/v1/posts/{root_id}/thread"), &alice)
        .await
        .body;
    assert_eq!(thread.as_array().unwrap().len(), 2);
    assert_eq!(thread[0]["reply_count"], 1);
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/posts/{reply_id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The channel admin (its creator) deletes others' posts.
    let other = app.say(&ch, &bob, "oops").await;
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/posts/{}", other["id"].as_str().unwrap()),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    // Paging by `before`.
    for i in 0..5 {
        app.clock.advance_ms(1);
        app.say(&ch, &alice, &format!("n{i}")).await;
    }
    let page = app
        .get(&format!("/api/v1/channels/{ch}/posts?limit=2"), &bob)
        .await
        .body;
    assert_eq!(page[0]["message"], "n4");
    let last = page[1]["id"].as_str().unwrap();
    let page = app
        .get(
            &format!("/api/v1/channels/{ch}/posts?limit=2&before={last}"),
            &bob,
        )
        .await
        .body;
    let texts: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["message"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["n2", "n1"]);
}

async fn reactions_and_pins(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let bob = app.user("bob", SystemRole::User).await;
    let team = app.team("eng", &alice, &[&bob]).await;
    let ch = app.channel(&team, "general", "open", &alice).await;
    app.post(&format!("/api/v1/channels/{ch}/join"), &bob, json!({}))
        .await;
    let p = app.say(&ch, &alice, "ship it").await;
    let id = p["id"].as_str().unwrap();
    for (who, emoji) in [
        (&alice, "thumbsup"),
        (&bob, "thumbsup"),
        (&bob, "tada"),
        (&bob, "tada"),
    ] {
        let r = app
            .call(
                Method::PUT,
                &format!("/api/v1/posts/{id}/reactions/{emoji}"),
                Some(who),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    let r = app
        .get(&format!("/api/v1/posts/{id}/reactions"), &alice)
        .await
        .body;
    assert_eq!(
        r.as_array().unwrap().len(),
        3,
        "a repeated reaction counts once"
    );
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/posts/{id}/reactions/tada"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/posts/{id}/reactions/tada"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .call(
            Method::PUT,
            &format!("/api/v1/posts/{id}/reactions/%3Cscript%3E"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = app
        .call(
            Method::PUT,
            &format!("/api/v1/posts/{id}/pin"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let pinned = app
        .get(&format!("/api/v1/channels/{ch}/pinned"), &alice)
        .await
        .body;
    assert_eq!(pinned[0]["id"], id);
    assert_eq!(pinned[0]["pinned"], true);
    app.call(
        Method::DELETE,
        &format!("/api/v1/posts/{id}/pin"),
        Some(&alice),
        None,
    )
    .await;
    let pinned = app
        .get(&format!("/api/v1/channels/{ch}/pinned"), &alice)
        .await
        .body;
    assert_eq!(pinned.as_array().unwrap().len(), 0);
}

async fn a_retried_post_is_not_duplicated(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let team = app.team("eng", &alice, &[]).await;
    let ch = app.channel(&team, "general", "open", &alice).await;
    let other = app.channel(&team, "random", "open", &alice).await;
    let body = json!({"message": "only once", "pending_id": "c-123"});
    let first = app
        .post(
            &format!("/api/v1/channels/{ch}/posts"),
            &alice,
            body.clone(),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body["pending_id"], "c-123");
    let again = app
        .post(
            &format!("/api/v1/channels/{ch}/posts"),
            &alice,
            body.clone(),
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "a retry answers 200 with the first post"
    );
    assert_eq!(again.body["id"], first.body["id"]);
    let list = app
        .get(&format!("/api/v1/channels/{ch}/posts"), &alice)
        .await
        .body;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let seqs = events::since(&app.state.db, 0, 100).await.unwrap();
    assert_eq!(
        seqs.iter()
            .filter(|e| e.event.kind() == "post_created")
            .count(),
        1
    );
    // The same pending id in another channel is a client bug, not a retry.
    let r = app
        .post(&format!("/api/v1/channels/{other}/posts"), &alice, body)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "pending_id_reused")
    );
    // Concurrent retries still make one post.
    let body = json!({"message": "racing", "pending_id": "c-race"});
    let uri = format!("/api/v1/channels/{ch}/posts");
    let (a, b, c) = tokio::join!(
        app.post(&uri, &alice, body.clone()),
        app.post(&uri, &alice, body.clone()),
        app.post(&uri, &alice, body.clone())
    );
    assert_eq!(a.body["id"], b.body["id"]);
    assert_eq!(b.body["id"], c.body["id"]);
    let created = [a.status, b.status, c.status]
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1);
}

fn unread_of(unreads: &Value, ch: &str) -> (i64, i64) {
    let u = unreads
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["channel_id"] == ch)
        .unwrap();
    (
        u["unread_count"].as_i64().unwrap(),
        u["mention_count"].as_i64().unwrap(),
    )
}

async fn unread_and_mention_counts(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let bob = app.user("bob", SystemRole::User).await;
    let carol = app.user("carol", SystemRole::User).await;
    let team = app.team("eng", &alice, &[&bob, &carol]).await;
    let ch = app.channel(&team, "general", "open", &alice).await;
    for u in [&bob, &carol] {
        app.post(&format!("/api/v1/channels/{ch}/join"), u, json!({}))
            .await;
    }
    app.say(&ch, &bob, "morning").await;
    app.say(&ch, &bob, "@alice can you look? cc @Carol. @nobody")
        .await;
    app.say(&ch, &bob, "@channel standup in 5").await;
    app.say(&ch, &bob, "email me at bob@alice.example").await;
    let u = app.get("/api/v1/users/me/unreads", &alice).await.body;
    assert_eq!(unread_of(&u, &ch), (4, 2));
    let u = app.get("/api/v1/users/me/unreads", &carol).await.body;
    assert_eq!(unread_of(&u, &ch), (4, 2));
    let u = app.get("/api/v1/users/me/unreads", &bob).await.body;
    assert_eq!(unread_of(&u, &ch), (0, 0), "one's own posts are read");
    let r = app
        .post(&format!("/api/v1/channels/{ch}/view"), &alice, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let u = app.get("/api/v1/users/me/unreads", &alice).await.body;
    assert_eq!(unread_of(&u, &ch), (0, 0));
    app.say(&ch, &carol, "one more").await;
    let u = app.get("/api/v1/users/me/unreads", &alice).await.body;
    assert_eq!(unread_of(&u, &ch), (1, 0));
    // Someone who joins later starts with nothing unread.
    let dave = app.user("dave", SystemRole::User).await;
    app.post(
        &format!("/api/v1/teams/{team}/members"),
        &alice,
        json!({"user_id": dave.id}),
    )
    .await;
    app.post(&format!("/api/v1/channels/{ch}/join"), &dave, json!({}))
        .await;
    let u = app.get("/api/v1/users/me/unreads", &dave).await.body;
    assert_eq!(unread_of(&u, &ch), (0, 0));
}

async fn direct_and_group_channels(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let bob = app.user("bob", SystemRole::User).await;
    let carol = app.user("carol", SystemRole::User).await;
    let r = app
        .post(
            "/api/v1/channels/direct",
            &alice,
            json!({"user_id": bob.id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let dm = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            "/api/v1/channels/direct",
            &bob,
            json!({"user_id": alice.id}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["id"].as_str()),
        (StatusCode::OK, Some(dm.as_str()))
    );
    app.say(&dm, &bob, "psst").await;
    assert_eq!(
        app.get(&format!("/api/v1/channels/{dm}/posts"), &carol)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = app
        .post(&format!("/api/v1/channels/{dm}/leave"), &alice, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = app
        .post(
            "/api/v1/channels/group",
            &alice,
            json!({"user_ids": [bob.id, carol.id]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let g = r.body["id"].as_str().unwrap().to_owned();
    app.say(&g, &carol, "hi all").await;
    let r = app
        .post(
            "/api/v1/channels/group",
            &alice,
            json!({"user_ids": [bob.id]}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "two people are a direct channel"
    );
    let mine = app.get("/api/v1/users/me/channels", &bob).await.body;
    assert_eq!(mine.as_array().unwrap().len(), 2);
}

/// Guessing ids gets an outsider nothing: 404 for what they may not know
/// exists, 403 for an open channel of their team they have not joined.
async fn outsiders_cannot_read_or_post_by_guessing_ids(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let bob = app.user("bob", SystemRole::User).await;
    let mallory = app.user("mallory", SystemRole::User).await;
    let team = app.team("eng", &alice, &[&bob, &mallory]).await;
    let other_team = app.team("ops", &bob, &[]).await;
    let private = app.channel(&team, "secret", "private", &alice).await;
    let open = app.channel(&team, "general", "open", &alice).await;
    let foreign = app.channel(&other_team, "ops-room", "open", &bob).await;
    let dm = app
        .post(
            "/api/v1/channels/direct",
            &alice,
            json!({"user_id": bob.id}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = app.say(&private, &alice, "the launch code").await;
    let secret_id = secret["id"].as_str().unwrap();
    let said_in_open = app.say(&open, &alice, "hello").await;
    let open_post = said_in_open["id"].as_str().unwrap();

    let hidden = StatusCode::NOT_FOUND;
    for ch in [&private, &foreign, &dm] {
        for (m, uri, body) in [
            (Method::GET, format!("/api/v1/channels/{ch}"), None),
            (Method::GET, format!("/api/v1/channels/{ch}/posts"), None),
            (Method::GET, format!("/api/v1/channels/{ch}/pinned"), None),
            (Method::GET, format!("/api/v1/channels/{ch}/members"), None),
            (
                Method::POST,
                format!("/api/v1/channels/{ch}/posts"),
                Some(json!({"message": "hi"})),
            ),
            (
                Method::POST,
                format!("/api/v1/channels/{ch}/join"),
                Some(json!({})),
            ),
            (
                Method::POST,
                format!("/api/v1/channels/{ch}/view"),
                Some(json!({})),
            ),
            (
                Method::POST,
                format!("/api/v1/channels/{ch}/members"),
                Some(json!({"user_id": mallory.id})),
            ),
        ] {
            let r = app.call(m.clone(), &uri, Some(&mallory), body).await;
            assert_eq!(r.status, hidden, "{m} {uri}: {:?}", r.body);
            assert_eq!(r.code(), "not_found");
        }
    }
    for (m, uri, body) in [
        (Method::GET, format!("/api/v1/posts/{secret_id}"), None),
        (
            Method::GET,
            format!("/api/v1/posts/{secret_id}/thread"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/posts/{secret_id}/history"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/posts/{secret_id}/reactions"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/v1/posts/{secret_id}"),
            Some(json!({"message": "x"})),
        ),
        (Method::DELETE, format!("/api/v1/posts/{secret_id}"), None),
        (
            Method::PUT,
            format!("/api/v1/posts/{secret_id}/reactions/eyes"),
            None,
        ),
        (Method::PUT, format!("/api/v1/posts/{secret_id}/pin"), None),
        (Method::GET, format!("/api/v1/teams/{other_team}"), None),
        (
            Method::GET,
            format!("/api/v1/teams/{other_team}/channels"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/teams/{other_team}/channels"),
            Some(json!({"name": "x", "display_name": "x", "kind": "open"})),
        ),
    ] {
        let r = app.call(m.clone(), &uri, Some(&mallory), body).await;
        assert_eq!(r.status, hidden, "{m} {uri}: {:?}", r.body);
    }
    // A reply into a thread of a channel one cannot see, through a channel
    // one can: refused, nothing written.
    let r = app
        .post(
            &format!("/api/v1/channels/{open}/posts"),
            &alice,
            json!({"message": "x", "root_id": secret_id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // The open channel is visible but not readable before joining.
    let r = app
        .get(&format!("/api/v1/channels/{open}/posts"), &mallory)
        .await;
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_a_member"))
    );
    let r = app
        .get(&format!("/api/v1/posts/{open_post}"), &mallory)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .post(
            &format!("/api/v1/channels/{open}/posts"),
            &mallory,
            json!({"message": "hi"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The team's channel list shows open channels, not the private one.
    let list = app
        .get(&format!("/api/v1/teams/{team}/channels"), &mallory)
        .await
        .body;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["general"]);
    // Nothing changed: the secret is intact and no post was added.
    let posts = app
        .get(&format!("/api/v1/channels/{private}/posts"), &alice)
        .await
        .body;
    assert_eq!(posts.as_array().unwrap().len(), 1);
    assert_eq!(posts[0]["message"], "the launch code");
    // Guests cannot join open channels by themselves.
    let guest = app.user("gus", SystemRole::Guest).await;
    app.post(
        &format!("/api/v1/teams/{team}/members"),
        &alice,
        json!({"user_id": guest.id, "role": "guest"}),
    )
    .await;
    let r = app
        .post(&format!("/api/v1/channels/{open}/join"), &guest, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .post(
            &format!("/api/v1/teams/{team}/channels"),
            &guest,
            json!({"name": "g", "display_name": "g", "kind": "open"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

async fn private_channels_grow_by_invitation(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let bob = app.user("bob", SystemRole::User).await;
    let outsider = app.user("olga", SystemRole::User).await;
    let team = app.team("eng", &alice, &[&bob]).await;
    let private = app.channel(&team, "secret", "private", &alice).await;
    let r = app
        .post(
            &format!("/api/v1/channels/{private}/members"),
            &alice,
            json!({"user_id": outsider.id}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "only team members join a team channel"
    );
    let r = app
        .post(
            &format!("/api/v1/channels/{private}/members"),
            &alice,
            json!({"user_id": bob.id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.say(&private, &bob, "in").await;
    let r = app
        .post(
            &format!("/api/v1/channels/{private}/leave"),
            &bob,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/api/v1/channels/{private}/posts"), &bob)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn raw(
    app: &TestApp,
    uri: &str,
    token: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> common::Resp {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"));
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    app.send(b.body(Body::from(body)).unwrap()).await
}

async fn bad_input_gets_a_precise_4xx(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let team = app.team("eng", &alice, &[]).await;
    let ch = app.channel(&team, "general", "open", &alice).await;
    let uri = format!("/api/v1/channels/{ch}/posts");
    let json_ct = Some("application/json");

    let big = format!(r#"{{"message":"{}"}}"#, "a".repeat(300 << 10));
    let r = raw(&app, &uri, &alice.token, json_ct, big.into_bytes()).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );

    let r = raw(
        &app,
        &uri,
        &alice.token,
        json_ct,
        b"{\"message\": ".to_vec(),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    assert!(
        r.body["message"].as_str().unwrap().contains("EOF"),
        "{:?}",
        r.body
    );

    let r = raw(
        &app,
        &uri,
        &alice.token,
        json_ct,
        br#"{"message": 7}"#.to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body["message"].as_str().unwrap().contains("invalid type"),
        "{:?}",
        r.body
    );

    let r = raw(
        &app,
        &uri,
        &alice.token,
        json_ct,
        br#"{"message": "x", "admin": true}"#.to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("unknown field"),
        "{:?}",
        r.body
    );

    let r = raw(
        &app,
        &uri,
        &alice.token,
        None,
        br#"{"message": "x"}"#.to_vec(),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );

    let r = app.post(&uri, &alice, json!({"message": "   "})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app
        .post(&uri, &alice, json!({"message": "x".repeat(16_384)}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app.get(&format!("{uri}?limit=0"), &alice).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app.get(&format!("{uri}?limit=abc"), &alice).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app
        .post(
            &format!("/api/v1/teams/{team}/channels"),
            &alice,
            json!({"name": "../etc", "display_name": "x", "kind": "open"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app
        .post(
            &format!("/api/v1/teams/{team}/channels"),
            &alice,
            json!({"name": "dm", "display_name": "x", "kind": "direct"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // HTML and script are stored and returned as the text they are.
    let evil = "<script>alert(1)</script><img src=x onerror=alert(2)> & \"quotes\"";
    let p = app.say(&ch, &alice, evil).await;
    let got = app
        .get(
            &format!("/api/v1/posts/{}", p["id"].as_str().unwrap()),
            &alice,
        )
        .await;
    assert_eq!(got.body["message"], evil);
    assert_eq!(got.headers["content-type"], "application/json");
    let list = app.get(&uri, &alice).await.body;
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "no rejected request left a post"
    );
}

async fn every_change_is_an_event_in_order(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let team = app.team("eng", &alice, &[]).await;
    let ch = app.channel(&team, "general", "open", &alice).await;
    let p = app.say(&ch, &alice, "one").await;
    let id = p["id"].as_str().unwrap();
    app.call(
        Method::PATCH,
        &format!("/api/v1/posts/{id}"),
        Some(&alice),
        Some(json!({"message": "1"})),
    )
    .await;
    app.call(
        Method::PUT,
        &format!("/api/v1/posts/{id}/reactions/eyes"),
        Some(&alice),
        None,
    )
    .await;
    app.call(
        Method::PUT,
        &format!("/api/v1/posts/{id}/pin"),
        Some(&alice),
        None,
    )
    .await;
    app.call(
        Method::DELETE,
        &format!("/api/v1/posts/{id}"),
        Some(&alice),
        None,
    )
    .await;
    let evs = events::since(&app.state.db, 0, 100).await.unwrap();
    let kinds: Vec<&str> = evs.iter().map(|e| e.event.kind()).collect();
    assert_eq!(
        kinds,
        [
            "channel_created",
            "post_created",
            "post_edited",
            "reaction_added",
            "post_pinned",
            "post_deleted"
        ]
    );
    assert!(evs.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(
        evs.iter()
            .all(|e| e.channel_id.as_deref() == Some(ch.as_str()))
    );
    // Pruning keeps the newest event, so the sequence never goes back.
    let latest = events::latest_seq(&app.state.db).await.unwrap();
    let n = events::prune(&app.state.db, i64::MAX).await.unwrap();
    assert_eq!(n as usize, evs.len() - 1);
    assert_eq!(events::latest_seq(&app.state.db).await.unwrap(), latest);
    app.say(&ch, &alice, "after pruning").await;
    assert_eq!(events::latest_seq(&app.state.db).await.unwrap(), latest + 1);
}

/// Many writers at once (replies read their root before writing): every
/// post lands and the counts add up.
async fn concurrent_writers_all_succeed(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let bob = app.user("bob", SystemRole::User).await;
    let team = app.team("eng", &alice, &[&bob]).await;
    let ch = app.channel(&team, "general", "open", &alice).await;
    app.post(&format!("/api/v1/channels/{ch}/join"), &bob, json!({}))
        .await;
    let root = app.say(&ch, &alice, "thread").await;
    let root_id = root["id"].as_str().unwrap().to_owned();
    let uri = format!("/api/v1/channels/{ch}/posts");
    let results = futures_util::future::join_all((0..24).map(|i| {
        let who = if i % 2 == 0 { &alice } else { &bob };
        let body = json!({"message": format!("r{i}"), "root_id": root_id});
        let (uri, app) = (&uri, &app);
        async move { app.post(uri, who, body).await.status }
    }))
    .await;
    assert!(
        results.iter().all(|s| *s == StatusCode::CREATED),
        "{results:?}"
    );
    let thread = app
        .get(&format!("/api/v1/posts/{root_id}/thread"), &alice)
        .await
        .body;
    assert_eq!(thread[0]["reply_count"], 24);
    let times: Vec<i64> = thread
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["created_at"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    let ch_now = app
        .get(&format!("/api/v1/channels/{ch}"), &alice)
        .await
        .body;
    assert_eq!(ch_now["total_msg_count"], 25);
}

on_both_databases!(
    concurrent_writers_all_succeed,
    posts_threads_edits_deletes,
    reactions_and_pins,
    a_retried_post_is_not_duplicated,
    unread_and_mention_counts,
    direct_and_group_channels,
    outsiders_cannot_read_or_post_by_guessing_ids,
    private_channels_grow_by_invitation,
    bad_input_gets_a_precise_4xx,
    every_change_is_an_event_in_order,
);
