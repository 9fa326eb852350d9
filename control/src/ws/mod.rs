//! Real-time events: the [`Hub`] of this node's sockets and the
//! [`dispatch`] loop that feeds it from the event log.
//!
//! Flow: a write commits its change and event row, then announces the seq
//! on the [`crate::bus::EventBus`]. On every node, `dispatch` wakes (or
//! polls, every [`POLL_EVERY`], in case a wake-up was lost), reads the new
//! rows in seq order, finds which connected users may read each one
//! (current channel or team members, or the one user) and queues it on
//! their sockets. Channel members come from a cache the dispatcher keeps
//! in step with the membership events it reads ([`members`]), so a post
//! costs no database query on its way out.
//!
//! Ephemeral messages (typing, presence) come over the bus from any node
//! ([`dispatch_ephemeral`]); each node resolves their audience for the
//! sockets it holds.
//!
//! Backpressure, per socket ([`socket`]): durable events go to a bounded
//! queue of `events.socket_queue`; if it is full the socket is closed with
//! `too_slow` — the client resumes from its last seq and loses nothing. An
//! event is never dropped from a socket that stays open. Ephemeral events
//! (typing) go to a small queue of their own and are dropped when it is
//! full or when the durable queue is half full.

pub mod members;
pub mod socket;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use signaling::events::CloseReason;
use tokio::sync::{mpsc, watch};

use crate::AppState;
use crate::bus::Audience;
use crate::db::events::{self, StoredEvent};
use crate::db::{channels, presence, teams};
use crate::metrics::Metrics;
use members::MemberCache;

/// The dispatcher reads the log at least this often, wake-up or not.
pub const POLL_EVERY: Duration = Duration::from_secs(2);
/// How often a node deletes events past `events.retention_secs` (every
/// node does; the delete is idempotent).
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Events read from the log per query.
const BATCH: i64 = 500;
/// Ephemeral messages queued per socket.
pub const EPHEMERAL_QUEUE: usize = 32;
/// Call negotiation messages queued per socket: an offer, an answer and
/// a burst of candidates, for a few sessions.
pub const SIGNAL_QUEUE: usize = 128;

/// A queued durable event: its seq and its encoded `ServerMessage::Event`.
pub type Durable = (i64, Arc<str>);

/// One open socket, as the hub sees it.
pub struct Conn {
    pub id: String,
    pub user_id: String,
    /// The login session behind the socket (none for access tokens).
    pub session_id: Option<String>,
    durable: mpsc::Sender<Durable>,
    ephemeral: mpsc::Sender<Arc<str>>,
    signals: mpsc::Sender<Arc<str>>,
    close: watch::Sender<Option<CloseReason>>,
    capacity: usize,
}

/// The receiving ends a socket task drains.
pub struct ConnRx {
    pub durable: mpsc::Receiver<Durable>,
    pub ephemeral: mpsc::Receiver<Arc<str>>,
    /// Call negotiation for this socket's sessions (never dropped for
    /// typing's sake; see [`Hub::deliver_signal`]).
    pub signals: mpsc::Receiver<Arc<str>>,
    pub close: watch::Receiver<Option<CloseReason>>,
}

impl Conn {
    pub fn new(
        id: String,
        user_id: String,
        session_id: Option<String>,
        capacity: usize,
    ) -> (Arc<Conn>, ConnRx) {
        let (dtx, drx) = mpsc::channel(capacity);
        let (etx, erx) = mpsc::channel(EPHEMERAL_QUEUE);
        let (stx, srx) = mpsc::channel(SIGNAL_QUEUE);
        let (ctx, crx) = watch::channel(None);
        (
            Arc::new(Conn {
                id,
                user_id,
                session_id,
                durable: dtx,
                ephemeral: etx,
                signals: stx,
                close: ctx,
                capacity,
            }),
            ConnRx {
                durable: drx,
                ephemeral: erx,
                signals: srx,
                close: crx,
            },
        )
    }

