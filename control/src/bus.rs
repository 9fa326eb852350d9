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

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

/// The PostgreSQL channel the nodes LISTEN on.
pub const PG_CHANNEL: &str = "enclave_events";

pub trait EventBus: Send + Sync + 'static {
    /// Announces that new events are committed. Never blocks.
    fn publish(&self);
    /// Changes on every announcement heard from any node (this one
    /// included); the value counts them.
    fn subscribe(&self) -> watch::Receiver<u64>;
}

/// One node: announcements go straight to local subscribers.
#[derive(Debug)]
pub struct LocalBus {
    tx: watch::Sender<u64>,
}

impl LocalBus {
    pub fn new() -> Arc<Self> {
        Arc::new(LocalBus {
            tx: watch::channel(0).0,
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
}

/// Several nodes on one PostgreSQL: `NOTIFY enclave_events, '<node id>'`.
pub struct PgBus {
    local: Arc<LocalBus>,
    notify: mpsc::Sender<()>,
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
        let local = LocalBus::new();
        let mut listener = sqlx::postgres::PgListener::connect(url).await?;
        listener.listen(PG_CHANNEL).await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        let (notify, mut rx) = mpsc::channel::<()>(NOTIFY_QUEUE);
        let sender = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Coalesce a burst into one NOTIFY.
                while rx.try_recv().is_ok() {}
                if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(PG_CHANNEL)
                    .bind(&node_id)
                    .execute(&pool)
                    .await
                {
                    tracing::warn!(error = %e, "NOTIFY failed; other nodes catch up on their next poll");
                }
            }
        });
        let l = local.clone();
        let receiver = tokio::spawn(async move {
            loop {
                match listener.recv().await {
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
            tasks: vec![sender, receiver],
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
}
