//! Sign-in from the Teams tab: `POST /api/v1/m365/session` with tokens
//! signed here (tests::entra) and keys served on 127.0.0.1. Valid v1 and
//! v2 tokens open a session with cookies a third-party frame is sent;
//! each forgery or mistake is refused with its own reason, in the answer
//! and in the audit log; keys rotate; accounts bind on (tid, oid) as the
//! OpenID Connect sign-in binds them. Each test runs on SQLite and on
//! PostgreSQL.

mod common;

use std::sync::LazyLock;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::audit::AuditLog;
use common::{Kind, Resp, T0, TestApp};
use control::Config;
use control::config::Provisioning;
use control::db::users::SystemRole;
use serde_json::{Value, json};
use tests::entra::{self, App, JwksServer, Person, SigningKey};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// Allowed too: the same oid here is another person.
const TENANT_B: &str = "3c2e1a7b-5d4f-4e6a-9b8c-0d1e2f3a4b5c";
/// Not allowed.
const FOREIGN_TENANT: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const CLIENT: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
const PUBLIC_HOST: &str = "enclave.example.org";
const LOGIN: &str = "https://login.microsoftonline.com";
const OID: &str = "00000000-0000-0000-66f3-3332eca7ea81";
const SESSION: &str = "/api/v1/m365/session";
/// Entra's multi-tenant keys name their issuer this way.
const KEY_ISSUER: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";

const APP: App<'static> = App {
    client_id: CLIENT,
    public_host: PUBLIC_HOST,
    login_url: LOGIN,
};
const ADA: Person<'static> = Person {
    tenant: TENANT,
    oid: OID,
    upn: "ada@contoso.example",
    name: "Ada Lovelace",
};

// Key generation is the slow part: once per test binary.
static RSA: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::rsa("rsa-1").unwrap());
static EC: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::p256("ec-1").unwrap());
/// Published later (rotation), or never (unknown key).
static RSA_NEXT: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::rsa("rsa-2").unwrap());
/// Published as one other tenant's key only.
static PINNED: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::rsa("pinned").unwrap());

fn now() -> i64 {
    T0 / 1000
}

fn v1() -> Value {
    entra::v1_claims(&APP, &ADA, now())
}

fn v2() -> Value {
    entra::v2_claims(&APP, &ADA, now())
}

struct Fx {
    app: TestApp,
    jwks: JwksServer,
}

fn config(jwks: &JwksServer, tweak: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    c.m365.enabled = true;
    c.m365.public_url = format!("https://{PUBLIC_HOST}");
    c.m365.client_id = CLIENT.into();
    c.m365.allowed_tenants = vec![TENANT.into(), TENANT_B.into()];
    c.m365.jwks_url = jwks.url();
    c.m365.jwks_refresh_secs = 3600;
    c.m365.clock_skew_secs = 60;
    // The refusal table signs in many times from one address.
    c.auth.login_rate_per_minute = 1000;
    tweak(&mut c);
    // What an operator could write: the whole configuration passes.
    c.validate().unwrap();
    c
}

fn published() -> Vec<Value> {
    vec![
        RSA.jwk_for_issuer(KEY_ISSUER),
        EC.jwk(),
        PINNED.jwk_for_issuer(&format!("{LOGIN}/{TENANT_B}/v2.0")),
    ]
}

impl Fx {
    async fn new(kind: Kind) -> Fx {
        Fx::with(kind, |_| {}).await
    }

    async fn with(kind: Kind, tweak: impl FnOnce(&mut Config)) -> Fx {
        let jwks = JwksServer::start(published()).unwrap();
        let app = TestApp::with_config(kind, config(&jwks, tweak)).await;
        Fx { app, jwks }
    }

    async fn bearer(&self, token: &str) -> Resp {
        self.request(SESSION, Some(token), None).await
    }

    async fn request(&self, uri: &str, bearer: Option<&str>, body: Option<Value>) -> Resp {
        let mut b = Request::builder().method(Method::POST).uri(uri);
        if let Some(t) = bearer {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(v) => b
                .header("content-type", "application/json")
                .body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        }
        .unwrap();
        self.app.send(req).await
    }

