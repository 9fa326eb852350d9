//! Bounded waits for a server a test started to become ready.
//!
//! Every wait has a deadline and says in its error what it last saw, so a
//! server that never comes up fails the test with a reason instead of
//! hanging it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const POLL: Duration = Duration::from_millis(50);

/// Waits until `addr` accepts a TCP connection, for at most `timeout`.
pub fn wait_for_tcp(addr: impl ToSocketAddrs, timeout: Duration) -> Result<()> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .context("resolving address")?
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        let mut last = String::from("no address");
        for a in &addrs {
            match TcpStream::connect_timeout(a, Duration::from_millis(500)) {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("{a}: {e}"),
            }
        }
        if Instant::now() >= deadline {
            bail!("nothing accepted TCP connections within {timeout:?} (last: {last})");
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until `GET url` answers with a 2xx status, for at most `timeout`;
/// returns that status. `url` must be `http://host:port/path` (no TLS).
pub fn wait_for_http(url: &str, timeout: Duration) -> Result<u16> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let last = match http_get(
            url,
            left.clamp(Duration::from_millis(100), Duration::from_secs(2)),
        ) {
            Ok((status, _)) if (200..300).contains(&status) => return Ok(status),
            Ok((status, body)) => format!(
                "status {status}: {}",
                body.chars().take(200).collect::<String>()
            ),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("GET {url} gave no 2xx within {timeout:?} (last: {last})");
        }
        std::thread::sleep(POLL);
    }
}

/// One plain HTTP/1.1 `GET` (no TLS, no redirects): the status and the
/// body as text. A chunked body is returned undecoded. Enough for
/// readiness and metrics endpoints; use a real client for anything else.
pub fn http_get(url: &str, timeout: Duration) -> Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer from {addr}"))?;
    let text = String::from_utf8_lossy(&raw);
    let status_line = text.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP status line: {status_line:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
