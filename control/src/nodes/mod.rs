//! The rtcd node pool: control's side of the control ⇄ rtcd protocol
//! (`signaling::rtcd`). One WebSocket per node ([`conn`]), health from
//! heartbeats, placement of new calls on the least-loaded node that is up
//! and not draining, and the nodes' events for the calls module.
//!
//! By default the pool has one node, an rtcd started inside this process
//! ([`embedded`]); `rtcd.mode = "external"` takes nodes from the
//! configuration and from DNS ([`dns`]).

pub mod config;
mod conn;
pub mod dns;
mod embedded;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use signaling::CallId;
use signaling::rtcd::{ErrorCode, FromRtcd, NodeLoad, RtcdError, ToRtcd};
use tokio::sync::{broadcast, mpsc, oneshot};

pub use config::{RtcdConfig, RtcdMode};

use crate::metrics::Metrics;

/// A node's stable key: its API URL, `http://host:port`.
pub type NodeKey = String;

/// What the pool tells its subscribers.
#[derive(Debug, Clone)]
pub enum NodeEvent {
    /// A message from a node (answers, candidates, session states, voice
    /// activity, errors that no pending request claimed, call ends).
    Rtcd { node: NodeKey, msg: FromRtcd },
    /// Connected and handshaken, or no longer draining.
    Up { node: NodeKey },
    /// Its connection closed or it missed heartbeats: its calls need a new home.
    Down { node: NodeKey },
    /// Still carrying its calls, but it takes no new ones.
    Draining { node: NodeKey },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeHealth {
    Up,
    Draining,
    Down,
}

/// One node as `/metrics`, readiness and admins see it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub key: NodeKey,
    pub health: NodeHealth,
    /// The name the node gave in its welcome.
    pub node_id: Option<String>,
    /// Its last reported load.
    pub load: Option<NodeLoad>,
    /// The rtcd inside this process.
    pub embedded: bool,
    /// Why it is (or last was) down.
    pub last_error: Option<String>,
    /// When it last sent anything (ms since the Unix epoch).
    pub last_heard_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("media node {node} is not connected")]
pub struct NodeUnavailable {
    pub node: NodeKey,
}

/// Why a request to a node did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Unavailable(#[from] NodeUnavailable),
    #[error("media node {node} refused: {} ({:?})", .error.message, .error.code)]
    Refused { node: NodeKey, error: RtcdError },
    #[error("media node {node} did not answer in time")]
    Timeout { node: NodeKey },
    #[error("media node {node} went down before answering")]
    Lost { node: NodeKey },
}

/// No node took the call; each attempt with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaceError {
    pub attempts: Vec<(NodeKey, String)>,
}

impl std::fmt::Display for PlaceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.attempts.is_empty() {
            return f.write_str("no media node is available for a new call");
        }
        f.write_str("no media node took the call:")?;
        for (node, why) in &self.attempts {
            write!(f, " {node}: {why};")?;
        }
        Ok(())
    }
}

impl std::error::Error for PlaceError {}

/// Events buffered per subscriber; a subscriber that falls further behind
/// sees `Lagged` and must resynchronise.
const EVENT_BUFFER: usize = 16_384;

