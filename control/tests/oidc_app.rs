//! Sign-in with OpenID Connect through the app, end to end against a real
//! provider (`tests/idp/provider.mjs`), on SQLite and PostgreSQL: the app's
//! `/auth/oidc/login` redirect, the provider's own login and consent pages
//! (driven over HTTP), the provider's redirect back to our callback, and
//! the session that results, or the precise refusal and no session.

mod common;
#[path = "common/idp.rs"]
mod idp;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Kind, Resp, TestApp};
use control::Config;
use control::config::{OidcSection, Provisioning};
use control::db::users::SystemRole;
use idp::{Browser, Provider, free_port, provider};
use serde_json::{Value, json};
use sqlx::Row as _;

const CALLBACK_PATH: &str = "/api/v1/auth/oidc/callback";
const REDIRECT: &str = "http://127.0.0.1:18099/api/v1/auth/oidc/callback";

fn accounts() -> Value {
    json!({
        "alice": {"email": "alice@example.test", "name": "Alice Example",
                  "preferred_username": "Alice", "groups": ["staff", "ops"]},
        "carol": {"email": "bob@example.test", "name": "Not Bob",
                  "preferred_username": "bob", "groups": ["staff"]},
    })
}

async fn idp(extra: Value) -> Option<Provider> {
    let mut extra = extra;
    if extra.get("accounts").is_none() {
        extra["accounts"] = accounts();
    }
    provider(REDIRECT, extra).await
}

async fn app(kind: Kind, p: &Provider, tweak: impl FnOnce(&mut OidcSection)) -> TestApp {
    let mut config = Config::default();
    config.auth.login_rate_per_minute = 1000;
    config.oidc.issuer = p.issuer.clone();
    config.oidc.client_id = "enclave".into();
    config.oidc.client_secret = "enclave-secret".into();
    config.oidc.redirect_url = REDIRECT.into();
    tweak(&mut config.oidc);
    config.validate().expect("valid test config");
    TestApp::with_config(kind, config).await
}

/// `name=value` of cookie `name` among a response's `Set-Cookie` headers.
fn set_cookie(r: &Resp, name: &str) -> Option<(String, String)> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|full| {
            let value = full.split(';').next().unwrap()[name.len() + 1..].to_owned();
            (value, full)
        })
}

async fn get(app: &TestApp, uri: &str, cookie: Option<&str>) -> Resp {
    let mut b = Request::builder().uri(uri);
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    app.send(b.body(Body::empty()).unwrap()).await
}

/// A started sign-in: the provider's URL and the browser-bound state cookie.
struct Started {
    authorize_url: String,
    state_cookie: String,
}

async fn start(app: &TestApp, return_to: &str) -> Started {
    let r = get(
        app,
        &format!("/api/v1/auth/oidc/login?return_to={return_to}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{:?}", r.body);
    let (state, full) = set_cookie(&r, "enclave_oidc_state").expect("state cookie");
    assert!(
        full.contains("HttpOnly") && full.contains("Path=/api/v1/auth/oidc"),
        "{full}"
    );
    Started {
        authorize_url: r.headers["location"].to_str().unwrap().to_owned(),
        state_cookie: format!("enclave_oidc_state={state}"),
    }
}

/// The provider's redirect back, as the path and query our app serves.
async fn at_provider(s: &Started, user: &str) -> String {
    let back = Browser::new()
        .sign_in(&s.authorize_url, user, REDIRECT)
        .await;
    back.strip_prefix("http://127.0.0.1:18099")
        .unwrap()
        .to_owned()
}

async fn callback(app: &TestApp, path_and_query: &str, cookie: &str) -> Resp {
    assert!(path_and_query.starts_with(CALLBACK_PATH));
    get(app, path_and_query, Some(cookie)).await
}

async fn sign_in(app: &TestApp, user: &str) -> Resp {
    let s = start(app, "/channels/town-square").await;
    let back = at_provider(&s, user).await;
    callback(app, &back, &s.state_cookie).await
}

/// Rows of `table`; for `users`, people's accounts (not the calls' bot).
async fn count(app: &TestApp, table: &str) -> i64 {
    let only_people = if table == "users" {
        format!(" WHERE id <> '{}'", control::db::call_jobs::BOT_USER_ID)
    } else {
        String::new()
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) AS n FROM {table}{only_people}"
    )))
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap()
    .try_get("n")
    .unwrap()
}

