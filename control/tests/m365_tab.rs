//! The Microsoft 365 tab's pages and their headers: each cloud's hosts
//! (and the configured extra origins) may frame `/m365/tab` and
//! `/m365/app`, nobody may frame any other page, and none of it exists
//! unless `[m365] enabled`.

mod common;

use axum::http::{Method, StatusCode};
use common::{Kind, Resp, TestApp};
use control::m365::{Cloud, M365Config};
use serde_json::json;

const CLIENT_ID: &str = "00000000-1111-2222-3333-444444444444";
const EXTRA: &str = "http://127.0.0.2:8123";

/// Written out here, not read from `m365::cloud`, so a host dropped or
/// added there shows up as a difference.
fn expected_hosts(cloud: Cloud) -> Vec<&'static str> {
    match cloud {
        Cloud::Commercial => vec![
            "https://*.cloud.microsoft",
            "https://teams.microsoft.com",
            "https://*.teams.microsoft.com",
            "https://*.microsoft365.com",
            "https://*.office.com",
            "https://outlook.office.com",
            "https://outlook.office365.com",
            "https://outlook-sdf.office.com",
            "https://outlook-sdf.office365.com",
        ],
        Cloud::GccHigh => vec![
            "https://*.cloud.microsoft",
            "https://gov.teams.microsoft.us",
            "https://*.gov.teams.microsoft.us",
            "https://*.office365.us",
            "https://outlook.office365.us",
        ],
        Cloud::Dod => vec![
            "https://*.cloud.microsoft",
            "https://dod.teams.microsoft.us",
            "https://*.dod.teams.microsoft.us",
            "https://*.dod.online.office365.us",
            "https://outlook-dod.office365.us",
        ],
    }
}

async fn app(cloud: Cloud, enabled: bool, extra: &[&str]) -> TestApp {
    let config = control::Config {
        m365: M365Config {
            enabled,
            cloud,
            public_url: "https://enclave.example.org".into(),
            client_id: CLIENT_ID.into(),
            allowed_tenants: vec!["72f988bf-86f1-41af-91ab-2d7cd011db47".into()],
            extra_host_origins: extra.iter().map(|s| s.to_string()).collect(),
            ..M365Config::default()
        },
        ..control::Config::default()
    };
    TestApp::with_config(Kind::Sqlite, config).await
}

async fn get(app: &TestApp, path: &str) -> Resp {
    app.call(Method::GET, path, None, None).await
}

/// The sources of one CSP directive, in order.
fn directive(r: &Resp, name: &str) -> Vec<String> {
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    let found: Vec<_> = csp
        .split(';')
        .map(str::trim)
        .filter(|d| d.split_whitespace().next() == Some(name))
        .collect();
    assert_eq!(found.len(), 1, "{name} once in {csp}");
    found[0]
        .split_whitespace()
        .skip(1)
        .map(String::from)
        .collect()
}

fn assert_not_framable(r: &Resp, path: &str) {
    assert_eq!(directive(r, "frame-ancestors"), ["'none'"], "{path}");
    assert_eq!(r.headers["x-frame-options"], "DENY", "{path}");
}

#[tokio::test]
async fn each_cloud_frames_the_tab_with_exactly_its_hosts() {
    for cloud in [Cloud::Commercial, Cloud::GccHigh, Cloud::Dod] {
        let app = app(cloud, true, &[EXTRA]).await;
        let mut want = expected_hosts(cloud);
        want.push(EXTRA);
        for path in ["/m365/tab", "/m365/app"] {
            let r = get(&app, path).await;
            assert_eq!(r.status, StatusCode::OK, "{cloud:?} {path}");
            assert_eq!(r.headers["content-type"], "text/html; charset=utf-8");
            assert_eq!(directive(&r, "frame-ancestors"), want, "{cloud:?} {path}");
            assert!(
                r.headers.get("x-frame-options").is_none(),
                "{cloud:?} {path}: XFO would forbid every host"
            );
            // The rest of the policy is the web client's: scripts and
            // connections from this origin only, so TeamsJS's own request
            // for Microsoft's origin list never leaves the browser.
            assert_eq!(directive(&r, "script-src"), ["'self'"]);
            assert_eq!(directive(&r, "connect-src")[0], "'self'");
            assert_eq!(r.headers["x-content-type-options"], "nosniff");
        }
        // The page's first request: the same list, for TeamsJS.
        let r = get(&app, "/api/v1/m365/tab-config").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.body,
            json!({"client_id": CLIENT_ID, "valid_origins": want, "app_path": "/m365/app"})
        );
        // Every other page still refuses any frame.
        for path in ["/", "/app/app.js", "/app/vendor/MicrosoftTeams.min.js"] {
            let r = get(&app, path).await;
            assert_eq!(r.status, StatusCode::OK, "{path}");
            assert_not_framable(&r, path);
        }
    }
}

#[tokio::test]
async fn without_extra_origins_only_the_cloud_frames_the_tab() {
    let app = app(Cloud::GccHigh, true, &[]).await;
    let r = get(&app, "/m365/tab").await;
    assert_eq!(
        directive(&r, "frame-ancestors"),
        expected_hosts(Cloud::GccHigh)
    );
}