    /// Signs in with `token`; returns the user's id and the cookie header
    /// the browser would send back.
    async fn sign_in(&self, token: &str) -> (String, String) {
        let r = self.bearer(token).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let cookies: Vec<&str> = r
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        let pairs: Vec<&str> = cookies
            .iter()
            .map(|c| c.split(';').next().unwrap())
            .collect();
        (
            r.body["user"]["id"].as_str().unwrap().to_owned(),
            pairs.join("; "),
        )
    }

    async fn me(&self, cookie: &str) -> Resp {
        let req = Request::builder()
            .uri("/api/v1/users/me")
            .header("cookie", cookie)
            .body(Body::empty())
            .unwrap();
        self.app.send(req).await
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(super::common::Kind::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if super::common::skip_postgres() {
                        eprintln!("ENCLAVE_SKIP_POSTGRES=1: skipped");
                        return;
                    }
                    super::$name(super::common::Kind::Postgres).await;
                }
            }
        )*
    };
}

on_both!(
    valid_v1_and_v2_tokens_open_an_embedded_session,
    each_bad_token_is_refused_with_its_reason,
    a_token_in_the_url_is_refused_unread,
    the_token_comes_once_and_the_host_is_known,
    keys_are_fetched_once_and_rotate,
    keys_that_cannot_be_read_make_sign_in_unavailable,
    first_sign_in_provisions_or_is_refused,
    accounts_bind_on_tenant_and_object_id,
    sign_in_is_rate_limited_per_address,
);