/// Refused with `code`: no session, no cookie, no account made.
async fn assert_refused(app: &TestApp, r: &Resp, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.code(), code, "{:?}", r.body);
    assert!(set_cookie(r, "enclave_session").is_none());
    assert_eq!(count(app, "sessions").await, 0);
}

/// The session cookie and CSRF token of a successful sign-in.
fn session_of(r: &Resp) -> (String, String) {
    let (session, full) = set_cookie(r, "enclave_session").expect("session cookie");
    assert!(
        full.contains("HttpOnly") && full.contains("Secure") && full.contains("SameSite=Lax"),
        "{full}"
    );
    let (csrf, full) = set_cookie(r, "enclave_csrf").expect("csrf cookie");
    assert!(!full.contains("HttpOnly"), "scripts read it: {full}");
    (format!("enclave_session={session}"), csrf)
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(crate::common::Kind::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if crate::common::skip_postgres() {
                        eprintln!("ENCLAVE_SKIP_POSTGRES=1: skipped");
                        return;
                    }
                    super::$name(crate::common::Kind::Postgres).await;
                }
            }
        )*
    };
}

on_both!(
    first_sign_in_provisions_and_the_next_finds_the_same_user,
    identity_is_never_matched_by_email_or_username,
    refuse_policy_and_group_rule_and_disabled_accounts,
    wrong_issuer_audience_expiry_and_nonce_are_refused,
    replayed_or_foreign_state_and_replayed_code_are_refused,
    methods_and_bad_input,
    entra_tenant_rules_through_the_sign_in,
);

