//! A real OpenID Connect provider for tests (`node tests/idp/provider.mjs`,
//! the certified `oidc-provider` package) and a browser that signs in at
//! it: follows redirects, keeps cookies, fills the development login and
//! consent forms, and stops at the relying party's callback.
//!
//! Needs `node` (or `ENCLAVE_NODE`) and `npm ci` in tests/idp, which
//! `scripts/setup` does. Without them [`provider`] returns `None` and the
//! test is skipped with a message, unless `ENCLAVE_REQUIRE_SERVICES=1`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;

pub struct Provider {
    pub issuer: String,
    pub port: u16,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Provider {
    /// Stops the process and waits until it has exited (its port is free).
    pub async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}

fn idp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/idp")
}

/// Starts a provider whose client `enclave` (secret `enclave-secret`) may
/// redirect to `redirect`, with `extra` merged into the configuration;
/// `None` (skipped) when node or the package is missing.
pub async fn provider(redirect: &str, extra: Value) -> Option<Provider> {
    let node = std::env::var("ENCLAVE_NODE").unwrap_or_else(|_| "node".into());
    let installed = idp_dir()
        .join("node_modules/oidc-provider/package.json")
        .exists();
    let has_node = std::process::Command::new(&node)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed || !has_node {
        let msg = format!(
            "OpenID Connect provider unavailable ({}): run scripts/setup",
            if has_node {
                "tests/idp/node_modules missing"
            } else {
                "no node"
            }
        );
        if std::env::var("ENCLAVE_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("{msg}; ENCLAVE_REQUIRE_SERVICES=1 makes this a failure");
        }
        // Straight to stderr: libtest captures eprintln!, and a skip must show.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("SKIPPED (OIDC test): {msg}\n").as_bytes(),
        );
        return None;
    }
    let mut config = json!({
        "clients": [
            {"client_id": "enclave", "client_secret": "enclave-secret", "redirect_uris": [redirect]},
            {"client_id": "enclave-public", "token_endpoint_auth_method": "none", "redirect_uris": [redirect]},
        ],
        "keys": [{"kid": "enclave-test", "pem": include_str!("../fixtures/oidc_test_rsa.pem")}],
        "accounts": {
            "alice": {"email": "alice@example.test", "name": "Alice Example", "groups": ["staff", "ops"]},
        },
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("provider.json");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let mut child = tokio::process::Command::new(node)
        .arg(idp_dir().join("provider.mjs"))
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the provider");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::io::BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .expect("provider did not start within 30 s")
    .unwrap();
    let ready: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("provider said {line:?}: {e}"));
    Some(Provider {
        issuer: ready["issuer"].as_str().unwrap().to_owned(),
        port: ready["port"].as_u64().unwrap() as u16,
        child,
        _dir: dir,
    })
}

/// A free loopback port, for a provider restarted in place.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Browser {
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    cookies: BTreeMap<String, String>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        Browser {
            http,
            cookies: BTreeMap::new(),
        }
    }

    async fn request(
        &mut self,
        method: &str,
        url: &str,
        form: Option<&str>,
    ) -> (u16, Option<String>, String) {
        let mut req = hyper::Request::builder().method(method).uri(url);
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req = req.header("cookie", cookie);
        }
        if form.is_some() {
            req = req.header("content-type", "application/x-www-form-urlencoded");
        }
        let body = Full::new(Bytes::from(form.unwrap_or("").to_owned()));
        let resp = self.http.request(req.body(body).unwrap()).await.unwrap();
        for v in resp.headers().get_all("set-cookie") {
            let pair = v.to_str().unwrap().split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                self.cookies
                    .insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        let text = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes())
            .into_owned();
        (status, location, text)
    }

    /// Signs `user` in from the authorization URL; returns the URL the
    /// provider sends the browser back to (starting with `redirect`).
    pub async fn sign_in(&mut self, authorize_url: &str, user: &str, redirect: &str) -> String {
        let origin = {
            let u = openidconnect::url::Url::parse(authorize_url).unwrap();
            format!("{}://{}", u.scheme(), u.host_str().unwrap())
                + &u.port().map(|p| format!(":{p}")).unwrap_or_default()
        };
        let mut url = authorize_url.to_owned();
        let mut form: Option<String> = None;
        for _ in 0..20 {
            let (status, location, page) = self
                .request(
                    if form.is_some() { "POST" } else { "GET" },
                    &url,
                    form.as_deref(),
                )
                .await;
            form = None;
            if let Some(loc) = location {
                let next = if loc.starts_with('/') {
                    format!("{origin}{loc}")
                } else {
                    loc
                };
                if next.starts_with(redirect) {
                    return next;
                }
                url = next;
                continue;
            }
            assert_eq!(status, 200, "unexpected page at {url}: {page}");
            // The development interaction pages: a login form, then consent.
            if page.contains("name=\"login\"") {
                form = Some(format!("prompt=login&login={user}&password=any"));
            } else if page.contains("value=\"consent\"") || page.contains("name=\"prompt\"") {
                form = Some("prompt=consent".into());
            } else {
                panic!("no form to fill at {url}: {page}");
            }
        }
        panic!("sign-in did not reach the callback");
    }
}
