//! The generator's signaling: rtcd's control API over one WebSocket (the
//! bench plays the control node), and a minimal HTTP/1.1 client for
//! WHIP/WHEP and `/metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use signaling::PROTOCOL_VERSION;
use signaling::rtcd::{FromRtcd, ToRtcd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends control messages; the connection's writer task owns the socket.
#[derive(Clone)]
pub struct ControlTx(mpsc::UnboundedSender<ToRtcd>);

impl ControlTx {
    pub fn send(&self, msg: ToRtcd) {
        let _ = self.0.send(msg);
    }
}

/// Connects as a control node: bearer key on the upgrade, hello, welcome.
pub async fn connect_control(
    api: SocketAddr,
    key: &str,
) -> anyhow::Result<(ControlTx, mpsc::UnboundedReceiver<FromRtcd>)> {
    let mut req = format!("ws://{api}/api/v1/control").into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse()?);
    // As control does: no Nagle delay on small signaling messages.
    let connect = tokio_tungstenite::connect_async_with_config(req, None, true);
    let (ws, _) = tokio::time::timeout(TIMEOUT, connect)
        .await
        .context("control API: connect timed out")?
        .context("control API: connect")?;
    let (mut sink, mut stream) = ws.split();
    let hello = ToRtcd::Hello {
        version: PROTOCOL_VERSION,
        node_id: "bench".into(),
    };
    sink.send(Message::Text(serde_json::to_string(&hello)?.into()))
        .await?;
    let welcome = tokio::time::timeout(TIMEOUT, stream.next())
        .await
        .context("control API: no welcome")?;
    match welcome {
        Some(Ok(Message::Text(t))) => match serde_json::from_str::<FromRtcd>(&t)? {
            FromRtcd::Welcome { .. } => {}
            other => anyhow::bail!("control API: expected welcome, got {other:?}"),
        },
        other => anyhow::bail!("control API: expected welcome, got {other:?}"),
    }
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<ToRtcd>();
    let (in_tx, in_rx) = mpsc::unbounded_channel::<FromRtcd>();
    tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let text = serde_json::to_string(&msg).expect("wire types serialize");
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            if let Message::Text(t) = m {
                match serde_json::from_str::<FromRtcd>(&t) {
                    Ok(e) => {
                        if in_tx.send(e).is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "control API: unreadable message"),
                }
            }
        }
    });
    Ok((ControlTx(out_tx), in_rx))
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<HttpResponse> {
    http_within(TIMEOUT, addr, method, path, headers, body).await
}

/// [`http`] with its own time limit (a long poll outlasts the default).
pub async fn http_within(
    limit: Duration,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<HttpResponse> {
    tokio::time::timeout(limit, http_inner(addr, method, path, headers, body))
        .await
        .with_context(|| format!("{method} {path}: timed out"))?
}

async fn http_inner(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<HttpResponse> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    s.write_all(body).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("HTTP response without a header end")?;
    let head = std::str::from_utf8(&raw[..split])?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("empty HTTP response")?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .context("HTTP status line")?
        .parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line")?;
        let size_str = std::str::from_utf8(&b[..eol])?;
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        anyhow::ensure!(b.len() >= size + 2, "truncated chunk");
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_plain_and_chunked() {
        let r = parse_response(
            b"HTTP/1.1 201 Created\r\nLocation: /whip/c/s1\r\ncontent-length: 3\r\n\r\nabc",
        )
        .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.header("location"), Some("/whip/c/s1"));
        assert_eq!(r.body, b"abc");
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.text(), "abcde");
    }
}