async fn first_sign_in_provisions_and_the_next_finds_the_same_user(kind: Kind) {
    let port = free_port();
    let Some(p) = idp(json!({"port": port})).await else {
        return;
    };
    let app = app(kind, &p, |_| {}).await;
    let r = sign_in(&app, "alice").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{:?}", r.body);
    assert_eq!(r.headers["location"], "/channels/town-square");
    let (cookie, csrf) = session_of(&r);
    // The state is spent: its cookie is cleared.
    let (_, cleared) = set_cookie(&r, "enclave_oidc_state").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    let me = get(&app, "/api/v1/users/me", Some(&cookie)).await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    assert_eq!(me.body["username"], "alice");
    assert_eq!(me.body["email"], "alice@example.test");
    assert_eq!(me.body["display_name"], "Alice Example");
    assert_eq!(me.body["system_role"], "user");
    let id = me.body["id"].as_str().unwrap().to_owned();

    // The session is a full one: writes need the CSRF token, as after a
    // password login.
    let write = |csrf: Option<String>| {
        let mut b = Request::builder()
            .method("PUT")
            .uri("/api/v1/users/me/status")
            .header("cookie", &cookie)
            .header("content-type", "application/json");
        if let Some(c) = csrf {
            b = b.header("x-csrf-token", c);
        }
        b.body(Body::from(r#"{"status":"dnd"}"#)).unwrap()
    };
    assert_eq!(app.send(write(None)).await.code(), "csrf_failed");
    assert_eq!(
        app.send(write(Some(csrf))).await.status,
        StatusCode::NO_CONTENT
    );

    // The provider changes alice's email and name: she is still the same
    // user (the identity is issuer + sub), and her profile follows.
    p.stop().await;
    let mut changed = accounts();
    changed["alice"]["email"] = json!("alice.new@example.test");
    changed["alice"]["name"] = json!("Alice Renamed");
    let Some(p2) = idp(json!({"port": port, "accounts": changed})).await else {
        return;
    };
    let r = sign_in(&app, "alice").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{:?}", r.body);
    let (cookie2, _) = session_of(&r);
    let me = get(&app, "/api/v1/users/me", Some(&cookie2)).await;
    assert_eq!(me.body["id"], id.as_str());
    assert_eq!(me.body["username"], "alice");
    assert_eq!(me.body["email"], "alice.new@example.test");
    assert_eq!(me.body["display_name"], "Alice Renamed");
    assert_eq!(count(&app, "users").await, 1);
    assert_eq!(count(&app, "identities").await, 1);
    assert_eq!(count(&app, "sessions").await, 2);
    p2.stop().await;
}

async fn identity_is_never_matched_by_email_or_username(kind: Kind) {
    let Some(p) = idp(json!({})).await else {
        return;
    };
    let app = app(kind, &p, |_| {}).await;
    // A local "bob" with the email the provider gives carol.
    let bob = app.user("bob", SystemRole::Admin).await;
    sqlx::query("UPDATE users SET email = 'bob@example.test' WHERE id = $1")
        .bind(&bob.id)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let r = sign_in(&app, "carol").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{:?}", r.body);
    let (cookie, _) = session_of(&r);
    let me = get(&app, "/api/v1/users/me", Some(&cookie)).await;
    assert_ne!(me.body["id"], bob.id.as_str());
    assert_eq!(me.body["username"], "bob-1");
    assert_eq!(me.body["system_role"], "user");
}

async fn refuse_policy_and_group_rule_and_disabled_accounts(kind: Kind) {
    let Some(p) = idp(json!({})).await else {
        return;
    };
    // Unknown identities are not given accounts.
    let refusing = app(kind, &p, |o| o.provisioning = Provisioning::Refuse).await;
    let r = sign_in(&refusing, "alice").await;
    assert_refused(&refusing, &r, StatusCode::FORBIDDEN, "oidc_unknown_user").await;
    assert_eq!(count(&refusing, "users").await, 0);

    // A required group alice is not in.
    let grouped = app(kind, &p, |o| o.required_groups = vec!["admins".into()]).await;
    let r = sign_in(&grouped, "alice").await;
    assert_refused(&grouped, &r, StatusCode::FORBIDDEN, "oidc_missing_group").await;
    assert_eq!(count(&grouped, "users").await, 0);
    // One of hers is enough.
    let ok = app(kind, &p, |o| {
        o.required_groups = vec!["admins".into(), "ops".into()]
    })
    .await;
    assert_eq!(sign_in(&ok, "alice").await.status, StatusCode::SEE_OTHER);

    // A disabled account: refused, even with a valid sign-in.
    let user_id: String = sqlx::query("SELECT id FROM users WHERE id <> $1")
        .bind(control::db::call_jobs::BOT_USER_ID)
        .fetch_one(&ok.state.db.pool)
        .await
        .unwrap()
        .try_get("id")
        .unwrap();
    let ended = control::db::users::set_disabled(&ok.state.db, &user_id, true, common::T0)
        .await
        .unwrap();
    assert_eq!(ended.sessions_ended, 1, "her sign-in's session ends");
    // Ended sessions stay as rows; assert_refused counts rows.
    sqlx::query("DELETE FROM sessions")
        .execute(&ok.state.db.pool)
        .await
        .unwrap();
    let r = sign_in(&ok, "alice").await;
    assert_refused(&ok, &r, StatusCode::FORBIDDEN, "account_disabled").await;
    assert_eq!(count(&ok, "users").await, 1);
}

async fn wrong_issuer_audience_expiry_and_nonce_are_refused(kind: Kind) {
    let cases = [
        (
            json!({"id_token_overrides": {"iss": "http://127.0.0.1:9/evil"}}),
            "oidc_wrong_issuer",
        ),
        (
            json!({"id_token_overrides": {"aud": "some-other-app"}}),
            "oidc_wrong_audience",
        ),
        (json!({"id_token_expired": true}), "oidc_token_expired"),
        (
            json!({"id_token_overrides": {"nonce": "not-the-login-nonce"}}),
            "oidc_nonce_mismatch",
        ),
    ];
    for (extra, code) in cases {
        let Some(p) = idp(extra).await else {
            return;
        };
        let app = app(kind, &p, |_| {}).await;
        let r = sign_in(&app, "alice").await;
        assert_refused(&app, &r, StatusCode::UNAUTHORIZED, code).await;
        assert_eq!(count(&app, "users").await, 0, "{code}");
        assert_eq!(count(&app, "identities").await, 0, "{code}");
        p.stop().await;
    }
}

async fn replayed_or_foreign_state_and_replayed_code_are_refused(kind: Kind) {
    let Some(p) = idp(json!({})).await else {
        return;
    };
    let app = app(kind, &p, |_| {}).await;
    let s = start(&app, "/").await;
    let back = at_provider(&s, "alice").await;

    // Without the cookie that bound the state to this browser (a link sent
    // to someone else), or with another sign-in's: refused, and the real
    // sign-in is not used up.
    let r = get(&app, &back, None).await;
    assert_refused(&app, &r, StatusCode::BAD_REQUEST, "oidc_state_mismatch").await;
    let other = start(&app, "/").await;
    let r = callback(&app, &back, &other.state_cookie).await;
    assert_refused(&app, &r, StatusCode::BAD_REQUEST, "oidc_state_mismatch").await;

    let r = callback(&app, &back, &s.state_cookie).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{:?}", r.body);
    sqlx::query("DELETE FROM sessions")
        .execute(&app.state.db.pool)
        .await
        .unwrap();

    // The same callback again: the state is spent.
    let r = callback(&app, &back, &s.state_cookie).await;
    assert_refused(&app, &r, StatusCode::BAD_REQUEST, "oidc_state_invalid").await;

    // The spent code under a fresh, valid state: the provider refuses it.
    let fresh = start(&app, "/").await;
    let fresh_state = fresh.state_cookie.split_once('=').unwrap().1.to_owned();
    let url = openidconnect::url::Url::parse(&format!("http://x{back}")).unwrap();
    let code = url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let replay = format!(
        "{CALLBACK_PATH}?code={code}&state={fresh_state}&iss={}",
        openidconnect::url::form_urlencoded::byte_serialize(p.issuer.as_bytes())
            .collect::<String>()
    );
    let r = callback(&app, &replay, &fresh.state_cookie).await;
    assert_refused(&app, &r, StatusCode::UNAUTHORIZED, "oidc_code_rejected").await;
    assert_eq!(count(&app, "users").await, 1);
}

async fn methods_and_bad_input(kind: Kind) {
    // Without [oidc]: password only, and the routes say so.
    let plain = TestApp::new(kind).await;
    let r = get(&plain, "/api/v1/auth/methods", None).await;
    assert_eq!(r.body, json!({"password": true}));
    let r = get(&plain, "/api/v1/auth/oidc/login", None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "oidc_disabled")
    );

    let Some(p) = idp(json!({})).await else {
        return;
    };
    let app = app(kind, &p, |o| o.button_text = "Sign in with Contoso".into()).await;
    let r = get(&app, "/api/v1/auth/methods", None).await;
    assert_eq!(
        r.body,
        json!({"password": true, "oidc": {"login_url": "/api/v1/auth/oidc/login", "button_text": "Sign in with Contoso"}})
    );
    // Somewhere else to go afterwards: refused before the provider is asked.
    for bad in ["https://evil.example/", "//evil.example", "relative"] {
        let r = get(
            &app,
            &format!("/api/v1/auth/oidc/login?return_to={bad}"),
            None,
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{bad}"
        );
        assert!(set_cookie(&r, "enclave_oidc_state").is_none());
    }
    assert_eq!(count(&app, "oidc_logins").await, 0);
    // The authorization request carries PKCE (S256), a state and a nonce.
    let s = start(&app, "/").await;
    let url = openidconnect::url::Url::parse(&s.authorize_url).unwrap();
    let q: std::collections::BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q.contains_key("nonce") && q.contains_key("code_challenge"));
    assert_eq!(format!("enclave_oidc_state={}", q["state"]), s.state_cookie);
    assert_eq!(count(&app, "oidc_logins").await, 1);
}

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OTHER_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
const ADA_OID: &str = "00000000-0000-0000-66f3-3332eca7ea81";