async fn valid_v1_and_v2_tokens_open_an_embedded_session(kind: Kind) {
    let fx = Fx::new(kind).await;
    let audit = AuditLog::capture();

    // v1 in the header.
    let r = fx.bearer(&RSA.mint(&v1())).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let user_id = r.body["user"]["id"].as_str().unwrap().to_owned();
    let csrf = r.body["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(r.body["user"]["username"], "ada");
    assert_eq!(r.body["user"]["display_name"], "Ada Lovelace");
    assert!(r.body["session_id"].is_string() && r.body["csrf_token"].is_string());
    assert!(r.body["expires_at"].is_i64());
    let cookies: Vec<String> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for c in &cookies {
        let attrs: Vec<&str> = c.split("; ").collect();
        for flag in ["SameSite=None", "Secure", "Partitioned", "Path=/"] {
            assert!(attrs.contains(&flag), "{flag} missing from {c}");
        }
        assert!(!c.contains("SameSite=Lax"), "{c}");
    }
    assert!(cookies[0].starts_with("enclave_session=") && cookies[0].contains("HttpOnly"));
    assert!(cookies[1].starts_with(&format!(
        "enclave_csrf={}",
        r.body["csrf_token"].as_str().unwrap()
    )));
    let cookie = cookies
        .iter()
        .map(|c| c.split(';').next().unwrap())
        .collect::<Vec<_>>()
        .join("; ");
    let me = fx.me(&cookie).await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    assert_eq!(me.body["id"], user_id.as_str());

    let row = control::db::m365_users::get(&fx.app.state.db, &user_id)
        .await
        .unwrap()
        .expect("an m365_users row");
    assert_eq!(
        (
            row.tenant.as_str(),
            row.object_id.as_str(),
            row.host.as_str()
        ),
        (TENANT, OID, "Teams")
    );
    assert_eq!((row.first_seen_at, row.last_seen_at), (T0, T0));

    // v2 in the body, from Outlook, a minute later: the same person.
    fx.app.clock.advance_ms(60_000);
    let token = RSA.mint(&entra::v2_claims(&APP, &ADA, now() + 60));
    let r = fx
        .request(
            SESSION,
            None,
            Some(json!({"token": token, "host": "Outlook"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["user"]["id"], user_id.as_str());
    let row = control::db::m365_users::get(&fx.app.state.db, &user_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.host.as_str(), row.first_seen_at, row.last_seen_at),
        ("Outlook", T0, T0 + 60_000)
    );

    // An elliptic-curve key signs too.
    let (id, _) = fx.sign_in(&EC.mint(&v2())).await;
    assert_eq!(id, user_id);

    let ok = audit.find("login", "success");
    assert_eq!(ok.len(), 3, "{ok:#?}");
    let detail = ok[0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("m365 tid:{TENANT}:{OID} (Teams, v1)")),
        "{detail}"
    );
    assert!(audit.find("login", "refused").is_empty());

    // Logging out inside the tab ends the session and clears the
    // partitioned cookies (only cookies with the same attributes do).
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/auth/logout")
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .body(Body::empty())
        .unwrap();
    let r = fx.app.send(req).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let cleared: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .filter(|c| c.contains("Partitioned") && c.contains("Max-Age=0"))
        .collect();
    assert_eq!(cleared.len(), 2, "{:?}", r.headers);
    assert!(cleared[0].starts_with("enclave_session=;"));
    assert_eq!(fx.me(&cookie).await.status, StatusCode::UNAUTHORIZED);
}

/// Claims of `base` with `changes` applied (`null` removes a claim).
fn with(base: Value, changes: Value) -> Value {
    let mut c = base;
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

async fn each_bad_token_is_refused_with_its_reason(kind: Kind) {
    let fx = Fx::new(kind).await;
    let audit = AuditLog::capture();
    let t = now();
    let foreign = Person {
        tenant: FOREIGN_TENANT,
        ..ADA
    };
    let v1_issuer = format!("https://sts.windows.net/{TENANT}/");
    let v2_issuer = format!("{LOGIN}/{TENANT}/v2.0");
    let app_id_uri = APP.app_id_uri();
    let header = |alg: &str, kid: &str| json!({"typ": "JWT", "alg": alg, "kid": kid});
    let tampered = {
        let good = RSA.mint(&v1());
        let other = RSA.mint(&with(
            v1(),
            json!({"oid": "11111111-0000-0000-0000-000000000000"}),
        ));
        let parts: Vec<&str> = good.split('.').collect();
        let other: Vec<&str> = other.split('.').collect();
        format!("{}.{}.{}", parts[0], other[1], parts[2])
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a tenant not in the list",
            RSA.mint(&entra::v1_claims(&APP, &foreign, t)),
            "tenant_not_allowed",
        ),
        (
            "a v1 token naming another tenant's issuer",
            RSA.mint(&with(
                v1(),
                json!({"iss": format!("https://sts.windows.net/{TENANT_B}/")}),
            )),
            "wrong_issuer",
        ),
        (
            "a v2 issuer on a v1 token (App ID URI audience)",
            RSA.mint(&with(v1(), json!({"iss": v2_issuer}))),
            "wrong_issuer",
        ),
        (
            "a v1 issuer on a v2 token",
            RSA.mint(&with(v2(), json!({"iss": v1_issuer}))),
            "wrong_issuer",
        ),
        (
            "a v2 issuer of another cloud",
            RSA.mint(&with(
                v2(),
                json!({"iss": format!("https://login.microsoftonline.us/{TENANT}/v2.0")}),
            )),
            "wrong_issuer",
        ),
        (
            "a token for Microsoft Graph",
            RSA.mint(&with(v1(), json!({"aud": "https://graph.microsoft.com"}))),
            "wrong_audience",
        ),
        (
            "a v1 token with the client id as audience",
            RSA.mint(&with(v1(), json!({"aud": CLIENT}))),
            "wrong_audience",
        ),
        (
            "a v2 token with the App ID URI as audience",
            RSA.mint(&with(v2(), json!({"aud": app_id_uri}))),
            "wrong_audience",
        ),
        (
            "another app's App ID URI",
            RSA.mint(&with(
                v1(),
                json!({"aud": format!("api://evil.example/{CLIENT}")}),
            )),
            "wrong_audience",
        ),
        (
            "expired past the skew",
            RSA.mint(&with(
                v1(),
                json!({"iat": t - 7200, "nbf": t - 7200, "exp": t - 61}),
            )),
            "expired",
        ),
        (
            "no exp",
            RSA.mint(&with(v1(), json!({"exp": null}))),
            "missing_claim",
        ),
        (
            "not valid before next hour",
            RSA.mint(&with(v1(), json!({"nbf": t + 3600, "exp": t + 7200}))),
            "not_yet_valid",
        ),
        (
            "issued in the future",
            RSA.mint(&with(v2(), json!({"iat": t + 120}))),
            "not_yet_valid",
        ),
        (
            "alg none",
            entra::unsigned(&v1(), Some("rsa-1")),
            "alg_none",
        ),
        (
            "HS256 keyed with the public key",
            entra::hs256(&RSA.public_key_bytes(), &v1(), Some("rsa-1")),
            "alg_symmetric",
        ),
        (
            "HS256 keyed with the JWK text",
            entra::hs256(RSA.jwk().to_string().as_bytes(), &v1(), Some("rsa-1")),
            "alg_symmetric",
        ),
        (
            "a key the tenant never published",
            RSA_NEXT.mint(&v1()),
            "unknown_key",
        ),
        (
            "an EC signature under the RSA key's kid",
            EC.mint_with_header(&header("ES256", "rsa-1"), &v1())
                .unwrap(),
            "key_mismatch",
        ),
        (
            "the payload swapped under a valid signature",
            tampered,
            "bad_signature",
        ),
        (
            "signed by another key under this kid",
            RSA_NEXT
                .mint_with_header(&header("RS256", "rsa-1"), &v1())
                .unwrap(),
            "bad_signature",
        ),
        (
            "PS256 is allowed, but this one is signed by another key",
            RSA_NEXT
                .mint_with_header(&header("PS256", "rsa-1"), &v2())
                .unwrap(),
            "bad_signature",
        ),
        (
            "a key pinned to another tenant",
            PINNED.mint(&v2()),
            "key_issuer_mismatch",
        ),
        (
            "no access_as_user scope",
            RSA.mint(&with(v1(), json!({"scp": "User.Read openid"}))),
            "missing_scope",
        ),
        (
            "a scope that only contains the name",
            RSA.mint(&with(v1(), json!({"scp": "access_as_user_admin"}))),
            "missing_scope",
        ),
        (
            "no scope at all (an app-only token)",
            RSA.mint(&with(v2(), json!({"scp": null, "roles": ["All"]}))),
            "missing_scope",
        ),
        (
            "no oid",
            RSA.mint(&with(v1(), json!({"oid": null}))),
            "missing_oid",
        ),
        (
            "an oid that is no GUID",
            RSA.mint(&with(v2(), json!({"oid": "ada@contoso.example"}))),
            "missing_oid",
        ),
        (
            "a tid that is no GUID",
            RSA.mint(&with(
                v1(),
                json!({"tid": "common", "iss": "https://sts.windows.net/common/"}),
            )),
            "invalid_tenant",
        ),
        (
            "an unknown token version",
            RSA.mint(&with(v2(), json!({"ver": "3.0"}))),
            "unsupported_version",
        ),
        ("not a JWT", "not-a-jwt".into(), "malformed"),
        ("four parts", format!("{}.x", RSA.mint(&v1())), "malformed"),
        (
            "an algorithm outside the list",
            RSA.mint_with_header(&header("RS256", "rsa-1"), &v1())
                .unwrap()
                .replacen(
                    &entra::b64(header("RS256", "rsa-1").to_string().as_bytes()),
                    &entra::b64(header("ES512", "rsa-1").to_string().as_bytes()),
                    1,
                ),
            "alg_not_allowed",
        ),
    ];
    for (what, token, reason) in &cases {
        let r = fx.bearer(token).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNAUTHORIZED, "m365_token_rejected"),
            "{what}: {:?}",
            r.body
        );
        let message = r.body["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{reason}: ")),
            "{what}: want {reason}, got {message}"
        );
        assert!(r.headers.get("set-cookie").is_none(), "{what}");
    }
    // Each refusal is in the audit log with its reason, from our address.
    let refused = audit.find("login", "refused");
    assert_eq!(refused.len(), cases.len(), "{refused:#?}");
    for ((what, _, reason), rec) in cases.iter().zip(&refused) {
        let detail = rec["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!("m365 {reason}: ")),
            "{what}: {detail}"
        );
        assert_eq!(rec["ip"], "192.0.2.10");
    }
    assert!(audit.find("login", "success").is_empty());

    // Inside the skew, and after the tenant's next key is published, the
    // same kinds of token are good.
    let (_, cookie) = fx
        .sign_in(&RSA.mint(&with(v1(), json!({"exp": t - 59}))))
        .await;
    assert_eq!(fx.me(&cookie).await.status, StatusCode::OK);
    fx.sign_in(&RSA.mint(&with(v2(), json!({"nbf": t + 59, "iat": t + 59}))))
        .await;
    fx.sign_in(
        &RSA.mint_with_header(&header("PS256", "rsa-1"), &v2())
            .unwrap(),
    )
    .await;
    // The pinned key is good for its own tenant.
    let b = Person {
        tenant: TENANT_B,
        ..ADA
    };
    fx.sign_in(&PINNED.mint(&entra::v2_claims(&APP, &b, t)))
        .await;
}

