//! Enclave's control plane: chat, identity, events (and, as they land,
//! storage, OpenID Connect and calls signaling).
//!
//! # Driving it
//!
//! 1. [`Config::load`] reads the file and the `ENCLAVE_` environment and
//!    reports every problem at once.
//! 2. [`db::Db::connect`] opens PostgreSQL or SQLite and migrates it.
//! 3. [`AppState::new`] ties config, database, clock and [`bus::EventBus`]
//!    together; [`app`] builds the axum router from it (tests drive it with
//!    `tower::ServiceExt::oneshot`, no socket needed).
//! 4. [`run`] serves a bound listener until `shutdown` resolves, after
//!    flipping `/readyz` and with [`AppState::start`]'s event dispatcher
//!    running, then drains.
//!
//! State lives in the database; a node can be killed at any time. Every
//! durable change writes an event row in its own transaction
//! ([`db::events`]); after commit the writer announces them on the [`bus::EventBus`], and every node's [`ws::Hub`] reads the
//! new rows and fans them out to its sockets.

pub mod api;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod calls;
pub mod clock;
pub mod config;
pub mod db;
pub mod delivery;
pub mod error;
pub mod files;
pub mod m365;
pub mod metrics;
pub mod nodes;
pub mod oidc;
pub mod presence;
pub mod search;
pub mod storage;
pub mod web;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::serve::ListenerExt as _;

pub use config::Config;
pub use error::AppError;

use auth::ratelimit::RateLimiter;
use bus::EventBus;
use clock::Clock;
use db::Db;
use metrics::Metrics;
use ws::Hub;

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub login_limiter: Arc<RateLimiter>,
    pub bus: Arc<dyn EventBus>,
    pub hub: Arc<Hub>,
    /// Wakes this node's outgoing-webhook worker ([`delivery::run`]).
    pub deliveries: Arc<delivery::Wake>,
    /// Wakes this node's Teams notification worker ([`m365::notify::run`]).
    pub teams_notifications: Arc<delivery::Wake>,
    /// Posts per incoming webhook per minute, on this node.
    pub hook_limiter: Arc<RateLimiter>,
    /// The configured identity provider, when `[oidc]` is set.
    pub oidc: Option<Arc<oidc::Provider>>,
    /// The tenant signing keys for Teams sign-in, when `[m365]` is enabled.
    pub m365_keys: Option<Arc<m365::jwks::KeyCache>>,
    /// This process among the nodes (presence): the configured node id
    /// and a random part, so a restarted node is a new one.
    pub node_instance: String,
    /// Where file bytes live (`[storage]`).
    pub store: Arc<dyn storage::ObjectStore>,
    /// Signs download links when the store cannot presign.
    pub links: Arc<files::link::LinkSigner>,
    /// The media nodes calls are placed on (`[rtcd]`); brought up by
    /// [`nodes::MediaNodes::start`].
    pub nodes: Arc<nodes::MediaNodes>,
    /// The call sessions this node speaks for, and its call limits.
    pub calls: Arc<calls::Calls>,
    draining: Arc<AtomicBool>,
}

impl AppState {
    /// The object store comes from `config.storage`; a configuration that
    /// passed [`Config::validate`] always yields one.
    pub fn new(config: Config, db: Db, clock: Arc<dyn Clock>, bus: Arc<dyn EventBus>) -> Self {
        let store = files::store_from_config(&config)
            .expect("a validated [storage] section builds its store");
        Self::with_store(config, db, clock, bus, store)
    }

    /// Like [`new`](Self::new), with a store of the caller's.
    pub fn with_store(
        config: Config,
        db: Db,
        clock: Arc<dyn Clock>,
        bus: Arc<dyn EventBus>,
        store: Arc<dyn storage::ObjectStore>,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        let login_limiter = Arc::new(RateLimiter::per_minute(config.auth.login_rate_per_minute));
        let hub = Arc::new(Hub::new(metrics.clone()));
        let hook_limiter = Arc::new(RateLimiter::per_minute(
            config.integrations.incoming_rate_per_minute,
        ));
        let oidc = config.oidc.enabled().then(|| {
            let states =
                db::identities::DbLoginStates::new(db.clone(), config.oidc.login_timeout_secs);
            Arc::new(oidc::Provider::new(config.oidc.clone(), Arc::new(states)))
        });
        let m365_keys = config.m365.enabled.then(|| {
            Arc::new(m365::jwks::KeyCache::new(
                config.m365.jwks_url(),
                config.m365.jwks_refresh_secs,
            ))
        });
        let node_instance = format!("{}/{}", config.server.node_id, &db::new_id()[..10]);
        let nodes =
            nodes::MediaNodes::new(config.rtcd.clone(), node_instance.clone(), metrics.clone());
        let calls = Arc::new(calls::Calls::new(&config.calls));
        AppState {
            oidc,
            m365_keys,
            node_instance,
            config: Arc::new(config),
            db,
            clock,
            metrics,
            login_limiter,
            bus,
            hub,
            deliveries: delivery::Wake::new(),
            teams_notifications: delivery::Wake::new(),
            hook_limiter,
            store,
            links: Arc::new(files::link::LinkSigner::new()),
            nodes,
            calls,
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Starts this node's background work in one task (aborting it stops
    /// all of it): the event dispatcher (bus wake-ups → sockets), the
    /// ephemeral dispatcher (typing, presence → sockets), the presence
    /// heartbeat, the identity provider's metadata refresh, the file
    /// cleanup job and the calls' work (media nodes' events, timers).
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let s = self.clone();
        tokio::spawn(async move {
            let oidc = async {
                match &s.oidc {
                    Some(p) => oidc::refresh_loop(p.clone()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::join!(
                ws::dispatch(s.clone()),
                ws::dispatch_ephemeral(s.clone()),
                presence::run(s.clone()),
                oidc,
                files::cleanup::job(s.clone()),
                calls::run(s.clone()),
            );
        })
    }

    /// Tells every node (this one included) that new events are committed.
    /// Call after every commit that appended events.
    pub fn announce(&self) {
        self.bus.publish();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// `/readyz` turns 503 and sockets are told to move elsewhere.
    pub fn start_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.hub
            .close_all(signaling::events::CloseReason::ServerShutdown);
    }
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> axum::Router {
    api::router(state)
}

/// Serves `listener` until `shutdown` resolves; then flips `/readyz`,
/// closes sockets (clients resume elsewhere) and gives open requests
/// `config.server.drain_secs` before returning.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use std::future::IntoFuture as _;
    let dispatcher = state.start();
    let deliveries = tokio::spawn(delivery::run(state.clone()));
    let teams_notifications = state
        .config
        .m365
        .notifications_on()
        .then(|| tokio::spawn(m365::notify::run(state.clone())));
    let drain = Duration::from_secs(state.config.server.drain_secs);
    let app = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let st = state.clone();
    // Signaling to browsers is small messages in a row (an answer, then an
    // offer): without TCP_NODELAY the second waits for a delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        st.start_drain();
        let _ = stopping_tx.send(());
    });
    let mut server = tokio::spawn(server.into_future());
    let result = tokio::select! {
        r = &mut server => r,
        _ = stopping_rx => match tokio::time::timeout(drain, &mut server).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(?drain, "drain deadline passed; closing open requests");
                server.abort();
                Ok(Ok(()))
            }
        },
    };
    dispatcher.abort();
    deliveries.abort();
    if let Some(t) = teams_notifications {
        t.abort();
    }
    result.unwrap_or(Ok(()))
}
