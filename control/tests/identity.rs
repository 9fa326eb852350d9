//! Identity: login with cookie + CSRF, session timeouts and revocation,
//! lockout, login rate limit, access tokens, password policy. Each test
//! runs on SQLite and on PostgreSQL.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{PASSWORD, TestApp, TestUser};
use control::db::users::SystemRole;
use serde_json::json;

/// Logs in; returns the cookie pair and the CSRF token.
async fn login(app: &TestApp, user: &TestUser) -> (String, String) {
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": user.username, "password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let set = r.headers["set-cookie"].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(flag), "{flag} missing from {set}");
    }
    let pair = set.split(';').next().unwrap().to_owned();
    (pair, r.body["csrf_token"].as_str().unwrap().to_owned())
}

async fn with_cookie(
    app: &TestApp,
    method: Method,
    uri: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: Option<serde_json::Value>,
) -> common::Resp {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("cookie", cookie);
    if let Some(c) = csrf {
        b = b.header("x-csrf-token", c);
    }
    let req = match body {
        Some(v) => b
            .header("content-type", "application/json")
            .body(Body::from(v.to_string())),
        None => b.body(Body::empty()),
    }
    .unwrap();
    app.send(req).await
}

async fn cookie_login_and_csrf(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let (cookie, csrf) = login(&app, &alice).await;
    let r = with_cookie(&app, Method::GET, "/api/v1/users/me", &cookie, None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["username"], "alice");
    assert!(r.body.get("password_hash").is_none());

    // A cookie-authenticated write without (or with a wrong) CSRF token fails.
    let new_team = json!({"name": "t1", "display_name": "T1"});
    let r = with_cookie(
        &app,
        Method::POST,
        "/api/v1/teams",
        &cookie,
        None,
        Some(new_team.clone()),
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "csrf_failed"));
    let r = with_cookie(
        &app,
        Method::POST,
        "/api/v1/teams",
        &cookie,
        Some("nope"),
        Some(new_team.clone()),
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "csrf_failed"));
    let r = with_cookie(
        &app,
        Method::POST,
        "/api/v1/teams",
        &cookie,
        Some(&csrf),
        Some(new_team),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    // Logout destroys the session server-side: the cookie is dead even if
    // the browser kept it.
    let r = with_cookie(
        &app,
        Method::POST,
        "/api/v1/auth/logout",
        &cookie,
        Some(&csrf),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(
        r.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = with_cookie(&app, Method::GET, "/api/v1/users/me", &cookie, None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
}

async fn idle_timeout_and_absolute_lifetime(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let (cookie, _) = login(&app, &alice).await;
    // Used every 14 minutes, the session lives on…
    for _ in 0..3 {
        app.clock.advance_ms(14 * 60_000);
        let r = with_cookie(&app, Method::GET, "/api/v1/users/me", &cookie, None, None).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // …15 minutes idle end it (the default).
    app.clock.advance_ms(15 * 60_000);
    let r = with_cookie(&app, Method::GET, "/api/v1/users/me", &cookie, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // However busy, a session ends at its absolute lifetime (12 h).
    let (cookie, _) = login(&app, &alice).await;
    let mut alive_until = 0;
    for i in 1..=60 {
        app.clock.advance_ms(14 * 60_000);
        let r = with_cookie(&app, Method::GET, "/api/v1/users/me", &cookie, None, None).await;
        if r.status != StatusCode::OK {
            alive_until = i * 14;
            break;
        }
    }
    assert!(
        (12 * 60..12 * 60 + 14).contains(&alive_until),
        "ended after {alive_until} min"
    );
}

async fn sessions_are_listed_and_revocable(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let (c1, _) = login(&app, &alice).await;
    let (c2, _) = login(&app, &alice).await;
    let r = app.get("/api/v1/users/me/sessions", &alice).await;
    let list = r.body.as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list[0].get("csrf_token").is_none());
    let id = list[0]["id"].as_str().unwrap();
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/users/me/sessions/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let s1 = with_cookie(&app, Method::GET, "/api/v1/users/me", &c1, None, None).await;
    let s2 = with_cookie(&app, Method::GET, "/api/v1/users/me", &c2, None, None).await;
    assert_eq!(
        (s1.status, s2.status),
        (StatusCode::UNAUTHORIZED, StatusCode::OK)
    );
    // Another user cannot revoke alice's session.
    let bob = app.user("bob", SystemRole::User).await;
    let other = list[1]["id"].as_str().unwrap();
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/users/me/sessions/{other}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

async fn lockout_after_repeated_failures(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let wrong = json!({"username": "alice", "password": "Wrong-Password-1"});
    for _ in 0..5 {
        let r = app
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(wrong.clone()),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNAUTHORIZED, "invalid_credentials")
        );
    }
    let right = json!({"username": "alice", "password": PASSWORD});
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(right.clone()),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::LOCKED, "account_locked"));
    app.clock.advance_ms(15 * 60_000 + 1);
    let r = app
        .call(Method::POST, "/api/v1/auth/login", None, Some(right))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Unknown users get the same answer as wrong passwords.
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "nobody", "password": "x"})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    let _ = alice;
}

