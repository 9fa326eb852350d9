//! Shared by the job service tests: a runner built from a closure (each
//! test's workload), a service on a fresh data dir, and a small HTTP
//! client that talks to it over a real socket.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt as _, Full};
use offloader::service::{
    JobContext, RunError, Runner, ServiceConfig, ServiceHandle, job_error, serve,
};
use serde_json::{Value, json};
use signaling::jobs::{JobError, JobResult, JobSpec, ResultKind};

pub const KEY: &str = "jobs-test-key-0123456789abcdef";

type RunFn =
    dyn Fn(JobContext) -> BoxFuture<'static, Result<Vec<JobResult>, RunError>> + Send + Sync;

/// A runner whose attempts are the given closure. Calls named `unknown…`
/// do not exist, as control would answer.
pub struct FnRunner(pub Arc<RunFn>);

impl FnRunner {
    pub fn new<F, Fut>(f: F) -> Arc<FnRunner>
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Vec<JobResult>, RunError>> + Send + 'static,
    {
        Arc::new(FnRunner(Arc::new(move |ctx| Box::pin(f(ctx)))))
    }
}

impl Runner for FnRunner {
    fn validate<'a>(&'a self, spec: &'a JobSpec) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            if spec.call_id.as_str().starts_with("unknown") {
                return Err(job_error(
                    "unknown_call",
                    format!("control knows no call {}", spec.call_id),
                ));
            }
            Ok(())
        })
    }

    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<Vec<JobResult>, RunError>> {
        (self.0)(ctx)
    }
}

pub fn result(name: &str) -> JobResult {
    JobResult {
        kind: ResultKind::Recording,
        name: name.to_string(),
        content_type: "video/webm".to_string(),
        bytes: 1,
        duration_ms: None,
        file_id: None,
    }
}

pub fn config(dir: &Path) -> ServiceConfig {
    ServiceConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        data_dir: dir.to_path_buf(),
        api_key: KEY.to_string(),
        retry_base_ms: 50,
        retry_max_ms: 200,
        cancel_grace_secs: 5,
        drain_secs: 2,
        ..ServiceConfig::default()
    }
}

pub async fn start(cfg: ServiceConfig, runner: Arc<dyn Runner>) -> Client {
    let handle = serve(cfg, runner).await.expect("service starts");
    Client::new(handle)
}

/// A recording spec for `call`; the token is a secret the tests look for
/// in every response and log.
pub fn spec(call: &str) -> Value {
    json!({
        "call_id": call,
        "control": {"url": "http://127.0.0.1:9", "token": SECRET},
        "job": {"kind": "recording", "format": "webm"},
    })
}

pub const SECRET: &str = "secret-bot-token-must-not-leak";

pub struct Client {
    pub handle: Option<ServiceHandle>,
    base: String,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_string()
    }
}

impl Client {
    pub fn new(handle: ServiceHandle) -> Client {
        let base = format!("http://{}", handle.local_addr());
        Client {
            handle: Some(handle),
            base,
            http: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http(),
        }
    }

    pub fn handle(&self) -> &ServiceHandle {
        self.handle.as_ref().expect("service running")
    }

    /// A request with the right key, and a JSON body if given.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let body = body.map(|b| ("application/json", b.to_string()));
        self.raw(method, path, Some(KEY), body).await
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<(&str, String)>,
    ) -> Reply {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let bytes = match body {
            Some((ct, b)) => {
                req = req.header("content-type", ct);
                Bytes::from(b)
            }
            None => Bytes::new(),
        };
        let resp = self
            .http
            .request(req.body(Full::new(bytes)).unwrap())
            .await
            .expect("request goes through");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            content_type,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// Creates a job and returns its id.
    pub async fn create(&self, call: &str) -> String {
        let r = self.call("POST", "/v1/jobs", Some(spec(call))).await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.json()["id"].as_str().unwrap().to_string()
    }

    pub async fn job(&self, id: &str) -> Value {
        let r = self.call("GET", &format!("/v1/jobs/{id}"), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    }

    pub async fn logs(&self, id: &str) -> String {
        let r = self.call("GET", &format!("/v1/jobs/{id}/logs"), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.text
    }

    /// Polls the job until `pred` holds (10 s at most).
    pub async fn wait_for(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let j = self.job(id).await;
            if pred(&j) {
                return j;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "job {id} never became {what}: {j}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_state(&self, id: &str, state: &str) -> Value {
        self.wait_for(id, state, |j| j["state"] == state).await
    }
}

/// Waits until `cond` holds (10 s at most).
pub async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < until,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn permanent(code: &str, msg: &str) -> RunError {
    RunError::Permanent(job_error(code, msg))
}