struct Entry {
    embedded: bool,
    /// Found through DNS (and not also configured by hand).
    from_dns: bool,
    /// Gone from DNS: no new calls, forgotten once its connection ends.
    retired: bool,
    /// Present while connected and past the handshake.
    link: Option<mpsc::UnboundedSender<ToRtcd>>,
    node_id: Option<String>,
    load: Option<NodeLoad>,
    /// While draining: when the node will close the calls it still holds
    /// (this process's clock, from the remaining time it reported).
    drain_deadline: Option<tokio::time::Instant>,
    last_error: Option<String>,
    last_heard_ms: Option<i64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Entry {
    fn new(embedded: bool, from_dns: bool) -> Entry {
        Entry {
            embedded,
            from_dns,
            retired: false,
            link: None,
            node_id: None,
            load: None,
            drain_deadline: None,
            last_error: None,
            last_heard_ms: None,
            task: None,
        }
    }

    fn draining(&self) -> bool {
        self.load.as_ref().is_some_and(|l| l.draining)
    }

    /// Takes a load report: the deadline is re-read from each one, so a
    /// report delayed in transit errs on the early side only by its delay.
    fn heard(&mut self, load: NodeLoad) {
        self.drain_deadline = match (load.draining, load.drain_remaining_ms) {
            (true, Some(ms)) => Some(tokio::time::Instant::now() + Duration::from_millis(ms)),
            _ => None,
        };
        self.load = Some(load);
        self.last_heard_ms = Some(unix_ms());
    }

    fn health(&self) -> NodeHealth {
        match (&self.link, self.draining()) {
            (None, _) => NodeHealth::Down,
            (Some(_), true) => NodeHealth::Draining,
            (Some(_), false) => NodeHealth::Up,
        }
    }
}

struct Pending {
    node: NodeKey,
    reply: oneshot::Sender<Result<(), RtcdError>>,
}

/// The pool. Lives in `AppState` as `nodes`; [`MediaNodes::start`] brings
/// it up (the `serve` command does; tests that need media call it).
pub struct MediaNodes {
    config: RtcdConfig,
    /// Names this control process in the nodes' logs.
    control_id: String,
    api_key: String,
    metrics: Arc<Metrics>,
    nodes: Mutex<BTreeMap<NodeKey, Entry>>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_request: AtomicU64,
    events: broadcast::Sender<NodeEvent>,
    embedded: tokio::sync::Mutex<Option<rtcd::Rtcd>>,
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// A well-formed node URL (`http://host:port`, an optional trailing `/`)
/// as its key.
pub fn node_key(url: &str) -> Result<NodeKey, String> {
    let rest = url.strip_prefix("http://").ok_or(
        "must start with http:// (rtcd's API speaks plain HTTP; keep it on a private network)",
    )?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    match dns::split_host_port(rest) {
        Some(_) if !rest.contains(['?', '#', '@']) => Ok(format!("http://{rest}")),
        _ => Err("must be http://host:port with the node's API port".into()),
    }
}

impl MediaNodes {
    pub fn new(config: RtcdConfig, control_id: String, metrics: Arc<Metrics>) -> Arc<MediaNodes> {
        let api_key = match config.mode {
            RtcdMode::Embedded => embedded::random_key(),
            RtcdMode::External => config.api_key.clone(),
        };
        Arc::new(MediaNodes {
            config,
            control_id,
            api_key,
            metrics,
            nodes: Mutex::default(),
            pending: Mutex::default(),
            next_request: AtomicU64::new(1),
            events: broadcast::channel(EVENT_BUFFER).0,
            embedded: tokio::sync::Mutex::new(None),
            background: Mutex::default(),
        })
    }

    /// Starts the embedded node (its ports are bound before this returns,
    /// so a taken port fails start-up) or the connections to the external
    /// nodes and the DNS refresh.
    pub async fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        match self.config.mode {
            RtcdMode::Embedded => {
                let rtcd = embedded::start(&self.config, &self.control_id, &self.api_key).await?;
                let key = dns::key_of(rtcd.api_addr);
                *self.embedded.lock().await = Some(rtcd);
                self.add(key, true, false);
                // The first call should not find the pool empty.
                if !self
                    .wait_up(1, Duration::from_millis(self.config.node_timeout_ms))
                    .await
                {
                    tracing::warn!("the embedded media node is not up yet");
                }
            }
            RtcdMode::External => {
                for url in &self.config.nodes {
                    let key =
                        node_key(url).map_err(|e| anyhow::anyhow!("rtcd.nodes {url:?} {e}"))?;
                    self.add(key, false, false);
                }
                if !self.config.dns.is_empty() {
                    let me = self.clone();
                    let task = tokio::spawn(async move { me.dns_loop().await });
                    self.background.lock().expect("background lock").push(task);
                }
            }
        }
        Ok(())
    }

    /// Closes every connection and stops the embedded node.
    pub async fn stop(&self) {
        for t in self.background.lock().expect("background lock").drain(..) {
            t.abort();
        }
        let tasks: Vec<_> = {
            let mut nodes = self.nodes.lock().expect("nodes lock");
            let tasks = nodes.values_mut().filter_map(|e| e.task.take()).collect();
            nodes.clear();
            tasks
        };
        for t in tasks {
            t.abort();
        }
        self.pending.lock().expect("pending lock").clear();
        self.update_gauges();
        if let Some(r) = self.embedded.lock().await.take() {
            r.stop().await;
        }
    }

    /// Every node event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// Connected (up or draining).
    pub fn is_up(&self, node: &str) -> bool {
        self.nodes
            .lock()
            .expect("nodes lock")
            .get(node)
            .is_some_and(|e| e.link.is_some())
    }