/// Entra ID's shape: `tid` and `oid` in every token; Entra's `sub` differs
/// per app registration, so "ada-other-app" is Ada as another app sees her.
fn entra_accounts() -> Value {
    let ada = |tid: &str| {
        json!({"tid": tid, "oid": ADA_OID, "email": "ada@contoso.example",
               "name": "Ada Lovelace", "preferred_username": "ada",
               "groups": ["a1b2c3d4-0000-0000-0000-000000000001"]})
    };
    json!({
        "ada": ada(TENANT),
        "ada-other-app": ada(TENANT),
        // The same oid in another tenant is someone else.
        "ada-elsewhere": ada(OTHER_TENANT),
        // Her token's issuer names another tenant than her `tid`.
        "eve": {"tid": TENANT, "oid": "00000000-0000-0000-0000-00000000e7e0",
                "preferred_username": "eve"},
        // Too many groups: Entra lists none and points elsewhere instead
        // (the provider passes `_claim_names` on for a claim it serves,
        // hence `groups` on Ada).
        "olga": {"tid": TENANT, "oid": "00000000-0000-0000-0000-0000000001ca",
                 "preferred_username": "olga",
                 "_claim_names": {"groups": "src1"},
                 "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects"}}},
    })
}

/// The provider as Entra's multi-tenant endpoint, and an app configured
/// for it as an Entra deployment is: the `{tenantid}` issuer template and
/// the `common` metadata.
async fn entra_idp(port: u16, accounts: Value) -> Option<Provider> {
    idp(json!({"port": port, "accounts": accounts,
               "entra": {"issuer_tenant": {"eve": OTHER_TENANT}}}))
    .await
}

