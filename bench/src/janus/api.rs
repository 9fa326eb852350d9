//! A Janus client over its HTTP API, for the VideoRoom plugin.
//!
//! One Janus session carries every simulated participant: each gets its
//! own plugin handle (a publisher's or a subscriber's), as a browser tab
//! would, while one long poll and one keepalive serve them all, so the
//! generator's signaling stays cheap. Asynchronous plugin replies come
//! back on the long poll and are matched to their request by transaction.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::signal::{http, http_within};

/// How long a plugin may take to answer a request on the long poll.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Janus drops a session after 60 s without a request (its default).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(20);
/// Janus answers an idle long poll after 30 s.
const POLL_LIMIT: Duration = Duration::from_secs(45);
pub const VIDEOROOM: &str = "janus.plugin.videoroom";

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// A handle Janus closed, and why (`hangup`, `detached`).
#[derive(Debug)]
pub struct Closed {
    pub handle: u64,
    pub reason: String,
}

pub struct Session {
    addr: SocketAddr,
    id: u64,
    next: AtomicU64,
    waiters: Waiters,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What a room is made of.
#[derive(Debug, Clone, Copy)]
pub struct RoomSpec {
    pub room: u64,
    pub publishers: usize,
}

impl Session {
    /// Creates a session and starts its long poll and keepalive. Handles
    /// Janus closes are reported on `closed`.
    pub async fn create(
        addr: SocketAddr,
        closed: mpsc::UnboundedSender<Closed>,
    ) -> anyhow::Result<Arc<Session>> {
        let r = post(
            addr,
            "/janus",
            &json!({"janus": "create", "transaction": "c0"}),
        )
        .await?;
        let id = r["data"]["id"]
            .as_u64()
            .with_context(|| format!("Janus create: no session id in {r}"))?;
        let waiters: Waiters = Arc::default();
        let poll = tokio::spawn(long_poll(addr, id, waiters.clone(), closed));
        let keepalive = tokio::spawn(async move {
            loop {
                tokio::time::sleep(KEEPALIVE_EVERY).await;
                let body = json!({"janus": "keepalive", "transaction": "ka"});
                if let Err(e) = post(addr, &format!("/janus/{id}"), &body).await {
                    tracing::warn!(error = %e, "Janus keepalive failed");
                }
            }
        });
        Ok(Arc::new(Session {
            addr,
            id,
            next: AtomicU64::new(1),
            waiters,
            tasks: vec![poll, keepalive],
        }))
    }

