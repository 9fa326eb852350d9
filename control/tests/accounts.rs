//! Switching accounts off and on: a system admin through the API, an
//! operator through the binary's `disable-user` / `enable-user`. Disabling
//! ends every session and token, closes the account's sockets, refuses
//! every login with a precise error (and a wrong password with the usual
//! one, so the switch reveals nothing), and is audited. On SQLite and
//! PostgreSQL.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::audit::AuditLog;
use common::socket::{self, Ws};
use common::{Kind, PASSWORD, Server, TestApp, TestDb, TestUser};
use control::Config;
use control::db::users::SystemRole;
use serde_json::{Value, json};

/// The next event other than presence; panics after `secs`.
async fn next(ws: &mut Ws, secs: u64) -> Value {
    loop {
        let v = socket::read(ws, Duration::from_secs(secs)).await;
        if v["type"] != "presence" {
            return v;
        }
    }
}

async fn login(app: &TestApp, username: &str, password: &str) -> common::Resp {
    app.call(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"username": username, "password": password})),
    )
    .await
}

/// A cookie session: (cookie pair, csrf token).
async fn cookie_session(app: &TestApp, who: &TestUser) -> (String, String) {
    let r = login(app, &who.username, PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let set = r.headers["set-cookie"].to_str().unwrap();
    (
        set.split(';').next().unwrap().to_owned(),
        r.body["csrf_token"].as_str().unwrap().to_owned(),
    )
}

async fn me_with_cookie(app: &TestApp, cookie: &str) -> StatusCode {
    let req = Request::get("/api/v1/users/me")
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap();
    app.send(req).await.status
}

async fn admins_disable_and_enable_accounts(app: TestApp) {
    let audit = AuditLog::capture();
    let root = app.user("root", SystemRole::Admin).await;
    let alice = app.user("alice", SystemRole::User).await;
    let bob = app.user("bob", SystemRole::User).await;
    let team = app.team("eng", &root, &[&alice, &bob]).await;
    let ch = app.channel(&team, "general", "open", &root).await;
    app.post(&format!("/api/v1/channels/{ch}/join"), &alice, json!({}))
        .await;
    let (cookie, _) = cookie_session(&app, &alice).await;
    let server = Server::start(app.state.clone()).await;
    let mut ws = socket::connect(server.addr, &alice).await;

    // Only system admins, and the answer does not depend on the id: a
    // user guessing ids learns nothing.
    let unknown = control::db::new_id();
    for id in [&alice.id, &unknown] {
        let r = app
            .post(&format!("/api/v1/users/{id}/disable"), &bob, json!({}))
            .await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"));
    }
    assert_eq!(audit.find("user_disable", "denied").len(), 2);
    let r = app
        .post(
            &format!("/api/v1/users/{unknown}/disable"),
            &root,
            json!({}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = app
        .post(
            &format!("/api/v1/users/{}/disable", root.id),
            &root,
            json!({}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "cannot_disable_self")
    );
    // Bots have their own switch.
    let bot = app
        .post("/api/v1/bots", &root, json!({"username": "deploybot"}))
        .await;
    let bot_id = bot.body["user_id"].as_str().unwrap();
    let r = app
        .post(&format!("/api/v1/users/{bot_id}/disable"), &root, json!({}))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "is_bot"));

    // Nothing has changed for alice so far.
    assert_eq!(me_with_cookie(&app, &cookie).await, StatusCode::OK);
    assert_eq!(
        app.get("/api/v1/users/me", &alice).await.status,
        StatusCode::OK
    );

    app.clock.advance_ms(1_000);
    let r = app
        .post(
            &format!("/api/v1/users/{}/disable", alice.id),
            &root,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["id"], alice.id.as_str());
    assert_eq!(r.body["disabled_at"], common::T0 + 1_000);
    let rec = audit.one("user_disable", "success");
    assert_eq!(rec["actor_id"], root.id.as_str());
    assert_eq!(rec["ip"], "192.0.2.10");
    let detail = rec["detail"].as_str().unwrap();
    assert!(
        detail.contains(&alice.id) && detail.contains("1 session(s) ended, 1 token(s) revoked"),
        "{detail}"
    );
    assert!(rec["time"].is_string(), "{rec}");

    // Her socket is closed, her session and token are dead.
    assert_eq!(
        next(&mut ws, 5).await,
        json!({"type": "closing", "reason": "session_ended"})
    );
    assert_eq!(
        me_with_cookie(&app, &cookie).await,
        StatusCode::UNAUTHORIZED
    );
    let r = app.get("/api/v1/users/me", &alice).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    let r = app
        .post(
            &format!("/api/v1/channels/{ch}/posts"),
            &alice,
            json!({"message": "still here?"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Her right password gets the precise refusal; a wrong one gets what
    // any wrong password gets.
    let r = login(&app, "alice", PASSWORD).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "account_disabled")
    );
    assert!(r.headers.get("set-cookie").is_none());
    let r = login(&app, "alice", "Wrong-Password-123").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    assert_eq!(audit.find("login", "disabled").len(), 1);
    // Disabled is shown to whoever looks her up; disabling twice keeps
    // the first time.
    let r = app.get(&format!("/api/v1/users/{}", alice.id), &bob).await;
    assert_eq!(r.body["disabled_at"], common::T0 + 1_000);
    app.clock.advance_ms(1_000);
    let r = app
        .post(
            &format!("/api/v1/users/{}/disable", alice.id),
            &root,
            json!({}),
        )
        .await;
    assert_eq!(r.body["disabled_at"], common::T0 + 1_000);

    // Enabled again: she logs in anew; what was ended stays ended.
    let r = app
        .post(&format!("/api/v1/users/{}/enable", bob.id), &bob, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .post(
            &format!("/api/v1/users/{}/enable", alice.id),
            &root,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.body.get("disabled_at").is_none(), "{:?}", r.body);
    audit.one("user_enable", "success");
    assert_eq!(
        me_with_cookie(&app, &cookie).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/v1/users/me", &alice).await.status,
        StatusCode::UNAUTHORIZED
    );
    let (cookie, _) = cookie_session(&app, &alice).await;
    assert_eq!(me_with_cookie(&app, &cookie).await, StatusCode::OK);
    server.stop().await;
}

/// A session or token that outlives the switch (a login racing it) is
/// still refused: every request checks the account.
async fn a_credential_that_outlived_the_switch_is_refused(app: TestApp) {
    let alice = app.user("alice", SystemRole::User).await;
    sqlx::query("UPDATE users SET disabled_at = $2 WHERE id = $1")
        .bind(&alice.id)
        .bind(common::T0)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let r = app.get("/api/v1/users/me", &alice).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
}

on_both_databases!(
    admins_disable_and_enable_accounts,
    a_credential_that_outlived_the_switch_is_refused,
);

/// Runs the binary's admin command against `url`; (exit code, stdout, stderr).
fn cli(url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_control"))
        .args(args)
        .env("ENCLAVE_DATABASE__URL", url)
        .env("ENCLAVE_SERVER__DATA_DIR", dir.path())
        .env("ENCLAVE_LOG__FILTER", "warn")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The operator's commands: the sockets of the account close at their
/// next keep-alive check, since the command runs in another process.
async fn the_cli_disables_and_enables(kind: Kind) {
    let mut config = Config::default();
    config.events.ping_interval_secs = 1;
    let app = TestApp::on(TestDb::new(kind).await, config, false).await;
    let alice = app.user("alice", SystemRole::User).await;
    let (cookie, _) = cookie_session(&app, &alice).await;
    let server = Server::start(app.state.clone()).await;
    let mut ws = socket::connect(server.addr, &alice).await;
    let url = app.tdb.url.clone();

    let (code, _, err) = cli(&url, &["disable-user", "--username", "nobody"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no user \"nobody\""), "{err}");
    let (code, out, err) = cli(&url, &["disable-user", "--username", "alice"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("alice disabled; 1 session(s) ended, 1 token(s) revoked"),
        "{err}"
    );
    let audit: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["fields"]["action"] == "user_disable")
        .unwrap_or_else(|| panic!("no audit line in {out}"));
    assert_eq!(audit["fields"]["actor"], "cli");
    assert_eq!(audit["fields"]["outcome"], "success");

    assert_eq!(
        next(&mut ws, 5).await,
        json!({"type": "closing", "reason": "session_ended"})
    );
    assert_eq!(
        me_with_cookie(&app, &cookie).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/v1/users/me", &alice).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, "alice", PASSWORD).await.code(),
        "account_disabled"
    );

    let (code, _, err) = cli(&url, &["enable-user", "--username", "alice"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("alice enabled"), "{err}");
    assert_eq!(login(&app, "alice", PASSWORD).await.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_disables_and_enables_on_sqlite() {
    the_cli_disables_and_enables(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_disables_and_enables_on_postgres() {
    if common::skip_postgres() {
        return;
    }
    the_cli_disables_and_enables(Kind::Postgres).await;
}