async fn a_token_in_the_url_is_refused_unread(kind: Kind) {
    let fx = Fx::new(kind).await;
    let audit = AuditLog::capture();
    let good = RSA.mint(&v1());
    for param in ["token", "access_token", "id_token"] {
        let r = fx
            .request(&format!("{SESSION}?{param}={good}"), None, None)
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "m365_token_in_url"),
            "{param}"
        );
        // Even beside a token sent the right way.
        let r = fx
            .request(&format!("{SESSION}?{param}=x"), Some(&good), None)
            .await;
        assert_eq!(r.code(), "m365_token_in_url");
    }
    // Never read: the keys were not even fetched, and the log holds no token.
    assert_eq!(fx.jwks.fetches(), 0);
    let refused = audit.find("login", "refused");
    assert_eq!(refused.len(), 6);
    for r in &refused {
        let d = r["detail"].as_str().unwrap();
        assert!(d.starts_with("m365 m365_token_in_url: "), "{d}");
        assert!(!d.contains(&good[..20]), "{d}");
    }
}

async fn the_token_comes_once_and_the_host_is_known(kind: Kind) {
    let fx = Fx::new(kind).await;
    let good = RSA.mint(&v1());
    let r = fx.request(SESSION, None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "m365_token_missing")
    );
    let r = fx
        .request(SESSION, None, Some(json!({"host": "Teams"})))
        .await;
    assert_eq!(r.code(), "m365_token_missing");
    let r = fx
        .request(SESSION, Some(&good), Some(json!({"token": good})))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "m365_token_ambiguous")
    );
    let r = fx
        .request(SESSION, Some(&good), Some(json!({"host": "Slack"})))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "m365_unknown_host")
    );
    let r = fx
        .request(
            SESSION,
            None,
            Some(json!({"token": good, "tenant": TENANT})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    let req = Request::builder()
        .method(Method::POST)
        .uri(SESSION)
        .header("content-type", "text/plain")
        .body(Body::from(json!({"token": good}).to_string()))
        .unwrap();
    let r = fx.app.send(req).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let req = Request::builder()
        .method(Method::POST)
        .uri(SESSION)
        .header("authorization", format!("Basic {good}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(fx.app.send(req).await.code(), "m365_token_missing");

    // Header token, body host: the way the tab sends it.
    let r = fx
        .request(SESSION, Some(&good), Some(json!({"host": "TeamsModern"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // Off: the route does not exist for this site.
    let off = Fx::with(kind, |c| c.m365.enabled = false).await;
    let r = off.bearer(&good).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "m365_disabled")
    );
    assert_eq!(off.jwks.fetches(), 0);
}

async fn keys_are_fetched_once_and_rotate(kind: Kind) {
    let fx = Fx::new(kind).await;
    let audit = AuditLog::capture();
    for _ in 0..10 {
        fx.sign_in(&RSA.mint(&v1())).await;
    }
    assert_eq!(fx.jwks.fetches(), 1, "ten sign-ins, one fetch");

    // Entra rotates: the next key is published, the old one withdrawn.
    fx.jwks.set_keys(vec![RSA_NEXT.jwk_for_issuer(KEY_ISSUER)]);
    fx.app.clock.advance_ms(2_000);
    // The keys were fetched two seconds ago: an unknown kid waits.
    let r = fx.bearer(&RSA_NEXT.mint(&v1())).await;
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown_key: "),
        "{:?}",
        r.body
    );
    assert_eq!(fx.jwks.fetches(), 1);
    // Ten seconds on, it fetches at once and the new key signs in.
    fx.app.clock.advance_ms(10_000);
    fx.sign_in(&RSA_NEXT.mint(&entra::v1_claims(&APP, &ADA, now() + 12)))
        .await;
    assert_eq!(fx.jwks.fetches(), 2);
    // The withdrawn key stopped working with that fetch.
    let r = fx
        .bearer(&RSA.mint(&entra::v1_claims(&APP, &ADA, now() + 12)))
        .await;
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown_key: ")
    );
    // Forged kids in a burst cost no more fetches than the limit allows.
    for i in 0..20 {
        let mut c = entra::v1_claims(&APP, &ADA, now() + 12);
        c["n"] = json!(i);
        let t = RSA
            .mint_with_header(&json!({"alg": "RS256", "kid": format!("forged-{i}")}), &c)
            .unwrap();
        assert_eq!(fx.bearer(&t).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(fx.jwks.fetches(), 2);
    // After jwks_refresh_secs the next sign-in fetches again.
    fx.app.clock.advance_ms(3_600_000);
    fx.sign_in(&RSA_NEXT.mint(&entra::v1_claims(&APP, &ADA, now() + 3612)))
        .await;
    assert_eq!(fx.jwks.fetches(), 3);
    let reasons: Vec<String> = audit
        .find("login", "refused")
        .iter()
        .map(|r| {
            r["detail"]
                .as_str()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(reasons.len(), 22);
    assert!(
        reasons.iter().all(|r| r == "m365 unknown_key"),
        "{reasons:?}"
    );
}

async fn keys_that_cannot_be_read_make_sign_in_unavailable(kind: Kind) {
    let fx = Fx::new(kind).await;
    fx.jwks.set_status(503);
    let r = fx.bearer(&RSA.mint(&v1())).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "m365_keys_unavailable")
    );
    // Not asked again at once.
    fx.jwks.set_status(200);
    let r = fx.bearer(&RSA.mint(&v1())).await;
    assert_eq!(r.code(), "m365_keys_unavailable");
    assert_eq!(fx.jwks.fetches(), 0);
    fx.app.clock.advance_ms(10_000);
    fx.sign_in(&RSA.mint(&entra::v1_claims(&APP, &ADA, now() + 10)))
        .await;
    assert_eq!(fx.jwks.fetches(), 1);
    // Keys held go on working while the endpoint is down.
    fx.jwks.set_status(500);
    fx.app.clock.advance_ms(7_200_000);
    fx.sign_in(&RSA.mint(&entra::v1_claims(&APP, &ADA, now() + 7210)))
        .await;
}

async fn first_sign_in_provisions_or_is_refused(kind: Kind) {
    let fx = Fx::with(kind, |c| c.m365.provisioning = Provisioning::Refuse).await;
    let audit = AuditLog::capture();
    let r = fx.bearer(&RSA.mint(&v1())).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "m365_unknown_user"),
        "{:?}",
        r.body
    );
    let d = audit.one("login", "refused")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(d.starts_with("m365 m365_unknown_user: "), "{d}");
    assert!(audit.find("user_create", "success").is_empty());
    drop(audit);

    let fx = Fx::new(kind).await;
    let audit = AuditLog::capture();
    let (id, _) = fx.sign_in(&RSA.mint(&v1())).await;
    let created = audit.one("user_create", "success");
    assert_eq!(created["actor_id"], id.as_str());
    assert!(
        created["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("tid:{TENANT}:{OID}"))
    );
    // A disabled account stays shut.
    let admin = fx.app.user("root", SystemRole::Admin).await;
    let r = fx
        .app
        .post(&format!("/api/v1/users/{id}/disable"), &admin, json!({}))
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let r = fx.bearer(&RSA.mint(&v1())).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "account_disabled")
    );
    let refused = audit.find("login", "refused");
    assert!(
        refused[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("m365 account_disabled: ")
    );
}

async fn accounts_bind_on_tenant_and_object_id(kind: Kind) {
    let fx = Fx::new(kind).await;
    let (ada, _) = fx.sign_in(&RSA.mint(&v1())).await;
    // Renamed, with a new UPN and email: still Ada's account and username.
    let renamed = with(
        v2(),
        json!({"preferred_username": "ada.byron@fabrikam.example",
               "email": "ada.byron@fabrikam.example", "name": "Ada Byron"}),
    );
    let r = fx.bearer(&RSA.mint(&renamed)).await;
    assert_eq!(r.body["user"]["id"], ada.as_str());
    assert_eq!(r.body["user"]["username"], "ada");
    assert_eq!(r.body["user"]["display_name"], "Ada Byron");
    assert_eq!(r.body["user"]["email"], "ada.byron@fabrikam.example");
    // A later token without email keeps the address the account has.
    let r = fx.bearer(&RSA.mint(&v1())).await;
    assert_eq!(r.body["user"]["email"], "ada.byron@fabrikam.example");

    // The same oid in another tenant is someone else; a UPN of Ada's is
    // no way into her account either.
    let b = Person {
        tenant: TENANT_B,
        ..ADA
    };
    let (other, _) = fx
        .sign_in(&RSA.mint(&entra::v1_claims(&APP, &b, now())))
        .await;
    assert_ne!(other, ada);
    let impostor = Person {
        oid: "22222222-0000-0000-0000-000000000000",
        ..ADA
    };
    let (third, _) = fx
        .sign_in(&RSA.mint(&entra::v2_claims(&APP, &impostor, now())))
        .await;
    assert!(third != ada && third != other);

    // Someone whose account came from an OpenID Connect sign-in through
    // Entra is the same account from Teams.
    let grace = control::oidc::ExternalIdentity {
        issuer: format!("{LOGIN}/{TENANT}/v2.0"),
        tenant: Some(TENANT.into()),
        subject: "33333333-0000-0000-0000-000000000000".into(),
        email: Some("grace@contoso.example".into()),
        name: Some("Grace Hopper".into()),
        username: Some("grace@contoso.example".into()),
        groups: Vec::new(),
    };
    let existing =
        control::db::identities::provision(&fx.app.state.db, &grace, "grace", "Grace Hopper", T0)
            .await
            .unwrap();
    let g = Person {
        tenant: TENANT,
        oid: "33333333-0000-0000-0000-000000000000",
        upn: "grace@contoso.example",
        name: "Grace Hopper",
    };
    let r = fx
        .bearer(&RSA.mint(&entra::v1_claims(&APP, &g, now())))
        .await;
    assert_eq!(r.body["user"]["id"], existing.id.as_str(), "{:?}", r.body);
    assert_eq!(r.body["user"]["email"], "grace@contoso.example");
}

async fn sign_in_is_rate_limited_per_address(kind: Kind) {
    let fx = Fx::with(kind, |c| c.auth.login_rate_per_minute = 3).await;
    let audit = AuditLog::capture();
    for _ in 0..3 {
        assert_eq!(fx.bearer("junk").await.status, StatusCode::UNAUTHORIZED);
    }
    let r = fx.bearer(&RSA.mint(&v1())).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(audit.find("login", "rate_limited").len(), 1);
    fx.app.clock.advance_ms(60_000);
    fx.sign_in(&RSA.mint(&entra::v1_claims(&APP, &ADA, now() + 60)))
        .await;
}