#[tokio::test]
async fn the_tab_app_is_the_web_client_and_the_tab_loads_teamsjs_from_here() {
    let app = app(Cloud::Commercial, true, &[]).await;
    let index = get(&app, "/").await;
    let inside = get(&app, "/m365/app").await;
    assert_eq!(inside.bytes, index.bytes);
    let tab = get(&app, "/m365/tab").await;
    let html = String::from_utf8(tab.bytes.to_vec()).unwrap();
    assert!(
        html.contains(r#"<script src="/app/vendor/MicrosoftTeams.min.js"></script>"#),
        "{html}"
    );
    assert!(html.contains(r#"src="/app/m365.js""#), "{html}");
    assert!(!html.contains("://"), "the tab page names no other host");

    let r = get(&app, "/app/vendor/MicrosoftTeams.min.js").await;
    assert_eq!(r.headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(
        &r.bytes[..],
        include_bytes!("../web/vendor/MicrosoftTeams.min.js")
    );
    let r = get(&app, "/app/m365.js").await;
    assert_eq!(r.status, StatusCode::OK);
    // Pages live at their own routes only; the vendor folder holds only
    // what is listed.
    for path in [
        "/app/m365.html",
        "/app/index.html",
        "/app/vendor/README.md",
        "/app/vendor/MicrosoftTeams.LICENSE",
        "/app/vendor/app.js",
    ] {
        let r = get(&app, path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.code(), "not_found", "{path}");
    }
}

#[tokio::test]
async fn disabled_the_tab_does_not_exist_and_the_client_is_unchanged() {
    let app = app(Cloud::Commercial, false, &[EXTRA]).await;
    for path in ["/m365/tab", "/m365/app", "/api/v1/m365/tab-config"] {
        let r = get(&app, path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.code(), "not_found", "{path}");
    }
    let r = get(&app, "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_not_framable(&r, "/");
    assert_eq!(
        directive(&r, "script-src"),
        ["'self'"],
        "the page's policy otherwise as before"
    );
}

/// The session cookies a response sets, as sent.
fn set_cookies(r: &Resp) -> Vec<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

async fn redeem(app: &TestApp, code: &str) -> Resp {
    app.call(
        Method::POST,
        "/api/v1/m365/handoff/redeem",
        None,
        Some(json!({ "code": code })),
    )
    .await
}

#[tokio::test]
async fn a_handoff_code_signs_the_tab_in_once_and_briefly() {
    let app = app(Cloud::Commercial, true, &[]).await;
    let alice = app
        .user("alice", control::db::users::SystemRole::User)
        .await;
    let handoff = |who| {
        app.call(
            Method::POST,
            "/api/v1/m365/handoff",
            Some(who),
            Some(json!({})),
        )
    };
    // Anonymous: no code.
    let r = app
        .call(Method::POST, "/api/v1/m365/handoff", None, Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = handoff(&alice).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let code = r.body["code"].as_str().unwrap().to_owned();
    let r = redeem(&app, &code).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["user"]["id"], alice.id.as_str());
    let cookies = set_cookies(&r);
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for c in &cookies {
        assert!(
            c.ends_with("; SameSite=None; Secure; Partitioned"),
            "a cookie the tab's frame keeps: {c}"
        );
    }
    // The new session works…
    let session = cookies[0].split(';').next().unwrap().to_owned();
    let me = app
        .send(
            axum::http::Request::builder()
                .uri("/api/v1/users/me")
                .header("cookie", &session)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(me.body["id"], alice.id.as_str());
    // …and the code does not, twice, nor as a session cookie itself.
    let r = redeem(&app, &code).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "m365_handoff_rejected");
    assert!(r.body["message"].as_str().unwrap().contains("used"));
    assert!(set_cookies(&r).is_empty());

    // Past its minute: refused.
    let code = handoff(&alice).await.body["code"]
        .as_str()
        .unwrap()
        .to_owned();
    app.clock
        .advance_ms(control::api::m365_handoff::CODE_LIFETIME_MS + 1);
    let r = redeem(&app, &code).await;
    assert_eq!(r.code(), "m365_handoff_rejected");
    assert!(r.body["message"].as_str().unwrap().contains("expired"));

    // An ordinary session's secret is no code, nor is a guess.
    let value = session.trim_start_matches("enclave_session=");
    for guess in [value, "0123456789abcdef"] {
        let r = redeem(&app, guess).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{guess}");
        assert!(r.body["message"].as_str().unwrap().contains("unknown"));
    }
    let r = app
        .call(
            Method::POST,
            "/api/v1/m365/handoff/redeem",
            None,
            Some(json!({"code": "x", "token": "y"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "unknown fields");
}

#[tokio::test]
async fn disabled_there_is_no_handoff() {
    let app = app(Cloud::Commercial, false, &[]).await;
    let alice = app
        .user("alice", control::db::users::SystemRole::User)
        .await;
    let r = app
        .call(
            Method::POST,
            "/api/v1/m365/handoff",
            Some(&alice),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(redeem(&app, "abc").await.status, StatusCode::NOT_FOUND);
}
