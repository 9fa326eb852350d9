//! The Microsoft 365 tab in headless Chromium against a real control (in
//! process, SQLite, `[m365] enabled`) on loopback in a private network
//! namespace. A stand-in host page on another site (127.0.0.2) frames
//! `/m365/tab` and plays the host's part of the TeamsJS protocol with a
//! token signed by keys made here (`tests::entra`, served as a local
//! JWKS that control fetches).
//!
//! - `tab_signs_in_inside_a_host`: framed by the listed host, the tab
//!   signs in (the host refuses the first token, the tab tries again)
//!   and opens the web client at the post its deep link names; opened on
//!   its own it falls back to the login page; a host origin not in
//!   `extra_host_origins` cannot frame it; at 320 px with no token it
//!   says so and offers a retry and another way in. Nothing is fetched
//!   beyond loopback (TeamsJS's request for Microsoft's origin list is
//!   refused by the page's CSP). Screenshots:
//!   `tests/artifacts/browser_m365_tab.png` (signed in, at the post) and
//!   `browser_m365_tab_no_token_320.png`.
//!
//! Skipped (ignored) without node, Chromium or tests/browser/node_modules,
//! unless ENCLAVE_REQUIRE_BROWSER=1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use control::bus::LocalBus;
use control::clock::SystemClock;
use control::db::Db;
use control::db::users::SystemRole;
use control::m365::M365Config;
use control::{AppState, Config};
use libtest_mimic::{Arguments, Failed};
use serde_json::{Value, json};
use tests::browser_gate::Gate;
use tests::entra::{self, SigningKey};
use tests::{browser, ports};
use tower::ServiceExt as _;

const CLIENT_ID: &str = "6d2c3b1a-0f4e-4a8b-9c7d-2e1f0a3b4c5d";
const TENANT: &str = "8a1f3c2e-5b7d-4e9f-a0c1-d2e3f4a5b6c7";
const OID: &str = "0b9e8d7c-6a5f-4e3d-8c2b-1a0f9e8d7c6b";
const PASSWORD: &str = "Correct-Horse-9-Battery";

fn main() {
    let gate = Gate::enter("browser_m365");
    let mut args = Arguments::from_args();
    args.test_threads.get_or_insert(1);
    let trials = vec![gate.browser("tab_signs_in_inside_a_host", tab_signs_in_inside_a_host)];
    libtest_mimic::run(&args, trials).exit();
}

/// Control serving on loopback until dropped.
struct Control {
    rt: tokio::runtime::Runtime,
    state: AppState,
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Control {
    fn start(jwks_url: &str, host_origin: &str) -> Result<Control> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let dir = tempfile::tempdir()?;
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let base = format!("http://{}", listener.local_addr()?);
        let mut config = Config {
            m365: M365Config {
                enabled: true,
                public_url: base.clone(),
                client_id: CLIENT_ID.into(),
                allowed_tenants: vec![TENANT.into()],
                jwks_url: jwks_url.into(),
                extra_host_origins: vec![host_origin.into()],
                ..M365Config::default()
            },
            ..Config::default()
        };
        config.server.data_dir = dir.path().to_owned();
        config.server.drain_secs = 1;
        // The password login's cookies over plain http; the tab's own are
        // `Secure` regardless, which Chromium keeps for 127.0.0.1.
        config.auth.cookie_secure = false;
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("control.db").display()
        );
        let state = rt.block_on(async {
            let db = Db::connect(&url, 5).await?;
            anyhow::Ok(AppState::new(
                config,
                db,
                Arc::new(SystemClock),
                LocalBus::new(),
            ))
        })?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(control::run(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Ok(Control {
            rt,
            state,
            base,
            stop: Some(stop),
            _dir: dir,
        })
    }

    /// A request through the router (no socket) with `authorization`.
    fn call(&self, method: Method, path: &str, authorization: &str, body: Value) -> Result<Value> {
        self.rt.block_on(async {
            let mut req = Request::builder()
                .method(method.clone())
                .uri(format!("/api/v1{path}"))
                .header("authorization", authorization)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))?;
            let peer: SocketAddr = "127.0.0.1:1".parse()?;
            req.extensions_mut().insert(ConnectInfo(peer));
            let resp = control::app(self.state.clone()).oneshot(req).await?;
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await?;
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            ensure!(status.is_success(), "{method} {path}: {status} {v}");
            Ok(v)
        })
    }

    /// A local admin with an access token (`Bearer …`).
    fn admin(&self) -> Result<String> {
        self.rt.block_on(async {
            let u = control::api::users::create_local_user(
                &self.state,
                "ada",
                PASSWORD,
                None,
                "Ada",
                SystemRole::Admin,
            )
            .await
            .map_err(|e| anyhow::anyhow!("creating ada: {e}"))?;
            let token = control::auth::tokens::random_secret(control::auth::PAT_PREFIX);
            control::db::sessions::create_token(
                &self.state.db,
                &u.id,
                "browser test",
                &control::auth::tokens::hash_secret(&token),
                0,
            )
            .await?;
            Ok(format!("Bearer {token}"))
        })
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn check(cond: bool, what: String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(what.into()) }
}

fn id(v: &Value) -> Result<String> {
    Ok(v["id"].as_str().context("an id")?.to_owned())
}

