//! Control in process for the browser tests of the web client: SQLite in
//! a temporary folder, the embedded media node on loopback, served on a
//! loopback port until dropped; users with a password (to sign in through
//! the page) and a token (to set things up through the router).
//!
//! Shared by browser_app, browser_calls and browser_chat with `#[path]`; run it inside
//! [`tests::netns`], as they do.

#![allow(
    dead_code,
    reason = "each test binary that includes this uses a part of it"
)]

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use control::bus::LocalBus;
use control::clock::SystemClock;
use control::db::Db;
use control::db::users::SystemRole;
use control::{AppState, Config};
use serde_json::{Value, json};
use tower::ServiceExt as _;

pub const PASSWORD: &str = "Correct-Horse-9-Battery";

/// Control serving on loopback until dropped.
pub struct Control {
    pub rt: tokio::runtime::Runtime,
    pub state: AppState,
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub token: String,
}

impl User {
    /// The sign-in form's fields.
    pub fn login(&self) -> Value {
        json!({"username": self.username, "password": PASSWORD})
    }
}

impl Control {
    pub fn start() -> Result<Control> {
        Self::start_with(|_| {})
    }

    /// Starts with the test's own settings applied last.
    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> Result<Control> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let dir = tempfile::tempdir()?;
        let mut config = Config::default();
        config.server.data_dir = dir.path().to_owned();
        config.server.drain_secs = 1;
        // Plain http on loopback: a Secure cookie would still be kept by
        // Chromium for 127.0.0.1, but the test should not depend on that.
        config.auth.cookie_secure = false;
        // The embedded media node on loopback, the only interface here.
        let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
        config.rtcd.media.bind_ip = loopback;
        config.rtcd.media.port = 0;
        config.rtcd.media.allow_loopback = true;
        config.rtcd.media.advertise = vec![loopback];
        config.rtcd.media.workers = 1;
        tweak(&mut config);
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("control.db").display()
        );
        let (state, listener) = rt.block_on(async {
            let db = Db::connect(&url, 5).await?;
            let state = AppState::new(config, db, Arc::new(SystemClock), LocalBus::new());
            state.nodes.start().await?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            anyhow::Ok((state, listener))
        })?;
        let base = format!("http://{}", listener.local_addr()?);
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

    pub fn user(&self, name: &str) -> Result<User> {
        self.person(name, name)
    }

    /// A user whose display name differs from the username.
    pub fn person(&self, name: &str, display_name: &str) -> Result<User> {
        self.rt.block_on(async {
            let u = control::api::users::create_local_user(
                &self.state,
                name,
                PASSWORD,
                None,
                display_name,
                SystemRole::User,
            )
            .await
            .map_err(|e| anyhow::anyhow!("creating {name}: {e}"))?;
            let token = control::auth::tokens::random_secret(control::auth::PAT_PREFIX);
            control::db::sessions::create_token(
                &self.state.db,
                &u.id,
                "browser test",
                &control::auth::tokens::hash_secret(&token),
                0,
            )
            .await?;
            Ok(User {
                id: u.id,
                username: name.into(),
                display_name: display_name.into(),
                token,
            })
        })
    }

    /// A JSON request through the router (no socket), as `who`.
    pub fn call(&self, method: Method, path: &str, who: &User, body: Value) -> Result<Value> {
        self.rt.block_on(async {
            let mut req = Request::builder()
                .method(method.clone())
                .uri(format!("/api/v1{path}"))
                .header("authorization", format!("Bearer {}", who.token))
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

    /// A team of `members` (the first is its admin) with open channels
    /// `names`, everyone in each; returns the channel ids.
    pub fn team(&self, members: &[&User], names: &[&str]) -> Result<Vec<String>> {
        Ok(self.team_and_channels(members, names)?.1)
    }

    /// As [`Control::team`], also returning the team's id.
    pub fn team_and_channels(
        &self,
        members: &[&User],
        names: &[&str],
    ) -> Result<(String, Vec<String>)> {
        let admin = members[0];
        let team = self.call(
            Method::POST,
            "/teams",
            admin,
            json!({"name": "crew", "display_name": "Crew"}),
        )?;
        let team = team["id"].as_str().context("team id")?.to_owned();
        for m in &members[1..] {
            self.call(
                Method::POST,
                &format!("/teams/{team}/members"),
                admin,
                json!({"user_id": m.id}),
            )?;
        }
        let mut ids = Vec::new();
        for name in names {
            let c = self.call(
                Method::POST,
                &format!("/teams/{team}/channels"),
                admin,
                json!({"name": name, "display_name": name, "kind": "open"}),
            )?;
            let id = c["id"].as_str().context("channel id")?.to_owned();
            for m in &members[1..] {
                self.call(Method::POST, &format!("/channels/{id}/join"), m, json!({}))?;
            }
            ids.push(id);
        }
        Ok((team, ids))
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.rt.block_on(self.state.nodes.stop());
    }
}
