//! Control's REST API as the bench uses it: a keep-alive HTTP/1.1 client,
//! and the set-up of a run (users with access tokens, a team, channels of
//! K members) through the admin API, as fast as control allows.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::server::{ADMIN, ADMIN_PASSWORD};

/// Requests in flight while setting up: enough to keep control's two
/// cores busy with password hashing, few enough not to queue for long.
const SETUP_CONCURRENCY: usize = 8;
/// Cheap set-up requests (memberships) in flight.
const FAST_CONCURRENCY: usize = 32;
/// A set-up request that takes longer than this failed.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Every bench user's password (throw-away databases only).
const USER_PASSWORD: &str = "Bench-User-Pass-42";

#[derive(Clone)]
pub struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

pub struct Reply {
    pub status: u16,
    pub body: Bytes,
    pub cookie: Option<String>,
}

impl Reply {
    pub fn json(&self) -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    fn expect(self, what: &str, status: u16) -> anyhow::Result<Value> {
        anyhow::ensure!(
            self.status == status,
            "{what}: HTTP {} {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        self.json()
    }
}

impl Api {
    pub fn new(addr: SocketAddr) -> Api {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Api {
            client,
            base: format!("http://{addr}/api/v1"),
        }
    }

    /// One request; `bearer` is an access token or a session token.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = bearer {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(serde_json::to_vec(v)?))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = self.client.request(req.body(body)?).await?;
        let status = resp.status().as_u16();
        let cookie = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|c| c.split(';').next())
            .and_then(|c| c.split_once('='))
            .map(|(_, v)| v.to_owned());
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            body,
            cookie,
        })
    }

    async fn call_timed(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        tokio::time::timeout(SETUP_TIMEOUT, self.call(method, path, bearer, body))
            .await
            .with_context(|| format!("{method} {path}: no answer in {SETUP_TIMEOUT:?}"))?
    }

    /// Logs in and returns a personal access token of the user.
    async fn token_for(&self, username: &str, password: &str) -> anyhow::Result<String> {
        let login = self
            .call_timed(
                "POST",
                "/auth/login",
                None,
                Some(&json!({"username": username, "password": password})),
            )
            .await?;
        anyhow::ensure!(
            login.status == 200,
            "login {username}: HTTP {} {}",
            login.status,
            String::from_utf8_lossy(&login.body)
        );
        let session = login
            .cookie
            .context("login answered without a session cookie")?;
        let t = self
            .call_timed(
                "POST",
                "/users/me/tokens",
                Some(&session),
                Some(&json!({"name": "bench"})),
            )
            .await?
            .expect("create token", 201)?;
        t["token"]
            .as_str()
            .map(str::to_owned)
            .context("token answer without a token")
    }
}

/// A user the bench created: one WebSocket client.
#[derive(Debug, Clone)]
pub struct BenchUser {
    pub id: String,
    pub token: String,
}

/// A channel and its members (indexes into [`Setup::users`]).
#[derive(Debug, Clone)]
pub struct BenchChannel {
    pub id: String,
    pub members: Vec<usize>,
}

pub struct Setup {
    pub users: Vec<BenchUser>,
    pub channels: Vec<BenchChannel>,
    pub admin_token: String,
}

/// Which channel user `i` of `n` belongs to: users are dealt into
/// `ceil(n / k)` channels in blocks of `k` (the last may be smaller).
pub fn channel_of(i: usize, k: usize) -> usize {
    i / k.max(1)
}

/// What kind of account each client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accounts {
    /// Users with a password: each costs control two argon2id hashes to
    /// set up (create, log in), about 70 ms of a core.
    Users,
    /// Bot accounts with an access token: no password, so set-up is
    /// cheap. Their sockets, posts and deliveries take the same path as a
    /// user's; only their posts fire no outgoing webhook (there are none
    /// in a bench run).
    Bots,
}

impl Accounts {
    pub fn name(self) -> &'static str {
        match self {
            Accounts::Users => "users",
            Accounts::Bots => "bots",
        }
    }
}

