//! `GET /api/v1/users/search`: finding people to message or add, as they
//! type. Who may be found (team and channel sharing, guests, admins,
//! disabled accounts, the calls' recorder), the matching (username, display
//! name, a word of it, case, a leading @, wildcards typed as text), the
//! order and bound, the team filter, and every refusal with its code. Each
//! test runs on SQLite and on PostgreSQL.

mod common;

use axum::http::{Method, StatusCode};
use common::{TestApp, TestUser};
use control::db::users::SystemRole;
use serde_json::json;

/// A user with a display name of its own (the harness names people by
/// their username).
async fn person(app: &TestApp, username: &str, display: &str, role: SystemRole) -> TestUser {
    let u = app.user(username, role).await;
    let sql = "UPDATE users SET display_name = $1 WHERE id = $2";
    sqlx::query(sql)
        .bind(display)
        .bind(&u.id)
        .execute(&app.state.db.pool)
        .await
        .expect("display name");
    u
}

async fn find(app: &TestApp, who: &TestUser, query: &str) -> Vec<String> {
    let r = app.get(&format!("/api/v1/users/search?{query}"), who).await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {:?}", r.body);
    r.body
        .as_array()
        .expect("a list")
        .iter()
        .map(|u| {
            assert!(u.get("email").is_none(), "an email leaked: {u}");
            u["username"].as_str().unwrap().to_owned()
        })
        .collect()
}

async fn who_may_be_found(app: TestApp) {
    let alice = person(&app, "alice", "Alice Martin", SystemRole::User).await;
    let bob = person(&app, "bob", "Robert Lane", SystemRole::User).await;
    let carol = person(&app, "carol", "Carol Bobbins", SystemRole::User).await;
    let dave = person(&app, "dave", "Dave Other", SystemRole::User).await;
    let erin = person(&app, "erin", "Erin Gone", SystemRole::User).await;
    let gina = person(&app, "gina", "Gina Guest", SystemRole::Guest).await;
    let root = person(&app, "root", "Root Admin", SystemRole::Admin).await;
    let eng = app.team("eng", &alice, &[&bob, &carol, &erin]).await;
    let ops = app.team("ops", &dave, &[]).await;
    // gina is a guest of eng, in one private channel with alice.
    let r = app
        .post(
            &format!("/api/v1/teams/{eng}/members"),
            &alice,
            json!({"user_id": gina.id, "role": "guest"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let room = app.channel(&eng, "room", "private", &alice).await;
    let r = app
        .post(
            &format!("/api/v1/channels/{room}/members"),
            &alice,
            json!({"user_id": gina.id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let r = app
        .post(
            &format!("/api/v1/users/{}/disable", erin.id),
            &root,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // Username, display name, a later word of it; any case; a leading @.
    assert_eq!(find(&app, &alice, "q=bo").await, ["bob", "carol"]);
    assert_eq!(find(&app, &alice, "q=%40BOB").await, ["bob", "carol"]);
    assert_eq!(find(&app, &alice, "q=rob").await, ["bob"]);
    assert_eq!(find(&app, &alice, "q=lane").await, ["bob"]);
    assert_eq!(find(&app, &alice, "q=%20Carol%20b").await, ["carol"]);
    // Middles do not match: "ob" is inside "bob" and "Robert".
    assert!(find(&app, &alice, "q=ob").await.is_empty());
    // The caller finds themself.
    assert_eq!(find(&app, &alice, "q=ali").await, ["alice"]);

    // Another team's people are not seen; a disabled account never is.
    assert!(find(&app, &alice, "q=dave").await.is_empty());
    assert!(find(&app, &alice, "q=erin").await.is_empty());
    // ... until a direct message is shared with them.
    let r = app
        .post(
            "/api/v1/channels/direct",
            &alice,
            json!({"user_id": dave.id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(find(&app, &alice, "q=dave").await, ["dave"]);
    assert_eq!(find(&app, &dave, "q=al").await, ["alice"]);

    // A team guest sees only the people of their channels.
    assert_eq!(find(&app, &gina, "q=a").await, ["alice"]);
    assert!(find(&app, &gina, "q=bob").await.is_empty());
    // Team members see the guest.
    assert_eq!(find(&app, &bob, "q=gina").await, ["gina"]);

    // A system admin sees every enabled account; never the recorder.
    assert_eq!(find(&app, &root, "q=dave").await, ["dave"]);
    assert!(find(&app, &root, "q=erin").await.is_empty());
    assert!(find(&app, &root, "q=calls").await.is_empty());

    // The team filter: that team's members only; another team is 404.
    assert_eq!(
        find(&app, &alice, &format!("q=d&team_id={eng}")).await,
        Vec::<String>::new()
    );
    assert_eq!(
        find(&app, &alice, &format!("q=r&team_id={eng}")).await,
        ["bob"]
    );
    let r = app
        .get(&format!("/api/v1/users/search?q=d&team_id={ops}"), &alice)
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(
        find(&app, &root, &format!("q=d&team_id={ops}")).await,
        ["dave"]
    );
}

async fn order_bound_and_wildcards(app: TestApp) {
    let me = person(&app, "mia", "Mia", SystemRole::User).await;
    let mut others = Vec::new();
    for name in ["bobby", "bob", "bo_b", "boxb", "bob2", "bobo", "bobx"] {
        others.push(person(&app, name, name, SystemRole::User).await);
    }
    let refs: Vec<&TestUser> = others.iter().collect();
    app.team("all", &me, &refs).await;

    // The exact username first, then usernames in order.
    assert_eq!(
        find(&app, &me, "q=bob").await,
        ["bob", "bob2", "bobby", "bobo", "bobx"]
    );
    assert_eq!(find(&app, &me, "q=bob&limit=2").await, ["bob", "bob2"]);
    // `_` and `%` are characters, not wildcards.
    assert_eq!(find(&app, &me, "q=bo_").await, ["bo_b"]);
    assert!(find(&app, &me, "q=%25").await.is_empty());
    assert!(find(&app, &me, "q=b%25b").await.is_empty());
    // The default bound is 10; at most 50.
    let mut many = Vec::new();
    for i in 0..12 {
        many.push(person(&app, &format!("zed{i:02}"), "Zed", SystemRole::User).await);
    }
    let refs: Vec<&TestUser> = many.iter().collect();
    app.team("zeds", &me, &refs).await;
    assert_eq!(find(&app, &me, "q=zed").await.len(), 10);
    assert_eq!(find(&app, &me, "q=zed&limit=50").await.len(), 12);
}

async fn bad_queries(app: TestApp) {
    let me = app.user("me-too", SystemRole::User).await;
    let long = "a".repeat(65);
    for (query, code) in [
        ("", "invalid_query"),
        ("q=", "invalid_query"),
        ("q=%20%20", "invalid_query"),
        ("q=%40", "invalid_query"),
        (&format!("q={long}") as &str, "invalid_query"),
        ("q=a%00b", "invalid_query"),
        ("q=a&limit=0", "invalid_limit"),
        ("q=a&limit=51", "invalid_limit"),
        ("q=a&limit=ten", "invalid_limit"),
        ("q=a&limit=", "invalid_limit"),
        ("q=a&page=2", "bad_request"),
    ] {
        let r = app.get(&format!("/api/v1/users/search?{query}"), &me).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{query}: {:?}",
            r.body
        );
        assert!(
            r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{query}: a message for people"
        );
    }
    let r = app
        .call(Method::GET, "/api/v1/users/search?q=me", None, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(find(&app, &me, "q=me").await, ["me-too"]);
}

on_both_databases!(who_may_be_found, order_bound_and_wildcards, bad_queries);