    pub fn status(&self) -> Vec<NodeStatus> {
        self.nodes
            .lock()
            .expect("nodes lock")
            .iter()
            .map(|(key, e)| NodeStatus {
                key: key.clone(),
                health: e.health(),
                node_id: e.node_id.clone(),
                load: e.load.clone(),
                embedded: e.embedded,
                last_error: e.last_error.clone(),
                last_heard_ms: e.last_heard_ms,
            })
            .collect()
    }

    /// When a draining node will close the calls it still holds, if it
    /// said (older nodes do not).
    pub fn drain_deadline(&self, node: &str) -> Option<tokio::time::Instant> {
        self.nodes
            .lock()
            .expect("nodes lock")
            .get(node)
            .filter(|e| e.link.is_some() && e.draining())
            .and_then(|e| e.drain_deadline)
    }

    /// Whether `node` is connected and draining.
    pub fn is_draining(&self, node: &str) -> bool {
        self.nodes
            .lock()
            .expect("nodes lock")
            .get(node)
            .is_some_and(|e| e.link.is_some() && e.draining())
    }

    /// Waits until at least `n` nodes are up (not draining).
    pub async fn wait_up(&self, n: usize, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let up = self
                .status()
                .iter()
                .filter(|s| s.health == NodeHealth::Up)
                .count();
            if up >= n {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends without waiting; errors about it arrive as [`NodeEvent::Rtcd`].
    pub fn send(&self, node: &str, msg: ToRtcd) -> Result<(), NodeUnavailable> {
        let nodes = self.nodes.lock().expect("nodes lock");
        nodes
            .get(node)
            .and_then(|e| e.link.as_ref())
            .and_then(|tx| tx.send(msg).ok())
            .ok_or_else(|| NodeUnavailable { node: node.into() })
    }

    /// Sends a request (`create_call`, `end_call`, `add_session`,
    /// `remove_session`: its `request` number is set here) and waits until
    /// the node has taken it or refused it.
    ///
    /// rtcd reports only refusals. Acceptance is learnt from a second
    /// request that always fails, `end_call` of a call id nobody uses
    /// (random, 128 bits): the node handles one connection's messages in
    /// order, so when that error arrives without one for the request
    /// before it, the request was taken.
    pub async fn request(&self, node: &str, mut msg: ToRtcd) -> Result<(), RequestError> {
        let number = self.next_request.fetch_add(2, Ordering::Relaxed);
        let probe = number + 1;
        match &mut msg {
            ToRtcd::CreateCall { request, .. }
            | ToRtcd::EndCall { request, .. }
            | ToRtcd::AddSession { request, .. }
            | ToRtcd::RemoveSession { request, .. } => *request = Some(number),
            _ => {}
        }
        let (answer_tx, answer) = oneshot::channel();
        let (probe_tx, probe_answer) = oneshot::channel();
        {
            let mut pending = self.pending.lock().expect("pending lock");
            pending.insert(
                number,
                Pending {
                    node: node.into(),
                    reply: answer_tx,
                },
            );
            pending.insert(
                probe,
                Pending {
                    node: node.into(),
                    reply: probe_tx,
                },
            );
        }
        let probe_msg = ToRtcd::EndCall {
            call_id: embedded::probe_call_id(),
            request: Some(probe),
        };
        let sent = self
            .send(node, msg)
            .and_then(|()| self.send(node, probe_msg));
        let outcome = match sent {
            Err(e) => Err(RequestError::from(e)),
            Ok(()) => {
                let wait = async {
                    tokio::select! {
                        biased;
                        r = answer => match r {
                            Ok(Err(error)) => Err(RequestError::Refused { node: node.into(), error }),
                            Ok(Ok(())) => Ok(()),
                            Err(_) => Err(RequestError::Lost { node: node.into() }),
                        },
                        r = probe_answer => match r {
                            Ok(_) => Ok(()),
                            Err(_) => Err(RequestError::Lost { node: node.into() }),
                        },
                    }
                };
                let limit = Duration::from_millis(self.config.node_timeout_ms);
                tokio::time::timeout(limit, wait)
                    .await
                    .unwrap_or_else(|_| Err(RequestError::Timeout { node: node.into() }))
            }
        };
        let mut pending = self.pending.lock().expect("pending lock");
        pending.remove(&number);
        pending.remove(&probe);
        outcome
    }

    /// Makes room for `call` on the least-loaded node that is up, not
    /// draining and not in `exclude`; a node that refuses (it started
    /// draining, say) is skipped for the next. Returns the chosen node.
    pub async fn place(&self, call: &CallId, exclude: &[NodeKey]) -> Result<NodeKey, PlaceError> {
        let mut attempts: Vec<(NodeKey, String)> = Vec::new();
        while let Some(node) = self.pick(exclude, &attempts) {
            let msg = ToRtcd::CreateCall {
                call_id: call.clone(),
                request: None,
            };
            match self.request(&node, msg).await {
                Ok(()) => {
                    // Count it now: the next placement must not wait for the
                    // node's next load report to see it.
                    if let Some(l) = self
                        .nodes
                        .lock()
                        .expect("nodes lock")
                        .get_mut(&node)
                        .and_then(|e| e.load.as_mut())
                    {
                        l.calls += 1;
                    }
                    self.metrics
                        .rtcd_placements
                        .with_label_values(&["placed"])
                        .inc();
                    tracing::debug!(%call, %node, "call placed");
                    return Ok(node);
                }
                Err(e) => {
                    tracing::info!(%call, %node, error = %e, "node did not take the call; trying the next");
                    attempts.push((node, e.to_string()));
                }
            }
        }
        self.metrics
            .rtcd_placements
            .with_label_values(&["failed"])
            .inc();
        let err = PlaceError { attempts };
        tracing::warn!(%call, error = %err, "call could not be placed");
        Err(err)
    }

    /// The least-loaded candidate: CPU first (in steps of 5 % of a core,
    /// so that noise does not decide), then sessions, then calls.
    fn pick(&self, exclude: &[NodeKey], attempts: &[(NodeKey, String)]) -> Option<NodeKey> {
        let nodes = self.nodes.lock().expect("nodes lock");
        nodes
            .iter()
            .filter(|(k, e)| {
                e.link.is_some()
                    && !e.retired
                    && !e.draining()
                    && !exclude.contains(*k)
                    && !attempts.iter().any(|(a, _)| a == *k)
            })
            .min_by_key(|(k, e)| {
                let l = e.load.clone().unwrap_or_default();
                (
                    (l.cpu * 20.0).round() as u64,
                    l.sessions,
                    l.calls,
                    (*k).clone(),
                )
            })
            .map(|(k, _)| k.clone())
    }

    fn add(self: &Arc<Self>, key: NodeKey, embedded: bool, from_dns: bool) {
        let mut nodes = self.nodes.lock().expect("nodes lock");
        if let Some(e) = nodes.get_mut(&key) {
            e.retired = false;
            return;
        }
        nodes.insert(key.clone(), Entry::new(embedded, from_dns));
        let task = tokio::spawn(conn::run(self.clone(), key.clone()));
        if let Some(e) = nodes.get_mut(&key) {
            e.task = Some(task);
        }
        drop(nodes);
        self.update_gauges();
    }

    async fn dns_loop(self: Arc<Self>) {
        let every = Duration::from_secs(self.config.dns_refresh_secs);
        let mut failing = false;
        loop {
            match dns::resolve(&self.config.dns).await {
                Ok(keys) => {
                    failing = false;
                    self.sync_dns(&keys);
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(name = %self.config.dns, error = %e, "rtcd.dns does not resolve; keeping the nodes known so far");
                }
                Err(e) => {
                    tracing::debug!(name = %self.config.dns, error = %e, "rtcd.dns still does not resolve")
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Adds new addresses; an address that disappeared takes no new calls
    /// and is forgotten when its connection ends (its calls go on).
    pub(crate) fn sync_dns(self: &Arc<Self>, keys: &[NodeKey]) {
        let mut gone = Vec::new();
        {
            let mut nodes = self.nodes.lock().expect("nodes lock");
            for (k, e) in nodes.iter_mut() {
                if e.from_dns && !keys.contains(k) && !e.retired {
                    tracing::info!(node = %k, "media node left rtcd.dns; no new calls go there");
                    e.retired = true;
                }
                if e.retired && e.link.is_none() {
                    gone.push(k.clone());
                }
            }
            for k in &gone {
                if let Some(t) = nodes.remove(k).and_then(|e| e.task) {
                    t.abort();
                }
            }
        }
        for k in keys {
            self.add(k.clone(), false, true);
        }
        self.update_gauges();
    }

    // ---------------------------------------------------- for conn.rs

    fn mark_up(
        &self,
        key: &str,
        node_id: String,
        load: NodeLoad,
        link: mpsc::UnboundedSender<ToRtcd>,
    ) {
        let draining = load.draining;
        {
            let mut nodes = self.nodes.lock().expect("nodes lock");
            let Some(e) = nodes.get_mut(key) else { return };
            e.link = Some(link);
            e.node_id = Some(node_id.clone());
            e.heard(load);
            e.last_error = None;
        }
        tracing::info!(node = %key, rtcd = %node_id, draining, "media node up");
        self.update_gauges();
        self.emit(NodeEvent::Up { node: key.into() });
        if draining {
            self.emit(NodeEvent::Draining { node: key.into() });
        }
    }

    /// Returns whether the node should be tried again (not retired).
    fn mark_down(&self, key: &str, reason: String) -> bool {
        let (was_up, retry, changed) = {
            let mut nodes = self.nodes.lock().expect("nodes lock");
            let Some(e) = nodes.get_mut(key) else {
                return false;
            };
            let was_up = e.link.take().is_some();
            let changed = e.last_error.as_deref() != Some(reason.as_str());
            e.last_error = Some(reason.clone());
            let retry = !e.retired;
            if !retry {
                nodes.remove(key);
            }
            (was_up, retry, changed)
        };
        // Whoever waits on this node learns now, not at its timeout.
        self.pending
            .lock()
            .expect("pending lock")
            .retain(|_, p| p.node != key);
        if was_up {
            tracing::warn!(node = %key, reason = %reason, "media node down");
            self.metrics.rtcd_node_disconnects.inc();
            self.emit(NodeEvent::Down { node: key.into() });
        } else if changed {
            tracing::warn!(node = %key, reason = %reason, "cannot reach media node");
        } else {
            tracing::debug!(node = %key, reason = %reason, "media node still unreachable");
        }
        self.update_gauges();
        retry
    }

    fn on_message(&self, key: &str, msg: FromRtcd) {
        if let Some(e) = self.nodes.lock().expect("nodes lock").get_mut(key) {
            e.last_heard_ms = Some(unix_ms());
        }
        match msg {
            FromRtcd::Load(load) => {
                let (was, now) = {
                    let mut nodes = self.nodes.lock().expect("nodes lock");
                    let Some(e) = nodes.get_mut(key) else { return };
                    let was = e.draining();
                    e.heard(load);
                    (was, e.draining())
                };
                if was != now {
                    if now {
                        tracing::info!(node = %key, "media node draining; no new calls go there");
                        self.emit(NodeEvent::Draining { node: key.into() });
                    } else {
                        self.emit(NodeEvent::Up { node: key.into() });
                    }
                    self.update_gauges();
                }
            }
            FromRtcd::Welcome { .. } => {}
            FromRtcd::Error(e) if e.request.is_some() => {
                let waiter = e.request.and_then(|r| {
                    let mut pending = self.pending.lock().expect("pending lock");
                    match pending.get(&r) {
                        Some(p) if p.node == key => pending.remove(&r),
                        _ => None,
                    }
                });
                match waiter {
                    Some(p) => {
                        let _ = p.reply.send(Err(e));
                    }
                    // The probe's own error after its waiter gave up.
                    None if e.code == ErrorCode::UnknownCall
                        && e.call_id.as_ref().is_some_and(embedded::is_probe) => {}
                    None => self.emit(NodeEvent::Rtcd {
                        node: key.into(),
                        msg: FromRtcd::Error(e),
                    }),
                }
            }
            msg => self.emit(NodeEvent::Rtcd {
                node: key.into(),
                msg,
            }),
        }
    }

    fn emit(&self, event: NodeEvent) {
        // No subscriber yet is fine: nothing is placed there either.
        let _ = self.events.send(event);
    }

    fn update_gauges(&self) {
        let mut counts = [0i64; 3];
        for e in self.nodes.lock().expect("nodes lock").values() {
            counts[match e.health() {
                NodeHealth::Up => 0,
                NodeHealth::Draining => 1,
                NodeHealth::Down => 2,
            }] += 1;
        }
        for (state, n) in ["up", "draining", "down"].into_iter().zip(counts) {
            self.metrics.rtcd_nodes.with_label_values(&[state]).set(n);
        }
    }
}

/// Wall-clock time for operators ("last heard"), never for timers.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
