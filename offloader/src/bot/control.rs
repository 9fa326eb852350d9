//! The bot's side of control's API, with its job credential: read the
//! call, join it, open the control WebSocket for negotiation, send
//! captions, hand back files. Plain HTTP/1.1 over hyper (TLS when the URL
//! says https).

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use signaling::CallId;
use signaling::call::JoinInfo;
use signaling::jobs::{BotView, Caption, ControlAccess};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::BotError;

/// Longest control may take to answer one request.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Largest answer read from control (a call's view, a join).
const MAX_ANSWER: usize = 4 << 20;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A request body: small ones whole, recordings streamed from disk.
type Body = UnsyncBoxBody<Bytes, std::io::Error>;

fn whole(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

#[derive(Clone)]
pub struct ControlClient {
    base: String,
    token: String,
    http: Client<HttpsConnector<HttpConnector>, Body>,
}

impl ControlClient {
    pub fn new(access: &ControlAccess) -> Result<Self, BotError> {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| BotError::Setup(format!("TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(ControlClient {
            base: access.url.trim_end_matches('/').to_owned(),
            token: access.token.clone(),
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Body,
        timeout: Duration,
    ) -> Result<Bytes, BotError> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}/api/v1{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", content_type)
            .body(body)
            .map_err(|e| BotError::Setup(format!("request to control: {e}")))?;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| BotError::Unreachable(e.to_string()))?;
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| BotError::Unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, BotError>((status, body))
        };
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| {
                BotError::Unreachable(format!("control did not answer {path} in time"))
            })??;
        if status.is_success() {
            return Ok(body);
        }
        let text = String::from_utf8_lossy(&body)
            .chars()
            .take(300)
            .collect::<String>();
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => BotError::Refused(text),
            StatusCode::NOT_FOUND | StatusCode::CONFLICT => BotError::CallGone(text),
            s if s.is_server_error() => BotError::Unreachable(format!("{s}: {text}")),
            s => BotError::Refused(format!("{s}: {text}")),
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<T, BotError> {
        let b = self
            .call(method, path, "application/json", whole(body), TIMEOUT)
            .await?;
        serde_json::from_slice(&b)
            .map_err(|e| BotError::Unreachable(format!("control's answer to {path}: {e}")))
    }

    /// The call as the bot sees it.
    pub async fn view(&self, call: &CallId) -> Result<BotView, BotError> {
        self.json(Method::GET, &format!("/calls/{call}/bot"), Bytes::new())
            .await
    }

    /// Joins the call, receive-only.
    pub async fn join(&self, call: &CallId) -> Result<JoinInfo, BotError> {
        self.json(Method::POST, &format!("/calls/{call}/bot"), Bytes::new())
            .await
    }

    pub async fn caption(&self, call: &CallId, c: &Caption) -> Result<(), BotError> {
        let body = serde_json::to_vec(c).map_err(|e| BotError::Setup(e.to_string()))?;
        self.call(
            Method::POST,
            &format!("/calls/{call}/captions"),
            "application/json",
            whole(body.into()),
            TIMEOUT,
        )
        .await
        .map(drop)
    }

    /// Hands back files (posted in the call's thread), streamed from disk
    /// as one multipart body: a recording is never held whole.
    pub async fn hand_back(&self, call: &CallId, files: &[&Path]) -> Result<(), BotError> {
        let boundary = format!("enclave-{:016x}", rand::random::<u64>());
        let mut parts = Vec::new();
        let mut bytes = 0;
        for f in files {
            let name = f
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("result")
                .replace(['"', '\r', '\n'], "_");
            let file = tokio::fs::File::open(f)
                .await
                .map_err(|e| BotError::Setup(format!("{}: {e}", f.display())))?;
            bytes += file.metadata().await.map(|m| m.len()).unwrap_or(0);
            let head = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            );
            parts.push(futures_util::stream::once(async move { Ok(Bytes::from(head)) }).boxed());
            parts.push(tokio_util::io::ReaderStream::new(file).boxed());
            parts.push(
                futures_util::stream::once(async { Ok(Bytes::from_static(b"\r\n")) }).boxed(),
            );
        }
        let tail = format!("--{boundary}--\r\n");
        parts.push(futures_util::stream::once(async move { Ok(Bytes::from(tail)) }).boxed());
        let stream = futures_util::stream::iter(parts)
            .flatten()
            .map_ok(Frame::data);
        let body = StreamBody::new(stream).boxed_unsync();
        self.call(
            Method::POST,
            &format!("/calls/{call}/results"),
            &format!("multipart/form-data; boundary={boundary}"),
            body,
            // However slow the link, at least 1 MB/s.
            TIMEOUT + Duration::from_secs(bytes / 1_000_000),
        )
        .await
        .map(drop)
    }

    /// The control WebSocket, past its hello.
    pub async fn socket(&self) -> Result<Socket, BotError> {
        use futures_util::{SinkExt as _, StreamExt as _};
        use tokio_tungstenite::tungstenite::Message;
        let ws_base = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            format!("ws://{}", self.base.trim_start_matches("http://"))
        };
        let mut req = format!("{ws_base}/api/v1/websocket")
            .into_client_request()
            .map_err(|e| BotError::Setup(format!("control's WebSocket URL: {e}")))?;
        let auth = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| BotError::Setup("the job token is not a valid header value".into()))?;
        req.headers_mut().insert("authorization", auth);
        let (mut ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(req))
            .await
            .map_err(|_| BotError::Unreachable("control's WebSocket did not open in time".into()))?
            .map_err(|e| BotError::Unreachable(format!("control's WebSocket: {e}")))?;
        let hello =
            serde_json::json!({"type": "hello", "version": signaling::events::EVENTS_VERSION});
        ws.send(Message::Text(hello.to_string().into()))
            .await
            .map_err(|e| BotError::Unreachable(format!("control's WebSocket: {e}")))?;
        // Control answers with its own hello before anything else.
        loop {
            match tokio::time::timeout(TIMEOUT, ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.contains("\"hello\"") => return Ok(ws),
                Ok(Some(Ok(_))) => continue,
                _ => {
                    return Err(BotError::Unreachable(
                        "control's WebSocket closed before its hello".into(),
                    ));
                }
            }
        }
    }
}
