//! [`EventBus`]: how control nodes tell each other that new events are in
//! the database. The bus carries only a wake-up, "new events are
//! committed"; the events themselves are read from the database, so a lost or
//! coalesced wake-up loses nothing (the next one, or the dispatcher's
//! periodic poll, covers it) and a notification never has to carry a
//! large post.
//!
//! [`LocalBus`] serves one node (SQLite, tests). [`PgBus`] uses PostgreSQL
//! LISTEN/NOTIFY so every node on one database hears every other. A NATS
//! JetStream bus for multi-site deployments fits the same trait.
//!
//! The bus also carries [`Ephemeral`] messages (typing, presence), which
//! live nowhere else: they are lossy by design. A full queue, a lagging
//! receiver or a dropped connection loses them, and nothing retries.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};

/// The PostgreSQL channel the nodes LISTEN on for event wake-ups.
pub const PG_CHANNEL: &str = "enclave_events";
/// The PostgreSQL channel that carries ephemeral messages.
pub const PG_EPHEMERAL: &str = "enclave_ephemeral";
/// Ephemeral messages buffered per subscriber; a slower one loses the
/// oldest.
pub const EPHEMERAL_BUFFER: usize = 1024;
/// PostgreSQL refuses NOTIFY payloads from 8000 bytes.
const MAX_NOTIFY_PAYLOAD: usize = 7900;

/// Who an ephemeral message is for; each node resolves it against the
/// database for the sockets it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Audience {
    /// The channel's current members.
    Channel { channel_id: String },
    /// The user and everyone who shares a channel with them.
    Contacts { user_id: String },
    /// The users in a call (voice activity, reactions).
    Call { call_id: String },
}

/// A message for sockets that may be lost on the way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ephemeral {
    pub audience: Audience,
    /// The socket that caused it: it does not get it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except_conn: Option<String>,
    /// For metrics: "typing", "presence".
    pub kind: String,
    /// The encoded `signaling::events::ServerMessage`.
    pub message: String,
}

pub trait EventBus: Send + Sync + 'static {
    /// Announces that new events are committed. Never blocks.
    fn publish(&self);
    /// Changes on every announcement heard from any node (this one
    /// included); the value counts them.
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// Sends `msg` to every node (this one included). Never blocks; may
    /// drop it.
    fn publish_ephemeral(&self, msg: Ephemeral);
    /// Every ephemeral message from any node.
    fn subscribe_ephemeral(&self) -> broadcast::Receiver<Arc<Ephemeral>>;
}

/// One node: announcements go straight to local subscribers.
#[derive(Debug)]
pub struct LocalBus {
    tx: watch::Sender<u64>,
    ephemeral: broadcast::Sender<Arc<Ephemeral>>,
}

impl LocalBus {
    pub fn new() -> Arc<Self> {
        Arc::new(LocalBus {
            tx: watch::channel(0).0,
            ephemeral: broadcast::channel(EPHEMERAL_BUFFER).0,
        })
    }
}

impl EventBus for LocalBus {
    fn publish(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    fn publish_ephemeral(&self, msg: Ephemeral) {
        // No subscriber (no dispatcher running) is not an error.
        let _ = self.ephemeral.send(Arc::new(msg));
    }

    fn subscribe_ephemeral(&self) -> broadcast::Receiver<Arc<Ephemeral>> {
        self.ephemeral.subscribe()
    }
}

/// What goes over NOTIFY: the message and which bus sent it, so a bus
/// skips its own (it delivered them locally at once).
#[derive(Serialize, Deserialize)]
struct Wire {
    from: String,
    #[serde(flatten)]
    msg: Ephemeral,
}

/// Several nodes on one PostgreSQL: `NOTIFY enclave_events, '<node id>'`
/// for event wake-ups, `NOTIFY enclave_ephemeral, '<json>'` for typing and
/// presence.
pub struct PgBus {
    local: Arc<LocalBus>,
    notify: mpsc::Sender<()>,
    ephemeral: mpsc::Sender<String>,
    instance: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Announcements waiting to be sent to PostgreSQL. They are all alike, so
/// when this fills, the dropped ones are covered by those queued.
const NOTIFY_QUEUE: usize = 1024;

impl PgBus {
    /// Connects a listener to `url` and starts the notify and listen tasks.
    /// `node_id` goes into each notification, for diagnosis.
    pub async fn connect(url: &str, node_id: &str) -> Result<Arc<Self>, sqlx::Error> {
        let node_id = node_id.to_owned();
        // Unique per process, even when two nodes share a configured id.
        let instance = format!("{node_id}/{}", crate::db::new_id());
        let local = LocalBus::new();
        let mut listener = sqlx::postgres::PgListener::connect(url).await?;
        listener.listen_all([PG_CHANNEL, PG_EPHEMERAL]).await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await?;
        let (notify, mut rx) = mpsc::channel::<()>(NOTIFY_QUEUE);
        let p = pool.clone();
        let sender = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Coalesce a burst into one NOTIFY.
                while rx.try_recv().is_ok() {}
                if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(PG_CHANNEL)
                    .bind(&node_id)
                    .execute(&p)
                    .await
                {
                    tracing::warn!(error = %e, "NOTIFY failed; other nodes catch up on their next poll");
                }
            }
        });
        // A separate queue and connection, so that a burst of typing never
        // delays an event wake-up.
        let (ephemeral, mut erx) = mpsc::channel::<String>(NOTIFY_QUEUE);
        let ephemeral_sender = tokio::spawn(async move {
            while let Some(payload) = erx.recv().await {
                if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(PG_EPHEMERAL)
                    .bind(&payload)
                    .execute(&pool)
                    .await
                {
                    tracing::debug!(error = %e, "NOTIFY of an ephemeral message failed; it is lost");
                }
            }
        });
        let l = local.clone();
        let me = instance.clone();
        let receiver = tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(n) if n.channel() == PG_EPHEMERAL => {
                        match serde_json::from_str::<Wire>(n.payload()) {
                            Ok(w) if w.from != me => l.publish_ephemeral(w.msg),
                            Ok(_) => {}
                            Err(e) => tracing::debug!(error = %e, "unreadable ephemeral NOTIFY"),
                        }
                    }
                    Ok(_) => l.publish(),
                    Err(e) => {
                        // PgListener reconnects by itself on the next recv;
                        // anything missed meanwhile is found by the poll.
                        tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(Arc::new(PgBus {
            local,
            notify,
            ephemeral,
            instance,
            tasks: vec![sender, ephemeral_sender, receiver],
        }))
    }
}

impl Drop for PgBus {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl EventBus for PgBus {
    fn publish(&self) {
        self.local.publish();
        let _ = self.notify.try_send(());
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.local.subscribe()
    }

    fn publish_ephemeral(&self, msg: Ephemeral) {
        let wire = Wire {
            from: self.instance.clone(),
            msg,
        };
        // Our own message types always encode.
        let payload = serde_json::to_string(&wire).unwrap_or_default();
        if payload.len() <= MAX_NOTIFY_PAYLOAD {
            let _ = self.ephemeral.try_send(payload);
        } else {
            tracing::debug!(
                bytes = payload.len(),
                "ephemeral message too large for NOTIFY; kept on this node"
            );
        }
        self.local.publish_ephemeral(wire.msg);
    }

    fn subscribe_ephemeral(&self) -> broadcast::Receiver<Arc<Ephemeral>> {
        self.local.subscribe_ephemeral()
    }
}