/// Creates `n` accounts (each with an access token), one team holding
/// them all, and channels of `k` members each. `progress` is told each
/// finished account.
pub async fn setup(
    api: &Api,
    n: usize,
    k: usize,
    accounts: Accounts,
    progress: &(dyn Fn(usize) + Sync),
) -> anyhow::Result<Setup> {
    let admin_token = api.token_for(ADMIN, ADMIN_PASSWORD).await?;
    let admin = Some(admin_token.as_str());
    let run = std::process::id();
    let team = api
        .call_timed(
            "POST",
            "/teams",
            admin,
            Some(&json!({"name": format!("bench-{run}"), "display_name": "Bench"})),
        )
        .await?
        .expect("create team", 201)?;
    let team_id = team["id"].as_str().context("team id")?.to_owned();

    let done = AtomicUsize::new(0);
    let make_user = |i: usize| {
        let team_id = &team_id;
        let done = &done;
        async move {
            let username = format!("bench-u{i}");
            let id = match accounts {
                Accounts::Users => {
                    let u = api
                        .call_timed(
                            "POST",
                            "/users",
                            admin,
                            Some(&json!({"username": username, "password": USER_PASSWORD})),
                        )
                        .await?
                        .expect("create user", 201)?;
                    u["id"].as_str().context("user id")?.to_owned()
                }
                Accounts::Bots => {
                    let b = api
                        .call_timed("POST", "/bots", admin, Some(&json!({"username": username})))
                        .await?
                        .expect("create bot", 201)?;
                    b["user_id"].as_str().context("bot user id")?.to_owned()
                }
            };
            let r = api
                .call_timed(
                    "POST",
                    &format!("/teams/{team_id}/members"),
                    admin,
                    Some(&json!({"user_id": id})),
                )
                .await?;
            anyhow::ensure!(r.status == 204, "add to team: HTTP {}", r.status);
            let token = match accounts {
                Accounts::Users => api.token_for(&username, USER_PASSWORD).await?,
                Accounts::Bots => {
                    let t = api
                        .call_timed(
                            "POST",
                            &format!("/bots/{id}/tokens"),
                            admin,
                            Some(&json!({"name": "bench"})),
                        )
                        .await?
                        .expect("create bot token", 201)?;
                    t["token"]
                        .as_str()
                        .map(str::to_owned)
                        .context("token answer without a token")?
                }
            };
            progress(done.fetch_add(1, Ordering::Relaxed) + 1);
            anyhow::Ok(BenchUser { id, token })
        }
    };
    let users: Vec<BenchUser> = futures_util::stream::iter(0..n)
        .map(make_user)
        .buffered(match accounts {
            Accounts::Users => SETUP_CONCURRENCY,
            Accounts::Bots => FAST_CONCURRENCY,
        })
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;

    let n_channels = n.div_ceil(k.max(1));
    let mut channels = Vec::with_capacity(n_channels);
    for c in 0..n_channels {
        let ch = api
            .call_timed(
                "POST",
                &format!("/teams/{team_id}/channels"),
                admin,
                Some(&json!({"name": format!("bench-{c}"), "display_name": format!("Bench {c}"), "kind": "private"})),
            )
            .await?
            .expect("create channel", 201)?;
        let id = ch["id"].as_str().context("channel id")?.to_owned();
        let members: Vec<usize> = (0..n).filter(|i| channel_of(*i, k) == c).collect();
        channels.push(BenchChannel { id, members });
    }
    let memberships: Vec<(String, String)> = channels
        .iter()
        .flat_map(|c| {
            c.members
                .iter()
                .map(|m| (c.id.clone(), users[*m].id.clone()))
        })
        .collect();
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(memberships)
        .map(|(ch, user)| async move {
            let r = api
                .call_timed(
                    "POST",
                    &format!("/channels/{ch}/members"),
                    admin,
                    Some(&json!({"user_id": user})),
                )
                .await?;
            anyhow::ensure!(r.status == 204, "add to channel: HTTP {}", r.status);
            Ok(())
        })
        .buffer_unordered(FAST_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<()>>()?;
    Ok(Setup {
        users,
        channels,
        admin_token: admin_token.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_dealt_in_blocks() {
        assert_eq!(channel_of(0, 10), 0);
        assert_eq!(channel_of(9, 10), 0);
        assert_eq!(channel_of(10, 10), 1);
        assert_eq!(channel_of(25, 10), 2);
    }
}