    fn transaction(&self) -> String {
        format!("t{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Attaches a VideoRoom handle.
    pub async fn attach(&self) -> anyhow::Result<u64> {
        let body =
            json!({"janus": "attach", "plugin": VIDEOROOM, "transaction": self.transaction()});
        let r = post(self.addr, &format!("/janus/{}", self.id), &body).await?;
        r["data"]["id"]
            .as_u64()
            .with_context(|| format!("Janus attach: no handle id in {r}"))
    }

    /// A request the plugin answers at once (`create`, `destroy`, `list`...):
    /// its `plugindata.data`.
    pub async fn request(&self, handle: u64, body: Value) -> anyhow::Result<Value> {
        let msg = json!({"janus": "message", "body": body, "transaction": self.transaction()});
        let r = post(self.addr, &format!("/janus/{}/{handle}", self.id), &msg).await?;
        plugin_data(&r)
    }

    /// A request the plugin answers on the long poll (`joinandconfigure`,
    /// `join`, `start`): the whole event, so the caller sees its `jsep`.
    pub async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> anyhow::Result<Value> {
        let transaction = self.transaction();
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .expect("waiters lock")
            .insert(transaction.clone(), tx);
        let mut msg = json!({"janus": "message", "body": body, "transaction": transaction});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        let sent = post(self.addr, &format!("/janus/{}/{handle}", self.id), &msg).await;
        let reply = match sent {
            Ok(r) if r["janus"] == "ack" => tokio::time::timeout(EVENT_TIMEOUT, rx)
                .await
                .with_context(|| {
                    format!("Janus: no reply to {} in {EVENT_TIMEOUT:?}", msg["body"])
                })?
                .context("Janus: the long poll ended")?,
            // A plugin may answer an asynchronous request at once.
            Ok(r) => r,
            Err(e) => {
                self.waiters
                    .lock()
                    .expect("waiters lock")
                    .remove(&transaction);
                return Err(e);
            }
        };
        plugin_data(&reply)?;
        Ok(reply)
    }

    /// Tells Janus this handle has no more candidates than its SDP had.
    pub async fn end_of_candidates(&self, handle: u64) -> anyhow::Result<()> {
        let msg = json!({"janus": "trickle", "candidate": {"completed": true}, "transaction": self.transaction()});
        post(self.addr, &format!("/janus/{}/{handle}", self.id), &msg).await?;
        Ok(())
    }

    /// Creates a VideoRoom room for this benchmark: Opus and VP8, no
    /// bitrate cap, no recording, nobody told of joins (listeners are many).
    pub async fn create_room(&self, handle: u64, spec: RoomSpec) -> anyhow::Result<()> {
        let data = self
            .request(
                handle,
                json!({
                    "request": "create",
                    "room": spec.room,
                    "permanent": false,
                    "is_private": true,
                    "publishers": spec.publishers.max(1),
                    "bitrate": 0,
                    "bitrate_cap": false,
                    "fir_freq": 0,
                    "audiocodec": "opus",
                    "videocodec": "vp8",
                    "notify_joining": false,
                    "audiolevel_event": false,
                    "record": false,
                }),
            )
            .await?;
        anyhow::ensure!(
            data["videoroom"] == "created",
            "Janus: room {} not created: {data}",
            spec.room
        );
        Ok(())
    }

    /// Joins `room` as publisher `feed` with an SDP offer; returns Janus's answer.
    pub async fn publish(
        &self,
        handle: u64,
        room: u64,
        feed: u64,
        offer: &str,
    ) -> anyhow::Result<String> {
        let ev = self
            .message(
                handle,
                json!({"request": "joinandconfigure", "room": room, "ptype": "publisher", "id": feed, "display": format!("p{feed}")}),
                Some(json!({"type": "offer", "sdp": offer})),
            )
            .await?;
        sdp_of(&ev, "answer")
    }

    /// Joins `room` as a subscriber to every stream of `feeds`; returns
    /// Janus's offer.
    pub async fn subscribe(&self, handle: u64, room: u64, feeds: &[u64]) -> anyhow::Result<String> {
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        let ev = self
            .message(
                handle,
                json!({"request": "join", "room": room, "ptype": "subscriber", "streams": streams}),
                None,
            )
            .await?;
        sdp_of(&ev, "offer")
    }

    /// Completes a subscription with the subscriber's answer.
    pub async fn start(&self, handle: u64, answer: &str) -> anyhow::Result<()> {
        self.message(
            handle,
            json!({"request": "start"}),
            Some(json!({"type": "answer", "sdp": answer})),
        )
        .await?;
        Ok(())
    }

    /// Ends the session (Janus hangs up every handle) and its tasks.
    pub async fn destroy(&self) {
        let body = json!({"janus": "destroy", "transaction": self.transaction()});
        let _ = post(self.addr, &format!("/janus/{}", self.id), &body).await;
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn post(addr: SocketAddr, path: &str, body: &Value) -> anyhow::Result<Value> {
    let r = http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await?;
    anyhow::ensure!(
        r.status == 200,
        "Janus {path}: HTTP {} {}",
        r.status,
        r.text()
    );
    let v: Value = serde_json::from_slice(&r.body).context("Janus: reply is not JSON")?;
    if v["janus"] == "error" {
        anyhow::bail!(
            "Janus {}: error {} {}",
            body["janus"],
            v["error"]["code"],
            v["error"]["reason"]
        );
    }
    Ok(v)
}

/// A plugin's reply data, or its error.
fn plugin_data(r: &Value) -> anyhow::Result<Value> {
    let data = &r["plugindata"]["data"];
    if let Some(e) = data.get("error") {
        anyhow::bail!("Janus VideoRoom error {}: {e}", data["error_code"]);
    }
    Ok(data.clone())
}

fn sdp_of(ev: &Value, kind: &str) -> anyhow::Result<String> {
    let jsep = &ev["jsep"];
    anyhow::ensure!(
        jsep["type"] == kind,
        "Janus: expected an SDP {kind}, got {ev}"
    );
    jsep["sdp"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("Janus: {kind} without SDP"))
}

/// Reads the session's events until it ends: replies go to their waiters,
/// closed handles to `closed`.
async fn long_poll(
    addr: SocketAddr,
    session: u64,
    waiters: Waiters,
    closed: mpsc::UnboundedSender<Closed>,
) {
    let path = format!("/janus/{session}?maxev=100");
    let mut failures = 0;
    loop {
        let r = http_within(POLL_LIMIT, addr, "GET", &path, &[], b"").await;
        let events: Vec<Value> = match r
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
        {
            Some(Value::Array(v)) => v,
            Some(v) => vec![v],
            None => {
                failures += 1;
                if failures > 5 {
                    tracing::warn!("Janus long poll keeps failing; giving up");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        failures = 0;
        for ev in events {
            dispatch(ev, &waiters, &closed);
        }
    }
}

fn dispatch(ev: Value, waiters: &Waiters, closed: &mpsc::UnboundedSender<Closed>) {
    let kind = ev["janus"].as_str().unwrap_or_default();
    if matches!(kind, "hangup" | "detached") {
        let _ = closed.send(Closed {
            handle: ev["sender"].as_u64().unwrap_or(0),
            reason: format!("{kind}: {}", ev["reason"].as_str().unwrap_or("")),
        });
        return;
    }
    if kind != "event" {
        return;
    }
    let Some(t) = ev["transaction"].as_str() else {
        return;
    };
    let waiter = waiters.lock().expect("waiters lock").remove(t);
    if let Some(w) = waiter {
        let _ = w.send(ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_reach_their_waiter_and_hangups_are_reported() {
        let waiters: Waiters = Arc::default();
        let (tx, mut rx) = oneshot::channel();
        waiters.lock().unwrap().insert("t7".into(), tx);
        let (ctx, mut crx) = mpsc::unbounded_channel();
        dispatch(
            json!({"janus": "event", "sender": 5, "transaction": "t9", "plugindata": {}}),
            &waiters,
            &ctx,
        );
        assert!(rx.try_recv().is_err(), "another transaction's event");
        dispatch(
            json!({"janus": "event", "sender": 5, "transaction": "t7", "jsep": {"type": "answer", "sdp": "v=0"}}),
            &waiters,
            &ctx,
        );
        let ev = rx.try_recv().expect("delivered");
        assert_eq!(sdp_of(&ev, "answer").unwrap(), "v=0");
        assert!(sdp_of(&ev, "offer").is_err());
        dispatch(
            json!({"janus": "hangup", "sender": 5, "reason": "DTLS alert"}),
            &waiters,
            &ctx,
        );
        let c = crx.try_recv().expect("a hangup");
        assert_eq!(c.handle, 5);
        assert!(c.reason.contains("DTLS alert"));
    }

    #[test]
    fn plugin_errors_are_errors() {
        let r = json!({"plugindata": {"data": {"videoroom": "event", "error_code": 426, "error": "No such room"}}});
        let e = plugin_data(&r).unwrap_err().to_string();
        assert!(e.contains("426") && e.contains("No such room"), "{e}");
        let ok = json!({"plugindata": {"data": {"videoroom": "created", "room": 1}}});
        assert_eq!(plugin_data(&ok).unwrap()["room"], 1);
    }
}