fn tab_signs_in_inside_a_host() -> Result<(), Failed> {
    let key = SigningKey::rsa("tab-key-1")?;
    let jwks = entra::JwksServer::start(vec![key.jwk()])?;
    let host_port = ports::free_tcp_port()?;
    let rogue_port = ports::free_tcp_port()?;
    let host_origin = format!("http://127.0.0.2:{host_port}");
    let c = Control::start(&jwks.url(), &host_origin)?;

    let public_host = c.base.trim_start_matches("http://").to_owned();
    let app = entra::App {
        client_id: CLIENT_ID,
        public_host: &public_host,
        login_url: "https://login.microsoftonline.com",
    };
    let who = entra::Person {
        tenant: TENANT,
        oid: OID,
        upn: "grace@contoso.example",
        name: "Grace Hopper",
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let token = key.mint(&entra::v2_claims(&app, &who, now));

    // Grace's first sign-in from Teams makes her account; she is then put
    // in a channel with a thread, whose reply a notification links to.
    let first = c.call(
        Method::POST,
        "/m365/session",
        &format!("Bearer {token}"),
        json!({"host": "Teams"}),
    )?;
    let grace = first["user"]["id"]
        .as_str()
        .context("the session answer names the user")?
        .to_owned();
    let admin = c.admin()?;
    let team = id(&c.call(
        Method::POST,
        "/teams",
        &admin,
        json!({"name": "ops", "display_name": "Ops"}),
    )?)?;
    c.call(
        Method::POST,
        &format!("/teams/{team}/members"),
        &admin,
        json!({"user_id": grace}),
    )?;
    let channel = id(&c.call(
        Method::POST,
        &format!("/teams/{team}/channels"),
        &admin,
        json!({"name": "launch", "display_name": "Launch", "kind": "open"}),
    )?)?;
    c.call(
        Method::POST,
        &format!("/channels/{channel}/members"),
        &admin,
        json!({"user_id": grace}),
    )?;
    let root = id(&c.call(
        Method::POST,
        &format!("/channels/{channel}/posts"),
        &admin,
        json!({"message": "Launch checklist"}),
    )?)?;
    let reply = id(&c.call(
        Method::POST,
        &format!("/channels/{channel}/posts"),
        &admin,
        json!({"message": "@grace the relay is ready", "root_id": root}),
    )?)?;

    let shot = browser::artifacts_dir().join("browser_m365_tab.png");
    let narrow_shot = browser::artifacts_dir().join("browser_m365_tab_no_token_320.png");
    let r = browser::run_scenario(&json!({
        "scenario": "m365-tab",
        "base": c.base,
        "host_port": host_port,
        "rogue_port": rogue_port,
        "token": key.mint(&entra::v2_claims(&app, &who, now)),
        "tenant": TENANT,
        "oid": OID,
        "upn": who.upn,
        "display_name": who.name,
        "post_id": reply,
        "timeout_ms": 120_000,
        "screenshot": shot,
        "narrow_screenshot": narrow_shot,
    }))?;
    eprintln!("m365-tab: {r}");

    // Opened on its own: the login page.
    check(
        r["direct"]["url"] == format!("{}/", c.base),
        format!("no host: {}", r["direct"]),
    )?;
    // An origin not listed never gets the tab: the browser refuses the
    // frame, so the tab's TeamsJS never even says hello.
    let rogue = &r["rogue"];
    check(
        rogue["refused"] == true && rogue["messages"] == 0,
        format!("unlisted host: {rogue}"),
    )?;
    // The listed host: signed in as Grace, at the linked reply.
    let h = &r["host"];
    check(
        h["me"] == who.name,
        format!("signed in as {}: {h}", h["me"]),
    )?;
    check(
        h["frame_url"] == format!("{}/m365/app#/p/{reply}", c.base),
        format!("the web client opened at the post: {}", h["frame_url"]),
    )?;
    check(
        h["linked_text"]
            .as_str()
            .is_some_and(|t| t.contains("the relay is ready"))
            && h["linked_focused"] == true
            && h["channel_title"]
                .as_str()
                .is_some_and(|t| t.contains("Launch")),
        format!("the linked reply shown and focused in its thread: {h}"),
    )?;
    check(
        h["token_calls"] == 2,
        format!("one refused token, then a retry: {}", h["token_calls"]),
    )?;
    let funcs: Vec<&str> = h["funcs"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for f in [
        "tab:initialize",
        "tab:getContext",
        "tab:authentication.getAuthToken",
    ] {
        check(funcs.contains(&f), format!("{f} missing from {funcs:?}"))?;
    }
    // The page handed TeamsJS the site's list: the cloud's hosts and ours.
    let origins = &h["valid_origins"];
    check(
        origins.as_array().is_some_and(|o| {
            o.contains(&json!(host_origin)) && o.contains(&json!("https://teams.microsoft.com"))
        }),
        format!("validOrigins: {origins}"),
    )?;
    // The embedded session's cookies are ones a third-party frame keeps,
    // in the host site's partition.
    let cookies = h["cookies"].as_array().cloned().unwrap_or_default();
    check(
        cookies.iter().any(|c| c["http_only"] == true)
            && cookies.iter().all(|c| {
                c["same_site"] == "None"
                    && c["secure"] == true
                    && c["partition_key"] == "http://127.0.0.2"
            }),
        format!("session cookies: {cookies:?}"),
    )?;
    check(
        h["cdn_refused"] == true,
        "TeamsJS's request to Microsoft's CDN is refused by the tab's CSP".into(),
    )?;
    // A side panel with no token: the tab says so, usable at 320 px.
    let n = &r["narrow"];
    check(
        n["token_calls"] == 4
            && n["retry_focused"] == true
            && n["other_visible"] == true
            && n["fits"] == true
            && n["error_is_alert"] == true
            && n["error"]
                .as_str()
                .is_some_and(|e| e.contains("did not sign you in")),
        format!("no token at 320 px: {n}"),
    )?;
    check(
        r["outside_requests"].as_array().is_some_and(Vec::is_empty),
        format!("requests beyond loopback: {}", r["outside_requests"]),
    )?;
    eprintln!(
        "screenshots: {} and {}",
        shot.display(),
        narrow_shot.display()
    );
    Ok(())
}