async fn entra_app(kind: Kind, p: &Provider, allowed_tenants: &[&str]) -> TestApp {
    app(kind, p, |o| {
        o.issuer = format!("{}/{{tenantid}}/v2.0", p.issuer);
        o.discovery_url = format!("{}/common/v2.0/.well-known/openid-configuration", p.issuer);
        o.allowed_tenants = allowed_tenants.iter().map(|t| (*t).to_owned()).collect();
    })
    .await
}

async fn me(app: &TestApp, r: &Resp) -> Value {
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{:?}", r.body);
    let (cookie, _) = session_of(r);
    let me = get(app, "/api/v1/users/me", Some(&cookie)).await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    me.body
}

async fn entra_tenant_rules_through_the_sign_in(kind: Kind) {
    let port = free_port();
    let Some(p) = entra_idp(port, entra_accounts()).await else {
        return;
    };
    let app = entra_app(kind, &p, &[]).await;

    // A token whose issuer is not the tenant-bound one for its `tid`.
    let r = sign_in(&app, "eve").await;
    assert_refused(&app, &r, StatusCode::UNAUTHORIZED, "oidc_wrong_issuer").await;
    // A groups overage fails closed, with its own code.
    let r = sign_in(&app, "olga").await;
    assert_refused(&app, &r, StatusCode::FORBIDDEN, "oidc_groups_overage").await;
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("groups overage"),
        "{:?}",
        r.body
    );
    assert_eq!(count(&app, "users").await, 0);

    // The identity is (tenant, oid): another app registration's `sub` for
    // Ada is still Ada; the same oid in another tenant is a new account.
    let ada = me(&app, &sign_in(&app, "ada").await).await;
    assert_eq!(ada["username"], "ada");
    let again = me(&app, &sign_in(&app, "ada-other-app").await).await;
    assert_eq!(again["id"], ada["id"]);
    let elsewhere = me(&app, &sign_in(&app, "ada-elsewhere").await).await;
    assert_ne!(elsewhere["id"], ada["id"]);
    assert_eq!(elsewhere["username"], "ada-1");
    let keys: Vec<(String, Option<String>)> =
        sqlx::query("SELECT account_key, tenant FROM identities ORDER BY account_key")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.try_get("account_key").unwrap(),
                    r.try_get("tenant").unwrap(),
                )
            })
            .collect();
    assert_eq!(
        keys,
        vec![
            (format!("tid:{TENANT}:{ADA_OID}"), Some(TENANT.to_owned())),
            (
                format!("tid:{OTHER_TENANT}:{ADA_OID}"),
                Some(OTHER_TENANT.to_owned())
            ),
        ]
    );

    // Ada's email changes at the provider: same account, email follows.
    p.stop().await;
    let mut changed = entra_accounts();
    changed["ada"]["email"] = json!("ada.lovelace@contoso.example");
    let Some(p2) = entra_idp(port, changed).await else {
        return;
    };
    let renamed = me(&app, &sign_in(&app, "ada").await).await;
    assert_eq!(renamed["id"], ada["id"]);
    assert_eq!(renamed["email"], "ada.lovelace@contoso.example");
    assert_eq!(count(&app, "users").await, 2);
    assert_eq!(count(&app, "identities").await, 2);

    // allowed_tenants: a valid token from a tenant not on the list.
    let only_other = entra_app(kind, &p2, &[OTHER_TENANT]).await;
    let r = sign_in(&only_other, "ada").await;
    assert_refused(
        &only_other,
        &r,
        StatusCode::FORBIDDEN,
        "oidc_tenant_not_allowed",
    )
    .await;
    let r = sign_in(&only_other, "ada-elsewhere").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{:?}", r.body);
    p2.stop().await;
}