async fn login_is_rate_limited_per_address(mut app: TestApp) {
    let wrong = json!({"username": "nobody", "password": "x"});
    for _ in 0..20 {
        let r = app
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(wrong.clone()),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(wrong.clone()),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert!(r.headers.contains_key("retry-after"));
    // Another address is not affected; the window passes.
    app.ip = "192.0.2.11:5000".parse().unwrap();
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(wrong.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

async fn access_tokens(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let r = app
        .post("/api/v1/users/me/tokens", &alice, json!({"name": "ci"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let token = r.body["token"].as_str().unwrap().to_owned();
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("enp_"));
    let as_token = TestUser {
        token: token.clone(),
        ..alice.clone()
    };
    assert_eq!(
        app.get("/api/v1/users/me", &as_token).await.status,
        StatusCode::OK
    );
    let list = app.get("/api/v1/users/me/tokens", &alice).await.body;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("token").is_none())
    );
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/users/me/tokens/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/users/me", &as_token).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Forged tokens and a session token with a flipped character fail.
    for forged in ["enp_0000", "garbage", "", &token[..token.len() - 1]] {
        let f = TestUser {
            token: forged.into(),
            ..alice.clone()
        };
        assert_eq!(
            app.get("/api/v1/users/me", &f).await.status,
            StatusCode::UNAUTHORIZED,
            "{forged}"
        );
    }
    assert_eq!(
        app.call(Method::GET, "/api/v1/users/me", None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

async fn admins_create_users_under_the_password_policy(app: TestApp) {
    let admin = app.user("root", SystemRole::Admin).await;
    let alice = app.user("alice", SystemRole::User).await;
    let new = json!({"username": "carol", "password": "Another-Good-Pass-7"});
    let r = app.post("/api/v1/users", &alice, new.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .post(
            "/api/v1/users",
            &admin,
            json!({"username": "carol", "password": "carol"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let msg = r.body["message"].as_str().unwrap();
    assert!(
        msg.contains("at least 12") && msg.contains("username"),
        "{msg}"
    );
    let r = app.post("/api/v1/users", &admin, new.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = app.post("/api/v1/users", &admin, new).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "username_taken")
    );
    let r = app
        .post(
            "/api/v1/users",
            &admin,
            json!({"username": "Bad Name", "password": "Another-Good-Pass-7"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

async fn changing_the_password_ends_every_session(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    let (cookie, csrf) = login(&app, &alice).await;
    let r = with_cookie(
        &app,
        Method::PUT,
        "/api/v1/users/me/password",
        &cookie,
        Some(&csrf),
        Some(json!({"current_password": PASSWORD, "new_password": "Brand-New-Pass-42"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let r = with_cookie(&app, Method::GET, "/api/v1/users/me", &cookie, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "alice", "password": "Brand-New-Pass-42"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

/// The audit log holds every security-relevant action of this surface,
/// each with its actor, client address, outcome and time.
async fn security_actions_are_audited(mut app: TestApp) {
    let audit = common::audit::AuditLog::capture();
    let root = app.user("root", SystemRole::Admin).await;
    let alice = app.user("alice", SystemRole::User).await;
    let wrong = json!({"username": "alice", "password": "Wrong-Password-1"});
    for _ in 0..5 {
        app.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(wrong.clone()),
        )
        .await;
    }
    assert_eq!(audit.find("login", "failure").len(), 5);
    // An unknown name: a failure with no user id.
    app.call(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "nobody", "password": "x"})),
    )
    .await;
    let unknown = audit.find("login", "failure").pop().unwrap();
    assert_eq!(
        (&unknown["actor_id"], &unknown["actor"], &unknown["detail"]),
        (&json!(""), &json!("nobody"), &json!("unknown user"))
    );
    let locked = audit.one("account_locked", "success");
    assert_eq!(locked["actor_id"], alice.id.as_str());
    let right = json!({"username": "alice", "password": PASSWORD});
    app.call(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(right.clone()),
    )
    .await;
    audit.one("login", "locked");
    app.clock.advance_ms(15 * 60_000 + 1);
    let (cookie, csrf) = login(&app, &alice).await;
    let ok = audit.one("login", "success");
    assert_eq!(
        (&ok["actor_id"], &ok["actor"], &ok["ip"]),
        (&json!(alice.id), &json!("alice"), &json!("192.0.2.10"))
    );
    assert!(
        ok["detail"]
            .as_str()
            .unwrap()
            .starts_with("password, session ")
    );
    assert!(
        ok["time"].as_str().is_some_and(|t| t.starts_with("20")),
        "{ok}"
    );

    let r = app
        .post("/api/v1/users/me/tokens", &alice, json!({"name": "ci"}))
        .await;
    let token_id = r.body["id"].as_str().unwrap().to_owned();
    audit.one("token_create", "success");
    app.call(
        Method::DELETE,
        &format!("/api/v1/users/me/tokens/{token_id}"),
        Some(&alice),
        None,
    )
    .await;
    audit.one("token_revoke", "success");
    // A second session, younger than the cookie's, to revoke.
    app.clock.advance_ms(1_000);
    login(&app, &alice).await;
    let sessions = app.get("/api/v1/users/me/sessions", &alice).await.body;
    let other = sessions.as_array().unwrap()[1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.call(
        Method::DELETE,
        &format!("/api/v1/users/me/sessions/{other}"),
        Some(&alice),
        None,
    )
    .await;
    assert!(
        audit.one("session_revoke", "success")["detail"]
            .as_str()
            .unwrap()
            .contains(&other)
    );
    with_cookie(
        &app,
        Method::POST,
        "/api/v1/auth/logout",
        &cookie,
        Some(&csrf),
        None,
    )
    .await;
    audit.one("logout", "success");

    // Role changes and account creation by an admin.
    app.post(
        "/api/v1/users",
        &root,
        json!({"username": "carol", "password": "Another-Good-Pass-7"}),
    )
    .await;
    assert_eq!(
        audit.one("user_create", "success")["actor_id"],
        root.id.as_str()
    );
    let team = app.team("eng", &root, &[]).await;
    app.post(
        &format!("/api/v1/teams/{team}/members"),
        &root,
        json!({"user_id": alice.id, "role": "admin"}),
    )
    .await;
    let set = audit.one("team_member_set", "success");
    assert!(
        set["detail"].as_str().unwrap().contains("as admin"),
        "{set}"
    );

    // Password changes, failed and done.
    let change =
        |current: &str| json!({"current_password": current, "new_password": "Brand-New-Pass-42"});
    app.call(
        Method::PUT,
        "/api/v1/users/me/password",
        Some(&alice),
        Some(change("nope")),
    )
    .await;
    audit.one("password_change", "failure");
    app.call(
        Method::PUT,
        "/api/v1/users/me/password",
        Some(&alice),
        Some(change(PASSWORD)),
    )
    .await;
    audit.one("password_change", "success");

    // The rate limit, from another address.
    app.ip = "192.0.2.99:5000".parse().unwrap();
    for _ in 0..21 {
        app.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(wrong.clone()),
        )
        .await;
    }
    let limited = audit.one("login", "rate_limited");
    assert_eq!(limited["ip"], "192.0.2.99");
    let _ = right;
}

on_both_databases!(
    cookie_login_and_csrf,
    idle_timeout_and_absolute_lifetime,
    sessions_are_listed_and_revocable,
    lockout_after_repeated_failures,
    login_is_rate_limited_per_address,
    access_tokens,
    admins_create_users_under_the_password_policy,
    changing_the_password_ends_every_session,
    security_actions_are_audited,
);