    /// Asks the socket task to close with `reason` (first reason wins).
    pub fn close(&self, reason: CloseReason) {
        self.close.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

/// This node's sockets, by user.
pub struct Hub {
    metrics: Arc<Metrics>,
    conns: Mutex<HashMap<String, Vec<Arc<Conn>>>>,
    /// The newest seq this node has fanned out.
    dispatched: AtomicI64,
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Hub {
            metrics,
            conns: Mutex::new(HashMap::new()),
            dispatched: AtomicI64::new(0),
        }
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Arc<Conn>>>> {
        // The map stays consistent even if a holder panicked: every
        // critical section is a single insert, remove or read.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(&self, conn: Arc<Conn>) {
        self.conns()
            .entry(conn.user_id.clone())
            .or_default()
            .push(conn);
        self.metrics.ws_connections.inc();
    }

    pub fn unregister(&self, conn: &Conn) {
        let mut map = self.conns();
        if let Some(list) = map.get_mut(&conn.user_id) {
            let before = list.len();
            list.retain(|c| c.id != conn.id);
            if list.len() < before {
                self.metrics.ws_connections.dec();
            }
            if list.is_empty() {
                map.remove(&conn.user_id);
            }
        }
    }

    pub fn connection_count(&self) -> usize {
        self.conns().values().map(Vec::len).sum()
    }

    pub fn dispatched(&self) -> i64 {
        self.dispatched.load(Ordering::SeqCst)
    }

    /// Connected users among `user_ids`, with their sockets.
    fn targets(&self, user_ids: &[String]) -> Vec<Arc<Conn>> {
        let map = self.conns();
        user_ids
            .iter()
            .filter_map(|u| map.get(u))
            .flatten()
            .cloned()
            .collect()
    }

    fn connected_users(&self) -> bool {
        !self.conns().is_empty()
    }

    /// The user has a socket on this node.
    pub fn has_user(&self, user_id: &str) -> bool {
        self.conns().contains_key(user_id)
    }

    /// Queues a call negotiation message for the user's socket `conn`, or
    /// all their sockets here when that one is gone (or not known yet).
    /// A socket whose queue is full loses it (counted); the client's ICE
    /// restart or fresh offer recovers.
    pub fn deliver_signal(&self, user_id: &str, conn: Option<&str>, json: Arc<str>) {
        let list = self.targets(&[user_id.to_owned()]);
        let one: Vec<_> = list
            .iter()
            .filter(|c| Some(c.id.as_str()) == conn)
            .cloned()
            .collect();
        for c in if one.is_empty() { list } else { one } {
            if c.signals.try_send(json.clone()).is_err() {
                self.metrics
                    .events_dropped
                    .with_label_values(&["call_signal"])
                    .inc();
            }
        }
    }

    /// Queues a durable event; a socket whose queue is full is closed as
    /// too slow (it will resume from its last seq).
    pub fn deliver(&self, user_ids: &[String], seq: i64, json: Arc<str>, kind: &str) {
        for c in self.targets(user_ids) {
            match c.durable.try_send((seq, json.clone())) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.metrics.events_dropped.with_label_values(&[kind]).inc();
                    c.close(CloseReason::TooSlow);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Queues an ephemeral message, dropped for sockets that are behind.
    pub fn deliver_ephemeral(
        &self,
        user_ids: &[String],
        except_conn: &str,
        json: Arc<str>,
        kind: &str,
    ) {
        for c in self.targets(user_ids) {
            if c.id == except_conn {
                continue;
            }
            let behind = c.durable.capacity() < c.capacity / 2;
            if behind || c.ephemeral.try_send(json.clone()).is_err() {
                self.metrics.events_dropped.with_label_values(&[kind]).inc();
            }
        }
    }

    /// Closes the sockets of a revoked session.
    pub fn close_session(&self, session_id: &str) {
        for c in self.conns().values().flatten() {
            if c.session_id.as_deref() == Some(session_id) {
                c.close(CloseReason::SessionEnded);
            }
        }
    }

    /// Closes every socket of a user (all sessions ended).
    pub fn close_user(&self, user_id: &str) {
        if let Some(list) = self.conns().get(user_id) {
            for c in list {
                c.close(CloseReason::SessionEnded);
            }
        }
    }

    pub fn close_all(&self, reason: CloseReason) {
        for c in self.conns().values().flatten() {
            c.close(reason);
        }
    }
}

/// Who, among everyone, may read `ev` now.
async fn readers(
    state: &AppState,
    members: &mut MemberCache,
    ev: &StoredEvent,
) -> Result<Arc<[String]>, crate::db::DbError> {
    if let Some(u) = &ev.user_id {
        return Ok(Arc::new([u.clone()]));
    }
    if let Some(c) = &ev.channel_id {
        return members.members(&state.db, c).await;
    }
    if let Some(t) = &ev.team_id {
        return Ok(teams::member_ids(&state.db, t).await?.into());
    }
    Ok(Arc::new([]))
}

/// This node's dispatcher of ephemeral messages: runs until aborted.
/// Messages it cannot keep up with are dropped (counted), never queued
/// without bound.
pub async fn dispatch_ephemeral(state: AppState) {
    use tokio::sync::broadcast::error::RecvError;
    let mut rx = state.bus.subscribe_ephemeral();
    loop {
        let msg = match rx.recv().await {
            Ok(m) => m,
            Err(RecvError::Lagged(n)) => {
                state
                    .metrics
                    .events_dropped
                    .with_label_values(&["ephemeral_lagged"])
                    .inc_by(n);
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if !state.hub.connected_users() {
            continue;
        }
        let users = match &msg.audience {
            Audience::Channel { channel_id } => channels::member_ids(&state.db, channel_id).await,
            Audience::Contacts { user_id } => presence::contacts(&state.db, user_id).await,
            Audience::Call { call_id } => crate::db::calls::live_user_ids(&state.db, call_id).await,
        };
        match users {
            Ok(users) => state.hub.deliver_ephemeral(
                &users,
                msg.except_conn.as_deref().unwrap_or(""),
                msg.message.as_str().into(),
                &msg.kind,
            ),
            Err(e) => tracing::debug!(error = %e, "ephemeral message dropped: audience unknown"),
        }
    }
}

/// This node's dispatcher: runs until aborted.
pub async fn dispatch(state: AppState) {
    let mut wake = state.bus.subscribe();
    let mut last = loop {
        match events::latest_seq(&state.db).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, "dispatcher: cannot read the event log yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    state.hub.dispatched.store(last, Ordering::SeqCst);
    let mut members = MemberCache::default();
    let mut pruned_at = tokio::time::Instant::now();
    loop {
        if pruned_at.elapsed() >= PRUNE_EVERY {
            pruned_at = tokio::time::Instant::now();
            let before = state.clock.now_ms() - state.config.events.retention_secs as i64 * 1000;
            match events::prune(&state.db, before).await {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "pruned the event log"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning the event log failed"),
            }
        }
        tokio::select! {
            r = wake.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(POLL_EVERY) => {}
        }
        loop {
            let batch = match events::since(&state.db, last, BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "dispatcher: reading the event log failed");
                    break;
                }
            };
            let full = batch.len() as i64 == BATCH;
            for ev in batch {
                if let Some(c) = &ev.channel_id {
                    members.observe(c, &ev.event);
                }
                crate::calls::effects::observe(&state, &ev.event).await;
                if state.hub.connected_users() {
                    match readers(&state, &mut members, &ev).await {
                        Ok(users) => {
                            let msg = signaling::events::ServerMessage::Event {
                                seq: ev.seq as u64,
                                event: ev.event.clone(),
                            };
                            match serde_json::to_string(&msg) {
                                Ok(json) => {
                                    state
                                        .hub
                                        .deliver(&users, ev.seq, json.into(), ev.event.kind())
                                }
                                Err(e) => {
                                    tracing::error!(error = %e, seq = ev.seq, "event does not encode")
                                }
                            }
                        }
                        Err(e) => {
                            // Retry this event on the next round rather
                            // than skip it.
                            tracing::warn!(error = %e, seq = ev.seq, "dispatcher: finding readers failed");
                            break;
                        }
                    }
                }
                last = ev.seq;
                state.hub.dispatched.store(last, Ordering::SeqCst);
            }
            if !full {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub_with(capacity: usize) -> (Hub, Arc<Conn>, ConnRx) {
        let hub = Hub::new(Arc::new(Metrics::new()));
        let (conn, rx) = Conn::new("c1".into(), "u1".into(), None, capacity);
        hub.register(conn.clone());
        (hub, conn, rx)
    }

    #[test]
    fn a_socket_too_far_behind_is_closed_never_skipped() {
        let (hub, _conn, mut rx) = hub_with(16);
        let users = vec!["u1".to_owned()];
        for seq in 1..=16 {
            hub.deliver(&users, seq, "{}".into(), "post_created");
        }
        assert_eq!(*rx.close.borrow(), None);
        hub.deliver(&users, 17, "{}".into(), "post_created");
        assert_eq!(*rx.close.borrow_and_update(), Some(CloseReason::TooSlow));
        // What was queued is intact and in order; the client resumes from
        // the last seq it handled, so event 17 is replayed, not lost.
        let mut seqs = Vec::new();
        while let Ok((seq, _)) = rx.durable.try_recv() {
            seqs.push(seq);
        }
        assert_eq!(seqs, (1..=16).collect::<Vec<_>>());
    }

    #[test]
    fn typing_is_dropped_first() {
        let (hub, _conn, mut rx) = hub_with(16);
        let users = vec!["u1".to_owned()];
        hub.deliver_ephemeral(&users, "other", "t".into(), "typing");
        assert!(rx.ephemeral.try_recv().is_ok());
        // Half the event queue used: typing no longer gets through, events do.
        for seq in 1..=9 {
            hub.deliver(&users, seq, "{}".into(), "post_created");
        }
        hub.deliver_ephemeral(&users, "other", "t".into(), "typing");
        assert!(rx.ephemeral.try_recv().is_err());
        assert_eq!(*rx.close.borrow(), None);
        // Its own queue full: dropped too, the socket stays open.
        let (hub, _conn, mut rx) = hub_with(16);
        for _ in 0..EPHEMERAL_QUEUE + 5 {
            hub.deliver_ephemeral(&users, "other", "t".into(), "typing");
        }
        let mut n = 0;
        while rx.ephemeral.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, EPHEMERAL_QUEUE);
        assert_eq!(*rx.close.borrow(), None);
        // The sender's own socket never gets its typing back.
        hub.deliver_ephemeral(&users, "c1", "t".into(), "typing");
        assert!(rx.ephemeral.try_recv().is_err());
    }

    #[test]
    fn connections_are_counted_and_removed() {
        let (hub, conn, _rx) = hub_with(16);
        assert_eq!(hub.connection_count(), 1);
        hub.unregister(&conn);
        assert_eq!(hub.connection_count(), 0);
        hub.unregister(&conn);
        assert_eq!(hub.connection_count(), 0);
    }
}
