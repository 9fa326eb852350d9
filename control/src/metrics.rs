//! Prometheus metrics, registered when the app is built. Counters are
//! atomics: no lock on the request path. Pool gauges are read at scrape.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::AppState;

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
    pub logins: IntCounterVec,
    pub posts_created: IntCounter,
    pub ws_connections: IntGauge,
    pub events_sent: IntCounterVec,
    pub events_dropped: IntCounterVec,
    /// Outgoing webhook attempts by outcome: ok, retry, failed (given up).
    pub webhook_deliveries: IntCounterVec,
    /// Teams activity notification attempts by outcome: sent, failed
    /// (tried again later), given_up.
    pub teams_notifications: IntCounterVec,
    pub files_uploaded: IntCounter,
    pub file_bytes_uploaded: IntCounter,
    pub file_rejects: IntCounterVec,
    pub file_downloads: IntCounterVec,
    pub files_cleaned: IntCounterVec,
    /// Media nodes by health: up, draining, down.
    pub rtcd_nodes: IntGaugeVec,
    /// New calls by outcome: placed, failed (no node took it).
    pub rtcd_placements: IntCounterVec,
    /// Connections to media nodes lost after they were up.
    pub rtcd_node_disconnects: IntCounter,
    db_pool_size: IntGauge,
    db_pool_idle: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        // Names and labels are fixed literals: registration cannot fail.
        let registry =
            Registry::new_custom(Some("enclave_control".into()), None).expect("valid prefix");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let http_requests = counter(
            "http_requests_total",
            "HTTP requests by route template, method and status.",
            &["route", "method", "status"],
        );
        let http_seconds = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP latency by route.").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            ),
            &["route"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(http_seconds.clone()))
            .expect("unique metric");
        let logins = counter("logins_total", "Login attempts by outcome.", &["outcome"]);
        let posts_created =
            IntCounter::new("posts_created_total", "Posts created.").expect("valid metric");
        registry
            .register(Box::new(posts_created.clone()))
            .expect("unique metric");
        let events_sent = counter(
            "ws_events_sent_total",
            "Events written to WebSockets, by kind.",
            &["kind"],
        );
        let events_dropped = counter(
            "ws_events_dropped_total",
            "Events dropped for slow sockets, by kind.",
            &["kind"],
        );
        let webhook_deliveries = counter(
            "webhook_deliveries_total",
            "Outgoing webhook delivery attempts by outcome (ok, retry, failed).",
            &["outcome"],
        );
        let teams_notifications = counter(
            "teams_notifications_total",
            "Teams activity notification attempts through Microsoft Graph by outcome \
             (sent, failed, given_up).",
            &["outcome"],
        );
        let plain = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let files_uploaded = plain("files_uploaded_total", "Files stored by uploads.");
        let file_bytes_uploaded = plain(
            "file_bytes_uploaded_total",
            "Bytes of files stored by uploads.",
        );
        let file_rejects = counter(
            "file_rejects_total",
            "Uploads refused, by reason.",
            &["reason"],
        );
        let file_downloads = counter(
            "file_downloads_total",
            "File downloads served, by part (original, thumbnail, preview, link).",
            &["part"],
        );
        let files_cleaned = counter(
            "files_cleaned_total",
            "Files and objects deleted by the cleanup job (unattached, orphan).",
            &["what"],
        );
        let rtcd_nodes = IntGaugeVec::new(
            Opts::new("rtcd_nodes", "Media nodes by health (up, draining, down)."),
            &["state"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(rtcd_nodes.clone()))
            .expect("unique metric");
        let rtcd_placements = counter(
            "rtcd_placements_total",
            "New calls by placement outcome (placed, failed).",
            &["outcome"],
        );
        let rtcd_node_disconnects = plain(
            "rtcd_node_disconnects_total",
            "Connections to media nodes lost after they were up.",
        );
        Metrics {
            rtcd_nodes,
            rtcd_placements,
            rtcd_node_disconnects,
            webhook_deliveries,
            teams_notifications,
            files_uploaded,
            file_bytes_uploaded,
            file_rejects,
            file_downloads,
            files_cleaned,
            http_requests,
            http_seconds,
            logins,
            posts_created,
            ws_connections: gauge("ws_connections", "Open WebSocket connections."),
            events_sent,
            events_dropped,
            db_pool_size: gauge("db_pool_connections", "Database connections open."),
            db_pool_idle: gauge("db_pool_idle_connections", "Database connections idle."),
            registry,
        }
    }

    pub fn render(&self, pool: &sqlx::AnyPool) -> String {
        self.db_pool_size.set(i64::from(pool.size()));
        self.db_pool_idle.set(pool.num_idle() as i64);
        let mut out = Vec::new();
        // Encoding our own registry into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Middleware: counts every request by its route template (never the raw
/// path, which would carry ids and explode the label set).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let resp = next.run(req).await;
    let m = &state.metrics;
    m.http_seconds
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    m.http_requests
        .with_label_values(&[route.as_str(), method.as_str(), resp.status().as_str()])
        .inc();
    resp
}
